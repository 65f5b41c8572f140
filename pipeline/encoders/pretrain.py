"""Pretraining of the `tiny` reference encoder, in the spirit of video foundation models.

Two objectives, neither of which looks at a private attribute:
* supervised action classification of the pooled embedding (a linear head, cross-entropy);
* token-level reconstruction: every output token reconstructs the mean colour image of its own
  space-time patch (a light linear decoder, MSE), the pooled-frame analogue of masked
  autoencoding. It is what keeps general visual information — and so, as in real encoders,
  appearance — in the tokens, and so in their mean.

Static clips (one frame repeated) are mixed in with the reconstruction loss only, so the encoder has
seen what the privacy loss will later feed it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pipeline.data.transforms import batch_to_model_input
from pipeline.encoders.tiny import TINY_CONFIG, TinyVideoEncoder, build_tiny_encoder, tiny_preprocess


@dataclass(frozen=True)
class PretrainConfig:
    epochs: int = 8
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    recon_weight: float = 4.0
    static_fraction: float = 0.25
    recon_size: int = 4  # each token reconstructs a recon_size x recon_size colour image of its patch
    seed: int = 0


def patch_targets(x: torch.Tensor, grid: tuple[int, int, int], size: int) -> torch.Tensor:
    """Mean colour image of every token's space-time patch: `[B, 3, T, H, W]` -> `[B, N, 3*size*size]`."""
    t, h, w = grid
    pooled = F.adaptive_avg_pool3d(x, (t, h * size, w * size))  # (B, 3, t, h*s, w*s)
    b = x.shape[0]
    patches = pooled.view(b, 3, t, h, size, w, size).permute(0, 2, 3, 5, 1, 4, 6)
    return patches.reshape(b, t * h * w, 3 * size * size)


class PretrainModel(nn.Module):
    def __init__(self, encoder: TinyVideoEncoder, num_actions: int, recon_size: int) -> None:
        super().__init__()
        dim = int(TINY_CONFIG["dim"])
        self.encoder = encoder
        self.action_head = nn.Linear(dim, num_actions)
        self.decoder = nn.Linear(dim, 3 * recon_size * recon_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.encoder(x)  # (B, N, D)
        return self.action_head(tokens.mean(1)), self.decoder(tokens)


def token_grid(frames: int, size: int) -> tuple[int, int, int]:
    return frames // 8, size // 16, size // 16


def pretrain_tiny(
    clips: np.ndarray,
    labels: np.ndarray,
    static_frames: np.ndarray,
    num_actions: int,
    config: PretrainConfig = PretrainConfig(),
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> TinyVideoEncoder:
    """Train the tiny encoder. `clips` uint8 `[N, T, H, W, 3]` with action `labels` `[N]`;
    `static_frames` uint8 `[M, H, W, 3]` become static clips (reconstruction only)."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    frames = clips.shape[1]
    grid = token_grid(frames, clips.shape[2])
    preprocess = tiny_preprocess()
    model = PretrainModel(build_tiny_encoder(), num_actions, config.recon_size)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n_static = int(config.static_fraction * len(clips))
    steps_per_epoch = (len(clips) + n_static) // config.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.15
    )
    for epoch in range(config.epochs):
        model.train()
        static_pick = rng.choice(len(static_frames), size=n_static, replace=len(static_frames) < n_static)
        order = rng.permutation(len(clips) + n_static)
        totals = {"ce": 0.0, "recon": 0.0, "acc": 0.0}
        seen = motion_seen = 0
        for step in range(steps_per_epoch):
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            motion_idx, static_idx = idx[idx < len(clips)], static_pick[idx[idx >= len(clips)] - len(clips)]
            static = np.repeat(static_frames[static_idx][:, None], frames, axis=1)
            batch = torch.from_numpy(np.concatenate([clips[motion_idx], static]))
            y = torch.from_numpy(labels[motion_idx]).long()
            x = batch_to_model_input(batch, preprocess)
            logits, recon = model(x)
            ce = F.cross_entropy(logits[: len(motion_idx)], y)
            rec = F.mse_loss(recon, patch_targets(x, grid, config.recon_size))
            loss = ce + config.recon_weight * rec
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            totals["ce"] += ce.item() * len(idx)
            totals["recon"] += rec.item() * len(idx)
            totals["acc"] += float((logits[: len(motion_idx)].argmax(1) == y).float().sum())
            seen += len(idx)
            motion_seen += len(motion_idx)
        if on_epoch is not None:
            on_epoch(
                epoch,
                {
                    "ce": totals["ce"] / max(seen, 1),
                    "recon": totals["recon"] / max(seen, 1),
                    "acc": totals["acc"] / max(motion_seen, 1),
                },
            )
    return model.encoder.eval()
