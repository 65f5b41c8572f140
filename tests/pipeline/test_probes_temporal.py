"""Temporal detection probe: clip labels, cells, NMS and decoding by hand; planted segments found."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.probes.config import TemporalConfig
from pipeline.probes.metrics import Detection
from pipeline.probes.synthetic import synthetic_probe_data
from pipeline.probes.temporal import (
    cells,
    clip_labels,
    decode_segments,
    fit_temporal_head,
    nms,
    predict_clip_proba,
    probe_temporal,
)

SMALL = {"dim": 32, "actions_per_identity": 1, "anomaly_clips": 3, "static_per_video": 1}
FAST = TemporalConfig(steps=100, hidden=32)


def test_clip_labels_take_the_segment_covering_most_of_the_clip() -> None:
    t0, t1 = np.arange(6.0), np.arange(6.0) + 1  # clips [0,1) … [5,6)
    segments = [(0.6, 2.3, "jump"), (2.3, 3.0, "wave"), (4.0, 5.5, "kick")]
    # clip 0: 0.4 of jump (< 0.5) → bg; 1: jump; 2: 0.3 jump vs 0.7 wave → wave; 3: nothing;
    # 4: kick; 5: 0.5 kick (= min_coverage) → kick
    assert clip_labels(t0, t1, segments, ["jump", "kick", "wave"], 0.5).tolist() == [0, 1, 3, 0, 2, 2]
    assert clip_labels(t0, t1, segments, ["jump"], 0.5).tolist() == [0, 1, 0, 0, 0, 0]  # unknown class → bg
    assert clip_labels(t0, t1, [], ["jump"], 0.5).tolist() == [0] * 6


def test_cells_split_time_between_clip_centres() -> None:
    start, end = cells(np.array([0.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0]))
    assert start.tolist() == [0, 1, 2] and end.tolist() == [1, 2, 3]  # back to back: the clips
    start, end = cells(np.array([0.0, 0.5, 1.0]), np.array([1.0, 1.5, 2.0]))  # overlapping by half
    assert start.tolist() == [0, 0.75, 1.25] and end.tolist() == [0.75, 1.25, 2.0]


def test_nms_keeps_the_best_of_overlapping_detections_per_class_and_video() -> None:
    dets = [
        Detection("v", 0, 10, "a", 0.5),
        Detection("v", 1, 10, "a", 0.9),  # tIoU 0.9 with the first: suppresses it
        Detection("v", 8, 20, "a", 0.7),  # tIoU 2/20 with the best: kept
        Detection("v", 0, 10, "b", 0.4),  # other class: kept
        Detection("w", 0, 10, "a", 0.3),  # other video: kept
    ]
    kept = nms(dets, 0.5)
    assert kept == [dets[1], dets[2], dets[3], dets[4]]


def test_decode_segments_from_hand_made_probabilities() -> None:
    proba = np.array(
        [
            [0.9, 0.05, 0.05],
            [0.2, 0.7, 0.1],
            [0.1, 0.8, 0.1],
            [0.6, 0.3, 0.1],  # class 1 at 0.3: extends its ≥ 0.25 run by one clip
            [0.9, 0.05, 0.05],
            [0.1, 0.1, 0.8],
        ]
    )
    t0 = np.arange(6.0)
    dets = decode_segments("v", proba, t0, t0 + 1, ["a", "b"], thresholds=(0.5, 0.25), nms_tiou=0.5)
    got = sorted((d.label, d.start, d.end, round(d.score, 4)) for d in dets)
    # "a": argmax / ≥ 0.5 run [1, 3) mean 0.75 beats the ≥ 0.25 run [1, 4) (tIoU 2/3 → suppressed)
    assert got == [("a", 1.0, 3.0, 0.75), ("b", 5.0, 6.0, 0.8)]
    dets = decode_segments("v", proba, t0, t0 + 1, ["a", "b"], thresholds=(0.25,), nms_tiou=0.7)
    assert sorted((d.label, d.start, d.end) for d in dets) == [("a", 1, 3), ("a", 1, 4), ("b", 5, 6)]


def test_videos_packed_together_score_as_if_alone() -> None:
    data = synthetic_probe_data(0, identities=(6, 2), untrimmed_clips=5, **SMALL)  # type: ignore[arg-type]
    train = sorted(v for v in data.segments if data.splits[v] == "train")
    model = fit_temporal_head(
        data.motion, data.segments, train, TemporalConfig(steps=5, hidden=8, kernel_size=5)
    )
    together = predict_clip_proba(model, data.motion, train)
    for v, proba in zip(train, together, strict=True):
        np.testing.assert_allclose(
            predict_clip_proba(model, data.motion, [v])[0], proba, rtol=1e-5, atol=1e-6
        )


def test_temporal_probe_finds_planted_segments_and_is_deterministic() -> None:
    data = synthetic_probe_data(0, identities=(40, 20), **SMALL)  # type: ignore[arg-type]
    m = probe_temporal(data.motion, data.segments, data.splits, FAST)
    assert m.map > 0.8
    assert m.map_per_tiou[0.3] >= m.map_per_tiou[0.7]
    assert m.map == pytest.approx(np.mean(list(m.map_per_tiou.values())))
    assert (m.num_classes, m.num_train_videos, m.num_test_videos) == (6, 40, 20)
    assert m == probe_temporal(data.motion, data.segments, data.splits, FAST)


def test_temporal_probe_on_noise_scores_low() -> None:
    data = synthetic_probe_data(1, identities=(40, 20), action_signal=0.0, **SMALL)  # type: ignore[arg-type]
    assert probe_temporal(data.motion, data.segments, data.splits, FAST).map < 0.15


def test_temporal_map_carries_an_interval_over_people() -> None:
    """The head is fitted once; resampling the test videos' people brackets the point estimate, and one
    person per test video resamples exactly as many units as resampling videos does."""
    data = synthetic_probe_data(0, identities=(40, 20), **SMALL)  # type: ignore[arg-type]
    m = probe_temporal(data.motion, data.segments, data.splits, FAST, people=data.identities)
    assert m.resampled == "identities" and m.map_low <= m.map <= m.map_high and m.map_high > m.map_low
    by_video = probe_temporal(data.motion, data.segments, data.splits, FAST)
    assert by_video.resampled == "videos" and by_video.map == m.map
    none = probe_temporal(data.motion, data.segments, data.splits, FAST.model_copy(update={"bootstrap": 0}))
    assert np.isnan(none.map_low) and none.map == m.map
