"""Loss terms of the adapter objective; each is a small function on tensors, tested on golden values.

Shapes: N pairs/clips, D embedding size, V videos, L clips per video (padded), C classes.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """SimCLR NT-Xent: `z1`, `z2` (N, D) are N positive pairs; every other of the 2N views is a negative.

    Cosine similarity / `tau`; the mean over all 2N anchors of -log softmax(positive). Scalar.
    """
    N = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2N, D)
    sim = z @ z.t() / tau  # (2N, 2N)
    sim = sim.masked_fill(torch.eye(2 * N, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(N, 2 * N), torch.arange(N)]).to(z.device)  # (2N,)
    return F.cross_entropy(sim, target)


def nt_xent_chance(n_pairs: int) -> float:
    """NT-Xent when every view is equally similar to every other: log(2N - 1)."""
    return math.log(2 * n_pairs - 1)


def info_nce(query: torch.Tensor, keys: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """One-directional InfoNCE: `query` (N, D) row i should pick `keys` (N, D) row i. Scalar."""
    sim = F.normalize(query, dim=1) @ F.normalize(keys, dim=1).t() / tau  # (N, N)
    return F.cross_entropy(sim, torch.arange(query.shape[0], device=query.device))


def bounded_privacy(loss: torch.Tensor, chance: float) -> torch.Tensor:
    """The quantity to MAXIMISE for a matching loss, capped at its chance value: min(loss, chance).

    Beyond chance, pairs become anti-similar, which is itself a fingerprint; capping removes any
    reward for it and keeps the maximisation bounded.
    """
    return torch.clamp(loss, max=chance)


def _rbf_gram(x: torch.Tensor) -> torch.Tensor:
    """Centred Gaussian Gram matrix of `x` (N, D), bandwidth = median pairwise distance: (N, N)."""
    d2 = torch.cdist(x, x).pow(2)  # (N, N)
    sigma2 = d2.detach()[d2.detach() > 0].median().clamp(min=1e-6)
    k = torch.exp(-d2 / sigma2)
    return k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()


def kernel_dependence(z: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Normalised HSIC (RBF-kernel CKA) between `z` (N, D) and `s` (N, E), in [0, 1]; 0 = independent."""
    kz, ks = _rbf_gram(z), _rbf_gram(s)
    return (kz * ks).sum() / ((kz * kz).sum().sqrt() * (ks * ks).sum().sqrt() + 1e-12)


def within_groups(x: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """`x` (N, D) minus the mean of its group (N,) over the batch: what varies inside a group."""
    onehot = (group[:, None] == group[None, :]).to(x.dtype)  # (N, N)
    return x - onehot @ x / onehot.sum(1, keepdim=True)


def latent_consistency(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L_LC: mean squared error between cached embeddings `x` (N, D) and adapter outputs `y` (N, D)."""
    return F.mse_loss(y, x)


def action_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of `logits` (N, C) against `labels` (N,); label -1 = unlabelled (ignored).

    0 when no clip is labelled.
    """
    keep = labels >= 0
    if not bool(keep.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[keep], labels[keep])


def temporal_detection_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-clip cross-entropy over C classes + background on clip sequences of untrimmed videos.

    `logits` (V, L, C+1), `labels` (V, L) in [0, C] (C = background), -1 = padding (masked).
    """
    return action_ce(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


def anomaly_mil_ranking(
    scores: torch.Tensor,
    mask: torch.Tensor,
    abnormal: torch.Tensor,
    smoothness: float = 8e-5,
    sparsity: float = 8e-5,
    margin: float = 1.0,
) -> torch.Tensor:
    """Multiple-instance ranking (Sultani et al. 2018) over bags of clip scores in [0, 1].

    `scores` (V, L), `mask` (V, L) True on real clips, `abnormal` (V,) bool. Hinge
    max(0, margin - max(abnormal bag) + max(normal bag)) averaged over all (abnormal, normal) pairs,
    plus, per abnormal bag (averaged), `smoothness`·Σ(s_t - s_t+1)² + `sparsity`·Σ s_t. 0 without pairs.
    """
    neg_inf = torch.finfo(scores.dtype).min
    peak = scores.masked_fill(~mask, neg_inf).amax(1)  # (V,)
    pos, neg = peak[abnormal], peak[~abnormal]
    if pos.numel() == 0 or neg.numel() == 0:
        return scores.sum() * 0.0
    hinge = F.relu(margin - pos[:, None] + neg[None, :]).mean()
    s, m = scores[abnormal], mask[abnormal]  # (Va, L)
    both = m[:, 1:] & m[:, :-1]
    smooth = ((s[:, 1:] - s[:, :-1]) ** 2 * both).sum(1).mean()
    sparse = (s * m).sum(1).mean()
    return hinge + smoothness * smooth + sparsity * sparse


def total_loss(
    *,
    lc: torch.Tensor,
    task: torch.Tensor,
    privacy: torch.Tensor,
    w_lc: float,
    w_task: float,
    w_privacy: float,
) -> torch.Tensor:
    """L = ω_LC·L_LC + ω_T·L_T − ω_B·L_B (the adapter minimises L, so it maximises L_B)."""
    return w_lc * lc + w_task * task - w_privacy * privacy
