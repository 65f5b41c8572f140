"""Co-training task heads, trained jointly with the adapter (design §2, L_T).

Shapes: B clips, D embedding size, V videos, L clips per video (padded), C classes.
"""

from __future__ import annotations

import torch
from torch import nn


class TaskHeads(nn.Module):
    """Linear action head; temporal-conv detection head (C+1 with background); MLP anomaly scorer."""

    def __init__(self, dim: int, actions: int, detection_classes: int) -> None:
        super().__init__()
        self.action = nn.Linear(dim, max(actions, 1))
        self.detection = nn.Conv1d(dim, detection_classes + 1, kernel_size=3, padding=1)
        self.anomaly = nn.Sequential(nn.Linear(dim, 64), nn.ReLU(), nn.Linear(64, 1))

    def action_logits(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, C)."""
        out: torch.Tensor = self.action(z)
        return out

    def detection_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Padded clip sequences (V, L, D) -> (V, L, C+1)."""
        out: torch.Tensor = self.detection(z.transpose(1, 2)).transpose(1, 2)
        return out

    def anomaly_scores(self, z: torch.Tensor) -> torch.Tensor:
        """(V, L, D) -> scores in [0, 1] (V, L)."""
        return torch.sigmoid(self.anomaly(z).squeeze(-1))
