"""VideoMAE and V-JEPA 2 from Hugging Face transformers, behind the ``(B, 3, T, H, W)`` contract.

Both transformers models take ``(B, T, 3, H, W)`` and lay their tubelet tokens out time-major; the
wrappers here transpose the input and return the last hidden state ``(B, N, D)``, which
``LoadedEncoder.encode`` mean-pools (VideoMAE has no CLS token; V-JEPA 2's attentive pooler belongs to
its classifier, not to the encoder).

Weights come from a local directory or the local Hugging Face cache only, unless ``allow_download``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from pipeline.encoders.base import LoadedEncoder, freeze, resolve_device, state_dict_sha256
from pipeline.errors import EncoderError

# Files a transformers checkpoint may carry its preprocessing in (newest first).
_PREPROCESSOR_FILES = ("video_preprocessor_config.json", "preprocessor_config.json")


class VideoMAEBackbone(nn.Module):
    """``VideoMAEModel`` taking ``(B, 3, T, H, W)``; returns the last hidden state ``(B, N, D)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=x.transpose(1, 2))  # model takes (B, T, 3, H, W)
        hidden: torch.Tensor = out.last_hidden_state  # (B, N, D), N = T/tubelet * (H/patch) * (W/patch)
        return hidden


class VJEPA2Backbone(nn.Module):
    """The encoder of ``VJEPA2Model`` (no predictor) taking ``(B, 3, T, H, W)``; returns ``(B, N, D)``."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.encoder(pixel_values_videos=x.transpose(1, 2))  # encoder takes (B, T, 3, H, W)
        hidden: torch.Tensor = out.last_hidden_state  # (B, N, D)
        return hidden


def load_videomae(
    source: str, device: torch.device | str = "cpu", allow_download: bool = False
) -> LoadedEncoder:
    """A frozen VideoMAE encoder from a local directory or a cached hub id (e.g. MCG-NJU/videomae-base)."""
    from transformers import VideoMAEModel

    ref, config = _load_config(source, "videomae", allow_download)
    model = _load_model(VideoMAEModel, ref, config, source, allow_download)
    crop = _square(config.image_size, "image_size")
    frames = int(config.num_frames)
    return _finish(
        f"videomae:{source}",
        VideoMAEBackbone(model),
        dim=int(config.hidden_size),
        frames_per_clip=frames,
        preprocess=_preprocess(ref, crop, default_resize=crop, allow_download=allow_download),
        time_groups=frames // int(config.tubelet_size),
        device=device,
    )


def load_vjepa2(
    source: str,
    device: torch.device | str = "cpu",
    allow_download: bool = False,
    frames_per_clip: int | None = None,
) -> LoadedEncoder:
    """A frozen V-JEPA 2 encoder (predictor dropped) from a local directory or a cached hub id.

    V-JEPA 2 uses 3-D rotary positions, so ``frames_per_clip`` may differ from the checkpoint's
    (e.g. 16 instead of 64); the crop must stay the checkpoint's ``crop_size``.
    """
    from transformers import VJEPA2Model

    ref, config = _load_config(source, "vjepa2", allow_download)
    model = _load_model(VJEPA2Model, ref, config, source, allow_download)
    crop = int(config.crop_size)
    frames = int(frames_per_clip if frames_per_clip is not None else config.frames_per_clip)
    if frames < 1:
        raise EncoderError(f"frames_per_clip must be positive, got {frames}")
    return _finish(
        f"vjepa2:{source}",
        VJEPA2Backbone(model.encoder),
        dim=int(config.hidden_size),
        frames_per_clip=frames,
        # V-JEPA 2's evaluation resizes the short side to crop * 256 / 224 before the centre crop.
        preprocess=_preprocess(ref, crop, default_resize=crop * 256 // 224, allow_download=allow_download),
        time_groups=max(1, frames // int(config.tubelet_size)),
        device=device,
    )


def _missing(source: str) -> EncoderError:
    return EncoderError(
        f"no local copy of {source!r}; pass a directory with config.json and weights, or --allow-download"
    )


def _load_config(source: str, model_type: str, allow_download: bool) -> tuple[str, Any]:
    """Resolve ``source`` to a directory or hub id and load its config; the model type must match."""
    from transformers import AutoConfig

    local = Path(source).expanduser()
    ref = str(local) if local.is_dir() else source
    try:
        config = AutoConfig.from_pretrained(ref, local_files_only=not allow_download)
    except (OSError, ValueError) as exc:
        raise _missing(source) from exc
    if config.model_type != model_type:
        raise EncoderError(
            f"{source!r} holds a {config.model_type!r} model, not {model_type!r}; use --encoder "
            f"{config.model_type}:{source} if that loader exists"
        )
    return ref, config


def _load_model(cls: Any, ref: str, config: Any, source: str, allow_download: bool) -> Any:
    try:
        model, info = cls.from_pretrained(
            ref,
            config=config,
            local_files_only=not allow_download,
            dtype=torch.float32,
            output_loading_info=True,
        )
    except (OSError, ValueError) as exc:
        raise _missing(source) from exc
    # transformers fills missing weights with random ones and only warns: refuse a partial encoder.
    missing = [k for k in info.get("missing_keys", ()) if not k.startswith("predictor.")]
    if missing:
        raise EncoderError(
            f"{source!r} lacks {len(missing)} encoder weights (e.g. {missing[0]}); "
            "is it the right checkpoint?"
        )
    return model


def _square(size: Any, name: str) -> int:
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise EncoderError(f"only square inputs are supported, the config has {name}={size}")
        size = size[0]
    return int(size)


def _preprocess(ref: str, crop: int, *, default_resize: int, allow_download: bool) -> Preprocess:
    """Mean/std and short-side resize from the checkpoint's preprocessor config, else ImageNet defaults."""
    cfg = _preprocessor_json(ref, allow_download)
    size = cfg.get("size")
    resize = default_resize
    if isinstance(size, dict) and "shortest_edge" in size:
        resize = int(size["shortest_edge"])
    elif isinstance(size, int):
        resize = size
    mean = tuple(cfg.get("image_mean") or IMAGENET_MEAN)
    std = tuple(cfg.get("image_std") or IMAGENET_STD)
    if len(mean) != 3 or len(std) != 3:
        raise EncoderError(f"{ref}: preprocessor config has a mean/std that is not 3 RGB values")
    return Preprocess(
        resize=max(resize, crop), crop=crop, mean=(mean[0], mean[1], mean[2]), std=(std[0], std[1], std[2])
    )


def _preprocessor_json(ref: str, allow_download: bool) -> dict[str, Any]:
    from transformers.utils.hub import cached_file

    for name in _PREPROCESSOR_FILES:
        path = cached_file(
            ref,
            name,
            local_files_only=not allow_download,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
        if path is not None:
            loaded: dict[str, Any] = json.loads(Path(path).read_text())
            return loaded
    return {}


def _finish(
    encoder_id: str,
    module: nn.Module,
    *,
    dim: int,
    frames_per_clip: int,
    preprocess: Preprocess,
    time_groups: int,
    device: torch.device | str,
) -> LoadedEncoder:
    freeze(module)
    sha = state_dict_sha256(module)  # on CPU, before the move
    target = resolve_device(device)
    return LoadedEncoder(
        encoder_id=encoder_id,
        module=module.to(target),
        dim=dim,
        frames_per_clip=frames_per_clip,
        preprocess=preprocess,
        pooling="mean-tokens",
        weights_sha256=sha,
        device=target,
        output="tokens",
        time_groups=time_groups,
    )
