"""The adapter artifact: `adapter.safetensors` (weights, never pickle) + `adapter.json` (written last).

`adapter.json` holds the schema version, the architecture (`AdapterConfig`), what it was trained on
and how (`AdapterMeta`: encoder id, objective with loss weights and tasks, data checksum, seed, per-epoch
metrics) and the SHA-256 of the weights file, so a reader can tell a complete artifact from a torn one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors.torch import load_file, save_file
from torch import nn

from pipeline.adapter.config import TRAINING_REVISION, AdapterConfig, ObjectiveConfig, TrainConfig
from pipeline.adapter.errors import AdapterError
from pipeline.adapter.model import build_adapter

SCHEMA_VERSION = 1
WEIGHTS = "adapter.safetensors"
CONFIG = "adapter.json"


class AdapterMeta(BaseModel):
    """What an adapter was trained for and on; travels whole inside `adapter.json`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    encoder_id: str
    encoder_weights_sha256: str = ""
    objective: ObjectiveConfig
    train: dict[str, Any] = Field(default_factory=dict, description="TrainConfig as JSON, minus adapter")
    data_checksum: str = ""
    seed: int = 0
    training_revision: int = 0  # TRAINING_REVISION of the code that trained it (0: before it was recorded)
    best_epoch: int = -1
    val_action_acc: float | None = None
    history: list[dict[str, float | None]] = Field(default_factory=list)  # NaN is stored as null

    @property
    def tasks(self) -> tuple[str, ...]:
        """Tasks co-trained with the adapter (the others are unseen)."""
        return self.objective.tasks.enabled()


def meta_from_training(
    encoder_id: str,
    cfg: TrainConfig,
    *,
    data_checksum: str,
    history: list[dict[str, float]],
    best_epoch: int,
    val_action_acc: float,
    encoder_weights_sha256: str = "",
) -> AdapterMeta:
    """The metadata of a finished training run."""
    acc = None if math.isnan(val_action_acc) else val_action_acc  # NaN -> null in JSON
    plain = [{k: None if math.isnan(v) else v for k, v in epoch.items()} for epoch in history]
    return AdapterMeta(
        encoder_id=encoder_id,
        encoder_weights_sha256=encoder_weights_sha256,
        objective=cfg.objective,
        train=cfg.model_dump(mode="json", exclude={"adapter", "objective"}),
        data_checksum=data_checksum,
        seed=cfg.seed,
        training_revision=TRAINING_REVISION,
        best_epoch=best_epoch,
        val_action_acc=acc,
        history=plain,
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_adapter(directory: str | Path, model: nn.Module, cfg: AdapterConfig, meta: AdapterMeta) -> Path:
    """Write the adapter artifact into `directory` (created); the JSON goes last. Returns the JSON path."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = out / WEIGHTS
    (out / CONFIG).unlink(missing_ok=True)  # an old JSON must never vouch for new weights
    tmp = weights.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, weights)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "kind": "aam-pipeline/adapter",
        "adapter": cfg.model_dump(mode="json"),
        "meta": meta.model_dump(mode="json"),
        "weights_sha256": _sha256(weights),
    }
    tmp_json = (out / CONFIG).with_suffix(".tmp")
    tmp_json.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    os.replace(tmp_json, out / CONFIG)
    return out / CONFIG


def adapter_checksum(directory: str | Path) -> str:
    """SHA-256 of the artifact's weights file (what published shards record)."""
    return _sha256(Path(directory) / WEIGHTS)


def load_adapter(
    directory: str | Path, *, expect_encoder_id: str | None, expect_dim: int | None
) -> tuple[nn.Module, AdapterConfig, AdapterMeta]:
    """Load an artifact (eval mode, CPU); refuse one made for another encoder or dimension.

    `expect_*` None skips that check (inspection only; never when applying to a store).
    """
    root = Path(directory)
    path, weights = root / CONFIG, root / WEIGHTS
    if not path.is_file():
        raise AdapterError(
            f"{root} holds no complete adapter ({CONFIG} missing); train one with train-adapter"
        )
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise AdapterError(f"{path} is not readable JSON ({e}); retrain the adapter") from e
    version = doc.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise AdapterError(
            f"{path} has schema version {version!r}; this aam-pipeline reads up to "
            f"{SCHEMA_VERSION}: upgrade aam-pipeline"
        )
    try:
        cfg = AdapterConfig.model_validate(doc["adapter"])
        meta = AdapterMeta.model_validate(doc["meta"])
    except (KeyError, ValidationError) as e:
        raise AdapterError(f"{path} has an invalid adapter config: {e}") from e
    wrong_encoder = expect_encoder_id is not None and meta.encoder_id != expect_encoder_id
    if wrong_encoder or (expect_dim is not None and cfg.dim != expect_dim):
        raise AdapterError(
            f"adapter was trained for encoder {meta.encoder_id} dim {cfg.dim}, this store is "
            f"{expect_encoder_id} dim {expect_dim}; train an adapter on this store"
        )
    if not weights.is_file() or _sha256(weights) != doc.get("weights_sha256"):
        raise AdapterError(f"{weights} is missing or does not match {CONFIG}; retrain the adapter")
    model = build_adapter(cfg)
    try:
        model.load_state_dict(load_file(str(weights)))
    except RuntimeError as e:
        raise AdapterError(f"{weights} does not fit the recorded architecture: {e}") from e
    return model.eval(), cfg, meta
