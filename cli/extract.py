"""`aam-pipeline extract`: decode once, frozen encoder, crash-safe Zarr latent cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli._common import EXIT_PARTIAL_FAILURE, build_config, is_terminal, one_line_errors


def extract(
    out: Annotated[Path, typer.Option("--out", help="Latent cache to create or resume (a folder).")],
    manifest: Annotated[
        Path | None, typer.Option(help="Manifest (CSV or Parquet): video_id, path, split, labels.")
    ] = None,
    videos: Annotated[Path | None, typer.Option(help="A folder of videos instead of a manifest.")] = None,
    images: Annotated[
        Path | None, typer.Option(help="A folder of images (each becomes a static clip) instead.")
    ] = None,
    encoder: Annotated[
        str,
        typer.Option(
            help="tiny | videomae:DIR | vjepa2:DIR | torchscript:FILE (DIR: a local folder or cached hub id)."
        ),
    ] = "tiny",
    frames_per_clip: Annotated[
        int | None,
        typer.Option(help="TorchScript and V-JEPA 2 encoders: frames per clip (default: 16 / the model's)."),
    ] = None,
    crop: Annotated[
        int | None, typer.Option(help="TorchScript encoders: input height = width in pixels (default 224).")
    ] = None,
    resize: Annotated[
        int | None,
        typer.Option(help="TorchScript encoders: short side before the centre crop (default: --crop)."),
    ] = None,
    resize_mode: Annotated[
        str | None,
        typer.Option(
            help="TorchScript encoders: short-side (resize + centre crop, the default) or squash "
            "(whole frame to --crop x --crop, no edge cut; recorded in the store's preprocessing)."
        ),
    ] = None,
    frame_step: Annotated[int, typer.Option(help="Take every n-th frame inside a clip.")] = 1,
    stride: Annotated[
        int | None, typer.Option(help="Frames between clip starts (default: clip span, no overlap).")
    ] = None,
    num_clips: Annotated[
        int | None, typer.Option(help="N evenly spaced clips per video instead of striding.")
    ] = None,
    static_frames: Annotated[
        int | None,
        typer.Option(
            help="K evenly spaced static clips per video of the train and val splits (and of videos "
            "without a split). Default: 10 for a new store, the store's own number for an existing one."
        ),
    ] = None,
    static_frames_test: Annotated[
        int | None,
        typer.Option(
            help="K for the videos of the test split: only the probes read their static clips. "
            "Default: min(5, --static-frames) for a new store, the store's own number for an existing "
            "one (a store made before this option has --static-frames for every split). 5 of 10 "
            "encodes 12% fewer clips and moved no static-leakage figure by more than 0.025 on the dev "
            "benchmark; fewer reads the attackers low (docs/extract.md)."
        ),
    ] = None,
    tokens: Annotated[bool, typer.Option(help="Also store temporal tokens [T', D] per clip.")] = False,
    float16: Annotated[bool, typer.Option(help="Store embeddings as float16.")] = False,
    reader: Annotated[
        str,
        typer.Option(
            help="Video decoder: pyav (default), decord, or torchcodec (CUDA installs with the "
            "torchcodec extra). A decode error is retried once with the other CPU reader."
        ),
    ] = "pyav",
    device: Annotated[str, typer.Option(help="auto (CUDA if present) | cpu | cuda | cuda:N")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Clips per encoder batch.")] = 32,
    decode_workers: Annotated[
        int | None, typer.Option(help="Decoding processes (0 = in this process; default: auto).")
    ] = None,
    videos_per_part: Annotated[int, typer.Option(help="Videos per work unit (one store part).")] = 32,
    allow_download: Annotated[
        bool, typer.Option(help="Let transformers download weights missing from the local cache.")
    ] = False,
    dask_workers: Annotated[
        int | None,
        typer.Option(help="Run the work units as Prefect tasks on a local Dask cluster of N processes."),
    ] = None,
    dask_address: Annotated[
        str | None,
        typer.Option(help="Run the work units as Prefect tasks on the Dask scheduler at tcp://HOST:PORT."),
    ] = None,
) -> None:
    """Extract clip embeddings with a frozen encoder into a Zarr latent cache.

    Every video is decoded once, in order; its motion clips (16 consecutive frames, non-overlapping
    by default) and K static clips (one frame repeated) are cut from that pass and encoded in batches.
    A rerun skips videos already complete; after a crash or kill the store stays readable and a rerun
    finishes the rest. Broken inputs are recorded in the store's errors table and the command exits
    with code 3 after processing everything else.

    `--dask-workers N` / `--dask-address A` run each work unit (--videos-per-part videos, one store
    part) as a Prefect task on a Dask cluster (docs/orchestration.md); GPU workers advertise `GPU=1`.

    Examples:

      aam-pipeline extract --manifest data/demo/manifest.parquet --out work/demo.zarr

      aam-pipeline extract --videos clips/ --encoder videomae:/models/videomae-base --out work/v.zarr

      aam-pipeline extract --images vispr/ --encoder torchscript:enc.pt --crop 112 --out work/vispr.zarr

      aam-pipeline extract --manifest m.csv --out work/m.zarr --dask-address tcp://10.0.0.5:8786 --device cuda
    """
    from flows.extract import ExtractConfig, load_inputs
    from flows.extract import extract as run

    with one_line_errors():
        config = build_config(
            ExtractConfig,
            encoder=encoder,
            frames_per_clip=frames_per_clip,
            crop=crop,
            resize=resize,
            resize_mode=resize_mode,
            frame_step=frame_step,
            stride=stride,
            num_clips=num_clips,
            static_frames=static_frames,
            static_frames_test=static_frames_test,
            tokens=tokens,
            dtype="float16" if float16 else "float32",
            reader=reader,
            device=device,
            allow_download=allow_download,
            batch_size=batch_size,
            decode_workers=decode_workers,
            videos_per_part=videos_per_part,
        )
        if dask_workers is None and dask_address is None:
            inputs = load_inputs(manifest, videos, images)
            result = run(inputs, out, config)
        else:
            from cli.run import source_args
            from flows.dask_cluster import DaskSettings
            from flows.prefect_extract import Source, extract_distributed

            dask = build_config(DaskSettings, address=dask_address, workers=dask_workers)
            source = build_config(Source, **source_args(manifest, videos, images))
            result = extract_distributed(source, str(out), config, dask, bar=is_terminal())
    typer.echo(
        f"extract: {result.total} inputs, {result.skipped} already complete, {result.ok} extracted, "
        f"{result.failed} failed; {result.motion_clips} motion + {result.static_clips} static clips "
        f"in {result.seconds:.1f} s -> {result.store}"
    )
    for video_id, reason in result.errors[:20]:
        typer.echo(f"  failed {video_id}: {reason}", err=True)
    if len(result.errors) > 20:
        typer.echo(f"  … and {len(result.errors) - 20} more (see the store's errors table)", err=True)
    if result.failed:
        raise typer.Exit(EXIT_PARTIAL_FAILURE)
