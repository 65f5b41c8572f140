"""`extract` with the shipped `tiny` reference encoder (the default): needs its pretrained weights
(pipeline/encoders/weights/tiny.safetensors); they are part of the package, so these tests fail, not
skip, without them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from typer.testing import CliRunner

from cli.main import app
from flows.extract import ExtractConfig, extract
from pipeline.data.transforms import to_model_input
from pipeline.encoders.registry import build_encoder
from stores.latent_cache import LatentCache
from stores.manifest import read_manifest
from tests.flows.extract_support import centre, decoded_frames

pytestmark = pytest.mark.slow


def test_tiny_benchmark_with_the_tiny_encoder(tiny_benchmark: Path, tmp_path: Path) -> None:
    inputs = read_manifest(tiny_benchmark / "manifest.parquet")
    store = tmp_path / "tiny.zarr"
    result = extract(inputs, store, ExtractConfig(tokens=True), bar=False)
    assert (result.ok, result.failed) == (inputs.num_rows, 0)
    view = LatentCache.open(store).read()
    attrs = view.attrs
    assert (attrs.encoder_id, attrs.dim, attrs.pooling, attrs.tokens) == (
        "tiny",
        256,
        "mean-tokens",
        (2, 256),
    )
    assert attrs.preprocessing["preprocess"]["crop"] == 96
    frames = dict(zip(inputs["video_id"].to_pylist(), inputs["num_frames"].to_pylist(), strict=True))
    assert view.clips.num_rows == sum(n // 16 for n in frames.values())
    splits = inputs["split"].to_pylist()
    assert view.static_clips.num_rows == sum(5 if split == "test" else 10 for split in splits)
    assert view.tokens is not None
    np.testing.assert_allclose(view.tokens.mean(axis=1), view.motion, atol=1e-5)

    encoder = build_encoder("tiny", device="cpu")
    row = inputs.to_pylist()[0]
    decoded = [centre(f, 96) for f in decoded_frames(row["path"], 96)]
    clip = np.stack(decoded[16:32])  # clip 1
    x = torch.from_numpy(to_model_input(clip, encoder.preprocess))[None]
    expected = encoder.encode(x)[0].numpy()
    index = list(zip(view.clips["video_id"].to_pylist(), view.clips["clip_index"].to_pylist(), strict=True))
    np.testing.assert_allclose(view.motion[index.index((row["video_id"], 1))], expected, atol=1e-4, rtol=1e-4)


def test_cli_default_encoder_is_tiny(small_videos: list[Path], tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    for video in small_videos[:2]:
        (folder / video.name).write_bytes(video.read_bytes())
    store = tmp_path / "s.zarr"
    result = CliRunner().invoke(app, ["extract", "--videos", str(folder), "--out", str(store)])
    assert result.exit_code == 0, result.output
    view = LatentCache.open(store).read()
    assert view.attrs.encoder_id == "tiny" and view.motion.shape == (1 + 1, 256)
    assert isinstance(view.videos, pa.Table) and view.videos.num_rows == 2
