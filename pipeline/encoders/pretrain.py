"""Pretraining of the `tiny` reference encoder, in the spirit of video foundation models.

Three objectives, none of which looks at a private attribute or at who is in a video:
* supervised action classification of the pooled embedding (a linear head, cross-entropy);
* token-level reconstruction: every token's value reconstructs the mean colour image of its own
  space-time patch (a linear decoder) — the pooled analogue of masked autoencoding, which keeps
  general visual information in the tokens;
* motion-guided reconstruction: the pooled embedding reconstructs the frame around the centre of
  the clip's motion — its colours and a HOG-like texture-energy map, as MaskFeat predicts HOG —
  through an MLP decoder, as motion-guided masking steers VideoMAE towards what moves.
  The centre comes from the pixels alone (temporal deviation from the clip's median frame); it is
  what makes the pooled embedding describe the moving actor — and so, as in real encoders, carry
  their appearance — rather than the cluttered background.

Static clips (one frame repeated) are mixed in with the reconstruction losses only (their motion
centre is taken from the frames around them), so the encoder has seen what the privacy loss will later
feed it. Augmentation: a random 16-frame window of each video, horizontal flips (with the action label
mirrored, e.g. walk_left <-> walk_right).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pipeline.data.transforms import batch_to_model_input
from pipeline.encoders.tiny import TINY_CONFIG, TinyVideoEncoder, build_tiny_encoder, tiny_preprocess


@dataclass(frozen=True)
class PretrainConfig:
    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    clips_per_video: int = 2  # motion clips drawn per video per epoch
    static_fraction: float = 0.25  # static clips per motion clip
    token_recon_weight: float = 1.0
    recon_size: int = 8  # each token reconstructs a recon_size x recon_size colour image of its patch
    actor_recon_weight: float = 6.0
    actor_box: tuple[float, float] = (0.75, 0.30)  # height, width of the motion-centred box / input side
    actor_size: tuple[int, int] = (48, 20)  # the box is resampled to this many pixels (height, width)
    foreground_emphasis: float = 8.0  # actor-box pixel weight = 1 + this * normalised motion energy
    action_weight: float = 0.5
    seed: int = 0


def patch_targets(x: torch.Tensor, grid: tuple[int, int, int], size: int) -> torch.Tensor:
    """Mean colour image of every token's space-time patch: `[B, 3, T, H, W]` -> `[B, N, 3*size*size]`."""
    t, h, w = grid
    pooled = F.adaptive_avg_pool3d(x, (t, h * size, w * size))  # (B, 3, t, h*s, w*s)
    b = x.shape[0]
    patches = pooled.view(b, 3, t, h, size, w, size).permute(0, 2, 3, 5, 1, 4, 6)
    return patches.reshape(b, t * h * w, 3 * size * size)


def median_deviation(frames: torch.Tensor) -> torch.Tensor:
    """Motion energy of uint8 clips `[B, T, H, W, 3]`: the mean absolute deviation of each pixel from the
    clip's median frame (robust to the actor passing through a pixel for a few frames), `[B, 1, H, W]`."""
    gray = frames.float().mean(-1)  # (B, T, H, W)
    return (gray - gray.median(dim=1).values[:, None]).abs().mean(1, keepdim=True)


def smoothed(energy: torch.Tensor, size: int) -> torch.Tensor:
    """`[B, 1, H, W]` box-smoothed over `size` (odd) pixels."""
    return F.avg_pool2d(energy, size, 1, size // 2)


def motion_centre(deviation: torch.Tensor, box: tuple[float, float]) -> torch.Tensor:
    """Centre `[B, 2]` (y, x in pixels) of what moves, from clips' `median_deviation` `[B, 1, H, W]`.

    A mean shift inside a `box`-sized window (fractions of H, W) settles on the largest moving blob
    rather than on camera shake at background edges.
    """
    energy = smoothed(deviation, 5)[:, 0]
    b, h, w = energy.shape
    ys = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    cy, cx = torch.full((b,), h / 2), torch.full((b,), w / 2)
    for step in range(6):
        half_h, half_w = (h, w) if step == 0 else (box[0] * h / 2, box[1] * w / 2)
        inside = ((ys - cy.view(b, 1, 1)).abs() < half_h) & ((xs - cx.view(b, 1, 1)).abs() < half_w)
        weight = energy * inside
        total = weight.sum((1, 2)) + 1e-6
        cy, cx = (weight * ys).sum((1, 2)) / total, (weight * xs).sum((1, 2)) / total
    return torch.stack([cy, cx], 1)


def appearance_maps(frames: torch.Tensor) -> torch.Tensor:
    """Colour and local texture energy of normalised frames: `[B, 3, H, W]` -> `[B, 5, H, W]`.

    The texture channels (mean horizontal and vertical gradient magnitude over 3x3, a HOG-like target
    as in MaskFeat) keep fine patterns that a low-resolution colour target would average away,
    whatever their phase, and tell bands from grids.
    """
    gray = frames.mean(1, keepdim=True)  # (B, 1, H, W)
    gx = F.pad((gray[..., :, 1:] - gray[..., :, :-1]).abs(), (0, 1, 0, 0))
    gy = F.pad((gray[..., 1:, :] - gray[..., :-1, :]).abs(), (0, 0, 0, 1))
    texture = F.avg_pool2d(torch.cat([gx, gy], 1), 3, 1, 1)  # (B, 2, H, W)
    return torch.cat([frames, texture], 1)


def crop_around(
    images: torch.Tensor, centre: torch.Tensor, box: tuple[float, float], size: tuple[int, int]
) -> torch.Tensor:
    """Bilinear crops `[B, C, size]` of `images` `[B, C, H, W]`, `box` (fractions of H, W) around `centre`."""
    b, c, h, w = images.shape
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = box[1], box[0]
    theta[:, 0, 2] = (centre[:, 1] + 0.5) / w * 2 - 1
    theta[:, 1, 2] = (centre[:, 0] + 0.5) / h * 2 - 1
    grid = F.affine_grid(theta, [b, c, *size], align_corners=False)
    return F.grid_sample(images, grid, align_corners=False)


class PretrainModel(nn.Module):
    def __init__(self, encoder: TinyVideoEncoder, num_actions: int, config: PretrainConfig) -> None:
        super().__init__()
        dim = int(TINY_CONFIG["dim"])
        ah, aw = config.actor_size
        self.encoder = encoder
        self.action_head = nn.Linear(dim, num_actions)
        self.token_decoder = nn.Linear(dim, 3 * config.recon_size**2)
        self.actor_decoder = nn.Sequential(
            nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, 5 * ah * aw)
        )  # colour (3) and texture (2) channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        values, weights = self.encoder.values_and_weights(x)  # (B, N, D), (B, N, 1)
        pooled = (values * weights).mean(1)  # (B, D): the encoder's pooled embedding
        return self.action_head(pooled), self.token_decoder(values), self.actor_decoder(pooled)


def token_grid(frames: int, size: int) -> tuple[int, int, int]:
    return frames // 8, size // 16, size // 16


def _draw_batch(
    videos: np.ndarray, n_motion: int, n_static: int, frames: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random items: clips `[B, T, H, W, 3]` (motion first, then static), the motion windows their
    centres come from, the video of each motion clip, and which items are flipped."""
    v, length = videos.shape[:2]
    vid = rng.integers(v, size=n_motion + n_static)
    start = rng.integers(length - frames + 1, size=n_motion + n_static)
    source = np.stack([videos[i, s : s + frames] for i, s in zip(vid, start, strict=True)])  # (B, T, H, W, 3)
    still = source[n_motion + np.arange(n_static), rng.integers(frames, size=n_static)]  # (S, H, W, 3)
    clips = np.concatenate([source[:n_motion], np.repeat(still[:, None], frames, axis=1)])
    flip = rng.random(n_motion + n_static) < 0.5
    clips[flip] = clips[flip, :, :, ::-1]
    source[flip] = source[flip, :, :, ::-1]
    return clips, source, vid[:n_motion], flip


def pretrain_tiny(
    videos: np.ndarray,
    labels: np.ndarray,
    num_actions: int,
    mirror: Sequence[int],
    config: PretrainConfig = PretrainConfig(),
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> TinyVideoEncoder:
    """Train the tiny encoder on uint8 `videos` `[V, F, H, W, 3]` (F >= 16) with action `labels` `[V]`;
    `mirror[a]` is the action that `a` becomes when the video is flipped horizontally."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    frames = int(TINY_CONFIG["frames_per_clip"])
    grid = token_grid(frames, videos.shape[2])
    preprocess = tiny_preprocess()
    mirror_arr = np.asarray(mirror)
    model = PretrainModel(build_tiny_encoder(), num_actions, config)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n_motion = round(config.batch_size / (1 + config.static_fraction))
    n_static = config.batch_size - n_motion
    box = (config.actor_box, config.actor_size)
    steps_per_epoch = config.clips_per_video * len(videos) // n_motion
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.15
    )
    for epoch in range(config.epochs):
        model.train()
        totals = {"ce": 0.0, "token_recon": 0.0, "actor_recon": 0.0, "acc": 0.0}
        for _ in range(steps_per_epoch):
            clips, source, vid, flip = _draw_batch(videos, n_motion, n_static, frames, rng)
            y = torch.from_numpy(np.where(flip[:n_motion], mirror_arr[labels[vid]], labels[vid])).long()
            x = batch_to_model_input(torch.from_numpy(clips), preprocess)  # (B, 3, T, S, S)
            with torch.no_grad():
                deviation = median_deviation(torch.from_numpy(source))  # (B, 1, S, S)
                centre = motion_centre(deviation, config.actor_box)
                actor = crop_around(appearance_maps(x[:, :, frames // 2]), centre, *box).flatten(1)
                energy = crop_around(smoothed(deviation, 9), centre, *box).flatten(1)
                emphasis = energy / energy.amax(1, keepdim=True).clamp_min(1e-6)
                pixel_weight = (1 + config.foreground_emphasis * emphasis).repeat(1, 5)
                pixel_weight = pixel_weight / pixel_weight.mean(1, keepdim=True)
                token_target = patch_targets(x, grid, config.recon_size)
            logits, token_pred, actor_pred = model(x)
            ce = F.cross_entropy(logits[:n_motion], y)
            token_rec = F.mse_loss(token_pred, token_target)
            actor_rec = (pixel_weight * (actor_pred - actor) ** 2).mean()
            loss = (
                config.action_weight * ce
                + config.token_recon_weight * token_rec
                + config.actor_recon_weight * actor_rec
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            totals["ce"] += ce.item()
            totals["token_recon"] += token_rec.item()
            totals["actor_recon"] += actor_rec.item()
            totals["acc"] += float((logits[:n_motion].argmax(1) == y).float().mean())
        if on_epoch is not None:
            on_epoch(epoch, {k: v / steps_per_epoch for k, v in totals.items()})
    return model.encoder.eval()
