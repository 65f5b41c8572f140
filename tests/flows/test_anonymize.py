"""The anonymize stage: the privacy gate, what is published (and what never is), atomicity, appends."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from flows.anonymize import AnonymizeConfig, PrivacyGateError, anonymize, dataset_name
from flows.train_adapter import TrainAdapterConfig, train_adapter_stage
from flows.views import anonymize_view
from pipeline.adapter import AdapterError
from pipeline.errors import ConfigError
from stores.errors import StoreError
from stores.latent_cache import LatentCache, PartData
from stores.pseudonyms import default_key_location, fingerprint, load_key, pseudonyms
from stores.published import published_partitions, read_published
from tests.flows.test_probe import planted, write_store

SMALL = {"identities": (12, 8), "actions_per_identity": 2}
PRIVATE = ("private_gender", "private_skin_tone", "private_clothing", "private_identity")
# The tests' 2-epoch adapters are far from private: the gate measures and records, but does not refuse.
MEASURE_ONLY = AnonymizeConfig(gate=False)
UNMEASURED = AnonymizeConfig(allow_unmeasured=True)


def _pseudonyms(store: Path) -> dict[str, str]:
    key = load_key(default_key_location(str(store)), create=False)
    return pseudonyms(key, LatentCache.open(store).read().videos["video_id"].to_pylist())


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # tiny models: threads only add contention on shared 2-core machines


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("anonymize")
    store = write_store(root / "store.zarr", planted(**SMALL))
    train_adapter_stage(store, root / "adapter", TrainAdapterConfig(epochs=2, device="cpu"))
    return store, root / "adapter"


def _files(folder: Path) -> dict[str, bytes]:
    files = (p for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".lock-"))
    return {str(p.relative_to(folder)): p.read_bytes() for p in files}


def test_publishes_every_motion_clip_with_the_gate_numbers(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    store, adapter = trained
    result = anonymize(store, adapter, tmp_path / "pub", MEASURE_ONLY)
    view = LatentCache.open(store).read()
    assert result.clips == view.motion.shape[0] and result.publish.rows_added == result.clips
    rows, emb = read_published(tmp_path / "pub")
    assert rows.num_rows == result.clips
    motion, _ = anonymize_view(view, adapter)
    original = {p: v for v, p in _pseudonyms(store).items()}
    ids = np.array([original[p] for p in rows["video_id"].to_pylist()])
    order = np.lexsort((rows["clip_index"].to_numpy(), ids))
    emb = emb[order]
    np.testing.assert_array_equal(emb, motion)  # the published rows are the adapter's output, bit for bit
    (part,) = published_partitions(tmp_path / "pub")
    assert part.dataset == "anonymize0" and part.adapter.startswith(
        "sha-"
    )  # store.zarr: named after its folder
    leakage = json.loads((Path(part.location) / "_manifest.json").read_text())["leakage"]
    assert leakage["measured"] is True and leakage["results"]["gate"].startswith("off")
    numbers = leakage["results"]
    assert set(numbers["attributes"]) == {"gender", "skin_tone", "clothing"}
    assert 0 <= numbers["worst_leakage"] <= 1 and numbers["min_reduction"] is not None
    assert result.gate.measured and result.gate.worst_leakage == pytest.approx(
        numbers["worst_leakage"], abs=1e-4
    )
    assert numbers["panel"] == "fast: linear, mlp, knn_cosine" and "identities" in numbers["interval"]
    for by_attacker in numbers["attributes"].values():
        worst = by_attacker["worst"]
        assert worst["won_by"] in {"linear", "mlp", "knn_cosine"}
        assert worst["leakage"] == max(v["leakage"] for k, v in by_attacker.items() if k != "worst")
        low, high = worst["leakage_interval"]
        assert low <= worst["leakage"] <= high <= numbers["worst_leakage_high"]
    removed = [w["removed"] for w in (by["worst"] for by in numbers["attributes"].values())]
    assert numbers["min_reduction"] == min(r for r in removed if r is not None)  # worst against worst


def test_the_full_panel_is_one_option_away(trained: tuple[Path, Path], tmp_path: Path) -> None:
    store, adapter = trained
    config = AnonymizeConfig(gate=False, gate_attackers="full")
    result = anonymize(store, adapter, tmp_path / "pub", config)
    assert result.gate.record is not None and result.gate.record["panel"].startswith("full: ")
    assert {"logreg_cv", "hgb_pca", "mlp_plain"} <= set(result.gate.record["attributes"]["gender"])
    with pytest.raises(ValueError):
        AnonymizeConfig(gate_attackers="strongest")  # type: ignore[arg-type]


def test_nothing_private_leaves(trained: tuple[Path, Path], tmp_path: Path) -> None:
    store, adapter = trained
    config = AnonymizeConfig(gate=False, faiss_index="auto", zarr_copy=True)
    anonymize(store, adapter, tmp_path / "pub", config)
    names = list(_files(tmp_path / "pub"))
    assert any(n.endswith("_index/index.faiss") for n in names) and any("/_zarr/" in n for n in names)
    view = LatentCache.open(store).read()
    key = load_key(default_key_location(str(store)), create=False)
    forbidden = [
        b"private_",
        b"/videos/",
        str(store).encode(),
        str(adapter).encode(),
        key,
        key.hex().encode(),
    ]
    forbidden += [v.encode() for v in view.videos["video_id"].to_pylist()]  # the owner's ids
    for name, data in _files(tmp_path / "pub").items():
        for word in forbidden:
            assert word not in data, f"{name} holds {word!r}"
    rows, _ = read_published(tmp_path / "pub")
    assert set(rows.column_names) <= {
        "clip_id",
        "video_id",
        "clip_index",
        "t_start_s",
        "t_end_s",
        "emb",
        "dataset",
        "encoder",
        "adapter",
    }
    # neither raw motion nor static embeddings are in any file
    raw_bytes = [view.motion[0].tobytes()[:16], view.static[0].tobytes()[:16]]
    for name, data in _files(tmp_path / "pub").items():
        assert not any(chunk in data for chunk in raw_bytes), name


def test_gate_refuses_and_writes_nothing(trained: tuple[Path, Path], tmp_path: Path) -> None:
    store, adapter = trained
    with pytest.raises(PrivacyGateError, match=r"above --max-leakage 0\.0"):
        anonymize(store, adapter, tmp_path / "pub", AnonymizeConfig(max_leakage=0.0))
    with pytest.raises(PrivacyGateError, match=r"below --min-reduction 1\.0"):
        anonymize(store, adapter, tmp_path / "pub", AnonymizeConfig(max_leakage=1.0, min_reduction=1.0))
    assert not (tmp_path / "pub").exists() or not _files(tmp_path / "pub")


def test_the_gate_is_on_by_default(trained: tuple[Path, Path], tmp_path: Path) -> None:
    store, adapter = trained  # two epochs: far from the default budget
    with pytest.raises(PrivacyGateError, match=r"privacy gate: .* nothing published"):
        anonymize(store, adapter, tmp_path / "pub")
    assert not (tmp_path / "pub").exists()


def test_an_adapter_that_leaves_the_embeddings_raw_is_refused_whatever_the_gate(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    store, _ = trained
    config = TrainAdapterConfig(epochs=1, erase_dims=0, erase_clip_dims=0, lr=1e-12, device="cpu")
    train_adapter_stage(store, tmp_path / "identity", config)
    for options in ({"gate": False}, {"gate": False, "max_leakage": 1.0, "min_reduction": -1.0}):
        with pytest.raises(PrivacyGateError, match=r"leaves the embeddings .*raw"):
            anonymize(store, tmp_path / "identity", tmp_path / "pub", AnonymizeConfig(**options))
    assert not (tmp_path / "pub").exists()


def test_without_labels_refuses_unless_unmeasured_is_allowed(tmp_path: Path) -> None:
    store = write_store(tmp_path / "nolabels.zarr", planted(**SMALL), drop=PRIVATE)
    train_adapter_stage(store, tmp_path / "adapter", TrainAdapterConfig(epochs=1, device="cpu"))
    for config in (AnonymizeConfig(), AnonymizeConfig(gate=False), AnonymizeConfig(max_leakage=0.5)):
        with pytest.raises(PrivacyGateError, match=r"not measured.*--allow-unmeasured"):
            anonymize(store, tmp_path / "adapter", tmp_path / "pub", config)
    assert not (tmp_path / "pub").exists()
    result = anonymize(store, tmp_path / "adapter", tmp_path / "pub", UNMEASURED)
    assert not result.gate.measured and "no private attribute labels" in result.gate.reason
    (part,) = published_partitions(tmp_path / "pub")
    leakage = json.loads((Path(part.location) / "_manifest.json").read_text())["leakage"]
    reason = "the cache has no private attribute labels; published with --allow-unmeasured"
    assert leakage == {"measured": False, "reason": reason}


def test_reproducible_incremental_and_versioned(tmp_path: Path) -> None:
    store = write_store(tmp_path / "store.zarr", planted(**SMALL), drop=PRIVATE)  # no gate: faster
    train_adapter_stage(store, tmp_path / "adapter", TrainAdapterConfig(epochs=1, device="cpu"))
    config = AnonymizeConfig(dataset="demo", adapter_version="v1", allow_unmeasured=True)
    first = anonymize(store, tmp_path / "adapter", tmp_path / "a", config)
    anonymize(store, tmp_path / "adapter", tmp_path / "b", config)
    data_files = lambda root: {k: v for k, v in _files(root).items() if k.endswith(".parquet")}  # noqa: E731
    assert list(data_files(tmp_path / "a").values()) == list(data_files(tmp_path / "b").values())
    again = anonymize(store, tmp_path / "adapter", tmp_path / "a", config)
    assert not again.publish.changed and again.publish.videos_skipped == first.publish.videos_added
    # a newer adapter goes to its own partition; the first one is untouched
    before = _files(tmp_path / "a")
    train_adapter_stage(store, tmp_path / "adapter2", TrainAdapterConfig(epochs=1, seed=3, device="cpu"))
    anonymize(
        store, tmp_path / "adapter2", tmp_path / "a", config.model_copy(update={"adapter_version": "v2"})
    )
    after = _files(tmp_path / "a")
    assert {k: v for k, v in after.items() if "adapter=v1" in k} == before
    assert sorted(p.adapter for p in published_partitions(tmp_path / "a")) == ["v1", "v2"]


def _subset_store(source: Path, dest: Path, keep: set[str]) -> Path:
    """A cache with the same encoder holding only the videos `keep` of `source`."""
    cache = LatentCache.open(source)
    view = cache.read()

    def rows(table: pa.Table) -> np.ndarray:
        return np.array([i for i, v in enumerate(table["video_id"].to_pylist()) if v in keep], dtype=np.int64)

    m, s, v = rows(view.clips), rows(view.static_clips), rows(view.videos)
    part = PartData(
        view.videos.take(v),
        view.clips.take(m),
        view.motion[m],
        view.static_clips.take(s),
        view.static[s],
        view.errors,
    )
    out = LatentCache.create_or_open(dest, cache.attrs)
    out.write_part(LatentCache.part_id_for(sorted(keep)), part)
    return dest


def test_new_videos_are_appended_without_rewriting(trained: tuple[Path, Path], tmp_path: Path) -> None:
    store, adapter = trained
    ids = LatentCache.open(store).read().videos["video_id"].to_pylist()
    early = _subset_store(store, tmp_path / "early.zarr", set(ids[::2]))
    key = str(tmp_path / "shared.key")  # the two stores stand for one store that grew: one key
    config = AnonymizeConfig(dataset="demo", adapter_version="v1", gate=False, pseudonym_key=key)
    anonymize(early, adapter, tmp_path / "pub", config)
    before = {k: v for k, v in _files(tmp_path / "pub").items() if k.endswith(".parquet")}
    result = anonymize(store, adapter, tmp_path / "pub", config)  # the cache grew: every video now
    assert result.publish.videos_added == len(ids) - len(ids[::2])
    assert result.publish.videos_skipped == len(ids[::2])
    after = _files(tmp_path / "pub")
    assert all(after[k] == v for k, v in before.items())  # nothing already published was rewritten
    assert read_published(tmp_path / "pub")[0].num_rows == LatentCache.open(store).read().motion.shape[0]


def test_bad_inputs(trained: tuple[Path, Path], tmp_path: Path) -> None:
    store, adapter = trained
    with pytest.raises(ConfigError, match="not a folder"):
        anonymize(store, tmp_path / "missing", tmp_path / "pub")
    other = tmp_path / "other-adapter"  # the same weights, recorded as trained for another encoder
    shutil.copytree(adapter, other)
    doc = json.loads((other / "adapter.json").read_text())
    doc["meta"]["encoder_id"] = "videomae:base"
    (other / "adapter.json").write_text(json.dumps(doc))
    with pytest.raises(AdapterError, match="train an adapter on this store"):
        anonymize(store, other, tmp_path / "pub")
    doc["meta"]["encoder_id"] = LatentCache.open(store).attrs.encoder_id  # same id, other weights
    doc["meta"]["encoder_weights_sha256"] = "0" * 64
    (other / "adapter.json").write_text(json.dumps(doc))
    with pytest.raises(AdapterError, match=r"other weights\); train an adapter on this store"):
        anonymize(store, other, tmp_path / "pub")
    assert not (tmp_path / "pub").exists()
    assert dataset_name("work/demo.zarr") == "demo" and dataset_name("/x/1st store/") == "ds-1st-store"
    assert dataset_name("/data/kitchen/latents.zarr") == "kitchen" and dataset_name("w/cams/store/") == "cams"


def test_published_ids_are_keyed_pseudonyms_stable_across_republishes(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    store, adapter = trained
    anonymize(store, adapter, tmp_path / "a", MEASURE_ONLY)
    anonymize(store, adapter, tmp_path / "b", MEASURE_ONLY)
    rows_a, _ = read_published(tmp_path / "a")
    rows_b, _ = read_published(tmp_path / "b")
    mapping = _pseudonyms(store)
    assert set(rows_a["video_id"].to_pylist()) == set(mapping.values())  # every id, none original
    assert rows_a["video_id"].to_pylist() == rows_b["video_id"].to_pylist()
    clip_ids, video_ids = rows_a["clip_id"].to_pylist(), rows_a["video_id"].to_pylist()
    assert all(c.startswith(f"{v}#") for c, v in zip(clip_ids, video_ids, strict=True))
    assert not set(rows_a["video_id"].to_pylist()) & set(mapping)
    (part,) = published_partitions(tmp_path / "a")
    assert part.manifest.id_scheme.startswith("pseudonym:")
    key = load_key(default_key_location(str(store)), create=False)
    assert part.manifest.id_scheme == f"pseudonym:{fingerprint(key)}"
    # original ids only when asked for, and never mixed into a pseudonymous partition
    with pytest.raises(StoreError, match="id_scheme"):
        anonymize(store, adapter, tmp_path / "a", AnonymizeConfig(gate=False, original_ids=True))
    anonymize(store, adapter, tmp_path / "c", AnonymizeConfig(gate=False, original_ids=True))
    rows_c, _ = read_published(tmp_path / "c")
    assert set(rows_c["video_id"].to_pylist()) == set(mapping)


def _card_rows(card: str) -> dict[tuple[str, str], dict[str, str]]:
    """{(attribute, attacker): {column: cell}} of the card's leakage table."""
    lines = [line for line in card.splitlines() if line.startswith("| ")]
    header = next(line for line in lines if line.startswith("| attribute | attacker |"))
    names = [c.strip() for c in header.strip("|").split("|")]
    rows = {}
    for line in lines[lines.index(header) + 1 :]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) != len(names) or cells[0] == "when":
            break
        rows[(cells[0], cells[1])] = dict(zip(names[2:], cells[2:], strict=True))
    return rows


def _cell(value: object) -> str:
    """A manifest number as the card writes it (4 significant digits; an interval as [low, high])."""
    if isinstance(value, list):
        return "[" + ", ".join(_cell(v) for v in value) + "]"
    return "n/a" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def test_the_dataset_card_says_what_the_manifest_says(
    trained: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, adapter = trained
    ids = LatentCache.open(store).read().videos["video_id"].to_pylist()
    early = _subset_store(store, tmp_path / "early.zarr", set(ids[::2]))
    key = str(tmp_path / "shared.key")
    config = AnonymizeConfig(dataset="demo", gate=False, pseudonym_key=key)
    anonymize(early, adapter, tmp_path / "pub", config)
    (part,) = published_partitions(tmp_path / "pub")
    first = (Path(part.location) / "README.md").read_text()
    assert first.startswith("---\npretty_name:") and "## Personal and Sensitive Information" in first
    anonymize(store, adapter, tmp_path / "pub", config)  # an append rewrites the card
    card = (Path(part.location) / "README.md").read_text()
    manifest = json.loads((Path(part.location) / "_manifest.json").read_text())
    results = manifest["leakage"]["results"]
    rows = _card_rows(card)
    attacks = {(a, k): v for a, by in results["attributes"].items() for k, v in by.items()}
    assert set(rows) == set(attacks) and rows
    for key_, numbers in attacks.items():
        for column, value in numbers.items():
            assert rows[key_][column] == _cell(value)
    assert f"**{results['worst_leakage']:.4g}**" in card and f"| {manifest['counts']['rows']}," in card
    assert card.count("| append |") == 1 and card.count("| new |") == 1
    assert (
        f"emb::FLOAT[{manifest['dim']}]" in card and manifest["id_scheme"].removeprefix("pseudonym:") in card
    )


def test_an_unmeasured_publish_says_so_in_its_card(tmp_path: Path) -> None:
    store = write_store(tmp_path / "nolabels.zarr", planted(**SMALL), drop=PRIVATE)
    train_adapter_stage(store, tmp_path / "adapter", TrainAdapterConfig(epochs=1, device="cpu"))
    anonymize(store, tmp_path / "adapter", tmp_path / "pub", UNMEASURED)
    (part,) = published_partitions(tmp_path / "pub")
    card = (Path(part.location) / "README.md").read_text()
    assert "**Leakage was not measured at publication**: the cache has no private attribute labels" in card
