"""Intervals by a bootstrap over people: resample the identities (or videos, when there are none) of the
scored test units with replacement and recompute the figure; the model is fitted once, only the scoring
is resampled. Every figure of one attribute uses the same resamples (same seed, same groups), so the
worst over a panel can be taken resample by resample.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from pipeline.probes.inputs import ProbeError, is_missing


def unit_groups(units: Sequence[str], identity: Mapping[str, object] | None) -> tuple[np.ndarray, str]:
    """Group index (U,) of each test unit's video id, by ``identity[video]`` when every unit has one,
    else by video; and what was resampled (``"identities"`` or ``"videos"``)."""
    if identity and all(not is_missing(identity.get(u)) for u in units):
        keys, by = [str(identity[u]) for u in units], "identities"
    else:
        keys, by = list(units), "videos"
    _, group = np.unique(np.array(keys, dtype=str), return_inverse=True)
    return group.astype(np.int64), by


def resample_rows(group: np.ndarray, resamples: int, seed: int) -> list[np.ndarray]:
    """``resamples`` row-index arrays: draw as many groups as there are, with replacement, and take every
    row of each drawn group (a group drawn twice counts twice)."""
    order = np.argsort(group, kind="stable")
    num = int(group.max()) + 1 if len(group) else 0
    bounds = np.searchsorted(group[order], np.arange(num + 1))
    members = [order[bounds[g] : bounds[g + 1]] for g in range(num)]
    rng = np.random.default_rng(seed)
    return [np.concatenate([members[g] for g in rng.integers(0, num, num)]) for _ in range(resamples)]


def resampled(statistic: Callable[[np.ndarray], float], draws: Sequence[np.ndarray]) -> np.ndarray:
    """``statistic(rows)`` for every draw (R,); NaN where the resample cannot be scored (a class missing)."""
    out = np.full(len(draws), np.nan)
    for i, rows in enumerate(draws):
        try:
            out[i] = statistic(rows)
        except ProbeError:
            continue
    return out


def interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the finite ``values`` at ``level``; (NaN, NaN) when fewer than 10 are."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if len(finite) < 10:
        return (float("nan"), float("nan"))
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return (float(low), float(high))


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float],
    group: np.ndarray,
    resamples: int,
    seed: int,
    level: float = 0.95,
) -> tuple[float, float]:
    """`interval` of ``statistic(rows)`` over ``resamples`` draws of the groups (`resample_rows`)."""
    return interval(resampled(statistic, resample_rows(group, resamples, seed)), level)
