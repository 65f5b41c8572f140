"""Any TorchScript file that obeys the encoder contract (design §3.4), with no other code.

The module must map float32 ``(B, 3, T, crop, crop)`` to tokens ``(B, N, D)`` or pooled ``(B, D)``;
which of the two it returns is found by a dry run on zeros. Token outputs are mean-pooled.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from pydantic import ValidationError

from pipeline.data.transforms import Preprocess
from pipeline.encoders.base import LoadedEncoder, freeze, resolve_device, state_dict_sha256
from pipeline.errors import ConfigError, EncoderError


def load_torchscript(
    path: str | Path,
    device: torch.device | str = "cpu",
    frames_per_clip: int = 16,
    crop: int = 224,
    resize: int | None = None,
    resize_mode: str = "short-side",
) -> LoadedEncoder:
    """A frozen encoder from a TorchScript file; ``resize`` (short side) defaults to ``crop``;
    ``resize_mode`` "squash" resizes whole frames to ``crop`` x ``crop`` instead of cropping."""
    path = Path(path)
    if not path.is_file():
        raise EncoderError(
            f"{path}: no such TorchScript file; save one with torch.jit.script(model).save(PATH)"
        )
    try:
        preprocess = Preprocess(
            resize=resize if resize is not None else crop,
            crop=crop,
            resize_mode=resize_mode,  # type: ignore[arg-type]  # validated by pydantic
        )
    except ValidationError as exc:
        raise ConfigError(f"torchscript encoder: {exc.errors()[0]['msg']}") from exc
    with warnings.catch_warnings():
        # torch.jit is deprecated upstream, but TorchScript files are this project's portable contract.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except (RuntimeError, ValueError) as exc:
            raise EncoderError(f"{path}: not a TorchScript file: {str(exc).splitlines()[0][:160]}") from exc
    freeze(module)
    sha = state_dict_sha256(module)
    target = resolve_device(device)
    module = module.to(target)

    probe = torch.zeros(1, 3, frames_per_clip, crop, crop, device=target)
    try:
        with torch.inference_mode():
            out = module(probe)
    except RuntimeError as exc:
        raise EncoderError(
            f"{path}: fails on a (1, 3, {frames_per_clip}, {crop}, {crop}) input; "
            f"set frames_per_clip/crop to what it expects ({str(exc).splitlines()[0][:120]})"
        ) from exc
    if not isinstance(out, torch.Tensor) or out.ndim not in (2, 3) or out.shape[0] != 1:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise EncoderError(f"{path}: must return (B, N, D) tokens or (B, D) pooled, returned {shape}")
    tokens = out.ndim == 3
    return LoadedEncoder(
        encoder_id=f"torchscript:{path}",
        module=module,
        dim=int(out.shape[-1]),
        frames_per_clip=frames_per_clip,
        preprocess=preprocess,
        pooling="mean-tokens" if tokens else "model",
        weights_sha256=sha,
        device=target,
        output="tokens" if tokens else "pooled",
    )
