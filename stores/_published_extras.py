"""Optional outputs beside a partition: a faiss index for cosine search and a Zarr copy of `emb`.

Both are derived from the partition's data files, in manifest file order, read one file at a time, and
rebuilt whole whenever the partition changes; the manifest lists their files with sizes and checksums.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zarr

from stores._fs import StoreRoot
from stores._published_rows import Rows, clip_schema
from stores._published_types import (
    INDEX_DIR,
    INDEX_FILE,
    INDEX_IDS_FILE,
    SCHEMA_VERSION,
    ZARR_CLIPS_FILE,
    ZARR_DIR,
    FileEntry,
    IndexEntry,
    IndexKind,
    ZarrEntry,
)

MIN_POINTS_PER_CENTROID = 39  # below this faiss k-means warns and its centroids are poor
# faiss k-means samples this many points per centroid when given more; the IVF index is trained on a
# seeded sample of this size read from the files (every row when there are no more), so the rows need
# not be in memory at once.
MAX_POINTS_PER_CENTROID = 256
TRAINING_SAMPLE_SEED = 0
EMPTY_IDS = pa.array([], pa.string())
MAX_CHUNK_ROWS = 4096
CHUNK_BYTES = 8 << 20


@dataclass(frozen=True)
class FileRows:
    """A partition's rows as its data files hold them, in manifest order, read one file at a time."""

    counts: list[int]  # rows of each file
    dim: int
    dtype: str  # of the stored embeddings
    read: Callable[[int], Rows]  # the rows of file k, embeddings in the stored dtype

    @property
    def rows(self) -> int:
        return sum(self.counts)

    def __iter__(self) -> Iterator[Rows]:
        for k in range(len(self.counts)):
            yield self.read(k)

    def sample(self, size: int, seed: int) -> np.ndarray:
        """(min(size, rows), D) float32 unit rows: every row in order, or a seeded sample in row order."""
        total = self.rows
        if total <= size:
            return np.concatenate([unit_rows(r.emb) for r in self] or [np.zeros((0, self.dim), np.float32)])
        picks = np.sort(np.random.default_rng(seed).choice(total, size, replace=False))
        starts = np.concatenate([[0], np.cumsum(self.counts)])
        chunks = []
        for k, rows in enumerate(self):
            inside = picks[(picks >= starts[k]) & (picks < starts[k + 1])] - starts[k]
            if len(inside):
                chunks.append(unit_rows(rows.emb[inside]))
        return np.concatenate(chunks)


def unit_rows(emb: np.ndarray) -> np.ndarray:
    """float32 copy of `emb` (N, D) with each row scaled to unit L2 norm (zero rows stay zero)."""
    x = np.array(emb, dtype=np.float32, copy=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, norms, out=x, where=norms > 0)
    return x


def ivf_lists(rows: int) -> int:
    """nlist of an IVF index over `rows` vectors: about sqrt(N), with enough points to train each list."""
    return max(1, min(round(math.sqrt(rows)), rows // MIN_POINTS_PER_CENTROID))


def build_index(source: FileRows, kind: IndexKind) -> tuple[Any, pa.Array, int | None, int | None]:
    """A faiss index over the unit rows of `source` (inner product = cosine), added one file at a time;
    returns (index, the clip_id of each index row, nlist, nprobe)."""
    import faiss  # heavy; only publications that ask for an index pay for it

    index: Any
    if kind == "flat":
        index = faiss.IndexFlatIP(source.dim)
        nlist = None
    else:
        nlist = ivf_lists(source.rows)
        quantizer = faiss.IndexFlatIP(source.dim)
        index = faiss.IndexIVFFlat(quantizer, source.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(source.sample(MAX_POINTS_PER_CENTROID * nlist, TRAINING_SAMPLE_SEED))
    clip_ids = [EMPTY_IDS]
    for rows in source:  # the same pass reads the rows' clip ids
        if len(rows):
            index.add(unit_rows(rows.emb))
            clip_ids.append(rows.table["clip_id"].combine_chunks())
    ids = pa.concat_arrays(clip_ids)
    if nlist is None:
        return index, ids, None, None
    index.nprobe = min(nlist, max(8, nlist // 16))  # saved in the index; readers may raise it
    return index, ids, nlist, int(index.nprobe)


def write_index(root: StoreRoot, folder: str, source: FileRows, kind: IndexKind) -> IndexEntry:
    """`_index/index.faiss` + `_index/index_ids.parquet` (row -> clip_id) under `folder`."""
    import faiss

    index, clip_ids, nlist, nprobe = build_index(source, kind)
    serialized: Any = faiss.serialize_index(index)  # a uint8 array
    index_bytes = memoryview(serialized)  # written and hashed without a copy
    del index
    ids = pa.table({"row": pa.array(np.arange(source.rows, dtype=np.int64)), "clip_id": clip_ids})
    entries = [
        write_bytes(root, folder, f"{INDEX_DIR}/{INDEX_FILE}", index_bytes),
        write_bytes(root, folder, f"{INDEX_DIR}/{INDEX_IDS_FILE}", parquet_bytes(ids)),
    ]
    return IndexEntry(kind=kind, rows=source.rows, nlist=nlist, nprobe=nprobe, files=entries)


def read_index(data: bytes) -> Any:
    import faiss

    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))


def write_zarr_copy(root: StoreRoot, folder: str, source: FileRows, attrs: dict[str, Any]) -> ZarrEntry:
    """`_zarr/`: a Zarr v3 group with `emb` (N, D) in the stored dtype + `clips.parquet`, rows aligned;
    written one data file at a time."""
    path = root.under(folder, ZARR_DIR)
    group = zarr.create_group(
        root.zarr_store(path, read_only=False),
        attributes={"kind": "aam-pipeline/published-zarr", "schema_version": SCHEMA_VERSION, **attrs},
    )
    total, dim, dtype = source.rows, source.dim, source.dtype
    row_bytes = max(1, dim * np.dtype(dtype).itemsize)
    chunk_rows = max(1, min(MAX_CHUNK_ROWS, CHUNK_BYTES // row_bytes, total))
    array = group.create_array("emb", shape=(total, dim), dtype=dtype, chunks=(chunk_rows, dim))
    tables, start = [], 0
    for rows in source:
        if len(rows):
            array[start : start + len(rows)] = rows.emb
        start += len(rows)
        tables.append(rows.table)
    clips = pa.concat_tables(tables) if tables else clip_schema().empty_table()
    write_bytes(root, folder, f"{ZARR_DIR}/{ZARR_CLIPS_FILE}", parquet_bytes(clips))
    return ZarrEntry(rows=total, files=tree_entries(root, folder, ZARR_DIR))


# --- bytes ---------------------------------------------------------------------------------------------


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return bytes(sink.getvalue().to_pybytes())


def write_bytes(root: StoreRoot, folder: str, name: str, data: bytes | memoryview) -> FileEntry:
    """Write `data` at `folder`/`name` ('/'-separated) and describe it."""
    path = root.under(folder, *name.split("/"))
    if root.local:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    else:  # object stores have no folders to make
        root.fs.pipe_file(path, bytes(data))
    return FileEntry(name=name, size=len(data), sha256=hashlib.sha256(data).hexdigest())


def tree_entries(root: StoreRoot, folder: str, subfolder: str) -> list[FileEntry]:
    """Every file under `folder`/`subfolder`, sorted by name, with size and checksum."""
    base = root.under(folder, subfolder)
    entries = []
    for rel, size in sorted(root.file_sizes(base).items()):
        data = root.fs.cat_file(root.under(base, *rel.split("/")))
        entries.append(
            FileEntry(name=f"{subfolder}/{rel}", size=size, sha256=hashlib.sha256(data).hexdigest())
        )
    return entries
