"""Anomaly detection probe: multiple-instance ranking (Sultani, Chen, Shah, CVPR 2018).

Videos are bags and their clips instances. A small MLP (``D → hidden → ReLU → dropout → 1``, sigmoid,
as in the paper but narrower) scores each clip in [0, 1]. It is trained full-batch on the train videos
with the MIL ranking loss over every (abnormal, normal) pair of bags,
``mean max(0, margin − max_i s(a_i) + max_i s(n_i))``, plus ``lambda_smooth · Σ (s(a_i) − s(a_{i+1}))²``
and ``lambda_sparse · Σ s(a_i)`` over each abnormal bag (averaged over bags). Test: frame *f* (at time
``f / fps``) takes the mean score of the clips whose ``[t_start, t_end)`` contains it (the nearest clip
by centre when none does) and is abnormal when it lies in an anomaly interval ``[start, end)``;
frame-level ROC AUC over all test videos' frames.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pipeline.probes.bootstrap import bootstrap_interval, unit_groups
from pipeline.probes.config import AnomalyConfig
from pipeline.probes.fit import AdamW, Standardiser, single_thread
from pipeline.probes.inputs import Clips, ProbeError, labelled_videos, require_split
from pipeline.probes.metrics import frame_auc

Intervals = Sequence[tuple[float, float]]  # abnormal [start s, end s) of one video; empty = normal


@dataclass(frozen=True)
class AnomalyMetrics:
    """Frame-level ROC AUC over the test videos (chance 0.5) and the counts behind it."""

    auc: float
    chance: float
    num_train_normal: int
    num_train_abnormal: int
    num_test_videos: int
    num_test_frames: int
    auc_low: float = math.nan  # 95% bootstrap interval over the test videos' people (`resampled`)
    auc_high: float = math.nan
    resampled: str = "identities"


@dataclass(frozen=True, eq=False)
class AnomalyModel:
    """A fitted clip scorer with its feature standardisation."""

    standardise: Standardiser
    net: nn.Module

    def clip_scores(self, emb: np.ndarray) -> np.ndarray:
        """Clip embeddings (T, D) → anomaly scores (T,) in [0, 1]."""
        with single_thread(), torch.inference_mode():
            return np.asarray(torch.sigmoid(self.net(self.standardise(emb))[:, 0]).numpy())


def _padded(standardise: Standardiser, parts: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Bags of (T_v, D) → padded (V, T_max, D) and validity mask (V, T_max) bool."""
    longest = max(len(p) for p in parts)
    x = torch.zeros(len(parts), longest, standardise.mean.shape[0])
    mask = torch.zeros(len(parts), longest, dtype=torch.bool)
    for i, p in enumerate(parts):
        x[i, : len(p)] = standardise(p)
        mask[i, : len(p)] = True
    return x, mask


def mil_ranking_loss(
    abnormal: torch.Tensor,
    abnormal_mask: torch.Tensor,
    normal: torch.Tensor,
    normal_mask: torch.Tensor,
    cfg: AnomalyConfig,
) -> torch.Tensor:
    """MIL ranking loss of instance scores (A, T) and (N, T) with validity masks of the same shapes."""
    top_a = abnormal.masked_fill(~abnormal_mask, -torch.inf).amax(dim=1)  # (A,)
    top_n = normal.masked_fill(~normal_mask, -torch.inf).amax(dim=1)  # (N,)
    ranking = torch.relu(cfg.margin - top_a[:, None] + top_n[None, :]).mean()
    pair = abnormal_mask[:, 1:] & abnormal_mask[:, :-1]
    smooth = ((abnormal[:, 1:] - abnormal[:, :-1]) ** 2 * pair).sum(dim=1).mean()
    sparse = (abnormal * abnormal_mask).sum(dim=1).mean()
    return ranking + cfg.lambda_smooth * smooth + cfg.lambda_sparse * sparse


def fit_anomaly_scorer(
    clips: Clips, intervals: Mapping[str, Intervals], videos: Sequence[str], cfg: AnomalyConfig
) -> AnomalyModel:
    """Fit the clip scorer on ``videos``; needs at least one normal and one abnormal video."""
    abnormal = [v for v in videos if len(intervals[v]) > 0]
    normal = [v for v in videos if len(intervals[v]) == 0]
    if not abnormal or not normal:
        raise ProbeError(
            f"anomaly probe: training needs normal and abnormal videos, got {len(normal)} normal and "
            f"{len(abnormal)} abnormal in the train split"
        )
    standardise = Standardiser.fit(clips.emb[clips.rows(videos)])
    xa, ma = _padded(standardise, [clips.emb[clips.rows_by_video[v]] for v in abnormal])
    xn, mn = _padded(standardise, [clips.emb[clips.rows_by_video[v]] for v in normal])
    with single_thread():
        torch.manual_seed(cfg.seed)
        net = nn.Sequential(
            nn.Linear(clips.dim, cfg.hidden),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, 1),
        )
        opt = AdamW(list(net.parameters()), cfg.weight_decay)
        for _ in range(cfg.steps):
            sa = torch.sigmoid(net(xa)[..., 0])  # (A, T_max)
            sn = torch.sigmoid(net(xn)[..., 0])  # (N, T_max)
            loss = mil_ranking_loss(sa, ma, sn, mn, cfg)
            loss.backward()
            opt.step(cfg.lr)
    net.eval()
    return AnomalyModel(standardise, net)


def frame_scores(
    clip_scores: np.ndarray, t_start: np.ndarray, t_end: np.ndarray, num_frames: int, fps: float
) -> np.ndarray:
    """Score (F,) of each frame: mean over the clips (T,) covering time ``f / fps``, else the nearest clip."""
    t = np.arange(num_frames) / fps
    cover = (t[:, None] >= t_start[None, :]) & (t[:, None] < t_end[None, :])  # (F, T)
    count = cover.sum(axis=1)
    covered = (cover * clip_scores[None, :]).sum(axis=1) / np.maximum(count, 1)
    nearest = clip_scores[np.argmin(np.abs(t[:, None] - (t_start + t_end)[None, :] / 2), axis=1)]
    return np.asarray(np.where(count > 0, covered, nearest))


def frame_labels(intervals: Intervals, num_frames: int, fps: float) -> np.ndarray:
    """0/1 label (F,) of each frame: 1 when ``f / fps`` lies in one of the ``[start, end)`` intervals."""
    t = np.arange(num_frames) / fps
    labels = np.zeros(num_frames, np.int64)
    for start, end in intervals:
        labels[(t >= start) & (t < end)] = 1
    return labels


def probe_anomaly(
    clips: Clips,
    intervals: Mapping[str, Intervals],
    splits: Mapping[str, str],
    num_frames: Mapping[str, int],
    fps: Mapping[str, float],
    cfg: AnomalyConfig | None = None,
    *,
    people: Mapping[str, object] | None = None,
) -> AnomalyMetrics:
    """Fit on the train videos of ``intervals`` (``{video_id: [(start, end), …]}``, ``[]`` = normal; the
    anomaly-task videos), score frame-level ROC AUC over the test videos, with a 95% interval from
    resampling the test videos' ``people`` (``{video_id: identity}``; videos when absent)."""
    cfg = cfg or AnomalyConfig()
    train = labelled_videos(clips, intervals, splits, cfg.train_split)
    test = labelled_videos(clips, intervals, splits, cfg.test_split)
    require_split(train, cfg.train_split, "anomaly probe")
    require_split(test, cfg.test_split, "anomaly probe")
    model = fit_anomaly_scorer(clips, intervals, train, cfg)
    scores, labels = [], []
    for v in test:
        rows = clips.rows_by_video[v]
        t0, t1 = clips.times(rows)
        scores.append(
            frame_scores(model.clip_scores(clips.emb[rows]), t0, t1, int(num_frames[v]), float(fps[v]))
        )
        labels.append(frame_labels(intervals[v], int(num_frames[v]), float(fps[v])))
    y = np.concatenate(labels)
    n_abnormal = sum(len(intervals[v]) > 0 for v in train)
    group, by = unit_groups(test, people)

    def auc_of(videos: np.ndarray) -> float:
        return frame_auc(
            np.concatenate([labels[i] for i in videos]), np.concatenate([scores[i] for i in videos])
        )

    low, high = (
        bootstrap_interval(auc_of, group, cfg.bootstrap, cfg.seed)
        if cfg.bootstrap and len(np.unique(group)) >= 2
        else (math.nan, math.nan)
    )
    return AnomalyMetrics(
        auc=frame_auc(y, np.concatenate(scores)),
        chance=0.5,
        num_train_normal=len(train) - n_abnormal,
        num_train_abnormal=n_abnormal,
        num_test_videos=len(test),
        num_test_frames=len(y),
        auc_low=low,
        auc_high=high,
        resampled=by,
    )
