"""The `tiny` reference encoder: a compact 3-D CNN that the project pretrains itself (see
`pipeline/encoders/pretrain.py` and docs/reference-encoder.md) and ships as safetensors.

Input `[B, 3, 16, 96, 96]` (ImageNet-normalised RGB), output tokens `[B, 2*6*6, 256]` laid out
time-major (2 time steps of 6x6 positions); the pooled embedding is their mean. Tokens come out
weighted by a learned saliency (softmax over each time step's positions), so that mean is an
attention pool over the scene rather than an average dominated by background.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.data.transforms import Preprocess
from pipeline.encoders.base import LoadedEncoder, freeze
from pipeline.errors import EncoderError

WEIGHTS_DIR = Path(__file__).with_name("weights")
WEIGHTS_FILE = WEIGHTS_DIR / "tiny.safetensors"
META_FILE = WEIGHTS_DIR / "tiny.json"

TINY_CONFIG: dict[str, Any] = {
    "frames_per_clip": 16,
    "crop": 96,
    "resize": 96,
    "widths": [32, 64, 128],
    "dim": 256,
    "time_groups": 2,
}


class ResBlock3d(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm1 = nn.BatchNorm3d(c_out)
        self.conv2 = nn.Conv3d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm3d(c_out)
        self.skip: nn.Module = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv3d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm3d(c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return torch.relu(h + self.skip(x))


class TinyVideoEncoder(nn.Module):
    """3-D CNN: 2x4x4 tubelet stem, two strided residual stages, then per token a value (1x1x1
    projection to `dim`) and a saliency score. Output tokens are the values weighted by a softmax of
    the scores over the positions of their time step (times the number of positions), so that the
    mean over a time step's tokens — and so the pooled embedding — is an attention pool, not a plain
    average dominated by background."""

    def __init__(self, widths: list[int], dim: int, **_: Any) -> None:
        super().__init__()
        w0, w1, w2 = widths
        self.stem = nn.Sequential(
            nn.Conv3d(3, w0, (2, 4, 4), stride=(2, 4, 4), bias=False), nn.BatchNorm3d(w0), nn.ReLU()
        )
        self.stage1 = ResBlock3d(w0, w1, stride=2)
        self.stage2 = ResBlock3d(w1, w2, stride=2)
        self.proj = nn.Conv3d(w2, dim, 1)
        self.score = nn.Conv3d(w2, 1, 1)

    def values_and_weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`[B, 3, T, H, W]` -> token values `[B, N, D]` and weights `[B, N, 1]` (mean 1 per time step)."""
        h = self.stage2(self.stage1(self.stem(x)))  # (B, C, t, h, w)
        values = self.proj(h).flatten(2).transpose(1, 2)  # (B, N, D)
        b, _, t, hh, ww = h.shape
        scores = self.score(h).view(b, t, hh * ww)  # (B, t, h*w)
        weights = torch.softmax(scores, dim=2) * (hh * ww)  # mean 1 over each time step
        return values, weights.reshape(b, t * hh * ww, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`[B, 3, T, H, W]` -> tokens `[B, N, D]`, time-major."""
        values, weights = self.values_and_weights(x)
        return values * weights


def build_tiny_encoder(config: dict[str, Any] | None = None) -> TinyVideoEncoder:
    """A randomly initialised tiny encoder (pretraining starts here)."""
    cfg = {**TINY_CONFIG, **(config or {})}
    unknown = set(cfg) - set(TINY_CONFIG)
    if unknown:
        raise EncoderError(f"unknown tiny-encoder config keys: {sorted(unknown)}")
    return TinyVideoEncoder(**cfg)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_tiny_weights(
    weights: Path = WEIGHTS_FILE, meta: Path = META_FILE
) -> tuple[TinyVideoEncoder, dict[str, Any]]:
    """Build the encoder from the shipped safetensors, verifying the recorded checksum."""
    from safetensors.torch import load_file

    if not weights.exists() or not meta.exists():
        raise EncoderError(
            f"the tiny encoder's weights are missing ({weights}); run `make encoder` to pretrain them"
        )
    info = json.loads(meta.read_text())
    actual = file_sha256(weights)
    if actual != info["sha256"]:
        raise EncoderError(
            f"checksum mismatch for {weights}: expected {info['sha256'][:12]}…, got {actual[:12]}…; "
            "the file is corrupt or was changed — restore it from git or rerun `make encoder`"
        )
    model = build_tiny_encoder(info["config"])
    model.load_state_dict(load_file(str(weights)))
    return model, info


def save_tiny_weights(
    model: TinyVideoEncoder, info: dict[str, Any], weights: Path = WEIGHTS_FILE, meta: Path = META_FILE
) -> str:
    """Write the weights as safetensors and `info` (with their checksum and config) beside them."""
    from safetensors.torch import save_file

    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights))
    sha = file_sha256(weights)
    meta.write_text(json.dumps({**info, "config": TINY_CONFIG, "sha256": sha}, indent=2) + "\n")
    return sha


def tiny_preprocess() -> Preprocess:
    return Preprocess(resize=int(TINY_CONFIG["resize"]), crop=int(TINY_CONFIG["crop"]))


def load_tiny_encoder(device: torch.device) -> LoadedEncoder:
    """The shipped, checksum-verified tiny encoder, frozen, as a `LoadedEncoder`."""
    model, info = load_tiny_weights()
    cfg = info["config"]
    return LoadedEncoder(
        encoder_id="tiny",
        module=freeze(model.to(device)),
        dim=int(cfg["dim"]),
        frames_per_clip=int(cfg["frames_per_clip"]),
        preprocess=tiny_preprocess(),
        pooling="mean-tokens",
        weights_sha256=str(info["sha256"]),
        device=device,
        output="tokens",
        time_groups=int(cfg["time_groups"]),
    )
