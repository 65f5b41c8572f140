"""One part of the latent cache: validating a work unit's output, writing it, deciding whether to trust it."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pydantic
import zarr

from stores._cache_types import (
    CLIPS_SCHEMA,
    ERRORS_SCHEMA,
    SCHEMA_VERSION,
    STATIC_CLIPS_SCHEMA,
    VIDEOS_SCHEMA,
    CacheAttrs,
    PartData,
)
from stores._fs import StoreRoot
from stores.errors import SchemaVersionError, StoreError

MARKER = "_complete.json"
TMP_PREFIX = ".tmp-"
TABLE_FILES = {
    "videos": "videos.parquet",
    "clips": "clips.parquet",
    "static_clips": "static.parquet",
    "errors": "errors.parquet",
}
PART_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
MAX_CHUNK_ROWS = 4096
CHUNK_BYTES = 8 << 20  # about 8 MiB per compressed block before compression


class PartCounts(pydantic.BaseModel, frozen=True):
    motion_clips: int
    static_clips: int
    videos: int
    errors: int


class PartMarker(pydantic.BaseModel, frozen=True):
    """`_complete.json`: written last; with matching shapes and file sizes it makes a part trusted."""

    schema_version: int
    part_id: str
    counts: PartCounts
    written_at: str
    written_at_ns: int
    files: dict[str, int]  # every file of the part but the marker: relative path -> size in bytes


class UntrustedPartError(Exception):
    """Internal: a part folder that readers must ignore; the message says why."""


class PartInProgressError(UntrustedPartError):
    """Internal: a part without its marker yet: being written, or its writer died."""


def check_part_id(part_id: str) -> None:
    if not PART_ID.fullmatch(part_id):
        raise StoreError(
            f"part id {part_id!r} is not a valid folder name; use letters, digits, '-' and '_' "
            "(LatentCache.part_id_for(video_ids) makes one)"
        )


# --- validating what a work unit produced --------------------------------------------------------------


def prepare(data: PartData, attrs: CacheAttrs) -> PartData:
    """Typed, checked and sorted copy of `data`, embeddings cast to the store's dtype."""
    videos = _videos(data.videos)
    status = dict(zip(videos["video_id"].to_pylist(), videos["status"].to_pylist(), strict=True))
    ok_ids = {v for v, s in status.items() if s == "ok"}

    clips = _conform(data.clips, CLIPS_SCHEMA, "clips")
    _check_belongs(clips, ok_ids, "clips")
    motion = _embeddings(data.motion, (clips.num_rows, attrs.dim), attrs, "motion", clips)
    tokens = None
    if attrs.tokens is not None:
        if data.tokens is None:
            raise StoreError("this store keeps temporal tokens (attrs.tokens is set) but the part has none")
        tokens = _embeddings(data.tokens, (clips.num_rows, *attrs.tokens), attrs, "tokens", clips)
    elif data.tokens is not None:
        raise StoreError("the part has temporal tokens but the store keeps none; create it with attrs.tokens")
    clips, order = _sorted(clips, "clip_index")

    static_clips = _conform(data.static_clips, STATIC_CLIPS_SCHEMA, "static_clips")
    _check_belongs(static_clips, ok_ids, "static_clips")
    static = _embeddings(data.static, (static_clips.num_rows, attrs.dim), attrs, "static", static_clips)
    static_clips, static_order = _sorted(static_clips, "static_index")
    errors = _conform(data.errors, ERRORS_SCHEMA, "errors", nullable={"path", "reason"})
    failed = {v for v, s in status.items() if s == "error"}
    if set(errors["video_id"].to_pylist()) != failed or errors.num_rows != len(failed):
        raise StoreError(
            "errors must hold exactly one row per video whose status is 'error' "
            f"(errors: {sorted(errors['video_id'].to_pylist())[:5]}, status error: {sorted(failed)[:5]})"
        )
    return PartData(
        videos=videos,
        clips=clips,
        motion=motion[order],
        static_clips=static_clips,
        static=static[static_order],
        errors=errors,
        tokens=None if tokens is None else tokens[order],
    )


def _conform(table: pa.Table, schema: pa.Schema, name: str, nullable: set[str] | None = None) -> pa.Table:
    """Cast the required columns of `table` to `schema`; extra columns follow unchanged."""
    twice = sorted({n for n in table.column_names if table.column_names.count(n) > 1})
    if twice:
        raise StoreError(f"{name} table has columns {twice} more than once; keep one of each")
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise StoreError(f"{name} table lacks columns {missing}; it needs {schema.names}")
    columns, fields = [], []
    for f in schema:
        column = table.column(f.name)
        try:
            column = column.cast(f.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise StoreError(f"{name}.{f.name} has type {column.type}, expected {f.type}: {e}") from e
        if f.name not in (nullable or set()) and column.null_count:
            raise StoreError(f"{name}.{f.name} has {column.null_count} null values; fill them")
        columns.append(column)
        fields.append(f)
    for extra in table.schema:
        if extra.name not in schema.names:
            columns.append(table.column(extra.name))
            fields.append(extra)
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def _videos(table: pa.Table) -> pa.Table:
    videos = _conform(
        table, VIDEOS_SCHEMA, "videos", nullable={"path", "size", "mtime_ns", "num_frames", "fps"}
    )
    ids = videos["video_id"].to_pylist()
    if len(set(ids)) != len(ids):
        raise StoreError("videos has duplicate video_id values; one row per input video")
    for column, allowed in (("status", {"ok", "error"}), ("kind", {"video", "image"})):
        bad = set(videos[column].to_pylist()) - allowed
        if bad:
            raise StoreError(f"videos.{column} holds {sorted(bad)}; allowed: {sorted(allowed)}")
    ok = pc.equal(videos["status"], "ok")
    for column in ("size", "mtime_ns"):
        if videos.filter(ok)[column].null_count:
            raise StoreError(f"videos.{column} is null for an ok video; record each file's fingerprint")
    return videos


def _sorted(table: pa.Table, index_column: str) -> tuple[pa.Table, np.ndarray]:
    order = pc.sort_indices(table, [("video_id", "ascending"), (index_column, "ascending")]).to_numpy()
    table = table.take(order)
    ids = table["video_id"].to_numpy(zero_copy_only=False)
    index = table[index_column].to_numpy()
    dup = (ids[1:] == ids[:-1]) & (index[1:] == index[:-1])
    if dup.any():
        row = int(np.flatnonzero(dup)[0]) + 1
        raise StoreError(f"({ids[row]!r}, {index_column}={index[row]}) appears twice; indices must be unique")
    return table, order


def _check_belongs(table: pa.Table, ok_ids: set[str], name: str) -> None:
    stray = set(table["video_id"].to_pylist()) - ok_ids
    if stray:
        raise StoreError(f"{name} has rows of videos that are not 'ok' in videos: {sorted(stray)[:5]}")


def _embeddings(
    array: np.ndarray, shape: tuple[int, ...], attrs: CacheAttrs, name: str, rows: pa.Table
) -> np.ndarray:
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.floating):
        kind = getattr(array, "dtype", type(array).__name__)
        raise StoreError(f"{name} must be a floating-point numpy array, got {kind}")
    if array.shape != shape:
        raise StoreError(f"{name} has shape {array.shape}, expected {shape} (one row per table row)")
    with np.errstate(over="ignore"):  # overflow to float16 inf is reported below, with the video
        cast = np.ascontiguousarray(array, dtype=attrs.dtype)
    finite = np.isfinite(cast.reshape(shape[0], int(np.prod(shape[1:])))).all(axis=1)
    if not finite.all():
        video_id = rows["video_id"][int(np.flatnonzero(~finite)[0])].as_py()
        raise StoreError(
            f"{name} of video {video_id!r} is not finite as {attrs.dtype} (NaN, inf or overflow); "
            "check the encoder output, or use dtype float32"
        )
    return cast


# --- writing -------------------------------------------------------------------------------------------


def write_files(root: StoreRoot, folder: str, part_id: str, data: PartData) -> None:
    """Write arrays and side tables into `folder`, then the marker last."""
    group = zarr.create_group(root.zarr_store(folder, read_only=False), attributes={"part_id": part_id})
    _write_array(group, "motion", data.motion)
    _write_array(group, "static", data.static)
    if data.tokens is not None:
        _write_array(group, "tokens", data.tokens)
    tables = {"videos": data.videos, "clips": data.clips, "static_clips": data.static_clips}
    tables["errors"] = data.errors
    for key, table in tables.items():
        root.write_table(root.under(folder, TABLE_FILES[key]), table)
    now = time.time_ns()
    marker = PartMarker(
        schema_version=SCHEMA_VERSION,
        part_id=part_id,
        counts=PartCounts(
            motion_clips=len(data.motion),
            static_clips=len(data.static),
            videos=data.videos.num_rows,
            errors=data.errors.num_rows,
        ),
        written_at=datetime.fromtimestamp(now / 1e9, UTC).isoformat(),
        written_at_ns=now,
        files=root.file_sizes(folder),
    )
    root.write_json(root.under(folder, MARKER), marker.model_dump(mode="json"))


def _write_array(group: zarr.Group, name: str, data: np.ndarray) -> None:
    row_bytes = max(1, int(np.prod(data.shape[1:])) * data.dtype.itemsize)
    rows = max(1, min(MAX_CHUNK_ROWS, CHUNK_BYTES // row_bytes, len(data)))
    array = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=(rows, *data.shape[1:]))
    if len(data):
        array[:] = data


# --- trusting ------------------------------------------------------------------------------------------


def trusted_marker(root: StoreRoot, folder: str, part_id: str, attrs: CacheAttrs) -> PartMarker:
    """The part's marker if every check passes; UntrustedPartError (saying why) otherwise."""
    if not PART_ID.fullmatch(part_id):
        raise UntrustedPartError("not a part folder name")
    marker_path = root.under(folder, MARKER)
    if not root.exists(marker_path):
        raise PartInProgressError("no completion marker (being written, or its writer died)")
    try:
        record = root.read_json(marker_path)
    except (ValueError, OSError) as e:
        raise UntrustedPartError(f"unreadable marker: {e}") from e
    version = record.get("schema_version") if isinstance(record, dict) else None
    if isinstance(version, int) and version > SCHEMA_VERSION:
        # Neither trusted nor damaged: a newer aam-pipeline wrote it. Refuse rather than skip (its
        # videos would look missing) or clean it up (that would delete good work).
        raise SchemaVersionError(
            f"part {part_id} at {folder} was written by a newer aam-pipeline (schema_version "
            f"{version}, this one reads up to {SCHEMA_VERSION}); upgrade aam-pipeline"
        )
    try:
        marker = PartMarker.model_validate(record)
    except ValueError as e:  # pydantic.ValidationError is a ValueError
        raise UntrustedPartError(f"unreadable marker: {e}") from e
    if marker.part_id != part_id:
        raise UntrustedPartError(f"marker names part {marker.part_id!r}")
    sizes = root.file_sizes(folder)
    for rel, size in marker.files.items():
        if sizes.get(rel) != size:
            raise UntrustedPartError(f"{rel} is missing or has another size than when the part completed")
    try:
        _check_shapes(root, folder, marker, attrs)
    except UntrustedPartError:
        raise
    except Exception as e:  # a damaged part can fail in any way in zarr or pyarrow: not trusted
        raise UntrustedPartError(f"unreadable: {type(e).__name__}: {e}") from e
    return marker


def _check_shapes(root: StoreRoot, folder: str, marker: PartMarker, attrs: CacheAttrs) -> None:
    counts = marker.counts
    group = zarr.open_group(root.zarr_store(folder, read_only=True), mode="r")
    expected: dict[str, tuple[int, ...]] = {
        "motion": (counts.motion_clips, attrs.dim),
        "static": (counts.static_clips, attrs.dim),
    }
    if attrs.tokens is not None:
        expected["tokens"] = (counts.motion_clips, *attrs.tokens)
    for name, shape in expected.items():
        array = group[name]
        if not isinstance(array, zarr.Array):
            raise UntrustedPartError(f"{name} is not an array")
        if array.shape != shape or array.dtype != np.dtype(attrs.dtype):
            raise UntrustedPartError(
                f"{name} is {array.shape} {array.dtype}, marker says {shape} {attrs.dtype}"
            )
    rows = {
        "videos": counts.videos,
        "clips": counts.motion_clips,
        "static_clips": counts.static_clips,
        "errors": counts.errors,
    }
    for key, expected_rows in rows.items():
        found = root.parquet_rows(root.under(folder, TABLE_FILES[key]))
        if found != expected_rows:
            raise UntrustedPartError(f"{TABLE_FILES[key]} has {found} rows, marker says {expected_rows}")


def open_array(root: StoreRoot, folder: str, name: str) -> zarr.Array:
    return zarr.open_array(root.zarr_store(folder, read_only=True), path=name, mode="r")
