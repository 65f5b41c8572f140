"""Settings of every probe, in one frozen config (defaults live here and nowhere else).

`ProbeConfig` travels whole: the probe flow records it (and so every seed) in the artifact it writes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipeline.probes.metrics import TIOUS


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FitConfig(_Frozen):
    """A linear or 2-layer MLP classifier: AdamW, cosine-decayed lr, seeded mini-batches, standardised x."""

    kind: Literal["linear", "mlp"] = "linear"
    hidden: int = Field(default=256, ge=1, description="MLP hidden width (ignored by linear)")
    steps: int = Field(default=200, ge=1, description="AdamW updates (passes over reshuffled mini-batches)")
    batch_size: int = Field(default=512, ge=1)
    lr: float = Field(default=1e-2, gt=0, description="peak learning rate, cosine-decayed to 0")
    weight_decay: float = Field(default=1e-4, ge=0)
    balanced: bool = Field(default=False, description="weight the loss by inverse class frequency")
    seed: int = 0

    def changed(self, **changes: object) -> FitConfig:
        """A copy with ``changes`` applied and validated (``model_copy(update=…)`` does not validate)."""
        return FitConfig.model_validate({**self.model_dump(), **changes})


LINEAR = FitConfig(kind="linear")
MLP = FitConfig(kind="mlp", lr=3e-3)  # a lower peak rate: the MLP overfits small train sets fast


class ActionConfig(_Frozen):
    """Action recognition: a probe on train clips; test videos scored by softmax averaged over clips."""

    probe: FitConfig = LINEAR
    clips_per_video: int = Field(default=5, ge=1, description="evenly spaced test clips per video")
    top_k: int = Field(default=5, ge=1)
    bootstrap: int = Field(default=200, ge=0, description="resamples of test people for top-1's 95% interval")
    train_split: str = "train"
    test_split: str = "test"


def _attackers() -> dict[str, FitConfig]:
    return {"linear": LINEAR.changed(balanced=True), "mlp": MLP.changed(balanced=True)}


class LeakageConfig(_Frozen):
    """Attribute leakage: the attacker panel (`pipeline.probes.attackers`) trained on the clips of the
    train and val videos, scored on test-split videos, with a bootstrap interval over people."""

    attackers: dict[str, FitConfig] = Field(
        default_factory=_attackers, description="the panel's torch attackers (linear, mlp) by name"
    )
    panel: Literal["fast", "full"] = Field(
        default="fast",
        description="fast: linear, mlp, knn_cosine; full: + logreg_cv, mlp_wide, hgb_pca, logreg_plain, "
        "mlp_plain and the oracle line",
    )
    aggregate: Literal["video", "clip"] = Field(
        default="video", description="video: score a test video by its clips' mean probabilities"
    )
    train_splits: tuple[str, ...] = Field(
        default=("train", "val"), min_length=1, description="the attackers' labelled data"
    )
    test_split: str = "test"
    bootstrap: int = Field(default=200, ge=0, description="resamples of test people for the 95% interval")
    seed: int = 0

    @property
    def train_split(self) -> str:
        """The attackers' splits as one name (``train+val``), for records written by older readers."""
        return "+".join(self.train_splits)


class TemporalConfig(_Frozen):
    """Temporal action detection: a 2-layer 1-D conv head over each video's clip sequence."""

    hidden: int = Field(default=128, ge=1)
    kernel_size: int = Field(default=3, ge=1, description="odd; 3 = each clip sees its neighbours")
    steps: int = Field(default=150, ge=1, description="full-batch AdamW steps")
    lr: float = Field(default=3e-3, gt=0)
    weight_decay: float = Field(default=1e-3, ge=0)
    min_coverage: float = Field(
        default=0.5, gt=0, le=1, description="a clip takes a segment's label when it covers this share"
    )
    thresholds: tuple[float, ...] = Field(
        default=(0.5, 0.25), description="besides argmax runs, runs where a class prob ≥ each value"
    )
    nms_tiou: float = Field(default=0.5, gt=0, le=1)
    tious: tuple[float, ...] = TIOUS
    seed: int = 0
    bootstrap: int = Field(default=200, ge=0, description="resamples of test people for mAP's 95% interval")
    train_split: str = "train"
    test_split: str = "test"

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, k: int) -> int:
        if k % 2 == 0:
            raise ValueError(f"kernel_size must be odd so each clip's output stays centred on it, got {k}")
        return k


class AnomalyConfig(_Frozen):
    """Anomaly detection: MIL ranking (Sultani et al. 2018); videos are bags, clips are instances."""

    hidden: int = Field(default=32, ge=1, description="small: MIL over few bags overfits easily")
    steps: int = Field(default=200, ge=1, description="full-batch AdamW steps")
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-3, ge=0)
    dropout: float = Field(default=0.6, ge=0, lt=1, description="after the hidden layer, as in the paper")
    margin: float = Field(default=1.0, gt=0)
    lambda_smooth: float = Field(default=8e-5, ge=0, description="paper value")
    lambda_sparse: float = Field(default=8e-5, ge=0, description="paper value")
    seed: int = 0
    train_split: str = "train"
    test_split: str = "test"
    bootstrap: int = Field(default=200, ge=0, description="resamples of test people for AUC's 95% interval")


class BiasConfig(_Frozen):
    """Bias protocol: the action probe trained on the skewed split, accuracy per group on the balanced
    one; ``action.train_split``/``test_split`` name values of the ``bias_split`` column."""

    action: ActionConfig = ActionConfig(train_split="train", test_split="test")


class ProbeConfig(_Frozen):
    """Every probe's settings."""

    action: ActionConfig = ActionConfig()
    leakage: LeakageConfig = LeakageConfig()
    temporal: TemporalConfig = TemporalConfig()
    anomaly: AnomalyConfig = AnomalyConfig()
    bias: BiasConfig = BiasConfig()

    def reseeded(self, seed: int) -> ProbeConfig:
        """A copy with every ``seed`` in it (every probe, every attacker) set to ``seed``."""

        def walk(node: Any) -> Any:
            if isinstance(node, dict):
                return {k: seed if k == "seed" else walk(v) for k, v in node.items()}
            return node

        return ProbeConfig.model_validate(walk(self.model_dump()))
