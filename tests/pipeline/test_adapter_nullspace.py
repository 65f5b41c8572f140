"""The self-supervised linear eraser: what it removes, what it keeps."""

from __future__ import annotations

import numpy as np

from pipeline.adapter.nullspace import fit_nullspace


def _planted(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """z (n, 6): dims 0-1 carry the static look `s` (n, 3), dims 2-5 carry `kept` (n, 4), independent of it;
    `group` (n,) shifts z and s by a group mean (an "action" both show)."""
    rng = np.random.default_rng(seed)
    look = rng.standard_normal((n, 2))
    kept = rng.standard_normal((n, 4))
    group = rng.integers(0, 3, n)
    shift = np.eye(3)[group]  # (n, 3)
    z = np.concatenate(
        [look + 0.3 * rng.standard_normal((n, 2)), kept], axis=1
    ) + shift @ rng.standard_normal((3, 6))
    s = np.concatenate([look, rng.standard_normal((n, 1))], axis=1) + shift
    return z.astype(np.float32), s.astype(np.float32), group, kept


def _r2(x: np.ndarray, y: np.ndarray) -> float:
    """R^2 of the least-squares fit y ~ x (with intercept)."""
    xa = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    resid = y - xa @ np.linalg.lstsq(xa, y, rcond=None)[0]
    return float(1 - (resid**2).sum() / ((y - y.mean(0)) ** 2).sum())


def test_eraser_removes_the_static_look_and_keeps_the_rest() -> None:
    z, s, group, kept = _planted()
    mean, E, P, corr = fit_nullspace(z, s, group, k=2, keep_means=False)
    assert E.shape == P.shape == (6, 2) and mean.shape == (6,)
    np.testing.assert_allclose(E.T @ P, np.eye(2), atol=1e-4)
    assert corr[0] > 0.9 and corr[1] > 0.9
    erased = z - (z - mean) @ E @ P.T  # in float64, as the adapter applies it
    np.testing.assert_allclose((erased - mean) @ E, 0.0, atol=1e-9)  # the canonical variates are gone
    onehot = np.eye(3)[group]  # the look is judged given the group: only the group may remain
    look = s[:, :2]
    assert _r2(np.concatenate([z, onehot], 1), look) > 0.9
    assert _r2(np.concatenate([erased, onehot], 1), look) < _r2(onehot, look) + 0.05
    # what is independent of the look survives (given the group, see the next test)
    assert _r2(np.concatenate([erased, onehot], 1), kept) > 0.99


def test_eraser_mostly_keeps_what_groups_share() -> None:
    """Both views show the group (the action): fitted within groups, the eraser does not target it
    (only the group's share along the erased directions goes)."""
    z, s, group, _ = _planted(seed=1)
    mean, E, P, _ = fit_nullspace(z, s, group, k=2, keep_means=False)
    erased = z - (z - mean) @ E @ P.T
    onehot = np.eye(3)[group]
    assert _r2(erased, onehot) > 0.8 * _r2(z, onehot)


def test_keep_means_leaves_every_group_mean_in_place() -> None:
    z, s, group, _ = _planted(seed=2)
    z = z.astype(np.float64)
    mean, E, P, _ = fit_nullspace(z, s, group, k=2, keep_means=True)
    np.testing.assert_allclose(E.T @ P, np.eye(2), atol=1e-9)
    erased = z - (z - mean) @ E @ P.T
    for g in range(3):
        np.testing.assert_allclose(erased[group == g].mean(0), z[group == g].mean(0), atol=1e-9)
    np.testing.assert_allclose((erased - mean) @ E, 0.0, atol=1e-9)  # the variates are still gone
