"""``build_encoder(name)``: one entry point from an encoder name to a frozen ``LoadedEncoder``.

Loaders are imported on demand, so naming a TorchScript file never imports transformers.
"""

from __future__ import annotations

from typing import Any

import torch

from pipeline.encoders.base import LoadedEncoder, resolve_device
from pipeline.errors import ConfigError

ENCODER_FORMS = (
    "tiny",
    "videomae:<dir-or-hub-id>",
    "vjepa2:<dir-or-hub-id>",
    "torchscript:<file>",
)
# Keyword overrides each kind accepts (anything else is a ConfigError, not a silent default).
_OPTIONS: dict[str, frozenset[str]] = {
    "tiny": frozenset(),
    "videomae": frozenset(),
    "vjepa2": frozenset({"frames_per_clip"}),
    "torchscript": frozenset({"frames_per_clip", "crop", "resize", "resize_mode"}),
}


def build_encoder(
    name: str, *, device: str | torch.device = "auto", allow_download: bool = False, **overrides: Any
) -> LoadedEncoder:
    """Build the frozen encoder ``name`` (one of ``ENCODER_FORMS``) on ``device`` ("auto": cuda if any)."""
    kind, _, source = name.partition(":")
    if kind not in _OPTIONS or (kind == "tiny") == bool(source):
        raise ConfigError(f"unknown encoder {name!r}; use one of: {', '.join(ENCODER_FORMS)}")
    unknown = sorted(set(overrides) - _OPTIONS[kind])
    if unknown:
        valid = ", ".join(sorted(_OPTIONS[kind])) or "none"
        raise ConfigError(f"encoder {kind!r} does not take {', '.join(unknown)}; it takes: {valid}")
    target = resolve_device(device)
    if kind == "tiny":
        from pipeline.encoders.tiny import load_tiny_encoder

        return load_tiny_encoder(target)
    if kind == "videomae":
        from pipeline.encoders.hf import load_videomae

        return load_videomae(source, target, allow_download=allow_download)
    if kind == "vjepa2":
        from pipeline.encoders.hf import load_vjepa2

        return load_vjepa2(source, target, allow_download=allow_download, **overrides)
    from pipeline.encoders.torchscript import load_torchscript

    return load_torchscript(source, target, **overrides)
