"""Published shards (design §3.3): the anonymized clip embeddings that data teams read. numpy in, files out.

```
PUBLISHED/dataset=<name>/encoder=<slug>/adapter=<version>/
    part-00000.parquet …   whole videos per file, rows sorted by (video_id, clip_index)
    _index/                optional faiss index: index.faiss + index_ids.parquet (row -> clip_id)
    _zarr/                 optional Zarr copy: emb (N, D) + clips.parquet
    README.md              the dataset card, rendered from the manifest (leakage at publication)
    _manifest.json         written last: its presence means the partition is complete
```

Local folders: every version of a partition is built complete in a hidden folder beside it (an append
hard-links the files it keeps), fsynced, and swapped in with one atomic rename (renameat2 exchange on
Linux), so no reader — a glob over part-*.parquet included — ever sees a file the manifest does not
list. One publish of a partition at a time: a second one gets WriterBusyError naming the first. Other
fsspec filesystems have no atomic rename: files are written in place and the manifest, written last,
commits. Readers of the layout and guarantees: docs/data-teams.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import uuid
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pydantic

from stores import _atomic
from stores import _published_extras as _extras
from stores import _published_rows as _rows
from stores._atomic import WriterBusyError
from stores._fs import StoreRoot
from stores._published_card import CARD, render_card
from stores._published_rows import EmbFetch, LazyRows, Rows
from stores._published_types import (
    IDENTITY_FIELDS,
    INDEX_DIR,
    INDEX_FILE,
    INDEX_IDS_FILE,
    KIND,
    KV_PREFIX,
    MANIFEST,
    SCHEMA_VERSION,
    ZARR_DIR,
    Dtype,
    FileEntry,
    IndexEntry,
    IndexKind,
    LeakageNotMeasured,
    Mode,
    PartitionInfo,
    PartitionManifest,
    Publication,
    PublicationInfo,
    PublishResult,
    ZarrEntry,
    check_info,
    public_encoder_id,
)
from stores.errors import SchemaVersionError, StoreError

__all__ = [
    "SCHEMA_VERSION",
    "Dtype",
    "IndexKind",
    "LeakageNotMeasured",
    "Mode",
    "PartitionInfo",
    "PartitionManifest",
    "PublicationInfo",
    "PublishResult",
    "WriterBusyError",
    "load_faiss_index",
    "public_encoder_id",
    "publish",
    "publish_rows",
    "published_partitions",
    "read_published",
]

logger = logging.getLogger(__name__)

ROWS_PER_FILE = 32_768  # about 100 MB per file at D = 768, float32
ROW_GROUP_ROWS = 4_096
TMP_PREFIX = ".tmp-"  # hidden: pyarrow and polars skip it, and it never matches `adapter=*`
LOCK_PREFIX = ".lock-"  # the writer lock of a partition, beside it (hidden likewise)
PART_FILE = re.compile(r"part-(\d{5,})\.parquet")


@dataclass(frozen=True)
class _Options:
    dtype: Dtype
    rows_per_file: int
    row_group_rows: int
    faiss_index: IndexKind | None
    zarr_copy: bool
    tolerance: float


@dataclass(frozen=True)
class _Extras:
    """The optional outputs a changed partition gets, built over all its rows (its data files)."""

    index_kind: IndexKind | None
    zarr_copy: bool


@dataclass(frozen=True)
class _Where:
    root: StoreRoot
    parent: str  # PUBLISHED/dataset=…/encoder=…
    folder: str  # the partition
    adapter: str

    @classmethod
    def of(cls, root: StoreRoot, info: PublicationInfo) -> _Where:
        parent = root.join(f"dataset={info.dataset}", f"encoder={info.encoder_slug}")
        adapter = info.adapter_partition
        return cls(root, parent, root.under(parent, f"adapter={adapter}"), adapter)


# --- publishing ----------------------------------------------------------------------------------------


def publish(
    out: str | Path,
    info: PublicationInfo,
    clips: pa.Table,
    emb: np.ndarray,
    *,
    dtype: Dtype = "float32",
    mode: Mode = "new",
    rows_per_file: int = ROWS_PER_FILE,
    row_group_rows: int = ROW_GROUP_ROWS,
    faiss_index: IndexKind | None = None,
    zarr_copy: bool = False,
    tolerance: float = 0.0,
    storage_options: dict[str, Any] | None = None,
) -> PublishResult:
    """Publish anonymized embeddings `emb` (N, D) of the motion clips in `clips` (N rows: video_id,
    clip_index, t_start_s, t_end_s) into `info`'s partition under `out`; readers see all of it or none.

    mode="new" refuses a partition that already holds other rows (the same rows again are a no-op);
    mode="append" adds the videos not yet published and skips those published with the same rows and
    embeddings (within `tolerance`, in the stored dtype), refusing any that differ.
    """
    leakage = check_info(info)
    opts = _options(dtype, mode, rows_per_file, row_group_rows, faiss_index, zarr_copy, tolerance)
    rows = _rows.prepare(clips, emb, dtype, info.normalisation)
    return _publish(out, info, leakage, rows, opts, mode, storage_options)


def publish_rows(
    out: str | Path,
    info: PublicationInfo,
    clips: pa.Table,
    fetch: EmbFetch,
    dim: int,
    *,
    dtype: Dtype = "float32",
    mode: Mode = "new",
    rows_per_file: int = ROWS_PER_FILE,
    row_group_rows: int = ROW_GROUP_ROWS,
    faiss_index: IndexKind | None = None,
    zarr_copy: bool = False,
    tolerance: float = 0.0,
    storage_options: dict[str, Any] | None = None,
) -> PublishResult:
    """`publish` for embeddings too large for memory: `fetch(positions)` returns the (len, D) embeddings
    of the `clips` rows at `positions` (ascending), and is called one data file at a time, so memory
    follows `rows_per_file`, not N. The same inputs give the same files as `publish`. Each embedding is
    checked when its file is written; a failure leaves the partition as it was. The optional faiss index
    and Zarr copy are built from the written data files, one file at a time (the index holds every row)."""
    leakage = check_info(info)
    opts = _options(dtype, mode, rows_per_file, row_group_rows, faiss_index, zarr_copy, tolerance)
    rows = _rows.prepare_lazy(clips, fetch, dim, dtype, info.normalisation)
    return _publish(out, info, leakage, rows, opts, mode, storage_options)


def _publish(
    out: str | Path,
    info: PublicationInfo,
    leakage: dict[str, Any],
    rows: LazyRows,
    opts: _Options,
    mode: Mode,
    storage_options: dict[str, Any] | None,
) -> PublishResult:
    where = _Where.of(StoreRoot.from_url(out, storage_options), info)
    with _writer(where):
        existing = _manifest_or_none(where.root, where.folder)
        _clean_stale(where, existing)
        if existing is None:
            return _create(where, info, leakage, rows, opts)
        _check_same_source(existing, info, rows.dim, opts.dtype, where.folder)
        return _extend(where, existing, info, leakage, rows, opts, mode)


def _writer(where: _Where) -> AbstractContextManager[None]:
    """One publish of a partition at a time (local folders; object stores have no locks to offer)."""
    if not where.root.local:
        return nullcontext()
    lock = where.root.under(where.parent, f"{LOCK_PREFIX}adapter={where.adapter}")
    return _atomic.writer_lock(lock, where.folder)


def _options(
    dtype: Dtype,
    mode: Mode,
    rows_per_file: int,
    row_group_rows: int,
    faiss_index: IndexKind | None,
    zarr_copy: bool,
    tolerance: float,
) -> _Options:
    if mode not in ("new", "append"):
        raise StoreError(f"mode must be 'new' or 'append', got {mode!r}")
    if faiss_index not in (None, "flat", "ivf"):
        raise StoreError(f"faiss_index must be None, 'flat' or 'ivf', got {faiss_index!r}")
    if rows_per_file < 1 or row_group_rows < 1:
        raise StoreError("rows_per_file and row_group_rows must be at least 1")
    if not tolerance >= 0:
        raise StoreError(f"tolerance must be >= 0, got {tolerance}")
    return _Options(dtype, rows_per_file, row_group_rows, faiss_index, zarr_copy, tolerance)


def _create(
    where: _Where, info: PublicationInfo, leakage: dict[str, Any], rows: LazyRows, opts: _Options
) -> PublishResult:
    root = where.root
    if root.exists(where.folder):
        logger.warning("removing %s: a partition folder without %s is incomplete", where.folder, MANIFEST)
        root.remove_tree(where.folder)
    # Local: everything goes into a hidden folder that one rename turns into the partition.
    work = root.under(where.parent, f"{TMP_PREFIX}adapter={where.adapter}-{uuid.uuid4().hex}")
    dest = work if root.local else where.folder
    try:
        entries = _write_data_files(root, dest, rows, 0, info, leakage, opts)
        extras = _Extras(opts.faiss_index, opts.zarr_copy)
        index, copy = _write_extras(root, dest, entries, rows.dim, opts.dtype, extras, info)
        now = _now()
        publication = _publication(now, "new", entries, leakage)
        manifest = _manifest(info, leakage, opts.dtype, rows.dim, entries, index, copy, now, now)
        manifest = manifest.model_copy(update={"publications": [publication]})
        _write_manifest(root, dest, manifest)
        if root.local:
            _atomic.fsync_tree(work)
            _rename_into_place(root, work, where.folder)
            _atomic.fsync_dir(where.parent)
    except BaseException:
        if not root.local:
            root.remove_tree(where.folder)
        raise
    finally:
        if root.local:
            root.remove_tree(work)
    return PublishResult(
        partition=_partition_info(root, where.folder, manifest),
        changed=True,
        files_added=tuple(e.name for e in entries),
        rows_added=len(rows),
        videos_added=manifest.counts["videos"],
        videos_skipped=0,
    )


def _extend(
    where: _Where,
    existing: PartitionManifest,
    info: PublicationInfo,
    leakage: dict[str, Any],
    rows: LazyRows,
    opts: _Options,
    mode: Mode,
) -> PublishResult:
    root = where.root
    published_ids = [_file_video_ids(root, where.folder, f) for f in existing.files]
    published = set().union(*published_ids)
    incoming = set(rows.video_ids)
    if mode == "new" and incoming != published:
        raise StoreError(
            f"{where.folder} already holds a publication of this adapter ({len(published)} videos, "
            f"{existing.counts['rows']} rows) and these rows are not the same; use mode='append' to add "
            "new videos, or publish a changed adapter under a new adapter_version"
        )
    overlap = incoming & published
    if overlap:
        _check_unchanged(root, where.folder, existing.files, published_ids, rows, overlap, opts.tolerance)
    fresh = rows.take(_rows_of(rows, incoming - published))
    index_kind = opts.faiss_index or (existing.faiss_index.kind if existing.faiss_index else None)
    zarr_wanted = opts.zarr_copy or existing.zarr_copy is not None
    old_kind = existing.faiss_index.kind if existing.faiss_index else None
    extras_change = index_kind != old_kind or zarr_wanted != (existing.zarr_copy is not None)
    if not len(fresh) and not extras_change:
        return _result(root, where.folder, existing, (), changed=False, videos_skipped=len(overlap))
    extras = _Extras(index_kind, zarr_wanted) if index_kind or zarr_wanted else None
    first = 1 + max(
        (int(m.group(1)) for f in existing.files if (m := PART_FILE.fullmatch(f.name))), default=-1
    )
    manifest, entries = _commit_extension(where, existing, info, leakage, fresh, first, extras, opts)
    return _result(
        root,
        where.folder,
        manifest,
        entries,
        changed=True,
        rows_added=len(fresh),
        videos_added=len(set(fresh.video_ids)),
        videos_skipped=len(overlap),
    )


def _commit_extension(
    where: _Where,
    existing: PartitionManifest,
    info: PublicationInfo,
    leakage: dict[str, Any],
    fresh: LazyRows,
    first: int,
    extras: _Extras | None,
    opts: _Options,
) -> tuple[PartitionManifest, list[FileEntry]]:
    """The partition's next version, committed so that no reader ever sees a file its manifest does not
    list: locally a whole new version is built beside it (existing files hard-linked) and swapped in."""
    commit = _commit_local if where.root.local else _commit_remote
    return commit(where, existing, info, leakage, fresh, first, extras, opts)


def _next_manifest(
    existing: PartitionManifest,
    info: PublicationInfo,
    leakage: dict[str, Any],
    entries: list[FileEntry],
    index: IndexEntry | None,
    copy: ZarrEntry | None,
    dtype: Dtype,
) -> PartitionManifest:
    now = _now()
    files = [*existing.files, *entries]
    manifest = _manifest(info, leakage, dtype, existing.dim, files, index, copy, existing.created_at, now)
    publications = existing.publications
    if entries:
        publications = [*publications, _publication(now, "append", entries, leakage)]
    else:  # only the extras changed: the leakage on record still describes the rows
        manifest = manifest.model_copy(update={"leakage": existing.leakage})
    return manifest.model_copy(update={"publications": publications})


def _commit_local(
    where: _Where,
    existing: PartitionManifest,
    info: PublicationInfo,
    leakage: dict[str, Any],
    fresh: LazyRows,
    first: int,
    extras: _Extras | None,
    opts: _Options,
) -> tuple[PartitionManifest, list[FileEntry]]:
    root, folder = where.root, where.folder
    work = root.under(where.parent, f"{TMP_PREFIX}adapter={where.adapter}-{uuid.uuid4().hex}")
    try:
        os.makedirs(work)
        kept = [f.name for f in existing.files]
        index, copy = existing.faiss_index, existing.zarr_copy
        if extras is None:  # the extras describe the same rows: keep them
            kept += [f.name for f in (index.files if index else [])]
            kept += [f.name for f in (copy.files if copy else [])]
        _atomic.link_files(folder, work, kept)
        entries = _write_data_files(root, work, fresh, first, info, leakage, opts)
        if extras is not None:  # rebuilt over every row, in manifest file order
            files = [*existing.files, *entries]
            index, copy = _write_extras(root, work, files, existing.dim, opts.dtype, extras, info)
        manifest = _next_manifest(existing, info, leakage, entries, index, copy, opts.dtype)
        _write_manifest(root, work, manifest)
        _atomic.fsync_tree(work)
        _atomic.exchange(work, folder)  # the commit: `work` now holds the previous version
        _atomic.fsync_dir(where.parent)
    finally:
        root.remove_tree(work)
    return manifest, entries


def _commit_remote(
    where: _Where,
    existing: PartitionManifest,
    info: PublicationInfo,
    leakage: dict[str, Any],
    fresh: LazyRows,
    first: int,
    extras: _Extras | None,
    opts: _Options,
) -> tuple[PartitionManifest, list[FileEntry]]:
    """Object stores have no rename: new files go in place, the manifest written last commits, and a
    failure removes what was added. A glob reader may see an added file before the manifest lists it."""
    root, folder = where.root, where.folder
    entries: list[FileEntry] = []
    try:
        entries = _write_data_files(root, folder, fresh, first, info, leakage, opts)
        index, copy = (existing.faiss_index, existing.zarr_copy)
        if extras is not None:
            for name in (INDEX_DIR, ZARR_DIR):
                root.remove_tree(root.under(folder, name))
            files = [*existing.files, *entries]
            index, copy = _write_extras(root, folder, files, existing.dim, opts.dtype, extras, info)
        manifest = _next_manifest(existing, info, leakage, entries, index, copy, opts.dtype)
        _write_manifest(root, folder, manifest)
    except BaseException:
        for entry in entries:
            root.remove_tree(root.under(folder, entry.name))
        raise
    return manifest, entries


def _rename_into_place(root: StoreRoot, work: str, folder: str) -> None:
    try:
        root.rename_dir(work, folder)
    except OSError as e:
        raise StoreError(
            f"could not move the new partition into place at {folder} ({e}); another publish of it may "
            "have run at the same time — run again (mode='append' completes what is missing)"
        ) from e


def _result(
    root: StoreRoot,
    folder: str,
    manifest: PartitionManifest,
    entries: list[FileEntry] | tuple[()],
    *,
    changed: bool,
    rows_added: int = 0,
    videos_added: int = 0,
    videos_skipped: int = 0,
) -> PublishResult:
    return PublishResult(
        partition=_partition_info(root, folder, manifest),
        changed=changed,
        files_added=tuple(e.name for e in entries),
        rows_added=rows_added,
        videos_added=videos_added,
        videos_skipped=videos_skipped,
    )


# --- pieces of a publication ---------------------------------------------------------------------------


def _write_data_files(
    root: StoreRoot,
    dest: str,
    rows: LazyRows,
    first: int,
    info: PublicationInfo,
    leakage: dict[str, Any],
    opts: _Options,
) -> list[FileEntry]:
    """The data files, one at a time: only one file's embeddings are in memory at once."""
    dim = rows.dim
    schema = _rows.data_schema(opts.dtype, dim, _kv_metadata(info, leakage, opts.dtype, dim))
    entries = []
    for k, (start, stop) in enumerate(_rows.file_slices(rows, opts.rows_per_file)):
        part = rows.slice(start, stop).load()
        data = _rows.encode(part, schema, opts.dtype, opts.row_group_rows)
        entry = _extras.write_bytes(root, dest, f"part-{first + k:05d}.parquet", data)
        update = {
            "rows": len(part),
            "videos": len(set(part.video_ids)),
            "content_sha256": part.content_sha256(),
        }
        entries.append(entry.model_copy(update=update))
    return entries


def _write_extras(
    root: StoreRoot,
    dest: str,
    files: list[FileEntry],
    dim: int,
    dtype: Dtype,
    extras: _Extras,
    info: PublicationInfo,
) -> tuple[IndexEntry | None, ZarrEntry | None]:
    """The faiss index and the Zarr copy over the rows of the data `files` under `dest`, read one file at
    a time (the index itself holds every row; the copy holds a file's)."""
    if not (extras.index_kind or extras.zarr_copy):
        return None, None
    counts = [int(e.rows or 0) for e in files]
    source = _extras.FileRows(counts, dim, dtype, lambda k: _file_rows(root, dest, files[k], dim))
    index = _extras.write_index(root, dest, source, extras.index_kind) if extras.index_kind else None
    attrs = {"dim": dim, "dtype": dtype, "normalisation": info.normalisation}
    copy = _extras.write_zarr_copy(root, dest, source, attrs) if extras.zarr_copy else None
    return index, copy


def _kv_metadata(info: PublicationInfo, leakage: dict[str, Any], dtype: Dtype, dim: int) -> dict[str, str]:
    """The Parquet key-value metadata of every data file; no timestamps, so equal inputs give equal bytes."""
    values: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "dataset": info.dataset,
        "encoder_id": info.encoder_id,
        "encoder_sha256": info.encoder_sha256,
        "adapter_version": info.adapter_partition,
        "adapter_sha256": info.adapter_sha256,
        "adapter_variant": info.adapter_variant,
        "dim": dim,
        "dtype": dtype,
        "emb_encoding": _rows.EMB_ENCODING[dtype],
        "normalisation": info.normalisation,
        "id_scheme": info.id_scheme,
    }
    kv = {f"{KV_PREFIX}{k}": str(v) for k, v in values.items()}
    kv[f"{KV_PREFIX}leakage"] = json.dumps(leakage, sort_keys=True)
    kv.update({f"{KV_PREFIX}extra.{k}": v for k, v in sorted(info.extra_metadata.items())})
    return kv


def _manifest(
    info: PublicationInfo,
    leakage: dict[str, Any],
    dtype: Dtype,
    dim: int,
    files: list[FileEntry],
    index: IndexEntry | None,
    copy: ZarrEntry | None,
    created_at: str,
    updated_at: str,
) -> PartitionManifest:
    return PartitionManifest(
        schema_version=SCHEMA_VERSION,
        dataset=info.dataset,
        encoder_id=info.encoder_id,
        encoder_slug=info.encoder_slug,
        encoder_sha256=info.encoder_sha256,
        adapter_version=info.adapter_version,
        adapter_partition=info.adapter_partition,
        adapter_sha256=info.adapter_sha256,
        adapter_variant=info.adapter_variant,
        dim=dim,
        dtype=dtype,
        emb_encoding=_rows.EMB_ENCODING[dtype],
        normalisation=info.normalisation,
        extra_metadata=dict(info.extra_metadata),
        id_scheme=info.id_scheme,
        counts={
            "rows": sum(f.rows or 0 for f in files),
            "videos": sum(f.videos or 0 for f in files),
            "files": len(files),
        },
        files=files,
        faiss_index=index,
        zarr_copy=copy,
        leakage=leakage,
        created_at=created_at,
        updated_at=updated_at,
        publications=[],
    )


def _publication(now: str, mode: Mode, entries: list[FileEntry], leakage: dict[str, Any]) -> Publication:
    return Publication(
        created_at=now,
        mode=mode,
        files=[e.name for e in entries],
        rows=sum(e.rows or 0 for e in entries),
        videos=sum(e.videos or 0 for e in entries),
        leakage=leakage,
    )


def _write_manifest(root: StoreRoot, folder: str, manifest: PartitionManifest) -> None:
    """The dataset card, then the manifest it is rendered from: written last (locally through a
    temporary file and a rename), it commits."""
    _extras.write_bytes(root, folder, CARD, render_card(manifest).encode())
    root.write_json(root.under(folder, MANIFEST), manifest.model_dump(mode="json", exclude_none=True))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


# --- checks against what is already published ----------------------------------------------------------


def _check_same_source(
    existing: PartitionManifest, info: PublicationInfo, dim: int, dtype: Dtype, folder: str
) -> None:
    requested = {k: getattr(info, k, None) for k in IDENTITY_FIELDS} | {"dim": dim, "dtype": dtype}
    differences = [
        f"{k}: published {getattr(existing, k)!r}, now {requested[k]!r}"
        for k in IDENTITY_FIELDS
        if getattr(existing, k) != requested[k]
    ]
    if differences:
        raise StoreError(
            f"{folder} holds embeddings made differently ({'; '.join(differences)}); publish them under "
            "a new adapter_version (a new partition) — a partition never mixes two sources"
        )


def _check_unchanged(
    root: StoreRoot,
    folder: str,
    files: list[FileEntry],
    file_ids: list[set[str]],
    rows: LazyRows,
    overlap: set[str],
    tolerance: float,
) -> None:
    """Refuse when already published videos come back with other clips or embeddings; compared one
    published file at a time (a file holds whole videos), so memory follows the file size."""
    dim = rows.dim
    differing: list[str] = []
    for entry, ids in zip(files, file_ids, strict=True):
        if ids & overlap:
            videos = ids & overlap
            old = _read_rows(root, folder, [entry], dim, videos)
            differing += _differing(old, rows.take(_rows_of(rows, videos)).load(), tolerance)
    if not differing:
        return
    differing.sort()
    raise StoreError(
        f"{folder}: {len(differing)} already published videos come back with other clips or embeddings "
        f"(e.g. {differing[:5]}); published rows are never rewritten — publish under a new adapter_version"
    )


def _differing(old: Rows, new: Rows, tolerance: float) -> list[str]:
    """The videos of `new` whose rows or embeddings differ from those in `old` (the same videos)."""
    order = pc.sort_indices(old.table, [("video_id", "ascending"), ("clip_index", "ascending")])
    old = old.take(order.to_numpy())
    if old.table.equals(new.table) and _close(old.emb, new.emb, tolerance):
        return []
    return [video_id for video_id in set(new.video_ids) if not _same_video(old, new, video_id, tolerance)]


def _same_video(old: Rows, new: Rows, video_id: str, tolerance: float) -> bool:
    a, b = old.take(_rows_of(old, {video_id})), new.take(_rows_of(new, {video_id}))
    return a.table.equals(b.table) and _close(a.emb, b.emb, tolerance)


def _close(a: np.ndarray, b: np.ndarray, tolerance: float) -> bool:
    if a.shape != b.shape:
        return False
    if tolerance == 0:
        return bool(np.array_equal(a, b))
    return bool(np.allclose(a.astype(np.float32), b.astype(np.float32), rtol=0, atol=tolerance))


def _rows_of(rows: Rows | LazyRows, video_ids: set[str]) -> np.ndarray:
    mask = pc.is_in(rows.table["video_id"], value_set=pa.array(sorted(video_ids), pa.string()))
    return np.flatnonzero(mask.to_numpy(zero_copy_only=False))


# --- stale leftovers -----------------------------------------------------------------------------------


def _clean_stale(where: _Where, existing: PartitionManifest | None) -> None:
    """Remove what interrupted publishes of this partition left: hidden work folders and data files that
    the manifest does not list. Publishes of one partition must not run concurrently."""
    root = where.root
    for name in root.list_names(where.parent):
        if name.startswith(f"{TMP_PREFIX}adapter={where.adapter}-"):
            logger.info("removing %s, left by an interrupted publish", name)
            root.remove_tree(root.under(where.parent, name))
    if existing is None:
        return
    listed = {f.name for f in existing.files}
    for name in root.list_names(where.folder):
        if name.startswith(TMP_PREFIX) or (PART_FILE.fullmatch(name) and name not in listed):
            logger.info("removing %s/%s, left by an interrupted publish", where.folder, name)
            root.remove_tree(root.under(where.folder, name))


# --- reading -------------------------------------------------------------------------------------------


def published_partitions(
    out: str | Path, *, storage_options: dict[str, Any] | None = None
) -> list[PartitionInfo]:
    """Every complete partition under `out`, sorted by (dataset, encoder, adapter); folders without a
    manifest (being written, or interrupted) are skipped. SchemaVersionError for a newer manifest."""
    root = StoreRoot.from_url(out, storage_options)
    found = []
    for folder in _partition_folders(root):
        manifest = _manifest_or_none(root, folder)
        if manifest is None:
            logger.info("skipping %s: no %s (incomplete)", folder, MANIFEST)
            continue
        found.append(_partition_info(root, folder, manifest))
    return found


def read_published(
    out: str | Path,
    *,
    dataset: str | None = None,
    encoder: str | None = None,
    adapter: str | None = None,
    verify: bool = False,
    video_ids: set[str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> tuple[pa.Table, np.ndarray]:
    """(rows, emb) of the matching partitions: rows hold dataset, encoder, adapter and the clip columns;
    emb is (N, D) float32. Only files a manifest lists are read; verify=True also checks their sha256.
    `video_ids` keeps only those (published) video ids, filtered file by file."""
    partitions = [
        p
        for p in published_partitions(out, storage_options=storage_options)
        if (dataset is None or p.dataset == dataset)
        and (encoder is None or p.encoder == encoder)
        and (adapter is None or p.adapter == adapter)
    ]
    if not partitions:
        raise StoreError(
            f"no published partition under {out} matches dataset={dataset}, encoder={encoder}, "
            f"adapter={adapter}; published_partitions() lists what is there"
        )
    dims = sorted({p.dim for p in partitions})
    if len(dims) > 1:
        raise StoreError(
            f"the matching partitions have different dims {dims}; choose one with encoder/adapter"
        )
    tables, arrays = [], []
    for p in partitions:
        root = StoreRoot.from_url(p.location, storage_options)
        rows = _read_rows(root, root.path, p.manifest.files, p.dim, video_ids, verify=verify)
        keys = [pa.repeat(pa.scalar(v, pa.string()), len(rows)) for v in (p.dataset, p.encoder, p.adapter)]
        tables.append(
            pa.Table.from_arrays(
                [*keys, *rows.table.columns],
                names=["dataset", "encoder", "adapter", *rows.table.column_names],
            )
        )
        arrays.append(rows.emb.astype(np.float32))
    return pa.concat_tables(tables), np.concatenate(arrays)


def load_faiss_index(
    partition: PartitionInfo, *, storage_options: dict[str, Any] | None = None
) -> tuple[Any, pa.Table]:
    """(faiss index, ids table with row -> clip_id) of a partition, checked against its manifest."""
    entry = partition.manifest.faiss_index
    if entry is None:
        raise StoreError(f"{partition.location} has no faiss index; publish with faiss_index='flat' or 'ivf'")
    root = StoreRoot.from_url(partition.location, storage_options)
    data = {f.name: _read_checked(root, root.path, f, verify=True) for f in entry.files}
    index = _extras.read_index(data[f"{INDEX_DIR}/{INDEX_FILE}"])
    ids = pq.read_table(pa.BufferReader(data[f"{INDEX_DIR}/{INDEX_IDS_FILE}"]))
    if not index.ntotal == ids.num_rows == entry.rows:
        raise StoreError(f"{partition.location}: index and ids disagree with the manifest; republish")
    return index, ids


def _partition_folders(root: StoreRoot) -> list[str]:
    folders = [root.path]
    for key in ("dataset", "encoder", "adapter"):
        folders = [
            root.under(folder, name)
            for folder in folders
            for name in root.list_names(folder)
            if name.startswith(f"{key}=")
        ]
    return folders


def _partition_info(root: StoreRoot, folder: str, manifest: PartitionManifest) -> PartitionInfo:
    names = folder.replace("\\", "/").rstrip("/").split("/")[-3:]
    values = [n.partition("=")[2] for n in names]
    expected = [manifest.dataset, manifest.encoder_slug, manifest.adapter_partition]
    if values != expected:
        raise StoreError(
            f"{folder}: its manifest belongs to dataset={expected[0]}/encoder={expected[1]}/"
            f"adapter={expected[2]}; the folder was moved by hand — move it back or republish"
        )
    location = folder if root.local else root.fs.unstrip_protocol(folder)
    return PartitionInfo(values[0], values[1], values[2], location, manifest)


def _manifest_or_none(root: StoreRoot, folder: str) -> PartitionManifest | None:
    path = root.under(folder, MANIFEST)
    if not root.exists(path):
        return None
    try:
        record = root.read_json(path)
    except (ValueError, OSError) as e:
        raise StoreError(f"{path} is not readable JSON ({e}); the partition is damaged — republish it") from e
    if not isinstance(record, dict) or record.get("kind") != KIND:
        raise StoreError(f"{path} is not a published-partition manifest; this folder is not ours")
    version = record.get("schema_version")
    if not isinstance(version, int):
        raise StoreError(f"{path} has no valid schema_version ({version!r}); the partition is damaged")
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path} was written by a newer aam-pipeline (schema_version {version}; this one reads up to "
            f"{SCHEMA_VERSION}); upgrade aam-pipeline to read or extend it"
        )
    try:
        return PartitionManifest.model_validate(record)
    except pydantic.ValidationError as e:
        raise StoreError(f"{path}: unreadable manifest ({e}); the partition is damaged — republish it") from e


def _read_checked(root: StoreRoot, folder: str, entry: FileEntry, *, verify: bool) -> bytes:
    path = root.under(folder, *entry.name.split("/"))
    try:
        data = bytes(root.fs.cat_file(path))
    except FileNotFoundError as e:
        raise StoreError(f"{path} is listed in the manifest but missing; the partition is damaged") from e
    if len(data) != entry.size or (verify and hashlib.sha256(data).hexdigest() != entry.sha256):
        raise StoreError(f"{path} differs from the manifest (size or checksum); the partition is damaged")
    return data


def _read_rows(
    root: StoreRoot,
    folder: str,
    files: list[FileEntry],
    dim: int,
    video_ids: set[str] | None = None,
    *,
    verify: bool = False,
) -> Rows:
    """The rows of `files` in order (only `video_ids` when given); emb keeps the stored dtype."""
    parts = []
    for entry in files:
        rows = _file_rows(root, folder, entry, dim, verify=verify)
        parts.append(rows if video_ids is None else rows.take(_rows_of(rows, video_ids)))
    dtype: Dtype = "float16" if parts and parts[0].emb.dtype == np.float16 else "float32"
    return _rows.concat(parts, dim, dtype)


def _file_rows(root: StoreRoot, folder: str, entry: FileEntry, dim: int, *, verify: bool = False) -> Rows:
    """The rows of one data file, checked against its entry's size (and checksum when `verify`)."""
    table = pq.read_table(pa.BufferReader(_read_checked(root, folder, entry, verify=verify)))
    return _rows.decode(table, dim)


def _file_video_ids(root: StoreRoot, folder: str, entry: FileEntry) -> set[str]:
    with root.fs.open(root.under(folder, entry.name), "rb") as f:
        column = pq.read_table(f, columns=["video_id"])["video_id"]
    return set(column.to_pylist())
