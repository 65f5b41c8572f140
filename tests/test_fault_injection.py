"""The reviewer's fault suite (`benchmarks/fault_injection.py`): its scan finds what it looks for, and a
quick run over kills, two writers and the published bytes ends with every damage count 0."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmarks import fault_injection as faults


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> faults.Work:
    return faults.Work(tmp_path_factory.mktemp("faults"), quick=True)


def test_the_default_publication_holds_nothing_private(work: faults.Work) -> None:
    counts = faults.scan_published(work.reference, work.clean, work.root)
    assert (counts.private_hits, counts.raw_rows_published) == (0, 0)


def test_the_scan_finds_original_ids_and_a_raw_row(work: faults.Work) -> None:
    exposed = work.fresh("exposed")
    assert work.run(work.anonymize_args(exposed, "--original-ids")).returncode == 0
    assert faults.scan_published(exposed, work.clean, work.root).private_hits > 0

    planted = work.fresh("planted")
    shutil.copytree(work.reference, planted)
    from stores.latent_cache import LatentCache

    raw = LatentCache.open(work.clean).read().motion[0]
    (planted / "notes.bin").write_bytes(b"xx" + raw.tobytes())
    assert faults.scan_published(planted, work.clean, work.root).raw_rows_published == 1


def test_summary_names_every_count() -> None:
    line = faults.summary(faults.Counts(faults=3, recovered=3, skipped="x filesystems; "))
    for words in ("faults injected 3", "runs recovered 3", "clips lost 0", "clips duplicated 0"):
        assert words in line
    assert line.endswith("tracebacks 0; skipped: x filesystems")


@pytest.mark.slow
def test_a_quick_run_recovers_every_fault(work: faults.Work, capsys: pytest.CaptureFixture[str]) -> None:
    only = ["extract-kills", "concurrent-extract", "train-adapter-kills", "concurrent-anonymize"]
    assert faults.main(["--quick", "--out", str(work.root), "--only", *only]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "clips lost 0, clips duplicated 0, stale clips served 0" in last
    assert "tracebacks 0" in last and "faults injected 0" not in last


def test_kill_points_span_the_stage(tmp_path: Path) -> None:
    work = faults.Work.__new__(faults.Work)
    work.quick, work.writes = True, {"extract": 9}
    assert work.kill_points("extract", lambda p: []) == [1, 5, 9]
    work.quick = False
    assert work.kill_points("extract", lambda p: []) == list(range(1, 10))
