"""Static clips per split: the test split's videos may get fewer static clips (only the probes read
them); the store records the number per split, and stores made before the setting stay readable."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from flows.extract import (
    ExtractConfig,
    cache_attrs,
    clip_spec,
    extract,
    for_store,
    load_encoder,
    static_frames_of,
)
from stores.errors import IncompatibleStoreError
from stores.latent_cache import LatentCache
from tests.flows.extract_support import encoder_config_kwargs


def _inputs(videos: list[Path]) -> pa.Table:
    splits = ["train", "val", "test", "test", "", "train"]
    return pa.table(
        {
            "video_id": [p.stem for p in videos],
            "path": [str(p) for p in videos],
            "split": splits[: len(videos)],
        }
    )


def test_test_videos_get_their_own_number_of_static_clips(
    small_videos: list[Path], script_encoder: Path, tmp_path: Path
) -> None:
    inputs = _inputs(small_videos)
    config = ExtractConfig(
        **encoder_config_kwargs(script_encoder), static_frames=3, static_frames_test=1, decode_workers=1
    )
    result = extract(inputs, tmp_path / "s.zarr", config, bar=False)
    cache = LatentCache.open(tmp_path / "s.zarr")
    view = cache.read()
    per_video: dict[str, int] = {}
    for vid in view.static_clips.column("video_id").to_pylist():
        per_video[vid] = per_video.get(vid, 0) + 1
    split = dict(zip(inputs["video_id"].to_pylist(), inputs["split"].to_pylist(), strict=True))
    assert per_video == {vid: 1 if split[vid] == "test" else 3 for vid in split}
    assert result.static_clips == view.static.shape[0] == 2 * 1 + 4 * 3
    pre = cache.attrs.preprocessing
    assert pre["static_frames_by_split"] == {"test": 1} and pre["clips"]["static_frames"] == 3
    assert [static_frames_of(pre, s) for s in ("train", "val", "test", "", None)] == [3, 3, 1, 3, 3]
    # A rerun with the same settings resumes; other per-split settings are another store.
    assert extract(inputs, tmp_path / "s.zarr", config, bar=False).skipped == len(small_videos)
    with pytest.raises(IncompatibleStoreError, match="static_frames_by_split"):
        extract(inputs, tmp_path / "s.zarr", config.model_copy(update={"static_frames_test": 2}), bar=False)


def test_a_new_store_gives_test_videos_five_static_clips_by_default(script_encoder: Path) -> None:
    kwargs = encoder_config_kwargs(script_encoder)
    for config, expected in (
        (ExtractConfig(**kwargs), (10, 5)),
        (ExtractConfig(**kwargs, static_frames=3), (3, 3)),
        (ExtractConfig(**kwargs, static_frames=8, static_frames_test=8), (8, 8)),
    ):
        resolved = for_store(config, "/nonexistent/store.zarr")
        encoder = load_encoder(resolved)
        pre = cache_attrs(encoder, clip_spec(resolved, encoder), resolved).preprocessing
        assert (static_frames_of(pre, "train"), static_frames_of(pre, "test")) == expected
        assert ("static_frames_by_split" in pre) == (expected[0] != expected[1])


def test_an_existing_store_keeps_its_own_numbers_when_none_is_given(
    small_videos: list[Path], script_encoder: Path, tmp_path: Path
) -> None:
    """A store made before the per-split default (K for every split, nothing recorded per split) goes on
    with K for its test videos under the default config; an explicit other number is refused."""
    inputs = _inputs(small_videos)
    kwargs = {**encoder_config_kwargs(script_encoder), "decode_workers": 1}
    old = ExtractConfig(**kwargs, static_frames=4, static_frames_test=4)  # what the old default made
    store = tmp_path / "old.zarr"
    extract(inputs.slice(0, 3), store, old, bar=False)
    assert "static_frames_by_split" not in LatentCache.open(store).attrs.preprocessing
    assert for_store(ExtractConfig(**kwargs), store).static_frames_test == 4
    result = extract(inputs, store, ExtractConfig(**kwargs), bar=False)  # the default config
    assert result.skipped == 3 and result.ok == len(small_videos) - 3
    per_video: dict[str, int] = {}
    for vid in LatentCache.open(store).read().static_clips.column("video_id").to_pylist():
        per_video[vid] = per_video.get(vid, 0) + 1
    assert set(per_video.values()) == {4}
    with pytest.raises(IncompatibleStoreError, match="static_frames_by_split"):
        extract(inputs, store, ExtractConfig(**kwargs, static_frames_test=2), bar=False)
    with pytest.raises(IncompatibleStoreError, match="static_frames"):
        extract(inputs, store, ExtractConfig(**kwargs, static_frames=10), bar=False)
