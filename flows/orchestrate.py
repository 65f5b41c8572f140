"""Prefect flows of the whole pipeline, one work folder in, a report out.

* `run_flow` (`aam-pipeline run`): extract -> train-adapter -> anonymize -> probe -> report into one
  work folder (`Layout`), each stage skipped when its output is already up to date; WORKDIR/run.json,
  written last, records what each stage did.
* `refresh_flow` (`aam-pipeline serve`): extract what is new -> adapter (trained once, then kept) ->
  anonymize in append mode: the published dataset follows the watched manifest or folder.

Extraction runs as work units (flows.prefect_extract), in the flow's process or on a Dask cluster; the
other stages are tasks in the flow's process that call the stages' plain functions. Plain entry points
(`run_pipeline`, `refresh`, `serve`) pick the Prefect API (flows.prefect_env) and check the Dask cluster
before any work starts. Guide: docs/orchestration.md.
"""

# No `from __future__ import annotations` here: Prefect builds each flow's parameter model from its
# signature, and in a deployment's flow-run process string annotations do not resolve.
import hashlib
import importlib.util
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field

from flows.dask_cluster import DaskSettings, preflight
from flows.extract import ExtractConfig
from flows.prefect_env import reporting, transient
from flows.prefect_extract import NO_DASK, Source, completed_videos, extract_stage, store_exists
from flows.probe import ProbeRunConfig
from pipeline.errors import ConfigError

STORE = "latents.zarr"
ADAPTER = "adapter"
PUBLISHED = "published"
PROBE = "probe"
REPORT = "report"
RUN_JSON = "run.json"
RUN_KIND = "aam-pipeline/run"
SCHEMA_VERSION = 1

Stage = Literal["extract", "train-adapter", "anonymize", "probe", "report"]
STAGES: tuple[Stage, ...] = ("extract", "train-adapter", "anonymize", "probe", "report")
REFRESH_STAGES: tuple[Stage, ...] = ("extract", "train-adapter", "anonymize")

logger = logging.getLogger(__name__)


# --- configuration -------------------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RunConfig(_Frozen):
    """Every stage's settings for `run` and `serve`. `train_adapter` and `anonymize` hold the fields of
    flows.train_adapter.TrainAdapterConfig and flows.anonymize.AnonymizeConfig, checked before any work
    starts."""

    extract: ExtractConfig = ExtractConfig()
    train_adapter: dict[str, Any] = Field(default_factory=dict)
    anonymize: dict[str, Any] = Field(default_factory=dict)
    probe: ProbeRunConfig = ProbeRunConfig()
    stages: tuple[Stage, ...] = STAGES
    retrain: bool = Field(
        True, description="train again when the data changed; False keeps an adapter already there (serve)"
    )
    adapter: str | None = Field(
        None,
        description="an adapter trained elsewhere on this encoder's latents (the --out of train-adapter): "
        "used as is, no training (for unlabelled sources such as a watched folder)",
    )


DEFAULT_RUN = RunConfig()
DEFAULT_REFRESH = RunConfig(stages=REFRESH_STAGES, retrain=False)


@dataclass(frozen=True)
class Layout:
    """Where each stage writes inside a work folder."""

    root: Path

    @property
    def store(self) -> Path:
        return self.root / STORE

    @property
    def adapter(self) -> Path:
        return self.root / ADAPTER

    @property
    def published(self) -> Path:
        return self.root / PUBLISHED

    @property
    def probe(self) -> Path:
        return self.root / PROBE

    @property
    def report(self) -> Path:
        return self.root / REPORT

    @property
    def run_json(self) -> Path:
        return self.root / RUN_JSON


def run_config(values: dict[str, Any]) -> RunConfig:
    """A RunConfig from plain values (a --config file merged with options); ConfigError naming the
    setting by its dotted path otherwise."""
    from pydantic import ValidationError

    try:
        return RunConfig.model_validate(values)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "config"
        raise ConfigError(f"setting {where}: {first['msg']}") from None


def stage_available(stage: Stage) -> bool:
    """Whether this install has the stage (train-adapter and anonymize land as separate modules)."""
    module = {"train-adapter": "flows.train_adapter", "anonymize": "flows.anonymize"}.get(stage)
    return module is None or importlib.util.find_spec(module) is not None


def check_config(config: RunConfig) -> None:
    """Validate the per-stage settings of the stages that will run; ConfigError naming the field."""
    from pydantic import ValidationError

    checks: list[tuple[Stage, str, str, dict[str, Any]]] = [
        ("train-adapter", "flows.train_adapter", "TrainAdapterConfig", config.train_adapter),
        ("anonymize", "flows.anonymize", "AnonymizeConfig", config.anonymize),
    ]
    for stage, module, name, values in checks:
        if stage not in config.stages or not stage_available(stage):
            continue
        cls = getattr(importlib.import_module(module), name)
        try:
            cls(**values)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(x) for x in first["loc"]) or "config"
            raise ConfigError(f"{stage} setting {where}: {first['msg']}") from None


# --- the other stages, as tasks ------------------------------------------------------------------------


def _digest(record: Any) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else None


def _folder_digest(folder: Path, pattern: str) -> dict[str, str | None]:
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): _file_digest(p) for p in sorted(folder.rglob(pattern))}


@task(
    name="train-adapter",
    retries=1,
    retry_condition_fn=transient,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def train_adapter_task(store: str, out: str, settings: dict[str, Any], keep_existing: bool) -> dict[str, Any]:
    """Train the adapter (idempotent: same data and settings, nothing to do); with `keep_existing` an
    adapter already in `out` is kept even when the data changed (serve: published rows stay comparable)."""
    from flows.train_adapter import TrainAdapterConfig, train_adapter_stage

    log = get_run_logger()
    if keep_existing and (Path(out) / "adapter.json").is_file():
        log.info("keeping the adapter in %s (refresh mode)", out)
        return {"out": out, "reused": True, "kept": True}
    result = train_adapter_stage(store, out, TrainAdapterConfig(**settings), echo=log.info)
    return {
        "out": str(result.out),
        "reused": result.reused,
        "best_epoch": result.best_epoch,
        "val_action_acc": result.val_action_acc,
        "clips": result.clips,
        "seconds": round(result.seconds, 2),
    }


@task(name="anonymize", retries=1, retry_condition_fn=transient, cache_policy=NO_CACHE, persist_result=False)
def anonymize_task(store: str, adapter: str, out: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Publish the store's videos not yet in the partition (append mode) through the adapter."""
    from flows.anonymize import AnonymizeConfig, anonymize

    log = get_run_logger()
    result = anonymize(store, adapter, out, AnonymizeConfig(**settings), echo=log.info)
    p = result.publish
    return {
        "partition": str(p.partition.location),
        "changed": p.changed,
        "rows_added": p.rows_added,
        "videos_added": p.videos_added,
        "videos_skipped": p.videos_skipped,
        "clips": result.clips,
        "leakage_measured": result.gate.measured,
        "worst_leakage": result.gate.worst_leakage,
        "min_reduction": result.gate.min_reduction,
        "seconds": round(result.seconds, 2),
    }


@task(name="probe", retries=1, retry_condition_fn=transient, cache_policy=NO_CACHE, persist_result=False)
def probe_task(store: str, out: str, config: ProbeRunConfig, published: list[str]) -> dict[str, Any]:
    from flows.probe import probe

    log = get_run_logger()
    result = probe(store, out, config, published=published, echo=log.info)
    return {
        "path": str(result.path),
        "sets": [s.name for s in result.record.sets],
        "seconds": round(result.seconds, 2),
    }


@task(name="report", retries=1, retry_condition_fn=transient, cache_policy=NO_CACHE, persist_result=False)
def report_task(probe_dir: str, out: str) -> dict[str, Any]:
    from flows.report import make_report, summary_lines

    result = make_report(probe_dir, out)
    return {
        "out": str(result.out),
        "files": [p.name for p in result.files],
        "summary": summary_lines(result.report),
    }


# --- the end-to-end flows ------------------------------------------------------------------------------


def _previous(layout: Layout) -> dict[str, Any]:
    try:
        record = json.loads(layout.run_json.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) and record.get("kind") == RUN_KIND else {}


def _write_json(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def _stage_record(status: str, **fields: Any) -> dict[str, Any]:
    return {"status": status, **fields}


def _pipeline(
    source: Source, workdir: str, config: RunConfig, dask: DaskSettings, *, bar: bool | None = None
) -> dict[str, Any]:
    """Every stage of `config.stages` in order into `workdir`; RUN_JSON last. A stage whose inputs did
    not change since the last run that completed it is skipped."""
    check_config(config)
    layout = Layout(Path(workdir).resolve())  # absolute: work units may run on other machines
    layout.root.mkdir(parents=True, exist_ok=True)
    previous = _previous(layout).get("stages", {})
    started = time.perf_counter()
    stages: dict[str, dict[str, Any]] = {}
    store = str(layout.store)
    log = get_run_logger()

    if "extract" in config.stages:
        summary = extract_stage(source, store, config.extract, dask, bar)
        stages["extract"] = _stage_record(
            "done",
            total=summary.total,
            skipped=summary.skipped,
            ok=summary.ok,
            failed=summary.failed,
            motion_clips=summary.motion_clips,
            static_clips=summary.static_clips,
            units=len(summary.units),
            sweeps=summary.sweeps,
            errors=[list(e) for e in summary.errors[:20]],
            cluster=summary.cluster,
            seconds=summary.seconds,
        )
    if not store_exists(store):
        raise ConfigError(f"{store}: no latent cache; the run needs the extract stage first")

    adapter = Path(config.adapter) if config.adapter else layout.adapter
    adapter_ready = (adapter / "adapter.json").is_file()
    if config.adapter and not adapter_ready:
        raise ConfigError(f"--adapter {adapter}: no adapter.json there; pass the --out of train-adapter")
    if "train-adapter" in config.stages:
        if config.adapter:
            stages["train-adapter"] = _stage_record("skipped", reason=f"using the adapter in {adapter}")
        elif stage_available("train-adapter"):
            stages["train-adapter"] = _stage_record(
                "done",
                **train_adapter_task(store, str(layout.adapter), config.train_adapter, not config.retrain),
            )
            adapter_ready = True
        else:
            stages["train-adapter"] = _stage_record(
                "unavailable", reason="flows.train_adapter is not installed"
            )

    if "anonymize" in config.stages:
        if not stage_available("anonymize"):
            stages["anonymize"] = _stage_record("unavailable", reason="flows.anonymize is not installed")
        elif not adapter_ready:
            stages["anonymize"] = _stage_record("skipped", reason=f"no adapter in {adapter}")
        else:
            settings = {"dataset": _dataset(layout.root), "mode": "append"} | config.anonymize
            stages["anonymize"] = _stage_record(
                "done", **anonymize_task(store, str(adapter), str(layout.published), settings)
            )

    if "probe" in config.stages:
        published = [str(layout.published)] if _has_published(layout.published) else []
        key = _digest(
            {
                "videos": sorted(completed_videos(store).items()),
                "published": _folder_digest(layout.published, "_manifest.json"),
                "config": config.probe.model_dump(mode="json"),
            }
        )
        if previous.get("probe", {}).get("key") == key and (layout.probe / "probe.json").is_file():
            log.info("probe: inputs unchanged since the last run; keeping %s", layout.probe)
            stages["probe"] = _stage_record("unchanged", key=key, path=str(layout.probe / "probe.json"))
        else:
            stages["probe"] = _stage_record(
                "done", key=key, **probe_task(store, str(layout.probe), config.probe, published)
            )

    if "report" in config.stages:
        probed = _file_digest(layout.probe / "probe.json")
        same = probed is not None and previous.get("report", {}).get("key") == probed
        if same and (layout.report / "report.md").is_file():
            log.info("report: probe results unchanged; keeping %s", layout.report)
            stages["report"] = _stage_record("unchanged", key=probed, out=str(layout.report))
        else:
            stages["report"] = _stage_record(
                "done", key=probed, **report_task(str(layout.probe), str(layout.report))
            )

    record = {
        "kind": RUN_KIND,
        "schema_version": SCHEMA_VERSION,
        "source": source.model_dump(mode="json"),
        "workdir": str(layout.root),
        "config": config.model_dump(mode="json"),
        "dask": dask.model_dump(mode="json"),
        "stages": stages,
        "seconds": round(time.perf_counter() - started, 2),
    }
    _write_json(layout.run_json, record)
    return record


def _dataset(root: Path) -> str:
    from flows.anonymize import dataset_name

    return str(dataset_name(root))


def _has_published(folder: Path) -> bool:
    return folder.is_dir() and any(folder.rglob("_manifest.json"))


@flow(name="aam-run", log_prints=True)
def run_flow(
    source: Source,
    workdir: str,
    config: RunConfig = DEFAULT_RUN,
    dask: DaskSettings = NO_DASK,
    bar: bool | None = None,
) -> dict[str, Any]:
    """Every stage, manifest in, report out (`aam-pipeline run`)."""
    return _pipeline(source, workdir, config, dask, bar=bar)


@flow(name="aam-refresh", log_prints=True)
def refresh_flow(
    source: Source,
    workdir: str,
    config: RunConfig = DEFAULT_REFRESH,
    dask: DaskSettings = NO_DASK,
) -> dict[str, Any]:
    """Extract and publish only what is new in the watched source (`aam-pipeline serve`)."""
    return _pipeline(source, workdir, config, dask, bar=False)


# --- plain entry points --------------------------------------------------------------------------------


def run_pipeline(
    source: Source,
    workdir: str | Path,
    config: RunConfig | None = None,
    dask: DaskSettings | None = None,
    *,
    bar: bool | None = None,
) -> dict[str, Any]:
    """`aam-pipeline run`: the run flow, on the configured Prefect server or embedded."""
    config = config or RunConfig()
    dask = dask or DaskSettings()
    check_config(config)
    preflight(dask, config.extract.device)
    with reporting():
        return run_flow(source, str(workdir), config, dask, bar)


def refresh(
    source: Source, workdir: str | Path, config: RunConfig | None = None, dask: DaskSettings | None = None
) -> dict[str, Any]:
    """One scheduled refresh, now (`aam-pipeline serve --once`)."""
    config = config or DEFAULT_REFRESH
    dask = dask or DaskSettings()
    check_config(config)
    preflight(dask, config.extract.device)
    with reporting():
        return refresh_flow(source, str(workdir), config, dask)


def deployment_name(workdir: str | Path) -> str:
    """`refresh-<work folder name>`, with characters Prefect names cannot hold replaced."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(workdir).resolve().name).strip("-.")
    return f"refresh-{name or 'workdir'}"


def serve(
    source: Source,
    workdir: str | Path,
    config: RunConfig | None = None,
    dask: DaskSettings | None = None,
    *,
    name: str | None = None,
    cron: str | None = None,
    interval: float | None = None,
) -> None:
    """Serve `refresh_flow` as a deployment on the configured Prefect server with a cron (or interval)
    schedule, until interrupted. Schedules are not paused on shutdown: serving again resumes them."""
    from prefect.types.entrypoint import EntrypointType

    from flows.prefect_env import check_server, configured_api_url

    config = config or DEFAULT_REFRESH
    dask = dask or DaskSettings()
    if (cron is None) == (interval is None):
        raise ConfigError("give one schedule: --cron 'EXPR' or --interval SECONDS")
    url = configured_api_url()
    if not url:
        raise ConfigError(
            "serve needs a Prefect server to keep its schedules: start one with `prefect server start` and "
            "`export PREFECT_API_URL=http://127.0.0.1:4200/api` (docs/orchestration.md)"
        )
    check_server(url)
    check_config(config)
    source.load()  # a missing manifest or folder fails now, not at the first scheduled run
    parameters = {
        "source": source.model_dump(mode="json"),
        "workdir": str(Path(workdir).resolve()),
        "config": config.model_dump(mode="json"),
        "dask": dask.model_dump(mode="json"),
    }
    refresh_flow.serve(
        name=name or deployment_name(workdir),
        cron=cron,
        interval=interval,
        parameters=parameters,
        pause_on_shutdown=False,
        limit=1,
        entrypoint_type=EntrypointType.MODULE_PATH,
        description=f"Extract and publish what is new in {source.path} into {workdir}",
        tags=["aam-pipeline"],
    )
