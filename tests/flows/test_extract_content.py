"""Extraction keyed by content: a fixed input replaces its error, a changed input replaces its rows
(a reader sees one version of each video), a removed input stops being served, and the counts say
what happened. Units of one video each, so a unit's video ids alone never tell two attempts apart."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from flows.extract import ExtractConfig, ExtractResult, extract, load_inputs
from stores.latent_cache import LatentCache
from tests.flows.extract_support import encoder_config_kwargs, store_snapshot


@pytest.fixture
def config(script_encoder: Path) -> ExtractConfig:
    return ExtractConfig(**encoder_config_kwargs(script_encoder), decode_workers=0, videos_per_part=1)


def _run(videos: Path, store: Path, config: ExtractConfig) -> ExtractResult:
    return extract(load_inputs(None, videos, None), store, config, bar=False)


def _counts(result: ExtractResult) -> tuple[int, int, int]:
    return result.skipped, result.ok, result.failed


def _rows(store: Path, video_id: str) -> np.ndarray:
    view = LatentCache.open(store).read()
    ids = np.array(view.clips["video_id"].to_pylist())
    return view.motion[ids == video_id]


def test_a_fixed_input_replaces_its_error(videos: Path, config: ExtractConfig, tmp_path: Path) -> None:
    store = tmp_path / "store.zarr"
    good = (videos / "clip2.mp4").read_bytes()
    (videos / "clip2.mp4").write_bytes(b"not a video")
    assert _counts(_run(videos, store, config)) == (0, 5, 1)
    assert LatentCache.open(store).read().errors["video_id"].to_pylist() == ["clip2"]
    again = _run(videos, store, config)  # still broken: tried again, still one error, nothing new
    assert _counts(again) == (5, 0, 1) and again.parts == []

    (videos / "clip2.mp4").write_bytes(good)  # fixed
    fixed = _run(videos, store, config)
    assert _counts(fixed) == (5, 1, 0) and len(fixed.parts) == 1
    view = LatentCache.open(store).read()
    assert view.errors.num_rows == 0
    assert sorted(view.videos["video_id"].to_pylist()) == [f"clip{k}" for k in range(6)]
    assert len(_rows(store, "clip2")) == 2
    before = store_snapshot(store)
    assert _counts(_run(videos, store, config)) == (6, 0, 0)  # nothing changed: nothing recomputed
    assert store_snapshot(store) == before


def test_a_changed_input_replaces_its_rows(videos: Path, config: ExtractConfig, tmp_path: Path) -> None:
    store = tmp_path / "store.zarr"
    assert _counts(_run(videos, store, config)) == (0, 6, 0)
    old = _rows(store, "clip1")
    shutil.copyfile(videos / "clip4.mp4", videos / "clip1.mp4")  # new content: 60 frames, 3 clips
    changed = _run(videos, store, config)
    assert _counts(changed) == (5, 1, 0) and len(changed.parts) == 1
    new = _rows(store, "clip1")
    assert len(old) == 1 and len(new) == 3, "the old version's rows served beside the new"
    np.testing.assert_allclose(new, _rows(store, "clip4"), atol=1e-6)
    row = next(r for r in LatentCache.open(store).read().videos.to_pylist() if r["video_id"] == "clip1")
    assert (row["size"], row["mtime_ns"]) == (
        os.stat(videos / "clip1.mp4").st_size,
        os.stat(videos / "clip1.mp4").st_mtime_ns,
    )
    assert _counts(_run(videos, store, config)) == (6, 0, 0)


def test_a_changed_input_that_now_fails_is_no_longer_served(
    videos: Path, config: ExtractConfig, tmp_path: Path
) -> None:
    store = tmp_path / "store.zarr"
    _run(videos, store, config)
    (videos / "clip3.mp4").write_bytes(b"broken now")
    assert _counts(_run(videos, store, config)) == (5, 0, 1)
    view = LatentCache.open(store).read()
    assert "clip3" not in view.videos["video_id"].to_pylist()
    assert "clip3" not in view.clips["video_id"].to_pylist()
    assert view.errors["video_id"].to_pylist() == ["clip3"]


def test_a_removed_file_is_an_error_and_a_video_dropped_from_the_manifest_is_kept(
    videos: Path, config: ExtractConfig, tmp_path: Path
) -> None:
    store = tmp_path / "store.zarr"
    _run(videos, store, config)
    inputs = load_inputs(None, videos, None)
    (videos / "clip0.mp4").unlink()  # the file is gone but the manifest still lists it
    assert _counts(extract(inputs, store, config, bar=False)) == (5, 0, 1)
    assert "clip0" not in LatentCache.open(store).read().clips["video_id"].to_pylist()
    (videos / "clip5.mp4").unlink()  # gone from the folder: not an input any more; its rows stay
    assert _counts(_run(videos, store, config)) == (4, 0, 0)
    assert len(_rows(store, "clip5")) == 4
