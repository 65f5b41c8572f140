"""Metrics of the probes, in plain numpy. Each one is checked against an independent reference in tests.

Choices, stated once:
* `average_precision` is scikit-learn's ``average_precision_score``: Σ_k (R_k − R_{k−1}) · P_k over the
  distinct score thresholds, no interpolation; tied scores form one threshold.
* `cmap` averages one-vs-rest AP over **every** class that occurs in the labels — a binary attribute
  contributes both its classes, so the value does not depend on which class is called "positive" — and
  `cmap_chance` is what a ranking that knows nothing scores on those labels: the mean over the same
  classes of the exact expected AP of a uniformly random ranking (`expected_random_ap`, Bestgen 2015).
  That is a little above the positive rate (`class_rate`): on 238 test videos of five balanced classes
  0.217 rather than 0.200, so with the positive rate as chance an embedding that carries nothing would
  read as leaking. For the paper's VISPR protocol (positive class only) use `average_precision` on
  that column directly.
* `tad_map` is the ActivityNet/THUMOS14 detection mAP of the ActivityNet evaluation code
  (`compute_average_precision_detection` + `interpolated_prec_rec`, also used by ActionFormer for
  THUMOS14): greedy matching by score, all-point interpolated AP, classes without ground truth ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from pipeline.probes.inputs import ProbeError

TIOUS: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)


def _binary(y_true: np.ndarray, score: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).ravel()
    s = np.asarray(score, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ProbeError(f"{what}: labels {y.shape} and scores {s.shape} differ in length")
    if not np.isin(y, (0, 1)).all():
        raise ProbeError(f"{what}: labels must be 0/1 (or bool)")
    if not np.isfinite(s).all():
        raise ProbeError(f"{what}: scores contain NaN or inf")
    return y.astype(bool), s


def average_precision(y_true: np.ndarray, score: np.ndarray) -> float:
    """AP of ``score`` (N,) for 0/1 ``y_true`` (N,), as scikit-learn's ``average_precision_score``."""
    y, s = _binary(y_true, score, "average_precision")
    if not y.any():
        raise ProbeError("average_precision: no positive label, AP is undefined")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    ends = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last row of each run of tied scores
    tp = np.cumsum(y)[ends]
    precision = tp / (ends + 1)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def expected_random_ap(n_pos: int, n: int) -> float:
    """Exact expected AP of a uniformly random ranking of ``n`` items of which ``n_pos`` are positive."""
    if not 0 < n_pos <= n:
        raise ProbeError(f"expected_random_ap needs 0 < n_pos <= n, got n_pos={n_pos}, n={n}")
    harmonic = float(np.sum(1.0 / np.arange(1, n + 1)))
    rest = (n_pos - 1) * (n - harmonic) / (n * (n - 1)) if n > 1 else 0.0
    return harmonic / n + rest


def _present(labels: np.ndarray, classes: Sequence[object]) -> list[int]:
    lookup = {str(c): j for j, c in enumerate(classes)}
    found = {str(v) for v in labels}
    unknown = found - lookup.keys()
    if unknown:
        raise ProbeError(f"labels {sorted(unknown)} are not among the classes {list(classes)}")
    return sorted(lookup[v] for v in found)


def cmap(labels: np.ndarray, proba: np.ndarray, classes: Sequence[object]) -> float:
    """Mean one-vs-rest AP over the classes present in ``labels`` (N,); ``proba`` (N, C) has one column
    per entry of ``classes`` (labels and classes are compared as str)."""
    labels = np.asarray(labels).astype(str)
    if proba.shape != (len(labels), len(classes)):
        raise ProbeError(f"cmap: proba must be ({len(labels)}, {len(classes)}), got {proba.shape}")
    names = [str(c) for c in classes]
    return float(
        np.mean([average_precision(labels == names[j], proba[:, j]) for j in _present(labels, names)])
    )


def _class_counts(labels: np.ndarray, what: str) -> np.ndarray:
    _, counts = np.unique(np.asarray(labels).astype(str), return_counts=True)
    if counts.size == 0:
        raise ProbeError(f"{what}: no labels")
    return counts


def class_rate(labels: np.ndarray) -> float:
    """Mean positive rate of the one-vs-rest classes present (1 / number of classes): the expected
    `macro_f1` of a guess drawn at the class rates."""
    counts = _class_counts(labels, "class_rate")
    return float(np.mean(counts / counts.sum()))


def cmap_chance(labels: np.ndarray) -> float:
    """Chance level of `cmap` on ``labels``: its exact expectation when every class's scores rank the
    items in a uniformly random order — the mean of `expected_random_ap` over the classes present."""
    counts = _class_counts(labels, "cmap_chance")
    n = int(counts.sum())
    return float(np.mean([expected_random_ap(int(c), n) for c in counts]))


def macro_f1(labels: np.ndarray, predicted: np.ndarray, classes: Sequence[object] | None = None) -> float:
    """Unweighted mean F1 over ``classes`` (default: every class in labels or predictions), F1 = 0 where
    undefined — scikit-learn's ``f1_score(average="macro", zero_division=0)``."""
    y = np.asarray(labels).astype(str)
    p = np.asarray(predicted).astype(str)
    if y.shape != p.shape:
        raise ProbeError(f"macro_f1: labels {y.shape} and predictions {p.shape} differ in length")
    names = np.unique(np.r_[y, p]) if classes is None else np.array([str(c) for c in classes])
    if names.size == 0:
        raise ProbeError("macro_f1: no labels")
    tp = np.array([np.sum((y == c) & (p == c)) for c in names], dtype=np.float64)
    fp = np.array([np.sum((y != c) & (p == c)) for c in names], dtype=np.float64)
    fn = np.array([np.sum((y == c) & (p != c)) for c in names], dtype=np.float64)
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1.mean())


def topk_accuracy(labels: np.ndarray, proba: np.ndarray, k: int) -> float:
    """Fraction of rows whose true class index ``labels`` (N,) is among the ``k`` highest of ``proba``
    (N, C); ties count against the true class."""
    labels = np.asarray(labels, dtype=np.int64)
    if proba.ndim != 2 or proba.shape[0] != labels.shape[0] or labels.size == 0:
        raise ProbeError(
            f"topk_accuracy: need labels (N,) and proba (N, C), got {labels.shape}, {proba.shape}"
        )
    true_score = proba[np.arange(len(labels)), labels]
    rank = np.sum(proba >= true_score[:, None], axis=1)  # 1 = best
    return float(np.mean(rank <= k))


def frame_auc(labels01: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of ``scores`` (F,) for 0/1 frame labels (F,), ties counted half (Mann–Whitney U)."""
    y, s = _binary(labels01, scores, "frame_auc")
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ProbeError("frame_auc: needs both normal and abnormal frames in the test videos")
    order = np.argsort(s, kind="stable")
    sorted_s = s[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_s)) + 1]
    ends = np.r_[starts[1:], len(s)]
    mid_rank = (starts + ends + 1) / 2.0  # average 1-based rank of each run of ties
    ranks = np.empty(len(s))
    ranks[order] = np.repeat(mid_rank, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


# ---------------------------------------------------------------------------------------------------
# Temporal action detection


class Segment(NamedTuple):
    """A ground-truth action instance: ``[start, end]`` seconds in ``video_id``."""

    video_id: str
    start: float
    end: float
    label: str


class Detection(NamedTuple):
    """A predicted action instance with a confidence ``score``."""

    video_id: str
    start: float
    end: float
    label: str
    score: float


def tiou(start: float, end: float, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Temporal IoU of ``[start, end]`` with each of ``[starts, ends]`` (K,) → (K,)."""
    inter = np.clip(np.minimum(end, ends) - np.maximum(start, starts), 0.0, None)
    union = (end - start) + (ends - starts) - inter
    out = np.zeros(np.shape(inter), dtype=np.float64)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """All-point interpolated AP (ActivityNet ``interpolated_prec_rec``): area under the monotone
    precision envelope of the precision (K,) / recall (K,) curve."""
    mprec = np.r_[0.0, precision, 0.0]
    mrec = np.r_[0.0, recall, 1.0]
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]
    idx = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def _class_ap(preds: list[Detection], gts: list[Segment], tious: Sequence[float]) -> np.ndarray:
    """AP (T,) of one class's detections against its ground truth, one value per tIoU threshold."""
    ap = np.zeros(len(tious))
    if not preds:
        return ap
    by_video: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for v in {g.video_id for g in gts}:
        mine = [g for g in gts if g.video_id == v]
        by_video[v] = (np.array([g.start for g in mine]), np.array([g.end for g in mine]))
    matched = {v: np.zeros((len(tious), len(se[0])), bool) for v, se in by_video.items()}
    order = np.argsort(-np.array([p.score for p in preds]), kind="stable")
    tp = np.zeros((len(tious), len(preds)))
    for rank, i in enumerate(order):
        p = preds[i]
        if p.video_id not in by_video:
            continue
        starts, ends = by_video[p.video_id]
        overlap = tiou(p.start, p.end, starts, ends)
        candidates = np.argsort(-overlap, kind="stable")
        for t, threshold in enumerate(tious):
            for j in candidates:
                if overlap[j] < threshold:
                    break
                if matched[p.video_id][t, j]:
                    continue
                matched[p.video_id][t, j] = True
                tp[t, rank] = 1.0
                break
    tp_cum = np.cumsum(tp, axis=1)
    fp_cum = np.cumsum(1.0 - tp, axis=1)
    for t in range(len(tious)):
        ap[t] = interpolated_ap(tp_cum[t] / (tp_cum[t] + fp_cum[t]), tp_cum[t] / len(gts))
    return ap


def detection_ap(
    predictions: Sequence[Detection], ground_truth: Sequence[Segment], tious: Sequence[float] = TIOUS
) -> tuple[np.ndarray, list[str]]:
    """AP (T, C) per tIoU threshold and class, and the C classes (those with ground truth, sorted).

    A detection is a true positive at a threshold when its tIoU with a not yet matched ground-truth
    segment of its class in its video reaches the threshold (detections taken by descending score, each
    matched to the highest-tIoU free segment); anything else is a false positive.
    """
    classes = sorted({g.label for g in ground_truth})
    if not classes:
        raise ProbeError("tad_map: no ground-truth segments")
    ap = np.zeros((len(tious), len(classes)))
    for c, name in enumerate(classes):
        preds = [p for p in predictions if p.label == name]
        gts = [g for g in ground_truth if g.label == name]
        ap[:, c] = _class_ap(preds, gts, tious)
    return ap, classes


def tad_map(
    predictions: Sequence[Detection], ground_truth: Sequence[Segment], tious: Sequence[float] = TIOUS
) -> float:
    """Detection mAP: AP averaged over classes with ground truth, then over the tIoU thresholds."""
    ap, _ = detection_ap(predictions, ground_truth, tious)
    return float(ap.mean(axis=1).mean())


# ---------------------------------------------------------------------------------------------------
# Retrieval (re-identification)


@dataclass(frozen=True)
class RetrievalMetrics:
    """Same-id retrieval across groups: top-1 accuracy and mAP, with their values for a random ranking.

    ``num_queries`` counts the queries that have at least one same-id item in another group (the
    others have nothing to find and are left out, as in person re-identification benchmarks).
    """

    top1: float
    map: float
    chance_top1: float
    chance_map: float
    num_queries: int
    num_items: int


def retrieval_per_query(
    ranking: np.ndarray, ids: np.ndarray, groups: np.ndarray, queries: np.ndarray | None = None
) -> np.ndarray:
    """Per query (Q', 4): top-1 hit, AP, and their random-ranking values, for the queries that have a
    same-id item in another group. Row r of ``ranking`` (Q, K) lists item indices by decreasing
    similarity to item ``queries[r]`` (default: row i is item i; −1 = padding); items of the query's
    own group (itself included) are skipped. ``ids``, ``groups``: (N,)."""
    ids = np.asarray(ids).astype(str)
    groups = np.asarray(groups).astype(str)
    queries = np.arange(len(ids)) if queries is None else np.asarray(queries)
    if ranking.ndim != 2 or ranking.shape[0] != len(queries) or groups.shape != ids.shape:
        raise ProbeError(
            f"retrieval: need ranking (Q, K), ids and groups (N,); got {ranking.shape}, {len(ids)}"
        )
    rows = []
    for r, i in enumerate(queries):
        row = ranking[r][ranking[r] >= 0]
        row = row[groups[row] != groups[i]]
        gallery = groups != groups[i]
        n_gallery = int(gallery.sum())
        n_rel = int(np.sum(gallery & (ids == ids[i])))
        if n_rel == 0:
            continue
        if len(row) != n_gallery:
            raise ProbeError(f"retrieval: ranking row {r} does not cover every item of other groups")
        rel = ids[row] == ids[i]
        positions = np.flatnonzero(rel)
        ap = float(np.mean(np.cumsum(rel)[positions] / (positions + 1)))
        rows.append((float(rel[0]), ap, n_rel / n_gallery, expected_random_ap(n_rel, n_gallery)))
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def summarise_retrieval(per_query: np.ndarray, num_items: int) -> RetrievalMetrics:
    """Mean of `retrieval_per_query` rows (Q', 4) → `RetrievalMetrics`."""
    if len(per_query) == 0:
        raise ProbeError("retrieval: no query has a same-id item in another video; nothing to retrieve")
    top1, ap, chance_top1, chance_ap = per_query.mean(axis=0)
    return RetrievalMetrics(
        top1=float(top1),
        map=float(ap),
        chance_top1=float(chance_top1),
        chance_map=float(chance_ap),
        num_queries=len(per_query),
        num_items=num_items,
    )


def retrieval_from_ranking(ranking: np.ndarray, ids: np.ndarray, groups: np.ndarray) -> RetrievalMetrics:
    """Metrics from a full ``ranking`` (N, K): row i lists item indices by decreasing similarity to
    item i (see `retrieval_per_query`)."""
    return summarise_retrieval(retrieval_per_query(ranking, ids, groups), len(ids))


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` (N, D) scaled to unit length (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    out = np.zeros_like(x)
    np.divide(x, norm, out=out, where=norm > 0)
    return out


def retrieval_metrics(embeddings: np.ndarray, ids: np.ndarray, groups: np.ndarray) -> RetrievalMetrics:
    """Cosine-similarity retrieval of items with the same ``ids`` (N,) among items of other ``groups``
    (N,) — the numpy reference; `pipeline.probes.reid` ranks with faiss."""
    e = l2_normalise(embeddings)
    ranking = np.argsort(-(e @ e.T), axis=1, kind="stable")
    return retrieval_from_ranking(ranking, ids, groups)
