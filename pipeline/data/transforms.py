"""Clip preprocessing: uint8 RGB frames → normalised float32 encoder input.

Clips stay uint8 ``(…, T, H, W, 3)`` through decoding and inter-process queues (a quarter of the bytes
of float32) and become float only here, ideally on the encoder's device.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.data.video import scaled_size
from pipeline.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


ResizeMode = Literal["short-side", "squash"]


class Preprocess(BaseModel):
    """Resize the short side to ``resize`` and centre-crop ``crop`` × ``crop`` ("short-side"), or squash
    the whole frame to ``crop`` × ``crop`` ("squash": no edge is cut, the aspect ratio is not kept);
    then scale to [0, 1] and normalise."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    resize: int = Field(default=224, ge=1, description="short side in pixels before the centre crop")
    crop: int = Field(default=224, ge=1, description="side of the square centre crop (the encoder's H = W)")
    resize_mode: ResizeMode = Field(
        default="short-side", description="short-side: resize + centre crop; squash: whole frame to the crop"
    )
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @model_validator(mode="after")
    def _consistent(self) -> Preprocess:
        if self.crop > self.resize:
            raise ValueError(f"crop ({self.crop}) must not exceed resize ({self.resize})")
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std}")
        return self


def batch_to_model_input(
    batch: torch.Tensor, pre: Preprocess, device: torch.device | str | None = None
) -> torch.Tensor:
    """uint8 ``(B, T, H, W, 3)`` → float32 ``(B, 3, T, crop, crop)`` on ``device`` (default: batch's).

    Frames already at the target size (resized at decode time) are not resampled;
    otherwise bilinear with antialiasing (on uint8 on CPU, where torch has a fast kernel).
    """
    if batch.dtype != torch.uint8 or batch.ndim != 5 or batch.shape[-1] != 3:
        raise ConfigError(f"expected a uint8 (B, T, H, W, 3) batch, got {tuple(batch.shape)} {batch.dtype}")
    x = batch if device is None else batch.to(device, non_blocking=True)
    B, T, H, W, _ = x.shape
    x = x.reshape(B * T, H, W, 3).permute(0, 3, 1, 2)  # (B*T, 3, H, W), channels-last in memory
    if pre.resize_mode == "squash":
        target = (pre.crop, pre.crop)
    else:
        target = (H, W) if min(H, W) == pre.resize else scaled_size(H, W, pre.resize)
    if target != (H, W):
        H, W = target
        if x.device.type != "cpu":
            x = x.float()  # CUDA has no uint8 interpolation kernel
        x = F.interpolate(x, size=(H, W), mode="bilinear", antialias=True, align_corners=False)
    top, left = (H - pre.crop) // 2, (W - pre.crop) // 2
    x = x[:, :, top : top + pre.crop, left : left + pre.crop].float()  # (B*T, 3, c, c)
    std = torch.tensor(pre.std, device=x.device).view(1, 3, 1, 1)
    mean = torch.tensor(pre.mean, device=x.device).view(1, 3, 1, 1)
    x = x * (1.0 / (255.0 * std)) - mean / std  # == (x / 255 - mean) / std
    x = x.reshape(B, T, 3, pre.crop, pre.crop)
    return x.permute(0, 2, 1, 3, 4).contiguous()  # (B, 3, T, c, c)


def to_model_input(clip: np.ndarray, pre: Preprocess) -> np.ndarray:
    """uint8 ``(T, H, W, 3)`` → float32 ``(3, T, crop, crop)``; a batch ``(B, T, H, W, 3)`` keeps its B."""
    if clip.ndim not in (4, 5):
        raise ConfigError(f"expected a (T, H, W, 3) clip or a (B, T, H, W, 3) batch, got {clip.shape}")
    batched = clip.ndim == 5
    x = torch.from_numpy(np.ascontiguousarray(clip if batched else clip[None]))
    out = batch_to_model_input(x, pre).numpy()
    return out if batched else out[0]
