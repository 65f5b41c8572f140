"""A diagnostic, not a product path: how far can a NONLINEAR eraser that KNOWS the private labels take
leakage removal under the full attacker panel, and what does it cost the action probe? (issue 24)

`eraser_ceiling.py` bounds linear erasers. This bounds the closed-form kernel erasure of Obliviator
(Akbari et al., NeurIPS 2025), label-informed, applied on top of an embedding set (an adapter's outputs,
or the raw embeddings): at each of `--iterations` steps the current representation x (N, d), fitted on
the motion and static clips of the train and val videos,
  1. is standardised and mapped to u = [x, φ(x)], φ fresh random Fourier features of a Gaussian kernel
     of median bandwidth (`--features`),
  2. u is restricted to the null space of its cross-covariance with the one-hot private labels of the
     clip's video (every attribute at once): no linear function of u, so no function of x in the
     kernel's random-feature span, covaries with any label on the fit clips,
  3. inside that null space the d directions that keep most of the covariance with x are kept
     (Obliviator's supervised PCA step, aligned with the representation itself): the new x (N, d).
Every clip (test ones included) is mapped with what was fitted; no label of a test video is read. The
next step draws new features of the erased x and erases again. The erased sets are probed as `probe`
does (seed 0): action top-1 on motion clips and the worst-attacker removed share of raw above-chance
leakage per attribute, motion and static clips, with the panel of `--attackers` (default: full). The
linear LEACE label eraser of `eraser_ceiling.py` is printed beside it for comparison (`--then-linear`:
also after each kernel eraser, so no linear trace of the labels is left either).

Example (the default adapter of dev seeds 0-4, as trained by adapter_seeds.py):

    python benchmarks/kernel_ceiling.py --store bench-out/dev/latents.zarr \\
        --adapter bench-out/dev/seeds/default-seed0 --iterations 1,3
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: `benchmarks` importable

from benchmarks.eraser_ceiling import ceiling_row, fit_eraser, label_matrix
from flows.probe_sets import EmbeddingSet, adapter_set, raw_set
from flows.train_adapter import TRAIN_SPLITS
from flows.views import Labels, labels_of
from pipeline.adapter.kernel import Fourier
from pipeline.probes.config import LeakageConfig, ProbeConfig
from pipeline.probes.inputs import Clips
from pipeline.probes.leakage import probe_leakage
from stores.latent_cache import LatentCache

Map = Callable[[np.ndarray], np.ndarray]


def null_space(c: np.ndarray, rtol: float = 1e-8) -> np.ndarray:
    """Orthonormal basis (m, m − r) of the vectors w with c w = 0, for c (k, m) of rank r."""
    _, sv, vt = np.linalg.svd(c, full_matrices=True)
    rank = int((sv > rtol * max(float(sv.max(initial=0.0)), 1e-30)).sum())
    out: np.ndarray = vt[rank:].T
    return out


def kernel_erasure_step(
    x: np.ndarray, labels: np.ndarray, features: int, rng: np.random.Generator
) -> tuple[np.ndarray, Map]:
    """One closed-form label-informed kernel erasure step fitted on `x` (N, d) and one-hot `labels`
    (N, L): the erased fit rows (N, d) and the map that erases any rows alike."""
    mean, scale = x.mean(0), x.std(0) + 1e-8
    phi = Fourier.draw((x - mean) / scale, features, rng)

    def lift(rows: np.ndarray) -> np.ndarray:
        xs = (rows.astype(np.float64) - mean) / scale
        return np.concatenate([xs, phi(xs)], 1)  # (n, d + M)

    u = lift(x)
    u_mean = u.mean(0)
    uc, lc = u - u_mean, labels - labels.mean(0)
    n = len(u)
    Q = null_space(lc.T @ uc / n)  # (d + M, d + M − r): Cov(labels, u Q) = 0
    xc = (x - mean) / scale
    c_xq = (xc - xc.mean(0)).T @ (uc @ Q) / n  # (d, d + M − r)
    _, _, vt = np.linalg.svd(c_xq, full_matrices=False)
    basis = Q @ vt.T  # (d + M, d): the d null-space directions most aligned with x

    def apply(rows: np.ndarray) -> np.ndarray:
        out: np.ndarray = (lift(rows) - u_mean) @ basis
        return out

    return apply(x), apply


def fit_kernel_eraser(
    clips: Sequence[Clips], labels: Labels, iterations: int, features: int, seed: int = 0
) -> Map:
    """`iterations` kernel erasure steps fitted on `clips`' rows of train and val videos against the
    one-hot private labels of their video; returns the composed map (float32 out)."""
    rng = np.random.default_rng(seed)
    x, s = [], []
    for c in clips:
        rows = np.flatnonzero([labels.splits.get(str(v)) in TRAIN_SPLITS for v in c.video_id])
        x.append(c.emb[rows].astype(np.float64))
        s.append(label_matrix([str(v) for v in c.video_id[rows]], labels.attributes))
    fit_x, target = np.concatenate(x), np.concatenate(s)
    steps: list[Map] = []
    for _ in range(iterations):
        fit_x, step = kernel_erasure_step(fit_x, target, features, rng)
        steps.append(step)

    def erase_all(rows: np.ndarray) -> np.ndarray:
        out = rows.astype(np.float64)
        for step in steps:
            out = step(out)
        return out.astype(np.float32)

    return erase_all


def mapped(es: EmbeddingSet, fn: Map, what: str) -> EmbeddingSet:
    static = None if es.static is None else replace(es.static, emb=fn(es.static.emb))
    return replace(
        es, name=f"{es.name}+{what}", motion=replace(es.motion, emb=fn(es.motion.emb)), static=static
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--store", required=True, help="latent cache with static clips, splits and private labels"
    )
    parser.add_argument(
        "--adapter", action="append", default=[], help="adapter folder(s); none = raw embeddings"
    )
    parser.add_argument("--iterations", default="1,3", help="comma-separated numbers of kernel erasure steps")
    parser.add_argument("--features", type=int, default=1024, help="random Fourier features per step")
    parser.add_argument("--attackers", choices=("fast", "full"), default="full")
    parser.add_argument("--no-linear", action="store_true", help="leave out the linear LEACE label eraser")
    parser.add_argument(
        "--then-linear",
        action="store_true",
        help="also the linear label eraser applied after each kernel one",
    )
    parser.add_argument("--only-erased", action="store_true", help="do not probe the set itself again")
    args = parser.parse_args()
    view = LatentCache.open(args.store).read()
    labels = labels_of(view.videos)
    if not labels.attributes or view.static.shape[0] == 0:
        parser.error(f"{args.store}: needs private_* labels and static clips (extract --static-frames K)")
    cfg = ProbeConfig(leakage=LeakageConfig(panel=args.attackers))
    raw = raw_set(view)
    assert raw.static is not None
    baseline = {
        "motion": probe_leakage(raw.motion, labels.attributes, labels.splits, cfg.leakage),
        "static": probe_leakage(raw.static, labels.attributes, labels.splits, cfg.leakage),
    }
    sets = [adapter_set(view, Path(a), f"adapter:{Path(a).name}") for a in args.adapter] or [raw]
    attributes = list(labels.attributes)
    iterations = [int(i) for i in args.iterations.split(",") if i.strip()]
    print(
        f"label-informed erasers fitted on motion + static clips of {'/'.join(TRAIN_SPLITS)} videos, "
        f"{args.attackers} panel; removed share of raw above-chance leakage"
    )
    print(
        f"{'set':52s} {'action':>7s}  "
        + "  ".join(
            f"{v}: " + " / ".join(a.removeprefix("clothing_") for a in attributes)
            for v in ("motion", "static")
        )
    )
    directions = label_matrix([], labels.attributes).shape[1]
    for es in sets:
        assert es.static is not None
        erased: list[EmbeddingSet] = [] if args.only_erased else [es]
        lookup = lambda videos: label_matrix(videos, labels.attributes)  # noqa: E731
        if not args.no_linear:
            erased.append(
                mapped(es, fit_eraser([es.motion, es.static], labels, lookup, directions), "linear")
            )
        for t in iterations:
            fn = fit_kernel_eraser([es.motion, es.static], labels, t, args.features)
            erased.append(mapped(es, fn, f"kernel x{t}"))
            if args.then_linear:
                k = erased[-1]
                assert k.static is not None
                lin = fit_eraser([k.motion, k.static], labels, lookup, directions)
                erased.append(mapped(k, lin, "linear"))
        for each in erased:
            print(ceiling_row(each, raw, baseline, labels, cfg, width=52), flush=True)


if __name__ == "__main__":
    main()
