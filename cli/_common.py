"""Helpers shared by the command modules: error reporting and exit codes."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer

T = TypeVar("T")

EXIT_BAD_INPUT = 2
EXIT_PARTIAL_FAILURE = 3
EXIT_GATE_REFUSED = 4  # anonymize: the privacy gate refused to publish


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn the project's own errors into one line on stderr and exit code 2."""
    from pipeline.errors import PipelineError
    from stores.errors import StoreError

    try:
        yield
    except (PipelineError, StoreError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def is_terminal() -> bool:
    return sys.stderr.isatty()


def build_config(config_cls: type[T], **values: Any) -> T:
    """Build a flow's config; a validation error becomes a one-line ConfigError naming the option."""
    from pydantic import ValidationError

    from pipeline.errors import ConfigError

    try:
        return config_cls(**values)
    except ValidationError as err:
        first = err.errors()[0]
        option = str(first["loc"][0]).replace("_", "-") if first["loc"] else "config"
        raise ConfigError(f"--{option}: {first['msg']}") from None
