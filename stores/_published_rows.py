"""Published rows: checking what a caller hands in, ordering it, and encoding it as Parquet files."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stores._published_types import Dtype, Normalisation, forbidden_word, looks_like_location
from stores.errors import StoreError

INPUT_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("clip_index", pa.int32()),
        ("t_start_s", pa.float32()),
        ("t_end_s", pa.float32()),
    ]
)
EMB_COLUMN = "emb"
EMB_LEAF = "emb.list.element"  # the Parquet column path of the embedding values
NORM_TOLERANCE = 1e-3
# DuckDB 2.0 cannot decode BYTE_STREAM_SPLIT on float16 (a FIXED_LEN_BYTE_ARRAY column in Parquet), so
# float16 embeddings are written PLAIN; float32 ones get BYTE_STREAM_SPLIT (zstd compresses it better).
EmbEncoding = Literal["BYTE_STREAM_SPLIT", "PLAIN"]
EMB_ENCODING: dict[str, EmbEncoding] = {"float32": "BYTE_STREAM_SPLIT", "float16": "PLAIN"}


def emb_type(dtype: Dtype, dim: int) -> pa.DataType:
    value = pa.float32() if dtype == "float32" else pa.float16()
    return pa.list_(pa.field("element", value, nullable=False), dim)


def clip_schema() -> pa.Schema:
    """The columns of a published row before `emb`, all non-null."""
    fields = [pa.field("clip_id", pa.string(), nullable=False)]
    fields += [pa.field(f.name, f.type, nullable=False) for f in INPUT_SCHEMA]
    return pa.schema(fields)


def data_schema(dtype: Dtype, dim: int, metadata: dict[str, str]) -> pa.Schema:
    fields = [*clip_schema(), pa.field(EMB_COLUMN, emb_type(dtype, dim), nullable=False)]
    return pa.schema(fields, metadata=metadata)


@dataclass(frozen=True)
class Rows:
    """Published rows sorted by (video_id, clip_index); `emb` (N, D) is in the stored dtype."""

    table: pa.Table  # clip_schema()
    emb: np.ndarray

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def take(self, indices: np.ndarray) -> Rows:
        return Rows(self.table.take(pa.array(indices, pa.int64())), self.emb[indices])

    def slice(self, start: int, stop: int) -> Rows:
        return Rows(self.table.slice(start, stop - start), self.emb[start:stop])

    @property
    def video_ids(self) -> list[str]:
        ids: list[str] = self.table["video_id"].to_pylist()
        return ids

    def content_sha256(self) -> str:
        """Checksum of the rows and embeddings themselves, whatever the file encoding."""
        digest = hashlib.sha256()
        digest.update("\n".join(self.table["clip_id"].to_pylist()).encode())
        for name in ("t_start_s", "t_end_s"):
            digest.update(b"\0" + self.table[name].to_numpy().tobytes())
        digest.update(b"\0" + np.ascontiguousarray(self.emb).tobytes())
        return digest.hexdigest()


# Embeddings of the caller's input rows `positions` (ascending, int64) as a floating (len, D) array.
EmbFetch = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class LazyRows:
    """Published rows sorted by (video_id, clip_index) whose embeddings are fetched only when a file
    needs them: row i is the caller's input row `source[i]`. `load()` checks and casts them (as
    `prepare` does for an array in memory), so memory follows the rows loaded, not the publication."""

    table: pa.Table  # clip_schema()
    source: np.ndarray  # (N,) int64
    fetch: EmbFetch
    dim: int
    dtype: Dtype
    normalisation: Normalisation

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def take(self, indices: np.ndarray) -> LazyRows:
        table = self.table.take(pa.array(indices, pa.int64()))
        return LazyRows(table, self.source[indices], self.fetch, self.dim, self.dtype, self.normalisation)

    def slice(self, start: int, stop: int) -> LazyRows:
        table = self.table.slice(start, stop - start)
        return LazyRows(table, self.source[start:stop], self.fetch, self.dim, self.dtype, self.normalisation)

    @property
    def video_ids(self) -> list[str]:
        ids: list[str] = self.table["video_id"].to_pylist()
        return ids

    def load(self) -> Rows:
        """These rows with their embeddings (stored dtype), fetched in ascending input order."""
        order = np.argsort(self.source, kind="stable")
        fetched = self.fetch(self.source[order])
        if getattr(fetched, "shape", None) != (len(self), self.dim):
            raise StoreError(
                f"the embedding source gave shape {getattr(fetched, 'shape', None)} for {len(self)} rows "
                f"of D = {self.dim}; it must return one row per requested position"
            )
        cast = _embeddings(fetched, len(self), self.dtype, self.normalisation)
        emb = np.empty_like(cast)
        emb[order] = cast
        return Rows(self.table, emb)


def concat(parts: list[Rows], dim: int, dtype: Dtype) -> Rows:
    if not parts:
        return Rows(clip_schema().empty_table(), np.zeros((0, dim), dtype))
    table = pa.concat_tables([p.table for p in parts]).combine_chunks()
    return Rows(table, np.concatenate([p.emb for p in parts]))


# --- what a caller hands in ----------------------------------------------------------------------------


def prepare(clips: pa.Table, emb: np.ndarray, dtype: Dtype, normalisation: Normalisation) -> LazyRows:
    """Checked, typed, sorted rows of an array in memory; StoreError says what is wrong with the input
    and what to do. Every embedding is checked here, before anything is written."""
    if not isinstance(clips, pa.Table):
        raise StoreError(f"clips must be a pyarrow Table, got {type(clips).__name__}")
    _check_columns(clips)
    _embeddings(emb, clips.num_rows, dtype, normalisation)
    return prepare_lazy(clips, lambda positions: emb[positions], emb.shape[1], dtype, normalisation)


def prepare_lazy(
    clips: pa.Table, fetch: EmbFetch, dim: int, dtype: Dtype, normalisation: Normalisation
) -> LazyRows:
    """Checked, typed, sorted rows whose embeddings `fetch` gives on demand (checked when loaded)."""
    if not isinstance(clips, pa.Table):
        raise StoreError(f"clips must be a pyarrow Table, got {type(clips).__name__}")
    if dim < 1:
        raise StoreError(f"embedding dimension must be at least 1, got {dim}")
    if dtype not in ("float32", "float16"):
        raise StoreError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    _check_columns(clips)
    table = _typed(clips)
    _check_values(table)
    order = pc.sort_indices(table, [("video_id", "ascending"), ("clip_index", "ascending")]).to_numpy()
    table = table.take(order)
    _check_unique(table)
    clip_id = pc.binary_join_element_wise(table["video_id"], pc.cast(table["clip_index"], pa.string()), "#")
    table = pa.Table.from_arrays([clip_id, *table.columns], schema=clip_schema()).combine_chunks()
    return LazyRows(table, order.astype(np.int64), fetch, dim, dtype, normalisation)


def _check_columns(clips: pa.Table) -> None:
    names = clips.column_names
    for name in names:
        if names.count(name) > 1:
            raise StoreError(f"clips has column {name!r} more than once; keep one")
        if name in INPUT_SCHEMA.names:
            continue
        word = forbidden_word(name)
        if word is not None:
            raise StoreError(
                f"clips column {name!r} contains {word!r}: private attributes, raw or static-clip "
                "embeddings and source locations are never published; drop the column"
            )
        raise StoreError(
            f"clips column {name!r} is not part of a published row; pass only "
            f"{', '.join(INPUT_SCHEMA.names)} (clip_id is made from video_id and clip_index)"
        )
    missing = [n for n in INPUT_SCHEMA.names if n not in names]
    if missing:
        raise StoreError(f"clips lacks columns {missing}; it needs {', '.join(INPUT_SCHEMA.names)}")


def _typed(clips: pa.Table) -> pa.Table:
    columns = []
    for f in INPUT_SCHEMA:
        column = clips[f.name]
        try:
            column = column.cast(f.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise StoreError(f"clips.{f.name} has type {column.type}, expected {f.type}: {e}") from e
        if column.null_count:
            raise StoreError(f"clips.{f.name} has {column.null_count} null values; every clip needs one")
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=INPUT_SCHEMA)


def _check_values(table: pa.Table) -> None:
    for video_id in pc.unique(table["video_id"]).to_pylist():
        if not video_id.strip() or looks_like_location(video_id):
            raise StoreError(
                f"video_id {video_id!r} is empty or a file location; published ids must not name files "
                "(give the videos stable ids in the manifest)"
            )
    if table.num_rows and pc.min(table["clip_index"]).as_py() < 0:
        raise StoreError("clips.clip_index holds negative values; clip indices count from 0")
    start, end = table["t_start_s"].to_numpy(), table["t_end_s"].to_numpy()
    if not (np.isfinite(start).all() and np.isfinite(end).all() and (end >= start).all()):
        raise StoreError("clips t_start_s/t_end_s must be finite with t_end_s >= t_start_s")


def _check_unique(table: pa.Table) -> None:
    ids = table["video_id"].to_numpy(zero_copy_only=False)
    index = table["clip_index"].to_numpy()
    dup = (ids[1:] == ids[:-1]) & (index[1:] == index[:-1])
    if dup.any():
        row = int(np.flatnonzero(dup)[0]) + 1
        raise StoreError(f"clip ({ids[row]!r}, clip_index={index[row]}) appears twice; one row per clip")


def _embeddings(emb: np.ndarray, rows: int, dtype: Dtype, normalisation: Normalisation) -> np.ndarray:
    if not isinstance(emb, np.ndarray) or not np.issubdtype(emb.dtype, np.floating):
        raise StoreError(f"emb must be a floating-point numpy array, got {getattr(emb, 'dtype', type(emb))}")
    if emb.ndim != 2 or emb.shape[0] != rows or emb.shape[1] < 1:
        raise StoreError(f"emb has shape {emb.shape}, expected ({rows}, D): one row per clips row")
    if dtype not in ("float32", "float16"):
        raise StoreError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    with np.errstate(over="ignore"):  # overflow to float16 inf is reported just below
        cast = np.ascontiguousarray(emb, dtype=dtype)
    if not np.isfinite(cast).all():
        raise StoreError(f"emb has NaN or inf values as {dtype}; check the adapter output (or use float32)")
    if normalisation == "l2" and rows:
        norms = np.linalg.norm(emb.astype(np.float32), axis=1)
        worst = float(np.abs(norms - 1).max())
        if worst > NORM_TOLERANCE:
            raise StoreError(
                f"normalisation 'l2' was declared but a row has norm {1 + worst:.4g}; normalise the "
                "rows (x / ||x||) or declare normalisation 'none'"
            )
    return cast


# --- files ---------------------------------------------------------------------------------------------


def file_slices(rows: Rows | LazyRows, rows_per_file: int) -> list[tuple[int, int]]:
    """[start, stop) row ranges of the data files: whole videos, at most rows_per_file rows unless one
    video alone is longer, so a reader never finds half a video in a file."""
    ids = rows.table["video_id"].to_numpy(zero_copy_only=False)
    video_ends = [*(np.flatnonzero(ids[1:] != ids[:-1]) + 1).tolist(), len(ids)] if len(ids) else []
    slices: list[tuple[int, int]] = []
    begin = last_end = 0
    for end in video_ends:
        if end - begin > rows_per_file and last_end > begin:
            slices.append((begin, last_end))
            begin = last_end
        last_end = end
    if last_end > begin:
        slices.append((begin, last_end))
    return slices


def encode(rows: Rows, schema: pa.Schema, dtype: Dtype, row_group_rows: int) -> bytes:
    """One Parquet file's bytes: zstd, fixed row groups, no timestamps, so equal rows give equal bytes."""
    dim = rows.emb.shape[1]
    values = pa.array(rows.emb.reshape(-1), type=emb_type(dtype, dim).value_type)
    emb = pa.FixedSizeListArray.from_arrays(values, type=emb_type(dtype, dim))
    table = pa.Table.from_arrays([*rows.table.columns, emb], schema=schema)
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        compression="zstd",
        row_group_size=row_group_rows,
        # A dictionary-encoded column silently ignores use_byte_stream_split: emb must be left out.
        use_dictionary=["video_id"],
        use_byte_stream_split=[EMB_LEAF] if EMB_ENCODING[dtype] == "BYTE_STREAM_SPLIT" else False,
        write_statistics=[n for n in schema.names if n != EMB_COLUMN],
    )
    return bytes(sink.getvalue().to_pybytes())


def decode(table: pa.Table, dim: int) -> Rows:
    """Rows from a read data file (any column order); `emb` keeps the stored dtype."""
    emb = table[EMB_COLUMN].combine_chunks()
    values = emb.flatten().to_numpy(zero_copy_only=False)
    return Rows(table.select(clip_schema().names).cast(clip_schema()), values.reshape(-1, dim))
