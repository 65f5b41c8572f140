"""One writer per latent cache: a second `extract` on a store another process is writing exits 2 with
one line naming the holder, touches nothing (in particular not the first writer's part in progress),
and the lock goes with its process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from cli.main import app
from flows.extract import ExtractConfig, extract, load_inputs
from stores._atomic import WriterBusyError
from stores.errors import StoreError
from stores.latent_cache import CacheAttrs, LatentCache
from tests.flows.extract_support import CROP, encoder_config_kwargs, store_snapshot

HOLD = """
import sys, time
from stores.latent_cache import LatentCache
with LatentCache.writer_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def held(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """A store whose writer lock another live process holds (it is killed at the end)."""
    store = tmp_path / "store.zarr"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(store)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield store, proc
    proc.kill()
    proc.wait(timeout=30)


def test_a_second_writer_is_refused_and_its_holder_named(
    held: tuple[Path, subprocess.Popen[str]], videos: Path, script_encoder: Path
) -> None:
    store, proc = held
    config = ExtractConfig(**encoder_config_kwargs(script_encoder), decode_workers=0, videos_per_part=2)
    inputs = load_inputs(None, videos, None)
    # The first writer's part in progress, as it would be mid-write: start-up cleanup must not take it.
    in_progress = store / "parts" / ".tmp-0123456789abcdef-feed"
    extract(inputs.slice(0, 0), store, config, bar=False, lock=False)  # create the store only
    in_progress.mkdir()
    (in_progress / "motion").write_bytes(b"half")
    before = store_snapshot(store)
    with pytest.raises(WriterBusyError, match=rf"pid {proc.pid} on .* since 20\d\d-"):
        extract(inputs, store, config, bar=False)
    assert store_snapshot(store) == before

    encoder = ["--encoder", f"torchscript:{script_encoder}", "--crop", str(CROP), "--device", "cpu"]
    result = CliRunner().invoke(app, ["extract", "--videos", str(videos), "--out", str(store), *encoder])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.match(rf"error: another writer .*pid {proc.pid}", lines[0]), lines
    assert "Traceback" not in result.output
    assert store_snapshot(store) == before and in_progress.is_dir()


def test_the_lock_goes_with_its_process(
    held: tuple[Path, subprocess.Popen[str]], videos: Path, script_encoder: Path
) -> None:
    store, proc = held
    proc.kill()
    proc.wait(timeout=30)
    config = ExtractConfig(**encoder_config_kwargs(script_encoder), decode_workers=0, videos_per_part=2)
    result = extract(load_inputs(None, videos, None), store, config, bar=False)
    assert (result.ok, result.failed) == (6, 0)
    holder = (store / ".lock-writer").read_text()
    assert f'"pid": {os.getpid()}' in holder  # the lock names its last holder


def test_bad_arguments_leave_no_lock_in_a_foreign_folder(script_encoder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "not-a-store"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    config = ExtractConfig(**encoder_config_kwargs(script_encoder), decode_workers=0)
    no_inputs = pa.table({"video_id": pa.array([], pa.string()), "path": pa.array([], pa.string())})
    with pytest.raises(StoreError, match="is not a latent cache"):
        extract(no_inputs, folder, config, bar=False)
    assert sorted(os.listdir(folder)) == ["notes.txt"]


def test_a_store_can_be_created_where_a_lock_was_taken_first(tmp_path: Path) -> None:
    """The distributed coordinator locks before its first unit creates the store."""
    store = tmp_path / "store.zarr"
    with LatentCache.writer_lock(store):
        assert (store / ".lock-writer").exists()
    attrs = CacheAttrs(encoder_id="e", weights_sha256="0" * 64, dim=4, pooling="mean", preprocessing={})
    LatentCache.create_or_open(store, attrs)
    assert LatentCache.open(store).attrs == attrs


def test_an_orchestrated_extraction_holds_the_lock_while_its_units_write(
    held: tuple[Path, subprocess.Popen[str]], videos: Path, script_encoder: Path, tmp_path: Path
) -> None:
    """The coordinator locks; its units (lock=False) write under it; a second coordinator is refused."""
    from flows.prefect_extract import ExtractSummary, WorkUnit, _extract_units, run_unit

    store, proc = held
    config = ExtractConfig(**encoder_config_kwargs(script_encoder), decode_workers=0, videos_per_part=3)
    inputs = load_inputs(None, videos, None)
    ran: list[str] = []

    def coordinate(where: Path) -> ExtractSummary:
        def run(units: list[WorkUnit]) -> tuple[list[dict[str, object]], list[object]]:
            ran.extend(u.key for u in units)
            return [run_unit(u, str(where), config) for u in units], []

        def prepare() -> None:
            extract(inputs.slice(0, 0), str(where), config, bar=False, lock=False)

        return _extract_units(inputs, str(where), config, run, prepare)

    with pytest.raises(WriterBusyError, match=rf"pid {proc.pid}"):
        coordinate(store)
    assert ran == []
    summary = coordinate(tmp_path / "other.zarr")
    assert (summary.ok, summary.failed) == (6, 0) and len(ran) == 2
