"""A diagnostic, not a product path: how far can a linear eraser that KNOWS the private labels take
leakage removal, and what does it cost the action probe?

Training never reads a `private_*` column (docs/adapter.md); the adapter's eraser finds its directions
from what a video's static frames and other clips share. This bounds what any linear eraser could do on
the same embeddings: it fits a LEACE-style eraser (`pipeline.adapter.nullspace.fit_nullspace`, the
adapter's own) between an embedding set's clips of the train and val videos and the one-hot private
labels of their video (every attribute at once; one column per value but the first), applies it to
every clip, and probes the result as `probe` does (seed 0): action top-1 on motion clips and the
worst-attacker removed share of raw above-chance leakage per attribute, on motion and static clips.

`--fit-on` picks the clips the eraser is fitted on (motion, static or both). By default it is plain
LEACE; `--keep-action-means` adds the adapter eraser's constraint (directions searched within actions
and orthogonal to the actions' mean offsets, so every action's mean stays where it was).
`--target look` fits the same eraser against the adapter eraser's label-free target instead (each
video's mean raw static clip), for comparison; `--directions N` sets how many directions go.

Examples:

    aam-pipeline demo --out demo-out
    python benchmarks/eraser_ceiling.py --store demo-out/latents.zarr --adapter demo-out/adapter --fit-on both
    python benchmarks/eraser_ceiling.py --store demo-out/latents.zarr --fit-on static   # on raw embeddings
    python benchmarks/eraser_ceiling.py --store demo-out/latents.zarr --adapter demo-out/adapter \\
        --target look --directions 32
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from flows.probe_sets import EmbeddingSet, adapter_set, raw_set
from flows.train_adapter import TRAIN_SPLITS
from flows.views import Labels, labels_of
from pipeline.adapter.nullspace import erase, fit_nullspace
from pipeline.probes.action import probe_action
from pipeline.probes.config import ProbeConfig
from pipeline.probes.inputs import Clips, is_missing, mean_by_owner
from pipeline.probes.leakage import AttackResult, leakage_removed, probe_leakage
from stores.latent_cache import LatentCache


def label_matrix(videos: Sequence[str], attributes: Mapping[str, Mapping[str, object]]) -> np.ndarray:
    """(len(videos), Σ (values − 1)) float64: per attribute, a one-hot column for every value but the
    first (sorted as str); a video without a value is all zeros for that attribute."""
    blocks = []
    for values in attributes.values():
        classes = sorted({str(v) for v in values.values() if not is_missing(v)})
        block = np.zeros((len(videos), max(len(classes) - 1, 0)))
        column = {c: i - 1 for i, c in enumerate(classes)}
        for row, video in enumerate(videos):
            value = values.get(video)
            if not is_missing(value) and column[str(value)] >= 0:
                block[row, column[str(value)]] = 1.0
        blocks.append(block)
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((len(videos), 0))


def action_groups(videos: Sequence[str], actions: Mapping[str, object]) -> np.ndarray:
    """(len(videos),) int: each video's action index (sorted as str), −1 where it has none."""
    names = sorted({str(a) for a in actions.values() if not is_missing(a)})
    index = {a: i for i, a in enumerate(names)}
    return np.array([-1 if is_missing(actions.get(v)) else index[str(actions[v])] for v in videos])


def static_looks(static: Clips) -> dict[str, np.ndarray]:
    """Each video's look, the label-free target of the adapter's eraser: the mean of its static clips."""
    videos, owner = np.unique(static.video_id.astype(str), return_inverse=True)
    means = mean_by_owner(static.emb.astype(np.float64), owner, len(videos))
    return {str(v): means[i] for i, v in enumerate(videos)}


def fit_eraser(
    clips: Sequence[Clips],
    labels: Labels,
    target: Callable[[list[str]], np.ndarray],
    directions: int,
    *,
    keep_action_means: bool = False,
) -> Callable[[np.ndarray], np.ndarray]:
    """An eraser of the `directions` canonical directions of `clips` (train and val videos only) most
    correlated with `target(video ids)` (one row per clip): with the labels' one-hot matrix as the target
    and as many directions as it has columns, every linear trace of the labels."""
    z, s, g = [], [], []
    for c in clips:
        rows = np.flatnonzero([labels.splits.get(str(v)) in TRAIN_SPLITS for v in c.video_id])
        videos = [str(v) for v in c.video_id[rows]]
        z.append(c.emb[rows])
        s.append(target(videos))
        g.append(action_groups(videos, labels.actions) if keep_action_means else np.zeros(len(rows), int))
    mu, E, P, _ = fit_nullspace(
        np.concatenate(z), np.concatenate(s), np.concatenate(g), directions, keep_means=keep_action_means
    )

    def erase_float32(x: np.ndarray) -> np.ndarray:
        return erase(x, mu, E, P).astype(np.float32)

    return erase_float32


def worst_removed(raw: list[AttackResult], anon: list[AttackResult]) -> dict[str, float]:
    """Per attribute: (strongest raw cMAP − strongest anonymized cMAP) / (strongest raw − chance)."""
    out = {}
    for attribute in dict.fromkeys(r.attribute for r in raw):
        r = max(x.cmap for x in raw if x.attribute == attribute)
        a = max(x.cmap for x in anon if x.attribute == attribute)
        chance = next(x.chance for x in anon if x.attribute == attribute)
        out[attribute] = leakage_removed(r, a, chance)
    return out


def erased_set(es: EmbeddingSet, eraser: Callable[[np.ndarray], np.ndarray], what: str) -> EmbeddingSet:
    static = None if es.static is None else replace(es.static, emb=eraser(es.static.emb))
    return replace(
        es,
        name=f"{es.name}+{what} eraser",
        motion=replace(es.motion, emb=eraser(es.motion.emb)),
        static=static,
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
    parser.add_argument("--fit-on", choices=("motion", "static", "both"), default="both")
    parser.add_argument("--keep-action-means", action="store_true", help="the adapter eraser's constraint")
    parser.add_argument(
        "--target",
        choices=("labels", "look"),
        default="labels",
        help="labels: the private labels (the ceiling); look: each video's mean raw static clip, the "
        "adapter eraser's label-free target, for comparison",
    )
    parser.add_argument(
        "--directions", type=int, default=None, help="directions to erase (default: the labels' columns)"
    )
    args = parser.parse_args()
    view = LatentCache.open(args.store).read()
    labels = labels_of(view.videos)
    if not labels.attributes or view.static.shape[0] == 0:
        parser.error(f"{args.store}: needs private_* labels and static clips (extract --static-frames K)")
    cfg = ProbeConfig()
    raw = raw_set(view)
    assert raw.static is not None
    baseline = {
        "motion": probe_leakage(raw.motion, labels.attributes, labels.splits, cfg.leakage),
        "static": probe_leakage(raw.static, labels.attributes, labels.splits, cfg.leakage),
    }
    sets = [adapter_set(view, Path(a), f"adapter:{Path(a).name}") for a in args.adapter] or [raw]
    looks = static_looks(raw.static)
    targets = {
        "labels": lambda videos: label_matrix(videos, labels.attributes),
        "look": lambda videos: np.stack([looks[v] for v in videos]),
    }
    directions = args.directions or label_matrix([], labels.attributes).shape[1]
    print(
        f"{args.target} eraser ({directions} directions) fitted on {args.fit_on} clips of "
        f"{'/'.join(TRAIN_SPLITS)} videos"
        f"{', keeping action means' if args.keep_action_means else ''}; "
        "removed share of raw above-chance leakage"
    )
    attributes = list(labels.attributes)
    print(
        f"{'set':40s} {'action':>7s}  "
        + "  ".join(
            f"{v}: " + " / ".join(a.removeprefix("clothing_") for a in attributes)
            for v in ("motion", "static")
        )
    )
    for es in sets:
        assert es.static is not None
        chosen = {"motion": [es.motion], "static": [es.static], "both": [es.motion, es.static]}[args.fit_on]
        eraser = fit_eraser(
            chosen, labels, targets[args.target], directions, keep_action_means=args.keep_action_means
        )
        for each in (es, erased_set(es, eraser, args.target)):
            print(ceiling_row(each, raw, baseline, labels, cfg, width=40))


def ceiling_row(
    each: EmbeddingSet,
    raw: EmbeddingSet,
    baseline: dict[str, list[AttackResult]],
    labels: Labels,
    cfg: ProbeConfig,
    *,
    width: int,
) -> str:
    """One line of a ceiling table: the set's action top-1, then the removed share of raw above-chance
    leakage (worst attacker against worst) per attribute on its motion and its static clips."""
    assert each.static is not None
    top1 = probe_action(each.motion, labels.actions, labels.splits, cfg.action).top1
    cells = []
    for view_name, clips in (("motion", each.motion), ("static", each.static)):
        attacks = (
            baseline[view_name]
            if each is raw
            else probe_leakage(clips, labels.attributes, labels.splits, cfg.leakage)
        )
        removed = worst_removed(baseline[view_name], attacks)
        cells.append(" / ".join(f"{removed[a]:.0%}" for a in labels.attributes))
    return f"{each.name:{width}s} {top1:7.3f}  " + "  ".join(cells)


if __name__ == "__main__":
    main()
