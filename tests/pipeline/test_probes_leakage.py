"""Attribute leakage: attackers find planted attributes, report chance on noise, aggregate as documented."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.probes.config import LINEAR, MLP, FitConfig, LeakageConfig
from pipeline.probes.inputs import Clips, ProbeError
from pipeline.probes.leakage import attack, leakage_removed, probe_leakage
from pipeline.probes.metrics import class_rate, cmap_chance
from pipeline.probes.synthetic import ProbeData, synthetic_probe_data

SMALL = {
    "dim": 32,
    "actions_per_identity": 1,
    "untrimmed_clips": 3,
    "anomaly_clips": 3,
    "static_per_video": 3,
}
FAST = LeakageConfig(
    attackers={
        "linear": LINEAR.changed(balanced=True, steps=100),
        "mlp": MLP.changed(balanced=True, steps=100, hidden=64),
    }
)


@pytest.fixture(scope="module")
def planted() -> ProbeData:
    return synthetic_probe_data(0, identities=(40, 40), **SMALL)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["static", "motion"])
def test_attackers_find_planted_attributes(planted: ProbeData, kind: str) -> None:
    clips = planted.static if kind == "static" else planted.motion
    results = probe_leakage(clips, planted.attributes, planted.splits, FAST)
    assert [(r.attribute, r.attacker) for r in results] == [
        (a, k)
        for a in ("private_gender", "private_skin_tone", "private_clothing")
        for k in ("linear", "mlp", "knn_cosine")
    ]
    for r in results:
        assert r.cmap > r.chance + 0.3, r
        assert r.macro_f1 > r.class_rate + 0.2, r
        assert r.num_test == 120 and r.aggregate == "video"  # 40 test people x 3 videos


def test_attackers_on_noise_report_about_chance() -> None:
    data = synthetic_probe_data(
        1,
        identities=(40, 120),
        attribute_signal=0.0,
        identity_signal=0.0,
        **SMALL,  # type: ignore[arg-type]
    )
    for r in probe_leakage(data.static, data.attributes, data.splits, FAST):
        assert abs(r.cmap - r.chance) < 0.05, r  # sampling noise of 360 test videos
        # an attacker with nothing to go on leans to one class: macro-F1 at or below the class rate
        assert r.macro_f1 < r.class_rate + 0.05, r


def test_clip_aggregate_scores_each_clip(planted: ProbeData) -> None:
    gender = planted.attributes["private_gender"]
    cfg = LeakageConfig(attackers=FAST.attackers, aggregate="clip")
    r = attack(planted.static, gender, planted.splits, FitConfig(steps=50), attribute="g", cfg=cfg)
    assert (r.attribute, r.attacker, r.aggregate) == ("g", "linear", "clip")
    assert r.num_test == 360 and r.num_train_clips == 360  # 120 videos x 3 static clips each side


def test_video_score_is_the_mean_of_its_clip_probabilities() -> None:
    """Two test videos whose clips point opposite ways; by hand from the probe's clip probabilities."""
    rng = np.random.default_rng(0)
    train = rng.normal(size=(40, 2)) + np.repeat([[3, 0], [-3, 0]], 20, axis=0)
    test = np.array([[3, 0], [-1, 0], [-3, 0], [-2, 0]], np.float32)
    emb = np.concatenate([train, test]).astype(np.float32)
    vids = np.array([f"t{i // 2}" for i in range(40)] + ["x", "x", "y", "y"])
    clips = Clips(emb, vids, np.r_[np.tile([0, 1], 20), [0, 1, 0, 1]])
    labels = {f"t{i}": "a" if i < 10 else "b" for i in range(20)} | {"x": "a", "y": "b"}
    splits = {f"t{i}": "train" for i in range(20)} | {"x": "test", "y": "test"}
    r = attack(clips, labels, splits, FitConfig(steps=50))
    assert r.num_test == 2 and r.cmap == 1.0 and r.macro_f1 == 1.0
    assert (r.chance, r.class_rate) == (0.75, 0.5)  # a random order of one a and one b: AP 1 or 1/2


def test_single_valued_attribute_is_refused(planted: ProbeData) -> None:
    same = dict.fromkeys(planted.splits, "x")
    with pytest.raises(ProbeError, match="one value only"):
        attack(planted.static, same, planted.splits, FitConfig(steps=5))


def test_videos_without_a_value_are_left_out(planted: ProbeData) -> None:
    gender = dict(planted.attributes["private_gender"])
    test_videos = sorted(v for v, s in planted.splits.items() if s == "test")
    for v in test_videos[:10]:
        gender[v] = None
    gender[test_videos[10]] = math.nan
    r = attack(planted.static, gender, planted.splits, FitConfig(steps=20))
    assert r.num_test == 120 - 11


def test_leakage_removed() -> None:
    assert leakage_removed(0.70, 0.50, 0.25) == pytest.approx(0.20 / 0.45)
    assert leakage_removed(0.70, 0.25, 0.25) == pytest.approx(1.0)
    assert leakage_removed(0.60, 0.65, 0.25) < 0
    assert math.isnan(leakage_removed(0.24, 0.20, 0.25))


def test_attack_is_deterministic(planted: ProbeData) -> None:
    skin = planted.attributes["private_skin_tone"]
    mlp = MLP.changed(hidden=32, steps=30, seed=7)
    a = attack(planted.motion, skin, planted.splits, mlp)
    assert a == attack(planted.motion, skin, planted.splits, mlp)
    test_labels = np.array([str(skin[v]) for v in skin if planted.splits[v] == "test"])
    assert a.chance == pytest.approx(cmap_chance(test_labels))
    assert a.class_rate == pytest.approx(class_rate(test_labels))
