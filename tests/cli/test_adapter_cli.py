"""`aam-pipeline train-adapter` and `anonymize` through typer's CliRunner: help, a run, the gate's exit
code, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner, Result

from cli.main import app
from stores.published import published_partitions, read_published
from tests.flows.test_probe import planted, write_store


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize(
    ("verb", "options"),
    [
        ("train-adapter", ("--store", "--out", "--epochs", "--objective", "--tasks", "--seed", "--device")),
        (
            "anonymize",
            (
                "--store",
                "--adapter",
                "--out",
                "--max-leakage",
                "--min-reduction",
                "--no-gate",
                "--original-ids",
            ),
        ),
    ],
)
def test_help_has_examples(verb: str, options: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [verb, "--help"], env={"COLUMNS": "160"})
    assert result.exit_code == 0
    assert "Examples" in result.output and f"aam-pipeline {verb}" in result.output
    for option in options:
        assert option in result.output


def test_train_then_anonymize(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    store = write_store(tmp_path / "store.zarr", planted(identities=(10, 6), actions_per_identity=2))
    adapter, pub = tmp_path / "adapter", tmp_path / "pub"
    result = run(
        "train-adapter", "--store", str(store), "--out", str(adapter), "--epochs", "2", "--device", "cpu"
    )
    assert result.exit_code == 0, result.output
    assert "trained clip adapter (default objective)" in result.output
    again = run(
        "train-adapter", "--store", str(store), "--out", str(adapter), "--epochs", "2", "--device", "cpu"
    )
    assert again.exit_code == 0 and "found clip adapter" in again.output

    refused = run(
        "anonymize", "--store", str(store), "--adapter", str(adapter), "--out", str(pub), "--max-leakage", "0"
    )
    assert refused.exit_code == 4, refused.output
    assert "refused: privacy gate" in refused.output and not pub.exists()

    by_default = run("anonymize", "--store", str(store), "--adapter", str(adapter), "--out", str(pub))
    assert by_default.exit_code == 4 and "above --max-leakage 0.25" in by_default.output  # 2 epochs: leaky
    assert not pub.exists()
    ok = run(
        "anonymize",
        *("--store", str(store), "--adapter", str(adapter), "--out", str(pub), "--dataset", "demo"),
        "--no-gate",
    )
    assert ok.exit_code == 0, ok.output
    assert "published" in ok.output and [p.dataset for p in published_partitions(pub)] == ["demo"]

    mapped = run("pseudonyms", "--store", str(store), "--out", str(tmp_path / "private" / "map.csv"))
    assert mapped.exit_code == 0, mapped.output
    lines = (tmp_path / "private" / "map.csv").read_text().splitlines()
    owner = dict(line.split(",") for line in lines[1:])
    assert lines[0] == "video_id,pseudonym"
    published = set(read_published(pub)[0]["video_id"].to_pylist())
    assert set(owner.values()) == published and not set(owner) & published
    no_key = run("pseudonyms", "--store", str(store), "--pseudonym-key", str(tmp_path / "nokey"))
    assert no_key.exit_code == 2 and "no pseudonym key" in no_key.output


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = run("train-adapter", "--store", str(tmp_path / "nope.zarr"), "--out", str(tmp_path / "a"))
    assert missing.exit_code == 2 and missing.output.startswith("error: no latent cache")
    bad = run("train-adapter", "--store", "x", "--out", str(tmp_path / "a"), "--objective", "best")
    assert bad.exit_code == 2 and bad.output.startswith("error: --objective")
    no_adapter = run(
        "anonymize",
        "--store",
        str(tmp_path),
        "--adapter",
        str(tmp_path / "none"),
        "--out",
        str(tmp_path / "p"),
    )
    assert no_adapter.exit_code == 2 and no_adapter.output.count("\n") == 1
