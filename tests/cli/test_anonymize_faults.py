"""`aam-pipeline anonymize` on a full and on a read-only filesystem (small tmpfs mounts; skipped where
this process may not mount): one line, exit 2, nothing half-published, and a rerun on a good
filesystem publishes everything."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner, Result

from cli.main import app
from flows.train_adapter import TrainAdapterConfig, train_adapter_stage
from stores.latent_cache import LatentCache
from stores.published import read_published
from tests.flows.test_probe import planted, write_store


def _mount(target: Path, options: str) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True)
    return done.returncode == 0


def _umount(target: Path) -> None:
    subprocess.run(["umount", str(target)], capture_output=True, check=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("faults")
    store = write_store(root / "store.zarr", planted(identities=(10, 6), actions_per_identity=2))
    train_adapter_stage(store, root / "adapter", TrainAdapterConfig(epochs=1, device="cpu"))
    return store, root / "adapter"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    if not _mount(disk, "size=48k"):
        pytest.skip("cannot mount a tmpfs here (needs root): the full-disk case is not exercised")
    yield disk
    _umount(disk)


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "ro"
    if not _mount(disk, "size=1m,ro"):
        pytest.skip("cannot mount a tmpfs here (needs root): the read-only case is not exercised")
    yield disk
    _umount(disk)


def _anonymize(store: Path, adapter: Path, out: Path) -> Result:
    args = ["anonymize", "--store", str(store), "--adapter", str(adapter), "--out", str(out), "--no-gate"]
    return CliRunner().invoke(app, args)


def _one_line(result: Result, words: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error: ") and words in lines[-1], result.output
    assert "Traceback" not in result.output


def test_a_full_disk_is_one_line_and_publishes_nothing(
    trained: tuple[Path, Path], small_disk: Path, tmp_path: Path
) -> None:
    store, adapter = trained
    result = _anonymize(store, adapter, small_disk / "pub")
    _one_line(result, "No space left")
    assert not list(small_disk.rglob("*.parquet")) and not list(small_disk.rglob("_manifest.json"))
    again = _anonymize(store, adapter, tmp_path / "pub")  # room elsewhere: the whole publication
    assert again.exit_code == 0, again.output
    assert read_published(tmp_path / "pub")[0].num_rows == LatentCache.open(store).read().motion.shape[0]


def test_a_read_only_filesystem_is_one_line(trained: tuple[Path, Path], read_only: Path) -> None:
    store, adapter = trained
    _one_line(_anonymize(store, adapter, read_only / "pub"), "Read-only file system")
