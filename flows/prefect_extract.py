"""Extraction as Prefect tasks: work units, in the flow's process or on a Dask cluster.

A **work unit** is a batch of `videos_per_part` videos (by sorted id) not yet complete in the store,
keyed by its videos' content (id, path, size, mtime) and the extraction settings. One unit is one
Prefect task that runs `flows.extract.extract` on its videos and writes exactly one store part,
atomically (a worker that dies mid-part leaves only an untrusted temporary folder); it returns a small
manifest, never arrays. A unit whose videos are already in the store does nothing, so Prefect or Dask
may run it again at any time. Units still failing after their retries are planned again from the store
and run once more; temporary parts of dead writers are removed when no writer is left.
Guide: docs/orchestration.md.
"""

# No `from __future__ import annotations` here: Prefect builds each flow's parameter model from its
# signature, and in a deployment's flow-run process string annotations do not resolve.
import hashlib
import json
import logging
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import pyarrow as pa
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from flows.dask_cluster import (
    GPU,
    DaskSettings,
    dask_cluster,
    gpu_units,
    host_share,
    keep_heap_on_worker,
    local_gpus,
    preflight,
    wants_cuda,
    worker_device,
)
from flows.decode_pool import keep_decoders
from flows.extract import (
    ExtractConfig,
    ExtractResult,
    extract,
    fingerprint,
    for_store,
    load_encoder,
    load_inputs,
)
from flows.prefect_env import reporting, transient
from flows.progress import progress
from pipeline.errors import PipelineError
from stores.errors import StoreError

if TYPE_CHECKING:
    from pipeline.encoders.base import LoadedEncoder

UNIT_RETRIES = 2
SWEEPS = 1  # extra passes over units that failed after their retries
# Extraction settings that do not change what is computed: left out of a unit's key.
RUNTIME_ONLY = {"device", "batch_size", "decode_workers", "videos_per_part", "allow_download"}
DEFAULT_EXTRACT = ExtractConfig()
NO_DASK = DaskSettings()

logger = logging.getLogger(__name__)


# --- inputs and units ---------------------------------------------------------------------------------


class Source(BaseModel):
    """What to extract: a manifest file, or every video (or image) under a folder."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["manifest", "videos", "images"] = "manifest"
    path: str

    def load(self) -> pa.Table:
        return load_inputs(
            self.path if self.kind == "manifest" else None,
            self.path if self.kind == "videos" else None,
            self.path if self.kind == "images" else None,
        )


@dataclass(frozen=True)
class WorkUnit:
    """A batch of videos that becomes one store part; `key` hashes their content and the config."""

    key: str
    inputs: pa.Table  # the manifest rows of its videos, sorted by video_id

    @property
    def video_ids(self) -> list[str]:
        return [str(v) for v in self.inputs.column("video_id").to_pylist()]


def unit_key(config: ExtractConfig, rows: Sequence[tuple[str, str, tuple[int, int] | None]]) -> str:
    """16 hex chars of sha256 over the config (what changes the embeddings) and (id, path, size,
    mtime) of each video: the same videos with the same content and settings give the same key."""
    record = {
        "config": config.model_dump(mode="json", exclude=RUNTIME_ONLY),
        "videos": sorted([vid, path, list(fp) if fp else None] for vid, path, fp in rows),
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def store_exists(store: str) -> bool:
    from stores.latent_cache import LatentCache

    return LatentCache.exists(store)


def completed_videos(store: str) -> dict[str, tuple[int, int]]:
    """video_id -> (size, mtime_ns) of the videos complete in `store`; empty when it does not exist."""
    from stores.latent_cache import LatentCache

    if not store_exists(store):
        return {}
    return LatentCache.open(store).completed_videos()


def plan_units(inputs: pa.Table, store: str, config: ExtractConfig) -> tuple[list[WorkUnit], int]:
    """The work units of the inputs not complete in `store` (same rule as `extract`: a video is done
    when a trusted part holds it as ok with its file's current size and mtime), in batches of
    `videos_per_part` by sorted id; and how many inputs are already complete."""
    done = completed_videos(store)
    ids = [str(v) for v in inputs.column("video_id").to_pylist()]
    paths = [str(p) for p in inputs.column("path").to_pylist()]
    prints = [fingerprint(p) for p in paths]
    todo = sorted(
        (i for i in range(len(ids)) if done.get(ids[i]) != prints[i] or prints[i] is None),
        key=lambda i: ids[i],
    )
    size = config.videos_per_part
    units = []
    for start in range(0, len(todo), size):
        rows = todo[start : start + size]
        key = unit_key(config, [(ids[i], paths[i], prints[i]) for i in rows])
        units.append(WorkUnit(key=key, inputs=inputs.take(rows)))
    return units, len(ids) - len(todo)


# One loaded encoder per process, reused by every unit it runs with the same settings.
_ENCODER: dict[str, "LoadedEncoder"] = {}
_ENCODER_LOCK = threading.Lock()


def _encoder_for(config: ExtractConfig) -> "LoadedEncoder":
    key = config.model_dump_json(
        include={"encoder", "frames_per_clip", "crop", "resize", "device", "allow_download"}
    )
    with _ENCODER_LOCK:
        if key not in _ENCODER:
            _ENCODER.clear()  # one model in memory at a time
            _ENCODER[key] = load_encoder(config)
        return _ENCODER[key]


def _where() -> str:
    """This process as a worker name: the Dask worker address, else host:pid."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def unit_config(config: ExtractConfig, videos: int, share: int | None = None) -> ExtractConfig:
    """The config one unit runs with: all its videos in one part, this worker's GPU, as many decode
    processes as its `share` of this machine's cores allows (several Dask workers on one machine
    divide the cores), and decoding in this process where it may not start processes (a daemonic
    Dask worker)."""
    update: dict[str, Any] = {"videos_per_part": max(1, videos), "device": worker_device(config.device)}
    cores = os.cpu_count() or 1
    if config.decode_workers is None and share is not None and share < cores:
        # As extract's own default, on this worker's share: all but one core with a GPU, half on CPU.
        cuda = wants_cuda(update["device"])
        if cuda is None:
            cuda = local_gpus() > 0
        update["decode_workers"] = max(1, share - 1) if cuda else max(1, share // 2)
    if multiprocessing.current_process().daemon and config.decode_workers != 0:
        logger.warning(
            "this Dask worker's processes are daemonic, so videos are decoded inside it (no crash "
            "isolation); start workers with DASK_DISTRIBUTED__WORKER__DAEMON=False"
        )
        update["decode_workers"] = 0
    return config.model_copy(update=update)


def run_unit(unit: WorkUnit, store: str, config: ExtractConfig) -> dict[str, Any]:
    """Extract one work unit into its own store part (plain function; the task `extract_unit` wraps it).
    Returns its manifest: counts, part ids, failed videos, where it ran."""
    keep_heap_on_worker()
    share = host_share()
    cfg = unit_config(config, unit.inputs.num_rows, share)
    keep_decoders(cfg.decode_workers or 0)  # for this process's next unit (stopped by _extract_units)
    encoder = _encoder_for(cfg)
    if encoder.device.type == "cpu" and share < (os.cpu_count() or 1):
        import torch

        # Workers sharing this machine share its cores: the encoder gets what the decoders leave.
        torch.set_num_threads(max(1, share - (cfg.decode_workers or 0)))
    result = extract(unit.inputs, store, cfg, bar=False, cleanup=False, lock=False, encoder=encoder)
    return {
        "key": unit.key,
        "videos": unit.inputs.num_rows,
        "skipped": result.skipped,
        "ok": result.ok,
        "failed": result.failed,
        "motion_clips": result.motion_clips,
        "static_clips": result.static_clips,
        "parts": list(result.parts),
        "errors": [list(e) for e in result.errors],
        "seconds": result.seconds,
        "worker": _where(),
    }


@task(
    name="extract-unit",
    retries=UNIT_RETRIES,
    retry_delay_seconds=2,
    retry_condition_fn=transient,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def extract_unit(unit: WorkUnit, store: str, config: ExtractConfig) -> dict[str, Any]:
    """One extraction work unit (see `run_unit`)."""
    manifest = run_unit(unit, store, config)
    get_run_logger().info(
        "unit %s: %d videos, %d extracted, %d already there, %d failed -> parts %s on %s",
        unit.key,
        manifest["videos"],
        manifest["ok"],
        manifest["skipped"],
        manifest["failed"],
        ",".join(manifest["parts"]) or "-",
        manifest["worker"],
    )
    return manifest


@task(
    name="prepare-store",
    retries=UNIT_RETRIES,
    retry_condition_fn=transient,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def prepare_store(store: str, config: ExtractConfig) -> str:
    """Create the store (or check an existing one against the config) and remove what crashed writers
    left, before units write into it concurrently; loads the encoder there, where the units run."""
    extract(
        pa.table({"video_id": pa.array([], pa.string()), "path": pa.array([], pa.string())}),
        store,
        unit_config(config, 1),
        bar=False,
        cleanup=True,
        lock=False,  # the coordinating run (_extract_units) holds it
        encoder=_encoder_for(unit_config(config, 1)),
    )
    return _where()


# --- extraction over units -----------------------------------------------------------------------------


@dataclass
class ExtractSummary:
    """What an orchestrated extraction did, as `ExtractResult` counts plus its units."""

    store: str
    total: int
    skipped: int
    ok: int = 0
    failed: int = 0
    motion_clips: int = 0
    static_clips: int = 0
    seconds: float = 0.0
    errors: list[tuple[str, str]] = field(default_factory=list)
    units: list[dict[str, Any]] = field(default_factory=list)
    units_failed: list[dict[str, str]] = field(default_factory=list)  # after every retry and sweep
    sweeps: int = 0
    cluster: dict[str, Any] | None = None

    def add(self, manifest: dict[str, Any]) -> None:
        """Count a unit's clips (a unit run again after its part landed writes none)."""
        self.units.append(manifest)
        self.motion_clips += manifest["motion_clips"]
        self.static_clips += manifest["static_clips"]

    def settle(self, planned: pa.Table) -> None:
        """Per-video outcome of the `planned` inputs from the store itself, so that a unit run twice
        (a worker died, Dask ran it again) counts once: ok when complete now, else its last error."""
        done = completed_videos(self.store)
        ids = [str(v) for v in planned.column("video_id").to_pylist()]
        paths = [str(p) for p in planned.column("path").to_pylist()]
        prints = {v: fingerprint(p) for v, p in zip(ids, paths, strict=True)}
        ok = {v for v, fp in prints.items() if fp is not None and done.get(v) == fp}
        reasons = {str(v): str(r) for m in self.units for v, r in m["errors"]}
        self.ok = len(ok)
        self.errors = sorted((v, reasons.get(v, "not extracted")) for v in ids if v not in ok)
        self.failed = len(self.errors)

    def result(self) -> ExtractResult:
        """The counts as the plain `extract` reports them."""
        parts = [p for u in self.units for p in u["parts"]]
        return ExtractResult(
            self.store,
            self.total,
            self.skipped,
            self.ok,
            self.failed,
            self.motion_clips,
            self.static_clips,
            self.seconds,
            list(self.errors),
            parts,
        )


class WorkUnitsFailedError(PipelineError):
    """Some work units failed after every retry; a rerun does only those."""


def _submit_units(
    units: list[WorkUnit], store: str, config: ExtractConfig, gpu: bool, bar: bool | None
) -> tuple[list[dict[str, Any]], list[tuple[WorkUnit, str]]]:
    """Run `units` on the flow's task runner (Dask), GPU-annotated when `gpu`; (manifests, failures)."""
    from dask.base import annotate
    from distributed import as_completed
    from prefect_dask.task_runners import PrefectDaskFuture

    if not units:
        return [], []
    annotations = {"resources": {GPU: 1}} if gpu else {}
    futures = {}
    with annotate(**annotations):
        for unit in units:
            submitted = extract_unit.with_options(task_run_name=f"extract-unit-{unit.key}").submit(
                unit, store, config
            )
            future = cast(PrefectDaskFuture[dict[str, Any]], submitted)
            futures[future.wrapped_future] = (unit, future)
    done: list[dict[str, Any]] = []
    failed: list[tuple[WorkUnit, str]] = []
    with progress("extract units", sum(u.inputs.num_rows for u in units), "videos", bar=bar) as advance:
        # The futures' own client: as_completed would otherwise use whatever client is the default.
        loop = next(iter(futures)).client.loop
        for wrapped in as_completed(list(futures), loop=loop):
            unit, future = futures[wrapped]
            try:
                done.append(future.result())
            except Exception as err:  # a unit's failure is recorded and retried by a sweep
                failed.append((unit, f"{type(err).__name__}: {err}"))
            wrapped.release()  # Dask would otherwise recompute it if the worker holding it dies
            advance(unit.inputs.num_rows)
    return done, failed


def _inline_units(
    units: list[WorkUnit], store: str, config: ExtractConfig, bar: bool | None
) -> tuple[list[dict[str, Any]], list[tuple[WorkUnit, str]]]:
    """Run `units` one after another in this process, each as a task."""
    done: list[dict[str, Any]] = []
    failed: list[tuple[WorkUnit, str]] = []
    with progress("extract units", sum(u.inputs.num_rows for u in units), "videos", bar=bar) as advance:
        for unit in units:
            try:
                done.append(
                    extract_unit.with_options(task_run_name=f"extract-unit-{unit.key}")(unit, store, config)
                )
            except (PipelineError, StoreError):
                raise
            except Exception as err:  # transient faults exhausted their retries: the sweep tries again
                failed.append((unit, f"{type(err).__name__}: {err}"))
            advance(unit.inputs.num_rows)
    return done, failed


def _extract_units(
    inputs: pa.Table,
    store: str,
    config: ExtractConfig,
    run: Callable[[list[WorkUnit]], Any],
    prepare: Callable[[], Any],
) -> ExtractSummary:
    """Plan, prepare the store, run the units (with sweeps), clean up and count, holding the store's
    writer lock throughout: the units write their parts from other processes under it, and no second
    run's start-up cleanup can remove their work in progress."""
    from stores.latent_cache import LatentCache

    try:
        with LatentCache.writer_lock(store):
            return _extract_units_locked(inputs, store, config, run, prepare)
    finally:
        keep_decoders(0)  # the decode processes inline units kept in this process (Dask workers keep theirs)


def _extract_units_locked(
    inputs: pa.Table,
    store: str,
    config: ExtractConfig,
    run: Callable[[list[WorkUnit]], Any],
    prepare: Callable[[], Any],
) -> ExtractSummary:
    start = time.perf_counter()
    units, skipped = plan_units(inputs, store, config)
    if units:
        prepare()
    summary = ExtractSummary(store=store, total=inputs.num_rows, skipped=skipped)
    planned = pa.concat_tables([u.inputs for u in units]) if units else inputs.slice(0, 0)
    failures: list[tuple[WorkUnit, str]] = []
    for sweep in range(SWEEPS + 1):
        if sweep:
            # Plan again from the store: a unit that failed may have written its part after all.
            units, _ = plan_units(pa.concat_tables([u.inputs for u, _ in failures]), store, config)
            summary.sweeps = sweep
            if not units:
                failures = []
                break
        done, failures = run(units)
        for manifest in done:
            summary.add(manifest)
        if not failures:
            break
    _cleanup(store)
    summary.settle(planned)
    summary.units_failed = [{"key": u.key, "videos": ",".join(u.video_ids), "reason": r} for u, r in failures]
    summary.seconds = round(time.perf_counter() - start, 2)
    if failures:
        shown = "; ".join(f"unit {u.key} ({u.inputs.num_rows} videos): {r}" for u, r in failures[:3])
        raise WorkUnitsFailedError(
            f"{len(failures)} extraction work unit(s) failed after {UNIT_RETRIES} retries and "
            f"{SWEEPS} sweep(s): {shown}; rerun to do only the missing work"
        )
    return summary


def _cleanup(store: str) -> None:
    from stores.latent_cache import LatentCache

    if store_exists(store):
        removed = LatentCache.open(store).cleanup()
        if removed:
            logger.info("removed %d temporary or incomplete part(s) left by dead writers", removed)


@flow(name="aam-extract-units", log_prints=True)
def units_flow(
    source: Source, store: str, config: ExtractConfig, gpu: bool = False, bar: bool | None = None
) -> dict[str, Any]:
    """Extraction on the flow's task runner (a DaskTaskRunner, set by `extract_stage`)."""
    inputs = source.load()

    def prepare() -> None:
        from dask.base import annotate

        with annotate(**({"resources": {GPU: 1}} if gpu else {})):
            prepare_store.submit(store, config).result()

    summary = _extract_units(
        inputs, store, config, lambda units: _submit_units(units, store, config, gpu, bar), prepare
    )
    return asdict(summary)


def extract_stage(
    source: Source, store: str, config: ExtractConfig, dask: DaskSettings, bar: bool | None = None
) -> ExtractSummary:
    """Extraction inside a running flow: units inline, or on the Dask cluster `dask` names (a subflow
    with a DaskTaskRunner; GPU-annotated units, checked against the cluster's workers first)."""
    config = for_store(config, store)  # before the units' keys are made from it
    if not dask.enabled:
        inputs = source.load()
        return _extract_units(
            inputs,
            store,
            config,
            lambda units: _inline_units(units, store, config, bar),
            lambda: prepare_store(store, config),
        )
    from prefect_dask.task_runners import DaskTaskRunner

    with dask_cluster(dask, config.device) as cluster:
        gpu = gpu_units(dask, config.device, cluster)
        runner: Any = DaskTaskRunner(address=cluster.address)
        record = units_flow.with_options(task_runner=runner)(source, store, config, gpu, bar)
    summary = ExtractSummary(**{k: v for k, v in record.items() if k != "errors"})
    summary.errors = [(str(v), str(r)) for v, r in record["errors"]]
    summary.cluster = asdict(cluster) | {"gpu_units": gpu}
    return summary


@flow(name="aam-extract", log_prints=True)
def extract_flow(
    source: Source,
    store: str,
    config: ExtractConfig = DEFAULT_EXTRACT,
    dask: DaskSettings = NO_DASK,
    bar: bool | None = None,
) -> dict[str, Any]:
    """`aam-pipeline extract` with work units on Prefect tasks (and Dask)."""
    return asdict(extract_stage(source, store, config, dask, bar))


# --- plain entry point --------------------------------------------------------------------------------


def extract_distributed(
    source: Source, store: str | Path, config: ExtractConfig, dask: DaskSettings, *, bar: bool | None = None
) -> ExtractResult:
    """`aam-pipeline extract --dask-*`: work units on the cluster, counts as `extract` reports them."""
    preflight(dask, config.device)
    # Absolute: work units may run in other processes and on other machines.
    where = str(store) if "://" in str(store) else str(Path(store).resolve())
    with reporting():
        record = extract_flow(source, where, config, dask, bar)
    summary = ExtractSummary(**{k: v for k, v in record.items() if k != "errors"})
    summary.errors = [(str(v), str(r)) for v, r in record["errors"]]
    return summary.result()
