"""Private-attribute leakage: attackers (linear and 2-layer MLP by default) try to predict each private
attribute from embeddings; higher cMAP = more leakage.

Run it on static-clip embeddings (the paper's protocol) and on the published motion-clip embeddings
(the data-team threat model) by passing the corresponding `Clips`. Attackers train on every clip of the
train-split videos, each labelled with its video's attribute value (balanced class weights). By default
(``aggregate="video"``) a test video is scored by its clips' mean probabilities, so cMAP and macro-F1
are over test videos; ``aggregate="clip"`` scores every test clip on its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from pipeline.probes.config import FitConfig, LeakageConfig
from pipeline.probes.fit import fit_probe
from pipeline.probes.inputs import (
    Clips,
    ProbeError,
    encode_labels,
    labelled_videos,
    mean_by_owner,
    require_split,
)
from pipeline.probes.metrics import class_rate, cmap, cmap_chance, macro_f1


@dataclass(frozen=True)
class AttackResult:
    """One attacker on one attribute, over the scored test units (videos or clips): ``cmap`` (one-vs-rest,
    every class present), ``macro_f1`` of the argmax over the classes present, ``chance`` =
    `cmap_chance` of their labels (the expected cMAP of a ranking that knows nothing) and
    ``class_rate`` = `class_rate` of their labels (the expected macro-F1 of a guess drawn at the test
    class rates). An attacker with nothing to go on tends to one class, so its macro-F1 can fall
    below ``class_rate``."""

    attribute: str
    attacker: str
    cmap: float
    macro_f1: float
    chance: float
    class_rate: float
    num_classes: int
    num_train_clips: int
    num_test: int
    aggregate: str


def attack(
    clips: Clips,
    labels: Mapping[str, object],
    splits: Mapping[str, str],
    attacker: FitConfig,
    *,
    attribute: str = "attribute",
    attacker_name: str | None = None,
    cfg: LeakageConfig | None = None,
) -> AttackResult:
    """Train ``attacker`` on the train videos' clips to predict ``labels[video]``; score the test videos.

    Classes are every value seen in train or test (compared as str); one absent from training still
    has a column, with low probability.
    """
    cfg = cfg or LeakageConfig()
    train = labelled_videos(clips, labels, splits, cfg.train_split)
    test = labelled_videos(clips, labels, splits, cfg.test_split)
    require_split(train, cfg.train_split, f"leakage of {attribute}")
    require_split(test, cfg.test_split, f"leakage of {attribute}")
    classes = sorted({str(labels[v]) for v in [*train, *test]})
    if len(classes) < 2:
        raise ProbeError(f"leakage of {attribute}: one value only ({classes[0]!r}); nothing to attack")
    rows = clips.rows(train)
    y = encode_labels([labels[v] for v in clips.video_id[rows]], classes)
    probe = fit_probe(clips.emb[rows], y, attacker, num_classes=len(classes))

    test_rows = clips.rows(test)
    proba = probe.predict_proba(clips.emb[test_rows])  # (test clips, C)
    truth = np.array([str(labels[v]) for v in clips.video_id[test_rows]])
    if cfg.aggregate == "video":
        owner = np.repeat(np.arange(len(test)), [len(clips.rows_by_video[v]) for v in test])
        proba = mean_by_owner(proba, owner, len(test))
        truth = np.array([str(labels[v]) for v in test])
    predicted = np.array(classes)[np.argmax(proba, axis=1)]
    return AttackResult(
        attribute=attribute,
        attacker=attacker_name or attacker.kind,
        cmap=cmap(truth, proba, classes),
        macro_f1=macro_f1(truth, predicted, classes=sorted(set(truth))),
        chance=cmap_chance(truth),
        class_rate=class_rate(truth),
        num_classes=len(classes),
        num_train_clips=len(rows),
        num_test=len(truth),
        aggregate=cfg.aggregate,
    )


def probe_leakage(
    clips: Clips,
    attributes: Mapping[str, Mapping[str, object]],
    splits: Mapping[str, str],
    cfg: LeakageConfig | None = None,
) -> list[AttackResult]:
    """Every attacker of ``cfg`` on every attribute (``{name: {video_id: value}}``), in that order."""
    cfg = cfg or LeakageConfig()
    return [
        attack(clips, labels, splits, attacker, attribute=name, attacker_name=attacker_name, cfg=cfg)
        for name, labels in attributes.items()
        for attacker_name, attacker in cfg.attackers.items()
    ]


def leakage_removed(raw: float, anon: float, chance: float) -> float:
    """Fraction of the above-chance leakage removed, ``(raw − anon) / (raw − chance)``: 1 = down to
    chance, 0 = unchanged, < 0 = more leakage; NaN when ``raw`` is not above chance (nothing to remove)."""
    if raw <= chance:
        return math.nan
    return (raw - anon) / (raw - chance)
