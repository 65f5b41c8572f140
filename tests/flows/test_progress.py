"""Progress log lines carry the rate and the time left."""

from __future__ import annotations

import pytest

from flows import progress as progress_mod
from flows.progress import format_eta, progress


def test_log_lines_show_an_eta_from_the_rate_until_the_end(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = iter([0.0, 10.0, 20.0, 30.0, 40.0])  # start, then one reading per advance
    monkeypatch.setattr(progress_mod.time, "perf_counter", lambda: next(clock))
    with progress("extract", 4, "videos", bar=False) as advance:
        for _ in range(4):
            advance()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "extract: 1/4 videos (0.1/s ETA 30s)"  # 3 left at 10 s each
    assert lines[1] == "extract: 2/4 videos (0.1/s ETA 20s)"
    assert lines[-1] == "extract: 4/4 videos (0.1/s)"  # done: no ETA


def test_eta_reads_in_seconds_minutes_or_hours() -> None:
    assert [format_eta(s) for s in (4.4, 185, 7620, -1)] == ["4s", "3m05s", "2h07m", "0s"]
