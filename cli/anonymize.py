"""`aam-pipeline anonymize`: publish anonymized shards that data teams can read, and nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli._common import EXIT_GATE_REFUSED, build_config, is_terminal, one_line_errors
from flows.limits import CHUNK_ROWS, GATE_MAX_CLIPS
from flows.privacy_budget import DEFAULT_MAX_LEAKAGE, DEFAULT_MIN_REDUCTION


def anonymize(
    store: Annotated[str, typer.Option("--store", help="Latent cache (the --out of extract).")],
    adapter: Annotated[Path, typer.Option("--adapter", help="Adapter folder (the --out of train-adapter).")],
    out: Annotated[str, typer.Option("--out", help="Published dataset root (a folder or fsspec URL).")],
    max_leakage: Annotated[
        float,
        typer.Option(
            help="Privacy budget: refuse to publish when any of the gate's attackers recovers a private "
            "attribute from the anonymized motion clips more than this share of the way from chance (0) "
            "to perfect (1) in cMAP."
        ),
    ] = DEFAULT_MAX_LEAKAGE,
    min_reduction: Annotated[
        float,
        typer.Option(
            help="Refuse to publish when the adapter removes less than this fraction of the raw "
            "above-chance leakage of any attribute, the panel's worst attacker on raw clips against its "
            "worst on anonymized ones (the paper's adapters remove 0.45-0.58)."
        ),
    ] = DEFAULT_MIN_REDUCTION,
    no_gate: Annotated[
        bool,
        typer.Option(
            "--no-gate",
            help="Measure and record leakage but publish whatever it is (the manifest says so).",
        ),
    ] = False,
    gate_attackers: Annotated[
        str,
        typer.Option(
            help="The gate's attacker panel: fast (linear, MLP, cosine k-NN; about a minute on the demo) or "
            "full (+ cross-validated logistic regression, wide MLP with early stopping, gradient-boosted "
            "trees, scikit-learn defaults; several times slower). See docs/probes.md."
        ),
    ] = "fast",
    allow_unmeasured: Annotated[
        bool,
        typer.Option(
            "--allow-unmeasured",
            help="Publish although leakage cannot be measured (the store has no private_* labels); the "
            "manifest and dataset card say it was not measured.",
        ),
    ] = False,
    original_ids: Annotated[
        bool,
        typer.Option(
            "--original-ids",
            help="Publish your own video ids instead of keyed pseudonyms. They are file names or "
            "database keys: anyone who reads the data can group clips by them and often tell who is in "
            "the video (jane_doe_kitchen.mp4).",
        ),
    ] = False,
    pseudonym_key: Annotated[
        str,
        typer.Option(
            help="Key file for the pseudonyms (default: STORE/_pseudonym.key, created on first use). Keep "
            "it private; share one key between stores to give their videos joinable pseudonyms.",
        ),
    ] = "",
    dataset: Annotated[
        str,
        typer.Option(
            help="dataset= partition value (default: the store's folder name; the folder above it for a "
            "store named latents, store or cache)."
        ),
    ] = "",
    adapter_version: Annotated[
        str, typer.Option(help="adapter= partition value (default: sha- + 12 hex of the weights).")
    ] = "",
    new_only: Annotated[
        bool,
        typer.Option(
            "--new-only",
            help="Refuse a partition that already holds other videos (default: append the new ones).",
        ),
    ] = False,
    float16: Annotated[bool, typer.Option(help="Publish `emb` as float16.")] = False,
    normalise: Annotated[bool, typer.Option(help="Publish unit-length embeddings (l2).")] = False,
    faiss_index: Annotated[
        str | None,
        typer.Option(
            help="Also write a faiss index: flat (exact), ivf (large sets) or auto (ivf from 200k rows)."
        ),
    ] = None,
    zarr_copy: Annotated[bool, typer.Option(help="Also write a Zarr copy of the partition.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the gate's attackers.")] = 0,
    threads: Annotated[
        int, typer.Option(help="CPU threads for the adapter (0: torch's default; 1 is usually fastest).")
    ] = 1,
    chunk_rows: Annotated[
        int,
        typer.Option(
            help="Motion clips read and anonymized at once (memory: about 2 x 4 x D bytes each); the "
            "paper variant rounds it up to whole runs of 512. The output does not depend on it."
        ),
    ] = CHUNK_ROWS,
    gate_max_clips: Annotated[
        int,
        typer.Option(
            help="Above this many motion clips the gate measures a seeded sample of whole people per split "
            "of about this many clips (recorded as `sample` in the manifest); 0 measures every clip."
        ),
    ] = GATE_MAX_CLIPS,
    spill_dir: Annotated[
        str,
        typer.Option(
            help="Folder for the temporary file of anonymized rows between the gate and the publish "
            "(N x D float32, e.g. 7.4 GB for 2.4M clips at D=768; a file without a name, gone when the "
            "command ends, even killed). Default: TMPDIR."
        ),
    ] = "",
) -> None:
    """Apply a trained adapter to every motion clip of a latent cache and publish them as Parquet.

    One row per clip (clip_id, video_id, clip_index, t_start_s, t_end_s, emb), hive-partitioned by
    dataset / encoder / adapter; the partition's `_manifest.json` is written last. Never published:
    `private_*` labels, raw or static-clip embeddings, source paths, and (unless --original-ids) your
    video ids: `video_id` is a keyed pseudonym (HMAC-SHA256 under a key kept with the store), the same
    on every republish and append from that store, so data teams can join and dedupe.

    **Privacy gate, on by default**: the leakage probe's attacker panel (--gate-attackers) is trained
    on the train and val splits and scored on the held-out test split, on raw and anonymized motion
    clips; the numbers, each attribute's winning attacker and 95% intervals over people go into the
    manifest and the dataset card. When the worst leakage is above --max-leakage or the smallest
    reduction below --min-reduction, nothing is written and the command exits 4. Without private_* labels
    leakage cannot be measured and the command exits 4 unless --allow-unmeasured. An adapter whose
    output is (nearly) its input is refused whatever the options: that would publish raw embeddings.

    **Streaming**: motion clips are read and anonymized --chunk-rows at a time into a temporary file
    (--spill-dir), the gate measures at most about --gate-max-clips of them (a seeded sample of whole
    people per split above that, test split held out), and the Parquet files are written one at a time,
    so memory does not grow with the store (docs/adapter.md, Scale).

    Publishing is atomic (readers, glob readers included, see all of it or none) and reproducible;
    rerunning after new videos were extracted appends only those; a newer adapter goes to its own
    adapter= partition. One publish of a partition at a time: a second one exits 2 naming the first.

    Exits 2 with a one-line reason on bad input (missing store or adapter, adapter of another encoder
    or other encoder weights).

    Examples:

      aam-pipeline anonymize --store work/demo.zarr --adapter work/adapter --out work/published

      aam-pipeline anonymize --store work/demo.zarr --adapter work/adapter --out work/published \\
          --max-leakage 0.1 --min-reduction 0.8 --faiss-index flat

      aam-pipeline anonymize --store work/unlabelled.zarr --adapter work/adapter --out work/published \\
          --allow-unmeasured
    """
    from flows.anonymize import AnonymizeConfig, PrivacyGateError
    from flows.anonymize import anonymize as run

    def echo(line: str) -> None:
        typer.echo(line, err=True)

    with one_line_errors():
        config = build_config(
            AnonymizeConfig,
            dataset=dataset,
            adapter_version=adapter_version,
            max_leakage=max_leakage,
            min_reduction=min_reduction,
            gate=not no_gate,
            gate_attackers=gate_attackers,
            allow_unmeasured=allow_unmeasured,
            original_ids=original_ids,
            pseudonym_key=pseudonym_key,
            mode="new" if new_only else "append",
            float16=float16,
            normalise=normalise,
            faiss_index=faiss_index,
            zarr_copy=zarr_copy,
            seed=seed,
            threads=threads,
            chunk_rows=chunk_rows,
            gate_max_clips=gate_max_clips,
            spill_dir=spill_dir,
        )
        try:
            result = run(store, adapter, out, config, bar=is_terminal(), echo=echo)
        except PrivacyGateError as err:  # not bad input: its own exit code
            typer.echo(f"refused: {err}", err=True)
            raise typer.Exit(EXIT_GATE_REFUSED) from None
    p = result.publish
    typer.echo(
        f"anonymize: {result.clips} clips (D={result.dim}) in {result.seconds:.1f} s (adapter "
        f"{result.anonymize_seconds:.1f} s, gate {result.gate_seconds:.1f} s, publish "
        f"{result.publish_seconds:.1f} s); "
        f"{p.rows_added} rows of {p.videos_added} new videos published, {p.videos_skipped} already there "
        f"-> {p.partition.location}"
    )
    if not result.gate.measured:
        typer.echo(f"  leakage NOT measured: {result.gate.reason}")
