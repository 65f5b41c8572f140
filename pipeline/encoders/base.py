"""The frozen-encoder contract (design §3.4) and what every loader returns.

An encoder module maps float32 ``(B, 3, T, H, W)`` — RGB normalised with ``preprocess.mean/std``,
T = ``frames_per_clip``, H = W = ``preprocess.crop`` — to tokens ``(B, N, D)`` or a pooled ``(B, D)``.
Loaders freeze it (``eval()``, no gradients) and record how its output is pooled.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from pipeline.data.transforms import Preprocess
from pipeline.errors import EncoderError

Pooling = Literal["mean-tokens", "model"]
Output = Literal["tokens", "pooled"]


def freeze(module: nn.Module) -> nn.Module:
    """Put ``module`` in eval mode and switch off gradients for all its parameters; returns it."""
    module.eval()
    for p in module.parameters():  # ScriptModules reject requires_grad_() on the module itself
        p.requires_grad_(False)
    return module


def state_dict_sha256(module: nn.Module) -> str:
    """SHA-256 over the sorted state-dict keys, dtypes, shapes and raw tensor bytes (device-independent)."""
    digest = hashlib.sha256()
    state = module.state_dict()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def resolve_device(device: torch.device | str = "auto") -> torch.device:
    """``"auto"`` → ``cuda`` when available, else ``cpu``; anything else as torch understands it."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class LoadedEncoder:
    """A frozen encoder and everything a store must record about it.

    ``pooling`` is "mean-tokens" when ``encode`` averages the module's ``(B, N, D)`` tokens (VideoMAE has
    no CLS token) and "model" when the module itself returns ``(B, D)``. ``time_groups`` is the number of
    temporal token groups (T / tubelet size) when the module's tokens are laid out time-major.
    """

    encoder_id: str
    module: nn.Module
    dim: int
    frames_per_clip: int
    preprocess: Preprocess
    pooling: str
    weights_sha256: str
    device: torch.device
    output: Output
    time_groups: int | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-ready record of the encoder for store attributes."""
        return {
            "encoder_id": self.encoder_id,
            "dim": self.dim,
            "frames_per_clip": self.frames_per_clip,
            "preprocess": self.preprocess.model_dump(mode="json"),
            "pooling": self.pooling,
            "output": self.output,
            "weights_sha256": self.weights_sha256,
            "time_groups": self.time_groups,
        }

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """The module's raw output for a ``(B, 3, T, H, W)`` batch, under inference mode (bf16 on CUDA)."""
        self._check_input(batch)
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.device.type == "cuda"
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            out: torch.Tensor = self.module(batch.to(self.device, non_blocking=True))
        return out

    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        """float32 ``(B, 3, T, H, W)`` → pooled float32 ``(B, D)``."""
        out = self.forward(batch)
        if out.ndim == 3:
            out = out.float().mean(dim=1)  # (B, N, D) -> (B, D)
        return self._checked(out.float(), 2)

    def encode_tokens(self, batch: torch.Tensor, t_groups: int | None = None) -> torch.Tensor:
        """float32 ``(B, 3, T, H, W)`` → temporal tokens float32 ``(B, T', D)``, ``T' = t_groups``.

        Assumes time-major tokens, as tubelet ViTs (VideoMAE, V-JEPA 2) lay them out: the N tokens are
        T' consecutive groups of N / T' spatial tokens; each group is averaged over space.
        """
        groups = t_groups if t_groups is not None else self.time_groups
        if groups is None or groups < 1:
            raise EncoderError(f"{self.encoder_id}: pass t_groups (the number of temporal token groups)")
        if self.output != "tokens":
            raise EncoderError(f"{self.encoder_id} returns pooled (B, D) output; temporal tokens need tokens")
        out = self.forward(batch).float()  # (B, N, D)
        B, N, D = out.shape
        if N % groups:
            raise EncoderError(f"{self.encoder_id}: {N} tokens do not split into {groups} temporal groups")
        return out.view(B, groups, N // groups, D).mean(dim=2)  # (B, T', D)

    def _check_input(self, batch: torch.Tensor) -> None:
        expected = (3, self.frames_per_clip, self.preprocess.crop, self.preprocess.crop)
        if batch.ndim != 5 or tuple(batch.shape[1:]) != expected:
            raise EncoderError(
                f"{self.encoder_id} takes (B, {', '.join(map(str, expected))}) input, "
                f"got {tuple(batch.shape)}; preprocess clips with its preprocess settings"
            )

    def _checked(self, out: torch.Tensor, ndim: int) -> torch.Tensor:
        if out.ndim != ndim or out.shape[-1] != self.dim:
            raise EncoderError(f"{self.encoder_id} produced {tuple(out.shape)}, expected last dim {self.dim}")
        return out
