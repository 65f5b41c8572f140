"""Progress reporting: a rich bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Advance(Protocol):
    def __call__(self, n: int = 1, **fields: float) -> None: ...


@contextmanager
def progress(
    description: str, total: int, unit: str = "items", *, bar: bool | None = None
) -> Iterator[Advance]:
    """Yield `advance(n, **rates)`; draws a rich bar when stderr is a terminal, else logs every ~5 s;
    both show the time left (ETA) once an item is done."""
    if bar is None:
        bar = sys.stderr.isatty()
    if bar:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, transient=False) as rich_progress:
            task = rich_progress.add_task(description, total=total, rate="")
            start = time.perf_counter()
            done = 0

            def advance_bar(n: int = 1, **fields: float) -> None:
                nonlocal done
                done += n
                rate = done / max(time.perf_counter() - start, 1e-9)
                extra = " ".join(f"{k}={v:.3g}" for k, v in fields.items())
                rich_progress.update(task, advance=n, rate=f"{rate:.1f} {unit}/s {extra}".strip())

            yield advance_bar
        return

    start = last = time.perf_counter()
    done = 0

    def advance_log(n: int = 1, **fields: float) -> None:
        nonlocal done, last
        done += n
        now = time.perf_counter()
        if now - last >= 5.0 or done == total:
            last = now
            extra = " ".join(f"{k}={v:.3g}" for k, v in fields.items())
            rate = done / max(now - start, 1e-9)
            eta = f" ETA {format_eta((total - done) / rate)}" if 0 < done < total and rate > 0 else ""
            line = f"{description}: {done}/{total} {unit} ({rate:.1f}/s{eta}) {extra}"
            print(line.rstrip(), file=sys.stderr)

    yield advance_log


def format_eta(seconds: float) -> str:
    """Time left as ``42s``, ``3m05s`` or ``2h07m``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
