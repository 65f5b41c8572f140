"""What a set of raw clip embeddings carries: the reference encoder's figures (issue: reference encoder).

Plain scikit-learn linear probes, fitted on the train split and scored on the test split (people are
disjoint between the two), with fixed seeds:
* action top-1 on trimmed clips (softmax averaged over the clips of a video);
* per private attribute, cMAP (mean one-vs-rest average precision) of the video-level prediction from
  static clips and from motion clips, with chance (`cmap_chance`: its expectation under a random
  ranking) and the fraction of the way from chance to perfect;
* identity re-identification: top-1 of the nearest other video among the test videos, by the re-ID
  probe's stronger attacker (a metric learned on the other people, or plain cosine), on motion clips.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.preprocessing import StandardScaler

from pipeline.probes.inputs import Clips, mean_by_owner
from pipeline.probes.metrics import cmap_chance
from pipeline.probes.reid import probe_reid


@dataclass
class EmbeddingSet:
    """Clip embeddings `[N, D]` with the index of their video, plus per-video labels (lists of length V)."""

    emb: np.ndarray
    video: np.ndarray  # (N,) index into the per-video lists


@dataclass
class EncoderFigures:
    action_top1: float
    action_chance: float
    attributes: dict[str, dict[str, float]] = field(default_factory=dict)
    reid_top1: float = 0.0
    reid_chance: float = 0.0


def _fit(x: np.ndarray, y: Sequence[object], seed: int) -> tuple[StandardScaler, LogisticRegression]:
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=0.5, max_iter=2000, random_state=seed)
    model.fit(scaler.transform(x), np.asarray(y))
    return scaler, model


def _video_proba(
    clips: EmbeddingSet, labels: Sequence[object], train: np.ndarray, test: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, list[object]]:
    """Fit on clips of `train` videos; return video-level probabilities of `test` videos and classes."""
    in_train = train[clips.video]
    scaler, model = _fit(clips.emb[in_train], [labels[v] for v in clips.video[in_train]], seed)
    proba = model.predict_proba(scaler.transform(clips.emb))
    per_video = mean_by_owner(proba, clips.video, len(labels))
    test_ids = np.flatnonzero(test & (np.bincount(clips.video, minlength=len(labels)) > 0))
    return per_video[test_ids], test_ids, list(model.classes_)


def cmap_and_chance(truth: Sequence[object], proba: np.ndarray, classes: list[object]) -> tuple[float, float]:
    """Mean one-vs-rest average precision over classes present in `truth`, and its chance level: the
    expected value of the same mean for a uniformly random ranking (`cmap_chance`)."""
    truth_arr = np.asarray(truth)
    aps = [
        average_precision_score(truth_arr == c, proba[:, k])
        for k, c in enumerate(classes)
        if (truth_arr == c).any()
    ]
    return float(np.mean(aps)), cmap_chance(truth_arr)


def encoder_figures(
    motion: EmbeddingSet,
    static: EmbeddingSet,
    split: Sequence[str],
    action: Sequence[str | None],
    private: dict[str, Sequence[object]],
    seed: int = 0,
) -> EncoderFigures:
    """All figures; per-video lists are indexed by the `video` arrays of the embedding sets."""
    split_arr = np.asarray(split)
    train, test = split_arr == "train", split_arr == "test"
    has_action = np.array([a is not None for a in action])
    proba, test_ids, classes = _video_proba(motion, list(action), train & has_action, test & has_action, seed)
    truth = [action[v] for v in test_ids]
    top1 = float(np.mean([classes[i] == t for i, t in zip(proba.argmax(1), truth, strict=True)]))
    figures = EncoderFigures(action_top1=top1, action_chance=1.0 / len(classes))
    for name, values in private.items():
        if name == "private_identity":
            continue  # people are disjoint across splits: identity is measured by re-identification
        row: dict[str, float] = {}
        for kind, clips in (("static", static), ("motion", motion)):
            proba, test_ids, classes = _video_proba(clips, list(values), train, test, seed)
            cmap, chance = cmap_and_chance([values[v] for v in test_ids], proba, classes)
            row[f"{kind}_cmap"] = cmap
            row["chance"] = chance
            row[f"{kind}_fraction_to_perfect"] = (cmap - chance) / (1 - chance)
        figures.attributes[name] = row
    if "private_identity" in private:
        figures.reid_top1, figures.reid_chance = reid_top1(motion, private["private_identity"], test, train)
    return figures


def reid_top1(
    motion: EmbeddingSet, identity: Sequence[object], videos: np.ndarray, train: np.ndarray
) -> tuple[float, float]:
    """Top-1 re-identification among `videos` (each query's nearest other video) and its chance: the
    project's re-ID probe (`pipeline.probes.reid`) on motion clips — what an encoder's users publish —
    by its stronger attacker, plain cosine or a metric learned on the people of the `train` videos."""
    names = np.array([str(i) for i in range(len(identity))])
    clips = Clips(motion.emb, names[motion.video], np.zeros(len(motion.video), np.int64))
    who = dict(zip(names, identity, strict=True))
    result = probe_reid(clips, who, list(names[videos]), train_videos=list(names[train]))
    return result.metrics.top1, result.metrics.chance_top1
