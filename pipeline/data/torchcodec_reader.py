"""`--reader torchcodec`: sequential decode on a CUDA GPU (NVDEC) with torchcodec, for CUDA installs.

The same contract as the CPU readers (``pipeline.data.video.VideoReader``): every frame once, in order,
``(H, W, 3)`` uint8 RGB on the host. Frames are decoded in small batches of consecutive frames (no
seeking) and resized on the GPU (bilinear, antialiased) before they are copied back. Imported only when
the reader is asked for: torchcodec needs a CUDA build of torch and FFmpeg 5-7 shared libraries
(``video.require_torchcodec`` says what to install where they are missing).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.video import VideoInfo, _check_file, _reason, scaled_size
from pipeline.errors import DecodeError


class TorchcodecReader:
    """Decode on ``device`` (a CUDA device) with torchcodec, `batch_size` consecutive frames at a time."""

    name: str = "torchcodec"

    def __init__(self, device: str = "cuda", batch_size: int = 16) -> None:
        self.device = device
        self.batch_size = batch_size

    def probe(self, path: str | Path) -> VideoInfo:
        path = Path(path)
        _check_file(path)
        meta = self._open(path).metadata
        return VideoInfo(
            num_frames=int(meta.num_frames or 0),
            fps=float(meta.average_fps or 0.0),
            height=int(meta.height),
            width=int(meta.width),
        )

    def iter_frames(
        self, path: str | Path, *, short_side: int | None = None, size: tuple[int, int] | None = None
    ) -> Iterator[np.ndarray]:
        path = Path(path)
        _check_file(path)
        decoder = self._open(path)  # eager: a missing or non-video file fails here
        if size is None and short_side:
            size = scaled_size(int(decoder.metadata.height), int(decoder.metadata.width), short_side)
        return self._frames(path, decoder, size)

    def _open(self, path: Path) -> Any:  # torchcodec.decoders.VideoDecoder
        from torchcodec.decoders import VideoDecoder

        try:
            return VideoDecoder(str(path), dimension_order="NCHW", device=self.device, seek_mode="exact")
        except (RuntimeError, ValueError) as exc:
            raise DecodeError(f"{path}: torchcodec cannot open it: {_reason(exc)}") from exc

    def _frames(self, path: Path, decoder: Any, size: tuple[int, int] | None) -> Iterator[np.ndarray]:
        import torch
        import torch.nn.functional as F

        num_frames = len(decoder)
        done = 0
        for start in range(0, num_frames, self.batch_size):
            stop = min(num_frames, start + self.batch_size)
            try:
                batch = decoder.get_frames_in_range(start, stop).data  # (b, 3, H, W) uint8 on the GPU
            except (RuntimeError, IndexError) as exc:
                raise DecodeError(
                    f"{path}: stream broken after {done} of {num_frames} frames: {_reason(exc)}"
                ) from exc
            if size is not None and tuple(batch.shape[-2:]) != size:
                x = F.interpolate(
                    batch.float(), size=size, mode="bilinear", antialias=True, align_corners=False
                )
                batch = x.round_().clamp_(0, 255).to(torch.uint8)
            host = batch.permute(0, 2, 3, 1).contiguous().cpu().numpy()  # (b, H, W, 3) uint8
            for frame in host:
                yield frame
                done += 1
        if done == 0:
            raise DecodeError(f"{path}: no frames decoded")
