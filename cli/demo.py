"""`aam-pipeline demo`: the embedded end-to-end job (what `make demo` runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli._common import one_line_errors


def demo(
    out: Annotated[Path, typer.Option(help="Folder for everything the demo writes.")] = Path("demo-out"),
    preset: Annotated[str, typer.Option(help="Synthetic benchmark size: tiny | demo | bench.")] = "demo",
    seed: Annotated[int, typer.Option(help="Seed of the synthetic benchmark.")] = 0,
    encoder: Annotated[str, typer.Option(help="Encoder (see `extract --help`).")] = "tiny",
) -> None:
    """Run the whole pipeline on the embedded synthetic benchmark with the reference encoder.

    Rerunning reuses what is already there (rendered videos, extracted latents).

    Example:

      aam-pipeline demo --out demo-out
    """
    from flows.demo import run_demo

    with one_line_errors():
        result = run_demo(out, preset=preset, seed=seed, encoder=encoder)
    s, e = result.synth, result.extract
    typer.echo(f"demo: wrote everything under {result.out}/")
    typer.echo(f"  synth    {s.videos} videos ({s.rendered} rendered now) -> {s.manifest}")
    typer.echo(
        f"  extract  {e.ok} extracted, {e.skipped} already there, {e.failed} failed; "
        f"{e.motion_clips} motion + {e.static_clips} static clips in {e.seconds:.0f} s -> {e.store}"
    )
    typer.echo(f"  probe    {result.probe.path}")
    typer.echo(f"  report   {result.report.out}/report.md")
    for line in result.summary:
        typer.echo(f"    {line}")
    if result.stages_missing:
        typer.echo(f"  not yet part of the pipeline: {', '.join(result.stages_missing)}")
