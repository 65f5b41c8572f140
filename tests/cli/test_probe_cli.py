"""`aam-pipeline probe` and `report` through typer's CliRunner: help, a run on a planted store, exit
codes and one-line errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cli.main import app
from tests.flows.test_probe import planted, planted_probe_dir, write_store


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize("verb", ["probe", "report"])
def test_help_has_examples(verb: str) -> None:
    result = CliRunner().invoke(app, [verb, "--help"], env={"COLUMNS": "160"})
    assert result.exit_code == 0
    assert "Examples" in result.output and f"aam-pipeline {verb}" in result.output
    options = (
        ("--store", "--adapter", "--published", "--out", "--seed", "--tasks", "--attackers")
        if verb == "probe"
        else ("--out",)
    )
    for option in options:
        assert option in result.output


def test_probe_then_report(tmp_path: Path) -> None:
    store = write_store(tmp_path / "store.zarr", planted(identities=(8, 6), actions_per_identity=2))
    result = run(
        "probe", "--store", str(store), "--out", str(tmp_path / "probe"), "--tasks", "action,reid,bias"
    )
    assert result.exit_code == 0, result.output
    assert f"-> {tmp_path / 'probe' / 'probe.json'}" in result.stdout
    assert "action top-1" in result.stdout and "skipped leakage: not requested (--tasks)" in result.stdout
    assert "probe [raw] action: top-1" in result.stderr  # progress, one line per probe off a terminal
    record = json.loads((tmp_path / "probe" / "probe.json").read_text())
    assert record["config"]["tasks"] == ["action", "reid", "bias"]

    result = run("report", str(tmp_path / "probe"), "--out", str(tmp_path / "report"))
    assert result.exit_code == 0, result.output
    assert "report: report.json, report.md, tradeoff.png, leakage.png" in result.stdout
    assert (tmp_path / "report" / "report.md").is_file()


def test_report_of_a_probe_with_published_sets(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    result = run("report", str(planted_probe_dir(tmp_path_factory)), "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "published:clean" in result.stdout


def one_line_error(result: Result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0]


def test_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    out = str(tmp_path / "probe")
    one_line_error(run("probe", "--store", str(tmp_path / "none.zarr"), "--out", out), "no latent cache")
    one_line_error(run("probe", "--store", str(tmp_path), "--out", out, "--tasks", "action,magic"), "--tasks")
    one_line_error(run("probe", "--store", str(tmp_path), "--out", out, "--tasks", ","), "--tasks")
    one_line_error(run("report", str(tmp_path / "nothing"), "--out", out), "no such folder")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "probe.json").write_text(
        json.dumps({"kind": "aam-pipeline/probe", "schema_version": 7})
    )
    one_line_error(run("report", str(tmp_path / "old"), "--out", out), "newer aam-pipeline")

    store = write_store(tmp_path / "store.zarr", planted(identities=(4, 4), actions_per_identity=1))
    (tmp_path / "adapter").mkdir()  # a folder that holds no adapter
    result = run("probe", "--store", str(store), "--adapter", str(tmp_path / "adapter"), "--out", out)
    one_line_error(result, "holds no complete adapter", "train-adapter")
    one_line_error(
        run("probe", "--store", str(store), "--published", str(tmp_path / "adapter"), "--out", out),
        "no complete published partition",
    )
    assert not (tmp_path / "probe").exists()


def test_attackers_option_picks_the_panel(tmp_path: Path) -> None:
    """--attackers full runs the full panel and the oracle line; a bad name is one line and exit 2."""
    store = write_store(tmp_path / "store.zarr", planted(identities=(8, 6), actions_per_identity=1))
    out = tmp_path / "probe"
    result = run(
        "probe", "--store", str(store), "--out", str(out), "--tasks", "leakage", "--attackers", "full"
    )
    assert result.exit_code == 0, result.output
    record = json.loads((out / "probe.json").read_text())
    assert record["config"]["probes"]["leakage"]["panel"] == "full"
    m = record["sets"][0]["probes"]["leakage_motion"]["metrics"]
    assert m["panel"] == "full" and "hgb_pca" in m["attackers"] and len(m["oracle"]) == len(m["worst"])
    assert "of the full panel" in result.stderr
    bad = run("probe", "--store", str(store), "--out", str(out), "--attackers", "huge")
    assert bad.exit_code == 2 and bad.stderr.strip().splitlines() == [
        "error: --attackers: expected fast or full, got 'huge'"
    ]
