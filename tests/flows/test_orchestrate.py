"""Work units of the orchestrated pipeline as plain functions (no Prefect server, no cluster): keys,
planning from the store, one part per unit, idempotence, leftovers of a dead writer; settings checks."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import flows.orchestrate as orchestrate
import flows.prefect_extract as prefect_extract
from flows.dask_cluster import ClusterInfo, DaskSettings, gpu_units
from flows.extract import ExtractConfig
from flows.orchestrate import RunConfig, check_config
from flows.prefect_extract import Source, plan_units, run_unit, unit_config
from pipeline.errors import ConfigError
from stores.errors import StoreError
from stores.latent_cache import LatentCache
from stores.manifest import manifest_from_folder
from tests.flows.extract_support import encoder_config_kwargs, store_snapshot


def _config(encoder: Path, **changes: Any) -> ExtractConfig:
    return ExtractConfig(**(encoder_config_kwargs(encoder) | {"static_frames": 2} | changes))


def test_units_are_batches_keyed_by_content_and_config(
    videos: Path, script_encoder: Path, tmp_path: Path
) -> None:
    inputs = manifest_from_folder(videos, "videos")
    config = _config(script_encoder, videos_per_part=4)
    units, skipped = plan_units(inputs, str(tmp_path / "none.zarr"), config)
    assert skipped == 0
    assert [u.video_ids for u in units] == [[f"clip{k}" for k in range(4)], ["clip4", "clip5"]]
    again, _ = plan_units(inputs, str(tmp_path / "none.zarr"), config)
    assert [u.key for u in again] == [u.key for u in units]
    # Runtime-only settings keep the key; what changes the embeddings changes it.
    same, _ = plan_units(inputs, "x", config.model_copy(update={"batch_size": 7, "device": "cuda"}))
    other, _ = plan_units(inputs, "x", config.model_copy(update={"static_frames": 3}))
    assert same[0].key == units[0].key and other[0].key != units[0].key
    # So does a file's content (size, mtime).
    os.utime(videos / "clip0.mp4", ns=(1, 1))
    touched, _ = plan_units(inputs, "x", config)
    assert touched[0].key != units[0].key and touched[1].key == units[1].key


def test_a_unit_writes_one_part_and_is_idempotent(videos: Path, script_encoder: Path, tmp_path: Path) -> None:
    store = tmp_path / "store.zarr"
    inputs = manifest_from_folder(videos, "videos")
    config = _config(script_encoder, videos_per_part=3)
    units, _ = plan_units(inputs, str(store), config)
    manifest = run_unit(units[0], str(store), config)
    # The part id is keyed by content: each video's file fingerprint and outcome, and the settings.
    paths = dict(zip(inputs["video_id"].to_pylist(), inputs["path"].to_pylist(), strict=True))
    content = [
        f"{os.stat(paths[v]).st_size}\t{os.stat(paths[v]).st_mtime_ns}\tok" for v in units[0].video_ids
    ]
    settings = LatentCache.open(store).attrs
    assert manifest["parts"] == [
        LatentCache.part_id_for(units[0].video_ids, content=content, settings=settings)
    ]
    assert (manifest["videos"], manifest["ok"], manifest["failed"], manifest["skipped"]) == (3, 3, 0, 0)
    assert len(json.dumps(manifest)) < 2000  # a small record, never arrays

    # The store now holds that unit: planning leaves it out, running it again changes no byte.
    left, skipped = plan_units(inputs, str(store), config)
    assert skipped == 3 and [u.video_ids for u in left] == [units[1].video_ids]
    before = store_snapshot(store)
    again = run_unit(units[0], str(store), config)
    assert (again["ok"], again["skipped"], again["parts"]) == (0, 3, [])
    assert store_snapshot(store) == before


def test_a_dead_writers_leftovers_are_never_trusted(
    videos: Path, script_encoder: Path, tmp_path: Path
) -> None:
    """What a worker killed mid-part leaves (a temporary folder, or a part without its marker) is not
    read, the unit is planned again, rewritten once, and the leftovers are removed."""
    store = tmp_path / "store.zarr"
    inputs = manifest_from_folder(videos, "videos")
    config = _config(script_encoder, videos_per_part=6)
    (unit,), _ = plan_units(inputs, str(store), config)
    run_unit(unit, str(store), config)
    parts = store / "parts"
    (part,) = [p for p in parts.iterdir() if p.is_dir()]
    # Turn the complete part into what a killed writer leaves: the same files, no completion marker.
    shutil.copytree(part, parts / f".tmp-{part.name}-dead")
    (part / "_complete.json").unlink()
    assert LatentCache.open(store).read().clips.num_rows == 0
    (again,), skipped = plan_units(inputs, str(store), config)
    assert skipped == 0 and again.key == unit.key
    # As a rerun does: the owner cleans up when no writer is left, the unit writes its part again.
    prefect_extract._cleanup(str(store))
    assert [p.name for p in parts.iterdir() if p.is_dir()] == []
    manifest = run_unit(again, str(store), config)
    assert manifest["ok"] == 6
    view = LatentCache.open(store).read()
    keys = list(zip(view.clips["video_id"].to_pylist(), view.clips["clip_index"].to_pylist(), strict=True))
    assert len(keys) == len(set(keys)) == 14


def test_daemonic_workers_decode_in_process(monkeypatch: pytest.MonkeyPatch, script_encoder: Path) -> None:
    config = _config(script_encoder, decode_workers=None)
    assert unit_config(config, 5).videos_per_part == 5
    assert unit_config(config, 5).decode_workers is None
    daemon = SimpleNamespace(daemon=True)
    monkeypatch.setattr(prefect_extract.multiprocessing, "current_process", lambda: daemon)
    assert unit_config(config, 5).decode_workers == 0


def test_workers_on_one_machine_share_its_cores(
    monkeypatch: pytest.MonkeyPatch, script_encoder: Path
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    config = _config(script_encoder, decode_workers=None)  # device cpu: half the share decodes
    assert unit_config(config, 5, share=16).decode_workers is None  # alone: extract's own default
    assert unit_config(config, 5, share=4).decode_workers == 2
    assert unit_config(config, 5, share=1).decode_workers == 1
    cuda = config.model_copy(update={"device": "cuda"})  # all but one core of the share decode
    assert unit_config(cuda, 5, share=4).decode_workers == 3
    fixed = config.model_copy(update={"decode_workers": 5})
    assert unit_config(fixed, 5, share=4).decode_workers == 5


def test_gpu_units_need_gpu_workers() -> None:
    cpu_only = ClusterInfo(address="tcp://h:1", workers=2, gpu_workers=0, local=False)
    with_gpu = ClusterInfo(address="tcp://h:1", workers=2, gpu_workers=1, local=False)
    settings = DaskSettings(address="tcp://h:1")
    assert gpu_units(settings, "cpu", with_gpu) is False
    assert gpu_units(settings, "auto", with_gpu) is True
    assert gpu_units(settings, "auto", cpu_only) is False
    assert gpu_units(settings, "cuda:0", with_gpu) is True
    with pytest.raises(ConfigError, match=r"GPU=1"):
        gpu_units(settings, "cuda", cpu_only)
    with pytest.raises(ConfigError, match=r"GPU"):
        gpu_units(DaskSettings(address="tcp://h:1", gpu=True), "cpu", cpu_only)
    with pytest.raises(ValueError, match="not both"):
        DaskSettings(address="tcp://h:1", workers=2)


def test_stage_settings_are_checked_before_any_work() -> None:
    check_config(RunConfig())
    if orchestrate.stage_available("train-adapter"):
        with pytest.raises(ConfigError, match="train-adapter setting epochs"):
            check_config(RunConfig(train_adapter={"epochs": 0}))
        with pytest.raises(ConfigError, match="train-adapter setting bogus"):
            check_config(RunConfig(train_adapter={"bogus": 1}))
    # A stage that is not run is not checked.
    check_config(RunConfig(train_adapter={"bogus": 1}, stages=("extract",)))


def test_sources(videos: Path, tmp_path: Path) -> None:
    assert Source(kind="videos", path=str(videos)).load().num_rows == 6
    with pytest.raises(StoreError, match="manifest not found"):
        Source(kind="manifest", path=str(tmp_path / "missing.csv")).load()
