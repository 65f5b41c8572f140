"""A learned privacy critic, trained against the adapter in alternation (a min-max, SPAct-style).

Shapes: Q queries (adapted clips), D embedding size, H hidden width, P projection size, A attributes.

The eraser and L_H remove what is *linearly* (or weakly, kernel-wise) predictable from a video's static
look; what survives them is read by nonlinear attackers (research record, `make bench-ceiling`). The
critic is itself nonlinear and learned, so the adapter cannot satisfy it with a change the critic has
not seen: each step the critic takes an AdamW step on the detached outputs, then the adapter takes one
to make the updated critic's loss as large as chance (never larger: see `bounded_privacy`).

Two critics, one protocol:

* `LookCritic` (label-free, the default target): a two-tower contrastive matcher. A query is an
  adapted clip; its candidates are the RAW static looks (mean static clip) of the batch's videos of
  the same action; the critic must pick its own video's look (InfoNCE over the candidates). Raw looks
  are a view the adapter does not produce, so it cannot game the target; candidates of one action
  only, so telling the action apart earns nothing and the action is left alone.
* `LabelCritic` (label-informed, `--private-labels`, never the default): an MLP with one softmax head
  per private attribute, trained on the private labels of the training videos. It is the ceiling
  measurement: what an adversarial adapter that knows the labels can do.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _mlp(dim: int, hidden: int, out: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = dim
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.GELU()]
        width = hidden
    layers.append(nn.Linear(width, out))
    return nn.Sequential(*layers)


class _Standardised(nn.Module):
    """Inputs standardised with fixed statistics of the raw training clips (as every attacker does)."""

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    def set_statistics(self, x: torch.Tensor) -> None:
        """Fix the standardisation to the statistics of `x` (N, D)."""
        self.mean.copy_(x.mean(0))
        self.scale.copy_(x.std(0).clamp_min(1e-6))

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale


def same_group_candidates(group: torch.Tensor) -> torch.Tensor:
    """(Q, Q) bool: row i may pick candidate j when they share a group (-1 is a group of its own)."""
    return group[:, None] == group[None, :]


class LookCritic(_Standardised):
    """Contrastive critic: which of the same-action videos' raw looks does an adapted clip come from?"""

    def __init__(self, dim: int, hidden: int = 256, proj: int = 64, tau: float = 0.1) -> None:
        super().__init__(dim)
        self.tau = tau
        self.query = _mlp(dim, hidden, proj, depth=2)
        self.key = _mlp(dim, hidden, proj, depth=1)

    def loss(self, z: torch.Tensor, look: torch.Tensor, group: torch.Tensor) -> tuple[torch.Tensor, float]:
        """InfoNCE of queries `z` (Q, D) against their own raw looks `look` (Q, D), row i's candidates
        being the rows of its `group` (Q,); rows with a single candidate are left out.
        Returns (loss, chance): chance = the mean log(candidates), the loss of a critic that guesses."""
        allowed = same_group_candidates(group)  # (Q, Q)
        keep = allowed.sum(1) >= 2
        if int(keep.sum()) == 0:
            return z.sum() * 0.0, 0.0
        q = F.normalize(self.query(self.standardise(z)), dim=1)  # (Q, P)
        k = F.normalize(self.key(self.standardise(look)), dim=1)  # (Q, P)
        logits = (q @ k.t() / self.tau).masked_fill(~allowed, float("-inf"))  # (Q, Q)
        target = torch.arange(len(z), device=z.device)
        loss = F.cross_entropy(logits[keep], target[keep])
        chance = float(allowed[keep].sum(1).double().log().mean())
        return loss, chance


class LabelCritic(_Standardised):
    """Label-informed critic: one softmax head per private attribute over a shared MLP trunk."""

    def __init__(self, dim: int, classes: tuple[int, ...], hidden: int = 256) -> None:
        super().__init__(dim)
        self.trunk = nn.Sequential(_mlp(dim, hidden, hidden, depth=1), nn.GELU())
        self.heads = nn.ModuleList(nn.Linear(hidden, max(c, 1)) for c in classes)

    def loss(self, z: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Mean over attributes of the cross-entropy of `z` (Q, D) against `labels` (Q, A), -1 =
        unknown. Returns (loss, chance): chance = the mean entropy of each attribute's labels in the
        batch, the loss of a critic that predicts their frequencies."""
        h = self.trunk(self.standardise(z))  # (Q, H)
        terms, chances = [], []
        for a, head in enumerate(self.heads):
            known = labels[:, a] >= 0
            if int(known.sum()) < 2:
                continue
            y = labels[known, a]
            terms.append(F.cross_entropy(head(h[known]), y))
            p = torch.bincount(y).double() / len(y)
            p = p[p > 0]
            chances.append(float(-(p * p.log()).sum()))
        if not terms:
            return z.sum() * 0.0, 0.0
        return torch.stack(terms).mean(), sum(chances) / len(chances)
