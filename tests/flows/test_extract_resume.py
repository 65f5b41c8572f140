"""Resuming `extract`: a rerun recomputes nothing, changed or damaged inputs are redone, and a run killed
with SIGKILL at any moment leaves a readable store that a rerun completes without duplicates."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

import flows.extract
from flows.extract import ExtractConfig, extract, load_inputs
from stores.latent_cache import CacheView, LatentCache
from stores.manifest import read_manifest, write_manifest
from tests.flows.extract_support import FRAMES, encoder_config_kwargs, store_snapshot

K = 10


def count_calls(monkeypatch: pytest.MonkeyPatch, *names: str) -> Counter[str]:
    """Count calls of functions that `flows.extract` uses (they still run)."""
    calls: Counter[str] = Counter()
    for name in names:
        original = getattr(flows.extract, name)

        def wrapper(
            *args: Any, _name: str = name, _original: Callable[..., Any] = original, **kw: Any
        ) -> Any:
            calls[_name] += 1
            return _original(*args, **kw)

        monkeypatch.setattr(flows.extract, name, wrapper)
    return calls


def clip_counts(view: CacheView) -> tuple[Counter[str], Counter[str]]:
    return Counter(view.clips["video_id"].to_pylist()), Counter(view.static_clips["video_id"].to_pylist())


def assert_complete_and_unique(view: CacheView, frames: dict[str, int]) -> None:
    """Every video of `frames` once, with every one of its clips once; nothing else."""
    assert sorted(view.videos["video_id"].to_pylist()) == sorted(frames)
    keys = list(zip(view.clips["video_id"].to_pylist(), view.clips["clip_index"].to_pylist(), strict=True))
    assert len(keys) == len(set(keys)), "duplicate (video_id, clip_index) rows"
    expected = {(v, i) for v, n in frames.items() for i in range(max(1, n // FRAMES))}
    assert set(keys) == expected
    static = list(
        zip(
            view.static_clips["video_id"].to_pylist(),
            view.static_clips["static_index"].to_pylist(),
            strict=True,
        )
    )
    assert sorted(static) == sorted((v, k) for v in frames for k in range(K))
    assert view.motion.shape[0] == len(keys) and view.static.shape[0] == len(static)


def test_a_rerun_recomputes_nothing(
    videos: Path, script_encoder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store.zarr"
    inputs = load_inputs(None, videos, None)
    config = ExtractConfig(**encoder_config_kwargs(script_encoder), decode_workers=0, videos_per_part=2)
    first = extract(inputs, store, config, bar=False)
    assert (first.ok, first.failed, first.skipped) == (6, 0, 0)
    before = store_snapshot(store)
    assert sum(name.startswith("parts/") and name.endswith("_complete.json") for name in before) == 3

    calls = count_calls(monkeypatch, "encode_clips", "decode_inline", "decode_in_workers")
    again = extract(inputs, store, config, bar=False)
    assert (again.total, again.skipped, again.ok, again.failed) == (6, 6, 0, 0)
    assert (again.motion_clips, again.static_clips) == (0, 0)
    assert calls == Counter(), "a rerun decoded or encoded something"
    assert store_snapshot(store) == before, "a rerun changed the store"


def test_changed_files_are_extracted_again(
    videos: Path, script_encoder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store.zarr"
    inputs = load_inputs(None, videos, None)
    config = ExtractConfig(**encoder_config_kwargs(script_encoder), decode_workers=0, videos_per_part=2)
    extract(inputs, store, config, bar=False)
    before = LatentCache.open(store).read()
    motion_before, _ = clip_counts(before)

    # clip1 gets clip4's content (another size); clip3 is only touched (same bytes, newer mtime).
    shutil.copyfile(videos / "clip4.mp4", videos / "clip1.mp4")
    stat = (videos / "clip3.mp4").stat()
    os.utime(videos / "clip3.mp4", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    calls = count_calls(monkeypatch, "encode_clips")
    result = extract(inputs, store, config, bar=False)
    assert (result.skipped, result.ok, result.failed) == (4, 2, 0)
    assert calls["encode_clips"] > 0

    after = LatentCache.open(store).read()
    frames = dict(
        zip(after.videos["video_id"].to_pylist(), after.videos["num_frames"].to_pylist(), strict=True)
    )
    assert frames["clip1"] == frames["clip4"] == 60
    assert_complete_and_unique(after, frames)
    ids = after.clips["video_id"].to_pylist()
    rows1 = [i for i, v in enumerate(ids) if v == "clip1"]
    rows4 = [i for i, v in enumerate(ids) if v == "clip4"]
    assert len(rows1) == 3 != motion_before["clip1"]
    np.testing.assert_allclose(after.motion[rows1], after.motion[rows4], atol=1e-6)
    size = {r["video_id"]: (r["size"], r["mtime_ns"]) for r in after.videos.to_pylist()}
    assert size["clip1"][0] == (videos / "clip1.mp4").stat().st_size
    assert size["clip3"][1] == (videos / "clip3.mp4").stat().st_mtime_ns
    rows3_before = [i for i, v in enumerate(before.clips["video_id"].to_pylist()) if v == "clip3"]
    rows3 = [i for i, v in enumerate(ids) if v == "clip3"]
    np.testing.assert_allclose(after.motion[rows3], before.motion[rows3_before], atol=1e-6)


def test_a_damaged_part_is_not_trusted_and_its_videos_are_redone(
    videos: Path, script_encoder: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store.zarr"
    inputs = load_inputs(None, videos, None)
    config = ExtractConfig(**encoder_config_kwargs(script_encoder), decode_workers=0, videos_per_part=2)
    extract(inputs, store, config, bar=False)
    part = sorted(p for p in (store / "parts").iterdir() if p.is_dir())[0]
    damaged = set(pq.read_table(part / "videos.parquet")["video_id"].to_pylist())
    clips_file = part / "clips.parquet"
    clips_file.write_bytes(clips_file.read_bytes()[:-20])  # present, but not what the marker says

    view = LatentCache.open(store).read()
    assert set(view.videos["video_id"].to_pylist()).isdisjoint(damaged)
    result = extract(inputs, store, config, bar=False)
    assert (result.ok, result.skipped) == (2, 4)
    view = LatentCache.open(store).read()
    frames = dict(
        zip(view.videos["video_id"].to_pylist(), view.videos["num_frames"].to_pylist(), strict=True)
    )
    assert damaged <= set(frames)
    assert_complete_and_unique(view, frames)
    assert pq.read_table(part / "clips.parquet").num_rows > 0  # the unit was written again in place


# --------------------------------------------------------------------------- kill -9


def _parts(store: Path) -> tuple[int, int]:
    """(complete parts, parts being written) in the store right now."""
    try:
        names = os.listdir(store / "parts")
    except FileNotFoundError:
        return 0, 0
    complete = sum((store / "parts" / n / "_complete.json").exists() for n in names if not n.startswith("."))
    return complete, sum(n.startswith(".tmp-") for n in names)


MOMENTS: dict[str, Callable[[Path], bool]] = {
    "before-any-part": lambda store: (store / "zarr.json").exists(),
    "after-the-first-part": lambda store: _parts(store)[0] >= 1,
    "while-a-part-is-written": lambda store: _parts(store)[1] >= 1 or _parts(store)[0] >= 3,
}


@pytest.fixture(scope="module")
def kill_manifest(tiny_benchmark: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 videos of the tiny benchmark (trimmed action clips and a longer one)."""
    table = read_manifest(tiny_benchmark / "manifest.parquet").slice(0, 12)
    path = tmp_path_factory.mktemp("kill") / "manifest.parquet"
    write_manifest(table, path)
    return path


def _kill_at(moment: str, manifest: Path, store: Path, encoder: Path) -> None:
    """Run `aam-pipeline extract` in a fresh process; SIGKILL it (not its workers) at `moment`."""
    import psutil

    command = [sys.executable, "-m", "cli.main", "extract", "--manifest", str(manifest), "--out", str(store)]
    command += ["--encoder", f"torchscript:{encoder}", "--crop", "32", "--device", "cpu"]
    command += ["--videos-per-part", "2", "--decode-workers", "1"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    reached = MOMENTS[moment]
    deadline = time.monotonic() + 120
    while not reached(store):
        assert proc.poll() is None, f"extract ended before {moment}: {proc.stderr.read().decode()[-2000:]}"  # type: ignore[union-attr]
        assert time.monotonic() < deadline, f"{moment} not reached in 120 s"
        time.sleep(0.005)
    workers = psutil.Process(proc.pid).children(recursive=True)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    # Its decode workers notice that their parent is gone and exit by themselves: no orphans.
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, f"decode workers outlived their parent: {alive}"


def _check_kill_and_resume(moment: str, manifest: Path, store: Path, encoder: Path) -> None:
    _kill_at(moment, manifest, store, encoder)
    inputs = read_manifest(manifest)
    frames = dict(zip(inputs["video_id"].to_pylist(), inputs["num_frames"].to_pylist(), strict=True))

    view = LatentCache.open(store).read()  # readable: only complete parts count
    done = view.videos["video_id"].to_pylist()
    assert len(done) < len(frames), "the run was not killed midway"
    assert len(done) % 2 == 0  # whole work units only
    assert_complete_and_unique(view, {v: frames[v] for v in done})

    config = ExtractConfig(**encoder_config_kwargs(encoder), decode_workers=0, videos_per_part=2)
    result = extract(inputs, store, config, bar=False)
    assert (result.skipped, result.ok, result.failed) == (len(done), len(frames) - len(done), 0)
    assert_complete_and_unique(LatentCache.open(store).read(), frames)
    assert not [n for n in os.listdir(store / "parts") if n.startswith(".tmp-")]


def test_kill_minus_nine_then_rerun(kill_manifest: Path, script_encoder: Path, tmp_path: Path) -> None:
    _check_kill_and_resume("after-the-first-part", kill_manifest, tmp_path / "store.zarr", script_encoder)


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["before-any-part", "while-a-part-is-written"])
def test_kill_minus_nine_at_other_moments(
    moment: str, kill_manifest: Path, script_encoder: Path, tmp_path: Path
) -> None:
    _check_kill_and_resume(moment, kill_manifest, tmp_path / "store.zarr", script_encoder)
