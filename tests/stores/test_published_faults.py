"""Publishing under faults: a process killed (os._exit, as kill -9 leaves it) at every write of a new
partition and of an append, and two writers of one partition at once. After each kill the glob readers
(DuckDB, polars, pyarrow dataset discovery) see exactly the rows `_manifest.json` lists, and a rerun
completes the publication as a clean run would have made it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stores import _atomic
from stores.published import WriterBusyError, publish, read_published
from tests.stores.test_published import _glob_counts
from tests.stores.test_published_support import clips_and_emb, make_info, partition, video_ids

# Every function through which a publish changes the files; the child process dies at the Nth call.
WRITES = (
    "stores._published_extras.write_bytes",
    "stores._fs.StoreRoot.write_json",
    "stores._atomic.link_files",
    "stores._atomic.fsync_tree",
    "stores._atomic.exchange",
    "stores._atomic.fsync_dir",
    "stores._fs.StoreRoot.remove_tree",
    "stores._fs.StoreRoot.rename_dir",
)

CHILD = textwrap.dedent(
    """
    import importlib, os, sys
    from tests.stores.test_published_support import clips_and_emb, make_info, video_ids
    from stores.published import publish

    out, count, kill_at, after = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "after"
    calls = [0]

    def wrap(function):
        def killing(*args, **kwargs):
            calls[0] += 1
            if calls[0] == kill_at and not after:
                os._exit(137)
            result = function(*args, **kwargs)
            if calls[0] == kill_at and after:
                os._exit(137)
            return result
        return killing

    for name in WRITES:
        module_name, _, attr = name.rpartition(".")
        try:
            owner = importlib.import_module(module_name)
        except ModuleNotFoundError:  # a method: module.Class.attr
            module_name, _, cls = module_name.rpartition(".")
            owner = getattr(importlib.import_module(module_name), cls)
        setattr(owner, attr, wrap(getattr(owner, attr)))
    clips, emb = clips_and_emb(video_ids(count), salt="v1")
    publish(out, make_info("v1"), clips, emb, mode="append", faiss_index="flat", rows_per_file=6)
    print("completed", calls[0])
    """
)


def _child(out: Path, videos: int, kill_at: int, after: bool) -> subprocess.CompletedProcess[str]:
    code = f"WRITES = {WRITES!r}\n{CHILD}"
    root = Path(__file__).resolve().parents[2]
    return subprocess.run(
        [sys.executable, "-c", code, str(out), str(videos), str(kill_at), "after" if after else "before"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _listed_rows(out: Path) -> int:
    manifest = partition(out) / "_manifest.json"
    return int(json.loads(manifest.read_text())["counts"]["rows"]) if manifest.is_file() else 0


def _clean(tmp_path: Path, videos: int) -> tuple[list[object], bytes]:
    out = tmp_path / "clean"
    clips, emb = clips_and_emb(video_ids(videos), salt="v1")
    publish(out, make_info("v1"), clips, emb, mode="append", faiss_index="flat", rows_per_file=6)
    rows, back = read_published(out)
    return rows.to_pylist(), back.tobytes()


def _sweep(tmp_path: Path, start_videos: int, videos: int, points: range, after: bool) -> int:
    """Kill a publish of `videos` videos (over a partition of `start_videos`) at each write point;
    returns how many kills landed."""
    expected = _clean(tmp_path, videos)
    kills = 0
    for kill_at in points:
        out = tmp_path / f"{'a' if after else 'b'}{kill_at}"
        if start_videos:
            clips, emb = clips_and_emb(video_ids(start_videos), salt="v1")
            publish(out, make_info("v1"), clips, emb, faiss_index="flat", rows_per_file=6)
        before = _listed_rows(out)
        run = _child(out, videos, kill_at, after)
        if run.returncode == 0:
            assert "completed" in run.stdout, run.stderr
            break
        assert run.returncode == 137, run.stderr
        kills += 1
        listed = _listed_rows(out)
        assert listed in (before, 3 * videos)  # the old version or the new one, nothing in between
        if listed:
            assert _glob_counts(out) == (listed, listed, listed), f"kill at write {kill_at}"
        clips, emb = clips_and_emb(video_ids(videos), salt="v1")
        publish(out, make_info("v1"), clips, emb, mode="append", faiss_index="flat", rows_per_file=6)
        rows, back = read_published(out, verify=True)
        assert (rows.to_pylist(), back.tobytes()) == expected, f"kill at write {kill_at}"
        assert _glob_counts(out) == (3 * videos,) * 3
        assert not [p for p in out.rglob(".tmp-*")], "the rerun removes what the kill left"
    else:
        pytest.fail("the publish never completed: raise the range of write points")
    return kills


@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
def test_a_killed_append_is_never_half_visible(tmp_path: Path, after: bool) -> None:
    assert _sweep(tmp_path, 3, 5, range(1, 40), after) >= 5


@pytest.mark.slow
@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
def test_a_killed_first_publish_is_never_half_visible(tmp_path: Path, after: bool) -> None:
    assert _sweep(tmp_path, 0, 4, range(1, 40), after) >= 3


def test_a_second_writer_of_a_partition_is_refused_naming_the_first(tmp_path: Path) -> None:
    clips, emb = clips_and_emb(video_ids(2), salt="v1")
    lock = tmp_path / "dataset=demo" / "encoder=tiny" / ".lock-adapter=v1"
    busy = pytest.raises(WriterBusyError, match=r"another writer .* \(pid \d+ on .* since .*\); wait")
    with _atomic.writer_lock(str(lock), "the partition"), busy:
        publish(tmp_path, make_info("v1"), clips, emb)
    publish(tmp_path, make_info("v1"), clips, emb)  # released with its holder
    assert read_published(tmp_path)[0].num_rows == 6


def test_two_concurrent_appends_lose_nothing(tmp_path: Path) -> None:
    """Two processes append different videos at once: one publishes, the other is refused at once or
    also publishes; rerunning the refused one adds its videos, and nothing is lost or doubled."""
    first = _append_process(tmp_path, 0, 6)
    second = _append_process(tmp_path, 6, 6)
    results = [p.wait(timeout=120) for p in (first, second)]
    outputs = [p.stderr.read() if p.stderr else "" for p in (first, second)]
    assert all(r in (0, 2) for r in results), outputs
    for process, code in zip((first, second), results, strict=True):
        if code == 2:
            assert "another writer" in outputs[(first, second).index(process)]
    for start in (0, 6):
        again = _append_process(tmp_path, start, 6)
        assert again.wait(timeout=120) == 0
    rows, _ = read_published(tmp_path)
    assert sorted(set(rows["video_id"].to_pylist())) == video_ids(12) and rows.num_rows == 36


def _append_process(out: Path, start: int, count: int) -> subprocess.Popen[str]:
    code = textwrap.dedent(
        f"""
        import sys
        from stores.published import WriterBusyError, publish
        from tests.stores.test_published_support import clips_and_emb, make_info, video_ids
        clips, emb = clips_and_emb(video_ids({count}, {start}), salt="v1")
        try:
            publish({str(out)!r}, make_info("v1"), clips, emb, mode="append")
        except WriterBusyError as e:
            print(e, file=sys.stderr)
            sys.exit(2)
        """
    )
    root = Path(__file__).resolve().parents[2]
    return subprocess.Popen([sys.executable, "-c", code], cwd=root, stderr=subprocess.PIPE, text=True)
