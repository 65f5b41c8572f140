"""`train-adapter`: train the Anonymizing Adapter Module on a latent cache, never decoding video.

Reads the cache's motion clips, static clips (and temporal tokens when asked) of the train and val
videos, turns the manifest labels into co-training targets (action per trimmed clip, temporal
detection class per clip of an untrimmed video, anomaly bag per video), trains (pipeline/adapter) and
writes the artifact: `adapter.safetensors` + `adapter.json` (written last). Private attributes are
never read here: only the probes look at them.

A rerun with the same data and settings finds the artifact and returns it without training.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flows.cpu import torch_threads
from flows.limits import MEMORY_PER_LATENT_BYTE
from flows.progress import Advance, progress
from flows.views import binding
from pipeline.adapter import (
    AdapterChunks,
    AdapterData,
    AdapterError,
    AdapterMeta,
    ObjectiveConfig,
    TaskWeights,
    TrainConfig,
    load_adapter,
    meta_from_training,
    save_adapter,
    train_adapter,
    train_recipe,
)
from pipeline.adapter.checkpoint import CONFIG
from pipeline.adapter.config import TRAINING_REVISION, TaskName
from pipeline.errors import ConfigError
from pipeline.probes.config import TemporalConfig
from pipeline.probes.inputs import is_missing
from pipeline.probes.temporal import clip_labels
from stores._atomic import writer_lock
from stores._cache_types import CacheView
from stores.latent_cache import CacheAttrs, LatentCache
from stores.manifest import parse_anomaly_segments, parse_segments

TRAIN_SPLITS = ("train", "val")
TASKS: tuple[TaskName, ...] = ("action", "detection", "anomaly")
PRIVATE = "private_"
CLASSES = "classes.json"  # class names of the co-training heads, beside the artifact
WRITER_LOCK = ".lock-writer"  # one train-adapter run per --out folder (an flock naming its holder)


class TrainAdapterConfig(BaseModel):
    """Options of one `train-adapter` run; unset ones take the objective's measured recipe."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    objective: Literal["default", "paper"] = "default"
    epochs: int = Field(100, ge=1)
    seed: int = 0
    device: str = Field("auto", description="cpu, cuda, cuda:N or auto (cuda when available)")
    batch_size: int | None = Field(None, ge=2)
    lr: float | None = Field(None, gt=0, description="at batch 512; scaled linearly with the batch")
    tasks: tuple[TaskName, ...] = TASKS
    temporal: bool = Field(False, description="attend over the cached temporal tokens (clip variant)")
    erase_dims: int | None = Field(None, ge=0, description="eraser directions (default: the recipe's)")
    erase_static: bool = Field(False, description="fit the eraser on static clips too")
    erase_clip_dims: int | None = Field(
        None,
        ge=0,
        description="eraser directions against what a video's other clips share (default: the recipe's)",
    )
    privacy: float | None = Field(None, ge=0, description="ω_B of L_B (default: the recipe's; ablations)")
    cross_view: float | None = Field(None, ge=0, description="ω_X of L_X (default: the recipe's; ablations)")
    independence: float | None = Field(
        None, ge=0, description="ω_H of L_H (default: the recipe's; ablations)"
    )
    critic: float | None = Field(
        None,
        ge=0,
        description="weight of the learned nonlinear critic (default: the recipe's; 0 turns it off)",
    )
    critic_static: bool | None = Field(None, description="the critic also reads adapted static clips")
    critic_steps: int | None = Field(None, ge=1, description="critic updates per adapter step")
    critic_refit: int | None = Field(
        None, ge=0, description="a fresh critic every epoch, trained this many steps first (0 = off)"
    )
    kernel: float | None = Field(
        None,
        ge=0,
        description="weight of the closed-form kernel eraser term (default: the recipe's; 0 turns it off)",
    )
    kernel_erase_dims: int | None = Field(
        None, ge=0, description="kernel eraser variates regressed out of the output (default: the recipe's)"
    )
    kernel_dims: int | None = Field(None, ge=1, description="kernel canonical pairs fitted per epoch")
    kernel_features: int | None = Field(None, ge=2, description="random Fourier features per side")
    kernel_reg: float | None = Field(None, gt=0, description="ridge of the kernel CCA")
    kernel_static: bool | None = Field(None, description="the kernel term reads adapted static clips too")
    private_labels: tuple[str, ...] = Field(
        (),
        description="label-informed critic: private_* columns whose train-video values it learns "
        "(never the default; an owner's option and the ceiling measurement)",
    )
    memory_gb: float | None = Field(
        None,
        gt=0,
        description="memory for training, about MEMORY_PER_LATENT_BYTE x the latents held; streamed in "
        "groups of videos when the train/val latents need more (default: RAM/4)",
    )
    threads: int = Field(1, ge=0, description="torch CPU threads while training (0: torch's default)")

    def train_config(self, dim: int) -> TrainConfig:
        """The pipeline's TrainConfig for a store of embedding size `dim`."""
        recipe = train_recipe(self.objective, dim)
        weights = TaskWeights(**{t: (1.0 if t in self.tasks else 0.0) for t in TASKS})
        overrides: dict[str, object] = {
            "epochs": self.epochs,
            "seed": self.seed,
            "device": _device(self.device),
            "objective": self._objective(recipe.objective.model_copy(update={"tasks": weights})),
        }
        if self.batch_size is not None:
            overrides["batch_size"] = self.batch_size
        if self.lr is not None:
            overrides["lr"] = self.lr
        adapter: dict[str, object] = {}
        if self.temporal:
            adapter["temporal"] = True
        if self.erase_dims is not None:
            adapter["erase_dims"] = self.erase_dims
        if self.erase_static:
            adapter["erase_static"] = True
        if self.kernel_erase_dims is not None:
            adapter["kernel_erase_dims"] = self.kernel_erase_dims
        if self.erase_clip_dims is not None:
            adapter["erase_clip_dims"] = self.erase_clip_dims
        elif self.erase_dims == 0:
            adapter["erase_clip_dims"] = 0  # --erase-dims 0 turns the whole eraser off
        if adapter:
            if recipe.adapter.variant == "paper":
                raise ConfigError(
                    "--temporal and the --erase-* options need the per-clip adapter; "
                    "the paper variant has none"
                )
            overrides["adapter"] = recipe.adapter.model_copy(update=adapter)
        try:
            return TrainConfig.model_validate({**recipe.model_dump(), **overrides})
        except ValidationError as err:  # e.g. --erase-dims beyond the store's dimension
            reason = str(err.errors()[0]["msg"]).removeprefix("Value error, ")
            raise ConfigError(f"train-adapter options for a store of dimension {dim}: {reason}") from None

    def _objective(self, objective: ObjectiveConfig) -> ObjectiveConfig:
        update: dict[str, object] = {}
        for name in (
            "privacy",
            "cross_view",
            "independence",
            "critic",
            "critic_static",
            "critic_steps",
            "critic_refit",
            "kernel",
            "kernel_dims",
            "kernel_features",
            "kernel_reg",
            "kernel_static",
        ):
            if getattr(self, name) is not None:
                update[name] = getattr(self, name)
        if self.private_labels:
            update["private_labels"] = tuple(private_column(c) for c in self.private_labels)
            if objective.critic == 0 and self.critic is None:
                update["critic"] = 1.0  # --private-labels alone turns the critic on
        if not update:
            return objective
        try:
            return ObjectiveConfig.model_validate({**objective.model_dump(), **update})
        except ValidationError as err:
            reason = str(err.errors()[0]["msg"]).removeprefix("Value error, ")
            raise ConfigError(f"train-adapter objective options: {reason}") from None


def private_column(name: str) -> str:
    """`gender` or `private_gender` -> `private_gender` (the manifest's column name)."""
    return name if name.startswith(PRIVATE) else PRIVATE + name


@dataclass(frozen=True)
class TrainAdapterResult:
    out: Path
    config: TrainConfig
    best_epoch: int
    val_action_acc: float | None
    history: list[dict[str, float | None]]  # per epoch; None where a metric was not defined
    seconds: float
    clips: int  # training + validation motion clips
    reused: bool  # the artifact was already there for the same data and settings


def _device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# --- from the cache to training data -------------------------------------------------------------------


def _values(videos: pa.Table, name: str) -> list[object]:
    if name not in videos.column_names:
        return [None] * videos.num_rows
    return [None if is_missing(v) else v for v in videos.column(name).to_pylist()]


def class_names(videos: pa.Table) -> dict[str, list[str]]:
    """Sorted class names of the co-training tasks over the train and val videos of a videos table."""
    splits = _values(videos, "split")
    kept = [str(s) in TRAIN_SPLITS for s in splits]
    actions = {str(a) for a, k in zip(_values(videos, "action"), kept, strict=True) if k and a is not None}
    segments = [
        parse_segments(str(t)) for t, k in zip(_values(videos, "segments"), kept, strict=True) if k and t
    ]
    return {"action": sorted(actions), "detection": sorted({str(s[2]) for segs in segments for s in segs})}


def private_labels(videos: pa.Table, columns: tuple[str, ...], kept: list[str]) -> np.ndarray:
    """(len(kept), A) class indices of the `columns` of the videos table for the TRAIN videos among
    `kept` (classes sorted as str over them), -1 elsewhere: what the label-informed critic learns."""
    ids = videos.column("video_id").to_pylist()
    split = dict(zip(ids, _values(videos, "split"), strict=True))
    out = np.full((len(kept), len(columns)), -1, dtype=np.int64)
    for a, name in enumerate(columns):
        if name not in videos.column_names:
            present = [c for c in videos.column_names if c.startswith(PRIVATE)]
            raise ConfigError(f"--private-labels: the store has no column {name}; it has {present or 'none'}")
        value = dict(zip(ids, _values(videos, name), strict=True))
        train = [v for v in kept if str(split[v]) == "train" and value[v] is not None]
        index = {c: i for i, c in enumerate(sorted({str(value[v]) for v in train}))}
        if len(index) < 2:
            raise ConfigError(f"--private-labels: {name} has fewer than 2 values on the train videos")
        for row, v in enumerate(kept):
            if v in train:
                out[row, a] = index[str(value[v])]
    return out


def adapter_data(
    view: CacheView,
    *,
    tokens: bool = False,
    classes: dict[str, list[str]] | None = None,
    private: tuple[str, ...] = (),
) -> tuple[AdapterData, dict[str, list[str]]]:
    """Training data of the train and val videos of `view`, and the class names of each task.

    Action: the class of a trimmed video, on each of its clips. Detection: per clip of an untrimmed
    video, the segment label covering most of it (background otherwise, as the temporal probe does).
    Anomaly: 1 when the video has abnormal intervals, 0 when it has none. Test videos are left out.
    `classes` fixes the class lists (streaming: every group encodes labels alike); default: `view`'s.
    `private` (label-informed critic only) names private_* columns read for the train videos.
    """
    classes = classes or class_names(view.videos)
    videos = view.videos
    ids = videos.column("video_id").to_pylist()
    splits = [str(s) if s is not None else "" for s in _values(videos, "split")]
    keep_video = np.array([s in TRAIN_SPLITS for s in splits])
    if not keep_video.any():
        raise ConfigError(
            "the store has no video in the train or val split; the adapter has nothing to learn from"
        )
    kept_ids = [v for v, k in zip(ids, keep_video, strict=True) if k]
    number = {v: i for i, v in enumerate(kept_ids)}

    clip_video = view.clips.column("video_id").to_pylist()
    motion_rows = np.array([i for i, v in enumerate(clip_video) if v in number], dtype=np.int64)
    video = np.array([number[clip_video[i]] for i in motion_rows], dtype=np.int64)
    static_video_ids = view.static_clips.column("video_id").to_pylist()
    static_rows = np.array([i for i, v in enumerate(static_video_ids) if v in number], dtype=np.int64)
    static_video = np.array([number[static_video_ids[i]] for i in static_rows], dtype=np.int64)

    actions = {
        v: a for v, a in zip(ids, _values(videos, "action"), strict=True) if v in number and a is not None
    }
    action_classes = classes["action"]
    action_id = {c: i for i, c in enumerate(action_classes)}
    action = np.full(len(motion_rows), -1, dtype=np.int64)
    if actions:
        per_video = np.full(len(kept_ids), -1, dtype=np.int64)
        for v, a in actions.items():
            per_video[number[v]] = action_id[str(a)]
        action = per_video[video]

    segments = {
        v: parse_segments(str(t))
        for v, t in zip(ids, _values(videos, "segments"), strict=True)
        if v in number and t is not None
    }
    detection_classes = classes["detection"]
    detection = None
    if segments and detection_classes:
        C = len(detection_classes)
        detection = np.full(len(motion_rows), -1, dtype=np.int64)
        t_start = view.clips.column("t_start_s").to_numpy().astype(np.float64)[motion_rows]
        t_end = view.clips.column("t_end_s").to_numpy().astype(np.float64)[motion_rows]
        coverage = TemporalConfig().min_coverage
        for v, segs in segments.items():
            rows = np.flatnonzero(video == number[v])
            labels = clip_labels(t_start[rows], t_end[rows], segs, detection_classes, coverage)
            detection[rows] = np.where(labels > 0, labels - 1, C)  # probe: 0 = background; here: C

    anomaly = None
    intervals = {
        v: parse_anomaly_segments(str(t))
        for v, t in zip(ids, _values(videos, "anomaly_segments"), strict=True)
        if v in number and t is not None
    }
    if any(iv is not None for iv in intervals.values()):
        anomaly = np.full(len(kept_ids), -1, dtype=np.int64)
        for v, iv in intervals.items():
            if iv is not None:
                anomaly[number[v]] = int(len(iv) > 0)

    if tokens and view.tokens is None:
        raise ConfigError("--temporal needs temporal tokens in the store; extract with --tokens")
    data = AdapterData(
        motion=np.ascontiguousarray(view.motion[motion_rows], dtype=np.float32),
        video=video,
        static=np.ascontiguousarray(view.static[static_rows], dtype=np.float32),
        static_video=static_video,
        split=np.array([s for s, k in zip(splits, keep_video, strict=True) if k]),
        tokens=None if not tokens or view.tokens is None else np.ascontiguousarray(view.tokens[motion_rows]),
        action=action if actions else None,
        detection=detection,
        detection_classes=len(detection_classes) if detection is not None else 0,
        anomaly=anomaly,
        private=private_labels(videos, private, kept_ids) if private else None,
    )
    return data, {"action": action_classes, "detection": detection_classes}


def _memory_budget(memory_gb: float | None) -> int:
    if memory_gb is not None:
        return int(memory_gb * 1e9)
    pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    return pages * size // 4


def training_data(
    cache: LatentCache,
    tables: CacheView,
    tokens: bool,
    memory_gb: float | None,
    private: tuple[str, ...] = (),
) -> tuple[AdapterData | AdapterChunks, dict[str, list[str]], int]:
    """The train/val latents in memory when training them fits `memory_gb` (default: a quarter of RAM;
    training takes about MEMORY_PER_LATENT_BYTE x its latents), else streamed in groups of whole videos
    whose training takes about half that; also the classes and the clip count."""
    classes = class_names(tables.videos)
    splits = dict(zip(tables.videos["video_id"].to_pylist(), _values(tables.videos, "split"), strict=True))
    kept = sorted(v for v, s in splits.items() if str(s) in TRAIN_SPLITS)
    if not kept:
        raise ConfigError(
            "the store has no video in the train or val split; the adapter has nothing to learn from"
        )
    clip_videos = np.array(tables.clips["video_id"].to_pylist())
    counts = dict(zip(*np.unique(clip_videos, return_counts=True), strict=True))
    static_counts = dict(
        zip(*np.unique(tables.static_clips["video_id"].to_pylist(), return_counts=True), strict=True)
    )
    D, tokens_per_clip = cache.attrs.dim, (cache.attrs.tokens[0] if tokens and cache.attrs.tokens else 0)
    per_video = {
        v: 4 * D * (counts.get(v, 0) * (1 + tokens_per_clip) + static_counts.get(v, 0)) for v in kept
    }
    clips = int(sum(counts.get(v, 0) for v in kept))
    budget = _memory_budget(memory_gb) // MEMORY_PER_LATENT_BYTE  # of latents
    if sum(per_video.values()) <= budget:
        data, _ = adapter_data(cache.read(videos=kept), tokens=tokens, classes=classes, private=private)
        return data, classes, clips
    groups = _groups(kept, per_video, budget // 2, splits)
    digest = hashlib.sha256(cache.attrs.weights_sha256.encode())
    for column in ("video_id", "size", "mtime_ns", "split", "action", "segments", "anomaly_segments"):
        if column in tables.videos.column_names:
            digest.update(json.dumps(tables.videos[column].to_pylist(), default=str).encode())
    digest.update(json.dumps([len(g) for g in groups]).encode())

    def load(i: int) -> AdapterData:
        return adapter_data(cache.read(videos=groups[i]), tokens=tokens, classes=classes)[0]

    chunks = AdapterChunks(
        load, len(groups), D, len(classes["action"]), len(classes["detection"]), digest.hexdigest()
    )
    return chunks, classes, clips


def _groups(kept: list[str], size: dict[str, int], budget: int, splits: dict[str, object]) -> list[list[str]]:
    """Consecutive runs of video ids (consecutive ids share store parts) of at most `budget` bytes,
    each with at least one training video (a run without one joins the previous run)."""
    groups: list[list[str]] = [[]]
    used = 0
    for v in kept:
        if groups[-1] and used + size[v] > budget:
            groups.append([])
            used = 0
        groups[-1].append(v)
        used += size[v]
    merged: list[list[str]] = []
    for group in groups:
        if merged and not any(str(splits[v]) == "train" for v in group):
            merged[-1].extend(group)
        else:
            merged.append(group)
    if len(merged) > 1 and not any(str(splits[v]) == "train" for v in merged[0]):
        merged[1] = merged[0] + merged[1]
        merged.pop(0)
    return merged


# --- the stage -----------------------------------------------------------------------------------------


def _counting(load: Callable[[int], AdapterData], advance: Advance) -> Callable[[int], AdapterData]:
    """`load`, advancing the progress by one group on every call but the first (the previous group is
    done when the next one loads)."""
    calls = 0

    def counted(group: int) -> AdapterData:
        nonlocal calls
        calls += 1
        if calls > 1:
            advance(1)
        return load(group)

    return counted


def _existing(out: Path, attrs: CacheAttrs, cfg: TrainConfig, checksum: str) -> AdapterMeta | None:
    """The metadata of the artifact in `out` when it was trained on the same data with the same settings
    by the same revision of the training code."""
    if not (out / CONFIG).is_file():
        return None
    try:
        _, adapter_cfg, meta = load_adapter(out, **binding(attrs))
    except AdapterError:  # an artifact we cannot use is simply retrained
        return None
    same = (
        meta.training_revision == TRAINING_REVISION
        and meta.data_checksum == checksum
        and adapter_cfg == cfg.adapter
        and meta.objective == cfg.objective
        and meta.train == cfg.model_dump(mode="json", exclude={"adapter", "objective"})
    )
    return meta if same else None


def train_adapter_stage(
    store: str | Path,
    out: str | Path,
    config: TrainAdapterConfig | None = None,
    *,
    bar: bool = False,
    echo: Callable[[str], None] | None = None,
) -> TrainAdapterResult:
    """Train an adapter on the latent cache `store` and write it to `out` (see module docstring).

    One writer per adapter folder: the run holds `out`/.lock-writer throughout, and a second run on the
    same folder gets WriterBusyError naming the first (pid, host, since)."""
    config = config or TrainAdapterConfig()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; pass a folder for the adapter")
    with writer_lock(str(out / WRITER_LOCK), f"the adapter folder {out}"):
        return _train_adapter_stage(store, out, config, bar=bar, echo=echo)


def _train_adapter_stage(
    store: str | Path,
    out: Path,
    config: TrainAdapterConfig,
    *,
    bar: bool,
    echo: Callable[[str], None] | None,
) -> TrainAdapterResult:
    started = time.perf_counter()
    cache = LatentCache.open(store)
    tables = cache.read(arrays=False)
    if tables.clips.num_rows == 0:
        raise ConfigError(f"{store} holds no motion clips; run extract first")
    cfg = config.train_config(cache.attrs.dim)
    private = cfg.objective.private_labels
    data, classes, clips = training_data(cache, tables, cfg.adapter.temporal, config.memory_gb, private)
    checksum = data.checksum()
    if echo and isinstance(data, AdapterChunks):
        echo(
            f"train-adapter: the training latents exceed --memory-gb; streaming {data.count} groups of videos"
        )
    previous = _existing(out, cache.attrs, cfg, checksum)
    if previous is not None:
        if echo:
            echo(f"train-adapter: {out} already holds this adapter (same data and settings); not retrained")
        seconds = time.perf_counter() - started
        return TrainAdapterResult(
            out, cfg, previous.best_epoch, previous.val_action_acc, previous.history, seconds, clips, True
        )
    if echo:
        echo(
            f"train-adapter: {clips} clips of train/val videos, D={cache.attrs.dim}, "
            f"objective {cfg.objective.name}, variant {cfg.adapter.variant}, "
            f"{cfg.epochs} epochs on {cfg.device}"
        )
    streamed = isinstance(data, AdapterChunks)
    total = cfg.epochs * data.count if isinstance(data, AdapterChunks) else cfg.epochs
    with progress("train-adapter", total, "groups" if streamed else "epochs", bar=bar) as advance:
        if isinstance(data, AdapterChunks):  # one step per group of videos: an epoch can take an hour
            data = replace(data, load=_counting(data.load, advance))

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            shown = {
                k: v for k, v in metrics.items() if k in ("loss", "lc", "task", "privacy", "val_action_acc")
            }
            # Streamed, a group counts as done when the next one loads; the last one when training ends.
            advance(1 if not streamed or epoch == cfg.epochs - 1 else 0, **shown)

        with torch_threads(config.threads):
            result = train_adapter(data, cfg, on_epoch=on_epoch)
    meta = meta_from_training(
        cache.attrs.encoder_id,
        cfg,
        data_checksum=checksum,
        history=result.history,
        best_epoch=result.best_epoch,
        val_action_acc=result.val_action_acc,
        encoder_weights_sha256=cache.attrs.weights_sha256,
        encoder_preprocessing=cache.attrs.preprocessing,
        encoder_pooling=cache.attrs.pooling,
    )
    out.mkdir(parents=True, exist_ok=True)
    tmp_classes = out / f"{CLASSES}.tmp"
    tmp_classes.write_text(json.dumps(classes, indent=2) + "\n")
    os.replace(tmp_classes, out / CLASSES)
    save_adapter(out, result.model, cfg.adapter, meta)  # adapter.json last: it vouches for the rest
    acc = None if np.isnan(result.val_action_acc) else result.val_action_acc
    return TrainAdapterResult(
        out, cfg, result.best_epoch, acc, meta.history, time.perf_counter() - started, clips, reused=False
    )
