"""`aam-pipeline train-adapter`: the Anonymizing Adapter Module, trained on cached latents."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli._common import build_config, is_terminal, one_line_errors
from flows.limits import MEMORY_PER_LATENT_BYTE


def train_adapter(
    store: Annotated[str, typer.Option("--store", help="Latent cache (the --out of extract).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the adapter (safetensors + JSON).")],
    epochs: Annotated[int, typer.Option(help="Training epochs (the paper: 100).")] = 100,
    objective: Annotated[
        str,
        typer.Option(
            help="default: ours (per-clip adapter, independence term, eraser); "
            "paper: the released recipe (attention across the batch, L_LC 100 / L_T 1 / L_B 1)."
        ),
    ] = "default",
    tasks: Annotated[
        str,
        typer.Option(
            help="Co-training tasks, comma-separated subset of action,detection,anomaly; leave one out "
            "to measure it later as an unseen task."
        ),
    ] = "action,detection,anomaly",
    seed: Annotated[
        int, typer.Option(help="Seed of initialisation and sampling (same seed, same adapter).")
    ] = 0,
    device: Annotated[str, typer.Option(help="auto (CUDA if present) | cpu | cuda | cuda:N")] = "auto",
    batch_size: Annotated[int | None, typer.Option(help="Clips per step (default: the objective's).")] = None,
    lr: Annotated[
        float | None,
        typer.Option(help="Learning rate at batch 512, scaled linearly (default: the objective's)."),
    ] = None,
    temporal: Annotated[
        bool, typer.Option(help="Attend over the cached temporal tokens (store extracted with --tokens).")
    ] = False,
    erase_dims: Annotated[
        int | None,
        typer.Option(
            help="Default objective: output directions the eraser removes, fitted on the train and val "
            "videos against the video's static look (default: min(96, 3D/8); 0 turns the eraser off); "
            "more removes more leakage and costs utility (docs/adapter.md)."
        ),
    ] = None,
    erase_static: Annotated[
        bool,
        typer.Option(
            help="Default objective: fit the eraser on static clips too, so it also hides the look of "
            "static clips (costs some removal on motion clips; docs/adapter.md)."
        ),
    ] = False,
    erase_clip_dims: Annotated[
        int | None,
        typer.Option(
            help="Default objective: further directions the eraser removes, fitted against what the "
            "video's other clips share (default: min(16, D/16); 0 turns them off; docs/adapter.md)."
        ),
    ] = None,
    critic: Annotated[
        float | None,
        typer.Option(
            help="Weight of a learned nonlinear privacy critic (0 = off; default: the objective's). "
            "Each step a small two-tower MLP learns to tell, among the batch's videos of the same "
            "action, which video's RAW static look an adapted clip comes from; the adapter then "
            "makes that critic's loss as large as chance. Label-free: it reads no private_* column. "
            "Experimental: on the dev benchmark it removed less leakage than the default, because "
            "the adapter learns to fool its critic (docs/research/adapter-recipes.md)."
        ),
    ] = None,
    critic_static: Annotated[
        bool | None,
        typer.Option(
            "--critic-static/--no-critic-static",
            help="Let the critic read adapted static clips too (each against the look of its "
            "video's other static frames), not only motion clips (default: on).",
        ),
    ] = None,
    critic_steps: Annotated[
        int | None,
        typer.Option(
            help="Critic updates per adapter step (default: the objective's): a critic that lags "
            "behind the adapter is easy to fool and protects nothing."
        ),
    ] = None,
    critic_refit: Annotated[
        int | None,
        typer.Option(
            help="Re-initialise the critic before every epoch and train it this many steps on the "
            "adapter's current outputs first (0 = off; default: the objective's). One long-lived "
            "critic can be fooled by outputs that a fresh attacker still reads."
        ),
    ] = None,
    kernel: Annotated[
        float | None,
        typer.Option(
            help="Weight of a nonlinear eraser term fitted in closed form (0 = off; default: the "
            "objective's). Before every epoch, after the linear eraser, a kernel CCA between fresh "
            "random Fourier features of the adapter's output and of the video's RAW static look is "
            "fitted within actions; during the epoch the adapter drives the correlation of the fitted "
            "pairs to zero. Label-free: it reads no private_* column. Experimental: on the dev "
            "benchmark the adapter re-encoded the look and a fresh kernel CCA found more of it "
            "(docs/research/adapter-recipes.md)."
        ),
    ] = None,
    kernel_erase_dims: Annotated[
        int | None,
        typer.Option(
            help="Default objective: a nonlinear eraser after the linear one (0 = off; default: the "
            "recipe's). Before every epoch a kernel CCA between fresh random Fourier features of the "
            "output and of the video's RAW static look is fitted within actions, and this many of "
            "its output variates are regressed out of the output, in the forward pass (published "
            "embeddings included). Label-free. Experimental: on the dev benchmark it removed more "
            "leakage from motion clips but cost about 11 points of action top-1 and 22 of temporal "
            "detection mAP (docs/research/adapter-recipes.md)."
        ),
    ] = None,
    kernel_dims: Annotated[
        int | None,
        typer.Option(help="Kernel canonical pairs the --kernel term fits before every epoch (default: 32)."),
    ] = None,
    kernel_static: Annotated[
        bool | None,
        typer.Option(
            "--kernel-static/--no-kernel-static",
            help="Fit and apply the --kernel term on adapted static clips too, each against the look of "
            "its video's other static frames (default: on).",
        ),
    ] = None,
    private_labels: Annotated[
        str,
        typer.Option(
            help="Label-informed mode, never the default: comma-separated private_* columns (e.g. "
            "skin_tone,gender) whose values on the TRAIN videos the critic learns to predict instead "
            "of the static look; for owners who hold such labels, and to measure the ceiling. Report "
            "its figures apart from label-free ones. Turns the critic on at weight 1 unless --critic."
        ),
    ] = "",
    memory_gb: Annotated[
        float | None,
        typer.Option(
            help=f"Memory for training, in GB: training takes about {MEMORY_PER_LATENT_BYTE} x the float32 "
            "train/val latents it holds, so above that share of this it streams groups of videos from "
            "the store each epoch, each taking about half of it (default: a quarter of RAM)."
        ),
    ] = None,
    threads: Annotated[
        int,
        typer.Option(help="CPU threads for training (0: torch's default; 1 is usually fastest)."),
    ] = 1,
) -> None:
    """Train the Anonymizing Adapter Module on a latent cache; never decodes video.

    Reads the motion and static clips of the train and val videos, co-trains task heads on the
    manifest's labels (action, temporal detection segments, anomaly intervals) and selects the epoch
    by validation action accuracy. Private attributes are never read. Writes OUT/adapter.safetensors
    (weights, never pickle) and OUT/adapter.json (architecture, encoder id, loss weights, tasks, data
    checksum, seed, per-epoch metrics), the JSON last. Rerunning with the same store and options
    finds the adapter and does not retrain (unless an older aam-pipeline trained it differently).

    Exits 2 with a one-line reason on a missing store, a bad option, or a store without train videos.

    Examples:

      aam-pipeline train-adapter --store work/demo.zarr --out work/adapter

      aam-pipeline train-adapter --store work/demo.zarr --out work/adapter-paper --objective paper

      aam-pipeline train-adapter --store work/demo.zarr --out work/no-tad --tasks action,anomaly

      aam-pipeline train-adapter --store work/demo.zarr --out work/critic --critic 1

      aam-pipeline train-adapter --store work/demo.zarr --out work/kernel --kernel-erase-dims 32

      aam-pipeline train-adapter --store work/demo.zarr --out work/ceiling --private-labels gender,skin_tone
    """
    from flows.train_adapter import TrainAdapterConfig, train_adapter_stage

    def echo(line: str) -> None:
        typer.echo(line, err=True)

    with one_line_errors():
        chosen = tuple(dict.fromkeys(t.strip() for t in tasks.split(",") if t.strip()))
        config = build_config(
            TrainAdapterConfig,
            objective=objective,
            epochs=epochs,
            seed=seed,
            device=device,
            batch_size=batch_size,
            lr=lr,
            tasks=chosen,
            temporal=temporal,
            erase_dims=erase_dims,
            erase_static=erase_static,
            erase_clip_dims=erase_clip_dims,
            critic=critic,
            critic_static=critic_static,
            critic_steps=critic_steps,
            critic_refit=critic_refit,
            kernel=kernel,
            kernel_erase_dims=kernel_erase_dims,
            kernel_dims=kernel_dims,
            kernel_static=kernel_static,
            private_labels=tuple(c.strip() for c in private_labels.split(",") if c.strip()),
            memory_gb=memory_gb,
            threads=threads,
        )
        result = train_adapter_stage(store, out, config, bar=is_terminal(), echo=echo)
    acc = "n/a" if result.val_action_acc is None else f"{result.val_action_acc:.3f}"
    verb = "found" if result.reused else "trained"
    typer.echo(
        f"train-adapter: {verb} {result.config.adapter.variant} adapter ({result.config.objective.name} "
        f"objective) on {result.clips} clips; epoch {result.best_epoch + 1}/{len(result.history)} selected, "
        f"val action top-1 {acc}; {result.seconds:.1f} s -> {result.out}"
    )
