"""`aam-pipeline run`: every stage as a Prefect flow, manifest in, report out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli._common import EXIT_GATE_REFUSED, EXIT_PARTIAL_FAILURE, build_config, is_terminal, one_line_errors

if TYPE_CHECKING:
    from flows.orchestrate import RunConfig


def source_args(manifest: Path | None, videos: Path | None, images: Path | None) -> dict[str, str]:
    """The Source fields of exactly one input option; ConfigError otherwise."""
    from pipeline.errors import ConfigError

    given = [(k, p) for k, p in (("manifest", manifest), ("videos", videos), ("images", images)) if p]
    if len(given) != 1:
        raise ConfigError("give exactly one input: --manifest FILE, --videos DIR or --images DIR")
    kind, path = given[0]
    return {"kind": kind, "path": str(Path(path).resolve())}


def config_file(path: Path | None) -> dict[str, Any]:
    """The RunConfig fields in a JSON or YAML file (empty without one)."""
    from pipeline.errors import ConfigError

    if path is None:
        return {}
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"--config {path}: {err.strerror or err}") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text)
        else:
            values = json.loads(text)
    except ValueError as err:  # yaml.YAMLError and json.JSONDecodeError are ValueErrors
        raise ConfigError(f"--config {path}: not valid {path.suffix.lstrip('.') or 'JSON'}: {err}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"--config {path}: expected a mapping of stage settings")
    return values


def merged(base: dict[str, Any], section: str, **values: Any) -> dict[str, Any]:
    """`base[section]` updated with the options given on the command line (None = not given)."""
    given = {k: v for k, v in values.items() if v is not None}
    return {**base, section: {**(base.get(section) or {}), **given}}


# Options that `run` and `serve` share (same meaning, same help).
EncoderOpt = Annotated[
    str | None, typer.Option(help="tiny | videomae:DIR | vjepa2:DIR | torchscript:FILE (default: tiny).")
]
CropOpt = Annotated[int | None, typer.Option(help="TorchScript encoders: input side in pixels.")]
DeviceOpt = Annotated[
    str | None, typer.Option(help="auto (CUDA if present) | cpu | cuda | cuda:N, for every stage.")
]
VideosPerPartOpt = Annotated[
    int | None, typer.Option(help="Videos per extraction work unit (one store part, one task).")
]
AdapterOpt = Annotated[
    Path | None, typer.Option(help="Use this adapter (the --out of train-adapter) instead of training one.")
]
EpochsOpt = Annotated[int | None, typer.Option(help="Adapter training epochs (default 100).")]
DatasetOpt = Annotated[
    str | None, typer.Option(help="dataset= partition of the published shards (default: workdir name).")
]
MaxLeakageOpt = Annotated[
    float | None,
    typer.Option(help="Publish only if the worst attacker is at most this far above chance (default 0.25)."),
]
MinReductionOpt = Annotated[
    float | None,
    typer.Option(help="Publish only if at least this share of raw leakage is removed (default 0.5)."),
]
NoGateOpt = Annotated[
    bool,
    typer.Option(
        "--no-gate", help="Publish whatever leakage the gate measures (recorded in the published manifest)."
    ),
]
AllowUnmeasuredOpt = Annotated[
    bool,
    typer.Option(
        "--allow-unmeasured",
        help="Publish although leakage cannot be measured (no private_* labels); the manifest says so.",
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(help="JSON or YAML of stage settings: extract, train_adapter, anonymize, probe, stages."),
]
DaskWorkersOpt = Annotated[
    int | None, typer.Option(help="Run extraction work units on a local Dask cluster of N processes.")
]
DaskAddressOpt = Annotated[
    str | None, typer.Option(help="Run extraction work units on the Dask scheduler at tcp://HOST:PORT.")
]


# Which command-line option goes to which stage's settings.
STAGE_OPTIONS = {
    "extract": ("encoder", "crop", "device", "videos_per_part"),
    "train_adapter": ("epochs", "device"),
    "anonymize": ("dataset", "max_leakage", "min_reduction", "gate", "allow_unmeasured"),
}


def stage_settings(base: dict[str, Any], adapter: Path | None, **options: Any) -> RunConfig:
    """The run settings of `base` (a --config file's) with the command-line options on top."""
    from flows.orchestrate import run_config

    if adapter is not None:
        base = base | {"adapter": str(adapter.resolve())}
    for section, names in STAGE_OPTIONS.items():
        base = merged(base, section, **{n: options[n] for n in names})
    return run_config(base)


def gate_options(no_gate: bool, allow_unmeasured: bool) -> dict[str, bool | None]:
    """The anonymize settings of the gate flags (None: not given, the config file's or the default)."""
    return {"gate": False if no_gate else None, "allow_unmeasured": True if allow_unmeasured else None}


def run(
    workdir: Annotated[
        Path,
        typer.Option("--workdir", help="Work folder: latents.zarr, adapter/, published/, probe/, report/."),
    ],
    manifest: Annotated[
        Path | None, typer.Option(help="Manifest (CSV or Parquet): video_id, path, split, labels.")
    ] = None,
    videos: Annotated[Path | None, typer.Option(help="A folder of videos instead of a manifest.")] = None,
    images: Annotated[Path | None, typer.Option(help="A folder of images instead of a manifest.")] = None,
    encoder: EncoderOpt = None,
    crop: CropOpt = None,
    device: DeviceOpt = None,
    videos_per_part: VideosPerPartOpt = None,
    adapter: AdapterOpt = None,
    epochs: EpochsOpt = None,
    dataset: DatasetOpt = None,
    max_leakage: MaxLeakageOpt = None,
    min_reduction: MinReductionOpt = None,
    no_gate: NoGateOpt = False,
    allow_unmeasured: AllowUnmeasuredOpt = False,
    config: ConfigOpt = None,
    dask_workers: DaskWorkersOpt = None,
    dask_address: DaskAddressOpt = None,
) -> None:
    """Run every stage as a Prefect flow: extract → train-adapter → anonymize → probe → report.

    Extraction runs as idempotent work units (batches of videos, one store part each) with retries;
    the other stages follow in order. A rerun does only the missing work: units already in the store,
    an adapter trained on the same data, videos already published and unchanged probe results are
    skipped. WORKDIR/run.json (written last) records what each stage did.

    With no Prefect server configured the flow runs **embedded** (a temporary local server, started
    in about 20 s); with `PREFECT_API_URL` set it reports to that server. `--dask-workers N` runs the
    work units on N local worker processes, `--dask-address` on a running cluster (GPU workers
    advertise `GPU=1`; with a CUDA device and no such worker the command stops at once).

    Publishing is gated as in `anonymize`: refused (exit 4) when the measured leakage is over budget, or
    when the videos have no private_* labels to measure it on, unless --allow-unmeasured.

    Exits 2 with a one-line reason on bad input, 3 when some videos failed to decode (everything
    else ran), 4 when the privacy gate refused to publish.

    Examples:

      aam-pipeline run --manifest data/demo/manifest.parquet --workdir work/demo

      aam-pipeline run --videos clips/ --workdir work/clips --encoder videomae:/models/videomae-base

      aam-pipeline run --manifest m.csv --workdir work/m --dask-address tcp://10.0.0.5:8786 --device cuda

      PREFECT_API_URL=http://127.0.0.1:4200/api aam-pipeline run --manifest m.csv --workdir w --epochs 20
    """
    from flows.dask_cluster import DaskSettings
    from flows.orchestrate import run_pipeline
    from flows.prefect_extract import Source

    with one_line_errors():
        settings = stage_settings(
            config_file(config),
            adapter,
            encoder=encoder,
            crop=crop,
            device=device,
            videos_per_part=videos_per_part,
            epochs=epochs,
            dataset=dataset,
            max_leakage=max_leakage,
            min_reduction=min_reduction,
            **gate_options(no_gate, allow_unmeasured),
        )
        dask = build_config(DaskSettings, address=dask_address, workers=dask_workers)
        source = build_config(Source, **source_args(manifest, videos, images))
        record = run_gated(lambda: run_pipeline(source, workdir, settings, dask, bar=is_terminal()))
    lines, failed = summary_lines(record)
    for line in lines:
        typer.echo(line)
    if failed:
        raise typer.Exit(EXIT_PARTIAL_FAILURE)


def run_gated(call: Any) -> dict[str, Any]:
    """`call()`; the privacy gate's refusal becomes one line and exit code 4."""
    try:
        result: dict[str, Any] = call()
    except Exception as err:
        if type(err).__name__ == "PrivacyGateError":
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(EXIT_GATE_REFUSED) from None
        raise
    return result


def summary_lines(record: dict[str, Any]) -> tuple[list[str], bool]:
    """One line per stage of a run record, and whether some inputs failed to extract."""
    stages = record["stages"]
    lines = [f"run: {record['workdir']} ({record['seconds']:.0f} s)"]
    failed = False
    for name, s in stages.items():
        status = s.get("status")
        if status in ("unavailable", "skipped"):
            lines.append(f"  {name:<14} {status}: {s.get('reason', '')}")
        elif name == "extract":
            failed = s["failed"] > 0
            lines.append(
                f"  {name:<14} {s['ok']} extracted, {s['skipped']} already there, {s['failed']} failed; "
                f"{s['motion_clips']} motion + {s['static_clips']} static clips in {s['units']} unit(s)"
            )
            lines += [f"    failed {vid}: {reason}" for vid, reason in s["errors"]]
        elif name == "train-adapter":
            what = (
                "kept"
                if s.get("kept")
                else "reused (same data and settings)"
                if s.get("reused")
                else "trained"
            )
            lines.append(f"  {name:<14} {what} -> {s['out']}")
        elif name == "anonymize":
            lines.append(
                f"  {name:<14} {s['videos_added']} videos published, {s['videos_skipped']} already there "
                f"-> {s['partition']}"
            )
        elif name == "probe":
            lines.append(f"  {name:<14} {'unchanged' if status == 'unchanged' else 'done'} -> {s['path']}")
        elif name == "report":
            lines.append(
                f"  {name:<14} {'unchanged' if status == 'unchanged' else 'done'} -> {s['out']}/report.md"
            )
            lines += [f"    {line}" for line in s.get("summary", [])]
    return lines, failed
