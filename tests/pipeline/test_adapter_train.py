"""Adapter training on planted features: leakage goes down, actions stay; history, seeds, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from pipeline.adapter import (
    AdapterConfig,
    AdapterData,
    AdapterError,
    TaskWeights,
    TrainConfig,
    anonymize_array,
    default_objective,
    paper_objective,
    train_adapter,
)
from pipeline.adapter.synthetic import PlantedData, planted_features

D = 32
ATTRS = ("gender", "skin_tone", "clothing_color")


@pytest.fixture(scope="module")
def planted() -> PlantedData:
    torch.set_num_threads(1)  # tiny matrices: threads only add overhead (and noise on shared CPUs)
    return planted_features(
        persons=(32, 8, 24), videos_per_person=4, clips_per_video=3, dim=D, appearance=0.5
    )


def _small(**kw: object) -> AdapterConfig:
    return AdapterConfig.model_validate({"dim": D, "layers": 2, "heads": 4, "tokens": 4, "width": 32, **kw})


def _probe(planted: PlantedData, z: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 of a linear probe trained on train/val people, tested on unseen test people."""
    d = planted.data
    train = d.split[d.video] != "test"
    keep = labels >= 0
    clf = LogisticRegression(max_iter=2000).fit(z[train & keep], labels[train & keep])
    return float(clf.score(z[~train & keep], labels[~train & keep]))


@pytest.mark.slow
def test_default_objective_lowers_leakage_and_keeps_actions(planted: PlantedData) -> None:
    d = planted.data
    cfg = TrainConfig(
        adapter=_small(erase_dims=8), objective=default_objective(), epochs=6, batch_size=64, lr=1e-2
    )
    result = train_adapter(d, cfg)
    z = anonymize_array(result.model, d.motion)
    for name in ATTRS:
        labels = planted.private[name][d.video]
        chance = np.bincount(labels).max() / len(labels)
        raw, anon = _probe(planted, d.motion, labels), _probe(planted, z, labels)
        assert raw - chance > 0.2, f"{name}: the planted attribute should leak ({raw:.2f} vs {chance:.2f})"
        assert anon - chance < 0.5 * (raw - chance), f"{name}: {raw:.2f} -> {anon:.2f} (chance {chance:.2f})"
    assert d.action is not None
    raw_act, anon_act = _probe(planted, d.motion, d.action), _probe(planted, z, d.action)
    assert anon_act >= raw_act - 0.05, f"action top-1 {raw_act:.3f} -> {anon_act:.3f}"
    assert result.val_action_acc > 0.8  # the co-trained head, on 8 unseen people


def test_history_selection_and_seeds(planted: PlantedData) -> None:
    seen: list[int] = []
    cfg = TrainConfig(adapter=_small(erase_dims=4), epochs=2, batch_size=128, lr=1e-3, seed=7)
    result = train_adapter(planted.data, cfg, on_epoch=lambda epoch, metrics: seen.append(epoch))
    assert seen == [0, 1] and len(result.history) == 2 and 0 <= result.best_epoch < 2
    for key in ("loss", "lc", "action", "detection", "anomaly", "privacy", "val_action_acc"):
        assert key in result.history[-1], key
    assert result.val_action_acc == result.history[result.best_epoch]["val_action_acc"]
    assert result.data_checksum == planted.data.checksum()
    again = train_adapter(planted.data, cfg)
    np.testing.assert_array_equal(
        anonymize_array(result.model, planted.data.motion), anonymize_array(again.model, planted.data.motion)
    )


def test_paper_objective_and_variant_train(planted: PlantedData) -> None:
    cfg = TrainConfig(
        adapter=AdapterConfig(dim=D, variant="paper", heads=4),
        objective=paper_objective(TaskWeights(anomaly=0.0)),
        epochs=1,
        batch_size=128,
    )
    result = train_adapter(planted.data, cfg)
    assert "anomaly" not in result.history[0] and "cross_view" not in result.history[0]
    assert result.history[0]["lc"] < 1e-3  # ω_LC = 100 keeps it at the identity


def test_training_refuses_mismatched_data(planted: PlantedData) -> None:
    with pytest.raises(AdapterError, match="dim 64 but the data has dim 32"):
        train_adapter(planted.data, TrainConfig(adapter=AdapterConfig(dim=64), epochs=1))
    with pytest.raises(AdapterError, match="temporal tokens"):
        train_adapter(planted.data, TrainConfig(adapter=_small(temporal=True), epochs=1))
    d = planted.data
    shuffled = AdapterData(
        motion=d.motion[::-1].copy(),
        video=d.video[::-1].copy(),
        static=d.static,
        static_video=d.static_video,
        split=d.split,
    )
    with pytest.raises(AdapterError, match="grouped by video"):
        train_adapter(shuffled, TrainConfig(adapter=_small(), epochs=1))
    no_static = AdapterData(
        motion=d.motion, video=d.video, static=d.static[:0], static_video=d.static_video[:0], split=d.split
    )
    with pytest.raises(AdapterError, match="2 static clips"):
        train_adapter(no_static, TrainConfig(adapter=_small(), epochs=1))


def test_temporal_tokens_train(planted: PlantedData) -> None:
    d = planted.data
    rng = np.random.default_rng(0)
    jitter = 0.1 * rng.standard_normal((len(d.motion), 2, D)).astype(np.float32)
    tokens = d.motion[:, None] + jitter - jitter.mean(1, keepdims=True)  # two tokens whose mean is the clip
    data = AdapterData(**{**d.__dict__, "tokens": tokens})
    cfg = TrainConfig(adapter=_small(temporal=True), epochs=1, batch_size=128)
    result = train_adapter(data, cfg)
    z = anonymize_array(result.model, data.motion, data.tokens)
    assert z.shape == d.motion.shape and np.isfinite(z).all()


def test_eraser_fitted_on_static_clips_too_hides_the_look_of_static_clips(planted: PlantedData) -> None:
    """`erase_static`: the eraser also sees static clips (each against its video's other static clips),
    so the look is erased from static clips passed through the adapter, not only from motion clips."""
    d = planted.data
    leak: dict[bool, float] = {}
    for erase_static in (False, True):
        cfg = TrainConfig(
            adapter=_small(erase_dims=8, erase_static=erase_static), epochs=2, batch_size=64, lr=1e-3, seed=3
        )
        z = anonymize_array(train_adapter(d, cfg).model, d.static)
        train = d.split[d.static_video] != "test"
        scores = []
        for name in ATTRS:
            labels = planted.private[name][d.static_video]
            clf = LogisticRegression(max_iter=2000).fit(z[train], labels[train])
            scores.append(clf.score(z[~train], labels[~train]) - np.bincount(labels).max() / len(labels))
        leak[erase_static] = float(np.mean(scores))
    assert leak[True] < leak[False] - 0.05, leak


@pytest.mark.parametrize("clip_dims", [0, 3])
def test_eraser_is_fitted_on_videos_of_one_action_only(planted: PlantedData, clip_dims: int) -> None:
    """The eraser is fitted on the training and validation videos (never test), and untrimmed videos
    (no single action) are left out: their static frames mix the poses of several actions, and
    erasing what those share with the clips costs detection. With
    `erase_clip_dims`, more directions are fitted on the erased clips against the mean of each video's
    other clips, and chained after the first ones."""
    from pipeline.adapter.nullspace import chain, erase, fit_nullspace

    d = planted.data
    assert d.action is not None and (d.action < 0).any()  # the untrimmed detection videos
    cfg = TrainConfig(adapter=_small(erase_dims=4, erase_clip_dims=clip_dims), epochs=1, batch_size=128)
    model = train_adapter(d, cfg).model
    # fitted before the first epoch, on the identity-start adapter: on the raw motion clips
    static_mean = np.zeros((d.num_videos, D))
    np.add.at(static_mean, d.static_video, d.static)
    static_mean = (static_mean / np.bincount(d.static_video, minlength=d.num_videos)[:, None]).astype(
        np.float32
    )
    fit = np.isin(d.split[d.video], ["train", "val"])
    assert (d.split == "val").any() and (d.split == "test").any()
    rows = fit & (d.action >= 0)
    video_action = np.full(d.num_videos, -1)
    video_action[d.video[rows]] = d.action[rows]
    z, group = d.motion[rows], video_action[d.video[rows]]
    mean, E, P, _ = fit_nullspace(z, static_mean[d.video[rows]], group, 4, keep_means=False)
    if clip_dims:
        sums = np.zeros((d.num_videos, D))
        np.add.at(sums, d.video[fit], d.motion[fit])
        count = np.bincount(d.video[fit], minlength=d.num_videos)[d.video[rows], None]
        assert (count >= 2).all()
        others = (sums[d.video[rows]] - z) / (count - 1)
        _, E2, P2, _ = fit_nullspace(erase(z, mean, E, P), others, group, clip_dims, keep_means=False)
        E, P = chain(E, P, E2, P2)
    # float32 clip sums in training against float64 here
    np.testing.assert_allclose(model.erase_dir.numpy(), E, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model.erase_pattern.numpy(), P, rtol=1e-4, atol=1e-6)


def test_chained_eraser_makes_both_sets_of_variates_constant() -> None:
    from pipeline.adapter.nullspace import chain, erase, fit_nullspace

    rng = np.random.default_rng(0)
    z = rng.standard_normal((400, 12))
    group = rng.integers(3, size=400)
    s1, s2 = z[:, :3] + 0.3 * rng.standard_normal((400, 3)), z[:, 3:6] + 0.3 * rng.standard_normal((400, 3))
    mean, E1, P1, _ = fit_nullspace(z, s1, group, 2, keep_means=False)
    _, E2, P2, _ = fit_nullspace(erase(z, mean, E1, P1), s2, group, 2, keep_means=False)
    E, P = chain(E1, P1, E2, P2)
    out = erase(z, mean, E, P)
    np.testing.assert_allclose(out @ E1, np.broadcast_to((out @ E1)[:1], (400, 2)), atol=1e-9)
    np.testing.assert_allclose(out @ E2, np.broadcast_to((out @ E2)[:1], (400, 2)), atol=1e-9)
    np.testing.assert_allclose(out, erase(erase(z, mean, E1, P1), mean, E2, P2), atol=1e-9)
