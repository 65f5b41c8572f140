"""`extract` and `train-adapter` on a full and on a read-only filesystem (small tmpfs mounts; skipped where
this process may not mount): one line, exit 2, no traceback, and the state recovers: after room is made
the rerun finishes with every clip once."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cli.main import app
from stores.latent_cache import LatentCache
from tests.faults import tmpfs
from tests.flows.test_probe import planted, write_store


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "disk", "size=64k") as disk:
        if disk is None:
            pytest.skip("cannot mount a tmpfs here (needs root): the full-disk case is not exercised")
        yield disk


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "ro", "size=1m,ro") as disk:
        if disk is None:
            pytest.skip("cannot mount a tmpfs here (needs root): the read-only case is not exercised")
        yield disk


def _one_line(result: Result, words: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error: ") and words in lines[-1], result.output
    assert "Traceback" not in result.output


def _extract(manifest: Path, store: Path, encoder: Path) -> Result:
    args = [
        "extract",
        "--manifest",
        str(manifest),
        "--out",
        str(store),
        "--encoder",
        f"torchscript:{encoder}",
    ]
    args += ["--crop", "32", "--device", "cpu", "--decode-workers", "0", "--videos-per-part", "2"]
    return CliRunner().invoke(app, args)


@pytest.fixture
def manifest(small_videos: list[Path], tmp_path: Path) -> Path:
    path = tmp_path / "manifest.csv"
    path.write_text("video_id,path\n" + "".join(f"{p.stem},{p}\n" for p in small_videos))
    return path


def test_extract_on_a_full_disk_is_one_line_and_the_rerun_completes(
    manifest: Path, script_encoder: Path, small_disk: Path
) -> None:
    store = small_disk / "store.zarr"
    _one_line(_extract(manifest, store, script_encoder), "No space left")
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)  # room made
    again = _extract(manifest, store, script_encoder)
    assert again.exit_code == 0, again.output
    view = LatentCache.open(store).read()
    keys = list(zip(view.clips["video_id"].to_pylist(), view.clips["clip_index"].to_pylist(), strict=True))
    assert len(set(view.videos["video_id"].to_pylist())) == 6 and len(keys) == len(set(keys))


def test_extract_on_a_read_only_filesystem_is_one_line(
    manifest: Path, script_encoder: Path, read_only: Path
) -> None:
    _one_line(_extract(manifest, read_only / "store.zarr", script_encoder), "Read-only file system")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_store(tmp_path_factory.mktemp("faults") / "store.zarr", planted(identities=(10, 6)))


def _train(store: Path, out: Path) -> Result:
    return CliRunner().invoke(
        app, ["train-adapter", "--store", str(store), "--out", str(out), "--epochs", "1"]
    )


def test_train_adapter_on_a_full_disk_is_one_line_and_leaves_no_artifact(store: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "tiny", "size=8k") as disk:
        if disk is None:
            pytest.skip("cannot mount a tmpfs here (needs root): the full-disk case is not exercised")
        _one_line(_train(store, disk / "adapter"), "No space left")
        assert not (disk / "adapter" / "adapter.json").exists()
        subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
        again = _train(store, disk / "adapter")
        assert again.exit_code == 0, again.output
        assert (disk / "adapter" / "adapter.json").is_file()


def test_train_adapter_on_a_read_only_filesystem_is_one_line(store: Path, read_only: Path) -> None:
    _one_line(_train(store, read_only / "adapter"), "Read-only file system")
