"""The Anonymizing Adapter Module (AAM): `[B, D]` clip embeddings in, `[B, D]` anonymised out.

Shapes: B clips, D embedding size, S pieces of a pooled vector, W attention width, T' temporal tokens.

Batch independence of the `clip` variant is exact, not approximate: CPU BLAS picks kernels and
blocking by matrix shape, so row i of `f(X)` can differ in the last bits from `f(X[i:i+1])`. In eval
mode the clip variant therefore always runs zero-padded micro-batches of one fixed size
(`AdapterConfig.micro_batch`): every row goes through kernels of the same shape, and each row's result
depends on that row alone (verified for batch sizes 1..300 in any order, tests/pipeline/
test_adapter_model.py).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import nn

from pipeline.adapter.config import AdapterConfig


class Adapter(Protocol):
    """What every adapter variant offers."""

    config: AdapterConfig

    def __call__(self, x: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor: ...


class _Attention(nn.Module):
    """Residual multi-head self-attention over the sequence axis: `h <- h + MHA(norm(h))`.

    Written out (one fused qkv projection, two batched matmuls) because the clip variant runs many
    very short sequences, where this is several times faster on CPU than the fused SDPA kernel.
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        B, S, W = h.shape
        H = self.heads
        q, k, v = self.qkv(self.norm(h)).view(B, S, 3, H, W // H).permute(2, 0, 3, 1, 4)  # 3x (B, H, S, W/H)
        att = torch.softmax(q @ k.transpose(-2, -1) * (W // H) ** -0.5, dim=-1)  # (B, H, S, S)
        y = (att @ v).transpose(1, 2).reshape(B, S, W)  # (B, S, W)
        out: torch.Tensor = h + self.proj(y)
        return out


class _BatchAttention(nn.Module):
    """The released layer: `h <- h + MultiheadAttention(h, h, h)`, no norm."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = h + self.attn(h, h, h, need_weights=False)[0]
        return out


class _MLPBlock(nn.Module):
    """Residual MLP `y <- y + W2 gelu(W1 norm(y))`, W2 zero-initialised so the block starts as identity."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)
        nn.init.zeros_(self.down.weight)
        nn.init.zeros_(self.down.bias)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = y + self.down(torch.nn.functional.gelu(self.up(self.norm(y))))
        return out


class PaperAdapter(nn.Module):
    """The released AAM: `[B, D]` is ONE sequence of B tokens; 3x `h <- h + MHA(h, h, h)`, no norm,
    no FFN. An output depends on the other clips of the batch (comparison only)."""

    def __init__(self, config: AdapterConfig) -> None:
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(_BatchAttention(config.dim, config.heads) for _ in range(config.layers))
        for layer in self.layers:  # exact identity at start (the paper warms up to near identity)
            assert isinstance(layer, _BatchAttention)
            nn.init.zeros_(layer.attn.out_proj.weight)
            nn.init.zeros_(layer.attn.out_proj.bias)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """`x` (B, D) -> (B, D); `tokens` is ignored."""
        h = x.unsqueeze(0)  # (1, B, D): the batch is the sequence
        for layer in self.layers:
            h = layer(h)
        return h.squeeze(0)


class ClipAdapter(nn.Module):
    """Per-clip adapter: self-attention over the clip's own tokens, then residual MLP blocks.

    Starts as the exact identity (zero-initialised read-out and MLP output layers). In eval mode the
    forward pass runs fixed-size zero-padded micro-batches, so outputs are bit-identical whatever the
    batch (see module docstring).
    """

    def __init__(self, config: AdapterConfig) -> None:
        super().__init__()
        self.config = config
        D, S = config.dim, config.tokens
        W = D if config.temporal else config.width
        self.piece = D // S
        self.lift: nn.Module = nn.Identity() if config.temporal else nn.Linear(self.piece, W)
        self.pos = nn.Parameter(torch.zeros(1, S, W)) if not config.temporal else None
        self.layers = nn.ModuleList(_Attention(W, config.heads) for _ in range(config.layers))
        self.out_norm = nn.LayerNorm(W)
        self.readout = nn.Linear(W, D if config.temporal else self.piece)
        nn.init.zeros_(self.readout.weight)
        nn.init.zeros_(self.readout.bias)
        hidden = max(1, round(config.mlp_ratio * D))
        self.mlp = nn.ModuleList(_MLPBlock(D, hidden) for _ in range(config.mlp_blocks))
        k = config.erase_dims + config.erase_clip_dims
        # the fitted linear eraser (see nullspace.py); zeros = no erasure until fitted
        self.erase_mean: torch.Tensor
        self.erase_dir: torch.Tensor
        self.erase_pattern: torch.Tensor
        # float64: in float32 the erased variates would keep a ~1e-5 "shadow" of what they carried,
        # which an unregularised linear attacker can read back
        self.register_buffer("erase_mean", torch.zeros(D, dtype=torch.float64))
        self.register_buffer("erase_dir", torch.zeros(D, k, dtype=torch.float64))
        self.register_buffer("erase_pattern", torch.zeros(D, k, dtype=torch.float64))
        # the fitted kernel eraser (kernel.py); a zero pattern = no erasure until fitted
        r, m = config.kernel_erase_dims, config.kernel_erase_features // 2
        self.kernel_mean: torch.Tensor
        self.kernel_scale: torch.Tensor
        self.kernel_freq: torch.Tensor
        self.kernel_vmean: torch.Tensor
        self.kernel_dir: torch.Tensor
        self.kernel_pattern: torch.Tensor
        if r:
            self.register_buffer("kernel_mean", torch.zeros(D, dtype=torch.float64))
            self.register_buffer("kernel_scale", torch.ones(D, dtype=torch.float64))
            self.register_buffer("kernel_freq", torch.zeros(D, m, dtype=torch.float64))
            self.register_buffer("kernel_vmean", torch.zeros(r, dtype=torch.float64))
            self.register_buffer("kernel_dir", torch.zeros(2 * m, r, dtype=torch.float64))
            self.register_buffer("kernel_pattern", torch.zeros(D, r, dtype=torch.float64))

    def set_kernel_eraser(self, **buffers: torch.Tensor) -> None:
        """Install a fitted kernel eraser (kernel.py `KernelEraser.buffers()`): kernel_mean and
        kernel_scale (D,), kernel_freq (D, M/2), kernel_vmean (r,), kernel_dir (M, r) and kernel_pattern
        (D, r)."""
        for name, value in buffers.items():
            getattr(self, name).copy_(value)

    def set_eraser(self, mean: torch.Tensor, directions: torch.Tensor, patterns: torch.Tensor) -> None:
        """Install a fitted eraser: mean (D,), directions and patterns (D, erase_dims + erase_clip_dims)."""
        self.erase_mean.copy_(mean)
        self.erase_dir.copy_(directions)
        self.erase_pattern.copy_(patterns)

    def unerased(self, x: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """The output before the eraser, (B, D) -> (B, D); for fitting the eraser only."""
        return self._features(x, tokens)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """`x` (B, D) [+ `tokens` (B, T', D) when `config.temporal`] -> (B, D)."""
        if self.config.temporal and tokens is None:
            raise ValueError("this adapter attends over temporal tokens: pass tokens (B, T', D)")
        if self.training:
            return self._forward(x, tokens)
        return _fixed_shape(self._forward, x, tokens, self.config.micro_batch)

    def _forward(self, x: torch.Tensor, tokens: torch.Tensor | None) -> torch.Tensor:
        y = self._features(x, tokens)  # (B, D)
        if self.config.erase_dims == 0:
            return y
        y64 = y.double()
        y64 = y64 - ((y64 - self.erase_mean) @ self.erase_dir) @ self.erase_pattern.t()
        if self.config.kernel_erase_dims:
            y64 = self._kernel_erase(y64)
        return y64.to(y.dtype)

    def linear_erased(self, x: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """The output after the linear eraser and before the kernel eraser (float64); for fitting it."""
        y64 = self._features(x, tokens).double()
        out: torch.Tensor = y64 - ((y64 - self.erase_mean) @ self.erase_dir) @ self.erase_pattern.t()
        return out

    def _kernel_erase(self, y64: torch.Tensor) -> torch.Tensor:
        """y − (v(y) − v̄) β: the fitted kernel variates v(y) = φ(y) K regressed out of y (float64)."""
        h = ((y64 - self.kernel_mean) / self.kernel_scale) @ self.kernel_freq
        phi = torch.cat([torch.sin(h), torch.cos(h)], 1) / self.kernel_freq.shape[1] ** 0.5
        out: torch.Tensor = y64 - (phi @ self.kernel_dir - self.kernel_vmean) @ self.kernel_pattern.t()
        return out

    def _features(self, x: torch.Tensor, tokens: torch.Tensor | None) -> torch.Tensor:
        B, D = x.shape
        if self.config.temporal:
            assert tokens is not None
            h = tokens  # (B, T', D)
            for layer in self.layers:
                h = layer(h)
            y = x + self.readout(self.out_norm(h).mean(1))  # (B, D)
        else:
            assert self.pos is not None
            h = self.lift(x.view(B, self.config.tokens, self.piece)) + self.pos  # (B, S, W)
            for layer in self.layers:
                h = layer(h)
            y = x + self.readout(self.out_norm(h)).reshape(B, D)  # (B, S, D/S) -> (B, D)
        for block in self.mlp:
            y = block(y)
        out: torch.Tensor = y
        return out


def _fixed_shape(fn: object, x: torch.Tensor, tokens: torch.Tensor | None, micro_batch: int) -> torch.Tensor:
    """Run `fn` on zero-padded chunks of exactly `micro_batch` rows; (B, D) -> (B, D)."""
    assert callable(fn)
    B = x.shape[0]
    out = torch.empty_like(x)
    for start in range(0, B, micro_batch):
        n = min(micro_batch, B - start)
        xb = x.new_zeros((micro_batch, *x.shape[1:]))
        xb[:n] = x[start : start + n]
        tb = None
        if tokens is not None:
            tb = tokens.new_zeros((micro_batch, *tokens.shape[1:]))
            tb[:n] = tokens[start : start + n]
        out[start : start + n] = fn(xb, tb)[:n]
    return out


def build_adapter(cfg: AdapterConfig) -> nn.Module:
    """The adapter of `cfg.variant`, at its identity start."""
    if cfg.variant == "paper":
        return PaperAdapter(cfg)
    return ClipAdapter(cfg)


@torch.no_grad()
def anonymize_array(
    model: nn.Module, x: np.ndarray, tokens: np.ndarray | None = None, *, batch: int = 512
) -> np.ndarray:
    """Anonymise embeddings `x` (N, D) [+ `tokens` (N, T', D)] -> float32 (N, D), on the model's device.

    Clip variant: bit-identical per row whatever `N`, order or `batch`. Paper variant: attention runs
    across each chunk of `batch` consecutive rows, as the released code does across a mini-batch.
    """
    model.eval()
    device = next(model.parameters()).device
    cfg: AdapterConfig = model.config  # type: ignore[assignment]
    step = batch if cfg.variant == "paper" else max(batch - batch % cfg.micro_batch, cfg.micro_batch)
    out = np.empty(x.shape, dtype=np.float32)
    for start in range(0, len(x), step):
        xb = torch.as_tensor(
            np.ascontiguousarray(x[start : start + step]), dtype=torch.float32, device=device
        )
        tb = None
        if tokens is not None:
            tb = torch.as_tensor(
                np.ascontiguousarray(tokens[start : start + step]), dtype=torch.float32, device=device
            )
        out[start : start + step] = model(xb, tb).cpu().numpy()
    return out
