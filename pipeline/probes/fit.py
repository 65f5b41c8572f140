"""Deterministic probe fitting on CPU: standardise with train statistics, then a linear or 2-layer MLP
classifier (the paper's attacker) trained with AdamW on seeded mini-batches.

Same inputs and seed → bit-identical probe on the same machine. Training runs on one torch thread
(`single_thread`): probes are small, so more threads buy little, and on a shared 2-core machine they
cost much more than they give; it also keeps results independent of the caller's thread setting. The
global torch RNG is left as it was.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pipeline.probes.config import LINEAR, MLP, FitConfig
from pipeline.probes.inputs import ProbeError


@contextmanager
def single_thread() -> Iterator[None]:
    """Run the block on one torch thread and a forked global RNG; restores both afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.set_num_threads(threads)


class AdamW:
    """AdamW (decoupled weight decay, bias-corrected moments), the update of ``torch.optim.AdamW``.

    Written out because constructing any ``torch.optim`` optimizer imports ``torch._dynamo``: seconds
    of start-up on a small CPU machine, for probes that train in well under a second.
    """

    def __init__(
        self, params: list[torch.nn.Parameter], weight_decay: float, betas: tuple[float, float] = (0.9, 0.999)
    ) -> None:
        self.params = params
        self.weight_decay = weight_decay
        self.betas = betas
        self.eps = 1e-8
        self.t = 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self, lr: float) -> None:
        """One update with learning rate ``lr`` from the parameters' ``.grad``; clears the gradients."""
        b1, b2 = self.betas
        self.t += 1
        correction1, correction2 = 1 - b1**self.t, 1 - b2**self.t
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            if p.grad is None:
                continue
            p.mul_(1 - lr * self.weight_decay)
            m.lerp_(p.grad, 1 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            p.addcdiv_(m, (v.sqrt() / math.sqrt(correction2)).add_(self.eps), value=-lr / correction1)
            p.grad = None


@dataclass(frozen=True, eq=False)
class Standardiser:
    """Per-feature ``(x − mean) / scale`` with train statistics ``mean``, ``scale`` (D,)."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardiser:
        """Statistics of ``x`` (N, D); constant features get scale 1."""
        x = np.asarray(x, dtype=np.float64)
        std = x.std(axis=0)
        return cls(x.mean(axis=0).astype(np.float32), np.where(std > 1e-8, std, 1.0).astype(np.float32))

    def __call__(self, x: np.ndarray) -> torch.Tensor:
        """``x`` (N, D) → standardised float32 tensor (N, D)."""
        if x.ndim != 2 or x.shape[1] != self.mean.shape[0]:
            raise ProbeError(f"expected features (N, {self.mean.shape[0]}), got {x.shape}")
        return torch.from_numpy((np.asarray(x, dtype=np.float32) - self.mean) / self.scale)


@dataclass(frozen=True, eq=False)
class Probe:
    """A fitted classifier over ``num_classes`` class indices; call it on features (N, D)."""

    standardise: Standardiser
    net: nn.Module
    num_classes: int
    config: FitConfig

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Features (N, D) → logits (N, C) float32."""
        with single_thread(), torch.inference_mode():
            return np.asarray(self.net(self.standardise(x)).numpy())

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Features (N, D) → softmax probabilities (N, C) float32."""
        with single_thread(), torch.inference_mode():
            return np.asarray(torch.softmax(self.net(self.standardise(x)), dim=1).numpy())

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Features (N, D) → class index (N,) int64."""
        return np.asarray(np.argmax(self.logits(x), axis=1))


def build_head(dim: int, num_classes: int, cfg: FitConfig) -> nn.Module:
    """Linear ``D → C``, or ``D → hidden → ReLU → C``."""
    if cfg.kind == "linear":
        return nn.Linear(dim, num_classes)
    return nn.Sequential(nn.Linear(dim, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, num_classes))


def class_weights(y: np.ndarray, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights (C,) ``n / (C_seen · count_c)``; classes absent from ``y`` get 0."""
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    w = np.divide(len(y), np.count_nonzero(counts) * counts, out=np.zeros_like(counts), where=counts > 0)
    return torch.from_numpy(w.astype(np.float32))


def fit_probe(
    x: np.ndarray,
    y: np.ndarray,
    cfg: FitConfig,
    *,
    num_classes: int | None = None,
    after_pass: Callable[[Probe], None] | None = None,
) -> Probe:
    """Fit a probe on features ``x`` (N, D) and class indices ``y`` (N,) in ``[0, num_classes)``;
    ``after_pass`` sees the probe as it stands after every pass over the data (the oracle's epochs)."""
    y = np.asarray(y, dtype=np.int64)
    if x.ndim != 2 or y.shape != (x.shape[0],) or len(y) == 0:
        raise ProbeError(f"fit_probe: need x (N, D) and y (N,) with N > 0, got {x.shape} and {y.shape}")
    c = int(num_classes if num_classes is not None else y.max() + 1)
    if y.min() < 0 or y.max() >= c:
        raise ProbeError(f"fit_probe: labels must lie in [0, {c}), got [{y.min()}, {y.max()}]")
    standardise = Standardiser.fit(x)
    xt, yt = standardise(x), torch.from_numpy(y)
    weight = class_weights(y, c) if cfg.balanced else None
    n = len(y)
    batches = math.ceil(n / cfg.batch_size)
    with single_thread():
        torch.manual_seed(cfg.seed)
        net = build_head(x.shape[1], c, cfg)
        generator = torch.Generator().manual_seed(cfg.seed)
        opt = AdamW(list(net.parameters()), cfg.weight_decay)
        step = 0
        while step < cfg.steps:  # passes over a fresh seeded permutation until `steps` updates
            perm = torch.randperm(n, generator=generator)
            for b in range(min(batches, cfg.steps - step)):
                idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
                loss = nn.functional.cross_entropy(net(xt[idx]), yt[idx], weight=weight)
                loss.backward()
                opt.step(cfg.lr * 0.5 * (1.0 + math.cos(math.pi * step / cfg.steps)))  # cosine decay to 0
                step += 1
            if after_pass is not None:
                after_pass(Probe(standardise, net, c, cfg))
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return Probe(standardise, net, c, cfg)


def fit_linear(
    x: np.ndarray,
    y: np.ndarray,
    *,
    num_classes: int | None = None,
    steps: int = LINEAR.steps,
    weight_decay: float = LINEAR.weight_decay,
    balanced: bool = False,
    seed: int = 0,
) -> Probe:
    """Linear probe (softmax regression, `config.LINEAR` otherwise) on ``x`` (N, D), ``y`` (N,) indices."""
    cfg = LINEAR.changed(steps=steps, weight_decay=weight_decay, balanced=balanced, seed=seed)
    return fit_probe(x, y, cfg, num_classes=num_classes)


def fit_mlp(
    x: np.ndarray,
    y: np.ndarray,
    *,
    num_classes: int | None = None,
    hidden: int = MLP.hidden,
    steps: int = MLP.steps,
    weight_decay: float = MLP.weight_decay,
    balanced: bool = False,
    seed: int = 0,
) -> Probe:
    """2-layer MLP probe ``D → hidden → ReLU → C`` (the paper's attacker; `config.MLP` otherwise) on
    ``x`` (N, D), ``y`` (N,) class indices."""
    cfg = MLP.changed(hidden=hidden, steps=steps, weight_decay=weight_decay, balanced=balanced, seed=seed)
    return fit_probe(x, y, cfg, num_classes=num_classes)
