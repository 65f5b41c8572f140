"""Action recognition probe (paper protocol): a linear probe trained on every clip of the train videos
(each clip labelled with its video's action); a test video is scored by the softmax averaged over up to
``clips_per_video`` evenly spaced clips; video-level top-1 and top-k.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.probes.bootstrap import bootstrap_interval, unit_groups
from pipeline.probes.config import ActionConfig, FitConfig
from pipeline.probes.fit import Probe, fit_probe
from pipeline.probes.inputs import (
    Clips,
    encode_labels,
    evenly_spaced,
    labelled_videos,
    mean_by_owner,
    require_split,
)
from pipeline.probes.metrics import topk_accuracy


@dataclass(frozen=True)
class ActionMetrics:
    """Video-level accuracy; ``top_k`` is top-``k`` with ``k = min(config top_k, num_classes)``;
    ``chance_top1`` is the share of the most frequent class among test videos; ``top1_low``/``_high``:
    its 95% bootstrap interval over the test videos' people (``resampled``: identities or videos)."""

    top1: float
    top_k: float
    k: int
    chance_top1: float
    num_classes: int
    num_train_videos: int
    num_test_videos: int
    top1_low: float = math.nan
    top1_high: float = math.nan
    resampled: str = ""


@dataclass(frozen=True, eq=False)
class ActionProbe:
    """A fitted action probe and its class names (column order of its probabilities)."""

    probe: Probe
    classes: list[str]


def fit_action_probe(
    clips: Clips, actions: Mapping[str, object], videos: Sequence[str], cfg: FitConfig
) -> ActionProbe:
    """Fit on every clip of ``videos``, each labelled ``actions[video]``; classes = sorted labels seen."""
    classes = sorted({str(actions[v]) for v in videos})
    rows = clips.rows(videos)
    y = encode_labels([actions[v] for v in clips.video_id[rows]], classes)
    return ActionProbe(fit_probe(clips.emb[rows], y, cfg, num_classes=len(classes)), classes)


def video_proba(probe: Probe, clips: Clips, videos: Sequence[str], clips_per_video: int) -> np.ndarray:
    """Softmax (V, C) of each video, averaged over up to ``clips_per_video`` evenly spaced clips."""
    by_video = clips.rows_by_video
    picked = [by_video[v][evenly_spaced(len(by_video[v]), clips_per_video)] for v in videos]
    proba = probe.predict_proba(clips.emb[np.concatenate(picked)])  # (sum of picked, C)
    owner = np.repeat(np.arange(len(videos)), [len(p) for p in picked])
    return mean_by_owner(proba, owner, len(videos))


def score_videos(
    model: ActionProbe, clips: Clips, actions: Mapping[str, object], videos: Sequence[str], cfg: ActionConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Per test video: probabilities (V, C) and true class index (V,), −1 for a class unseen in training."""
    proba = video_proba(model.probe, clips, videos, cfg.clips_per_video)
    lookup = {c: i for i, c in enumerate(model.classes)}
    return proba, np.array([lookup.get(str(actions[v]), -1) for v in videos], dtype=np.int64)


def probe_action(
    clips: Clips,
    actions: Mapping[str, object],
    splits: Mapping[str, str],
    cfg: ActionConfig | None = None,
    *,
    people: Mapping[str, object] | None = None,
) -> ActionMetrics:
    """Train on ``cfg.train_split`` videos, score ``cfg.test_split`` videos; videos without an action
    (untrimmed, anomaly) are ignored. A test video of a class never seen in training counts as wrong."""
    cfg = cfg or ActionConfig()
    train = labelled_videos(clips, actions, splits, cfg.train_split)
    test = labelled_videos(clips, actions, splits, cfg.test_split)
    require_split(train, cfg.train_split, "action probe")
    require_split(test, cfg.test_split, "action probe")
    model = fit_action_probe(clips, actions, train, cfg.probe)
    proba, y = score_videos(model, clips, actions, test, cfg)
    k = min(cfg.top_k, len(model.classes))
    # A test class never seen in training has no column: those videos count as misses.
    seen = y >= 0
    top1 = topk_accuracy(y[seen], proba[seen], 1) * seen.mean() if seen.any() else 0.0
    top_k = topk_accuracy(y[seen], proba[seen], k) * seen.mean() if seen.any() else 0.0
    _, counts = np.unique([str(actions[v]) for v in test], return_counts=True)
    hit = (seen & (np.argmax(proba, axis=1) == y)).astype(np.float64)  # (V,) top-1 hits
    group, by = unit_groups(test, people)
    low, high = (
        bootstrap_interval(lambda r: float(hit[r].mean()), group, cfg.bootstrap, cfg.probe.seed)
        if cfg.bootstrap and len(np.unique(group)) >= 2
        else (math.nan, math.nan)
    )
    return ActionMetrics(
        top1=float(top1),
        top_k=float(top_k),
        k=k,
        chance_top1=float(counts.max() / counts.sum()),
        num_classes=len(model.classes),
        num_train_videos=len(train),
        num_test_videos=len(test),
        top1_low=low,
        top1_high=high,
        resampled=by,
    )
