"""Published shards: round trip, file encodings and metadata, atomicity, reproducibility, appends, extras."""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import duckdb
import fsspec
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import zarr

from stores import _published_extras as _extras
from stores import published as published_module
from stores._published_rows import Rows
from stores.errors import SchemaVersionError, StoreError
from stores.published import (
    LeakageNotMeasured,
    load_faiss_index,
    public_encoder_id,
    publish,
    published_partitions,
    read_published,
)
from tests.stores.test_published_support import (
    DIM,
    LEAKAGE,
    clips_and_emb,
    make_info,
    partition,
    snapshot,
    video_ids,
)

GLOB = "dataset=*/encoder=*/adapter=*/part-*.parquet"  # the glob docs/data-teams.md tells readers to use


def _publish(out: Path | str, videos: list[str], version: str = "v1", **kwargs: Any) -> Any:
    clips, emb = clips_and_emb(videos, salt=version)
    return publish(out, make_info(version), clips, emb, **kwargs)


IGNORE = [".", "_", "README"]  # pyarrow's default (hidden and _ names) and the dataset cards


def _glob_counts(out: Path) -> tuple[int, int, int]:
    """Rows seen by DuckDB and polars through the documented glob, and by pyarrow dataset discovery."""
    pattern = f"{out}/{GLOB}"
    duck = duckdb.sql(f"SELECT count(*) FROM read_parquet('{pattern}', hive_partitioning = true)").fetchall()
    polars = pl.scan_parquet(pattern, hive_partitioning=True).select(pl.len()).collect().item()
    arrow = ds.dataset(out, format="parquet", partitioning="hive", ignore_prefixes=IGNORE).count_rows()
    return int(duck[0][0]), int(polars), int(arrow)


# --- round trip ----------------------------------------------------------------------------------------


def test_round_trip_sorts_rows_and_keeps_values(tmp_path: Path) -> None:
    clips, emb = clips_and_emb(video_ids(4))
    order = np.random.default_rng(0).permutation(clips.num_rows)  # the writer sorts
    result = publish(tmp_path, make_info(), clips.take(order), emb[order], rows_per_file=5)

    rows, back = read_published(tmp_path, verify=True)
    assert rows["clip_id"].to_pylist() == [f"{v}#{i}" for v in video_ids(4) for i in range(3)]
    assert rows.select(["video_id", "clip_index", "t_start_s", "t_end_s"]).equals(clips)
    np.testing.assert_array_equal(back, emb)
    assert set(rows["adapter"].to_pylist()) == {"v1"} and set(rows["encoder"].to_pylist()) == {"tiny"}
    # whole videos per file: 3 clips per video, at most 5 rows per file -> one video per file
    assert result.files_added == tuple(f"part-{i:05d}.parquet" for i in range(4))
    assert result.partition.rows == 12 and result.changed

    schema = pq.read_schema(partition(tmp_path) / "part-00000.parquet")
    assert schema.names == ["clip_id", "video_id", "clip_index", "t_start_s", "t_end_s", "emb"]
    assert schema.field("emb").type == pa.list_(pa.field("element", pa.float32(), nullable=False), DIM)
    assert not schema.field("emb").nullable
    assert schema.field("clip_index").type == pa.int32() and schema.field("t_end_s").type == pa.float32()


def test_a_file_never_splits_a_video(tmp_path: Path) -> None:
    clips, emb = clips_and_emb(video_ids(3), clips_per_video=10)
    result = publish(tmp_path, make_info(), clips, emb, rows_per_file=4, row_group_rows=3)
    assert [f.rows for f in result.partition.manifest.files] == [10, 10, 10]
    assert pq.ParquetFile(partition(tmp_path) / "part-00000.parquet").metadata.num_row_groups == 4


def test_float16_on_request(tmp_path: Path) -> None:
    clips, emb = clips_and_emb(video_ids(2))
    publish(tmp_path, make_info(), clips, emb, dtype="float16")
    file = partition(tmp_path) / "part-00000.parquet"
    assert pq.read_schema(file).field("emb").type == pa.list_(pa.field("element", pa.float16(), False), DIM)
    _, back = read_published(tmp_path)
    np.testing.assert_array_equal(back, emb.astype(np.float16).astype(np.float32))
    manifest = published_partitions(tmp_path)[0].manifest
    assert (manifest.dtype, manifest.emb_encoding) == ("float16", "PLAIN")
    column = pq.ParquetFile(file).metadata.row_group(0).column(5)
    assert column.path_in_schema == "emb.list.element" and "BYTE_STREAM_SPLIT" not in column.encodings
    # DuckDB 2.0 cannot decode BYTE_STREAM_SPLIT float16; PLAIN float16 it reads as FLOAT
    got = duckdb.sql(f"SELECT emb::FLOAT[{DIM}] FROM '{file}' ORDER BY clip_id LIMIT 1").fetchall()
    np.testing.assert_allclose(got[0][0], back[0])


def test_files_are_zstd_with_byte_stream_split_emb_and_carry_metadata(tmp_path: Path) -> None:
    _publish(tmp_path, video_ids(3))
    metadata = pq.ParquetFile(partition(tmp_path) / "part-00000.parquet").metadata
    columns = {}
    for g in range(metadata.num_row_groups):
        for c in range(metadata.num_columns):
            column = metadata.row_group(g).column(c)
            columns[column.path_in_schema] = column
            assert column.compression == "ZSTD"
    emb = columns["emb.list.element"]
    assert "BYTE_STREAM_SPLIT" in emb.encodings and "RLE_DICTIONARY" not in emb.encodings
    assert "RLE_DICTIONARY" in columns["video_id"].encodings

    kv = {k.decode(): v.decode() for k, v in metadata.metadata.items() if k.startswith(b"aam.")}
    assert kv["aam.schema_version"] == "1" and kv["aam.dim"] == str(DIM)
    assert kv["aam.encoder_id"] == "tiny" and kv["aam.adapter_version"] == "v1"
    assert kv["aam.adapter_sha256"] == make_info().adapter_sha256
    assert kv["aam.encoder_sha256"] == make_info().encoder_sha256
    assert kv["aam.normalisation"] == "l2" and kv["aam.dtype"] == "float32"
    assert json.loads(kv["aam.leakage"]) == {"measured": True, "results": LEAKAGE}
    assert not any("created" in k or "time" in k for k in kv)  # the time is in the manifest only


def test_manifest_describes_the_partition(tmp_path: Path) -> None:
    _publish(tmp_path, video_ids(3), rows_per_file=4)
    folder = partition(tmp_path)
    manifest = json.loads((folder / "_manifest.json").read_text())
    assert manifest["schema_version"] == 1 and manifest["kind"] == "aam-pipeline/published-partition"
    assert manifest["counts"] == {"rows": 9, "videos": 3, "files": 3}
    assert (manifest["dim"], manifest["dtype"], manifest["normalisation"]) == (DIM, "float32", "l2")
    assert manifest["leakage"] == {"measured": True, "results": LEAKAGE}
    assert manifest["created_at"] and len(manifest["publications"]) == 1
    for entry in manifest["files"]:
        data = (folder / entry["name"]).read_bytes()
        assert entry["size"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",  # the dataset card
        "_manifest.json",
        *[f["name"] for f in manifest["files"]],
    ]


def test_not_measured_leakage_is_said_explicitly(tmp_path: Path) -> None:
    clips, emb = clips_and_emb(video_ids(1))
    info = make_info(leakage=LeakageNotMeasured("the cache has no attribute labels"))
    with pytest.raises(StoreError, match="private"):  # even the reason may not name private columns
        publish(tmp_path, make_info(leakage=LeakageNotMeasured("no private_gender labels")), clips, emb)
    publish(tmp_path, info, clips, emb)
    leakage = published_partitions(tmp_path)[0].manifest.leakage
    assert leakage["measured"] is False and leakage["reason"]
    with pytest.raises(StoreError, match="LeakageNotMeasured"):
        publish(tmp_path / "other", make_info(leakage={}), clips, emb)


# --- atomicity -----------------------------------------------------------------------------------------


def test_manifest_is_written_after_every_other_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[set[str]] = []
    original = published_module._write_manifest

    def spy(root: Any, folder: str, manifest: Any) -> None:
        seen.append({p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if p.is_file()})
        original(root, folder, manifest)

    monkeypatch.setattr(published_module, "_write_manifest", spy)
    _publish(tmp_path, video_ids(2), faiss_index="flat", zarr_copy=True)
    listed = published_partitions(tmp_path)[0].manifest
    expected = {f.name for f in listed.files}
    expected |= {f.name for f in listed.faiss_index.files} if listed.faiss_index else set()
    expected |= {f.name for f in listed.zarr_copy.files} if listed.zarr_copy else set()
    assert seen == [expected]


def test_failed_publish_leaves_previous_publication_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _publish(tmp_path, video_ids(3), faiss_index="flat")
    before = snapshot(tmp_path)
    rows_before, _ = read_published(tmp_path)

    def crash(*args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(published_module, "_write_manifest", crash)
    with pytest.raises(OSError, match="disk full"):  # a newer adapter: no partition appears
        _publish(tmp_path, video_ids(3), version="v2")
    with pytest.raises(OSError, match="disk full"):  # an append: nothing of it stays
        _publish(tmp_path, video_ids(5), mode="append", faiss_index="flat")

    assert snapshot(tmp_path) == before
    assert [p.adapter for p in published_partitions(tmp_path)] == ["v1"]
    assert read_published(tmp_path)[0].equals(rows_before)
    assert _glob_counts(tmp_path) == (9, 9, 9)


def test_stale_work_folders_are_ignored_by_readers_and_cleaned(tmp_path: Path) -> None:
    _publish(tmp_path, video_ids(3))
    folder = partition(tmp_path)
    # What kill -9 leaves: a hidden folder beside the partition and one inside it.
    dead = folder.parent / f".tmp-adapter=v2-{uuid.uuid4().hex}"
    shutil.copytree(folder, dead)
    inside = folder / f".tmp-{uuid.uuid4().hex}"
    inside.mkdir()
    shutil.copy(folder / "part-00000.parquet", inside / "part-00001.parquet")

    assert read_published(tmp_path)[0].num_rows == 9
    assert _glob_counts(tmp_path) == (9, 9, 9)
    assert [p.adapter for p in published_partitions(tmp_path)] == ["v1"]

    _publish(tmp_path, video_ids(3), version="v2")
    assert not dead.exists()
    _publish(tmp_path, video_ids(4), mode="append")
    assert not inside.exists()
    assert _glob_counts(tmp_path) == (21, 21, 21)


def test_files_an_interrupted_append_left_are_replaced(tmp_path: Path) -> None:
    _publish(tmp_path, video_ids(2), rows_per_file=3)
    folder = partition(tmp_path)
    # kill -9 after moving a file in, before the manifest: a complete but unlisted file
    shutil.copy(folder / "part-00000.parquet", folder / "part-00002.parquet")
    assert read_published(tmp_path)[0].num_rows == 6  # readers of the manifest never see it
    result = _publish(tmp_path, video_ids(3), mode="append", rows_per_file=3)
    assert result.files_added == ("part-00002.parquet",)
    rows, _ = read_published(tmp_path, verify=True)
    assert rows["video_id"].to_pylist() == [v for v in video_ids(3) for _ in range(3)]


# --- reproducibility, partitions, appends --------------------------------------------------------------


def test_same_inputs_give_byte_identical_data_files(tmp_path: Path) -> None:
    first = _publish(tmp_path / "a", video_ids(4), rows_per_file=7)
    _publish(tmp_path / "b", video_ids(4), rows_per_file=7)
    a, b = snapshot(partition(tmp_path / "a")), snapshot(partition(tmp_path / "b"))
    assert [n for n in a if n.endswith(".parquet")] == list(first.files_added)
    for name in first.files_added:
        assert a[name][0] == b[name][0]

    again = _publish(tmp_path / "a", video_ids(4), rows_per_file=7)  # the same rows: a no-op
    assert not again.changed and again.files_added == () and again.videos_skipped == 4
    assert snapshot(partition(tmp_path / "a")) == a


def test_a_new_adapter_goes_to_its_own_partition(tmp_path: Path) -> None:
    _publish(tmp_path, video_ids(3))
    v1 = snapshot(partition(tmp_path))
    _publish(tmp_path, video_ids(3), version="v2")
    assert [(p.dataset, p.encoder, p.adapter) for p in published_partitions(tmp_path)] == [
        ("demo", "tiny", "v1"),
        ("demo", "tiny", "v2"),
    ]
    assert snapshot(partition(tmp_path)) == v1
    _, emb_v2 = read_published(tmp_path, adapter="v2")
    np.testing.assert_array_equal(emb_v2, clips_and_emb(video_ids(3), salt="v2")[1])
    assert _glob_counts(tmp_path) == (18, 18, 18)

    clips, emb = clips_and_emb(video_ids(3))
    with pytest.raises(StoreError, match="adapter_sha256"):  # another adapter under the same version
        publish(tmp_path, make_info("v1", adapter_sha256="ff" * 32), clips, emb)
    with pytest.raises(StoreError, match="mode='append'"):  # more videos in mode "new"
        _publish(tmp_path, video_ids(4))
    with pytest.raises(StoreError, match="new adapter_version"):  # the same videos, other embeddings
        publish(tmp_path, make_info("v1"), clips, clips_and_emb(video_ids(3), salt="x")[1])
    assert snapshot(partition(tmp_path)) == v1


def test_checksum_partition_when_no_version(tmp_path: Path) -> None:
    clips, emb = clips_and_emb(video_ids(1))
    result = publish(tmp_path, make_info("", adapter_sha256="0123456789" * 6 + "abcd"), clips, emb)
    assert result.partition.adapter == "sha-012345678901"


def test_append_adds_files_and_never_rewrites(tmp_path: Path) -> None:
    _publish(tmp_path, video_ids(3), rows_per_file=3, faiss_index="flat", zarr_copy=True)
    before = snapshot(partition(tmp_path))
    data_before = {n: v for n, v in before.items() if n.startswith("part-")}

    result = _publish(tmp_path, video_ids(3, start=2), mode="append", rows_per_file=3)  # 2 is published
    assert result.changed and result.files_added == ("part-00003.parquet", "part-00004.parquet")
    assert (result.videos_added, result.videos_skipped, result.rows_added) == (2, 1, 6)
    after = snapshot(partition(tmp_path))
    assert {n: after[n] for n in data_before} == data_before  # same bytes, same mtime

    manifest = result.partition.manifest
    assert [f.name for f in manifest.files] == [f"part-{i:05d}.parquet" for i in range(5)]
    assert manifest.counts == {"rows": 15, "videos": 5, "files": 5}
    assert [p.mode for p in manifest.publications] == ["new", "append"]
    rows, emb = read_published(tmp_path, verify=True)
    assert sorted(set(rows["video_id"].to_pylist())) == video_ids(5)
    # the extras were rebuilt over every row, in manifest file order
    index, ids = load_faiss_index(result.partition)
    assert index.ntotal == 15 and ids["clip_id"].equals(rows["clip_id"])
    np.testing.assert_array_equal(zarr.open_group(partition(tmp_path) / "_zarr", mode="r")["emb"][:], emb)

    again = _publish(tmp_path, video_ids(5), mode="append")
    assert not again.changed and again.videos_skipped == 5

    clips, changed = clips_and_emb(video_ids(6))
    changed[0] += 1e-3  # vid-000 comes back with another embedding
    with pytest.raises(StoreError, match=r"vid-000"):
        publish(tmp_path, make_info(), clips, changed, mode="append")
    publish(tmp_path, make_info(), clips, changed, mode="append", tolerance=1e-2)  # within tolerance
    assert published_partitions(tmp_path)[0].manifest.counts["videos"] == 6


def test_append_into_an_empty_place_creates_the_partition(tmp_path: Path) -> None:
    result = _publish(tmp_path, video_ids(2), mode="append")
    assert result.changed and result.partition.rows == 6


# --- what may not be published -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ("private_gender", "never published"),
        ("path", "never published"),
        ("source_path", "never published"),
        ("raw_emb", "never published"),
        ("static_emb", "never published"),
        ("frame_start", "not part of a published row"),
        ("clip_id", "not part of a published row"),
    ],
)
def test_refuses_columns_that_are_not_published(tmp_path: Path, column: str, message: str) -> None:
    clips, emb = clips_and_emb(video_ids(2))
    clips = clips.append_column(column, pa.array(["x"] * clips.num_rows))
    with pytest.raises(StoreError, match=message):
        publish(tmp_path, make_info(), clips, emb)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "changes",
    [
        {"extra_metadata": {"source_path": "videos"}},
        {"extra_metadata": {"private_note": "x"}},
        {"extra_metadata": {"raw_dim": "768"}},
        {"extra_metadata": {"static_frames": "10"}},
        {"extra_metadata": {"origin": "/data/videos"}},
        {"leakage": {"private_gender": {"cmap": 0.5}}},
        {"leakage": {"gender": {"probe_dir": "s3://bucket/probe"}}},
        {"leakage": {"gender": {"path": "x"}}},
        {"leakage": {"gender": float("nan")}},
        {"encoder_id": "torchscript:/home/alice/model.pt"},
        {"dataset": "1st"},
        {"dataset": "a/b"},
        {"adapter_version": "true"},
        {"encoder_sha256": "abc"},
    ],
)
def test_refuses_metadata_that_is_not_published(tmp_path: Path, changes: dict[str, Any]) -> None:
    clips, emb = clips_and_emb(video_ids(1))
    with pytest.raises(StoreError):
        publish(tmp_path, make_info(**changes), clips, emb)
    assert not any(tmp_path.iterdir())


def test_public_encoder_id_drops_locations() -> None:
    assert public_encoder_id("torchscript:/home/alice/models/x3d.pt") == "torchscript:x3d"
    assert public_encoder_id("torchscript:enc.v2.PTH") == "torchscript:enc.v2"
    assert public_encoder_id("videomae:/models/videomae-base") == "videomae:videomae-base"
    assert public_encoder_id("vjepa2:facebook/vjepa2-vitl-fpc64-256") == "vjepa2:vjepa2-vitl-fpc64-256"
    assert public_encoder_id("tiny") == "tiny"
    info = make_info(encoder_id=public_encoder_id("torchscript:/m/enc.pt"))
    assert info.encoder_slug == "torchscript-enc"  # the encoder= partition value


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c, e: (c, e[:-1]), "shape"),
        (lambda c, e: (c, np.where(np.arange(len(e))[:, None] == 0, np.nan, e)), "NaN"),
        (lambda c, e: (c, e * 2), "norm"),
        (lambda c, e: (pa.concat_tables([c, c.slice(0, 1)]), np.concatenate([e, e[:1]])), "twice"),
        (lambda c, e: (c.set_column(0, "video_id", pa.array(["/data/v.mp4"] * c.num_rows)), e), "location"),
        (lambda c, e: (c.drop_columns(["t_end_s"]), e), "lacks"),
    ],
)
def test_refuses_bad_rows(tmp_path: Path, mutate: Any, message: str) -> None:
    clips, emb = mutate(*clips_and_emb(video_ids(2)))
    with pytest.raises(StoreError, match=message):
        publish(tmp_path, make_info(), clips, emb)


def test_readers_refuse_a_newer_schema_version(tmp_path: Path) -> None:
    _publish(tmp_path, video_ids(1))
    path = partition(tmp_path) / "_manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps(manifest | {"schema_version": 99, "new_field": 1}))
    for call in (lambda: published_partitions(tmp_path), lambda: read_published(tmp_path)):
        with pytest.raises(SchemaVersionError, match="upgrade aam-pipeline"):
            call()
    with pytest.raises(SchemaVersionError):
        _publish(tmp_path, video_ids(2), mode="append")


def test_read_published_refuses_damaged_files(tmp_path: Path) -> None:
    _publish(tmp_path, video_ids(1))
    file = partition(tmp_path) / "part-00000.parquet"
    data = bytearray(file.read_bytes())
    data[100] ^= 0xFF
    file.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="checksum"):
        read_published(tmp_path, verify=True)


# --- extras --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_faiss_search_finds_each_clip_first(tmp_path: Path, kind: str) -> None:
    clips, emb = clips_and_emb(video_ids(40), clips_per_video=3, unit=False)
    info = make_info(normalisation="none")
    result = publish(tmp_path, info, clips, emb, faiss_index=kind)  # type: ignore[arg-type]
    index, ids = load_faiss_index(result.partition)
    entry = result.partition.manifest.faiss_index
    assert entry is not None and entry.kind == kind and entry.rows == 120
    if kind == "ivf":
        assert entry.nlist == 3 and entry.nprobe == 3  # min(sqrt(120), 120 // 39); all lists searched
    rows, back = read_published(tmp_path)
    unit = back / np.linalg.norm(back, axis=1, keepdims=True)
    scores, found = index.search(unit, 2)
    assert ids.take(pa.array(found[:, 0]))["clip_id"].equals(rows["clip_id"])
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)


def test_zarr_copy_matches_the_data_files(tmp_path: Path) -> None:
    _publish(tmp_path, video_ids(3), zarr_copy=True, dtype="float16")
    group = zarr.open_group(partition(tmp_path) / "_zarr", mode="r")
    rows, emb = read_published(tmp_path)
    array = group["emb"]
    assert isinstance(array, zarr.Array) and array.dtype == np.float16 and array.shape == (9, DIM)
    np.testing.assert_array_equal(array[:].astype(np.float32), emb)
    side = pq.read_table(partition(tmp_path) / "_zarr" / "clips.parquet")
    assert side["clip_id"].equals(rows["clip_id"])
    assert group.attrs["normalisation"] == "l2"


def test_extras_are_built_one_data_file_at_a_time_over_every_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over many data files (and an append) the Zarr copy and the index hold every row in manifest order;
    with fewer training points allowed per list than there are rows, the IVF index trains on a seeded
    sample and still finds each clip first."""
    monkeypatch.setattr(_extras, "MAX_POINTS_PER_CENTROID", 4)  # 3 lists x 4 < 120 rows: a sample
    loaded: list[int] = []  # rows of each file read
    read_one = published_module._file_rows

    def counted(*args: Any, **kwargs: Any) -> Rows:
        rows = read_one(*args, **kwargs)
        loaded.append(len(rows))
        return rows

    monkeypatch.setattr(published_module, "_file_rows", counted)
    clips, emb = clips_and_emb(video_ids(40), clips_per_video=3, unit=False)
    info = make_info(normalisation="none")
    publish(tmp_path, info, clips.slice(0, 60), emb[:60], faiss_index="ivf", zarr_copy=True, rows_per_file=9)
    result = publish(tmp_path, info, clips, emb, mode="append", rows_per_file=9)
    assert result.partition.manifest.counts["rows"] == 120 and max(loaded) <= 9
    rows, back = read_published(tmp_path)
    group = zarr.open_group(partition(tmp_path) / "_zarr", mode="r")
    np.testing.assert_array_equal(group["emb"][:], back)  # type: ignore[index]
    assert pq.read_table(partition(tmp_path) / "_zarr" / "clips.parquet")["clip_id"].equals(rows["clip_id"])
    index, ids = load_faiss_index(result.partition)
    assert index.ntotal == 120 and index.nlist == 3
    index.nprobe = 3
    _, found = index.search(back / np.linalg.norm(back, axis=1, keepdims=True), 1)
    assert ids.take(pa.array(found[:, 0]))["clip_id"].equals(rows["clip_id"])


def test_the_training_sample_is_seeded_in_row_order_and_every_row_when_small() -> None:
    emb = np.arange(40, dtype=np.float32).reshape(10, 4) + 1
    files = [(0, 3), (3, 7), (7, 10)]
    source = _extras.FileRows(
        [b - a for a, b in files],
        4,
        "float32",
        lambda k: Rows(pa.table({"clip_id": [str(i) for i in range(*files[k])]}), emb[slice(*files[k])]),
    )
    np.testing.assert_array_equal(source.sample(10, 0), _extras.unit_rows(emb))
    picked = source.sample(4, 0)
    again = source.sample(4, 0)
    np.testing.assert_array_equal(picked, again)
    positions = [int(np.flatnonzero((_extras.unit_rows(emb) == row).all(axis=1))[0]) for row in picked]
    assert len(set(positions)) == 4 and positions == sorted(positions)


def test_works_on_an_fsspec_filesystem() -> None:
    url = f"memory://aam-tests-{uuid.uuid4().hex}/published"
    try:
        _publish(url, video_ids(2), faiss_index="flat", zarr_copy=True)
        result = _publish(url, video_ids(3), mode="append", rows_per_file=3)
        assert result.files_added == ("part-00001.parquet",)
        assert not _publish(url, video_ids(3), mode="append").changed
        rows, emb = read_published(url, verify=True)
        assert rows.num_rows == 9
        np.testing.assert_array_equal(emb, clips_and_emb(video_ids(3))[1])
        index, _ = load_faiss_index(published_partitions(url)[0])
        assert index.ntotal == 9
    finally:
        fs, path = fsspec.core.url_to_fs(url)
        fs.rm(path.rsplit("/", 1)[0], recursive=True)
