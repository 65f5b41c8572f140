"""The closed-form kernel eraser term: its statistic on independent and dependent inputs, its fit, and
that it changes training deterministically and round-trips in the artifact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.adapter import AdapterConfig, TrainConfig, anonymize_array, train_adapter
from pipeline.adapter.config import default_objective
from pipeline.adapter.kernel import (
    Fourier,
    KernelEraser,
    KernelFit,
    batch_correlation,
    heldout_dependence,
    kernel_cca,
    kernel_loss,
)
from pipeline.adapter.synthetic import PlantedData
from tests.pipeline.adapter_support import D, small_cfg, small_planted


@pytest.fixture(scope="module")
def planted() -> PlantedData:
    return small_planted()


def _pairs(n: int, dependent: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`x` (n, 4) and `y` (n, 3); dependent: y is an even (so linearly uncorrelated) function of x."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4))
    source = x if dependent else rng.standard_normal((n, 4))
    y = np.stack([source[:, 0] ** 2, np.abs(source[:, 1]), source[:, 2] * source[:, 3]], 1)
    return x, y + 0.1 * rng.standard_normal(y.shape)


def test_the_statistic_is_near_zero_for_independent_inputs_and_large_for_dependent_ones() -> None:
    group = np.zeros(2000, dtype=np.int64)
    fit_rows = np.arange(1000)
    x, y = _pairs(2000, dependent=False)
    independent = heldout_dependence(x, y, group, fit_rows, dims=4, features=256)
    x, y = _pairs(2000, dependent=True)
    dependent = heldout_dependence(x, y, group, fit_rows, dims=4, features=256)
    linear = np.corrcoef(np.concatenate([x, y], 1).T)[:4, 4:]
    assert np.abs(linear).max() < 0.1  # no linear eraser would see this dependence
    assert independent < 0.01
    assert dependent > 0.3


def test_the_statistic_ignores_what_varies_between_groups_only() -> None:
    """Within groups: a look that only tells the group (the action) is not a dependence."""
    rng = np.random.default_rng(0)
    group = rng.integers(0, 4, 2000)
    x = group[:, None] + 0.5 * rng.standard_normal((2000, 3))
    y = (group[:, None] ** 2).astype(np.float64) + 0.5 * rng.standard_normal((2000, 3))
    assert heldout_dependence(x, y, group, np.arange(1000), dims=3, features=128) < 0.01


def test_kernel_cca_gives_unit_variance_variates_and_sorted_correlations() -> None:
    x, y = _pairs(500, dependent=True)
    rng = np.random.default_rng(0)
    phi, psi = Fourier.draw(x, 64, rng), Fourier.draw(y, 64, rng)
    group = np.zeros(500, dtype=np.int64)
    A, B, corr = kernel_cca(phi(x), psi(y), group, 5, reg=0.1)
    assert A.shape == (64, 5) and B.shape == (64, 5)
    np.testing.assert_allclose((phi(x) @ A).std(0), 1.0, rtol=1e-6)
    np.testing.assert_allclose((psi(y) @ B).std(0), 1.0, rtol=1e-6)
    assert np.all(np.diff(corr) <= 1e-12) and corr[-1] >= 0 and corr[0] <= 1


def test_the_torch_features_are_the_numpy_ones_and_the_loss_has_a_gradient() -> None:
    x, y = _pairs(300, dependent=True)
    group = np.zeros(300, dtype=np.int64)
    fit = KernelFit.fit(x, y, group, dims=3, features=64, reg=0.1, rng=np.random.default_rng(0))
    xt = torch.tensor(x, requires_grad=True)
    np.testing.assert_allclose(fit.phi.torch(xt).detach().numpy(), fit.phi(x), atol=1e-12)
    targets = torch.as_tensor(fit.look_variates(y))
    loss = kernel_loss(fit, xt, targets, torch.as_tensor(group))
    u, v = fit.variates(x, y)
    expected = batch_correlation(torch.as_tensor(u), torch.as_tensor(v), torch.as_tensor(group))
    assert float(loss.detach()) == pytest.approx(float(expected.pow(2).mean()))
    assert float(loss.detach()) > 0.1
    loss.backward()
    assert xt.grad is not None and float(xt.grad.abs().sum()) > 0


def test_the_kernel_term_is_computed_changes_training_and_is_deterministic(planted: PlantedData) -> None:
    plain = train_adapter(planted.data, small_cfg(default_objective()))
    obj = default_objective().model_copy(update={"kernel": 10.0, "kernel_dims": 4, "kernel_features": 64})
    with_kernel = train_adapter(planted.data, small_cfg(obj))
    assert "kernel" not in plain.history[-1]
    assert with_kernel.history[-1]["kernel"] > 0 and 0 < with_kernel.history[-1]["kernel_corr"] <= 1
    z = anonymize_array(with_kernel.model, planted.data.motion)
    assert not np.array_equal(anonymize_array(plain.model, planted.data.motion), z)
    again = train_adapter(planted.data, small_cfg(obj))  # deterministic under a fixed seed
    np.testing.assert_array_equal(z, anonymize_array(again.model, planted.data.motion))
    motion_only = train_adapter(planted.data, small_cfg(obj.model_copy(update={"kernel_static": False})))
    assert not np.array_equal(z, anonymize_array(motion_only.model, planted.data.motion))


def test_the_kernel_term_is_off_by_default() -> None:
    assert default_objective().kernel == 0


def test_the_kernel_eraser_leaves_its_variates_uncorrelated_within_groups() -> None:
    rng = np.random.default_rng(0)
    group = rng.integers(0, 3, 800)
    x, y = _pairs(800, dependent=True)
    x = x + group[:, None]  # group offsets, which the eraser must leave alone
    eraser = KernelEraser.build(x, y, group, dims=4, features=128, reg=0.1, rng=np.random.default_rng(1))
    out = eraser(x)
    v = eraser.fit.phi(x) @ eraser.fit.A
    from pipeline.adapter.nullspace import centre_within

    cross = centre_within(v, group).T @ centre_within(out, group) / len(x)
    assert np.abs(cross).max() < 1e-10
    means = [np.abs(out[group == g].mean(0) - x[group == g].mean(0)).max() for g in range(3)]
    assert max(means) < 0.2  # the groups' means barely move
    # its limit: it removes what its variates explain LINEARLY in x; here y is even in x, so are the
    # variates, uncorrelated with x: the dependence stays
    before = heldout_dependence(x, y, group, np.arange(400), dims=4, features=128)
    assert heldout_dependence(out, y, group, np.arange(400), dims=4, features=128) > 0.8 * before
    # a dependence partly linear in x0 does go:
    shifted = x + 0.5 * np.sin(2 * x[:, :1])  # a dependence that is partly linear in x0
    eraser = KernelEraser.build(
        shifted, np.sin(2 * x[:, :1]), group, dims=4, features=128, reg=0.1, rng=np.random.default_rng(1)
    )
    before = heldout_dependence(shifted, np.sin(2 * x[:, :1]), group, np.arange(400), dims=4, features=128)
    after = heldout_dependence(
        eraser(shifted), np.sin(2 * x[:, :1]), group, np.arange(400), dims=4, features=128
    )
    assert after < 0.5 * before


def test_a_model_with_a_kernel_eraser_is_batch_independent_and_passes_through_until_fitted() -> None:
    cfg = AdapterConfig(dim=D, layers=1, heads=2, tokens=2, width=16, erase_dims=4, kernel_erase_dims=3)
    from pipeline.adapter.model import ClipAdapter

    torch.manual_seed(0)
    model = ClipAdapter(cfg)
    x = torch.randn(70, D)
    np.testing.assert_array_equal(anonymize_array(model, x.numpy()), x.numpy())  # identity start
    rng = np.random.default_rng(0)
    eraser = KernelEraser.build(
        x.double().numpy(), rng.standard_normal((70, 5)), np.zeros(70, np.int64), dims=3,
        features=cfg.kernel_erase_features, reg=0.1, rng=rng,
    )  # fmt: skip
    model.set_kernel_eraser(**{k: torch.as_tensor(v) for k, v in eraser.buffers().items()})
    out = anonymize_array(model, x.numpy())
    np.testing.assert_allclose(out, eraser(x.double().numpy()), atol=1e-5)
    np.testing.assert_array_equal(out[5:6], anonymize_array(model, x[5:6].numpy()))
    np.testing.assert_array_equal(out[::-1], anonymize_array(model, x.numpy()[::-1].copy()))


def test_training_with_the_kernel_eraser_changes_it_and_is_deterministic(planted: PlantedData) -> None:
    adapter = AdapterConfig(dim=D, layers=1, heads=2, tokens=2, width=16, erase_dims=4, kernel_erase_dims=4)
    cfg = TrainConfig(adapter=adapter, objective=default_objective(), epochs=2, batch_size=64, lr=1e-2)
    plain = train_adapter(planted.data, small_cfg(default_objective()))
    erased = train_adapter(planted.data, cfg)
    assert "kernel_erased_corr" not in plain.history[-1] and erased.history[-1]["kernel_erased_corr"] > 0
    assert erased.history[erased.best_epoch]["kernel_erased_corr_final"] > 0  # refitted once selected
    z = anonymize_array(erased.model, planted.data.motion)
    assert not np.array_equal(anonymize_array(plain.model, planted.data.motion), z)
    again = train_adapter(planted.data, cfg)
    np.testing.assert_array_equal(z, anonymize_array(again.model, planted.data.motion))
