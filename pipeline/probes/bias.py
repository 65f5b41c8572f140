"""Bias protocol (paper): the action probe trained on a group-skewed split (``bias_split == "train"``)
and tested on a group-balanced one (``bias_split == "test"``); top-1 accuracy per group (e.g.
``private_gender``) and Δ = the gap between the best and the worst group (|acc_a − acc_b| for two).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from pipeline.probes.action import fit_action_probe, score_videos
from pipeline.probes.config import BiasConfig
from pipeline.probes.inputs import Clips, ProbeError, is_missing, labelled_videos, require_split


@dataclass(frozen=True)
class BiasMetrics:
    """Video-level top-1 on the balanced split, overall and per group, and the gap ``delta``."""

    accuracy: float
    per_group: dict[str, float]
    counts: dict[str, int]
    delta: float
    num_train_videos: int


def probe_bias(
    clips: Clips,
    actions: Mapping[str, object],
    bias_splits: Mapping[str, object],
    groups: Mapping[str, object],
    cfg: BiasConfig | None = None,
) -> BiasMetrics:
    """Train on ``bias_splits[v] == cfg.action.train_split``, test on ``== cfg.action.test_split``; a
    test video without a group value is left out of the per-group numbers but kept in ``accuracy``."""
    cfg = cfg or BiasConfig()
    splits = {v: str(s) for v, s in bias_splits.items() if not is_missing(s)}
    acfg = cfg.action
    train = labelled_videos(clips, actions, splits, acfg.train_split)
    test = labelled_videos(clips, actions, splits, acfg.test_split)
    require_split(train, acfg.train_split, "bias probe (bias_split)")
    require_split(test, acfg.test_split, "bias probe (bias_split)")
    model = fit_action_probe(clips, actions, train, acfg.probe)
    proba, y = score_videos(model, clips, actions, test, acfg)
    correct = np.argmax(proba, axis=1) == y  # a class unseen in training (y = −1) is never correct
    group = np.array(["" if is_missing(groups.get(v)) else str(groups[v]) for v in test])
    names = sorted({str(g) for g in group} - {""})
    if len(names) < 2:
        raise ProbeError(f"bias probe: the test split has {len(names)} group(s) {names}; need at least two")
    per_group = {g: float(correct[group == g].mean()) for g in names}
    return BiasMetrics(
        accuracy=float(correct.mean()),
        per_group=per_group,
        counts={g: int(np.sum(group == g)) for g in names},
        delta=max(per_group.values()) - min(per_group.values()),
        num_train_videos=len(train),
    )
