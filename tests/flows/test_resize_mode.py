"""`--resize-mode`: short side + centre crop cuts the frame edges, squash keeps the whole frame; the
mode is recorded in the store's preprocessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.data.clips import ClipSpec
from pipeline.data.decode import FrameSize, decode_chunks, plan_media
from pipeline.data.transforms import Preprocess, batch_to_model_input
from pipeline.data.video import write_video

GREEN = np.array([0, 255, 0], np.uint8)


def _wide_frame() -> np.ndarray:
    """64 x 128 grey, with a green band over the leftmost 16 columns (an actor at the edge)."""
    frame = np.full((64, 128, 3), 128, np.uint8)
    frame[:, :16] = GREEN
    return frame


def _is_green(pixel: np.ndarray) -> bool:
    return bool(pixel[1] > 200 and pixel[0] < 60 and pixel[2] < 60)


@pytest.mark.parametrize(("mode", "edge_kept"), [("short-side", False), ("squash", True)])
def test_preprocess_squash_keeps_the_frame_edge_that_the_centre_crop_cuts(mode: str, edge_kept: bool) -> None:
    pre = Preprocess(resize=32, crop=32, resize_mode=mode, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    batch = torch.from_numpy(np.stack([_wide_frame()] * 2)[None])  # (1, T=2, 64, 128, 3)
    x = batch_to_model_input(batch, pre)  # (1, 3, 2, 32, 32), in [0, 1]
    assert x.shape == (1, 3, 2, 32, 32)
    left = (x[0, :, 0, 16, 0] * 255).round().to(torch.uint8).numpy()
    assert _is_green(left) == edge_kept


@pytest.mark.parametrize(("mode", "edge_kept"), [("short-side", False), ("squash", True)])
def test_decoded_frames_are_squashed_or_cropped_at_decode_time(
    tmp_path: Path, mode: str, edge_kept: bool
) -> None:
    path = tmp_path / "wide.mp4"
    write_video(path, [_wide_frame()] * 8, fps=8)
    spec = ClipSpec(frames_per_clip=4, static_frames=1)
    chunks = list(decode_chunks(path, plan_media(path, spec), FrameSize(32, 32, mode)))
    static = np.concatenate([c.static for c in chunks])
    assert static.shape == (1, 32, 32, 3)
    assert _is_green(static[0, 16, 0]) == edge_kept


def test_extract_records_the_resize_mode_and_non_torchscript_encoders_refuse_it(
    script_encoder: Path, videos: Path, tmp_path: Path
) -> None:
    from flows.extract import ExtractConfig, extract, load_inputs
    from pipeline.errors import ConfigError

    config = ExtractConfig(
        encoder=f"torchscript:{script_encoder}", crop=32, resize_mode="squash", device="cpu", decode_workers=0
    )
    result = extract(load_inputs(None, videos, None), tmp_path / "s.zarr", config, bar=False)
    assert result.failed == 0 and result.ok > 0
    from stores.latent_cache import LatentCache

    attrs = LatentCache.open(tmp_path / "s.zarr").attrs
    assert attrs.preprocessing["preprocess"]["resize_mode"] == "squash"
    with pytest.raises(ConfigError, match="does not take resize_mode"):
        extract(
            load_inputs(None, videos, None),
            tmp_path / "t.zarr",
            ExtractConfig(resize_mode="squash", device="cpu", decode_workers=0),
            bar=False,
        )
