"""anonymize and probe on stores larger than memory: chunked anonymizing, a streamed publish byte for
byte equal to the in-memory one, the gate's and the probes' bounded, seeded samples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import torch

import flows.anonymize as anonymize_flow
from flows.anonymize import AnonymizeConfig, PrivacyGateError, anonymize, measure_gate
from flows.limits import GATE_MAX_CLIPS, PROBE_MAX_CLIPS
from flows.probe import ProbeRunConfig, probe
from flows.train_adapter import TrainAdapterConfig, train_adapter_stage
from flows.views import labels_of, load_for, sample_videos
from pipeline.adapter import AdapterConfig, anonymize_array, build_adapter
from pipeline.errors import ConfigError
from pipeline.probes.config import LeakageConfig, ProbeConfig
from stores.latent_cache import LatentCache
from stores.published import publish, published_partitions
from tests.flows.test_probe import planted, write_store

SMALL = {"identities": (12, 8), "actions_per_identity": 2}
PRIVATE = ("private_gender", "private_skin_tone", "private_clothing", "private_identity")
MEASURE_ONLY = AnonymizeConfig(gate=False)
# Without private labels the gate has nothing to measure: the publishing path alone, fast.
UNMEASURED = AnonymizeConfig(allow_unmeasured=True)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("stream")
    store = write_store(root / "store.zarr", planted(**SMALL))
    train_adapter_stage(store, root / "adapter", TrainAdapterConfig(epochs=2, device="cpu"))
    return store, root / "adapter"


@pytest.fixture(scope="module")
def unlabelled(trained: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same clips without private labels, and the adapter trained on the labelled store."""
    store = write_store(tmp_path_factory.mktemp("bare") / "store.zarr", planted(**SMALL), drop=PRIVATE)
    return store, trained[1]


def _data_files(out: Path) -> dict[str, bytes]:
    """The bytes of every file of the publication that has no timestamp in it (all but the manifest
    and the dataset card)."""
    files = (p for p in sorted(out.rglob("*")) if p.is_file() and not p.name.startswith("."))
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in files
        if p.name not in ("_manifest.json", "README.md")
    }


def _manifest(out: Path) -> dict[str, Any]:
    (part,) = published_partitions(out)
    record: dict[str, Any] = json.loads((Path(part.location) / "_manifest.json").read_text())
    for key in ("created_at", "updated_at"):
        record.pop(key)
    for p in record["publications"]:
        p.pop("created_at")
    return record


def test_streamed_publish_is_byte_identical_to_the_in_memory_path(
    unlabelled: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, adapter = unlabelled
    clips = LatentCache.open(store).read(arrays=False).clips.num_rows
    assert clips > 3 * 64  # several chunks, the last one partial
    captured: dict[str, Any] = {}
    real = anonymize_flow.publish_rows

    def capture(out: Any, info: Any, table: pa.Table, fetch: Any, dim: int, **options: Any) -> Any:
        captured.update(info=info, clips=table, options=options)
        return real(out, info, table, fetch, dim, **options)

    monkeypatch.setattr(anonymize_flow, "publish_rows", capture)
    small = anonymize(store, adapter, tmp_path / "small", UNMEASURED.model_copy(update={"chunk_rows": 64}))
    whole = anonymize(store, adapter, tmp_path / "whole", UNMEASURED.model_copy(update={"chunk_rows": 10**6}))
    assert small.publish.rows_added == whole.publish.rows_added == clips
    assert _data_files(tmp_path / "small") == _data_files(tmp_path / "whole")
    assert _manifest(tmp_path / "small") == _manifest(tmp_path / "whole")

    # What anonymize did before it streamed: the whole store in memory, one anonymize_array, publish().
    view = LatentCache.open(store).read()
    model, _, _ = load_for(view, adapter)
    emb = anonymize_array(model, view.motion)
    publish(tmp_path / "memory", captured["info"], captured["clips"], emb, **captured["options"])
    assert _data_files(tmp_path / "memory") == _data_files(tmp_path / "small")
    assert _manifest(tmp_path / "memory") == _manifest(tmp_path / "small")


def test_the_paper_variant_streams_in_whole_attention_runs(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    store, _ = trained
    cache = LatentCache.open(store)
    view = cache.read()
    torch.manual_seed(0)
    model = build_adapter(AdapterConfig(dim=cache.attrs.dim, variant="paper"))
    with torch.no_grad():  # away from identity, so that attention across rows shows
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    expected = anonymize_array(model, view.motion)
    rows = view.motion.shape[0]
    assert rows > anonymize_flow.ADAPTER_BATCH  # more than one attention run
    with anonymize_flow.spill_file(str(tmp_path), cache.attrs.dim) as spill:
        anonymize_flow.anonymize_stream(cache, model, False, True, 100, spill)  # rounded up to 512
        streamed = spill.take(np.arange(rows))
    np.testing.assert_array_equal(streamed, expected)
    assert list(tmp_path.iterdir()) == []  # the spill is gone


def test_memory_follows_the_chunk_and_the_file_not_the_store(
    unlabelled: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bounded behaviour shown by sizes, not time: no call sees more rows than a chunk or a file."""
    store, adapter = unlabelled
    seen: dict[str, list[int]] = {"adapter": [], "fetch": []}
    real_array, real_take = anonymize_flow.anonymize_array, anonymize_flow.Spill.take

    def counted_array(model: Any, x: np.ndarray, *args: Any, **kwargs: Any) -> np.ndarray:
        seen["adapter"].append(len(x))
        return real_array(model, x, *args, **kwargs)

    def counted_take(self: Any, positions: np.ndarray) -> np.ndarray:
        seen["fetch"].append(len(positions))
        return real_take(self, positions)

    monkeypatch.setattr(anonymize_flow, "anonymize_array", counted_array)
    monkeypatch.setattr(anonymize_flow.Spill, "take", counted_take)
    monkeypatch.setattr(anonymize_flow, "publish_rows", _with_rows_per_file(100))
    config = UNMEASURED.model_copy(update={"chunk_rows": 50})
    result = anonymize(store, adapter, tmp_path / "pub", config)
    clips = result.clips
    assert max(seen["adapter"]) <= 50 and sum(seen["adapter"]) == clips
    file_fetches = seen["fetch"]
    longest_video = max(
        LatentCache.open(store)
        .read(arrays=False)
        .clips.group_by("video_id")
        .aggregate([("clip_index", "count")])["clip_index_count"]
        .to_pylist()
    )
    assert max(file_fetches) <= 100 + longest_video and sum(file_fetches) == clips
    assert len(result.publish.files_added) == len(file_fetches) > 1


def _with_rows_per_file(rows: int) -> Any:
    real = anonymize_flow.publish_rows

    def call(*args: Any, **options: Any) -> Any:
        return real(*args, rows_per_file=rows, **options)

    return call


@pytest.mark.slow
def test_gate_refusal_under_streaming_writes_nothing(trained: tuple[Path, Path], tmp_path: Path) -> None:
    store, adapter = trained
    spill = tmp_path / "spill"
    spill.mkdir()
    config = AnonymizeConfig(max_leakage=0.0, min_reduction=1.0, chunk_rows=64, spill_dir=str(spill))
    with pytest.raises(PrivacyGateError, match="nothing published"):
        anonymize(store, adapter, tmp_path / "pub", config)
    assert not (tmp_path / "pub").exists()
    assert list(spill.iterdir()) == []  # the anonymized rows went with the refusal


@pytest.mark.slow
def test_the_gate_measures_every_clip_below_its_cap(trained: tuple[Path, Path], tmp_path: Path) -> None:
    store, adapter = trained
    result = anonymize(store, adapter, tmp_path / "pub", MEASURE_ONLY.model_copy(update={"chunk_rows": 64}))
    view = LatentCache.open(store).read()
    model, _, _ = load_for(view, adapter)
    expected = measure_gate(view, labels_of(view.videos), anonymize_array(model, view.motion))
    assert result.gate.record is not None and expected.record is not None
    sample = result.gate.record.pop("sample")
    assert result.gate.record == expected.record  # the same figures as the whole store in memory
    assert sample["sampled"] is False and sample["motion_clips"] == view.motion.shape[0]
    assert sample["max_clips"] == GATE_MAX_CLIPS > 60_060  # an HMDB51-sized store is measured whole


@pytest.mark.slow
def test_above_its_cap_the_gate_measures_a_recorded_seeded_sample(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    store, adapter = trained
    config = MEASURE_ONLY.model_copy(update={"gate_max_clips": 200})
    first = anonymize(store, adapter, tmp_path / "a", config)
    again = anonymize(store, adapter, tmp_path / "b", config)
    assert first.gate.record == again.gate.record  # seeded: the same sample and numbers
    sample = first.gate.record["sample"]  # type: ignore[index]
    assert sample["sampled"] is True and sample["motion_clips"] <= 200 < sample["of_motion_clips"]
    assert first.gate.record["test_videos"] > 0  # type: ignore[index]
    leakage = _manifest(tmp_path / "a")["leakage"]["results"]
    assert leakage["sample"] == sample  # the manifest says what was measured
    card = next((tmp_path / "a").rglob("README.md")).read_text()
    assert f"{sample['motion_clips']} of {sample['of_motion_clips']} motion clips" in card
    assert first.publish.rows_added == sample["of_motion_clips"]  # every clip is still published


def test_samples_are_whole_people_per_split_and_seeded(trained: tuple[Path, Path]) -> None:
    store, _ = trained
    tables = LatentCache.open(store).read(arrays=False)
    labels = labels_of(tables.videos)
    total = tables.clips.num_rows
    assert sample_videos(tables.clips, labels, total, 0).videos is None
    assert sample_videos(tables.clips, labels, 0, 0).videos is None  # 0: never sample
    a, b = (
        sample_videos(tables.clips, labels, total // 3, 0),
        sample_videos(tables.clips, labels, total // 3, 0),
    )
    other = sample_videos(tables.clips, labels, total // 3, 1)
    assert a == b and a.videos is not None and a.videos != other.videos
    assert a.motion_clips <= total // 3
    chosen = set(a.videos)
    units: dict[tuple[object, object], set[bool]] = {}
    for video, person in labels.identity.items():  # whole people of a split: all their videos or none
        units.setdefault((labels.splits[video], person), set()).add(video in chosen)
    assert all(len(taken) == 1 for taken in units.values())
    assert {labels.splits[v] for v in chosen} == set(labels.splits.values())  # every split kept


FAST = ProbeConfig(leakage=LeakageConfig(bootstrap=50))


def test_probe_above_its_cap_fits_on_a_recorded_deterministic_sample(
    unlabelled: tuple[Path, Path], tmp_path: Path
) -> None:
    store, adapter = unlabelled
    anonymize(store, adapter, tmp_path / "pub", UNMEASURED)
    total = LatentCache.open(store).read(arrays=False).clips.num_rows
    config = ProbeRunConfig(tasks=("action",), probes=FAST, max_clips=total // 2)
    sets = {"adapters": [adapter], "published": [tmp_path / "pub"]}
    first = probe(store, tmp_path / "a", config, **sets).record  # type: ignore[arg-type]
    again = probe(store, tmp_path / "b", config, **sets).record  # type: ignore[arg-type]
    sample = first.store["sample"]
    assert sample["sampled"] is True and 0 < sample["motion_clips"] <= total // 2
    assert first.store["counts"]["motion_clips"] == total  # the store's own counts stay whole
    assert first.config["max_clips"] == total // 2
    assert [s.kind for s in first.sets] == ["raw", "adapter", "published"]
    for s in first.sets:  # every set on the sample's clips; published rows read for those videos only
        assert s.counts["motion_clips"] == sample["motion_clips"]
        assert s.probes["action"].status == "ok"
    assert first.sets[2].counts["published_rows"] == sample["motion_clips"]
    assert _figures(first) == _figures(again)


def _figures(record: Any) -> list[dict[str, Any]]:
    return [{k: v.model_copy(update={"seconds": None}) for k, v in s.probes.items()} for s in record.sets]


def test_probe_below_its_cap_probes_every_clip(trained: tuple[Path, Path], tmp_path: Path) -> None:
    store, _ = trained
    config = ProbeRunConfig(tasks=("action",), probes=FAST)
    record = probe(store, tmp_path / "p", config).record
    sample = record.store["sample"]
    assert sample["sampled"] is False and sample["max_clips"] == PROBE_MAX_CLIPS > 60_060
    assert record.sets[0].counts["motion_clips"] == record.store["counts"]["motion_clips"]


def test_the_spill_has_no_name_so_a_killed_run_leaves_nothing(tmp_path: Path) -> None:
    rows = np.arange(12, dtype=np.float32).reshape(4, 3)
    with anonymize_flow.spill_file(str(tmp_path), 3) as spill:
        spill.append(rows[:3])
        spill.append(rows[3:])
        assert list(tmp_path.iterdir()) == []  # nothing a killed process could leave behind
        np.testing.assert_array_equal(spill.take(np.array([1, 3])), rows[[1, 3]])
    with pytest.raises(ConfigError, match="--spill-dir"), anonymize_flow.spill_file(str(tmp_path / "no"), 3):
        pass
