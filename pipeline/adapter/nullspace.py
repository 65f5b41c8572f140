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


def centre_within(x: np.ndarray, group: np.ndarray) -> np.ndarray:
    """`x` (N, D) minus its mean, then minus each group's mean."""
    out: np.ndarray = x - x.mean(0)
    for g in np.unique(group):
        rows = group == g
        out[rows] -= out[rows].mean(0)
    return out


def _mean_complement(z: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Orthonormal basis (D, D - r) of the complement of the span of the labelled groups' mean offsets
    (group -1 = unlabelled is left out); the identity when fewer than two groups are labelled."""
    labelled = [g for g in np.unique(group) if g >= 0]
    D = z.shape[1]
    if len(labelled) < 2:
        return np.eye(D)
    overall = z[group >= 0].mean(0)
    offsets = np.stack([z[group == g].mean(0) - overall for g in labelled])  # (G, D)
    U, sv, _ = np.linalg.svd(offsets.T, full_matrices=True)  # (D, D)
    rank = int((sv > 1e-9 * max(sv.max(), 1e-30)).sum())
    return U[:, rank:]


def fit_nullspace(
    z: np.ndarray, s: np.ndarray, group: np.ndarray, k: int, reg: float = 1e-3, keep_means: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top-k canonical directions of `z` w.r.t. `s` within `group` (N,), all float64: mean mu (D,),
    directions E (D, k), patterns P (D, k) and the canonical correlations (k,). Apply in float64.

    `keep_means`: the directions are searched only orthogonal to the groups' mean offsets, so erasing
    leaves every group's (action's) mean exactly where it was: what separates actions linearly stays.
    """
    z64, s64 = z.astype(np.float64), s.astype(np.float64)
    A, B = centre_within(z64, group), centre_within(s64, group)  # (N, D), (N, E)
    n = len(A)
    Q = _mean_complement(z64, group) if keep_means else np.eye(z.shape[1])  # (D, D')
    Aq = A @ Q  # (N, D')
    Caa, Cbb, Cab = Aq.T @ Aq / n, B.T @ B / n, Aq.T @ B / n
    Caa += reg * np.trace(Caa) / len(Caa) * np.eye(len(Caa))
    Cbb += reg * np.trace(Cbb) / len(Cbb) * np.eye(len(Cbb))
    Wa = np.linalg.inv(np.linalg.cholesky(Caa)).T  # whitening: Wa^T Caa Wa = I
    Wb = np.linalg.inv(np.linalg.cholesky(Cbb)).T
    U, corr, _ = np.linalg.svd(Wa.T @ Cab @ Wb)
    k = min(k, len(corr))
    E = Q @ (Wa @ U[:, :k])  # (D, k): a_i, the canonical directions, orthogonal to the group means
    full = A.T @ A / n
    full += reg * np.trace(full) / len(full) * np.eye(len(full))
    P = full @ E  # (D, k): their patterns; E^T P = I (up to the regulariser)
    P = P @ np.linalg.inv(E.T @ P)  # exact E^T P = I: after erasing, every a_i^T z is constant
    labelled = group >= 0
    mu = z64[labelled].mean(0) if keep_means and labelled.any() else z64.mean(0)
    return mu, E, P, corr[:k]


def erase(z: np.ndarray, mu: np.ndarray, directions: np.ndarray, patterns: np.ndarray) -> np.ndarray:
    """`z` (N, D) with the variates directions^T z made constant: z - (z - mu) E P^T (float64)."""
    z64 = z.astype(np.float64)
    out: np.ndarray = z64 - ((z64 - mu) @ directions) @ patterns.T
    return out


def chain(e1: np.ndarray, p1: np.ndarray, e2: np.ndarray, p2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One eraser (E, P) doing eraser (e1, p1) and then (e2, p2), the second fitted on the first's output.

    z1 = z - (z - mu) e1 p1^T, z2 = z1 - (z1 - mu) e2 p2^T = z - (z - mu) [e1, (I - e1 p1^T) e2] [p1, p2]^T.
    The first variates stay erased: p2 is a pattern in z1's covariance, which is 0 along e1, so e1^T p2 = 0.
    """
    return np.concatenate([e1, e2 - e1 @ (p1.T @ e2)], 1), np.concatenate([p1, p2], 1)
