"""The Anonymizing Adapter Module (design §2): model, losses, training, artifact.

Typical use (the flow reads the latent cache into `AdapterData`):

    cfg = train_recipe("default", store_dim, epochs=100)  # or "paper"
    result = train_adapter(data, cfg, on_epoch=print)
    save_adapter(out_dir, result.model, cfg.adapter, meta_from_training(encoder_id, cfg, ...))
    model, adapter_cfg, meta = load_adapter(out_dir, expect_encoder_id=..., expect_dim=...)
    published = anonymize_array(model, motion)  # (N, D) -> (N, D), batch-independent
"""

from pipeline.adapter.checkpoint import (
    AdapterMeta,
    adapter_checksum,
    load_adapter,
    meta_from_training,
    save_adapter,
)
from pipeline.adapter.config import (
    AdapterConfig,
    ObjectiveConfig,
    TaskWeights,
    TrainConfig,
    default_objective,
    objective,
    paper_objective,
    train_recipe,
)
from pipeline.adapter.data import AdapterChunks, AdapterData
from pipeline.adapter.errors import AdapterError
from pipeline.adapter.model import Adapter, ClipAdapter, PaperAdapter, anonymize_array, build_adapter
from pipeline.adapter.train import TrainResult, train_adapter

__all__ = [
    "Adapter",
    "AdapterChunks",
    "AdapterConfig",
    "AdapterData",
    "AdapterError",
    "AdapterMeta",
    "ClipAdapter",
    "ObjectiveConfig",
    "PaperAdapter",
    "TaskWeights",
    "TrainConfig",
    "TrainResult",
    "adapter_checksum",
    "anonymize_array",
    "build_adapter",
    "default_objective",
    "load_adapter",
    "meta_from_training",
    "objective",
    "paper_objective",
    "save_adapter",
    "train_adapter",
    "train_recipe",
]
