"""Temporal action detection probe: a light 1-D conv head over each untrimmed video's clip sequence.

Training: each clip takes the label of the ground-truth segment that covers most of its time span if
that segment covers at least ``min_coverage`` of it, else background; the head (conv k → ReLU → conv k,
C+1 outputs) is trained full-batch with cross-entropy on the train videos. Decoding: for each class,
contiguous runs of clips where it is the argmax, and runs where its probability reaches each of
``thresholds``, become segments scored by the class's mean probability over the run; per-video,
per-class non-maximum suppression at ``nms_tiou``; then `tad_map` over ``tious``.

A run of clips i..j spans from the start of clip i's *cell* to the end of clip j's: cells split time at
the midpoints between consecutive clip centres (for back-to-back clips a cell is the clip's own span).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pipeline.probes.bootstrap import bootstrap_interval, unit_groups
from pipeline.probes.config import TemporalConfig
from pipeline.probes.fit import AdamW, Standardiser, single_thread
from pipeline.probes.inputs import Clips, ProbeError, labelled_videos, require_split
from pipeline.probes.metrics import Detection, Segment, detection_ap, tiou

Segments = Sequence[tuple[float, float, str]]  # (start s, end s, label) of one video


@dataclass(frozen=True)
class TemporalMetrics:
    """Detection mAP averaged over ``map_per_tiou`` (tIoU → mAP over classes with test ground truth)."""

    map: float
    map_per_tiou: dict[float, float]
    num_classes: int
    num_train_videos: int
    num_test_videos: int
    num_detections: int
    map_low: float = math.nan  # 95% bootstrap interval over the test videos' people (`resampled`)
    map_high: float = math.nan
    resampled: str = "identities"


class TemporalHead(nn.Module):
    """``(1, D, L)`` packed clip sequence → per-clip logits ``(1, C + 1, L)``, class 0 = background."""

    def __init__(self, dim: int, hidden: int, num_classes: int, kernel_size: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(dim, hidden, kernel_size, padding=kernel_size // 2)
        self.conv2 = nn.Conv1d(hidden, num_classes + 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Zeroing the gaps between packed videos makes each video see zero padding, as if alone.
        h = torch.relu(self.conv1(x)) * mask  # (1, H, L)
        return self.conv2(h)  # type: ignore[no-any-return]


@dataclass(frozen=True, eq=False)
class TemporalModel:
    """A fitted detection head with its feature standardisation and class names (index c → class c+1)."""

    standardise: Standardiser
    head: TemporalHead
    classes: list[str]
    kernel_size: int


def clip_labels(
    t_start: np.ndarray, t_end: np.ndarray, segments: Segments, classes: Sequence[str], min_coverage: float
) -> np.ndarray:
    """Per-clip target (T,) int64: 1 + class index of the segment covering most of the clip when it
    covers at least ``min_coverage`` of it, else 0 (background; also for classes not in ``classes``)."""
    labels = np.zeros(len(t_start), np.int64)
    if not segments:
        return labels
    starts = np.array([s[0] for s in segments], dtype=np.float64)
    ends = np.array([s[1] for s in segments], dtype=np.float64)
    inter = np.minimum(t_end[:, None], ends) - np.maximum(t_start[:, None], starts)
    overlap = np.clip(inter, 0, None)  # (T, S)
    best = np.argmax(overlap, axis=1)
    covered = overlap[np.arange(len(t_start)), best] >= min_coverage * (t_end - t_start)
    lookup = {c: i + 1 for i, c in enumerate(classes)}
    target = np.array([lookup.get(str(segments[b][2]), 0) for b in best], dtype=np.int64)
    labels[covered] = target[covered]
    return labels


def _pack(
    standardise: Standardiser, parts: Sequence[np.ndarray], gap: int
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Videos' features (T_v, D) → packed (1, D, L), mask (1, 1, L), and each clip's column (ΣT_v,)."""
    lengths = np.array([len(p) for p in parts])
    offsets = np.r_[0, np.cumsum(lengths + gap)[:-1]]
    columns = np.concatenate([o + np.arange(n) for o, n in zip(offsets, lengths, strict=True)])
    total = int(offsets[-1] + lengths[-1])
    x = torch.zeros(total, standardise.mean.shape[0])
    x[torch.from_numpy(columns)] = standardise(np.concatenate(parts))
    mask = torch.zeros(total)
    mask[torch.from_numpy(columns)] = 1.0
    return x.T[None], mask[None, None], columns


def fit_temporal_head(
    clips: Clips, segments: Mapping[str, Segments], videos: Sequence[str], cfg: TemporalConfig
) -> TemporalModel:
    """Fit the head on ``videos`` (their clips and segments); classes = sorted segment labels seen."""
    classes = sorted({str(s[2]) for v in videos for s in segments[v]})
    if not classes:
        raise ProbeError("temporal detection probe: the train videos have no segments to learn from")
    rows = [clips.rows_by_video[v] for v in videos]
    targets = [
        clip_labels(*clips.times(r), segments[v], classes, cfg.min_coverage)
        for v, r in zip(videos, rows, strict=True)
    ]
    standardise = Standardiser.fit(clips.emb[np.concatenate(rows)])
    x, mask, columns = _pack(standardise, [clips.emb[r] for r in rows], cfg.kernel_size // 2)
    y = torch.from_numpy(np.concatenate(targets))
    cols = torch.from_numpy(columns)
    with single_thread():
        torch.manual_seed(cfg.seed)
        head = TemporalHead(clips.dim, cfg.hidden, len(classes), cfg.kernel_size)
        opt = AdamW(list(head.parameters()), cfg.weight_decay)
        for _ in range(cfg.steps):
            logits = head(x, mask)[0].T[cols]  # (ΣT_v, C + 1)
            loss = nn.functional.cross_entropy(logits, y)
            loss.backward()
            opt.step(cfg.lr)
    head.eval()
    return TemporalModel(standardise, head, classes, cfg.kernel_size)


def predict_clip_proba(model: TemporalModel, clips: Clips, videos: Sequence[str]) -> list[np.ndarray]:
    """Per video, per-clip class probabilities (T_v, C + 1), column 0 = background."""
    rows = [clips.rows_by_video[v] for v in videos]
    x, mask, columns = _pack(model.standardise, [clips.emb[r] for r in rows], model.kernel_size // 2)
    with single_thread(), torch.inference_mode():
        proba = torch.softmax(model.head(x, mask)[0].T, dim=1).numpy()[columns]
    return np.split(proba, np.cumsum([len(r) for r in rows])[:-1])


def cells(t_start: np.ndarray, t_end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (T,) of each clip's cell: time split at midpoints between consecutive clip centres."""
    centre = (t_start + t_end) / 2
    cuts = (centre[1:] + centre[:-1]) / 2
    return np.r_[t_start[:1], cuts], np.r_[cuts, t_end[-1:]]


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (first, last) index of each run of True in ``flags`` (T,)."""
    edges = np.diff(np.r_[0, flags.astype(np.int8), 0])
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1, strict=True))


def nms(detections: Sequence[Detection], max_tiou: float) -> list[Detection]:
    """Greedy non-maximum suppression within each (video, label): keep by descending score, drop any
    detection whose tIoU with a kept one reaches ``max_tiou``."""
    kept: list[Detection] = []
    for d in sorted(detections, key=lambda d: -d.score):
        same = [k for k in kept if k.video_id == d.video_id and k.label == d.label]
        if same:
            overlap = tiou(d.start, d.end, np.array([k.start for k in same]), np.array([k.end for k in same]))
            if overlap.max() >= max_tiou:
                continue
        kept.append(d)
    return kept


def decode_segments(
    video_id: str,
    proba: np.ndarray,
    t_start: np.ndarray,
    t_end: np.ndarray,
    classes: Sequence[str],
    thresholds: Sequence[float],
    nms_tiou: float,
) -> list[Detection]:
    """Detections in one video from per-clip probabilities ``proba`` (T, C + 1) and clip times (T,)."""
    cell_start, cell_end = cells(t_start, t_end)
    best = np.argmax(proba, axis=1)
    found: list[Detection] = []
    for c, name in enumerate(classes, start=1):
        masks = [best == c, *(proba[:, c] >= th for th in thresholds)]
        for first, last in {run for m in masks for run in _runs(m)}:
            score = float(proba[first : last + 1, c].mean())
            found.append(Detection(video_id, float(cell_start[first]), float(cell_end[last]), name, score))
    found.sort(key=lambda d: (d.label, d.start, d.end))  # set order is arbitrary; fix it before NMS
    return nms(found, nms_tiou)


def probe_temporal(
    clips: Clips,
    segments: Mapping[str, Segments],
    splits: Mapping[str, str],
    cfg: TemporalConfig | None = None,
    *,
    people: Mapping[str, object] | None = None,
) -> TemporalMetrics:
    """Fit on the train videos of ``segments`` (``{video_id: [(start, end, label), …]}``, the untrimmed
    videos), detect on the test videos, score detection mAP against their segments, with a 95% interval
    from resampling the test videos' ``people`` (``{video_id: identity}``; videos when absent)."""
    cfg = cfg or TemporalConfig()
    train = labelled_videos(clips, segments, splits, cfg.train_split)
    test = labelled_videos(clips, segments, splits, cfg.test_split)
    require_split(train, cfg.train_split, "temporal detection probe")
    require_split(test, cfg.test_split, "temporal detection probe")
    model = fit_temporal_head(clips, segments, train, cfg)
    detections: list[Detection] = []
    for v, proba in zip(test, predict_clip_proba(model, clips, test), strict=True):
        t0, t1 = clips.times(clips.rows_by_video[v])
        detections += decode_segments(v, proba, t0, t1, model.classes, cfg.thresholds, cfg.nms_tiou)
    truth = [Segment(v, float(s), float(e), str(label)) for v in test for s, e, label in segments[v]]
    ap, classes = detection_ap(detections, truth, cfg.tious)
    per_tiou = ap.mean(axis=1)
    group, by = unit_groups(test, people)
    low, high = (
        bootstrap_interval(_resampled_map(test, detections, truth, cfg.tious), group, cfg.bootstrap, cfg.seed)
        if cfg.bootstrap and len(np.unique(group)) >= 2
        else (math.nan, math.nan)
    )
    return TemporalMetrics(
        map=float(per_tiou.mean()),
        map_per_tiou={float(t): float(m) for t, m in zip(cfg.tious, per_tiou, strict=True)},
        num_classes=len(classes),
        num_train_videos=len(train),
        num_test_videos=len(test),
        num_detections=len(detections),
        map_low=low,
        map_high=high,
        resampled=by,
    )


def _resampled_map(
    test: Sequence[str], detections: Sequence[Detection], truth: Sequence[Segment], tious: Sequence[float]
) -> Callable[[np.ndarray], float]:
    """mAP over a resample of the test videos (indices into ``test``): a video drawn k times counts as k
    videos, its detections and ground truth copied under distinct ids."""
    by_video_det: dict[str, list[Detection]] = {}
    by_video_truth: dict[str, list[Segment]] = {}
    for d in detections:
        by_video_det.setdefault(d.video_id, []).append(d)
    for t in truth:
        by_video_truth.setdefault(t.video_id, []).append(t)

    def statistic(rows: np.ndarray) -> float:
        dets: list[Detection] = []
        gts: list[Segment] = []
        for copy, i in enumerate(rows):
            v = test[int(i)]
            dets += [d._replace(video_id=f"{v}#{copy}") for d in by_video_det.get(v, ())]
            gts += [t._replace(video_id=f"{v}#{copy}") for t in by_video_truth.get(v, ())]
        if not gts:
            raise ProbeError("no ground truth in this resample")
        ap, _ = detection_ap(dets, gts, tious)
        return float(ap.mean(axis=1).mean())

    return statistic
