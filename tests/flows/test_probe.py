"""The probe flow on latent caches with planted signals (written straight into a store, no video), on
published shards joined back to the store, and (slow) on the real tiny benchmark."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from flows.probe import (
    PROBES,
    ProbeRecord,
    ProbeRunConfig,
    load_record,
    probe,
)
from flows.probe_sets import published_sets
from pipeline.errors import ConfigError
from pipeline.probes.config import LINEAR, MLP, LeakageConfig, ProbeConfig, TemporalConfig
from pipeline.probes.synthetic import ProbeData, synthetic_probe_data
from stores.errors import SchemaVersionError, StoreError
from stores.latent_cache import CacheAttrs, LatentCache, PartData
from stores.published import LeakageNotMeasured, PublicationInfo, publish

DIM = 32
SHAPE = {"dim": DIM, "identities": (24, 16), "actions_per_identity": 3, "static_per_video": 3}
NO_APPEARANCE = {"attribute_signal": 0.0, "identity_signal": 0.0}
# Fewer steps than the defaults: the planted signals are strong and the suite runs on 2 shared cores.
FAST = ProbeConfig(
    leakage=LeakageConfig(
        attackers={
            "linear": LINEAR.changed(balanced=True, steps=40),
            "mlp": MLP.changed(balanced=True, steps=40, hidden=64),
        }
    ),
    temporal=TemporalConfig(steps=60),
)
ENCODER_SHA = "ab" * 32


# --- helpers shared with test_report.py and tests/cli/test_probe_cli.py ----------------------------------


def planted(seed: int = 0, **changes: Any) -> ProbeData:
    return synthetic_probe_data(seed, **(SHAPE | changes))  # type: ignore[arg-type]


def _videos_table(data: ProbeData, drop: tuple[str, ...]) -> pa.Table:
    ids = sorted(data.splits)
    columns: dict[str, list[Any]] = {
        "video_id": ids,
        "path": [f"/videos/{v}.mp4" for v in ids],
        "size": [1000] * len(ids),
        "mtime_ns": [1] * len(ids),
        "kind": ["video"] * len(ids),
        "status": ["ok"] * len(ids),
        "num_frames": [data.num_frames[v] for v in ids],
        "fps": [data.fps[v] for v in ids],
        "split": [data.splits[v] for v in ids],
        "action": [data.actions.get(v) for v in ids],
        "segments": [
            json.dumps([{"start": s, "end": e, "label": a} for s, e, a in data.segments[v]])
            if v in data.segments
            else None
            for v in ids
        ],
        "anomaly_segments": [
            json.dumps([list(i) for i in data.anomalies[v]]) if v in data.anomalies else None for v in ids
        ],
        "bias_split": [data.bias_splits.get(v) for v in ids],
        "private_identity": [data.identities[v] for v in ids],
    }
    for name, values in data.attributes.items():
        columns[name] = [values.get(v) for v in ids]
    return pa.table({k: v for k, v in columns.items() if k not in drop})


def write_store(path: Path, data: ProbeData, drop: tuple[str, ...] = ()) -> Path:
    """A latent cache holding `data`'s embeddings and labels (columns in `drop` left out), one part."""
    attrs = CacheAttrs(
        encoder_id="planted", weights_sha256=ENCODER_SHA, dim=DIM, pooling="mean", preprocessing={}
    )
    cache = LatentCache.create_or_open(path, attrs)
    m, s = data.motion, data.static
    assert m.t_start is not None and m.t_end is not None
    clips = pa.table(
        {
            "video_id": m.video_id.astype(str),
            "clip_index": m.index.astype(np.int32),
            "frame_start": (m.index * 16).astype(np.int32),
            "frame_stop": (m.index * 16 + 16).astype(np.int32),
            "frame_step": np.ones(len(m.index), np.int32),
            "t_start_s": m.t_start.astype(np.float32),
            "t_end_s": m.t_end.astype(np.float32),
        }
    )
    static_clips = pa.table(
        {
            "video_id": s.video_id.astype(str),
            "static_index": s.index.astype(np.int32),
            "frame_index": s.index.astype(np.int32),
            "t_s": s.index.astype(np.float32),
        }
    )
    errors = pa.table({"video_id": pa.array([], pa.string()), "path": [], "reason": []})
    part = PartData(_videos_table(data, drop), clips, m.emb, static_clips, s.emb, errors)
    cache.write_part(LatentCache.part_id_for(list(data.splits)), part)
    return path


def publish_set(
    out: Path,
    store: Path,
    emb_of: Callable[[pa.Table, np.ndarray], np.ndarray],
    version: str,
    keep: Callable[[str], bool] = lambda video_id: True,
) -> Path:
    """Publish `emb_of(clips, motion)` for the store's clips of the videos `keep` accepts."""
    view = LatentCache.open(store).read()
    rows = [i for i, v in enumerate(view.clips.column("video_id").to_pylist()) if keep(v)]
    clips = view.clips.take(rows).select(["video_id", "clip_index", "t_start_s", "t_end_s"])
    info = PublicationInfo(
        dataset="planted",
        encoder_id="planted",
        encoder_sha256=ENCODER_SHA,
        adapter_sha256=(version.encode().hex() * 64)[:64],
        adapter_variant="test",
        leakage=LeakageNotMeasured("test data"),
        adapter_version=version,
    )
    publish(out, info, clips, emb_of(clips, view.motion[rows]))
    return out


def shared(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], Any]) -> Path:
    """`build(path)` once per test session (every test file that asks gets the same folder)."""
    path = tmp_path_factory.getbasetemp() / "probe-shared" / name
    done = path.with_name(f"{name}.done")
    if not done.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        build(path)
        done.touch()
    return path


def planted_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared(tmp_path_factory, "planted.zarr", lambda p: write_store(p, planted()))


def anonymized_published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Published 'anonymized' embeddings of the planted store: the same benchmark drawn with no
    appearance signal (same seed, so the same clips, actions and noise) — a perfect anonymizer."""
    store = planted_store(tmp_path_factory)
    clean = planted(**NO_APPEARANCE).motion

    def anonymize(clips: pa.Table, motion: np.ndarray) -> np.ndarray:
        lookup = {
            (str(v), int(i)): r for r, (v, i) in enumerate(zip(clean.video_id, clean.index, strict=True))
        }
        keys = zip(clips.column("video_id").to_pylist(), clips.column("clip_index").to_pylist(), strict=True)
        return clean.emb[[lookup[(v, i)] for v, i in keys]]

    return shared(tmp_path_factory, "published", lambda p: publish_set(p, store, anonymize, "clean"))


def planted_probe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """probe.json of the planted store, raw and the clean published set."""
    store, published = planted_store(tmp_path_factory), anonymized_published(tmp_path_factory)
    config = ProbeRunConfig(probes=FAST)
    return shared(tmp_path_factory, "probe", lambda p: probe(store, p, config, published=[published]).record)


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> ProbeRecord:
    return load_record(planted_probe_dir(tmp_path_factory))


# --- tests -----------------------------------------------------------------------------------------------


def metrics(record: ProbeRecord, set_name: str, probe_name: str) -> dict[str, Any]:
    outcome = record.set(set_name).probes[probe_name]
    assert outcome.status == "ok", outcome.reason
    assert outcome.metrics is not None
    return outcome.metrics


def test_raw_probes_recover_planted_signals(record: ProbeRecord) -> None:
    assert [s.name for s in record.sets] == ["raw", "published:clean"]
    assert list(record.set("raw").probes) == list(PROBES)
    action = metrics(record, "raw", "action")
    assert action["top1"] > 0.9 and action["top1_low"] <= action["top1"] <= action["top1_high"]
    assert action["resampled"] == "identities"
    assert metrics(record, "raw", "temporal")["map"] > 0.3
    assert metrics(record, "raw", "anomaly")["auc"] > 0.65  # chance 0.5; MIL over 24 train videos
    reid = metrics(record, "raw", "reid")
    assert reid["top1"] > 0.8 > 3 * reid["chance_top1"] and reid["split"] == "test"
    # splits by person: each test video queried against every other-action video of every split
    assert reid["protocol"] == "cross-split" and reid["skipped_attackers"] == {}
    assert reid["num_items"] == 40 * 5  # all people x (3 trimmed + untrimmed + anomaly video)
    assert reid["num_queries"] == 16 * 5  # the test split's videos
    assert set(reid["attackers"]) == {"cosine", "lda"} and reid["num_train_identities"] > 0
    assert reid["top1"] == max(a["top1"] for a in reid["attackers"].values())
    assert reid["attackers"][reid["attacker"]]["top1"] == reid["top1"]
    bias = metrics(record, "raw", "bias")
    assert bias["group_attribute"] == "gender" and set(bias["per_group"]) == {"female", "male"}
    for view in ("leakage_static", "leakage_motion"):
        m = metrics(record, "raw", view)
        attacks = m["attacks"]
        assert m["panel"] == "fast" and m["attackers"] == ["linear", "mlp", "knn_cosine"]
        assert {(a["attribute"], a["attacker"]) for a in attacks} == {
            (a, k) for a in ("gender", "skin_tone", "clothing") for k in m["attackers"]
        }
        for a in attacks:
            assert a["cmap"] > a["chance"] + 0.2, a
            assert a["leakage"] == pytest.approx((a["cmap"] - a["chance"]) / (1 - a["chance"]))
            assert a["cmap_low"] <= a["cmap"] <= a["cmap_high"] and a["resampled"] == "identities", a
        # the leakage of an attribute is its worst attacker's, with the interval of the worst
        for w in m["worst"]:
            mine = [a for a in attacks if a["attribute"] == w["attribute"]]
            top = max(mine, key=lambda a: a["leakage"])
            assert (w["attacker"], w["leakage"]) == (top["attacker"], top["leakage"])
            assert w["leakage_low"] >= max(a["leakage_low"] for a in mine) - 1e-9
            assert w["leakage_low"] <= w["leakage"] <= w["leakage_high"]
        assert m["oracle"] == []  # the oracle line comes with the full panel only


def test_published_set_is_joined_to_store_labels(record: ProbeRecord) -> None:
    """The clean set keeps actions and loses attributes and identity; it has no static clips."""
    s = record.set("published:clean")
    assert s.kind == "published" and s.source["adapter"] == "clean" and s.source["encoder_matches_store"]
    assert s.counts["motion_clips"] == record.store["counts"]["motion_clips"]
    assert s.counts["unmatched_published_rows"] == 0 and s.counts["store_clips_missing"] == 0
    assert s.probes["leakage_static"].status == "skipped"
    assert "no static clips" in (s.probes["leakage_static"].reason or "")
    assert metrics(record, s.name, "action")["top1"] > 0.9
    for a in metrics(record, s.name, "leakage_motion")["attacks"]:
        assert abs(a["cmap"] - a["chance"]) < 0.12, a  # 80 test videos: noise of a few points
    reid = metrics(record, s.name, "reid")
    assert reid["top1"] < 0.3


def test_record_holds_config_store_and_timings(record: ProbeRecord) -> None:
    assert record.schema_version == 1 and record.kind == "aam-pipeline/probe"
    assert record.config["seed"] == 0 and record.config["tasks"] == list(ProbeRunConfig().tasks)
    assert record.config["probes"]["leakage"]["attackers"]["mlp"]["steps"] == 40
    assert record.store["encoder_id"] == "planted" and record.store["attrs"]["dim"] == DIM
    assert record.store["counts"]["videos"] == 40 * 5
    assert record.store["attributes"] == ["clothing", "gender", "skin_tone"]
    assert {"read_store", "load_sets", "probes", "total"} <= set(record.timings_s)
    assert all(o.seconds is not None for s in record.sets for o in s.probes.values() if o.status == "ok")


def test_partial_and_several_partitions(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Each partition is its own set; a partial one covers fewer clips; rows land on the right clips."""
    store = planted_store(tmp_path_factory)
    out = tmp_path / "published"
    publish_set(out, store, lambda clips, motion: motion * 2.0, "double", keep=lambda v: v < "p010")
    publish_set(out, store, lambda clips, motion: -motion, "negated")
    view = LatentCache.open(store).read()
    seen = {s.name: s for s in published_sets(view, out)}
    assert sorted(seen) == ["published:double", "published:negated"]
    double, negated = seen["published:double"], seen["published:negated"]
    assert double.counts()["videos"] == 10 * 5 and double.counts()["store_clips_missing"] > 0
    np.testing.assert_allclose(negated.motion.emb, -view.motion)
    by_key = {
        (v, i): r for r, (v, i) in enumerate(zip(negated.motion.video_id, negated.motion.index, strict=True))
    }
    for r in range(0, len(double.motion.index), 7):
        key = (double.motion.video_id[r], double.motion.index[r])
        np.testing.assert_allclose(double.motion.emb[r], 2.0 * view.motion[by_key[key]], rtol=1e-6)
    # one partition folder can be passed on its own
    single = published_sets(view, out / "dataset=planted" / "encoder=planted" / "adapter=negated")
    assert [s.name for s in single] == ["published:negated"]


def test_published_clips_with_other_times_are_refused(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    store = planted_store(tmp_path_factory)
    view = LatentCache.open(store).read()
    clips = view.clips.select(["video_id", "clip_index", "t_start_s", "t_end_s"])
    shifted = clips.set_column(2, "t_start_s", pa.array(clips["t_start_s"].to_numpy() + 0.5, pa.float32()))
    info = PublicationInfo("planted", "planted", ENCODER_SHA, "cd" * 32, "test", LeakageNotMeasured("x"))
    publish(tmp_path / "pub", info, shifted, view.motion)
    with pytest.raises(StoreError, match="differ in t_start_s"):
        probe(store, tmp_path / "probe", published=[tmp_path / "pub"])
    assert not (tmp_path / "probe" / "probe.json").exists()


def test_missing_labels_are_skipped_with_reasons(tmp_path: Path) -> None:
    data = planted(identities=(8, 6), actions_per_identity=2)
    drop = ("segments", "anomaly_segments", "bias_split", "private_identity")
    store = write_store(tmp_path / "store.zarr", data, drop=drop)
    config = ProbeRunConfig(tasks=("action", "temporal", "anomaly", "reid", "bias"), probes=FAST)
    rec = probe(store, tmp_path / "probe", config).record
    reasons = {name: o.reason for name, o in rec.tasks.items() if o.status == "skipped"}
    assert set(reasons) == {"temporal", "anomaly", "leakage", "reid", "bias"}
    assert "segments" in (reasons["temporal"] or "") and "anomaly_segments" in (reasons["anomaly"] or "")
    assert reasons["leakage"] == "not requested (--tasks)"
    assert "private_identity" in (reasons["reid"] or "") and "bias_split" in (reasons["bias"] or "")
    raw = rec.set("raw")
    assert raw.probes["action"].status == "ok"
    assert {n for n, o in raw.probes.items() if o.status == "skipped"} == set(PROBES) - {"action"}
    assert all(o.reason for o in raw.probes.values() if o.status == "skipped")


def test_probe_errors_become_recorded_skips(tmp_path: Path) -> None:
    """A probe that cannot be computed (no abnormal training video) is skipped, not fatal."""
    data = planted(identities=(6, 6), actions_per_identity=1)
    for v in list(data.anomalies):
        data.anomalies[v] = []
    store = write_store(tmp_path / "store.zarr", data)
    config = ProbeRunConfig(tasks=("action", "anomaly"), probes=FAST)
    outcome = probe(store, tmp_path / "probe", config).record.set("raw").probes["anomaly"]
    assert outcome.status == "skipped" and "normal and abnormal" in (outcome.reason or "")


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    store = write_store(tmp_path / "store.zarr", planted(identities=(10, 8), actions_per_identity=2))

    def run(seed: int, name: str, tasks: tuple[Any, ...] = ("action", "leakage")) -> list[Any]:
        config = ProbeRunConfig(seed=seed, tasks=tasks, probes=FAST)
        rec = probe(store, tmp_path / name, config).record
        return [o.metrics for o in rec.set("raw").probes.values()]

    first = run(3, "a")
    assert run(3, "b") == first
    run(4, "c", ("action",))
    saved = json.loads((tmp_path / "c" / "probe.json").read_text())
    assert saved["config"]["probes"]["leakage"]["attackers"]["linear"]["seed"] == 4
    assert saved["config"]["probes"]["temporal"]["seed"] == 4


def test_adapter_set_through_anonymize_view(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []

    def anonymize_view(view: Any, adapter_dir: Path) -> tuple[np.ndarray, np.ndarray]:
        calls.append(adapter_dir)
        return view.motion * 0.5, view.static * 0.5

    monkeypatch.setattr("flows.probe_sets.anonymize_view", anonymize_view)
    (tmp_path / "adapter-v1").mkdir()
    config = ProbeRunConfig(tasks=("action", "leakage"), probes=FAST)
    store = write_store(tmp_path / "store.zarr", planted(identities=(10, 8), actions_per_identity=2))
    rec = probe(store, tmp_path / "p", config, adapters=[tmp_path / "adapter-v1"]).record
    assert calls == [tmp_path / "adapter-v1"]
    assert [s.name for s in rec.sets] == ["raw", "adapter:adapter-v1"]
    adapted = rec.set("adapter:adapter-v1")
    assert adapted.kind == "adapter" and adapted.probes["leakage_static"].status == "ok"
    # a scaled copy carries the same information: the standardised probes see the same features
    assert metrics(rec, "raw", "action")["top1"] == pytest.approx(
        metrics(rec, adapted.name, "action")["top1"]
    )
    with pytest.raises(ConfigError, match="not a folder"):
        probe(store, tmp_path / "q", config, adapters=[tmp_path / "nope"])


def test_load_record_refuses_newer_or_damaged(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no probe\.json"):
        load_record(tmp_path)
    (tmp_path / "probe.json").write_text(json.dumps({"kind": "aam-pipeline/probe", "schema_version": 99}))
    with pytest.raises(SchemaVersionError, match="newer aam-pipeline"):
        load_record(tmp_path)
    (tmp_path / "probe.json").write_text("{not json")
    with pytest.raises(StoreError, match="not readable JSON"):
        load_record(tmp_path)


def test_missing_store_and_bad_out(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no latent cache"):
        probe(tmp_path / "nothing.zarr", tmp_path / "probe")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        probe(tmp_path / "nothing.zarr", tmp_path / "file")


@pytest.mark.slow
def test_tiny_benchmark_cache(tiny_benchmark: Path, tmp_path: Path) -> None:
    """The real path: synth → extract (tiny encoder, 4 static frames) → probe on the raw cache."""
    from flows.extract import ExtractConfig, extract
    from stores.manifest import read_manifest

    store = tmp_path / "tiny.zarr"
    extract(read_manifest(tiny_benchmark / "manifest.parquet"), store, ExtractConfig(static_frames=4))
    rec = probe(store, tmp_path / "probe", ProbeRunConfig(probes=FAST)).record
    raw = rec.set("raw")
    assert rec.store["encoder_id"] == "tiny"
    assert rec.store["attributes"] == ["clothing_color", "clothing_pattern", "gender", "skin_tone"]
    action = metrics(rec, "raw", "action")
    assert action["top1"] > action["chance_top1"] and action["num_classes"] == 8
    assert {a["attribute"] for a in metrics(rec, "raw", "leakage_static")["attacks"]} == set(
        rec.store["attributes"]
    )
    assert raw.counts["static_clips"] == 4 * rec.store["counts"]["videos"]
    for name, outcome in raw.probes.items():  # whatever the tiny preset cannot support says why
        assert outcome.status == "ok" or outcome.reason, name


def test_reid_metric_never_trains_on_a_queried_person() -> None:
    """Splits not drawn by person (a user's manifest): a queried person's train-split video is left
    out of the learned metric's training instead of failing the probe, stays in the gallery, and the
    protocol is cross-split (issue 22: the test people also appear in train)."""
    from types import SimpleNamespace

    from flows.probe import _reid
    from pipeline.probes.synthetic import synthetic_probe_data

    data = synthetic_probe_data(0, identities=(10, 10), dim=16, static_per_video=1)
    splits = dict(data.splits)
    shared = next(v for v, s in splits.items() if s == "test")
    splits[shared] = "train"  # its person also has test videos
    labels = SimpleNamespace(splits=splits, identity=data.identities, actions=data.actions)
    out = _reid(data.motion, labels, "test")  # type: ignore[arg-type]
    assert out["num_train_identities"] == 10 and set(out["attackers"]) == {"cosine", "lda"}
    assert out["protocol"] == "cross-split" and out["skipped_attackers"] == {}
    assert out["num_items"] == len([v for v in data.identities if v in data.motion.rows_by_video])


def test_reid_on_splits_by_person_uses_the_cross_split_protocol() -> None:
    """Test people absent from train: each test video is queried against every video of another
    action, from any split; the record and the CLI line say so."""
    from types import SimpleNamespace

    from flows.probe import ProbeOutcome, _reid, brief, reid_protocol
    from pipeline.probes.synthetic import synthetic_probe_data

    data = synthetic_probe_data(0, identities=(10, 10), dim=16, static_per_video=1)
    labels = SimpleNamespace(splits=data.splits, identity=data.identities, actions=data.actions)
    assert reid_protocol("test") == reid_protocol("val") == "cross-split"
    assert reid_protocol(None) == reid_protocol("train") == "within-split"
    out = _reid(data.motion, labels, "test")  # type: ignore[arg-type]
    assert out["protocol"] == "cross-split" and out["split"] == "test"
    with_identity = [v for v in data.identities if v in data.motion.rows_by_video]
    assert out["num_items"] == len(with_identity)  # the gallery spans every split
    assert out["num_train_identities"] == 10 and set(out["attackers"]) == {"cosine", "lda"}
    line = brief("reid", ProbeOutcome(status="ok", seconds=0.1, metrics=out))
    assert "cross-split" in line and out["attacker"] in line
    assert (
        out["top1_low"] <= out["top1"] <= out["top1_high"] and out["map_low"] <= out["map"] <= out["map_high"]
    )
    assert f"[{out['top1_low']:.3f}, {out['top1_high']:.3f}]" in line
