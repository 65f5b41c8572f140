"""`aam-pipeline report`: raw and anonymized probe results side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli._common import one_line_errors


def report(
    probe_dir: Annotated[Path, typer.Argument(help="The --out of `aam-pipeline probe` (holds probe.json).")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the report into.")],
) -> None:
    """Compare every anonymized embedding set with the raw one: report.json, report.md and charts.

    Per metric: raw and anonymized values with deltas and chance. Per private attribute and attacker:
    the fraction of above-chance leakage removed, (raw − anon) / (raw − chance), and its worst case over
    attackers; re-identification against chance; the bias gap; the combined score
    (action top-1 + (1 − priv)) / 2. Charts: tradeoff.png (privacy–utility) and leakage.png (per
    attribute). Definitions: report.md's last section and docs/probes.md.

    Exits 2 with a one-line reason on a missing probe folder or a newer schema.

    Examples:

      aam-pipeline report work/probe --out work/report

      aam-pipeline probe --store work/demo.zarr --published work/published --out work/probe && \\
        aam-pipeline report work/probe --out work/report
    """
    from flows.report import make_report, summary_lines

    with one_line_errors():
        result = make_report(probe_dir, out)
    for line in summary_lines(result.report):
        typer.echo(f"  {line}")
    typer.echo(f"report: {', '.join(p.name for p in result.files)} -> {result.out}")
