"""`aam-pipeline demo`: the embedded end-to-end job (what `make demo` runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli._common import one_line_errors

# The published data files only: not the manifest, index or Zarr side tables (docs/data-teams.md).
DATA_GLOB = "dataset=*/encoder=*/adapter=*/part-*.parquet"


def duckdb_query(published: Path, dim: int) -> str:
    """The first rows of every data file under the published root `published`, in DuckDB SQL."""
    return (
        f"SELECT video_id, clip_index, emb::FLOAT[{dim}] AS emb "
        f"FROM read_parquet('{published}/{DATA_GLOB}', hive_partitioning=true) LIMIT 5"
    )


def demo(
    out: Annotated[Path, typer.Option(help="Folder for everything the demo writes.")] = Path("demo-out"),
    preset: Annotated[str, typer.Option(help="Synthetic benchmark size: tiny | demo | bench.")] = "demo",
    seed: Annotated[int, typer.Option(help="Seed of the synthetic benchmark.")] = 0,
    encoder: Annotated[str, typer.Option(help="Encoder (see `extract --help`).")] = "tiny",
    epochs: Annotated[int, typer.Option(help="Adapter training epochs (each of the three adapters).")] = 20,
) -> None:
    """Run the whole pipeline on the embedded synthetic benchmark with the reference encoder.

    synth → extract → train-adapter (ours, the paper's recipe, and ours without the anomaly task) →
    anonymize (publish Parquet with the privacy gate's numbers) → probe raw, the adapters and the
    published shards → report side by side, and the quality targets checked against it
    (report/targets.json); then the stills protocol (the paper's VISPR evaluation: 320 png stills of
    other people through the same encoder and our adapter, stills/report/) beside them, with its
    target (>= 70% removed on stills). Rerunning reuses what is already there (videos, latents, adapters, the
    publication).

    Example:

      aam-pipeline demo --out demo-out
    """
    from flows.demo import TARGETS_JSON, run_demo, target_lines

    def echo(line: str) -> None:
        typer.echo(line, err=True)

    with one_line_errors():
        result = run_demo(out, preset=preset, seed=seed, encoder=encoder, epochs=epochs, echo=echo)
    s, e, a = result.synth, result.extract, result.anonymize
    typer.echo(f"demo: wrote everything under {result.out}/")
    typer.echo(f"  synth          {s.videos} videos ({s.rendered} rendered now) -> {s.manifest}")
    typer.echo(
        f"  extract        {e.ok} extracted, {e.skipped} already there, {e.failed} failed; "
        f"{e.motion_clips} motion + {e.static_clips} static clips in {e.seconds:.0f} s -> {e.store}"
    )
    for name, t in result.adapters.items():
        acc = "n/a" if t.val_action_acc is None else f"{t.val_action_acc:.3f}"
        verb = "found" if t.reused else f"trained in {t.seconds:.0f} s"
        typer.echo(f"  train-adapter  {name}: {verb}, val action top-1 {acc} -> {t.out}")
    gate = (
        f"worst leakage {a.gate.worst_leakage:.3f}, smallest reduction "
        f"{'n/a' if a.gate.min_reduction is None else f'{a.gate.min_reduction:.2f}'}"
        if a.gate.measured
        else f"leakage not measured ({a.gate.reason})"
    )
    location = a.publish.partition.location
    typer.echo(f"  anonymize      {a.clips} clips published ({gate}) -> {location}")
    typer.echo(f"  probe          {result.probe.path}")
    typer.echo(f"  report         {result.report.out}/report.md")
    for line in result.summary:
        typer.echo(f"    {line}")
    if result.stills is not None:
        st = result.stills
        typer.echo(
            f"  stills         {st.synth.videos} stills of other people, our adapter"
            f" -> {st.report.out}/report.md"
        )
        for line in result.stills_summary:
            typer.echo(f"    {line}")
    met = sum(t.met is True for t in result.targets)
    typer.echo(f"  targets        {met} of {len(result.targets)} met -> {result.report.out}/{TARGETS_JSON}")
    for line in target_lines(result.targets):
        typer.echo(f"    {line}")
    typer.echo("")
    typer.echo(
        f"The anonymized embeddings are Parquet under {result.out}/published/. Query them, e.g. with DuckDB:"
    )
    query = duckdb_query(result.out / "published", a.dim)
    typer.echo(f'  .venv/bin/python -c "import duckdb; print(duckdb.sql(\\"{query}\\"))"')
    typer.echo("  (docs/data-teams.md: polars, pandas, faiss and cosine top-k)")
