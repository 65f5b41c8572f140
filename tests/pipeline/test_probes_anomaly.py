"""Anomaly probe: frame scoring and labels by hand, the MIL loss by hand, planted anomalies found."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.probes.anomaly import frame_labels, frame_scores, mil_ranking_loss, probe_anomaly
from pipeline.probes.config import AnomalyConfig
from pipeline.probes.inputs import ProbeError
from pipeline.probes.synthetic import synthetic_probe_data

SMALL = {"dim": 32, "actions_per_identity": 1, "untrimmed_clips": 3, "static_per_video": 1}
FAST = AnomalyConfig(steps=100)


def test_frame_scores_take_covering_clips_else_the_nearest() -> None:
    # 2 fps, 8 frames at t = 0, 0.5, …, 3.5 s; clips [0, 1), [0.5, 1.5), [2, 3) with centres 0.5, 1, 2.5
    scores = frame_scores(np.array([0.2, 0.6, 1.0]), np.array([0, 0.5, 2]), np.array([1, 1.5, 3]), 8, 2.0)
    # t = 0.5 is in two clips (mean); t = 1.5 and t = 3, 3.5 are in none (nearest centre: 1, 2.5, 2.5)
    np.testing.assert_allclose(scores, [0.2, 0.4, 0.6, 0.6, 1.0, 1.0, 1.0, 1.0])


def test_frame_labels_half_open_intervals() -> None:
    assert frame_labels([(1.0, 2.0)], 6, 2.0).tolist() == [0, 0, 1, 1, 0, 0]
    assert frame_labels([], 3, 2.0).tolist() == [0, 0, 0]


def test_mil_ranking_loss_by_hand() -> None:
    cfg = AnomalyConfig(lambda_smooth=0.5, lambda_sparse=0.25)
    abnormal = torch.tensor([[0.2, 0.9, 0.0]])  # last instance is padding
    normal = torch.tensor([[0.3, 0.1, 0.5]])
    loss = mil_ranking_loss(
        abnormal, torch.tensor([[True, True, False]]), normal, torch.tensor([[True, True, True]]), cfg
    )
    ranking = 1 - 0.9 + 0.5
    smooth = (0.9 - 0.2) ** 2
    sparse = 0.2 + 0.9
    assert loss.item() == pytest.approx(ranking + 0.5 * smooth + 0.25 * sparse)


def test_anomaly_probe_finds_planted_anomalies_and_is_deterministic() -> None:
    data = synthetic_probe_data(0, identities=(40, 20), anomaly_clips=6, **SMALL)  # type: ignore[arg-type]
    m = probe_anomaly(data.motion, data.anomalies, data.splits, data.num_frames, data.fps, FAST)
    assert m.auc > 0.9
    assert (m.num_train_normal, m.num_train_abnormal, m.num_test_videos) == (20, 20, 20)
    assert m.num_test_frames == 20 * 6 * 16
    assert m == probe_anomaly(data.motion, data.anomalies, data.splits, data.num_frames, data.fps, FAST)


def test_anomaly_probe_on_noise_is_near_half() -> None:
    data = synthetic_probe_data(
        1,
        identities=(40, 80),
        anomaly_clips=6,
        anomaly_signal=0.0,
        **SMALL,  # type: ignore[arg-type]
    )
    m = probe_anomaly(data.motion, data.anomalies, data.splits, data.num_frames, data.fps, FAST)
    # frames of one clip share a score, so 80 videos give a noisy AUC: ±0.1 across seeds on noise
    assert abs(m.auc - 0.5) < 0.12


def test_anomaly_probe_needs_both_kinds_of_training_video() -> None:
    data = synthetic_probe_data(0, identities=(4, 4), anomaly_clips=4, **SMALL)  # type: ignore[arg-type]
    normal_only = {v: [] if data.splits[v] == "train" else iv for v, iv in data.anomalies.items()}
    with pytest.raises(ProbeError, match="normal and abnormal"):
        probe_anomaly(data.motion, normal_only, data.splits, data.num_frames, data.fps)


def test_anomaly_auc_carries_an_interval_over_people() -> None:
    data = synthetic_probe_data(0, identities=(40, 20), **SMALL)  # type: ignore[arg-type]
    m = probe_anomaly(
        data.motion, data.anomalies, data.splits, data.num_frames, data.fps, FAST, people=data.identities
    )
    assert m.resampled == "identities" and m.auc_low <= m.auc <= m.auc_high and m.auc_high > m.auc_low
    plain = probe_anomaly(data.motion, data.anomalies, data.splits, data.num_frames, data.fps, FAST)
    assert plain.resampled == "videos" and plain.auc == m.auc
