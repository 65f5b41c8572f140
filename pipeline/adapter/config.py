"""Typed, frozen configs of the adapter stage: the architecture, the objective, the training run.

Defaults live here and only here; every config is written whole into the adapter artifact. Unknown
keys are errors (`extra="forbid"`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Variant = Literal["clip", "paper"]
DEFAULT_ERASE_DIMS = 96  # at most; 3/8 of the dimension below 256 (docs/adapter.md, measured)
DEFAULT_ERASE_CLIP_DIMS = 16  # at most; 1/16 of the dimension below 256 (docs/adapter.md, measured)
# Bumped whenever training gives other weights for the same data and settings, so that a rerun of
# train-adapter retrains an artifact of an older revision instead of reusing it.
# 1: the eraser is fitted on the train and val videos (was: train only).
TRAINING_REVISION = 1
TaskName = Literal["action", "detection", "anomaly"]
ObjectiveName = Literal["paper", "default"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AdapterConfig(_Frozen):
    """Architecture of the Anonymizing Adapter Module.

    `clip` (default): a clip's output depends on that clip alone. Attention runs over the clip's own
    token sequence: its cached temporal tokens `[T', D]` when `temporal` is set, else its pooled `[D]`
    vector cut into `tokens` pieces of `D/tokens`, each lifted to `width`. Residual MLP blocks follow.
    `paper`: the released code, attention across the clips of a mini-batch (comparison only).
    """

    dim: int = Field(gt=0, description="D, the encoder's pooled embedding size")
    variant: Variant = "clip"
    layers: int = Field(3, ge=0, description="residual self-attention layers")
    heads: int = Field(8, ge=1)
    tokens: int = Field(8, ge=1, description="S: pieces the pooled vector is cut into (clip variant)")
    width: int = Field(64, ge=1, description="attention width of a lifted piece (clip variant)")
    temporal: bool = Field(False, description="attend over the cached temporal tokens [T', D] instead")
    mlp_blocks: int = Field(1, ge=0, description="residual MLP blocks after attention (clip variant)")
    mlp_ratio: float = Field(1.0, gt=0)
    erase_dims: int = Field(
        0,
        ge=0,
        description="k: linear eraser of the k output directions most "
        "predictable from the video's raw static look (fitted, see nullspace.py)",
    )
    erase_reg: float = Field(
        1e-3, gt=0, description="ridge of the eraser's CCA, as a share of the mean variance (shrinks noise)"
    )
    erase_keep_means: bool = Field(
        False, description="search eraser directions orthogonal to the action means (keeps them exactly)"
    )
    erase_static: bool = Field(
        False,
        description="fit the eraser on static clips too (each against its video's other static clips), "
        "so it also erases the look from static clips passed through the adapter",
    )
    erase_clip_dims: int = Field(
        0,
        ge=0,
        description="further eraser directions, fitted after the first erase_dims against what the "
        "video's OTHER clips share (their leave-one-out mean) within an action: who and where, in motion",
    )
    kernel_erase_dims: int = Field(
        0,
        ge=0,
        description="r: a nonlinear eraser after the linear one (kernel.py), refitted before every epoch: "
        "the r kernel canonical variates of the output (random Fourier features, resampled each refit) "
        "most correlated with the video's raw static look are regressed out of the output; 0 = off",
    )
    kernel_erase_features: int = Field(512, ge=2, description="random Fourier features of that eraser")
    kernel_erase_reg: float = Field(0.1, gt=0, description="ridge of its kernel CCA (share of mean variance)")
    micro_batch: int = Field(64, ge=1, description="fixed inference kernel shape; rows are zero-padded")

    @model_validator(mode="after")
    def _shapes(self) -> AdapterConfig:
        if self.variant == "paper" and self.dim % self.heads:
            raise ValueError(f"paper variant: dim {self.dim} is not divisible by heads {self.heads}")
        if self.variant == "paper" and self.erase_dims:
            raise ValueError("the paper variant has no eraser; set erase_dims=0")
        if self.variant == "paper" and self.erase_clip_dims:
            raise ValueError("the paper variant has no eraser; set erase_clip_dims=0")
        if self.erase_clip_dims and not self.erase_dims:
            raise ValueError("erase_clip_dims needs erase_dims > 0 (they are fitted after those)")
        if self.kernel_erase_dims and not self.erase_dims:
            raise ValueError("kernel_erase_dims needs erase_dims > 0 (it is fitted after the linear eraser)")
        if self.kernel_erase_dims > self.kernel_erase_features:
            raise ValueError("kernel_erase_dims exceeds kernel_erase_features")
        if self.erase_dims + self.erase_clip_dims > self.dim:
            total = self.erase_dims + self.erase_clip_dims
            raise ValueError(f"erase_dims + erase_clip_dims = {total} exceeds dim {self.dim}")
        if self.variant == "clip":
            if self.temporal and self.dim % self.heads:
                raise ValueError(f"temporal tokens: dim {self.dim} is not divisible by heads {self.heads}")
            if not self.temporal and self.dim % self.tokens:
                raise ValueError(f"dim {self.dim} is not divisible by tokens {self.tokens}")
            if not self.temporal and self.width % self.heads:
                raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        return self


class TaskWeights(_Frozen):
    """Per-task weights inside L_T; 0 switches a task off (to measure it later as an unseen task)."""

    action: float = Field(1.0, ge=0)
    detection: float = Field(1.0, ge=0)
    anomaly: float = Field(1.0, ge=0)

    def enabled(self) -> tuple[TaskName, ...]:
        """Names of the tasks with a positive weight."""
        names: tuple[TaskName, ...] = ("action", "detection", "anomaly")
        return tuple(n for n in names if getattr(self, n) > 0)


class ObjectiveConfig(_Frozen):
    """L = ω_LC·L_LC + ω_T·L_T − ω_B·L_B − ω_X·L_X + ω_H·L_H + ω_K·L_K − ω_C·L_C (design §2; the last
    4 are ours).

    L_B: NT-Xent over the adapter outputs of two static clips per video (maximised); the paper's
    privacy loss, off in our default since the ablation of issue 24 (dev, 5 seeds, full attacker panel:
    without it every removed share moved by less than one sd and utility was unchanged).
    L_X (`cross_view`, off by default): NT-Xent between the adapter output of a motion clip and of a
    static clip of the same video (maximised). `clamp_privacy` caps L_B and L_X at their chance value
    log(2N-1): pushing pairs apart beyond "indistinguishable" earns nothing (anti-similarity is a
    fingerprint too) and the maximisation stays bounded. L_X left the default after the ablation of
    issue 24: its pairs start above the cap, so min(L_X, chance) is constant and its gradient zero;
    adapters trained with ω_X 1 and 0 were the same bytes (dev seeds 0-2, demo seed 3).
    L_H (`independence`): kernel dependence (normalised HSIC, in [0, 1]) between the anonymised motion
    clip and the RAW static embedding of its video, within action classes (minimised).
    L_K (`kernel`): the mean squared batch correlation of kernel canonical variate pairs between the
    output and the RAW static look, fitted in closed form before every epoch on fresh random Fourier
    features (kernel.py), within action classes (minimised).
    L_C (`critic`): the loss of a learned critic (critic.py) trained each step to match an adapted
    clip (motion, and static with `critic_static`) to its video's RAW static look among the batch's
    videos of the same action; capped at chance and maximised. With `private_labels` the critic
    predicts those private attributes instead (label-informed; a ceiling measurement, never default).
    The paper preset is ω_LC=100, ω_T=1, ω_B=1 with L_X and L_H off and no clamp.
    """

    name: ObjectiveName = "default"
    lc: float = Field(10.0, ge=0, description="ω_LC")
    task: float = Field(1.0, ge=0, description="ω_T")
    privacy: float = Field(0.0, ge=0, description="ω_B (the paper's L_B; off in our default)")
    tau: float = Field(0.1, gt=0)
    tasks: TaskWeights = TaskWeights()
    clamp_privacy: bool = True
    cross_view: float = Field(0.0, ge=0, description="ω_X (ablations only; inert on every store tried)")
    independence: float = Field(10.0, ge=0, description="ω_H")
    critic: float = Field(
        0.0,
        ge=0,
        description="ω_C: a learned nonlinear critic, trained in alternation, whose loss the adapter "
        "maximises up to chance (critic.py); 0 = off",
    )
    critic_static: bool = Field(True, description="the critic also reads adapted static clips")
    critic_hidden: int = Field(256, ge=1, description="the critic's hidden width")
    critic_lr: float = Field(1e-3, gt=0, description="the critic's AdamW learning rate")
    critic_steps: int = Field(1, ge=1, description="critic updates per adapter step")
    critic_refit: int = Field(
        0,
        ge=0,
        description="re-initialise the critic before every epoch and train it this many steps on the "
        "adapter's current outputs first (0 = one critic for the whole run): a fresh critic cannot "
        "have been fooled by the adapter's earlier moves",
    )
    private_labels: tuple[str, ...] = Field(
        (),
        description="label-informed critic (never the default): the private_* columns whose values "
        "on the TRAIN videos the critic learns to predict, instead of matching the raw static look",
    )
    kernel: float = Field(
        0.0,
        ge=0,
        description="ω_K: a nonlinear eraser term (kernel.py): before every epoch a kernel CCA on fresh "
        "random Fourier features of the output and of the video's RAW static look is fitted in closed "
        "form; the adapter drives the batch correlation of the fitted variate pairs to 0; 0 = off",
    )
    kernel_dims: int = Field(32, ge=1, description="kernel canonical pairs fitted per refit")
    kernel_features: int = Field(512, ge=2, description="random Fourier features per side (sin + cos)")
    kernel_reg: float = Field(
        0.1, gt=0, description="ridge of the kernel CCA, as a share of the mean feature variance"
    )
    kernel_bandwidth: float = Field(
        1.0, gt=0, description="Gaussian kernel bandwidth as a multiple of the median distance"
    )
    kernel_static: bool = Field(
        True,
        description="fit and apply the kernel term on adapted static clips too (each against the look "
        "of its video's other static frames)",
    )

    @model_validator(mode="after")
    def _critic(self) -> ObjectiveConfig:
        if self.private_labels and self.critic == 0:
            raise ValueError("private_labels are read by the critic only; set critic > 0")
        return self


def paper_objective(tasks: TaskWeights | None = None) -> ObjectiveConfig:
    """The paper's objective: ω_LC=100, ω_T=1, ω_B=1, nothing else."""
    return ObjectiveConfig(
        name="paper",
        lc=100.0,
        task=1.0,
        privacy=1.0,
        tasks=tasks or TaskWeights(),
        clamp_privacy=False,
        independence=0.0,
    )


def default_objective(tasks: TaskWeights | None = None) -> ObjectiveConfig:
    """Our default objective: ω_LC=10, ω_T=1, ω_H=10, no L_B (see ObjectiveConfig)."""
    return ObjectiveConfig(tasks=tasks or TaskWeights())


def objective(name: ObjectiveName, tasks: TaskWeights | None = None) -> ObjectiveConfig:
    """The named objective preset (`--objective paper|default`)."""
    return paper_objective(tasks) if name == "paper" else default_objective(tasks)


class TrainConfig(_Frozen):
    """One training run. `lr` is given at `base_batch` and scaled linearly with `batch_size`."""

    adapter: AdapterConfig
    objective: ObjectiveConfig = ObjectiveConfig()
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(512, ge=2)
    lr: float = Field(1e-4, gt=0)
    base_batch: int = Field(512, ge=1)
    weight_decay: float = Field(0.05, ge=0)
    warmup_epochs: int = Field(0, ge=0, description="reconstruction-only epochs (L_LC alone) first")
    sequences_per_step: int = Field(8, ge=1, description="detection / anomaly videos per step")
    privacy_videos: int = Field(
        128, ge=2, description="at most this many videos per step in the privacy terms"
    )
    select_tolerance: float = Field(
        0.0, ge=0, description="keep the latest epoch whose val action accuracy is within this of the best"
    )
    seed: int = 0
    device: str = "cpu"

    @property
    def scaled_lr(self) -> float:
        """The learning rate actually used: lr × batch_size / base_batch."""
        return self.lr * self.batch_size / self.base_batch


def train_recipe(name: ObjectiveName, dim: int, **overrides: object) -> TrainConfig:
    """The measured recipe of an objective, for a store of embedding size `dim`.

    `paper`: the paper variant and objective, batch 512, lr 1e-4, 100 epochs (the released settings).
    `default`: the clip variant with an eraser of min(96, 3D/8) directions fitted against the static look
    and min(16, D/16) more against what a video's other clips share, our objective, batch 128, lr 1e-3
    at 512.
    `overrides` replace TrainConfig fields (e.g. epochs=30, seed=1).
    """
    if name == "paper":
        base: dict[str, object] = {
            "adapter": AdapterConfig(dim=dim, variant="paper"),
            "objective": paper_objective(),
        }
    else:
        base = {
            "adapter": AdapterConfig(
                dim=dim,
                erase_dims=min(DEFAULT_ERASE_DIMS, 3 * dim // 8),
                erase_clip_dims=min(DEFAULT_ERASE_CLIP_DIMS, dim // 16),
            ),
            "objective": default_objective(),
            "batch_size": 128,
            "lr": 1e-3,  # at base_batch 512, i.e. 2.5e-4 at batch 128
        }
    return TrainConfig.model_validate({**base, **overrides})
