"""Streaming: memory during extraction is bounded by the batch, not by the length of the video."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pyarrow as pa
import pytest

from flows.extract import ExtractConfig, extract
from tests.flows.extract_support import encoder_config_kwargs, make_encoder, write_test_video

SIDE = 64  # decoded frames are 64 x 64 x 3 = 12 KiB


def _peak_bytes(video: Path, store: Path, config: ExtractConfig) -> int:
    """Peak of the memory Python and numpy allocate while `extract` runs inline on one video."""
    inputs = pa.table({"video_id": [video.stem], "path": [str(video)], "split": ["train"]})
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = extract(inputs, store, config, bar=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (result.ok, result.failed) == (1, 0)
    return peak


@pytest.mark.timeout(300)
def test_peak_memory_does_not_grow_with_video_length(tmp_path: Path) -> None:
    encoder = make_encoder(tmp_path / "enc64.pt", crop=SIDE)
    short = write_test_video(tmp_path / "short.mp4", 500, 96, 96, seed=1)
    long = write_test_video(tmp_path / "long.mp4", 2000, 96, 96, seed=2)
    config = ExtractConfig(**encoder_config_kwargs(encoder, crop=SIDE), decode_workers=0, batch_size=8)
    extract(  # warm-up: imports and one-off allocations are not what is measured
        pa.table({"video_id": ["w"], "path": [str(short)], "split": ["train"]}), tmp_path / "w.zarr", config
    )
    peak_short = _peak_bytes(short, tmp_path / "short.zarr", config)
    peak_long = _peak_bytes(long, tmp_path / "long.zarr", config)
    whole_long_video = 2000 * SIDE * SIDE * 3  # 23 MiB if the decoded video were held
    assert peak_long < whole_long_video / 3, (peak_short, peak_long)
    # 4x the frames: a video held in memory would add 18 MiB; the stream adds (almost) nothing.
    assert peak_long - peak_short < 2 * 2**20, (peak_short, peak_long)
