"""Deterministic probe fitting: planted signal recovered, noise at chance, same seed → same bits."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from pipeline.probes.config import FitConfig
from pipeline.probes.fit import AdamW, Standardiser, class_weights, fit_linear, fit_mlp, fit_probe
from pipeline.probes.inputs import ProbeError


def planted(
    seed: int, n: int, signal: float, classes: int = 4, dim: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Class = a fixed random direction (scaled by ``signal``) + unit Gaussian noise, with an offset and
    scale per feature that standardisation has to undo."""
    directions = np.random.default_rng(99).normal(size=(classes, dim))
    rng = np.random.default_rng(seed)
    y = rng.integers(classes, size=n)
    x = signal * directions[y] / np.sqrt(dim) * 3 + rng.normal(size=(n, dim))
    return (x * np.linspace(0.1, 10, dim) + 5).astype(np.float32), y


@pytest.mark.parametrize("fit", [fit_linear, partial(fit_mlp, hidden=64)])
def test_probe_recovers_a_planted_signal_and_not_noise(fit) -> None:  # type: ignore[no-untyped-def]
    x, y = planted(0, 600, signal=2.0)
    xt, yt = planted(1, 400, signal=2.0)
    assert (fit(x, y).predict(xt) == yt).mean() > 0.95
    x, y = planted(0, 600, signal=0.0)
    xt, yt = planted(1, 400, signal=0.0)
    assert abs((fit(x, y).predict(xt) == yt).mean() - 0.25) < 0.07


def test_same_seed_same_bits_other_seed_differs() -> None:
    x, y = planted(0, 300, signal=0.5)
    a = fit_mlp(x, y, hidden=32, steps=50, seed=3).predict_proba(x)
    b = fit_mlp(x, y, hidden=32, steps=50, seed=3).predict_proba(x)
    c = fit_mlp(x, y, hidden=32, steps=50, seed=4).predict_proba(x)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_fitting_leaves_global_torch_state_alone() -> None:
    x, y = planted(0, 100, signal=1.0)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    fit_linear(x, y, steps=5)
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.rand(3), expected)


def test_probe_outputs_shapes_and_probabilities() -> None:
    x, y = planted(0, 200, signal=1.0)
    probe = fit_probe(x, y, FitConfig(kind="mlp", hidden=16, steps=20), num_classes=6)
    proba = probe.predict_proba(x[:7])
    assert proba.shape == (7, 6) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert probe.predict(x[:7]).shape == (7,)
    assert probe.logits(x[:7]).shape == (7, 6)


def test_balanced_weights_help_the_minority_class() -> None:
    x, y = planted(0, 1000, signal=0.4, classes=2)
    keep = (y == 0) | (np.arange(len(y)) % 10 == 0)  # class 1 kept at ~10 %
    x, y = x[keep], y[keep]
    xt, yt = planted(1, 1000, signal=0.4, classes=2)
    recall = [(fit_linear(x, y, balanced=b).predict(xt)[yt == 1] == 1).mean() for b in (False, True)]
    assert recall[1] > recall[0]
    np.testing.assert_allclose(class_weights(np.array([0, 0, 0, 1]), 3).numpy(), [4 / 6, 2, 0])


def test_standardiser_uses_train_statistics_and_survives_constant_features() -> None:
    x = np.array([[1.0, 5.0], [3.0, 5.0]], np.float32)
    s = Standardiser.fit(x)
    np.testing.assert_allclose(s(x).numpy(), [[-1, 0], [1, 0]])
    with pytest.raises(ProbeError, match="expected features"):
        s(np.zeros((2, 3), np.float32))


def test_bad_labels_are_refused() -> None:
    x, y = planted(0, 10, signal=1.0)
    with pytest.raises(ProbeError, match=r"labels must lie in \[0, 2\)"):
        fit_probe(x, y, FitConfig(), num_classes=2)
    with pytest.raises(ProbeError, match="need x"):
        fit_probe(x, y[:5], FitConfig())


def test_adamw_matches_a_numpy_reference() -> None:
    """Decoupled weight decay, bias-corrected moments (Loshchilov & Hutter; torch.optim.AdamW)."""
    rng = np.random.default_rng(0)
    w0, grads = rng.normal(size=3), rng.normal(size=(4, 3))
    p = torch.nn.Parameter(torch.tensor(w0))
    opt = AdamW([p], weight_decay=0.1)
    w, m, v = w0.copy(), np.zeros(3), np.zeros(3)
    for t, (g, lr) in enumerate(zip(grads, [0.1, 0.05, 0.02, 0.01], strict=True), start=1):
        p.grad = torch.tensor(g)
        opt.step(lr)
        w = w * (1 - lr * 0.1)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g**2
        w = w - lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        assert p.grad is None
    np.testing.assert_allclose(p.detach().numpy(), w, rtol=1e-12)
