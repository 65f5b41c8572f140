"""`aam-pipeline probe`: what raw and anonymized embeddings kept and what they leak."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli._common import build_config, is_terminal, one_line_errors
from flows.limits import PROBE_MAX_CLIPS


def probe(
    store: Annotated[str, typer.Option("--store", help="Latent cache (the --out of extract): labels + raw.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write probe.json into.")],
    adapter: Annotated[
        list[Path] | None,
        typer.Option(help="Adapter folder (the --out of train-adapter) to probe; repeatable."),
    ] = None,
    published: Annotated[
        list[Path] | None,
        typer.Option(
            help="Published dataset (the --out of anonymize) or one partition of it; every partition "
            "is probed as its own set; repeatable."
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of every probe and attacker (same seed, same numbers).")
    ] = 0,
    tasks: Annotated[
        str, typer.Option(help="Comma-separated subset of action,temporal,anomaly,leakage,reid,bias.")
    ] = "action,temporal,anomaly,leakage,reid,bias",
    attackers: Annotated[
        str,
        typer.Option(
            help="Leakage attacker panel: fast (linear, mlp, knn_cosine; the gate's) or full (+ logreg_cv, "
            "mlp_wide, hgb_pca, scikit-learn's default logistic regression and MLP, and the oracle line; "
            "minutes per set)."
        ),
    ] = "fast",
    max_clips: Annotated[
        int,
        typer.Option(
            help="Above this many motion clips, probe a seeded sample of whole people per split of about "
            "this many clips (only their embeddings are read; probe.json's store.sample says how many); "
            "0 probes every clip. Bounds memory on large stores."
        ),
    ] = PROBE_MAX_CLIPS,
) -> None:
    """Probe raw and anonymized clip embeddings: utility kept, private attributes and identity leaked.

    Every probe whose labels the store has runs on the raw cache embeddings and on each anonymized set
    (--adapter, --published); labels always come from the store. Utility: action top-1/top-5 (linear
    probe), temporal detection mAP@tIoU 0.3:0.7, anomaly frame AUC. Privacy: cMAP of an attacker panel
    (fit on train + val) on every private_* attribute, on static clips and on motion clips, the worst
    attacker per attribute named, with 95% intervals over people; re-identification
    top-1/mAP; the bias gap on the skewed split. Chance levels beside every number. A probe without
    labels is skipped with its reason. Writes OUT/probe.json last; `aam-pipeline report` reads it.
    A store of more than --max-clips motion clips is probed on a seeded sample of whole people per split.

    Exits 2 with a one-line reason on a missing store, a bad option or a newer schema.

    Examples:

      aam-pipeline probe --store work/demo.zarr --out work/probe

      aam-pipeline probe --store work/demo.zarr --published work/published --out work/probe

      aam-pipeline probe --store work/demo.zarr --adapter work/adapter --tasks action,leakage --out p

      aam-pipeline probe --store work/demo.zarr --adapter work/adapter --attackers full --out p
    """
    from flows.probe import TASK_OF, ProbeRunConfig, with_attackers
    from flows.probe import probe as run
    from flows.report import compare, summary_lines

    def echo(line: str) -> None:
        typer.echo(line, err=True)

    with one_line_errors():
        chosen = tuple(dict.fromkeys(t.strip() for t in tasks.split(",") if t.strip()))
        config = build_config(
            ProbeRunConfig,
            seed=seed,
            tasks=chosen,
            probes=with_attackers(attackers),
            max_clips=max_clips,
        )
        result = run(
            store,
            out,
            config,
            adapters=adapter or [],
            published=published or [],
            bar=is_terminal(),
            echo=echo,
        )
    record = result.record
    probes = sum(o.status == "ok" for s in record.sets for o in s.probes.values())
    typer.echo(
        f"probe: {len(record.sets)} embedding set(s), {probes} probes run in {result.seconds:.1f} s "
        f"-> {result.path}"
    )
    for line in summary_lines(compare(record)):
        typer.echo(f"  {line}")
    for name, outcome in record.tasks.items():
        if outcome.status == "skipped":
            typer.echo(f"  skipped {name}: {outcome.reason}")
    for s in record.sets:
        for name, outcome in s.probes.items():
            if outcome.status == "skipped" and record.tasks[TASK_OF[name]].status == "ok":
                typer.echo(f"  skipped {name} on {s.name}: {outcome.reason}")
