"""`aam-pipeline synth`: the embedded synthetic privacy benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli._common import one_line_errors


def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write videos/ and manifest.parquet into.")],
    preset: Annotated[
        str,
        typer.Option(
            help="tiny (tests, seconds), demo (the demo), dev (other people: tune recipes here), bench, "
            "stills (png stills of other people and scenes: the paper's VISPR protocol), pretrain (encoder)."
        ),
    ] = "tiny",
    seed: Annotated[int, typer.Option(help="Same seed, same videos and labels.")] = 0,
    workers: Annotated[int, typer.Option(help="Render processes (0 = one per core).")] = 0,
) -> None:
    """Render the synthetic privacy benchmark (H.264 videos + manifest.parquet).

    People-like actors whose private attributes (skin tone, gender presentation, clothing colour and
    pattern, identity) are pure appearance and whose actions are pure motion, in cluttered scenes with
    camera jitter and noise. The manifest follows the manifest contract (docs/synthetic-benchmark.md).

    Trimmed action clips, untrimmed videos with annotated segments (temporal detection), normal and
    abnormal videos (anomaly detection), and a gender-skewed/balanced subset (`bias_split`). The
    stills preset renders png stills instead (same private attributes, splits by person, no action label).

    Examples:

      aam-pipeline synth data/tiny --preset tiny --seed 0

      aam-pipeline synth data/demo --preset demo

      aam-pipeline synth data/stills --preset stills --seed 0   # still images, probe with --adapter
    """
    from flows.synth import synth_benchmark

    with one_line_errors():
        result = synth_benchmark(out_dir, preset=preset, seed=seed, workers=workers or None)
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items())
    typer.echo(f"synth: {result.videos} videos ({counts}); rendered {result.rendered} now")
    typer.echo(f"manifest: {result.manifest}")
