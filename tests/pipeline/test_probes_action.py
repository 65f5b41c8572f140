"""Action and bias probes on synthetic embeddings: planted actions found, noise at chance, bias measured."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.probes.action import fit_action_probe, probe_action, video_proba
from pipeline.probes.bias import probe_bias
from pipeline.probes.config import ActionConfig, BiasConfig, FitConfig
from pipeline.probes.inputs import Clips, ProbeError, evenly_spaced, mean_by_owner
from pipeline.probes.synthetic import ProbeData, synthetic_probe_data

SMALL = {"dim": 32, "identities": (24, 24), "untrimmed_clips": 4, "anomaly_clips": 4, "static_per_video": 1}


@pytest.fixture(scope="module")
def planted() -> ProbeData:
    return synthetic_probe_data(0, **SMALL)  # type: ignore[arg-type]


def test_action_probe_finds_planted_actions(planted: ProbeData) -> None:
    m = probe_action(planted.motion, planted.actions, planted.splits)
    assert m.top1 > 0.95 and m.top_k == 1.0 and m.k == 5
    assert m.num_classes == 6 and m.num_train_videos == 96 and m.num_test_videos == 96
    assert m.chance_top1 < 0.3


def test_action_probe_on_noise_is_near_chance() -> None:
    data = synthetic_probe_data(1, action_signal=0.0, **SMALL)  # type: ignore[arg-type]
    m = probe_action(data.motion, data.actions, data.splits)
    assert abs(m.top1 - 1 / 6) < 0.1
    assert m.top_k > m.top1


def test_action_probe_is_deterministic(planted: ProbeData) -> None:
    cfg = ActionConfig(probe=FitConfig(steps=30, seed=5))
    assert probe_action(planted.motion, planted.actions, planted.splits, cfg) == probe_action(
        planted.motion, planted.actions, planted.splits, cfg
    )


def test_evenly_spaced_clips() -> None:
    assert evenly_spaced(3, 5).tolist() == [0, 1, 2]
    assert evenly_spaced(9, 5).tolist() == [0, 2, 4, 6, 8]
    assert evenly_spaced(20, 5).tolist() == [0, 5, 10, 14, 19]


def test_mean_by_owner_averages_each_owners_rows() -> None:
    values = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]])
    got = mean_by_owner(values, np.array([2, 0, 2]), 3)
    np.testing.assert_allclose(got, [[3.0, 2.0], [0.0, 0.0], [3.0, 2.5]])  # owner 1 has no rows


def test_video_proba_averages_the_evenly_spaced_clips_of_each_video() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(12, 4)).astype(np.float32)
    vids = np.array(["b"] * 9 + ["a"] * 3)
    index = np.r_[np.arange(9)[::-1], np.arange(3)]  # rows out of order on purpose
    clips = Clips(emb, vids, index)
    model = fit_action_probe(clips, {"a": "x", "b": "y"}, ["a", "b"], FitConfig(steps=5))
    got = video_proba(model.probe, clips, ["b", "a"], clips_per_video=5)
    b_rows = [8 - i for i in (0, 2, 4, 6, 8)]  # clip_index 0, 2, 4, 6, 8 of video b
    np.testing.assert_allclose(got[0], model.probe.predict_proba(emb[b_rows]).mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(got[1], model.probe.predict_proba(emb[9:]).mean(axis=0), rtol=1e-6)


def test_action_probe_needs_both_splits(planted: ProbeData) -> None:
    train_only = {v: "train" for v in planted.splits}
    with pytest.raises(ProbeError, match="split 'test'"):
        probe_action(planted.motion, planted.actions, train_only)


def test_bias_probe_reports_per_group_accuracy_and_gap(planted: ProbeData) -> None:
    gender = planted.attributes["private_gender"]
    cfg = BiasConfig(action=ActionConfig(probe=FitConfig(steps=50)))
    m = probe_bias(planted.motion, planted.actions, planted.bias_splits, gender, cfg)
    assert set(m.per_group) == {"female", "male"}
    assert m.counts["female"] == m.counts["male"] > 0  # the test split is balanced
    assert m.delta == pytest.approx(abs(m.per_group["female"] - m.per_group["male"]))
    assert m.accuracy == pytest.approx(np.mean(list(m.per_group.values())))
    assert m.num_train_videos == sum(s == "train" for s in planted.bias_splits.values())


def test_bias_probe_sees_a_gender_shortcut() -> None:
    """Gender in the embedding + a split where every action but the shortcut is mostly male → the
    probe reads "female" as the shortcut action: women lose accuracy, men barely do."""
    sizes = {**SMALL, "identities": (48, 24)}
    data = synthetic_probe_data(0, action_signal=2.0, attribute_signal=6.0, **sizes)  # type: ignore[arg-type]
    biased = probe_bias(data.motion, data.actions, data.bias_splits, data.attributes["private_gender"])
    data = synthetic_probe_data(0, action_signal=2.0, attribute_signal=0.0, **sizes)  # type: ignore[arg-type]
    fair = probe_bias(data.motion, data.actions, data.bias_splits, data.attributes["private_gender"])
    assert biased.per_group["female"] < biased.per_group["male"] - 0.1
    assert biased.accuracy < fair.accuracy - 0.1


def test_action_top1_interval_over_people() -> None:
    """On noise (top-1 near chance) the 95% interval over the test people holds the point estimate and
    is wide; by video when no identities are given; none with bootstrap=0."""
    data = synthetic_probe_data(1, action_signal=0.0, **SMALL)  # type: ignore[arg-type]
    m = probe_action(data.motion, data.actions, data.splits, people=data.identities)
    assert m.resampled == "identities" and m.top1_low <= m.top1 <= m.top1_high
    assert m.top1_high - m.top1_low > 0.05
    by_video = probe_action(data.motion, data.actions, data.splits)
    assert by_video.resampled == "videos" and by_video.top1 == m.top1
    off = probe_action(data.motion, data.actions, data.splits, ActionConfig(bootstrap=0))
    assert np.isnan(off.top1_low) and np.isnan(off.top1_high)
