"""The embedded end-to-end demo on the `tiny` preset: every stage runs and the report compares them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.demo import run_demo
from stores.published import published_partitions


@pytest.mark.slow
def test_demo_runs_every_stage_on_the_tiny_preset(tmp_path: Path) -> None:
    lines: list[str] = []
    result = run_demo(tmp_path / "demo", preset="tiny", epochs=2, echo=lines.append)
    assert result.stages_done == ["synth", "extract", "train-adapter", "anonymize", "probe", "report"]
    assert result.extract.failed == 0 and result.extract.motion_clips > 0
    assert set(result.adapters) == {"default", "paper"}
    (part,) = published_partitions(tmp_path / "demo" / "published")
    assert part.dataset == "demo" and part.rows == result.extract.motion_clips
    assert result.anonymize.gate.measured  # the synthetic benchmark carries private labels
    report = json.loads((result.report.out / "report.json").read_text())
    names = [s["name"] for s in report["sets"]]
    assert names[0] == "raw" and "adapter:adapter-paper" in names
    assert any(n.startswith("published:") for n in names)
    assert (result.report.out / "report.md").is_file() and result.summary
    assert any("train-adapter" in line for line in lines)
