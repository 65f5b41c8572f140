"""Helpers shared by the command modules: error reporting and exit codes."""

from __future__ import annotations

import errno
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer

T = TypeVar("T")

EXIT_BAD_INPUT = 2
EXIT_PARTIAL_FAILURE = 3
EXIT_GATE_REFUSED = 4  # anonymize: the privacy gate refused to publish


# What to do about an operating-system error, by errno; anything else gets the generic advice.
_OS_ADVICE = {
    errno.ENOSPC: "free some space (or point the output at a disk with room) and run again: "
    "what was committed is kept and the rerun resumes",
    errno.EDQUOT: "free some space within your quota and run again: what was committed is kept",
    errno.EROFS: "the filesystem is mounted read-only: write the output to a writable folder",
    errno.EACCES: "you may not write or read there: fix the permissions or choose another folder",
    errno.EPERM: "the operation is not permitted there: fix the permissions or choose another folder",
    errno.ENOENT: "check the path exists and is spelled right",
    errno.ENOTDIR: "a path component is a file, not a folder: check the path",
    errno.EISDIR: "a folder was given where a file is expected: check the path",
    errno.EIO: "the device reported an I/O error: check the disk and run again",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) or use fewer workers",
}


def os_error_line(err: OSError) -> str:
    """One line for an OSError: what failed, on which path, and what to do."""
    reason = err.strerror or str(err)
    where = f": {err.filename}" if err.filename is not None else ""
    if err.filename2 is not None:
        where += f" -> {err.filename2}"
    advice = _OS_ADVICE.get(err.errno or 0, "check the path and the disk, then run again")
    return f"{reason}{where}; {advice}"


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn the project's own errors and operating-system errors (disk full, read-only filesystem,
    permission, missing path...) into one line on stderr and exit code 2."""
    from pipeline.errors import PipelineError
    from stores.errors import StoreError

    try:
        yield
    except (PipelineError, StoreError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except OSError as err:
        typer.echo(f"error: {os_error_line(err)}", err=True)
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
