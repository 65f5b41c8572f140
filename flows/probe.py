"""`probe`: what embeddings kept (actions, temporal detection, anomaly) and what they leak (private
attributes, identity, bias), on the raw latent cache and on anonymized embeddings of the same clips.

Labels always come from the private store; anonymized embeddings come from an adapter applied to the
store (`flows.views.anonymize_view`) or from published shards joined to the store's clips on
(video_id, clip_index); the embedding sets are built in flows/probe_sets.py. Every embedding set goes
through the same probes with the same seeds; a probe whose labels are absent is skipped with its
reason recorded. PROBE_DIR/probe.json, written last and atomically, holds every metric, chance level,
seed and count (schema: docs/probes.md).

A store of more than `max_clips` motion clips (default PROBE_MAX_CLIPS) is probed on a seeded sample of
whole people per split (`flows.views.sample_videos`): only those videos' embeddings are read (and
anonymized, and read from published shards), so memory follows the cap, not the store; the record's
`store.sample` says which and how many.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flows.limits import PROBE_MAX_CLIPS
from flows.probe_sets import EmbeddingSet, adapter_set, published_sets, raw_set, unique_names
from flows.views import Labels, Sample, labels_of, sample_videos
from pipeline.errors import ConfigError
from pipeline.probes.config import ProbeConfig
from pipeline.probes.inputs import Clips, ProbeError
from stores.errors import SchemaVersionError, StoreError

if TYPE_CHECKING:
    from stores.latent_cache import CacheView

KIND: Literal["aam-pipeline/probe"] = "aam-pipeline/probe"
SCHEMA_VERSION = 1
PROBE_JSON = "probe.json"

Task = Literal["action", "temporal", "anomaly", "leakage", "reid", "bias"]
TASKS: tuple[Task, ...] = ("action", "temporal", "anomaly", "leakage", "reid", "bias")
# What each set records, in order; leakage runs on static clips and on motion clips.
PROBES = ("action", "temporal", "anomaly", "leakage_static", "leakage_motion", "reid", "bias")
TASK_OF = {p: ("leakage" if p.startswith("leakage") else p) for p in PROBES}
RESAMPLES_REID = 200  # bootstrap resamples of the queried people for re-ID's 95% intervals


# --- config and record ---------------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ProbeRunConfig(_Frozen):
    """What `probe` computes: which tasks, one seed for every probe, and each probe's settings."""

    seed: int = 0
    tasks: tuple[Task, ...] = Field(default=TASKS, min_length=1)
    reid_split: str | None = Field(
        default="test", description="videos of this split are the re-ID queries and gallery; None = all"
    )
    probes: ProbeConfig = ProbeConfig()
    max_clips: int = Field(
        default=PROBE_MAX_CLIPS,
        ge=0,
        description="above this many motion clips, probe a seeded sample of whole people per split (0: all)",
    )

    def effective(self) -> ProbeConfig:
        """The probe settings with every seed set to `seed`."""
        return self.probes.reseeded(self.seed)


class ProbeOutcome(_Frozen):
    """One probe on one embedding set: metrics when it ran, the reason when it did not."""

    status: Literal["ok", "skipped"]
    reason: str | None = None
    seconds: float | None = None
    metrics: dict[str, Any] | None = None


class SetRecord(_Frozen):
    """One embedding set: `raw` (the cache), `adapter` (an adapter applied to it) or `published`."""

    name: str
    kind: Literal["raw", "adapter", "published"]
    source: dict[str, Any]
    counts: dict[str, int]
    probes: dict[str, ProbeOutcome]


class ProbeRecord(_Frozen):
    """PROBE_DIR/probe.json."""

    kind: Literal["aam-pipeline/probe"] = KIND
    schema_version: int
    created_at: str
    config: dict[str, Any]
    store: dict[str, Any]
    tasks: dict[str, ProbeOutcome]  # task-level plan: ok (will run) or skipped with the reason
    sets: list[SetRecord]
    timings_s: dict[str, float]

    def set(self, name: str) -> SetRecord:
        for s in self.sets:
            if s.name == name:
                return s
        raise KeyError(name)


@dataclass(frozen=True)
class ProbeResult:
    path: Path
    record: ProbeRecord
    seconds: float


def with_attackers(attackers: str) -> ProbeConfig:
    """The default probe settings with the leakage panel ``attackers`` (fast or full; `--attackers`)."""
    from pipeline.probes.config import LeakageConfig

    if attackers not in ("fast", "full"):
        raise ConfigError(f"--attackers: expected fast or full, got {attackers!r}")
    return ProbeConfig(leakage=LeakageConfig(panel=attackers))  # type: ignore[arg-type]


def plan_tasks(labels: Labels, tasks: Sequence[str]) -> dict[str, ProbeOutcome]:
    """Per task: ok, or skipped with the reason (not requested, or the store lacks its labels)."""
    missing = {
        "action": None if labels.actions else "the store has no `action` labels (trimmed clips)",
        "temporal": None
        if labels.segments
        else "the store has no `segments` labels (untrimmed videos with annotated actions)",
        "anomaly": None if labels.anomaly else "the store has no `anomaly_segments` labels",
        "leakage": None
        if labels.attributes
        else "the store has no private_* attribute columns (other than private_identity)",
        "reid": None if labels.identity else "the store has no `private_identity` column",
        "bias": _bias_gap(labels),
    }
    plan: dict[str, ProbeOutcome] = {}
    for task in TASKS:
        reason = "not requested (--tasks)" if task not in tasks else missing[task]
        plan[task] = (
            ProbeOutcome(status="ok") if reason is None else ProbeOutcome(status="skipped", reason=reason)
        )
    return plan


def _bias_gap(labels: Labels) -> str | None:
    if not labels.bias_splits:
        return "the store has no `bias_split` labels (a group-skewed train / balanced test subset)"
    if labels.bias_group is None:
        return "the store has no private_gender or other two-valued private_* attribute to group by"
    if not labels.actions:
        return "the store has no `action` labels"
    return None


# --- running the probes --------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON-ready copy: dataclasses to dicts, numpy scalars to Python, NaN/inf to None, keys to str."""
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _leakage(clips: Clips, labels: Labels, cfg: ProbeConfig) -> dict[str, Any]:
    """The attacker panel on every attribute, each figure with its 95% interval over people; the worst
    attacker per attribute (the leakage) and, with the full panel, the oracle line; an attribute the
    probe cannot score is skipped by name."""
    from pipeline.probes.attackers import panel_names
    from pipeline.probes.leakage import attack_attribute

    attacks: list[Any] = []
    worst: list[Any] = []
    oracle: list[Any] = []
    skipped: dict[str, str] = {}
    for name, values in labels.attributes.items():
        try:
            results, w, o = attack_attribute(
                clips, values, labels.splits, cfg.leakage, attribute=name, people=labels.identity
            )
        except ProbeError as err:
            skipped[name] = str(err)
            continue
        attacks.extend(_plain(r) for r in results)
        worst.append(_plain(w))
        oracle.extend([_plain(o)] if o is not None else [])
    if not attacks:
        raise ProbeError(
            "no attribute could be scored: " + "; ".join(f"{k}: {v}" for k, v in skipped.items())
        )
    return {
        "panel": cfg.leakage.panel,
        "attackers": list(panel_names(cfg.leakage)),
        "fit_splits": list(cfg.leakage.train_splits),
        "interval": {"level": 0.95, "resamples": cfg.leakage.bootstrap, "over": worst[0]["resampled"]},
        "attacks": attacks,
        "worst": worst,
        "oracle": oracle,
        "skipped": skipped,
    }


def reid_protocol(split: str | None) -> str:
    """``within-split`` when the queried split is every video or train; else ``cross-split``: each queried
    video against every other video of a different action, from any split (`pipeline.probes.reid`).
    Splits drawn by person leave people whose videos all lie in the queried split with few others there to
    find; splits that are not (the test people also appear in train) would let a within-split query miss
    the person's train videos, the very ones an attacker holding the private store has."""
    return "within-split" if split in (None, "train") else "cross-split"


def _reid(clips: Clips, labels: Labels, split: str | None, seed: int = 0) -> Any:
    from pipeline.probes.reid import probe_reid

    videos = None if split is None else [v for v, s in labels.splits.items() if s == split]
    # the learned-metric attacker trains on the train split's people, never on a queried one (a
    # manifest whose splits are not by person shares some); none when the queries are all or train
    train: list[str] = []
    if split not in (None, "train"):
        queried = {str(labels.identity.get(v)) for v in videos or ()}
        train = [
            v for v, s in labels.splits.items() if s == "train" and str(labels.identity.get(v)) not in queried
        ]
    protocol = reid_protocol(split)
    if protocol == "cross-split":
        result = probe_reid(
            clips,
            labels.identity,
            None,
            train_videos=train,
            queries=videos,
            groups=labels.actions,
            resamples=RESAMPLES_REID,
            seed=seed,
        )
    else:
        result = probe_reid(
            clips, labels.identity, videos, train_videos=train, resamples=RESAMPLES_REID, seed=seed
        )
    return _plain(result.metrics) | {
        "split": split,
        "protocol": result.protocol,
        "attacker": result.attacker,
        "attackers": {name: _plain(m) for name, m in result.attackers.items()},
        "skipped_attackers": result.skipped,
        "num_train_identities": result.num_train_identities,
        "interval": {"level": 0.95, "over": "queried people", "resamples": RESAMPLES_REID},
        **{
            f"{k}_{end}": _plain(v[i])
            for k, v in result.intervals.items()
            for i, end in enumerate(("low", "high"))
        },
    }


def _bias(clips: Clips, labels: Labels, cfg: ProbeConfig) -> Any:
    from pipeline.probes.bias import probe_bias

    group = labels.bias_group
    groups = labels.attributes[group] if group else {}
    metrics = _plain(probe_bias(clips, labels.actions, labels.bias_splits, groups, cfg.bias))
    return metrics | {"group_attribute": group}


def _probe_functions(
    es: EmbeddingSet, labels: Labels, config: ProbeRunConfig, cfg: ProbeConfig
) -> dict[str, Callable[[], Any]]:
    from pipeline.probes import action, anomaly, temporal

    motion = es.motion
    return {
        "action": lambda: _plain(
            action.probe_action(motion, labels.actions, labels.splits, cfg.action, people=labels.identity)
        ),
        "temporal": lambda: _plain(
            temporal.probe_temporal(
                motion, labels.segments, labels.splits, cfg.temporal, people=labels.identity
            )
        ),
        "anomaly": lambda: _plain(
            anomaly.probe_anomaly(
                motion,
                labels.anomaly,
                labels.splits,
                labels.num_frames,
                labels.fps,
                cfg.anomaly,
                people=labels.identity,
            )
        ),
        "leakage_static": lambda: _leakage(es.static, labels, cfg) if es.static is not None else None,
        "leakage_motion": lambda: _leakage(motion, labels, cfg),
        "reid": lambda: _reid(motion, labels, config.reid_split, config.seed),
        "bias": lambda: _bias(motion, labels, cfg),
    }


def _run_one(function: Callable[[], Any]) -> ProbeOutcome:
    start = time.perf_counter()
    try:
        metrics = function()
    except ProbeError as err:
        return ProbeOutcome(status="skipped", reason=str(err), seconds=round(time.perf_counter() - start, 3))
    return ProbeOutcome(status="ok", seconds=round(time.perf_counter() - start, 3), metrics=metrics)


def probe_set(
    es: EmbeddingSet,
    labels: Labels,
    config: ProbeRunConfig,
    plan: Mapping[str, ProbeOutcome],
    on_probe: Callable[[str, str, ProbeOutcome], None] | None = None,
) -> SetRecord:
    """Every probe of `PROBES` on one embedding set; skipped ones carry their reason."""
    cfg = config.effective()
    functions = _probe_functions(es, labels, config, cfg)
    outcomes = {}
    for name in PROBES:
        task = plan[TASK_OF[name]]
        if task.status == "skipped":
            outcome = task
        elif name == "leakage_static" and es.static is None:
            outcome = ProbeOutcome(status="skipped", reason=es.no_static)
        else:
            outcome = _run_one(functions[name])
        outcomes[name] = outcome
        if on_probe is not None:
            on_probe(es.name, name, outcome)
    return SetRecord(name=es.name, kind=es.kind, source=es.source, counts=es.counts(), probes=outcomes)


def _ci(figure: Mapping[str, Any], key: str = "leakage") -> str:
    """`` [low, high]`` of ``figure``'s 95% interval of ``key``, or nothing when it has none."""
    low, high = figure.get(f"{key}_low"), figure.get(f"{key}_high")
    return "" if low is None or high is None else f" [{low:.3f}, {high:.3f}]"


def brief(name: str, outcome: ProbeOutcome) -> str:
    """One line about one probe's outcome, for progress output."""
    if outcome.status == "skipped" or outcome.metrics is None:
        return f"{name}: skipped ({outcome.reason})"
    m = outcome.metrics
    text = {
        "action": lambda: f"top-1 {m['top1']:.3f}{_ci(m, 'top1')} (chance {m['chance_top1']:.3f})",
        "temporal": lambda: f"mAP {m['map']:.3f}{_ci(m, 'map')}",
        "anomaly": lambda: f"frame AUC {m['auc']:.3f}{_ci(m, 'auc')} (chance 0.5)",
        "reid": lambda: (
            f"top-1 {m['top1']:.3f}"
            + (f" [{m['top1_low']:.3f}, {m['top1_high']:.3f}]" if m.get("top1_low") is not None else "")
            + f" ({m['attacker']}, {m.get('protocol', 'within-split')}; "
            f"chance {m['chance_top1']:.3f})"
            + "".join(f"; {k} not run: {why}" for k, why in (m.get("skipped_attackers") or {}).items())
        ),
        "bias": lambda: f"Δ {m['delta']:.3f}, accuracy {m['accuracy']:.3f}",
    }.get(name)
    if text is not None:
        detail = text()
    else:
        worst = max(m.get("worst") or m["attacks"], key=lambda a: a["leakage"])
        detail = (
            f"worst cMAP {worst['cmap']:.3f} ({worst['attribute']}, {worst['attacker']} of the "
            f"{m.get('panel', 'fast')} panel; chance {worst['chance']:.3f}; leakage {worst['leakage']:.3f}"
            f"{_ci(worst)})"
        )
    return f"{name}: {detail} in {outcome.seconds or 0:.1f} s"


# --- the flow ------------------------------------------------------------------------------------------


@contextmanager
def _tracker(total: int, bar: bool, echo: Callable[[str], None] | None) -> Iterator[Callable[..., None]]:
    """Calls per finished probe: a progress bar on a terminal, else one line per probe via `echo`."""
    if bar:
        from flows.progress import progress

        with progress("probe", total, "probes", bar=True) as advance:
            yield lambda set_name, name, outcome: advance()
        return

    def line(set_name: str, name: str, outcome: ProbeOutcome) -> None:
        if echo is not None:
            echo(f"probe [{set_name}] {brief(name, outcome)}")

    yield line


def store_summary(url: str, view: CacheView, labels: Labels, sample: Sample | None = None) -> dict[str, Any]:
    """The store's attributes and counts (of the whole store; `sample` adds what was probed of it)."""
    summary = {
        "url": url,
        "encoder_id": view.attrs.encoder_id,
        "attrs": view.attrs.model_dump(mode="json"),
        "counts": {
            "videos": int(view.videos.num_rows),
            "motion_clips": int(view.clips.num_rows),
            "static_clips": int(view.static_clips.num_rows),
            "errors": int(view.errors.num_rows),
        },
        "labels": labels.counts(),
        "attributes": sorted(labels.attributes),
        "bias_group": labels.bias_group,
    }
    if sample is not None:
        summary["sample"] = sample.record()
    return summary


def write_record(out: Path, record: ProbeRecord) -> Path:
    """Write PROBE_DIR/probe.json atomically (temporary file, then rename)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; pass a folder for the probe results")
    out.mkdir(parents=True, exist_ok=True)
    path = out / PROBE_JSON
    tmp = out / f".{PROBE_JSON}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(record.model_dump(mode="json"), indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path


def probe(
    store: str | Path,
    out: str | Path,
    config: ProbeRunConfig | None = None,
    *,
    adapters: Sequence[str | Path] = (),
    published: Sequence[str | Path] = (),
    bar: bool = False,
    echo: Callable[[str], None] | None = None,
) -> ProbeResult:
    """Probe the raw embeddings of `store` and every anonymized set (each adapter in `adapters`, each
    partition under each folder in `published`); write OUT/probe.json last."""
    from stores.latent_cache import LatentCache

    config = config or ProbeRunConfig()
    start = time.perf_counter()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; pass a folder for the probe results")
    cache = LatentCache.open(store)
    tables = cache.read(arrays=False)
    labels = labels_of(tables.videos)
    sample = sample_videos(tables.clips, labels, config.max_clips, config.seed)
    if sample.videos is not None and echo is not None:
        echo(
            f"probe: a sample of {sample.motion_clips} of {sample.of_motion_clips} motion clips "
            f"({sample.num_videos} of {sample.of_videos} videos, whole people per split; --max-clips "
            f"{config.max_clips})"
        )
    view = cache.read() if sample.videos is None else cache.read(videos=sample.videos)
    read_s = time.perf_counter() - start

    sets = [raw_set(view)]
    for folder in adapters:
        sets.append(adapter_set(view, Path(folder), f"adapter:{Path(folder).name}"))
    for folder in published:
        sets.extend(published_sets(view, Path(folder), store=str(store), only_view=sample.videos is not None))
    sets = unique_names(sets)
    load_s = time.perf_counter() - start - read_s

    plan = plan_tasks(labels, config.tasks)
    records = []
    with _tracker(len(sets) * len(PROBES), bar, echo) as on_probe:
        for es in sets:
            records.append(probe_set(es, labels, config, plan, on_probe))
    total_s = time.perf_counter() - start
    dumped = config.model_dump(mode="json") | {"probes": config.effective().model_dump(mode="json")}
    record = ProbeRecord(
        schema_version=SCHEMA_VERSION,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        config=dumped,
        store=store_summary(cache.url, tables, labels, sample),
        tasks=plan,
        sets=records,
        timings_s={
            "read_store": round(read_s, 3),
            "load_sets": round(load_s, 3),
            "probes": round(total_s - read_s - load_s, 3),
            "total": round(total_s, 3),
        },
    )
    return ProbeResult(write_record(out, record), record, total_s)


def load_record(probe_dir: str | Path) -> ProbeRecord:
    """Read PROBE_DIR/probe.json; refuses a newer schema version or a damaged file with a clear error."""
    path = Path(probe_dir) / PROBE_JSON
    if not path.is_file():
        raise ConfigError(f"{probe_dir}: no {PROBE_JSON}; pass the --out of `aam-pipeline probe`")
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise StoreError(f"{path} is not readable JSON ({err}); rerun `aam-pipeline probe`") from err
    if not isinstance(raw, dict) or raw.get("kind") != KIND:
        raise StoreError(f"{path} is not a probe record (kind {KIND!r}); pass the --out of a probe run")
    version = raw.get("schema_version")
    if not isinstance(version, int):
        raise StoreError(f"{path} has no valid schema_version ({version!r}); rerun `aam-pipeline probe`")
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path} was written by a newer aam-pipeline (schema_version {version}, this one reads up to "
            f"{SCHEMA_VERSION}); upgrade aam-pipeline"
        )
    try:
        return ProbeRecord.model_validate(raw)
    except ValidationError as err:
        raise StoreError(f"{path}: unreadable probe record ({err.errors()[0]['msg']}); rerun probe") from err
