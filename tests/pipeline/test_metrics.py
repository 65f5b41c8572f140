"""Probe metrics against independent references: scikit-learn on random data, hand-worked examples."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score, top_k_accuracy_score

from pipeline.probes.inputs import ProbeError
from pipeline.probes.metrics import (
    Detection,
    Segment,
    average_precision,
    class_rate,
    cmap,
    cmap_chance,
    detection_ap,
    expected_random_ap,
    frame_auc,
    interpolated_ap,
    macro_f1,
    retrieval_from_ranking,
    retrieval_metrics,
    tad_map,
    tiou,
    topk_accuracy,
)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ties", [False, True])
def test_average_precision_matches_sklearn(seed: int, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    y = rng.random(200) < 0.3
    score = rng.normal(size=200) + y
    if ties:
        score = np.round(score, 1)
    assert average_precision(y, score) == pytest.approx(average_precision_score(y, score), abs=1e-12)


def test_average_precision_without_positives_is_an_error() -> None:
    with pytest.raises(ProbeError, match="no positive"):
        average_precision(np.zeros(4), np.arange(4.0))


@pytest.mark.parametrize("seed", range(3))
def test_cmap_is_mean_one_vs_rest_sklearn_ap_over_present_classes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    classes = ["a", "b", "c", "d"]
    labels = rng.choice(classes[:3], size=150)  # "d" never occurs: skipped
    proba = rng.dirichlet(np.ones(4), size=150)
    proba[np.arange(150), [classes.index(v) for v in labels]] += 0.2
    expected = np.mean([average_precision_score(labels == c, proba[:, j]) for j, c in enumerate(classes[:3])])
    assert cmap(labels, proba, classes) == pytest.approx(expected, abs=1e-12)


def test_cmap_binary_attribute_uses_both_classes() -> None:
    labels = np.array([0, 0, 1, 1, 1])
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8], [0.6, 0.4]])
    expected = (
        average_precision_score(labels == 0, proba[:, 0]) + average_precision_score(labels == 1, proba[:, 1])
    ) / 2
    assert cmap(labels, proba, [0, 1]) == pytest.approx(expected)
    # int labels and str classes compare as str
    assert cmap(labels, proba, ["0", "1"]) == pytest.approx(expected)


def test_cmap_rejects_unknown_labels_and_wrong_shapes() -> None:
    with pytest.raises(ProbeError, match="not among the classes"):
        cmap(np.array(["a", "z"]), np.full((2, 2), 0.5), ["a", "b"])
    with pytest.raises(ProbeError, match="proba must be"):
        cmap(np.array(["a", "b"]), np.full((2, 3), 0.5), ["a", "b"])


def test_class_rate_is_mean_positive_rate() -> None:
    assert class_rate(np.array(["a", "a", "a", "b"])) == pytest.approx((0.75 + 0.25) / 2)
    assert class_rate(np.array([1, 2, 3, 3])) == pytest.approx(1 / 3)


def test_cmap_chance_is_the_mean_random_ranking_ap_of_the_classes() -> None:
    labels = np.array(["a", "a", "a", "b", "c", "c"])
    expected = (expected_random_ap(3, 6) + expected_random_ap(1, 6) + expected_random_ap(2, 6)) / 3
    assert cmap_chance(labels) == pytest.approx(expected, abs=1e-12)


def test_cmap_of_random_scores_averages_to_cmap_chance_not_the_class_rate() -> None:
    """The demo's test set: 238 videos, five skin tones. Random scores average to `cmap_chance`; the
    class rate (0.2) sits 0.017 below it — the bias `cmap_chance` exists to remove."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), [48, 48, 48, 47, 47])
    values = np.array([cmap(labels, rng.random((238, 5)), range(5)) for _ in range(2000)])
    sem = values.std() / np.sqrt(len(values))
    assert abs(values.mean() - cmap_chance(labels)) < 4 * sem
    assert cmap_chance(labels) - class_rate(labels) > 0.015
    assert values.mean() - class_rate(labels) > 10 * sem


def test_expected_random_ap_matches_enumeration() -> None:
    for n, n_pos in [(1, 1), (3, 1), (3, 2), (5, 2), (6, 3), (6, 6)]:
        aps = []
        for positions in itertools.combinations(range(n), n_pos):
            y = np.zeros(n, bool)
            y[list(positions)] = True
            aps.append(average_precision_score(y, -np.arange(n)))  # rank order 0, 1, 2, …
        assert expected_random_ap(n_pos, n) == pytest.approx(np.mean(aps), abs=1e-12), (n, n_pos)


def test_noise_scores_give_about_chance_cmap() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(4, size=4000)
    value = cmap(labels, rng.random((4000, 4)), [0, 1, 2, 3])
    assert value == pytest.approx(cmap_chance(labels), abs=0.02)


@pytest.mark.parametrize("seed", range(4))
def test_macro_f1_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.choice(["a", "b", "c", "d"], size=60)
    predicted = rng.choice(["a", "b", "c", "e"], size=60)  # "d" never predicted, "e" never true
    expected = f1_score(labels, predicted, average="macro", zero_division=0)
    assert macro_f1(labels, predicted) == pytest.approx(expected, abs=1e-12)
    subset = ["a", "b", "d"]
    expected = f1_score(labels, predicted, labels=subset, average="macro", zero_division=0)
    assert macro_f1(labels, predicted, classes=subset) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_topk_accuracy_matches_sklearn(k: int) -> None:
    rng = np.random.default_rng(k)
    proba = rng.random((300, 7))
    labels = rng.integers(7, size=300)
    expected = top_k_accuracy_score(labels, proba, k=k, labels=range(7))
    assert topk_accuracy(labels, proba, k) == pytest.approx(expected)


def test_topk_accuracy_counts_ties_against_the_true_class() -> None:
    assert topk_accuracy(np.array([0, 1]), np.full((2, 3), 1 / 3), 1) == 0.0
    assert topk_accuracy(np.array([0]), np.full((1, 3), 1 / 3), 3) == 1.0


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("ties", [False, True])
def test_frame_auc_matches_sklearn(seed: int, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    y = (rng.random(500) < 0.2).astype(int)
    score = rng.normal(size=500) + y
    if ties:
        score = np.round(score)
    assert frame_auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)


def test_frame_auc_needs_both_classes() -> None:
    with pytest.raises(ProbeError, match="both normal and abnormal"):
        frame_auc(np.zeros(5), np.arange(5.0))


# --- temporal action detection ---------------------------------------------------------------------


def test_tiou_and_interpolated_ap_by_hand() -> None:
    assert tiou(2.0, 12.0, np.array([0.0, 12.0, 4.0]), np.array([10.0, 20.0, 6.0])).tolist() == pytest.approx(
        [8 / 12, 0.0, 0.2]
    )
    # precision 1, 0.5, 2/3 at recall 0.5, 0.5, 1 → envelope 1 then 2/3
    assert interpolated_ap(np.array([1, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0])) == pytest.approx(5 / 6)


def test_tad_perfect_predictions_score_one() -> None:
    gt = [Segment("v1", 0, 10, "a"), Segment("v1", 20, 30, "b"), Segment("v2", 5, 15, "a")]
    preds = [Detection(g.video_id, g.start, g.end, g.label, 0.9 - 0.1 * i) for i, g in enumerate(gt)]
    assert tad_map(preds, gt) == pytest.approx(1.0)


def test_tad_shifted_segment_passes_low_thresholds_only() -> None:
    gt = [Segment("v", 0, 10, "a")]
    preds = [Detection("v", 2, 12, "a", 0.9)]  # tIoU 8/12 = 0.667: TP at 0.3–0.6, FP at 0.7
    ap, classes = detection_ap(preds, gt)
    assert classes == ["a"]
    assert ap[:, 0].tolist() == [1, 1, 1, 1, 0]
    assert tad_map(preds, gt) == pytest.approx(0.8)
    # an exact, lower-scored copy: FP (GT taken) at 0.3–0.6, the TP at 0.7 behind one FP → AP 0.5
    preds.append(Detection("v", 0, 10, "a", 0.5))
    assert tad_map(preds, gt) == pytest.approx((4 * 1.0 + 0.5) / 5)


def test_tad_duplicate_detection_is_a_false_positive() -> None:
    gt = [Segment("v", 0, 10, "a"), Segment("v", 20, 30, "a")]
    preds = [
        Detection("v", 0, 10, "a", 0.9),
        Detection("v", 0, 10, "a", 0.8),
        Detection("v", 20, 30, "a", 0.7),
    ]
    # TP, FP, TP: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 → AP = 1/2 · 1 + 1/2 · 2/3
    assert tad_map(preds, gt) == pytest.approx(5 / 6)


def test_tad_wrong_class_and_wrong_video_are_false_positives() -> None:
    gt = [Segment("v1", 0, 10, "a"), Segment("v2", 0, 10, "b")]
    preds = [
        Detection("v1", 0, 10, "b", 0.9),  # right place, wrong class: FP for b
        Detection("v2", 0, 10, "b", 0.5),
        Detection("v1", 0, 10, "a", 0.8),
        Detection("v3", 0, 10, "a", 0.95),  # a video with no "a": FP for a
        Detection("v1", 0, 10, "c", 0.99),  # a class with no ground truth: ignored
    ]
    ap, classes = detection_ap(preds, gt)
    assert classes == ["a", "b"]
    np.testing.assert_allclose(ap, np.full((5, 2), 0.5))
    assert tad_map(preds, gt) == pytest.approx(0.5)


def test_tad_class_without_detections_scores_zero() -> None:
    gt = [Segment("v", 0, 10, "a"), Segment("v", 20, 30, "b")]
    assert tad_map([Detection("v", 0, 10, "a", 1.0)], gt) == pytest.approx(0.5)


def test_tad_matches_the_highest_tiou_free_segment() -> None:
    gt = [Segment("v", 0, 10, "a"), Segment("v", 8, 18, "a")]
    # overlaps both; tIoU 3/17 with the first, 9/11 with the second: must take the second
    preds = [Detection("v", 7, 17, "a", 0.9), Detection("v", 0, 9, "a", 0.8)]
    assert tad_map(preds, gt, tious=(0.5,)) == pytest.approx(1.0)


# --- retrieval ---------------------------------------------------------------------------------------


def _five_items() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    angles = np.deg2rad([0, 10, 90, 30, 65])
    emb = np.stack([np.cos(angles), np.sin(angles)], axis=1) * np.array([[1], [2], [3], [1], [5]])
    return emb, np.array(["A", "B", "A", "A", "B"]), np.array(["g1", "g1", "g2", "g3", "g4"])


def test_retrieval_hand_worked_five_items() -> None:
    emb, ids, groups = _five_items()
    m = retrieval_metrics(emb, ids, groups)
    # by hand (cosine = angle order; same-group items skipped):
    # q0 A: 3(A) 4(B) 2(A) → top1 1, AP (1 + 2/3)/2     q1 B: 3 4(B) 2 → 0, 1/2
    # q2 A: 4 3(A) 1 0(A) → 0, (1/2 + 2/4)/2           q3 A: 1 0(A) 4 2(A) → 0, 1/2
    # q4 B: 2 3 1(B) 0 → 0, 1/3
    assert m.top1 == pytest.approx(1 / 5)
    assert m.map == pytest.approx((5 / 6 + 1 / 2 + 1 / 2 + 1 / 2 + 1 / 3) / 5)
    assert m.chance_top1 == pytest.approx((2 / 3 + 1 / 3 + 2 / 4 + 2 / 4 + 1 / 4) / 5)
    brute = []
    for n, n_pos in [(3, 2), (3, 1), (4, 2), (4, 2), (4, 1)]:
        orders = [np.isin(np.arange(n), c) for c in itertools.combinations(range(n), n_pos)]
        brute.append(np.mean([average_precision_score(y, -np.arange(n)) for y in orders]))
    assert m.chance_map == pytest.approx(np.mean(brute))
    assert (m.num_queries, m.num_items) == (5, 5)


def test_retrieval_skips_queries_with_nothing_to_find() -> None:
    emb, ids, groups = _five_items()
    ids = ids.copy()
    ids[4] = "C"  # the only C, and B's other video is in q1's own group... q1 has no B elsewhere either
    m = retrieval_metrics(emb, ids, groups)
    assert m.num_queries == 3
    with pytest.raises(ProbeError, match="nothing to retrieve"):
        retrieval_metrics(emb, np.array(list("ABCDE")), groups)


def test_retrieval_from_ranking_rejects_incomplete_rankings() -> None:
    _, ids, groups = _five_items()
    with pytest.raises(ProbeError, match="does not cover"):
        retrieval_from_ranking(np.tile(np.array([0, 1, 2, -1, -1]), (5, 1)), ids, groups)


def test_expected_random_ap_rejects_impossible_counts() -> None:
    with pytest.raises(ProbeError):
        expected_random_ap(0, 3)
    assert math.isclose(expected_random_ap(1, 1), 1.0)
