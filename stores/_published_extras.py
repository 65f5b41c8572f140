"""Optional outputs beside a partition: a faiss index for cosine search and a Zarr copy of `emb`.

Both are derived from the partition's data files, in manifest file order, and rebuilt whole whenever the
partition changes; the manifest lists their files with sizes and checksums.
"""

from __future__ import annotations

import hashlib
import math
import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zarr

from stores._fs import StoreRoot
from stores._published_rows import Rows
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
MAX_CHUNK_ROWS = 4096
CHUNK_BYTES = 8 << 20


def unit_rows(emb: np.ndarray) -> np.ndarray:
    """float32 copy of `emb` (N, D) with each row scaled to unit L2 norm (zero rows stay zero)."""
    x = np.array(emb, dtype=np.float32, copy=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, norms, out=x, where=norms > 0)
    return x


def ivf_lists(rows: int) -> int:
    """nlist of an IVF index over `rows` vectors: about sqrt(N), with enough points to train each list."""
    return max(1, min(round(math.sqrt(rows)), rows // MIN_POINTS_PER_CENTROID))


def build_index(emb: np.ndarray, kind: IndexKind) -> tuple[Any, int | None, int | None]:
    """A faiss index over the unit rows of `emb` (inner product = cosine); returns (index, nlist, nprobe)."""
    import faiss  # heavy; only publications that ask for an index pay for it

    x = unit_rows(emb)  # (N, D)
    dim = x.shape[1]
    if kind == "flat":
        flat = faiss.IndexFlatIP(dim)
        flat.add(x)
        return flat, None, None
    nlist = ivf_lists(len(x))
    quantizer = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.train(x)
    ivf.add(x)
    ivf.nprobe = min(nlist, max(8, nlist // 16))  # saved in the index; readers may raise it
    return ivf, nlist, int(ivf.nprobe)


def write_index(root: StoreRoot, folder: str, rows: Rows, kind: IndexKind) -> IndexEntry:
    """`_index/index.faiss` + `_index/index_ids.parquet` (row -> clip_id) under `folder`."""
    import faiss

    index, nlist, nprobe = build_index(rows.emb, kind)
    index_bytes = bytes(faiss.serialize_index(index).tobytes())
    ids = pa.table(
        {
            "row": pa.array(np.arange(len(rows), dtype=np.int64)),
            "clip_id": rows.table["clip_id"],
        }
    )
    entries = [
        write_bytes(root, folder, f"{INDEX_DIR}/{INDEX_FILE}", index_bytes),
        write_bytes(root, folder, f"{INDEX_DIR}/{INDEX_IDS_FILE}", parquet_bytes(ids)),
    ]
    return IndexEntry(kind=kind, rows=len(rows), nlist=nlist, nprobe=nprobe, files=entries)


def read_index(data: bytes) -> Any:
    import faiss

    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))


def write_zarr_copy(root: StoreRoot, folder: str, rows: Rows, attrs: dict[str, Any]) -> ZarrEntry:
    """`_zarr/`: a Zarr v3 group with `emb` (N, D) in the stored dtype + `clips.parquet`, rows aligned."""
    path = root.under(folder, ZARR_DIR)
    group = zarr.create_group(
        root.zarr_store(path, read_only=False),
        attributes={"kind": "aam-pipeline/published-zarr", "schema_version": SCHEMA_VERSION, **attrs},
    )
    emb = rows.emb
    row_bytes = max(1, emb.shape[1] * emb.dtype.itemsize)
    chunk_rows = max(1, min(MAX_CHUNK_ROWS, CHUNK_BYTES // row_bytes, len(emb)))
    array = group.create_array("emb", shape=emb.shape, dtype=emb.dtype, chunks=(chunk_rows, emb.shape[1]))
    if len(emb):
        array[:] = emb
    write_bytes(root, folder, f"{ZARR_DIR}/{ZARR_CLIPS_FILE}", parquet_bytes(rows.table))
    return ZarrEntry(rows=len(rows), files=tree_entries(root, folder, ZARR_DIR))


# --- bytes ---------------------------------------------------------------------------------------------


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return bytes(sink.getvalue().to_pybytes())


def write_bytes(root: StoreRoot, folder: str, name: str, data: bytes) -> FileEntry:
    """Write `data` at `folder`/`name` ('/'-separated) and describe it."""
    path = root.under(folder, *name.split("/"))
    if root.local:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    else:  # object stores have no folders to make
        root.fs.pipe_file(path, data)
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
