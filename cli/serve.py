"""`aam-pipeline serve`: a scheduled Prefect deployment that keeps a published dataset current."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli._common import EXIT_PARTIAL_FAILURE, build_config, one_line_errors
from cli.run import (
    AdapterOpt,
    AllowUnmeasuredOpt,
    ConfigOpt,
    CropOpt,
    DaskAddressOpt,
    DaskWorkersOpt,
    DatasetOpt,
    DeviceOpt,
    EncoderOpt,
    EpochsOpt,
    MaxLeakageOpt,
    MinReductionOpt,
    NoGateOpt,
    VideosPerPartOpt,
    config_file,
    gate_options,
    run_gated,
    source_args,
    stage_settings,
    summary_lines,
)


def serve(
    workdir: Annotated[
        Path, typer.Option("--workdir", help="Work folder: latents.zarr, adapter/, published/ (as `run`).")
    ],
    manifest: Annotated[
        Path | None, typer.Option(help="Watched manifest (CSV or Parquet), read again at every run.")
    ] = None,
    videos: Annotated[
        Path | None, typer.Option(help="Watched folder of videos, listed again at every run.")
    ] = None,
    images: Annotated[Path | None, typer.Option(help="Watched folder of images.")] = None,
    cron: Annotated[
        str | None, typer.Option(help="Cron schedule, e.g. '*/15 * * * *' (default: every 15 minutes).")
    ] = None,
    interval: Annotated[
        float | None, typer.Option(help="Run every this many seconds instead of a cron schedule.")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Deployment name (default: refresh- + the workdir's folder name).")
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Run one refresh now and exit (no server needed; for system cron).")
    ] = False,
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
    """Serve a scheduled deployment that extracts and publishes only what is new.

    Every scheduled run reads the watched manifest (or lists the watched folder), extracts the videos
    not yet in WORKDIR/latents.zarr as work units, trains the adapter if WORKDIR/adapter has none
    (then keeps it, so published rows stay comparable), and appends the new videos to the published
    dataset in WORKDIR/published. Runs never overlap; a run after a failure does only the missing work.

    The deployment lives on the Prefect server that `PREFECT_API_URL` names (start one with
    `prefect server start`); its schedule is not paused when this process stops, so serving again
    (same --workdir or --name) picks up where it left off. Ctrl-C stops serving. `--once` runs one
    refresh at once, embedded, and exits. Publishing is gated as in `anonymize` (a refused refresh
    publishes nothing; --no-gate, --allow-unmeasured). Guide: docs/orchestration.md.

    Exits 2 with a one-line reason on bad input or when no Prefect server is configured.

    Examples:

      prefect server start &   export PREFECT_API_URL=http://127.0.0.1:4200/api

      aam-pipeline serve --videos /data/incoming --workdir work/incoming --cron '*/10 * * * *'

      aam-pipeline serve --manifest data/m.parquet --workdir work/m --interval 300 --dask-workers 2

      aam-pipeline serve --videos /data/incoming --workdir work/incoming --once
    """
    from flows.dask_cluster import DaskSettings
    from flows.orchestrate import REFRESH_STAGES
    from flows.orchestrate import refresh as refresh_once
    from flows.orchestrate import serve as serve_flow
    from flows.prefect_extract import Source

    with one_line_errors():
        settings = stage_settings(
            {"stages": list(REFRESH_STAGES), "retrain": False} | config_file(config),
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
        if once:
            record = run_gated(lambda: refresh_once(source, workdir, settings, dask))
        else:
            if cron is None and interval is None:
                cron = "*/15 * * * *"
            serve_flow(source, workdir, settings, dask, name=name, cron=cron, interval=interval)
            return
    lines, failed = summary_lines(record)
    for line in lines:
        typer.echo(line)
    if failed:
        raise typer.Exit(EXIT_PARTIAL_FAILURE)
