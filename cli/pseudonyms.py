"""`aam-pipeline pseudonyms`: map published pseudonyms back to the owner's video ids (private output)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli._common import one_line_errors


def pseudonyms(
    store: Annotated[str, typer.Option("--store", help="Latent cache the videos were published from.")],
    out: Annotated[
        Path | None, typer.Option(help="Write video_id,pseudonym as CSV here (default: print to stdout).")
    ] = None,
    pseudonym_key: Annotated[
        str, typer.Option(help="The key file anonymize used (default: STORE/_pseudonym.key).")
    ] = "",
) -> None:
    """Print (or write) the pseudonym of every video of a latent cache: the private map from the
    `video_id` that `anonymize` published back to your own ids.

    The output names your videos: keep it with the private store, never next to the published data.
    Without the key nobody can compute this map, and a lost key cannot be recovered: back it up.

    Exits 2 with a one-line reason when the store or its key is missing.

    Examples:

      aam-pipeline pseudonyms --store work/demo.zarr --out private/pseudonyms.csv

      aam-pipeline pseudonyms --store work/demo.zarr | grep v-3fa1
    """
    from flows.views import pseudonym_map

    with one_line_errors():
        mapping = pseudonym_map(store, pseudonym_key)
    lines = ["video_id,pseudonym", *(f"{_csv(v)},{p}" for v, p in sorted(mapping.items()))]
    if out is None:
        typer.echo("\n".join(lines))
        return
    with one_line_errors():
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("\n".join(lines) + "\n")
        except OSError as err:
            from pipeline.errors import ConfigError

            raise ConfigError(f"--out {out}: cannot write ({err.strerror})") from None
    typer.echo(f"pseudonyms: {len(mapping)} videos -> {out}", err=True)


def _csv(value: str) -> str:
    return f'"{value.replace(chr(34), chr(34) * 2)}"' if any(c in value for c in ',"\n') else value
