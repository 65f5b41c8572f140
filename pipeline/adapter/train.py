"""Training of the adapter on cached latents held in memory (streaming is the flow's business).

Shapes: B clips of a step, P videos of a step (their positive pairs), V videos, L clips per video,
D embedding size, C classes.

One step: B training motion clips (shuffled); for up to `privacy_videos` of their videos, two of the
video's cached static clips (drawn afresh each step); `sequences_per_step` untrimmed detection videos
and anomaly videos as whole clip sequences. The adapter and the task heads take one AdamW step on the
objective (config.ObjectiveConfig). With `erase_dims`, the adapter's linear eraser is refitted in closed
form before every epoch (nullspace.py). With a critic (`critic` > 0), the critic takes its own AdamW
step(s) on the step's detached outputs first (critic.py). With a kernel term (`kernel` > 0), a kernel
CCA on fresh random Fourier features is refitted in closed form before every epoch, after the eraser
(kernel.py); with `kernel_erase_dims` the adapter's kernel eraser is refitted after the linear one, and
once more on the selected adapter. Only video membership, static clips and task
labels are used: never a private attribute, unless the objective names `private_labels` (the
label-informed critic, a ceiling measurement).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
from torch import nn

from pipeline.adapter import losses
from pipeline.adapter.config import ObjectiveConfig, TrainConfig
from pipeline.adapter.critic import LabelCritic, LookCritic
from pipeline.adapter.data import AdapterChunks, AdapterData
from pipeline.adapter.errors import AdapterError
from pipeline.adapter.heads import TaskHeads
from pipeline.adapter.kernel import KernelEraser, KernelFit, kernel_loss
from pipeline.adapter.model import ClipAdapter, build_adapter
from pipeline.adapter.nullspace import chain, erase, fit_nullspace
from pipeline.probes.inputs import mean_by_owner

OnEpoch = Callable[[int, dict[str, float]], None]


@dataclass
class TrainResult:
    """The selected adapter (eval mode, CPU), its co-trained task heads and the run's history."""

    model: nn.Module
    heads: TaskHeads
    config: TrainConfig
    history: list[dict[str, float]]  # one dict of metrics per epoch
    best_epoch: int  # 0-based index into history
    val_action_acc: float  # NaN without validation action labels
    data_checksum: str
    seconds: float


@dataclass
class _Index:
    """Integer plans over `AdapterData`, computed once."""

    train_clips: np.ndarray  # (Nt,) motion rows of training videos
    val_clips: np.ndarray  # (Nv,) motion rows of validation videos with an action label
    clip_start: np.ndarray  # (V+1,) motion rows of video v: clip_start[v]:clip_start[v+1]
    static_rows: np.ndarray  # (M,) static rows sorted by video
    static_start: np.ndarray  # (V+1,) into static_rows
    video_action: np.ndarray  # (V,) the video's action (-1 = none / mixed)
    detection_videos: np.ndarray  # training videos with detection labels
    anomaly_videos: dict[int, np.ndarray] = field(default_factory=dict)  # bag label -> training videos
    has_static: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # (V,) >= 2 static clips
    # what the eraser is fitted on: motion and static (>= 2 per video) rows of training AND validation
    # videos; it reads no task loss, so the validation videos only add looks to its closed-form fit
    eraser_clips: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    eraser_static: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @classmethod
    def build(cls, data: AdapterData) -> _Index:
        V = data.num_videos
        train_video = data.split == "train"
        fit_video = train_video | (data.split == "val")
        counts = np.bincount(data.video, minlength=V)
        clip_start = np.concatenate([[0], np.cumsum(counts)])
        static_rows = np.argsort(data.static_video, kind="stable")
        static_start = np.concatenate([[0], np.cumsum(np.bincount(data.static_video, minlength=V))])
        action = data.action if data.action is not None else np.full(len(data.video), -1)
        video_action = np.full(V, -1)
        labelled = action >= 0
        video_action[data.video[labelled]] = action[labelled]
        val = (data.split[data.video] == "val") & labelled
        detection_videos = np.zeros(0, np.int64)
        if data.detection is not None:
            has = np.zeros(V, bool)
            has[data.video[data.detection >= 0]] = True
            detection_videos = np.flatnonzero(has & train_video)
        anomaly_videos: dict[int, np.ndarray] = {}
        if data.anomaly is not None:
            anomaly_videos = {b: np.flatnonzero((data.anomaly == b) & train_video) for b in (0, 1)}
        has_static = np.diff(static_start) >= 2
        return cls(
            train_clips=np.flatnonzero(train_video[data.video]),
            val_clips=np.flatnonzero(val),
            clip_start=clip_start,
            static_rows=static_rows,
            static_start=static_start,
            video_action=video_action,
            detection_videos=detection_videos,
            anomaly_videos=anomaly_videos,
            has_static=has_static,
            eraser_clips=np.flatnonzero(fit_video[data.video]),
            eraser_static=np.flatnonzero((fit_video & has_static)[data.static_video]),
        )

    def static_pairs(self, videos: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Two distinct static rows of each video (each must have >= 2): (P,), (P,)."""
        start, count = self.static_start[videos], np.diff(self.static_start)[videos]
        i = (rng.random(len(videos)) * count).astype(np.int64)
        j = (i + 1 + (rng.random(len(videos)) * (count - 1)).astype(np.int64)) % count
        return self.static_rows[start + i], self.static_rows[start + j]


def _padded(index: _Index, videos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Motion rows of whole videos as a padded (V, L) matrix and its mask (padding rows point at 0)."""
    counts = np.diff(index.clip_start)[videos]
    L = int(counts.max())
    rows = index.clip_start[videos][:, None] + np.arange(L)[None, :]
    mask = np.arange(L)[None, :] < counts[:, None]
    return np.where(mask, rows, 0), mask


def _check(data: AdapterData, cfg: TrainConfig) -> None:
    data.validate()
    if cfg.adapter.dim != data.dim:
        raise AdapterError(
            f"adapter config has dim {cfg.adapter.dim} but the data has dim {data.dim}; "
            "build AdapterConfig with dim from the store"
        )
    if cfg.adapter.temporal and data.tokens is None:
        raise AdapterError(
            "adapter attends over temporal tokens but the data has none; extract with --tokens"
        )


class _Step:
    """Everything one optimisation step needs, as tensors on the training device."""

    def __init__(self, data: AdapterData, cfg: TrainConfig, device: torch.device) -> None:
        self.data, self.cfg = data, cfg
        self.device = device
        self.motion = torch.as_tensor(data.motion, dtype=torch.float32, device=device)
        self.static = torch.as_tensor(data.static, dtype=torch.float32, device=device)
        self.tokens = None if data.tokens is None else torch.as_tensor(data.tokens, device=device)
        n = len(data.motion)
        self.action = torch.as_tensor(
            data.action if data.action is not None else np.full(n, -1), device=device
        )
        self.detection = None if data.detection is None else torch.as_tensor(data.detection, device=device)
        self.video_action = torch.as_tensor(self._video_action(data), device=device)
        look = mean_by_owner(data.static, data.static_video, data.num_videos)
        self.static_mean = torch.as_tensor(look.astype(np.float32), device=device)  # (V, D)
        counts = np.bincount(data.static_video, minlength=data.num_videos)
        self.static_count = torch.as_tensor(counts, dtype=torch.float32, device=device)  # (V,)
        self.static_video = torch.as_tensor(data.static_video, device=device)  # (M,)
        self.private = None if data.private is None else torch.as_tensor(data.private, device=device)

    @staticmethod
    def _video_action(data: AdapterData) -> np.ndarray:
        out = np.full(data.num_videos, -1)
        if data.action is not None:
            lab = data.action >= 0
            out[data.video[lab]] = data.action[lab]
        return out

    def rows(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Cached embeddings (and tokens) of motion rows `idx`: (n, D), (n, T', D)."""
        t = torch.as_tensor(idx, device=self.device)
        return self.motion[t], None if self.tokens is None else self.tokens[t]

    def static_rows(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Static clips `idx`: (n, D), and as T' identical tokens (n, T', D) when tokens are used."""
        x = self.static[torch.as_tensor(idx, device=self.device)]
        if self.tokens is None:
            return x, None
        return x, x[:, None].expand(-1, self.tokens.shape[1], -1)


def train_adapter(
    data: AdapterData | AdapterChunks, cfg: TrainConfig, on_epoch: OnEpoch | None = None
) -> TrainResult:
    """Train an adapter on `data` with `cfg`; select the epoch by validation action accuracy.

    `data` is held in memory whole, or (`AdapterChunks`) streamed: every epoch visits the groups in a
    new random order, one in memory at a time, and the eraser is refitted on the epoch's first group.
    `on_epoch(epoch, metrics)` receives every epoch's loss terms and validation metrics.
    """
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = torch.device(cfg.device)
    chunks = data if isinstance(data, AdapterChunks) else None
    resident = _Loaded.of(data if isinstance(data, AdapterData) else data.load(0), cfg, device)
    dim = resident.data.dim if chunks is None else chunks.dim
    actions = resident.data.num_actions if chunks is None else chunks.num_actions
    detection_classes = resident.data.detection_classes if chunks is None else chunks.detection_classes
    model = build_adapter(cfg.adapter).to(device)
    heads = TaskHeads(dim, actions, detection_classes).to(device)
    opt = torch.optim.AdamW(
        [*model.parameters(), *heads.parameters()], lr=cfg.scaled_lr, weight_decay=cfg.weight_decay
    )
    critic = _Critic.build(cfg, resident, chunks is not None, device)  # None unless ω_C > 0
    kernel: _Kernel | None = None  # refitted before every epoch when ω_K > 0

    history: list[dict[str, float]] = []
    best: tuple[int, float, dict[str, torch.Tensor], dict[str, torch.Tensor]] | None = None
    B = cfg.batch_size
    for epoch in range(cfg.epochs):
        epoch_started = time.perf_counter()
        warm = epoch < cfg.warmup_epochs
        model.train()
        heads.train()
        order = [0] if chunks is None else [int(i) for i in rng.permutation(chunks.count)]
        sums: dict[str, float] = {}
        steps_done, correct, total = 0, 0, 0
        eraser: dict[str, float] = {}
        for position, group in enumerate(order):
            if chunks is not None and (position > 0 or epoch > 0 or group != 0):
                resident = _Loaded.of(chunks.load(group), cfg, device)
            t, index = resident.step, resident.index
            if position == 0 and not warm and isinstance(model, ClipAdapter) and cfg.adapter.erase_dims > 0:
                # refit before the epoch, so the heads train (and validation runs) on the eraser in use
                eraser["erased_corr"] = _fit_eraser(model, t, index, B)
                if cfg.adapter.kernel_erase_dims:
                    kernel_rng = np.random.default_rng([cfg.seed, epoch, 1])
                    eraser["kernel_erased_corr"] = _fit_kernel_eraser(model, t, index, B, kernel_rng)
            if position == 0 and not warm and cfg.objective.kernel > 0:
                # after the linear eraser: the kernel pairs are fitted on the output as published
                kernel = _Kernel.build(
                    model, t, index, cfg.objective, np.random.default_rng([cfg.seed, epoch]), B
                )
                eraser["kernel_corr"] = float(kernel.fit.corr.mean())
            if position == 0 and not warm and critic is not None and cfg.objective.critic_refit:
                eraser["critic_refit"] = critic.refit(model, t, index, cfg.objective, rng, B)
            b = min(B, len(index.train_clips))
            shuffled = rng.permutation(index.train_clips)
            for step in range(max(1, len(index.train_clips) // b) if b else 0):
                clips = shuffled[step * b : (step + 1) * b]
                terms = _step_terms(
                    clips, index, t, model, heads, cfg.objective, rng, index.has_static, warm, critic, kernel
                )
                loss = terms.pop("_loss")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                steps_done += 1
                sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
                for key, value in terms.items():
                    sums[key] = sums.get(key, 0.0) + float(value)
            hits, seen = _val_hits(model, heads, t, index, B)
            correct, total = correct + hits, total + seen
        metrics = {key: value / max(steps_done, 1) for key, value in sums.items()}
        metrics.update(eraser)
        metrics["val_action_acc"] = correct / total if total and actions else float("nan")
        metrics["seconds"] = time.perf_counter() - epoch_started
        history.append(metrics)
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        best = _select(best, epoch, metrics["val_action_acc"], cfg.select_tolerance, model, heads, warm)

    assert best is not None
    best_epoch, _, model_state, head_state = best
    model.load_state_dict(model_state)
    heads.load_state_dict(head_state)
    if isinstance(model, ClipAdapter) and cfg.adapter.kernel_erase_dims:
        # the selected epoch's kernel eraser was fitted before that epoch's steps moved the output; refit
        # it once on the selected adapter, so the published output is erased as fitted (closed form)
        final = _fit_kernel_eraser(
            model, resident.step, resident.index, B, np.random.default_rng([cfg.seed, cfg.epochs, 2])
        )
        history[best_epoch]["kernel_erased_corr_final"] = final
    return TrainResult(
        model=model.cpu().eval(),
        heads=heads.cpu().eval(),
        config=cfg,
        history=history,
        best_epoch=best_epoch,
        val_action_acc=history[best_epoch]["val_action_acc"],
        data_checksum=data.checksum(),
        seconds=time.perf_counter() - started,
    )


@dataclass
class _Loaded:
    """One group of training data, checked and on the device."""

    data: AdapterData
    index: _Index
    step: _Step

    @classmethod
    def of(cls, data: AdapterData, cfg: TrainConfig, device: torch.device) -> _Loaded:
        _check(data, cfg)
        return cls(data, _Index.build(data), _Step(data, cfg, device))


@dataclass
class _Critic:
    """The learned privacy critic (critic.py) with its own optimiser; it never joins the artifact."""

    module: LookCritic | LabelCritic
    opt: torch.optim.Optimizer
    steps: int

    @classmethod
    def build(
        cls, cfg: TrainConfig, resident: _Loaded, streamed: bool, device: torch.device
    ) -> _Critic | None:
        obj = cfg.objective
        if obj.critic <= 0:
            return None
        data = resident.data
        module: LookCritic | LabelCritic
        if obj.private_labels:
            if streamed or data.private is None:
                raise AdapterError(
                    "the label-informed critic needs the private labels and the training latents in "
                    "memory; pass --private-labels with a --memory-gb that holds the train/val latents"
                )
            classes = tuple(int(c) + 1 for c in np.maximum(data.private.max(0), 0))
            module = LabelCritic(data.dim, classes, obj.critic_hidden)
        else:
            module = LookCritic(data.dim, obj.critic_hidden, tau=obj.tau)
        module = module.to(device)
        module.set_statistics(
            resident.step.motion[torch.as_tensor(resident.index.train_clips, device=device)]
        )
        opt = torch.optim.AdamW(module.parameters(), lr=obj.critic_lr, weight_decay=cfg.weight_decay)
        return cls(module, opt, obj.critic_steps)

    def losses(
        self,
        t: _Step,
        obj: ObjectiveConfig,
        batch: tuple[torch.Tensor, np.ndarray],
        rep: tuple[torch.Tensor, np.ndarray],
        static: tuple[torch.Tensor, np.ndarray],
    ) -> list[tuple[torch.Tensor, float]]:
        """(loss, chance) per query set. `batch`: every clip of the step and its video; `rep`: one clip
        per video and the videos; `static`: one adapted static clip per video of `rep` and its row."""
        z_rep, videos = rep
        vt = torch.as_tensor(videos, device=t.device)
        out: list[tuple[torch.Tensor, float]] = []
        if isinstance(self.module, LabelCritic):
            assert t.private is not None
            z, clip_video = batch
            out.append(self.module.loss(z, t.private[torch.as_tensor(clip_video, device=t.device)]))
            if obj.critic_static:
                out.append(self.module.loss(static[0], t.private[vt]))
            return out
        group = t.video_action[vt]
        out.append(self.module.loss(z_rep, t.static_mean[vt], group))
        if obj.critic_static:
            zs, rows = static
            n = t.static_count[vt, None]
            raw = t.static[torch.as_tensor(rows, device=t.device)]
            others = (t.static_mean[vt] * n - raw) / (n - 1)  # the look without this very frame
            out.append(self.module.loss(zs, others, group))
        return out

    def update(
        self, t: _Step, obj: ObjectiveConfig, *args: tuple[torch.Tensor, np.ndarray], steps: int = 0
    ) -> float:
        """The critic's own step(s) (`steps`, default its per-step count) on detached adapter outputs;
        returns the last loss."""
        detached = [(z.detach(), rows) for z, rows in args]
        loss = torch.zeros(())
        for _ in range(steps or self.steps):
            loss = sum((term for term, _ in self.losses(t, obj, *detached)), torch.zeros((), device=t.device))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        return float(loss.detach())

    def refit(
        self,
        model: nn.Module,
        t: _Step,
        index: _Index,
        obj: ObjectiveConfig,
        rng: np.random.Generator,
        batch: int,
    ) -> float:
        """A fresh critic (new weights, new optimiser state) trained `critic_refit` steps on the adapter's
        current outputs, a new draw of training clips each step; returns its last loss."""
        for module in self.module.modules():
            if isinstance(module, nn.Linear):
                module.reset_parameters()
        self.opt = torch.optim.AdamW(
            self.module.parameters(),
            lr=self.opt.defaults["lr"],
            weight_decay=self.opt.defaults["weight_decay"],
        )
        data, joint = t.data, model.config.variant != "paper"  # type: ignore[union-attr]
        loss = 0.0
        for _ in range(obj.critic_refit):
            clips = rng.choice(index.train_clips, min(batch, len(index.train_clips)), replace=False)
            first = np.unique(data.video[clips], return_index=True)[1]
            rep = first[index.has_static[data.video[clips[first]]]]
            videos = data.video[clips[rep]]
            if len(videos) < 2:
                continue
            s1, _ = index.static_pairs(videos, rng)
            with torch.no_grad():
                z, zs = _forward_groups(model, [t.rows(clips), t.static_rows(s1)], joint)
            rep_t = torch.as_tensor(rep, device=t.device)
            loss = self.update(t, obj, (z, data.video[clips]), (z[rep_t], videos), (zs, s1), steps=1)
        return loss


@dataclass
class _Kernel:
    """One epoch's kernel fit (kernel.py) and the look variates it is scored against, as tensors:
    per video (its mean raw static clip) and per static row (the mean of its video's OTHER static clips)."""

    fit: KernelFit
    video_variates: torch.Tensor  # (V, k)
    static_variates: torch.Tensor  # (M, k), by static row

    @classmethod
    @torch.no_grad()
    def build(
        cls,
        model: nn.Module,
        t: _Step,
        index: _Index,
        obj: ObjectiveConfig,
        rng: np.random.Generator,
        batch: int,
    ) -> _Kernel:
        """Kernel CCA between the adapter's current outputs of the train and val clips of one-action videos
        (and their static clips with `kernel_static`) and the raw look, within actions; fresh features."""
        step = 4 * batch
        rows = index.eraser_clips
        z = torch.cat([model(*t.rows(rows[i : i + step])) for i in range(0, len(rows), step)])
        videos = torch.as_tensor(t.data.video[rows], device=t.device)
        looks = [t.static_mean[videos]]
        n = t.static_count[t.static_video, None]  # (M, 1)
        others = (t.static_mean[t.static_video] * n - t.static) / (n - 1).clamp_min(1)  # (M, D)
        if obj.kernel_static and len(index.eraser_static):
            srows = index.eraser_static
            zs = torch.cat([model(*t.static_rows(srows[i : i + step])) for i in range(0, len(srows), step)])
            sv = t.static_video[torch.as_tensor(srows, device=t.device)]
            z, videos = torch.cat([z, zs]), torch.cat([videos, sv])
            looks.append(others[torch.as_tensor(srows, device=t.device)])
        group = t.video_action[videos].cpu().numpy()
        keep = group >= 0 if (group >= 0).any() else np.ones(len(group), bool)
        look = torch.cat(looks).cpu().numpy().astype(np.float64)
        fit = KernelFit.fit(
            z.cpu().numpy().astype(np.float64)[keep],
            look[keep],
            group[keep],
            dims=obj.kernel_dims,
            features=obj.kernel_features,
            reg=obj.kernel_reg,
            rng=rng,
            bandwidth=obj.kernel_bandwidth,
        )

        def variates(s: torch.Tensor) -> torch.Tensor:
            return torch.as_tensor(fit.look_variates(s.cpu().numpy()), dtype=torch.float32, device=t.device)

        return cls(fit, variates(t.static_mean), variates(others))

    def loss(self, z: torch.Tensor, targets: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        """L_K of adapted clips `z` (N, D) against look variates `targets` (N, k), rows of one action only."""
        keep = group >= 0
        if int(keep.sum()) < 2:
            return z.new_zeros(())
        return kernel_loss(self.fit, z[keep], targets[keep], group[keep])


def _forward_groups(
    model: nn.Module, groups: list[tuple[torch.Tensor, torch.Tensor | None]], joint: bool
) -> list[torch.Tensor]:
    """Adapter outputs of several row groups. A per-clip adapter runs them as ONE batch (its outputs
    do not depend on the batch, and one big call is much cheaper); the paper variant runs each group
    as its own batch, as the released code does."""
    if not joint:
        return [model(x, tok) for x, tok in groups]
    x = torch.cat([g[0] for g in groups])
    tok = None if groups[0][1] is None else torch.cat([g[1] for g in groups if g[1] is not None])
    return list(torch.split(model(x, tok), [len(g[0]) for g in groups]))


def _step_terms(
    clips: np.ndarray,
    index: _Index,
    t: _Step,
    model: nn.Module,
    heads: TaskHeads,
    obj: ObjectiveConfig,
    rng: np.random.Generator,
    has_static: np.ndarray,
    warm: bool,
    critic: _Critic | None = None,
    kernel: _Kernel | None = None,
) -> dict[str, torch.Tensor]:
    """The loss of one step ("_loss") and every term of it, detached."""
    data, dev = t.data, t.device
    joint = model.config.variant != "paper"  # type: ignore[union-attr]
    groups = [t.rows(clips)]  # 0: the batch (B)
    names = ["batch"]

    # sequences of untrimmed videos for detection / anomaly
    det_rows = det_mask = anom_rows = anom_mask = None
    anom_videos = np.zeros(0, np.int64)
    if not warm and obj.tasks.detection > 0 and len(index.detection_videos) and t.detection is not None:
        k = min(len(index.detection_videos), t.cfg.sequences_per_step)
        det_rows, det_mask = _padded(index, rng.choice(index.detection_videos, k, replace=False))
        groups.append(t.rows(det_rows.reshape(-1)))
        names.append("detection")
    bags = index.anomaly_videos
    if not warm and obj.tasks.anomaly > 0 and bags and len(bags[0]) and len(bags[1]):
        k = max(1, t.cfg.sequences_per_step // 2)
        anom_videos = np.concatenate(
            [rng.choice(bags[b], min(len(bags[b]), k), replace=False) for b in (1, 0)]
        )
        anom_rows, anom_mask = _padded(index, anom_videos)
        groups.append(t.rows(anom_rows.reshape(-1)))
        names.append("anomaly")

    # privacy: one clip per video of the batch and two static clips of each
    first = np.unique(data.video[clips], return_index=True)[1]
    rep_pos = first[has_static[data.video[clips[first]]]]  # batch positions, one per video
    if len(rep_pos) > t.cfg.privacy_videos:
        rep_pos = np.sort(rng.choice(rep_pos, t.cfg.privacy_videos, replace=False))
    videos = data.video[clips[rep_pos]]
    privacy_on = not warm and len(videos) >= 2
    if privacy_on:
        s1, s2 = index.static_pairs(videos, rng)
        groups += [t.static_rows(s1), t.static_rows(s2)]
        names += ["static1", "static2"]
    out_z = dict(zip(names, _forward_groups(model, groups, joint), strict=True))

    x, z = groups[0][0], out_z["batch"]  # (B, D)
    lc = losses.latent_consistency(x, z)
    out: dict[str, torch.Tensor] = {"lc": lc.detach()}
    if warm:
        out["_loss"] = lc
        return out

    task = z.new_zeros(())
    if obj.tasks.action > 0 and data.num_actions > 0:
        ce = losses.action_ce(heads.action_logits(z), t.action[torch.as_tensor(clips, device=dev)])
        task = task + obj.tasks.action * ce
        out["action"] = ce.detach()
    if det_rows is not None and det_mask is not None and t.detection is not None:
        zs = out_z["detection"].view(*det_rows.shape, -1)  # (V, L, D)
        mask = torch.as_tensor(det_mask, device=dev)
        labels = t.detection[torch.as_tensor(det_rows, device=dev)].masked_fill(~mask, -1)  # (V, L)
        det = losses.temporal_detection_loss(heads.detection_logits(zs), labels)
        task = task + obj.tasks.detection * det
        out["detection"] = det.detach()
    if anom_rows is not None and anom_mask is not None and data.anomaly is not None:
        zs = out_z["anomaly"].view(*anom_rows.shape, -1)  # (V, L, D)
        abnormal = torch.as_tensor(data.anomaly[anom_videos] == 1, device=dev)
        mil = losses.anomaly_mil_ranking(
            heads.anomaly_scores(zs), torch.as_tensor(anom_mask, device=dev), abnormal
        )
        task = task + obj.tasks.anomaly * mil
        out["anomaly"] = mil.detach()
    out["task"] = task.detach()

    privacy = z.new_zeros(())
    if privacy_on:
        zs1, zs2 = out_z["static1"], out_z["static2"]  # (P, D)
        chance = losses.nt_xent_chance(len(videos))
        bound = losses.bounded_privacy if obj.clamp_privacy else (lambda v, c: v)
        lb = losses.nt_xent(zs1, zs2, obj.tau)
        out["privacy"] = lb.detach()
        privacy = obj.privacy * bound(lb, chance)
        z_rep = z[torch.as_tensor(rep_pos, device=dev)]  # (P, D)
        if obj.cross_view > 0:
            lx = losses.nt_xent(z_rep, zs1, obj.tau)
            out["cross_view"] = lx.detach()
            privacy = privacy + obj.cross_view * bound(lx, chance)
        if obj.independence > 0:
            # dependence of the anonymised clip on its video's RAW static look (the adapter cannot
            # game a view it does not produce), within action classes: static frames show the
            # action's poses, which the output must keep
            vt = torch.as_tensor(videos, device=dev)
            group = t.video_action[vt]
            hs = losses.kernel_dependence(
                losses.within_groups(z_rep, group), losses.within_groups(t.static_mean[vt], group)
            )
            out["independence"] = hs.detach()
            privacy = privacy - obj.independence * hs
        if critic is not None:
            # alternate: the critic learns on this step's outputs, then the adapter fights the new critic
            views = ((z, data.video[clips]), (z_rep, videos), (zs1, s1))
            critic.update(t, obj, *views)
            terms = critic.losses(t, obj, *views)
            out["critic"] = torch.stack([term.detach() for term, _ in terms]).mean()
            out["critic_chance"] = torch.tensor(sum(c for _, c in terms) / len(terms))
            capped = [losses.bounded_privacy(term, chance) for term, chance in terms]
            privacy = privacy + obj.critic * torch.stack(capped).sum()
    if kernel is not None:
        # the fitted kernel pairs: every clip of the batch against its video's look, and the adapted
        # static clips against the look of their video's other static frames
        vt = torch.as_tensor(data.video[clips], device=dev)
        lk = kernel.loss(z, kernel.video_variates[vt], t.video_action[vt])
        if obj.kernel_static and privacy_on:
            sv = torch.as_tensor(videos, device=dev)
            lk = lk + kernel.loss(
                out_z["static1"], kernel.static_variates[torch.as_tensor(s1, device=dev)], t.video_action[sv]
            )
        out["kernel"] = lk.detach()
        privacy = privacy - obj.kernel * lk
    out["_loss"] = obj.lc * lc + obj.task * task - privacy
    return out


_Rows = Callable[[np.ndarray], tuple[torch.Tensor, torch.Tensor | None]]


def _unerased(model: ClipAdapter, fetch: _Rows, rows: np.ndarray, step: int) -> torch.Tensor:
    """The adapter's output before its eraser for `rows` (fetched by `fetch`), `step` rows at a time."""
    return torch.cat([model.unerased(*fetch(rows[i : i + step])) for i in range(0, len(rows), step)])


@torch.no_grad()
def _fit_eraser(model: ClipAdapter, t: _Step, index: _Index, batch: int) -> float:
    """Refit the adapter's eraser on the training and validation clips of videos with one action label
    (all of those clips when none has one): `erase_dims` directions against the video's static look,
    then `erase_clip_dims` more against what its other clips share. Returns the mean erased canonical
    correlation."""
    cfg = model.config
    rows, step = index.eraser_clips, 4 * batch
    z = _unerased(model, t.rows, rows, step)
    videos = torch.as_tensor(t.data.video[rows], device=t.device)
    # what the video's OTHER clips share: the leave-one-out mean of its raw clips
    x = t.rows(rows)[0]
    sums = torch.zeros_like(t.static_mean).index_add_(0, videos, x)  # (V, D)
    count = torch.zeros(len(sums), device=t.device).index_add_(0, videos, torch.ones_like(x[:, 0]))
    n = count[videos, None]
    look, shared = t.static_mean[videos], (sums[videos] - x) / (n - 1).clamp_min(1)
    has_shared = n[:, 0] >= 2  # a video's only clip has no other clip to share anything with
    if cfg.erase_static:
        # every train/val static clip against the mean of its video's OTHER static clips (and its clips)
        srows = index.eraser_static
        zs = _unerased(model, t.static_rows, srows, step)
        sv = torch.as_tensor(t.data.static_video[srows], device=t.device)
        n_static = torch.as_tensor(np.diff(index.static_start), device=t.device)[sv, None].to(look.dtype)
        static = t.static[torch.as_tensor(srows, device=t.device)]
        z, videos = torch.cat([z, zs]), torch.cat([videos, sv])
        look = torch.cat([look, (t.static_mean[sv] * n_static - static) / (n_static - 1)])
        shared = torch.cat([shared, sums[sv] / count[sv, None].clamp_min(1)])
        has_shared = torch.cat([has_shared, count[sv] >= 1])
    group = t.video_action[videos]
    # only videos of one action: the look is removed *within* an action, and an untrimmed video's
    # static frames mix the poses of several (fitting on them erases what temporal detection needs)
    keep = group >= 0 if bool((group >= 0).any()) else torch.ones_like(group, dtype=torch.bool)
    z64, group_np = z.cpu().numpy().astype(np.float64), group.cpu().numpy()
    fit = partial(fit_nullspace, reg=cfg.erase_reg, keep_means=cfg.erase_keep_means)
    k = keep.cpu().numpy()
    mean, E, P, corr = fit(z64[k], look.cpu().numpy()[k], group_np[k], cfg.erase_dims)
    if cfg.erase_clip_dims:
        k &= has_shared.cpu().numpy()
        z1 = erase(z64[k], mean, E, P)
        _, E2, P2, corr2 = fit(z1, shared.cpu().numpy()[k], group_np[k], cfg.erase_clip_dims)
        E, P = chain(E, P, E2, P2)
        corr = np.concatenate([corr, corr2])
    model.set_eraser(*(torch.as_tensor(a, dtype=torch.float64, device=t.device) for a in (mean, E, P)))
    return float(corr.mean())


@torch.no_grad()
def _fit_kernel_eraser(
    model: ClipAdapter, t: _Step, index: _Index, batch: int, rng: np.random.Generator
) -> float:
    """Refit the adapter's kernel eraser (kernel.py) on the linearly erased outputs of the train and val
    clips of one-action videos, against their video's raw static look, with fresh random features.
    Returns the mean canonical correlation of the variates it regresses out."""
    cfg = model.config
    rows, step = index.eraser_clips, 4 * batch
    z = torch.cat([model.linear_erased(*t.rows(rows[i : i + step])) for i in range(0, len(rows), step)])
    videos = torch.as_tensor(t.data.video[rows], device=t.device)
    group = t.video_action[videos].cpu().numpy()
    keep = group >= 0 if (group >= 0).any() else np.ones(len(group), bool)
    eraser = KernelEraser.build(
        z.cpu().numpy()[keep],
        t.static_mean[videos].cpu().numpy().astype(np.float64)[keep],
        group[keep],
        dims=cfg.kernel_erase_dims,
        features=cfg.kernel_erase_features,
        reg=cfg.kernel_erase_reg,
        rng=rng,
    )
    model.set_kernel_eraser(
        **{k: torch.as_tensor(v, dtype=torch.float64, device=t.device) for k, v in eraser.buffers().items()}
    )
    return float(eraser.fit.corr.mean())


@torch.no_grad()
def _val_hits(model: nn.Module, heads: TaskHeads, t: _Step, index: _Index, batch: int) -> tuple[int, int]:
    """(correct, total) of the co-trained action head on the validation clips of this data."""
    if len(index.val_clips) == 0 or t.data.num_actions == 0:
        return 0, 0
    correct = 0
    for start in range(0, len(index.val_clips), batch):
        idx = index.val_clips[start : start + batch]
        z = model(*t.rows(idx))
        pred = heads.action_logits(z).argmax(1)
        correct += int((pred == t.action[torch.as_tensor(idx, device=t.device)]).sum())
    return correct, len(index.val_clips)


def _select(
    best: tuple[int, float, dict[str, torch.Tensor], dict[str, torch.Tensor]] | None,
    epoch: int,
    acc: float,
    tolerance: float,
    model: nn.Module,
    heads: TaskHeads,
    warm: bool,
) -> tuple[int, float, dict[str, torch.Tensor], dict[str, torch.Tensor]] | None:
    """Keep the latest epoch whose accuracy is within `tolerance` of the best so far (NaN: the last)."""
    if warm and best is not None:
        return best
    top = acc if best is None or np.isnan(best[1]) else max(best[1], acc)
    if best is None or np.isnan(acc) or acc >= top - tolerance:
        return epoch, top, copy.deepcopy(model.state_dict()), copy.deepcopy(heads.state_dict())
    return best
