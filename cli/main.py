"""The `aam-pipeline` typer app. Command modules import only typer and the standard library at
module level, so `--help` stays fast; heavy libraries load inside the command that needs them."""

from __future__ import annotations

import typer

from cli import (
    anonymize,
    demo,
    extract,
    pretrain_encoder,
    probe,
    pseudonyms,
    report,
    run,
    serve,
    synth,
    train_adapter,
)

app = typer.Typer(
    name="aam-pipeline",
    help=(
        "Share embeddings of video without sharing who is in it.\n\n"
        "Extract latents with a frozen video encoder, train an Anonymizing Adapter Module on them, "
        "publish anonymized Parquet shards, and probe what was kept and what was removed."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


@app.callback()
def main() -> None:
    """Share embeddings of video without sharing who is in it."""


app.command("synth")(synth.synth)
app.command("extract")(extract.extract)
app.command("train-adapter")(train_adapter.train_adapter)
app.command("anonymize")(anonymize.anonymize)
app.command("pseudonyms")(pseudonyms.pseudonyms)
app.command("demo")(demo.demo)
app.command("pretrain-encoder")(pretrain_encoder.pretrain_encoder)
app.command("probe")(probe.probe)
app.command("report")(report.report)
app.command("run")(run.run)
app.command("serve")(serve.serve)


if __name__ == "__main__":
    app()
