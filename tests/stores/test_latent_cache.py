"""Latent cache: every test runs on a local folder and on fsspec memory:// (one suite for all backends)."""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pytest
import zarr

from stores import _parts, _view
from stores.errors import IncompatibleStoreError, SchemaVersionError, StoreError
from stores.latent_cache import (
    CLIPS_SCHEMA,
    ERRORS_SCHEMA,
    STATIC_CLIPS_SCHEMA,
    CacheAttrs,
    LatentCache,
    PartData,
)

ROOT = Path(__file__).resolve().parents[2]
DIM = 4
ATTRS = CacheAttrs(
    encoder_id="tiny",
    weights_sha256="ab" * 32,
    dim=DIM,
    pooling="mean-tokens",
    preprocessing={"frames_per_clip": 16, "frame_step": 2, "crop": 112, "mean": (0.485, 0.456, 0.406)},
)


# --- fixtures and synthetic parts ------------------------------------------------------------------------


@pytest.fixture(params=["local", "memory"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "local":
        yield str(tmp_path / "cache.zarr")
        return
    location = f"memory://aam-tests-{uuid.uuid4().hex}/cache.zarr"
    yield location
    fs, path = fsspec.core.url_to_fs(location)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def _fs(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, path = fsspec.core.url_to_fs(url)
    return fs, path.rstrip("/")


def _put(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(path, data)


def _snapshot(url: str) -> dict[str, bytes]:
    fs, path = _fs(url)
    return {name: fs.cat_file(name) for name in sorted(fs.find(path))}


def emb(video_id: str, index: int, salt: str, shape: tuple[int, ...] = (DIM,)) -> np.ndarray:
    """A deterministic embedding that tells which part wrote which clip."""
    seed = zlib.crc32(f"{video_id}/{index}/{salt}".encode())
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def make_part(
    video_ids: Sequence[str],
    *,
    salt: str = "",
    clips: int = 3,
    statics: int = 2,
    failed: Sequence[str] = (),
    reason: str = "decode failed",
    mtime_ns: int = 1,
    tokens: tuple[int, int] | None = None,
    extra: dict[str, list[object]] | None = None,
) -> PartData:
    """One work unit: `clips` motion and `statics` static clips per ok video, rows shuffled."""
    ok = [v for v in video_ids if v not in failed]
    all_ids = list(video_ids)
    videos = {
        "video_id": all_ids,
        "path": [f"/videos/{v}.mp4" for v in all_ids],
        "split": ["train"] * len(all_ids),
        "size": [None if v in failed else 1000 for v in all_ids],
        "mtime_ns": [None if v in failed else mtime_ns for v in all_ids],
        "kind": ["video"] * len(all_ids),
        "status": ["error" if v in failed else "ok" for v in all_ids],
        "num_frames": [None if v in failed else 64 for v in all_ids],
        "fps": [None if v in failed else 25.0 for v in all_ids],
        **(extra or {}),
    }
    clip_rows = [(v, i) for v in ok for i in range(clips)]
    static_rows = [(v, i) for v in ok for i in range(statics)]
    rng = np.random.default_rng(len(clip_rows))  # writers may hand rows over in any order
    clip_rows = [clip_rows[i] for i in rng.permutation(len(clip_rows))]
    static_rows = [static_rows[i] for i in rng.permutation(len(static_rows))]
    clip_table = pa.table(
        {
            "video_id": [v for v, _ in clip_rows],
            "clip_index": [i for _, i in clip_rows],
            "frame_start": [8 * i for _, i in clip_rows],
            "frame_stop": [8 * i + 32 for _, i in clip_rows],
            "frame_step": [2] * len(clip_rows),
            "t_start_s": [0.32 * i for _, i in clip_rows],
            "t_end_s": [0.32 * i + 1.28 for _, i in clip_rows],
        }
    )
    static_table = pa.table(
        {
            "video_id": [v for v, _ in static_rows],
            "static_index": [i for _, i in static_rows],
            "frame_index": [10 * i for _, i in static_rows],
            "t_s": [0.4 * i for _, i in static_rows],
        }
    )
    return PartData(
        videos=pa.table(videos),
        clips=clip_table,
        motion=_stack([emb(v, i, salt) for v, i in clip_rows], (DIM,)),
        static_clips=static_table,
        static=_stack([emb(v, 100 + i, salt) for v, i in static_rows], (DIM,)),
        errors=pa.table(
            {
                "video_id": list(failed),
                "path": [f"/videos/{v}.mp4" for v in failed],
                "reason": [reason] * len(failed),
            },
            schema=ERRORS_SCHEMA,
        ),
        tokens=None
        if tokens is None
        else _stack([emb(v, i, salt + "tok", tokens) for v, i in clip_rows], tokens),
    )


def _stack(rows: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    return np.stack(rows) if rows else np.zeros((0, *shape), np.float32)


def _expected_motion(view_clips: pa.Table, salt_of: dict[str, str]) -> np.ndarray:
    ids, index = view_clips["video_id"].to_pylist(), view_clips["clip_index"].to_pylist()
    return _stack([emb(v, i, salt_of[v]) for v, i in zip(ids, index, strict=True)], (DIM,))


# --- creating and opening --------------------------------------------------------------------------------


def test_layout_on_disk(url: str) -> None:
    cache = LatentCache.create_or_open(url, ATTRS)
    assert cache.write_part("p1", make_part(["a", "b"], failed=["b"]))
    fs, path = _fs(url)
    names = {name[len(path) + 1 :] for name in fs.find(path)}
    for expected in ("zarr.json", "store.json", "parts/p1/zarr.json", "parts/p1/motion/zarr.json"):
        assert expected in names
    for table in ("clips", "static", "videos", "errors"):
        assert f"parts/p1/{table}.parquet" in names
    marker = json.loads(fs.cat_file(f"{path}/parts/p1/_complete.json"))
    assert marker["counts"] == {"motion_clips": 3, "static_clips": 2, "videos": 2, "errors": 1}
    stored = json.loads(fs.cat_file(f"{path}/store.json"))
    assert stored["schema_version"] == 1 and stored["encoder_id"] == "tiny" and stored["dim"] == DIM


def test_reopen_with_same_attrs(url: str) -> None:
    LatentCache.create_or_open(url, ATTRS)
    # tuples in preprocessing compare equal to the lists that come back from JSON
    again = LatentCache.create_or_open(url, ATTRS.model_copy())
    assert again.attrs == ATTRS and LatentCache.open(url).attrs == ATTRS


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"encoder_id": "videomae:/models/vmae-b"}, "encoder_id"),
        ({"dim": 8}, "dim"),
        ({"dtype": "float16"}, "dtype"),
        ({"tokens": (8, DIM)}, "tokens"),
        ({"preprocessing": {**ATTRS.preprocessing, "frame_step": 4}}, "preprocessing.frame_step"),
    ],
)
def test_create_or_open_refuses_other_attrs_and_changes_nothing(
    url: str, change: dict[str, object], field: str
) -> None:
    LatentCache.create_or_open(url, ATTRS).write_part("p1", make_part(["a"]))
    before = _snapshot(url)
    with pytest.raises(IncompatibleStoreError, match=rf"{field}: stored .*requested .*another --out"):
        LatentCache.create_or_open(url, ATTRS.model_copy(update=change))
    assert _snapshot(url) == before


def test_open_missing_store(url: str) -> None:
    with pytest.raises(StoreError, match="no latent cache at"):
        LatentCache.open(url)


def test_newer_schema_is_refused(url: str) -> None:
    LatentCache.create_or_open(url, ATTRS)
    fs, path = _fs(url)
    meta = json.loads(fs.cat_file(f"{path}/zarr.json"))
    meta["attributes"]["schema_version"] = 2
    fs.pipe_file(f"{path}/zarr.json", json.dumps(meta).encode())
    with pytest.raises(SchemaVersionError, match=r"newer aam-pipeline.*upgrade"):
        LatentCache.open(url)
    with pytest.raises(SchemaVersionError):
        LatentCache.create_or_open(url, ATTRS)


def test_a_part_marker_with_a_newer_schema_is_refused_not_skipped(url: str) -> None:
    cache = LatentCache.create_or_open(url, ATTRS)
    cache.write_part("p1", make_part(["a"]))
    cache.write_part("p2", make_part(["b"]))
    fs, path = _fs(url)
    marker = json.loads(fs.cat_file(f"{path}/parts/p2/_complete.json"))
    marker["schema_version"] = 2
    marker["something_new"] = {"x": 1}
    fs.pipe_file(f"{path}/parts/p2/_complete.json", json.dumps(marker).encode())
    before = _snapshot(url)
    for call in (cache.read, cache.completed_videos, cache.cleanup):
        with pytest.raises(SchemaVersionError, match=r"part p2 .*schema_version 2.*upgrade aam-pipeline"):
            call()
    with pytest.raises(SchemaVersionError):
        cache.write_part("p2", make_part(["b"]))
    assert _snapshot(url) == before  # not cleaned up: a newer writer's good work


def test_a_part_is_fsynced_before_the_rename_that_commits_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stores import _atomic

    events: list[tuple[str, str]] = []
    real_tree, real_dir, real_rename = _atomic.fsync_tree, _atomic.fsync_dir, os.rename
    monkeypatch.setattr(_atomic, "fsync_tree", lambda p: (events.append(("tree", p)), real_tree(p))[1])
    monkeypatch.setattr(_atomic, "fsync_dir", lambda p: (events.append(("dir", p)), real_dir(p))[1])
    monkeypatch.setattr(os, "rename", lambda a, b: (events.append(("rename", str(b))), real_rename(a, b))[1])
    cache = LatentCache.create_or_open(str(tmp_path / "c.zarr"), ATTRS)
    events.clear()
    cache.write_part("p1", make_part(["a"]))
    parts = str(tmp_path / "c.zarr" / "parts")
    tmp = events[0][1]
    assert events[0][0] == "tree" and os.path.basename(tmp).startswith(".tmp-p1-")
    after = [(kind, p) for kind, p in events[1:] if not p.startswith(tmp)]  # fsync_tree's own dirs
    assert after == [("rename", os.path.join(parts, "p1")), ("dir", parts)]


def test_refuses_a_folder_that_is_not_a_cache(url: str) -> None:
    fs, path = _fs(url)
    _put(fs, f"{path}/holiday.mp4", b"x")
    with pytest.raises(StoreError, match="not a latent cache"):
        LatentCache.create_or_open(url, ATTRS)
    assert _snapshot(url) == {f"{path}/holiday.mp4": b"x"}
    fs.rm(f"{path}/holiday.mp4")
    zarr.create_group(url)
    with pytest.raises(StoreError, match="not a latent cache"):
        LatentCache.open(url)
    fs.pipe_file(f"{path}/zarr.json", b"{broken")
    with pytest.raises(StoreError, match="not a readable latent cache"):
        LatentCache.create_or_open(url, ATTRS)


def test_part_id_for_is_a_content_key() -> None:
    key = LatentCache.part_id_for(["b", "a", "c"])
    assert key == LatentCache.part_id_for(["c", "b", "a"]) != LatentCache.part_id_for(["a", "b"])
    assert len(key) == 16 and int(key, 16) >= 0


def test_file_urls_are_local_stores(tmp_path: Path) -> None:
    LatentCache.create_or_open(f"file://{tmp_path}/c", ATTRS).write_part("p1", make_part(["a"]))
    assert LatentCache.open(tmp_path / "c").read().videos["video_id"].to_pylist() == ["a"]


def test_cache_survives_pickling(url: str) -> None:
    cache = pickle.loads(pickle.dumps(LatentCache.create_or_open(url, ATTRS)))
    assert cache.write_part("p1", make_part(["a"]))
    assert LatentCache.open(url).read().clips.num_rows == 3


# --- writing and reading ---------------------------------------------------------------------------------


def test_round_trip_values_order_and_alignment(url: str) -> None:
    cache = LatentCache.create_or_open(url, ATTRS)
    assert cache.write_part("p2", make_part(["d", "b"], salt="x"))
    assert cache.write_part("p1", make_part(["c", "a", "e"], salt="y", failed=["e"], reason="corrupt"))
    view = LatentCache.open(url).read()
    assert view.attrs == ATTRS
    assert view.videos["video_id"].to_pylist() == ["a", "b", "c", "d"]
    assert view.videos["split"].to_pylist() == ["train"] * 4
    assert view.clips.schema == CLIPS_SCHEMA and view.static_clips.schema == STATIC_CLIPS_SCHEMA
    assert view.clips["video_id"].to_pylist() == [v for v in "abcd" for _ in range(3)]
    assert view.clips["clip_index"].to_pylist() == [0, 1, 2] * 4
    assert view.clips["frame_stop"].to_pylist() == [32, 40, 48] * 4
    salt_of = {"a": "y", "c": "y", "b": "x", "d": "x"}
    assert view.motion.dtype == np.float32 and view.motion.shape == (12, DIM)
    np.testing.assert_array_equal(view.motion, _expected_motion(view.clips, salt_of))
    static_ids, static_index = (
        view.static_clips["video_id"].to_pylist(),
        view.static_clips["static_index"].to_pylist(),
    )
    assert static_ids == [v for v in "abcd" for _ in range(2)]
    expected_static = [emb(v, 100 + i, salt_of[v]) for v, i in zip(static_ids, static_index, strict=True)]
    np.testing.assert_array_equal(view.static, np.stack(expected_static))
    assert view.tokens is None
    assert view.errors.to_pylist() == [{"video_id": "e", "path": "/videos/e.mp4", "reason": "corrupt"}]


def test_tables_only_read(url: str) -> None:
    cache = LatentCache.create_or_open(url, ATTRS)
    cache.write_part("p1", make_part(["a", "b"]))
    view = cache.read(arrays=False)
    assert view.clips.num_rows == 6 and view.motion.shape == (0, DIM) and view.static.shape == (0, DIM)


def test_read_a_subset_of_videos(url: str) -> None:
    cache = LatentCache.create_or_open(url, ATTRS)
    cache.write_part("p2", make_part(["d", "b"], salt="x"))
    cache.write_part("p1", make_part(["c", "a"], salt="y"))
    full = cache.read()
    some = cache.read(videos=["b", "c", "zz"])  # an unknown id is simply absent
    assert some.videos["video_id"].to_pylist() == ["b", "c"]
    assert some.clips["video_id"].to_pylist() == [v for v in "bc" for _ in range(3)]
    rows = [i for i, v in enumerate(full.clips["video_id"].to_pylist()) if v in "bc"]
    np.testing.assert_array_equal(some.motion, full.motion[rows])
    static_rows = [i for i, v in enumerate(full.static_clips["video_id"].to_pylist()) if v in "bc"]
    np.testing.assert_array_equal(some.static, full.static[static_rows])
    assert cache.read(videos=[]).motion.shape == (0, DIM)


def test_empty_store_reads_empty(url: str) -> None:
    view = LatentCache.create_or_open(url, ATTRS).read()
    assert view.clips.num_rows == view.videos.num_rows == view.errors.num_rows == 0
    assert view.motion.shape == (0, DIM) and view.clips.schema == CLIPS_SCHEMA
    assert list(LatentCache.open(url).iter_motion(10)) == []


def test_tokens_and_float16(url: str) -> None:
    attrs = ATTRS.model_copy(update={"dtype": "float16", "tokens": (3, DIM)})
    cache = LatentCache.create_or_open(url, attrs)
    cache.write_part("p1", make_part(["b", "a"], tokens=(3, DIM)))
    view = cache.read()
    assert view.motion.dtype == np.float32 and view.tokens is not None and view.tokens.shape == (6, 3, DIM)
    ids, index = view.clips["video_id"].to_pylist(), view.clips["clip_index"].to_pylist()
    expected = np.stack([emb(v, i, "tok", (3, DIM)) for v, i in zip(ids, index, strict=True)])
    np.testing.assert_allclose(view.tokens, expected.astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(view.motion, _expected_motion(view.clips, {"a": "", "b": ""}), rtol=1e-3)
    with pytest.raises(StoreError, match="has none"):
        cache.write_part("p2", make_part(["c"]))
    too_big = make_part(["c"], tokens=(3, DIM))
    too_big.motion[0, 0] = 1e6
    with pytest.raises(StoreError, match="'c' is not finite as float16"):
        cache.write_part("p3", too_big)


def test_parts_with_other_manifest_columns_and_images_only(url: str) -> None:
    cache = LatentCache.create_or_open(url, ATTRS)
    cache.write_part("p1", make_part(["a"], extra={"action": ["run"]}))
    cache.write_part("p2", make_part(["img"], clips=0, extra={"private_gender": [1]}))
    cache.write_part("p3", make_part(["x", "y"], failed=["x", "y"]))
    view = cache.read()
    assert view.videos["action"].to_pylist() == ["run", None]
    assert view.videos["private_gender"].to_pylist() == [None, 1]
    assert view.clips["video_id"].to_pylist() == ["a"] * 3
    assert view.static_clips["video_id"].to_pylist() == ["a", "a", "img", "img"]
    assert view.errors["video_id"].to_pylist() == ["x", "y"]


def test_losing_a_race_to_another_writer_of_the_same_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = LatentCache.create_or_open(tmp_path / "c", ATTRS)
    cache.write_part("p1", make_part(["a"], salt="first"))
    real = LatentCache._is_trusted
    calls: list[str] = []

    def first_check_misses(self: LatentCache, folder: str, part_id: str) -> bool:
        calls.append(folder)  # as if the other writer's rename landed just after our first check
        return len(calls) > 1 and real(self, folder, part_id)

    monkeypatch.setattr(LatentCache, "_is_trusted", first_check_misses)
    assert cache.write_part("p1", make_part(["a"], salt="second")) is False
    assert len(calls) == 2
    assert sorted(p.name for p in (tmp_path / "c" / "parts").iterdir()) == ["p1", "zarr.json"]
    view = cache.read()
    np.testing.assert_array_equal(view.motion, _expected_motion(view.clips, {"a": "first"}))


def test_write_part_is_idempotent(url: str) -> None:
    cache = LatentCache.create_or_open(url, ATTRS)
    part = make_part(["a", "b"])
    assert cache.write_part("p1", part) is True
    before = _snapshot(url)
    assert cache.write_part("p1", make_part(["a", "b"], salt="other")) is False
    assert _snapshot(url) == before


BAD_PARTS = {
    "motion rows": (lambda p: setattr(p, "motion", p.motion[:-1]), "shape"),
    "motion dim": (lambda p: setattr(p, "motion", np.zeros((len(p.motion), DIM + 1), np.float32)), "shape"),
    "motion ints": (lambda p: setattr(p, "motion", p.motion.astype(np.int64)), "floating-point"),
    "motion nan": (lambda p: p.motion.__setitem__((0, 0), np.nan), "not finite"),
    "static rows": (lambda p: setattr(p, "static", p.static[:1]), "static has shape"),
    "error row missing": (lambda p: setattr(p, "errors", p.errors.slice(0, 0)), "exactly one row"),
    "clip of failed video": (
        lambda p: setattr(p, "clips", _set_column(p.clips, "video_id", "c")),
        "not 'ok'",
    ),
    "missing column": (lambda p: setattr(p, "clips", p.clips.drop_columns(["t_end_s"])), "t_end_s"),
    "duplicate clip": (lambda p: setattr(p, "clips", _dup_clip(p.clips)), "appears twice"),
    "repeated column": (
        lambda p: setattr(p, "videos", p.videos.append_column("size", p.videos["size"])),
        "once",
    ),
    "bad status": (lambda p: setattr(p, "videos", _set_column(p.videos, "status", "done")), "status"),
    "unexpected tokens": (
        lambda p: setattr(p, "tokens", np.zeros((len(p.motion), 2, DIM), np.float32)),
        "keeps none",
    ),
}


def _dup_clip(clips: pa.Table) -> pa.Table:
    rows = clips.to_pylist()
    rows[1] = {**rows[0]}
    return pa.Table.from_pylist(rows, schema=clips.schema)


def _set_column(table: pa.Table, name: str, value: str) -> pa.Table:
    return table.set_column(table.column_names.index(name), name, pa.array([value] * table.num_rows))


@pytest.mark.parametrize("case", sorted(BAD_PARTS))
def test_write_part_validates(tmp_path: Path, case: str) -> None:
    cache = LatentCache.create_or_open(tmp_path / "c", ATTRS)
    part = make_part(["a", "b", "c"], failed=["c"])
    mutate, message = BAD_PARTS[case]
    mutate(part)
    with pytest.raises(StoreError, match=message):
        cache.write_part("p1", part)
    assert cache.read().clips.num_rows == 0 and cache.cleanup() == 0


def test_write_part_refuses_bad_part_ids(tmp_path: Path) -> None:
    cache = LatentCache.create_or_open(tmp_path / "c", ATTRS)
    for bad in ("../x", ".tmp-x", "a/b", ""):
        with pytest.raises(StoreError, match="part id"):
            cache.write_part(bad, make_part(["a"]))


# --- crashes -------------------------------------------------------------------------------------------


def _damage_marker_counts(fs: fsspec.AbstractFileSystem, part: str) -> None:
    marker = json.loads(fs.cat_file(f"{part}/_complete.json"))
    marker["counts"]["motion_clips"] += 1
    fs.pipe_file(f"{part}/_complete.json", json.dumps(marker).encode())


def _truncate_chunk(fs: fsspec.AbstractFileSystem, part: str) -> None:
    chunk = sorted(name for name in fs.find(f"{part}/motion") if "/c/" in name)[0]
    fs.pipe_file(chunk, fs.cat_file(chunk)[:-3])


def _drop_table(fs: fsspec.AbstractFileSystem, part: str) -> None:
    fs.rm(f"{part}/clips.parquet")


DAMAGES = {
    "no marker": lambda fs, part: fs.rm(f"{part}/_complete.json"),
    "garbage marker": lambda fs, part: fs.pipe_file(f"{part}/_complete.json", b"{not json"),
    "wrong counts": _damage_marker_counts,
    "truncated array": _truncate_chunk,
    "missing table": _drop_table,
}


def test_readers_ignore_damaged_parts_and_cleanup_removes_them(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = LatentCache.create_or_open(url, ATTRS)
    cache.write_part("good", make_part(["a"], salt="g"))
    fs, path = _fs(url)
    damaged = {}
    for damage, apply in DAMAGES.items():
        part_id = damage.replace(" ", "-")
        damaged[part_id] = make_part(["a", part_id], salt=part_id)
        cache.write_part(part_id, damaged[part_id])
        apply(fs, f"{path}/parts/{part_id}")
    _put(fs, f"{path}/parts/.tmp-good-123/motion/zarr.json", b"{}")  # a writer killed mid-way

    with caplog.at_level(logging.INFO, logger="stores.latent_cache"):
        view = cache.read()
    assert view.videos["video_id"].to_pylist() == ["a"]
    np.testing.assert_array_equal(view.motion, _expected_motion(view.clips, {"a": "g"}))
    assert sum("ignoring part" in r.message for r in caplog.records) == len(DAMAGES)
    assert cache.completed_videos() == {"a": (1000, 1)}
    assert [t.num_rows for t, _ in cache.iter_motion(2)] == [2, 1]

    assert cache.cleanup() == len(DAMAGES) + 1
    assert sorted(fs.ls(f"{path}/parts", detail=False)) == [f"{path}/parts/good", f"{path}/parts/zarr.json"]
    for part_id, part in damaged.items():
        assert cache.write_part(part_id, part) is True
    assert cache.read().videos["video_id"].to_pylist() == sorted(["a", *damaged])


def test_rewrite_over_an_incomplete_part(url: str) -> None:
    cache = LatentCache.create_or_open(url, ATTRS)
    cache.write_part("p1", make_part(["a"], salt="old"))
    fs, path = _fs(url)
    fs.rm(f"{path}/parts/p1/_complete.json")
    assert cache.write_part("p1", make_part(["a"], salt="new")) is True
    view = cache.read()
    np.testing.assert_array_equal(view.motion, _expected_motion(view.clips, {"a": "new"}))


WRITER = """
import sys
from tests.stores.test_latent_cache import ATTRS, make_part
from stores.latent_cache import LatentCache
cache = LatentCache.create_or_open(sys.argv[1], ATTRS)
for i in range(10_000):
    cache.write_part(f"p{i:05d}", make_part([f"v{i}-{j}" for j in range(20)], salt="k", clips=20))
"""


def test_kill_minus_nine_leaves_a_readable_store(tmp_path: Path) -> None:
    url = str(tmp_path / "cache.zarr")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, url], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    parts = tmp_path / "cache.zarr" / "parts"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not list(parts.glob("p*")) and writer.poll() is None:
        time.sleep(0.005)
    time.sleep(0.05)  # land somewhere inside a later write
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert list(parts.glob("p*")), "the writer never completed a part"

    cache = LatentCache.open(url)
    view = cache.read()
    assert view.videos.num_rows == len(cache.completed_videos()) == 20 * len(list(parts.glob("p*")))
    assert view.clips.num_rows == 20 * view.videos.num_rows
    np.testing.assert_array_equal(
        view.motion, _expected_motion(view.clips, dict.fromkeys(view.videos["video_id"].to_pylist(), "k"))
    )
    cache.cleanup()
    assert not [p for p in parts.iterdir() if p.name.startswith(".tmp-")]
    assert cache.read().clips.num_rows == view.clips.num_rows


# --- several parts: re-runs, errors, streaming --------------------------------------------------------


def test_a_rerun_unit_adds_no_duplicates(url: str) -> None:
    cache = LatentCache.create_or_open(url, ATTRS)
    # written out of order: the smallest part_id wins whatever the order of writes
    cache.write_part("p2", make_part(["b", "c"], salt="two"))
    cache.write_part("p1", make_part(["a", "b"], salt="one"))
    view = cache.read()
    assert view.videos["video_id"].to_pylist() == ["a", "b", "c"]
    assert view.clips["video_id"].to_pylist() == [v for v in "abc" for _ in range(3)]
    np.testing.assert_array_equal(
        view.motion, _expected_motion(view.clips, {"a": "one", "b": "one", "c": "two"})
    )
    assert view.static.shape == (6, DIM)
    assert cache.completed_videos() == {v: (1000, 1) for v in "abc"}


def test_a_changed_file_is_replaced_by_its_newer_extraction(url: str) -> None:
    cache = LatentCache.create_or_open(url, ATTRS)
    cache.write_part("p2", make_part(["a", "b"], salt="old", mtime_ns=1))
    cache.write_part("p1", make_part(["b"], salt="new", mtime_ns=2))
    view = cache.read()
    np.testing.assert_array_equal(view.motion, _expected_motion(view.clips, {"a": "old", "b": "new"}))
    assert cache.completed_videos() == {"a": (1000, 1), "b": (1000, 2)}


def test_errors_hold_only_videos_whose_latest_attempt_failed(url: str) -> None:
    cache = LatentCache.create_or_open(url, ATTRS)
    cache.write_part(
        "p1", make_part(["fixed", "broken", "flaky"], failed=["fixed", "broken"], reason="first")
    )
    cache.write_part("p2", make_part(["fixed", "broken"], failed=["broken"], reason="second"))
    cache.write_part("p3", make_part(["flaky"], failed=["flaky"], reason="later"))
    view = cache.read()
    # flaky's latest attempt failed: its older rows are no longer served (one version per video)
    assert view.videos["video_id"].to_pylist() == ["fixed"]
    assert set(view.clips["video_id"].to_pylist()) == {"fixed"}
    assert view.errors.to_pylist() == [
        {"video_id": "broken", "path": "/videos/broken.mp4", "reason": "second"},
        {"video_id": "flaky", "path": "/videos/flaky.mp4", "reason": "later"},
    ]
    assert set(cache.completed_videos()) == {"fixed"}


def test_iter_motion_streams_what_read_returns(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_parts, "MAX_CHUNK_ROWS", 4)  # several zarr blocks per part
    monkeypatch.setattr(_view, "BLOCK_CACHE_BYTES", 3 * 4 * DIM * 4)  # and evictions
    cache = LatentCache.create_or_open(url, ATTRS)
    cache.write_part("p1", make_part(["a", "d", "g"], salt="1", clips=5))
    cache.write_part("p2", make_part(["b", "e", "d"], salt="2", clips=5))
    cache.write_part("p3", make_part(["c", "f", "h"], salt="3", clips=5, failed=["h"]))
    view = cache.read()
    assert view.clips.num_rows == 5 * 7
    for chunk_rows in (1, 5, 1000):
        chunks = list(cache.iter_motion(chunk_rows))
        assert all(len(t) == len(m) <= chunk_rows for t, m in chunks)
        assert pa.concat_tables([t for t, _ in chunks]).equals(view.clips)
        np.testing.assert_array_equal(np.concatenate([m for _, m in chunks]), view.motion)
    with pytest.raises(StoreError, match="chunk_rows"):
        cache.iter_motion(0)


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_part_damaged_after_a_first_read_is_no_longer_trusted(url: str, damage: str) -> None:
    """What a first read checked is reused (the parts are not checked or read again) until a part's
    files change."""
    cache = LatentCache.create_or_open(url, ATTRS)
    cache.write_part("good", make_part(["a"], salt="g"))
    cache.write_part("later", make_part(["b"], salt="l"))
    assert cache.completed_videos() == {"a": (1000, 1), "b": (1000, 1)}
    calls: list[str] = []
    real = _parts.trusted_marker

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(str(args[2]))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as m:
        m.setattr(_parts, "trusted_marker", counted)
        assert LatentCache.open(url).completed_videos() == {"a": (1000, 1), "b": (1000, 1)}
        assert calls == []  # nothing checked again
        fs, path = _fs(url)
        DAMAGES[damage](fs, f"{path}/parts/later")
        assert LatentCache.open(url).completed_videos() == {"a": (1000, 1)}
        assert calls == ["later"]
        assert LatentCache.open(url).read().videos["video_id"].to_pylist() == ["a"]


def test_iter_motion_tokens_streams_what_read_returns(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_parts, "MAX_CHUNK_ROWS", 4)
    attrs = ATTRS.model_copy(update={"tokens": (3, DIM)})
    cache = LatentCache.create_or_open(url, attrs)
    cache.write_part("p1", make_part(["a", "d"], salt="1", clips=5, tokens=(3, DIM)))
    cache.write_part("p2", make_part(["b", "c"], salt="2", clips=5, tokens=(3, DIM)))
    view = cache.read()
    assert view.tokens is not None
    chunks = list(cache.iter_motion_tokens(3))
    assert all(len(t) == len(m) == len(k) <= 3 for t, m, k in chunks)
    assert pa.concat_tables([t for t, _, _ in chunks]).equals(view.clips)
    np.testing.assert_array_equal(np.concatenate([m for _, m, _ in chunks]), view.motion)
    np.testing.assert_array_equal(np.concatenate([k for _, _, k in chunks]), view.tokens)
    with pytest.raises(StoreError, match="no temporal tokens"):
        LatentCache.create_or_open(f"{url}-plain", ATTRS).iter_motion_tokens(3)


def test_read_without_static_clips(url: str) -> None:
    cache = LatentCache.create_or_open(url, ATTRS)
    cache.write_part("p1", make_part(["a", "b"], clips=2))
    full, motion_only = cache.read(), cache.read(static=False, videos=["b"])
    assert full.static.shape[0] > 0
    assert motion_only.static.shape == (0, DIM) and motion_only.static_clips.num_rows == 0
    np.testing.assert_array_equal(motion_only.motion, full.motion[2:])
    assert motion_only.clips.equals(full.clips.slice(2))
