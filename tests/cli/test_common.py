"""cli._common.one_line_errors: operating-system errors become one line and exit 2, with what to do."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import typer

from cli._common import EXIT_BAD_INPUT, one_line_errors


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        (errno.ENOSPC, "free some space"),
        (errno.EROFS, "read-only"),
        (errno.EACCES, "permissions"),
        (errno.EPERM, "permissions"),
        (errno.ENOENT, "check the path exists"),
        (errno.ECONNRESET, "check the path and the disk"),
    ],
)
def test_os_errors_are_one_line_naming_the_path_and_what_to_do(
    code: int, advice: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(typer.Exit) as exited, one_line_errors():
        raise OSError(code, os.strerror(code), "/data/store.zarr/parts/p1")
    assert exited.value.exit_code == EXIT_BAD_INPUT
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {os.strerror(code)}: /data/store.zarr/parts/p1; ")
    assert advice in lines[0]


def test_a_real_os_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit), one_line_errors():
        open(tmp_path, "w")  # noqa: SIM115 - a folder opened as a file: IsADirectoryError
    err = capsys.readouterr().err
    assert err.startswith(f"error: Is a directory: {tmp_path}; a folder was given") and err.count("\n") == 1


def test_other_errors_pass_through() -> None:
    with pytest.raises(KeyError), one_line_errors():
        raise KeyError("bug")
