"""Self-supervised linear nullspace: the output directions most predictable from a video's static look.

Fitted in closed form (regularised CCA) between anonymised motion clips `z` (N, D) and the RAW static
embedding of their video `s` (N, D), after removing each action's mean from both: static frames show
the action's poses, and only what varies *within* an action (who, where) should be removed. No private
label is used. The adapter's last layer erases these k canonical variates with the least change in
the whitened metric (LEACE-style, Belrose et al. 2023): z <- z - (z - mu) E P^T, where the columns of E
are the canonical directions (a_i^T z are the variates) and those of P their patterns Caa a_i; after it,
every a_i^T z is constant.
"""

from __future__ import annotations

import numpy as np


def _within(x: np.ndarray, group: np.ndarray) -> np.ndarray:
    """`x` (N, D) minus its mean, then minus each group's mean."""
    out: np.ndarray = x - x.mean(0)
    for g in np.unique(group):
        rows = group == g
        out[rows] -= out[rows].mean(0)
    return out


def fit_nullspace(
    z: np.ndarray, s: np.ndarray, group: np.ndarray, k: int, reg: float = 1e-3
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top-k canonical directions of `z` w.r.t. `s` within `group` (N,), all float64: mean mu (D,),
    directions E (D, k), patterns P (D, k) and the canonical correlations (k,). Apply in float64."""
    z64, s64 = z.astype(np.float64), s.astype(np.float64)
    A, B = _within(z64, group), _within(s64, group)  # (N, D), (N, E)
    n = len(A)
    Caa, Cbb, Cab = A.T @ A / n, B.T @ B / n, A.T @ B / n
    Caa += reg * np.trace(Caa) / len(Caa) * np.eye(len(Caa))
    Cbb += reg * np.trace(Cbb) / len(Cbb) * np.eye(len(Cbb))
    Wa = np.linalg.inv(np.linalg.cholesky(Caa)).T  # whitening: Wa^T Caa Wa = I
    Wb = np.linalg.inv(np.linalg.cholesky(Cbb)).T
    U, corr, _ = np.linalg.svd(Wa.T @ Cab @ Wb)
    k = min(k, len(corr))
    E = Wa @ U[:, :k]  # (D, k): a_i, the canonical directions
    P = Caa @ E  # (D, k): their patterns; E^T P = I
    return z64.mean(0), E, P, corr[:k]
