"""Private-attribute leakage: the attacker panel (`pipeline.probes.attackers`) tries to predict each
private attribute from embeddings; higher cMAP = more leakage, and an attribute leaks as much as the
worst attacker of the panel reads (`probe_panel`; the oracle line is reported apart).

Run it on static-clip embeddings (the paper's protocol) and on the published motion-clip embeddings
(the data-team threat model) by passing the corresponding `Clips`. Attackers fit on every clip of the
videos of ``LeakageConfig.train_splits`` (train and val: the attacker owns its labelled data), each
labelled with its video's attribute value (balanced class weights). By default (``aggregate="video"``)
a test video is scored by its clips' mean probabilities, so cMAP and macro-F1 are over test videos;
``aggregate="clip"`` scores every test clip on its own. cMAP and the leakage share carry a 95% interval
from a bootstrap over test people (`pipeline.probes.bootstrap`; videos when no identities are given).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from pipeline.probes.attackers import fit_attacker, panel_names, torch_attacker
from pipeline.probes.bootstrap import interval, resample_rows, resampled, unit_groups
from pipeline.probes.config import FitConfig, LeakageConfig
from pipeline.probes.fit import Probe, fit_probe
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
    below ``class_rate``. ``leakage`` = (cmap − chance) / (1 − chance); ``*_low``/``*_high``: the
    `LeakageConfig.level` bootstrap interval over ``num_groups`` resampled ``resampled`` (identities or
    videos; NaN without one)."""

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
    leakage: float = math.nan
    cmap_low: float = math.nan
    cmap_high: float = math.nan
    leakage_low: float = math.nan
    leakage_high: float = math.nan
    resampled: str = ""
    num_groups: int = 0


@dataclass(frozen=True)
class WorstAttack:
    """Leakage of one attribute = the worst attacker of the panel (``attacker`` won); the interval is of
    the worst over the panel, resample by resample."""

    attribute: str
    attacker: str
    cmap: float
    chance: float
    leakage: float
    leakage_low: float
    leakage_high: float
    num_test: int
    resampled: str
    num_groups: int


@dataclass(frozen=True)
class LeakagePanel:
    """Every attacker of the panel on every attribute (``attacks``), the worst per attribute, and the
    oracle line (best test score over the MLP's training passes: an upper bound, not an attacker)."""

    panel: str
    attackers: tuple[str, ...]
    attacks: list[AttackResult]
    worst: list[WorstAttack]
    oracle: list[AttackResult]


LEVEL = 0.95  # interval coverage


def normalised(cmap_value: float | np.ndarray, chance: float | np.ndarray) -> float | np.ndarray:
    """Above-chance share of cMAP, (cmap − chance) / (1 − chance): 0 = chance, 1 = perfect."""
    return np.where(np.asarray(chance) < 1.0, (cmap_value - chance) / np.maximum(1.0 - chance, 1e-12), 0.0)


@dataclass(frozen=True, eq=False)
class _Task:
    """One attribute ready to attack: fit rows and labels, test rows, how test clips form units."""

    attribute: str
    classes: list[str]
    x: np.ndarray  # (N, D) fit clips
    y: np.ndarray  # (N,)
    group: np.ndarray  # (N,) video index of each fit clip
    test_x: np.ndarray  # (M, D) test clips
    owner: np.ndarray  # (M,) unit of each test clip
    truth: np.ndarray  # (U,) str label of each unit
    units: list[str]  # (U,) video id of each unit
    aggregate: str

    def score(self, proba: np.ndarray) -> np.ndarray:
        """Test-clip probabilities (M, C) → unit probabilities (U, C)."""
        if self.aggregate == "video":
            return mean_by_owner(proba, self.owner, len(self.units))
        return proba


def _task(
    clips: Clips, labels: Mapping[str, object], splits: Mapping[str, str], attribute: str, cfg: LeakageConfig
) -> _Task:
    fit_splits = [s for s in dict.fromkeys(cfg.train_splits) if s != cfg.test_split]
    train = sorted({v for s in fit_splits for v in labelled_videos(clips, labels, splits, s)})
    test = labelled_videos(clips, labels, splits, cfg.test_split)
    require_split(train, "+".join(fit_splits), f"leakage of {attribute}")
    require_split(test, cfg.test_split, f"leakage of {attribute}")
    classes = sorted({str(labels[v]) for v in [*train, *test]})
    if len(classes) < 2:
        raise ProbeError(f"leakage of {attribute}: one value only ({classes[0]!r}); nothing to attack")
    rows = clips.rows(train)
    test_rows = clips.rows(test)
    group = np.repeat(np.arange(len(train)), [len(clips.rows_by_video[v]) for v in train])
    if cfg.aggregate == "video":
        owner = np.repeat(np.arange(len(test)), [len(clips.rows_by_video[v]) for v in test])
        units = test
    else:
        owner = np.arange(len(test_rows))
        units = [str(v) for v in clips.video_id[test_rows]]
    return _Task(
        attribute=attribute,
        classes=classes,
        x=clips.emb[rows],
        y=encode_labels([labels[v] for v in clips.video_id[rows]], classes),
        group=group,
        test_x=clips.emb[test_rows],
        owner=owner,
        truth=np.array([str(labels[v]) for v in units]),
        units=list(units),
        aggregate=cfg.aggregate,
    )


def _result(task: _Task, name: str, proba: np.ndarray) -> AttackResult:
    predicted = np.array(task.classes)[np.argmax(proba, axis=1)]
    value, chance = cmap(task.truth, proba, task.classes), cmap_chance(task.truth)
    return AttackResult(
        attribute=task.attribute,
        attacker=name,
        cmap=value,
        macro_f1=macro_f1(task.truth, predicted, classes=sorted(set(task.truth))),
        chance=chance,
        class_rate=class_rate(task.truth),
        num_classes=len(task.classes),
        num_train_clips=len(task.y),
        num_test=len(task.truth),
        aggregate=task.aggregate,
        leakage=float(normalised(value, chance)),
    )


def attack(
    clips: Clips,
    labels: Mapping[str, object],
    splits: Mapping[str, str],
    attacker: FitConfig | str,
    *,
    attribute: str = "attribute",
    attacker_name: str | None = None,
    cfg: LeakageConfig | None = None,
    people: Mapping[str, object] | None = None,
) -> AttackResult:
    """Train ``attacker`` (a torch `FitConfig`, or the name of a panel attacker) on the clips of the
    ``cfg.train_splits`` videos to predict ``labels[video]``; score the test videos, with the bootstrap
    interval over ``people`` (video → person; by video without it).

    Classes are every value seen in train or test (compared as str); one absent from training still
    has a column, with low probability.
    """
    cfg = cfg or LeakageConfig()
    task = _task(clips, labels, splits, attribute, cfg)
    c = len(task.classes)
    if isinstance(attacker, str):
        predict, name = fit_attacker(attacker, task.x, task.y, task.group, c, cfg), attacker
    else:
        predict = torch_attacker(attacker)(task.x, task.y, task.group, c, attacker.seed)
        name = attacker_name or attacker.kind
    proba = task.score(predict(task.test_x))
    group, by = unit_groups(task.units, people)
    draws = _draws(group, cfg)
    chance = resampled(lambda r: cmap_chance(task.truth[r]), draws)
    values = resampled(lambda r: cmap(task.truth[r], proba[r], task.classes), draws)
    leak = np.asarray(normalised(values, chance))
    return _with_interval(_result(task, name, proba), values, leak, by, len(np.unique(group)))


def _resampled_cmap(task: _Task, proba: np.ndarray, draws: list[np.ndarray]) -> np.ndarray:
    return resampled(lambda r: cmap(task.truth[r], proba[r], task.classes), draws)


def _draws(group: np.ndarray, cfg: LeakageConfig) -> list[np.ndarray]:
    return resample_rows(group, cfg.bootstrap, cfg.seed) if len(np.unique(group)) >= 2 else []


def _oracle(task: _Task, cfg: FitConfig) -> np.ndarray:
    """Test-unit probabilities of the MLP after the pass with the best test cMAP (peeks at test)."""
    best: list[tuple[float, np.ndarray]] = []

    def after_pass(probe: Probe) -> None:
        proba = task.score(probe.predict_proba(task.test_x))
        value = cmap(task.truth, proba, task.classes)
        if not best or value > best[0][0]:
            best[:] = [(value, proba)]

    fit_probe(task.x, task.y, cfg, num_classes=len(task.classes), after_pass=after_pass)
    return best[0][1]


def _with_interval(
    result: AttackResult, values: np.ndarray, leak: np.ndarray, by: str, groups: int
) -> AttackResult:
    (c_lo, c_hi), (l_lo, l_hi) = interval(values, LEVEL), interval(leak, LEVEL)
    return replace(
        result,
        cmap_low=c_lo,
        cmap_high=c_hi,
        leakage_low=l_lo,
        leakage_high=l_hi,
        resampled=by,
        num_groups=groups,
    )


def attack_attribute(
    clips: Clips,
    labels: Mapping[str, object],
    splits: Mapping[str, str],
    cfg: LeakageConfig,
    *,
    attribute: str = "attribute",
    people: Mapping[str, object] | None = None,
) -> tuple[list[AttackResult], WorstAttack, AttackResult | None]:
    """Every attacker of ``cfg.panel`` on one attribute, each with its bootstrap interval over the test
    units' people (``people``: video → person; by video without it); the worst of them; the oracle
    line (full panel only, else None)."""
    task = _task(clips, labels, splits, attribute, cfg)
    c = len(task.classes)
    scored = {
        name: task.score(fit_attacker(name, task.x, task.y, task.group, c, cfg)(task.test_x))
        for name in panel_names(cfg)
    }
    group, by = unit_groups(task.units, people)
    num_groups = len(np.unique(group))
    draws = _draws(group, cfg)
    chance = resampled(lambda r: cmap_chance(task.truth[r]), draws)
    results, leaks = [], []
    for name, proba in scored.items():
        values = _resampled_cmap(task, proba, draws)
        leak = np.asarray(normalised(values, chance))
        leaks.append(leak)
        results.append(_with_interval(_result(task, name, proba), values, leak, by, num_groups))
    winner = max(results, key=lambda r: r.leakage)
    low, high = interval(np.max(np.stack(leaks), axis=0) if draws else np.zeros(0), LEVEL)
    worst = WorstAttack(
        attribute=attribute,
        attacker=winner.attacker,
        cmap=winner.cmap,
        chance=winner.chance,
        leakage=winner.leakage,
        leakage_low=low,
        leakage_high=high,
        num_test=winner.num_test,
        resampled=by,
        num_groups=num_groups,
    )
    oracle = None
    mlp = cfg.attackers.get("mlp")
    if cfg.panel == "full" and mlp is not None:
        proba = _oracle(task, mlp)
        values = _resampled_cmap(task, proba, draws)
        leak = np.asarray(normalised(values, chance))
        oracle = _with_interval(_result(task, "oracle", proba), values, leak, by, num_groups)
    return results, worst, oracle


def probe_panel(
    clips: Clips,
    attributes: Mapping[str, Mapping[str, object]],
    splits: Mapping[str, str],
    cfg: LeakageConfig | None = None,
    *,
    people: Mapping[str, object] | None = None,
) -> LeakagePanel:
    """The panel on every attribute (``{name: {video_id: value}}``), in that order."""
    cfg = cfg or LeakageConfig()
    attacks, worst, oracle = [], [], []
    for name, labels in attributes.items():
        results, w, o = attack_attribute(clips, labels, splits, cfg, attribute=name, people=people)
        attacks.extend(results)
        worst.append(w)
        oracle.extend([o] if o is not None else [])
    return LeakagePanel(cfg.panel, panel_names(cfg), attacks, worst, oracle)


def probe_leakage(
    clips: Clips,
    attributes: Mapping[str, Mapping[str, object]],
    splits: Mapping[str, str],
    cfg: LeakageConfig | None = None,
) -> list[AttackResult]:
    """Every attacker of the panel on every attribute, attribute by attribute, attackers in panel order
    (the anonymize gate's view: the worst over these is the leakage; intervals over videos)."""
    return probe_panel(clips, attributes, splits, cfg).attacks


def leakage_share(cmap_value: float, chance: float) -> float:
    """`normalised` of one figure: (cmap − chance) / (1 − chance)."""
    return float(normalised(cmap_value, chance))


def leakage_removed(raw: float, anon: float, chance: float) -> float:
    """Fraction of the above-chance leakage removed, ``(raw − anon) / (raw − chance)``: 1 = down to
    chance, 0 = unchanged, < 0 = more leakage; NaN when ``raw`` is not above chance (nothing to remove)."""
    if raw <= chance:
        return math.nan
    return (raw - anon) / (raw - chance)
