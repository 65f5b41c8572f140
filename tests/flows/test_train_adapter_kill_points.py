"""`train-adapter` stopped right after each of its writes (as `kill -9` there would), then rerun: the
folder holds a complete artifact equal to a clean run's (weights checksum), never a torn one that loads."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from pipeline.adapter.checkpoint import adapter_checksum, load_adapter
from tests.faults import KILLED, run_stage
from tests.flows.test_probe import planted, write_store


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("adapter-kill-points")
    store = write_store(root / "store.zarr", planted(identities=(10, 6), actions_per_identity=2))

    def args(out: Path) -> list[str]:
        return ["train-adapter", "--store", str(store), "--out", str(out), "--epochs", "1", "--threads", "1"]

    clean = root / "clean"
    assert run_stage("train-adapter", 0, args(clean), root / "writes") == 0
    return {
        "args": args,
        "root": root,
        "writes": int((root / "writes").read_text()),
        "sha": adapter_checksum(clean),
    }


def _kill_and_resume(setup: dict, at: int) -> None:
    out = Path(tempfile.mkdtemp(dir=setup["root"])) / "adapter"
    count = out.parent / "count"
    assert run_stage("train-adapter", at, setup["args"](out), count) == KILLED
    if (out / "adapter.json").exists():  # what a reader finds after the kill loads whole, or is absent
        load_adapter(out, expect_encoder_id=None, expect_dim=None)
    assert run_stage("train-adapter", 0, setup["args"](out), count) == 0
    load_adapter(out, expect_encoder_id=None, expect_dim=None)
    assert adapter_checksum(out) == setup["sha"]
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_train_adapter_has_writes_to_kill_at(setup: dict) -> None:
    assert setup["writes"] >= 5  # classes.json (write, rename), weights (write, rename), adapter.json (...)


@pytest.mark.parametrize("where", [0.0, 1.0])
def test_killed_at_a_write_then_rerun_matches_a_clean_run(setup: dict, where: float) -> None:
    _kill_and_resume(setup, max(1, round(where * (setup["writes"] - 1))))


@pytest.mark.slow
def test_killed_at_every_write_then_rerun_matches_a_clean_run(setup: dict) -> None:
    for at in range(1, setup["writes"]):
        _kill_and_resume(setup, at)
