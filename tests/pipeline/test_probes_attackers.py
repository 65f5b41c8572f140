"""The attacker panel on planted attributes of known shape, and the bootstrap intervals over people."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.probes.bootstrap import bootstrap_interval, interval, resample_rows, unit_groups
from pipeline.probes.config import LeakageConfig
from pipeline.probes.inputs import Clips
from pipeline.probes.leakage import attack, probe_panel

PEOPLE = 240
CLIPS = 3
DIM = 12


def planted(shape: str, seed: int = 0) -> tuple[Clips, dict[str, object], dict[str, str], dict[str, str]]:
    """One video per person, ``CLIPS`` noisy clips each; a binary attribute planted as ``shape``:
    linear (a shift along one direction), xor (the sign product of two coordinates) or radial (the
    radius of four coordinates). Splits by person: train 60%, val 15%, test 25%."""
    rng = np.random.default_rng(seed)
    centre = np.zeros((PEOPLE, DIM))
    if shape == "linear":
        value = rng.integers(0, 2, PEOPLE)
        centre[:, 0] = np.where(value == 1, 1.5, -1.5)
    elif shape == "xor":
        a, b = rng.choice([-1.0, 1.0], PEOPLE), rng.choice([-1.0, 1.0], PEOPLE)
        value = (a * b > 0).astype(int)
        centre[:, 0], centre[:, 1] = 2.5 * a, 2.5 * b
    else:  # radial
        value = rng.integers(0, 2, PEOPLE)
        direction = rng.normal(size=(PEOPLE, 4))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        centre[:, :4] = direction * np.where(value == 1, 4.0, 1.0)[:, None]
    emb = np.repeat(centre, CLIPS, axis=0) + 0.5 * rng.normal(size=(PEOPLE * CLIPS, DIM))
    videos = [f"v{i:03d}" for i in range(PEOPLE)]
    clips = Clips(
        emb=emb.astype(np.float32),
        video_id=np.repeat(np.array(videos), CLIPS),
        index=np.tile(np.arange(CLIPS), PEOPLE),
    )
    order = rng.permutation(PEOPLE)
    split = np.where(order < 0.6 * PEOPLE, "train", np.where(order < 0.75 * PEOPLE, "val", "test"))
    labels = {v: ["no", "yes"][int(x)] for v, x in zip(videos, value, strict=True)}
    people = {v: f"p{i}" for i, v in enumerate(videos)}
    return clips, labels, dict(zip(videos, split.tolist(), strict=True)), people


@pytest.mark.parametrize("shape", ["linear", "xor", "radial"])
def test_the_panel_reads_every_planted_shape(shape: str) -> None:
    """The panel's worst attacker reads each shape at least as well as any single attacker fitted on its
    own, and well above chance; the linear attacker alone misses the nonlinear shapes."""
    clips, labels, splits, people = planted(shape)
    cfg = LeakageConfig(panel="full", bootstrap=50)
    panel = probe_panel(clips, {"a": labels}, splits, cfg, people=people)
    (worst,) = panel.worst
    assert panel.attackers == (
        "linear",
        "mlp",
        "knn_cosine",
        "logreg_cv",
        "mlp_wide",
        "hgb_pca",
        "logreg_plain",
        "mlp_plain",
    )
    for name in panel.attackers:
        alone = attack(clips, labels, splits, name, attribute="a", cfg=cfg)
        assert worst.leakage >= alone.leakage - 1e-9, (name, alone.leakage, worst)
    assert worst.leakage > 0.8, worst
    linear = next(a for a in panel.attacks if a.attacker == "linear")
    if shape == "linear":
        assert linear.leakage > 0.8
    else:
        assert linear.leakage < 0.35 < worst.leakage - 0.4, (linear, worst)
        assert worst.attacker != "linear"
    (oracle,) = panel.oracle  # the full panel's upper bound over the MLP's passes
    mlp = next(a for a in panel.attacks if a.attacker == "mlp")
    assert oracle.attacker == "oracle" and oracle.cmap >= mlp.cmap - 1e-9


def test_the_fast_panel_catches_xor_and_is_the_default() -> None:
    clips, labels, splits, people = planted("xor", seed=1)
    panel = probe_panel(clips, {"a": labels}, splits, people=people)
    assert LeakageConfig().panel == "fast" and panel.attackers == ("linear", "mlp", "knn_cosine")
    assert panel.oracle == [] and panel.worst[0].leakage > 0.8
    assert panel.worst[0].resampled == "identities" and panel.worst[0].num_groups == 60


def test_attackers_fit_on_train_and_val() -> None:
    clips, labels, splits, _ = planted("linear")
    both = attack(clips, labels, splits, "linear", cfg=LeakageConfig())
    train_only = attack(clips, labels, splits, "linear", cfg=LeakageConfig(train_splits=("train",)))
    fit = sum(s in ("train", "val") for s in splits.values())
    assert both.num_train_clips == CLIPS * fit > train_only.num_train_clips


def test_intervals_hold_the_point_and_the_worst_bounds_every_attacker() -> None:
    clips, labels, splits, people = planted("radial")
    panel = probe_panel(clips, {"a": labels}, splits, LeakageConfig(bootstrap=200), people=people)
    for a in panel.attacks:
        assert a.cmap_low <= a.cmap <= a.cmap_high and a.leakage_low <= a.leakage <= a.leakage_high
    (worst,) = panel.worst
    assert worst.leakage_low >= max(a.leakage_low for a in panel.attacks) - 1e-9
    assert worst.leakage_high >= max(a.leakage_high for a in panel.attacks) - 1e-9


# --- bootstrap ------------------------------------------------------------------------------------------


def test_interval_known_answer() -> None:
    """Percentiles 2.5 and 97.5 of 0..100 (numpy's linear interpolation) are 2.5 and 97.5; NaNs are
    dropped; under ten finite values there is no interval."""
    assert interval(np.arange(101.0)) == pytest.approx((2.5, 97.5))
    assert interval(np.r_[np.arange(101.0), np.nan]) == pytest.approx((2.5, 97.5))
    assert all(np.isnan(interval(np.arange(9.0))))


def test_resampling_draws_whole_groups() -> None:
    group = np.array([0, 0, 0, 1, 2, 2])
    for rows in resample_rows(group, 50, seed=3):
        drawn = group[rows]
        # each group is drawn with all its rows: counts are multiples of the group's size
        counts = np.bincount(drawn, minlength=3)
        assert counts[0] % 3 == 0 and counts[2] % 2 == 0
        assert counts[0] // 3 + counts[1] + counts[2] // 2 == 3  # as many draws as groups
    assert [r.tolist() for r in resample_rows(group, 5, 7)] == [
        r.tolist() for r in resample_rows(group, 5, 7)
    ]


def test_unit_groups_by_identity_else_video() -> None:
    group, by = unit_groups(["a", "b", "c"], {"a": "p1", "b": "p1", "c": "p2"})
    assert by == "identities" and group.tolist() == [0, 0, 1]
    group, by = unit_groups(["a", "b", "c"], {"a": "p1", "b": None})
    assert by == "videos" and group.tolist() == [0, 1, 2]


def test_bootstrap_interval_coverage() -> None:
    """A hand-made case: 60 people, each with 4 units of one shared Bernoulli(0.3) outcome (units of a
    person are copies, so people are the independent draws). Over 200 samples the 95% interval of the
    mean over people covers 0.3 about 95% of the time; resampling units instead would be too narrow."""
    rng = np.random.default_rng(0)
    group = np.repeat(np.arange(60), 4)
    covered, too_narrow = 0, 0
    for _ in range(200):
        outcome = np.repeat(rng.random(60) < 0.3, 4).astype(float)
        low, high = bootstrap_interval(
            lambda r, o=outcome: float(o[r].mean()), group, 150, seed=int(rng.integers(1 << 30))
        )
        covered += low <= 0.3 <= high
        by_unit = bootstrap_interval(lambda r, o=outcome: float(o[r].mean()), np.arange(240), 150, seed=1)
        too_narrow += (by_unit[1] - by_unit[0]) < (high - low)
    assert 0.89 <= covered / 200 <= 0.99, covered
    assert too_narrow > 180
