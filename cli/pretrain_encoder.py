"""`aam-pipeline pretrain-encoder`: regenerate the shipped `tiny` reference encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli._common import one_line_errors


def pretrain_encoder(
    workdir: Annotated[Path, typer.Option(help="Where to render the pretraining videos.")] = Path(
        "work/encoder"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the pretraining population and of training.")] = 0,
    epochs: Annotated[
        int | None, typer.Option(help="Training epochs (default: the shipped recipe's).", min=1)
    ] = None,
) -> None:
    """Pretrain the `tiny` reference encoder and overwrite its shipped weights.

    Writes pipeline/encoders/weights/tiny.safetensors and tiny.json (with the checksum).

    The pretraining population (people, scenes) is disjoint from every benchmark preset; the objective
    is action classification plus token-level and motion-guided reconstruction, never the private
    attributes or identities. Training runs on one CPU thread, so the same seed gives the same bytes
    on any machine; about 40 minutes in all on the 2-core development machine. CI never runs it.

    Example:

      aam-pipeline pretrain-encoder --seed 0
    """
    from flows.pretrain_encoder import pretrain_encoder as run

    with one_line_errors():
        info = run(workdir, seed=seed, epochs=epochs)
    last = info["history"][-1]
    typer.echo(
        f"pretrain-encoder: {info['data']['videos']} videos, {len(info['history'])} epochs in "
        f"{info['train_seconds']} s; final train acc {last['acc']:.3f}; sha256 {info['sha256'][:12]}…"
    )
