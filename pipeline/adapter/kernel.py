"""A nonlinear eraser term fitted in closed form: kernel CCA on random Fourier features, refitted and
resampled before every epoch, with nothing learned by gradient on the other side (issue 24).

After the linear CCA eraser (nullspace.py) what a video's static look still says about an adapted clip
is nonlinear. Before every epoch this module draws fresh random Fourier features (Rahimi & Recht 2007)
of the adapter's standardised output, φ(z) (M features, Gaussian kernel of median bandwidth), and of
the RAW static look of the clip's video, ψ(s), and fits a regularised CCA between them within action
classes, in closed form: the top-k kernel canonical variate pairs (a_i^T φ(z), b_i^T ψ(s)), the
smooth functions of the output most correlated with functions of the look. During the epoch the
adapter is trained to make the batch correlation of every fitted pair zero (`kernel_loss`). The next
refit draws new features and finds the best pairs on the outputs as they now are, so there is no
critic whose lag the adapter can exploit (the failure of critic.py): each refit is the optimum of its
function class. This follows Obliviator (Akbari et al., NeurIPS 2025): RFF maps resampled during
training, a dependence between the RFF of the representation and the unwanted variable driven to zero,
and a closed-form step fitted on the current representation between gradient phases.

Shapes: N clips, D output size, E look size, M random features per side, k variate pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.adapter.nullspace import centre_within


def median_bandwidth(x: np.ndarray, rng: np.random.Generator, sample: int = 1000) -> float:
    """Median pairwise Euclidean distance of (a sample of) the rows of `x` (N, D); at least 1e-6."""
    rows = x if len(x) <= sample else x[rng.choice(len(x), sample, replace=False)]
    d2 = (rows**2).sum(1)[:, None] + (rows**2).sum(1)[None, :] - 2 * rows @ rows.T
    upper = d2[np.triu_indices(len(rows), 1)]
    return max(float(np.sqrt(np.median(np.maximum(upper, 0.0)))) if upper.size else 1.0, 1e-6)


@dataclass(frozen=True)
class Fourier:
    """Random Fourier features of a Gaussian kernel on standardised inputs:
    φ(x) = sqrt(1/m) [sin(((x − mean)/scale) W), cos(((x − mean)/scale) W)], W (D, m) ~ N(0, 1/σ²)."""

    mean: np.ndarray  # (D,)
    scale: np.ndarray  # (D,)
    freq: np.ndarray  # (D, m)

    @classmethod
    def draw(cls, x: np.ndarray, features: int, rng: np.random.Generator, bandwidth: float = 1.0) -> Fourier:
        """Standardised by `x`'s statistics; bandwidth: `bandwidth` × the median distance; M = `features`."""
        mean, scale = x.mean(0), x.std(0) + 1e-8
        sigma = bandwidth * median_bandwidth((x - mean) / scale, rng)
        freq = rng.standard_normal((x.shape[1], max(features // 2, 1))) / sigma
        return cls(mean, scale, freq)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(N, D) float -> (N, 2m) float64."""
        h = ((x.astype(np.float64) - self.mean) / self.scale) @ self.freq
        return np.concatenate([np.sin(h), np.cos(h)], 1) / math.sqrt(self.freq.shape[1])

    def torch(self, x: torch.Tensor) -> torch.Tensor:
        """The same map on a tensor (differentiable), in `x`'s dtype."""
        mean, scale, freq = (
            torch.as_tensor(a, dtype=x.dtype, device=x.device) for a in (self.mean, self.scale, self.freq)
        )
        h = ((x - mean) / scale) @ freq
        return torch.cat([torch.sin(h), torch.cos(h)], 1) / math.sqrt(self.freq.shape[1])


def _inv_sqrt(c: np.ndarray, reg: float) -> np.ndarray:
    """(C + reg·mean eigenvalue·I)^{-1/2} of a symmetric PSD matrix."""
    c = c + reg * np.trace(c) / len(c) * np.eye(len(c))
    w, v = np.linalg.eigh(c)
    out: np.ndarray = (v / np.sqrt(np.maximum(w, 1e-12))) @ v.T
    return out


def kernel_cca(
    f: np.ndarray, g: np.ndarray, group: np.ndarray, k: int, reg: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k regularised canonical pairs of features `f` (N, M) and `g` (N, M') within `group` (N,):
    A (M, k), B (M', k) with unit-variance variates f A and g B, and their correlations (k,)."""
    F, G = centre_within(f.astype(np.float64), group), centre_within(g.astype(np.float64), group)
    n = len(F)
    Wf, Wg = _inv_sqrt(F.T @ F / n, reg), _inv_sqrt(G.T @ G / n, reg)
    U, corr, Vt = np.linalg.svd(Wf @ (F.T @ G / n) @ Wg)
    k = min(k, len(corr))
    A, B = Wf @ U[:, :k], Wg @ Vt[:k].T
    A /= (F @ A).std(0) + 1e-12  # unit variance on the fit data (the regulariser shrinks it)
    B /= (G @ B).std(0) + 1e-12
    return A, B, corr[:k]


@dataclass(frozen=True)
class KernelFit:
    """One refit: the feature maps of both sides and the top-k canonical pairs."""

    phi: Fourier  # of the adapter's output
    psi: Fourier  # of the raw look
    A: np.ndarray  # (M, k)
    B: np.ndarray  # (M', k)
    corr: np.ndarray  # (k,) canonical correlations on the fit data

    @classmethod
    def fit(
        cls,
        z: np.ndarray,
        s: np.ndarray,
        group: np.ndarray,
        *,
        dims: int,
        features: int,
        reg: float,
        rng: np.random.Generator,
        bandwidth: float = 1.0,
    ) -> KernelFit:
        """Fresh features of outputs `z` (N, D) and looks `s` (N, E), then kernel CCA within `group`."""
        phi = Fourier.draw(z, features, rng, bandwidth)
        psi = Fourier.draw(s, features, rng, bandwidth)
        A, B, corr = kernel_cca(phi(z), psi(s), group, dims, reg)
        return cls(phi, psi, A, B, corr)

    def variates(self, z: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The fitted variates of new rows: (N, k), (N, k)."""
        return self.phi(z) @ self.A, self.psi(s) @ self.B

    def look_variates(self, s: np.ndarray) -> np.ndarray:
        """b_i^T ψ(s) of looks `s` (N, E): (N, k); fixed during an epoch, so computed once."""
        out: np.ndarray = self.psi(s) @ self.B
        return out


def batch_correlation(u: torch.Tensor, v: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Per column, the correlation of `u` (N, k) and `v` (N, k) after removing each group's batch mean
    (groups with one row contribute nothing): (k,)."""
    onehot = (group[:, None] == group[None, :]).to(u.dtype)  # (N, N)
    weight = onehot / onehot.sum(1, keepdim=True)
    uc, vc = u - weight @ u, v - weight @ v
    out: torch.Tensor = (uc * vc).sum(0) / (uc.norm(dim=0) * vc.norm(dim=0) + 1e-8)
    return out


def kernel_loss(
    fit: KernelFit, z: torch.Tensor, look_variates: torch.Tensor, group: torch.Tensor
) -> torch.Tensor:
    """Mean squared batch correlation of the fitted pairs: adapted clips `z` (N, D) against the look
    variates of their videos (N, k), within `group` (N,). 0 = the fitted functions are uncorrelated."""
    A = torch.as_tensor(fit.A, dtype=z.dtype, device=z.device)
    u = fit.phi.torch(z) @ A
    out: torch.Tensor = batch_correlation(u, look_variates.to(z.dtype), group).pow(2).mean()
    return out


def heldout_dependence(
    z: np.ndarray,
    s: np.ndarray,
    group: np.ndarray,
    fit_rows: np.ndarray,
    *,
    dims: int = 16,
    features: int = 256,
    reg: float = 0.1,
    seed: int = 0,
) -> float:
    """A kernel dependence statistic of `z` (N, D) and `s` (N, E): kernel CCA fitted on `fit_rows`,
    the mean squared correlation of its variate pairs on the other rows, within `group`. About 0 for
    independent inputs (a fitted pair's spurious correlation does not carry to new rows)."""
    rng = np.random.default_rng(seed)
    held = np.setdiff1d(np.arange(len(z)), fit_rows)
    fit = KernelFit.fit(
        z[fit_rows], s[fit_rows], group[fit_rows], dims=dims, features=features, reg=reg, rng=rng
    )
    u, v = fit.variates(z[held], s[held])
    corr = batch_correlation(torch.as_tensor(u), torch.as_tensor(v), torch.as_tensor(group[held]))
    return float(corr.pow(2).mean())


@dataclass(frozen=True)
class KernelEraser:
    """A closed-form nonlinear eraser of an output `z` (N, D): the r kernel canonical variates v(z) of
    its random Fourier features most correlated with the look (within groups), regressed out of z:
    z' = z − (v(z) − v̄) β, β the least-squares coefficients of z on v within groups over the fit rows,
    so inside every group z' is uncorrelated with every v_i on them (float64)."""

    fit: KernelFit
    vmean: np.ndarray  # (r,)
    beta: np.ndarray  # (r, D)

    @classmethod
    def build(
        cls,
        z: np.ndarray,
        s: np.ndarray,
        group: np.ndarray,
        *,
        dims: int,
        features: int,
        reg: float,
        rng: np.random.Generator,
    ) -> KernelEraser:
        fit = KernelFit.fit(z, s, group, dims=dims, features=features, reg=reg, rng=rng)
        v = fit.phi(z) @ fit.A  # (N, r)
        # within groups: only what the variates explain inside an action goes, not the actions' offsets
        v_in, z_in = centre_within(v, group), centre_within(z.astype(np.float64), group)
        beta = np.linalg.lstsq(v_in, z_in, rcond=None)[0]  # (r, D)
        return cls(fit, v.mean(0), beta)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        out: np.ndarray = z - (self.fit.phi(z) @ self.fit.A - self.vmean) @ self.beta
        return out

    def buffers(self) -> dict[str, np.ndarray]:
        """The ClipAdapter buffers of this eraser (`set_kernel_eraser`)."""
        return {
            "kernel_mean": self.fit.phi.mean,
            "kernel_scale": self.fit.phi.scale,
            "kernel_freq": self.fit.phi.freq,
            "kernel_vmean": self.vmean,
            "kernel_dir": self.fit.A,
            "kernel_pattern": self.beta.T,
        }
