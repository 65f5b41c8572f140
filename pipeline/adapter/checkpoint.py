"""The adapter artifact: `adapter.safetensors` (weights, never pickle) + `adapter.json` (written last).

`adapter.json` holds the schema version, the architecture (`AdapterConfig`), what it was trained on
and how (`AdapterMeta`: encoder id, objective with loss weights and tasks, data checksum, seed, per-epoch
metrics) and the SHA-256 of the weights file, so a reader can tell a complete artifact from a torn one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save
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
    # The store's preprocessing and pooling: an adapter is bound to the exact encoder pipeline.
    encoder_preprocessing: dict[str, Any] = Field(default_factory=dict)
    encoder_pooling: str = ""
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
    encoder_preprocessing: dict[str, Any] | None = None,
    encoder_pooling: str = "",
) -> AdapterMeta:
    """The metadata of a finished training run."""
    acc = None if math.isnan(val_action_acc) else val_action_acc  # NaN -> null in JSON
    plain = [{k: None if math.isnan(v) else v for k, v in epoch.items()} for epoch in history]
    return AdapterMeta(
        encoder_id=encoder_id,
        encoder_weights_sha256=encoder_weights_sha256,
        encoder_preprocessing=dict(encoder_preprocessing or {}),
        encoder_pooling=encoder_pooling,
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
    # Serialised in memory and written by Python, so a full or read-only disk is an OSError (one line
    # at the CLI), not a SafetensorError wrapping it; the small adapter fits in memory many times over.
    _write_durably(tmp, save(state, metadata={"format": "pt"}))
    os.replace(tmp, weights)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "kind": "aam-pipeline/adapter",
        "adapter": cfg.model_dump(mode="json"),
        "meta": meta.model_dump(mode="json"),
        "weights_sha256": _sha256(weights),
    }
    tmp_json = (out / CONFIG).with_suffix(".tmp")
    _write_durably(tmp_json, (json.dumps(doc, indent=2, allow_nan=False) + "\n").encode())
    _fsync(out)  # the weights' new name is durable before the JSON that vouches for it
    os.replace(tmp_json, out / CONFIG)
    _fsync(out)
    return out / CONFIG


def _write_durably(path: Path, data: bytes) -> None:
    """Write `data` to `path` and fsync it; on failure (a full disk) no partial file is left."""
    try:
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        raise


def _fsync(path: Path) -> None:
    """fsync a file or a folder (a folder's fsync makes the renames in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def adapter_checksum(directory: str | Path) -> str:
    """SHA-256 of the artifact's weights file (what published shards record)."""
    return _sha256(Path(directory) / WEIGHTS)


def load_adapter(
    directory: str | Path,
    *,
    expect_encoder_id: str | None,
    expect_dim: int | None,
    expect_weights_sha256: str | None = None,
    expect_preprocessing: dict[str, Any] | None = None,
    expect_pooling: str | None = None,
) -> tuple[nn.Module, AdapterConfig, AdapterMeta]:
    """Load an artifact (eval mode, CPU); refuse one made for another encoder, weights, preprocessing,
    pooling or dimension than the `expect_*` values (a store's attributes).

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
    if not isinstance(doc, dict):
        raise AdapterError(f"{path} is not an adapter description; retrain the adapter")
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
    _check_binding(meta, cfg, expect_encoder_id, expect_dim, expect_weights_sha256, expect_preprocessing)
    if expect_pooling is not None and meta.encoder_pooling and meta.encoder_pooling != expect_pooling:
        raise AdapterError(
            f"adapter was trained on {meta.encoder_pooling}-pooled embeddings, this store's are "
            f"{expect_pooling}-pooled; train an adapter on this store"
        )
    if not weights.is_file() or _sha256(weights) != doc.get("weights_sha256"):
        raise AdapterError(f"{weights} is missing or does not match {CONFIG}; retrain the adapter")
    model = build_adapter(cfg)
    try:
        model.load_state_dict(load_file(str(weights)))
    except (RuntimeError, SafetensorError, OSError, ValueError) as e:
        raise AdapterError(
            f"{weights} is not a safetensors file that fits the recorded architecture ({e}); "
            "retrain the adapter"
        ) from e
    return model.eval(), cfg, meta


def _check_binding(
    meta: AdapterMeta,
    cfg: AdapterConfig,
    encoder_id: str | None,
    dim: int | None,
    weights_sha256: str | None,
    preprocessing: dict[str, Any] | None,
) -> None:
    """Refuse an adapter trained for another encoder than the store's (id, weights, preprocessing, D)."""
    retrain = "train an adapter on this store"
    if (encoder_id is not None and meta.encoder_id != encoder_id) or (dim is not None and cfg.dim != dim):
        raise AdapterError(
            f"adapter was trained for encoder {meta.encoder_id} dim {cfg.dim}, this store is "
            f"{encoder_id} dim {dim}; {retrain}"
        )
    if weights_sha256 is not None and meta.encoder_weights_sha256 != weights_sha256:
        had = meta.encoder_weights_sha256[:12] or "none recorded"
        raise AdapterError(
            f"adapter was trained on encoder weights sha256 {had}, this store's are {weights_sha256[:12]} "
            f"(same encoder id {meta.encoder_id}, other weights); {retrain}"
        )
    if preprocessing is not None:
        wanted = json.loads(json.dumps(preprocessing, sort_keys=True))
        if not meta.encoder_preprocessing and wanted:
            raise AdapterError(
                f"adapter records no encoder preprocessing (trained by an older aam-pipeline), so it cannot "
                f"be checked against this store's; {retrain}"
            )
        if meta.encoder_preprocessing != wanted:
            diff = sorted(
                k
                for k in set(wanted) | set(meta.encoder_preprocessing)
                if wanted.get(k) != meta.encoder_preprocessing.get(k)
            )
            raise AdapterError(
                f"adapter was trained on embeddings preprocessed otherwise than this store's "
                f"(differs in {', '.join(diff)}); {retrain}"
            )
