"""`anonymize`: apply a trained adapter to a latent cache and publish the anonymized motion clips.

1. Load the adapter, refusing one trained for another encoder or embedding size.
2. Anonymize every motion clip, streamed `chunk_rows` at a time (static clips are not needed), into a
   temporary file without a name (`spill_dir`, default the system's temporary folder; N × D float32,
   gone when the process ends, however it ends): memory follows the chunk, not the store.
3. Refuse an adapter that leaves the embeddings (nearly) equal to the raw cache, whatever else is set
   (every clip's relative change is kept: N floats).
4. Privacy gate, on by default: when the cache has `private_*` labels, attack the anonymized motion-clip
   embeddings with the leakage probe's attacker panel (`gate_attackers`: fast by default, full one
   option away; trained on the train and val splits, scored on the held-out test split, 95% intervals
   over people) and the raw ones the same way; refuse to publish — nothing written — when the worst
   leakage is above `max_leakage` (default DEFAULT_MAX_LEAKAGE) or the smallest reduction from raw (per
   attribute: the panel's worst on raw against its worst on anonymized clips) is below `min_reduction`
   (default DEFAULT_MIN_REDUCTION). `gate=False` publishes whatever was measured.
   Without labels leakage cannot be measured: refuse unless `allow_unmeasured`, which the manifest
   records. A store of more than `gate_max_clips` motion clips (default GATE_MAX_CLIPS) is measured on
   a seeded sample of whole people per split (`flows.views.sample_videos`; test split still held out),
   its size in the record's `sample`; at or below the cap the gate measures every clip.
5. Publish through stores/published.py (`publish_rows`, one data file's rows read back from the spill at
   a time): atomic, reproducible, appending only new videos; the files are byte for byte those of
   `publish` on the whole array in memory. Video and clip ids are keyed pseudonyms
   (stores/pseudonyms.py; the key stays in the store) unless `original_ids`.

Never published: private labels, raw or static-clip embeddings, source paths, the owner's video ids by
default (the publisher refuses the first three too). Leakage is "fraction of the way from chance to
perfect" in cMAP: 0 = chance, 1 = perfect.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from flows.cpu import torch_threads
from flows.limits import CHUNK_ROWS, GATE_MAX_CLIPS
from flows.privacy_budget import DEFAULT_MAX_LEAKAGE, DEFAULT_MIN_REDUCTION
from flows.views import Labels, Sample, labels_of, load_for, motion_clips, sample_videos
from pipeline.adapter import adapter_checksum, anonymize_array
from pipeline.errors import ConfigError, PipelineError
from pipeline.probes.config import LeakageConfig
from pipeline.probes.inputs import ProbeError
from pipeline.probes.leakage import AttackResult, LeakagePanel, leakage_removed, probe_panel
from stores._cache_types import CacheView
from stores.latent_cache import LatentCache
from stores.pseudonyms import default_key_location, fingerprint, load_key, pseudonyms
from stores.published import (
    LeakageNotMeasured,
    PublicationInfo,
    PublishResult,
    public_encoder_id,
    publish_rows,
)

# `--faiss-index auto`: exact search up to this many rows, an IVF index above.
IVF_FROM_ROWS = 200_000

# Raw leakage below this share of the way from chance to perfect is noise: nothing to remove there,
# so the reduction is not asked of it.
MIN_RAW_LEAKAGE = 0.02
# An adapter whose output is this close to its input publishes raw embeddings: refused whatever the gate.
NEAR_RAW_ROW = 1e-4  # a row whose relative change ||a - r|| / ||r|| is at most this is "unchanged"
NEAR_RAW_ROWS_MAX = 0.01  # refused when more than this share of rows are unchanged
NEAR_RAW_MEDIAN = 0.01  # or when the median relative change is below this
# anonymize_array's batch: the paper variant attends across runs of this many consecutive rows, so its
# chunks are whole runs (rounded up) and every row's output is what the whole array in memory gives.
ADAPTER_BATCH = 512


class PrivacyGateError(PipelineError):
    """The privacy gate refused to publish; nothing was written."""


class AnonymizeConfig(BaseModel):
    """Options of one `anonymize` run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: str = Field("", description="the dataset= partition value (default: dataset_name(store))")
    adapter_version: str = Field("", description="the adapter= partition value (default: sha-<12 hex>)")
    max_leakage: float = Field(DEFAULT_MAX_LEAKAGE, ge=0, le=1)
    min_reduction: float = Field(DEFAULT_MIN_REDUCTION, le=1)
    gate: bool = Field(True, description="refuse when the thresholds are not met (False: publish anyway)")
    allow_unmeasured: bool = Field(False, description="publish when leakage cannot be measured (no labels)")
    original_ids: bool = Field(False, description="publish the owner's video ids instead of pseudonyms")
    pseudonym_key: str = Field("", description="the key file (default: _pseudonym.key inside the store)")
    mode: Literal["new", "append"] = "append"
    float16: bool = False
    normalise: bool = Field(False, description="publish unit-length rows (l2)")
    faiss_index: Literal["flat", "ivf", "auto"] | None = None
    zarr_copy: bool = False
    gate_attackers: Literal["fast", "full"] = Field(
        "fast", description="the gate's attacker panel (pipeline.probes.attackers): fast or full"
    )
    seed: int = 0
    threads: int = Field(1, ge=0, description="torch CPU threads for the adapter (0: torch's default)")
    chunk_rows: int = Field(
        CHUNK_ROWS, ge=1, description="motion clips anonymized at once (paper variant: whole runs of 512)"
    )
    gate_max_clips: int = Field(
        GATE_MAX_CLIPS,
        ge=0,
        description="above this many motion clips the gate measures a seeded sample of people (0: all)",
    )
    spill_dir: str = Field(
        "", description="folder of the temporary N x D float32 file of anonymized rows (default: TMPDIR)"
    )


@dataclass(frozen=True)
class Gate:
    """What the gate measured, as published in the manifest (`leakage`)."""

    measured: bool
    worst_leakage: float | None = None  # max over attributes and attackers, anonymized motion clips
    min_reduction: float | None = None  # min over attributes with raw leakage to remove, worst vs worst
    record: dict[str, Any] | None = None
    reason: str = ""


@dataclass(frozen=True)
class AnonymizeResult:
    publish: PublishResult
    gate: Gate
    clips: int
    dim: int
    seconds: float
    anonymize_seconds: float
    gate_seconds: float
    publish_seconds: float


# --- the privacy gate ----------------------------------------------------------------------------------


def _share(result: AttackResult) -> float:
    """cMAP as a share of the way from chance to perfect."""
    return (result.cmap - result.chance) / (1.0 - result.chance) if result.chance < 1.0 else 0.0


def _round(value: float) -> float | None:
    return None if not math.isfinite(value) else round(value, 4)


def _panel(view: CacheView, rows: np.ndarray, labels: Labels, cfg: LeakageConfig) -> LeakagePanel:
    """The panel on the motion clips `rows` of `view`, intervals over the store's people."""
    clips = motion_clips(view, rows)
    return probe_panel(clips, labels.attributes, labels.splits, cfg, people=labels.identity or None)


def measure_gate(
    view: CacheView, labels: Labels, anonymized: np.ndarray, seed: int = 0, panel: str = "fast"
) -> Gate:
    """Attack raw and anonymized motion clips of the held-out split with the leakage panel (`panel`:
    fast or full, `pipeline.probes.attackers`), intervals over people (see module docstring)."""
    if not labels.attributes:
        return Gate(measured=False, reason="the cache has no private attribute labels")
    cfg = LeakageConfig(panel=panel, seed=seed)  # type: ignore[arg-type]
    attackers = {name: a.model_copy(update={"seed": seed}) for name, a in cfg.attackers.items()}
    cfg = cfg.model_copy(update={"attackers": attackers})
    try:
        raw = _panel(view, view.motion, labels, cfg)
        anon = _panel(view, anonymized, labels, cfg)
    except ProbeError as err:
        return Gate(measured=False, reason=f"leakage could not be measured: {err}")
    attributes: dict[str, dict[str, Any]] = {}
    worst, reductions = 0.0, []
    for r, a in zip(raw.attacks, anon.attacks, strict=True):
        removed = leakage_removed(r.cmap, a.cmap, a.chance)
        raw_share, share = _share(r), _share(a)
        worst = max(worst, share)
        attributes.setdefault(a.attribute, {})[a.attacker] = {
            "cmap": _round(a.cmap),
            "chance": _round(a.chance),
            "leakage": _round(share),
            "leakage_interval": [_round(a.leakage_low), _round(a.leakage_high)],
            "raw_cmap": _round(r.cmap),
            "raw_leakage": _round(raw_share),
            "removed": _round(removed),
        }
    # The reduction compares the privacy figure on each side: the panel's worst on raw against its worst
    # on anonymized clips (the two may be different attackers); per-attacker reductions stay on record.
    for rw, aw in zip(raw.worst, anon.worst, strict=True):
        removed = (rw.leakage - aw.leakage) / rw.leakage if rw.leakage > 0 else math.nan
        if rw.leakage >= MIN_RAW_LEAKAGE and math.isfinite(removed):
            reductions.append(removed)
        attributes[aw.attribute]["worst"] = {
            "won_by": aw.attacker,
            "leakage": _round(aw.leakage),
            "leakage_interval": [_round(aw.leakage_low), _round(aw.leakage_high)],
            "raw_won_by": rw.attacker,
            "raw_leakage": _round(rw.leakage),
            "removed": _round(removed),
        }
    reduction = min(reductions) if reductions else None
    resampled = anon.worst[0].resampled if anon.worst else "identities"
    high = max((w.leakage_high for w in anon.worst if math.isfinite(w.leakage_high)), default=math.nan)
    record = {
        "view": "motion clips",
        "split": f"attackers trained on {cfg.train_split}, scored on {cfg.test_split}",
        "panel": f"{anon.panel}: {', '.join(anon.attackers)}",
        "interval": f"95% over {resampled}, {cfg.bootstrap} resamples",
        "test_videos": anon.attacks[0].num_test,
        "worst_leakage": _round(worst),
        "worst_leakage_high": _round(high),
        "min_reduction": None if reduction is None else _round(reduction),
        "attributes": attributes,
    }
    return Gate(measured=True, worst_leakage=worst, min_reduction=reduction, record=record)


def check_gate(gate: Gate, config: AnonymizeConfig) -> None:
    """Raise PrivacyGateError when the gate is on and its thresholds are not met, or when leakage could
    not be measured and `allow_unmeasured` is not set."""
    if not gate.measured:
        if config.allow_unmeasured:
            return
        raise PrivacyGateError(
            f"leakage was not measured ({gate.reason}), so nothing shows the published embeddings are "
            "private; add private_* labels to the manifest of some videos, or pass --allow-unmeasured to "
            "publish unmeasured (the manifest and dataset card say so); nothing published"
        )
    if not config.gate:
        return
    if gate.worst_leakage is not None and gate.worst_leakage > config.max_leakage:
        raise PrivacyGateError(
            f"privacy gate: worst leakage {gate.worst_leakage:.3f} of the way from chance to perfect "
            f"is above --max-leakage {config.max_leakage}; nothing published"
        )
    if gate.min_reduction is None:
        return  # the raw embeddings leak nothing measurable: there is nothing to remove
    if gate.min_reduction < config.min_reduction:
        raise PrivacyGateError(
            f"privacy gate: smallest reduction of above-chance leakage {gate.min_reduction:.3f} is below "
            f"--min-reduction {config.min_reduction}; nothing published"
        )


def relative_change(raw: np.ndarray, anonymized: np.ndarray) -> np.ndarray:
    """||a - r|| / ||r|| of each row (N,) float64: what `check_change` judges."""
    norm = np.linalg.norm(raw.astype(np.float64), axis=1)
    change: np.ndarray = np.linalg.norm(anonymized.astype(np.float64) - raw, axis=1) / np.maximum(norm, 1e-12)
    return change


def check_not_raw(raw: np.ndarray, anonymized: np.ndarray) -> None:
    """Refuse an adapter whose output is (nearly) its input: that would publish the raw embeddings."""
    check_change(relative_change(raw, anonymized))


def check_change(change: np.ndarray) -> None:
    """Refuse when more than NEAR_RAW_ROWS_MAX of the rows' relative changes (N,) are at most
    NEAR_RAW_ROW, or their median is below NEAR_RAW_MEDIAN."""
    unchanged = int(np.sum(change <= NEAR_RAW_ROW))
    median = float(np.median(change)) if len(change) else 0.0
    if unchanged > NEAR_RAW_ROWS_MAX * len(change) or median < NEAR_RAW_MEDIAN:
        raise PrivacyGateError(
            f"the adapter leaves the embeddings (nearly) raw: {unchanged} of {len(change)} clips unchanged, "
            f"median relative change {median:.2g} (refused below {NEAR_RAW_MEDIAN:g}, whatever the gate); "
            "train the adapter longer or check --lr / --erase-dims; nothing published"
        )


def gate_record(gate: Gate, config: AnonymizeConfig) -> dict[str, Any]:
    """How the publish was gated, as the manifest records it."""
    if not gate.measured:
        return {"gate": "off: leakage not measured, published with allow_unmeasured"}
    if not config.gate:
        return {"gate": "off: measured, published without thresholds"}
    budget = {"max_leakage": config.max_leakage, "min_reduction": config.min_reduction}
    return {"gate": "passed", "budget": budget}


# --- the stage -----------------------------------------------------------------------------------------


def _index_kind(kind: str | None, rows: int) -> Literal["flat", "ivf"] | None:
    if kind == "auto":
        return "ivf" if rows >= IVF_FROM_ROWS else "flat"
    return "flat" if kind == "flat" else "ivf" if kind == "ivf" else None


def public_clips(view: CacheView, key_file: str | None) -> tuple[pa.Table, str]:
    """The clip columns to publish, with video ids replaced by keyed pseudonyms under the key in
    `key_file` (created when absent), or the original ids when `key_file` is None; and the
    publication's `id_scheme`, which says which."""
    clips = view.clips.select(["video_id", "clip_index", "t_start_s", "t_end_s"])
    if key_file is None:
        return clips, "original"
    key = load_key(key_file, create=True)
    mapping = pseudonyms(key, view.videos.column("video_id").to_pylist())
    column = pa.array([mapping[v] for v in clips.column("video_id").to_pylist()], pa.string())
    return clips.set_column(0, "video_id", column), f"pseudonym:{fingerprint(key)}"


# Store folder names that say nothing about the videos: the dataset is named after the folder above.
GENERIC_STORE_NAMES = frozenset(
    {"store", "latents", "latent", "cache", "latent-cache", "features", "embeddings"}
)


def dataset_name(store: str | Path) -> str:
    """A partition-safe dataset name from the store's folder name (`demo.zarr` -> `demo`), or from the
    folder above it when the store's name is generic (`work/kitchen/latents.zarr` -> `kitchen`)."""
    path = Path(str(store).rstrip("/"))
    stem = path.name.removesuffix(".zarr")
    if stem.lower() in GENERIC_STORE_NAMES and path.parent.name:
        stem = path.parent.name
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.")
    return name if name[:1].isalpha() else f"ds-{name}" if name else "dataset"


class Spill:
    """The anonymized motion clips (N, D) float32 in store order, in a temporary file without a name (it
    goes with the process, killed or not): appended chunk by chunk, rows read back by position through a
    short-lived memory map (only those pages are touched)."""

    def __init__(self, folder: str, dim: int) -> None:
        self.dim, self.rows = dim, 0
        self._file = tempfile.TemporaryFile(prefix=".aam-anonymize-", dir=folder)  # noqa: SIM115

    def append(self, emb: np.ndarray) -> None:
        self._file.write(np.ascontiguousarray(emb, dtype=np.float32).tobytes())
        self.rows += len(emb)

    def close(self) -> None:
        self._file.close()

    def take(self, positions: np.ndarray) -> np.ndarray:
        """Rows `positions` (ascending is fastest) as a float32 (len, D) array in memory."""
        self._file.flush()
        if not self.rows:
            return np.zeros((0, self.dim), np.float32)
        mapped = np.memmap(self._file, dtype=np.float32, mode="r", shape=(self.rows, self.dim))
        try:
            return np.array(mapped[positions])
        finally:
            del mapped


@contextmanager
def spill_file(folder: str, dim: int) -> Iterator[Spill]:
    """A Spill in `folder` (default: the system's temporary folder), closed (and so gone) whatever
    happens."""
    where = folder or tempfile.gettempdir()
    if not os.path.isdir(where):
        raise ConfigError(f"--spill-dir {where}: not a folder; pass a folder with room for N x D float32")
    spill = Spill(where, dim)
    try:
        yield spill
    finally:
        spill.close()


def anonymize_stream(
    cache: LatentCache,
    model: Any,
    temporal: bool,
    paper: bool,
    chunk_rows: int,
    spill: Spill,
    on_chunk: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Every motion clip of `cache` through `model`, `chunk_rows` at a time (paper variant: rounded up
    to whole runs of ADAPTER_BATCH), appended to `spill` in store order; returns each row's relative
    change (N,) float64. Row for row what anonymize_array gives on the whole store in memory."""
    if paper:
        chunk_rows = -(-chunk_rows // ADAPTER_BATCH) * ADAPTER_BATCH
    chunks: Iterator[tuple[Any, np.ndarray, np.ndarray | None]]
    if temporal:
        chunks = cache.iter_motion_tokens(chunk_rows)
    else:
        chunks = ((clips, raw, None) for clips, raw in cache.iter_motion(chunk_rows))
    changes = []
    for _, raw, tokens in chunks:
        emb = anonymize_array(model, raw, tokens, batch=ADAPTER_BATCH)  # (n, D)
        changes.append(relative_change(raw, emb))
        spill.append(emb)
        if on_chunk is not None:
            on_chunk(len(raw))
    return np.concatenate(changes) if changes else np.zeros(0, np.float64)


def gate_inputs(
    cache: LatentCache, tables: CacheView, labels: Labels, spill: Spill, config: AnonymizeConfig
) -> tuple[CacheView, np.ndarray, Sample]:
    """The raw motion clips the gate measures (all, or the sample above `gate_max_clips`) and their
    anonymized rows from `spill`, aligned row for row."""
    sample = sample_videos(tables.clips, labels, config.gate_max_clips, config.seed)
    if sample.videos is None:
        view = cache.read(static=False)
        positions = np.arange(tables.clips.num_rows)
    else:
        view = cache.read(videos=sample.videos, static=False)
        wanted = pa.array(sample.videos, pa.string())
        mask = pc.is_in(tables.clips.column("video_id"), value_set=wanted)
        positions = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
    keys = ["video_id", "clip_index"]
    if not view.clips.select(keys).equals(tables.clips.take(pa.array(positions)).select(keys)):
        raise PipelineError("the store changed while anonymize ran (clips differ); run it again")
    return view, spill.take(positions), sample


def anonymize(
    store: str | Path,
    adapter: str | Path,
    out: str | Path,
    config: AnonymizeConfig | None = None,
    *,
    bar: bool = False,
    echo: Callable[[str], None] | None = None,
) -> AnonymizeResult:
    """Anonymize every motion clip of `store` with `adapter`, gate on leakage, publish under `out`;
    streamed, so memory follows `config.chunk_rows` and the gate's sample, not the store's size."""
    config = config or AnonymizeConfig()
    say = echo or (lambda line: None)
    started = time.perf_counter()
    if not Path(adapter).is_dir():
        raise ConfigError(f"--adapter {adapter}: not a folder; pass the --out of train-adapter")
    cache = LatentCache.open(store)
    tables = cache.read(arrays=False)  # the tables only: clips, videos
    clips_total = tables.clips.num_rows
    if clips_total == 0:
        raise ConfigError(f"{store} holds no motion clips; run extract first")
    model, cfg, meta = load_for(tables, adapter)
    if cfg.temporal and cache.attrs.tokens is None:
        raise ConfigError("this adapter attends over temporal tokens but the store has none")
    dim = cache.attrs.dim
    with spill_file(config.spill_dir, dim) as spill:
        t0 = time.perf_counter()
        with torch_threads(config.threads), _progress(clips_total, bar) as advance:
            change = anonymize_stream(
                cache, model, cfg.temporal, cfg.variant == "paper", config.chunk_rows, spill, advance
            )
        anonymize_s = time.perf_counter() - t0
        if spill.rows != clips_total:
            raise PipelineError("the store changed while anonymize ran (clip count differs); run it again")
        say(
            f"anonymize: {clips_total} motion clips of {tables.videos.num_rows} videos through the "
            f"{cfg.variant} adapter"
        )

        check_change(change)
        del change

        t0 = time.perf_counter()
        labels = labels_of(tables.videos)
        gate = _measure(cache, tables, labels, spill, config, say)
        gate_s = time.perf_counter() - t0
        check_gate(gate, config)

        key = None if config.original_ids else config.pseudonym_key or default_key_location(str(store))
        clips, ids = public_clips(tables, key)
        leakage: dict[str, Any] | LeakageNotMeasured
        if gate.measured and gate.record:
            leakage = gate.record | gate_record(gate, config)
        else:
            leakage = LeakageNotMeasured(f"{gate.reason}; published with --allow-unmeasured")
        info = PublicationInfo(
            dataset=config.dataset or dataset_name(store),
            encoder_id=public_encoder_id(tables.attrs.encoder_id),
            encoder_sha256=tables.attrs.weights_sha256,
            adapter_sha256=adapter_checksum(adapter),
            adapter_variant=cfg.variant,
            leakage=leakage,
            adapter_version=config.adapter_version,
            normalisation="l2" if config.normalise else "none",
            extra_metadata={
                "adapter_objective": meta.objective.name,
                "preprocessing": json.dumps(tables.attrs.preprocessing, sort_keys=True),
                "pooling": tables.attrs.pooling,
            },
            id_scheme=ids,
        )
        t0 = time.perf_counter()
        result = publish_rows(
            out,
            info,
            clips,
            spill.take,
            dim,
            dtype="float16" if config.float16 else "float32",
            mode=config.mode,
            faiss_index=_index_kind(config.faiss_index, clips_total),
            zarr_copy=config.zarr_copy,
        )
        publish_s = time.perf_counter() - t0
    return AnonymizeResult(
        publish=result,
        gate=gate,
        clips=clips_total,
        dim=dim,
        seconds=time.perf_counter() - started,
        anonymize_seconds=anonymize_s,
        gate_seconds=gate_s,
        publish_seconds=publish_s,
    )


def _measure(
    cache: LatentCache,
    tables: CacheView,
    labels: Labels,
    spill: Spill,
    config: AnonymizeConfig,
    say: Callable[[str], None],
) -> Gate:
    """The gate on every motion clip, or on the sample above `gate_max_clips` (recorded as `sample`)."""
    if not labels.attributes:
        gate = measure_gate(tables, labels, np.zeros((0, cache.attrs.dim), np.float32))
    else:
        view, anonymized, sample = gate_inputs(cache, tables, labels, spill, config)
        if sample.videos is not None:
            say(
                f"anonymize: the gate measures a sample of {sample.motion_clips} of {sample.of_motion_clips}"
                f" motion clips ({sample.num_videos} of {sample.of_videos} videos, whole people per split;"
                f" --gate-max-clips {config.gate_max_clips})"
            )
        gate = measure_gate(view, labels, anonymized, config.seed, config.gate_attackers)
        del view, anonymized
        if gate.measured and gate.record is not None:
            gate = Gate(
                measured=True,
                worst_leakage=gate.worst_leakage,
                min_reduction=gate.min_reduction,
                record=gate.record | {"sample": sample.record()},
            )
    if gate.measured:
        say(
            f"anonymize: leakage on held-out motion clips: worst {gate.worst_leakage:.3f} of the way from "
            f"chance to perfect (budget {config.max_leakage}); smallest reduction from raw "
            f"{'n/a' if gate.min_reduction is None else f'{gate.min_reduction:.3f}'} "
            f"(budget {config.min_reduction}){'' if config.gate else '; gate off (--no-gate)'}"
        )
    else:
        say(f"anonymize: leakage NOT measured: {gate.reason}")
    return gate


@contextmanager
def _progress(total: int, bar: bool) -> Iterator[Callable[[int], None]]:
    if not bar:
        yield lambda n: None
        return
    from flows.progress import progress

    with progress("anonymize", total, "clips", bar=True) as advance:
        yield lambda n: advance(n)
