"""The latent cache (design §3.2): a crash-safe Zarr v3 store of clip embeddings, one part per work unit.

Layout and rules: docs/latent-cache.md. Parts are immutable once complete; readers trust a part only
when its completion marker, file sizes and shapes agree, so a writer killed at any moment leaves the
store readable.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pydantic
import zarr
import zarr.errors

from stores import _atomic, _parts, _view
from stores._cache_types import (
    CLIPS_SCHEMA,
    ERRORS_SCHEMA,
    SCHEMA_VERSION,
    STATIC_CLIPS_SCHEMA,
    VIDEOS_SCHEMA,
    CacheAttrs,
    CacheView,
    PartData,
)
from stores._fs import StoreRoot
from stores.errors import IncompatibleStoreError, SchemaVersionError, StoreError

__all__ = [
    "CLIPS_SCHEMA",
    "ERRORS_SCHEMA",
    "SCHEMA_VERSION",
    "STATIC_CLIPS_SCHEMA",
    "VIDEOS_SCHEMA",
    "CacheAttrs",
    "CacheView",
    "LatentCache",
    "PartData",
]

logger = logging.getLogger(__name__)

KIND = "aam-pipeline/latent-cache"  # the root attribute that tells our stores from other zarr groups
STORE_JSON = "store.json"
PARTS = "parts"
WRITER_LOCK = ".lock-writer"  # one extraction writer per store (an flock; names its holder)
IO_THREADS = 8
# Complete parts never change (a part's folder name is its content's id), so what a first read of one
# checked and read is kept per process and reused while every file of the folder, the marker included,
# still has the size it had then (the size check a first read makes, and more). A Dask worker's every
# work unit asks which videos are complete; checking and reading every part each time made that
# quadratic in the parts (1.2 s a unit at 92 parts; 0.05 s with this). Keyed by (store URL, part
# folder, dim, dtype); the value: the part, its files' sizes, the tables read so far.
_Known = tuple[_view.TrustedPart, dict[str, int], dict[str, pa.Table]]
_KNOWN_PARTS: dict[tuple[str, str, int, str], _Known] = {}
_KNOWN_MAX = 200_000
VIDEO_COLUMNS = ["video_id", "status", "size", "mtime_ns"]
T = TypeVar("T")
R = TypeVar("R")


class LatentCache:
    """A latent cache at a local path or fsspec URL. Safe to pickle and to use from many processes."""

    def __init__(self, root: StoreRoot, attrs: CacheAttrs) -> None:
        self._root = root
        self.attrs = attrs
        self.url = root.url

    def __repr__(self) -> str:
        return f"LatentCache({self.url!r}, encoder_id={self.attrs.encoder_id!r}, dim={self.attrs.dim})"

    # --- opening -------------------------------------------------------------------------------------

    @classmethod
    def create_or_open(
        cls, url: str | Path, attrs: CacheAttrs, *, storage_options: dict[str, Any] | None = None
    ) -> LatentCache:
        """Create the store if absent; if present, its attrs must equal `attrs` (else nothing changes)."""
        root = StoreRoot.from_url(url, storage_options)
        if root.exists(root.join("zarr.json")):
            cache = cls._open(root)
            _check_compatible(cache.attrs, attrs, root.url)
            return cache
        _check_free(root)
        record = {"kind": KIND, "schema_version": SCHEMA_VERSION, **attrs.model_dump(mode="json")}
        root.write_json(root.join(STORE_JSON), record)
        store = root.zarr_store(root.path, read_only=False)
        try:
            # The root zarr.json is what makes the store exist, so it goes before parts/zarr.json,
            # which only helps zarr tools browse: a store without it just has no parts yet.
            zarr.create_group(store, attributes=record)
        except zarr.errors.ContainsGroupError:  # another process created it meanwhile
            return cls.create_or_open(url, attrs, storage_options=storage_options)
        zarr.open_group(store, path=PARTS, mode="a")
        if root.local:  # the store's markers are durable before any part names them
            _atomic.fsync_tree(root.path)
        return cls(root, attrs)

    @staticmethod
    @contextmanager
    def writer_lock(url: str | Path) -> Iterator[None]:
        """Hold the store's writer lock while the block runs: one extraction run per store at a time.
        A second one gets WriterBusyError at once, naming the holder's pid, host and start time; the lock
        goes with its process, so a killed writer never leaves it held. The folder need not exist yet.
        On object stores (no flock) this does nothing: give each concurrent writer its own units."""
        root = StoreRoot.from_url(url)
        if not root.local:
            yield
            return
        with _atomic.writer_lock(root.join(WRITER_LOCK), f"the latent cache {root.url}"):
            yield

    @staticmethod
    def exists(url: str | Path, *, storage_options: dict[str, Any] | None = None) -> bool:
        """Whether a latent cache (its root zarr.json) is at `url`."""
        root = StoreRoot.from_url(url, storage_options)
        return bool(root.exists(root.join("zarr.json")))

    @classmethod
    def open(cls, url: str | Path, *, storage_options: dict[str, Any] | None = None) -> LatentCache:
        """Open an existing store; SchemaVersionError if a newer aam-pipeline wrote it."""
        root = StoreRoot.from_url(url, storage_options)
        if not root.exists(root.join("zarr.json")):
            raise StoreError(f"no latent cache at {root.url}; create one with `aam-pipeline extract --out`")
        return cls._open(root)

    @classmethod
    def _open(cls, root: StoreRoot) -> LatentCache:
        try:
            group = zarr.open_group(root.zarr_store(root.path, read_only=True), mode="r")
        except (ValueError, KeyError) as e:  # zarr's "not a group" errors and bad JSON are ValueErrors
            raise StoreError(
                f"{root.url} is not a readable latent cache ({e}); pass the --out of an extract"
            ) from e
        record = dict(group.attrs.asdict())
        if record.pop("kind", None) != KIND:
            raise StoreError(
                f"{root.url} is a zarr group but not a latent cache; pass the --out of an extract"
            )
        version = record.pop("schema_version", None)
        if not isinstance(version, int):
            raise StoreError(f"{root.url} has no valid schema_version ({version!r}); the store is damaged")
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{root.url} was written by a newer aam-pipeline (schema_version {version}, this one reads "
                f"up to {SCHEMA_VERSION}); upgrade aam-pipeline"
            )
        try:
            attrs = CacheAttrs.model_validate(record)
        except pydantic.ValidationError as e:
            raise StoreError(f"{root.url}: unreadable store attributes ({e}); the store is damaged") from e
        return cls(root, attrs)

    # --- writing -------------------------------------------------------------------------------------

    @staticmethod
    def part_id_for(
        video_ids: Sequence[str],
        *,
        content: Sequence[str] | None = None,
        settings: CacheAttrs | None = None,
    ) -> str:
        """Deterministic part id of a work unit: 16 hex chars of sha256 over its sorted video ids.

        `content`, one string per video (aligned with `video_ids`: its file's fingerprint and the
        attempt's outcome), and `settings` (the store's attributes) make the id name the unit's content:
        a changed file or a different outcome is a new part, the same unit done again the same part."""
        if content is None:
            lines = sorted(set(video_ids))
        else:
            lines = sorted({f"{v}\t{c}" for v, c in zip(video_ids, content, strict=True)})
        if settings is not None:
            lines.append(settings.model_dump_json())
        digest = hashlib.sha256("\n".join(lines).encode())
        return digest.hexdigest()[:16]

    def write_part(self, part_id: str, data: PartData) -> bool:
        """Write one work unit's output, all or nothing for readers; False (no change) if already complete."""
        _parts.check_part_id(part_id)
        prepared = _parts.prepare(data, self.attrs)
        final = self._root.join(PARTS, part_id)
        if self._is_trusted(final, part_id):
            return False
        if not self._root.local:
            # No atomic rename on object stores: write in place; the marker, written last, commits.
            self._root.remove_tree(final)
            _parts.write_files(self._root, final, part_id, prepared)
            return True
        tmp = self._root.join(PARTS, f"{_parts.TMP_PREFIX}{part_id}-{uuid.uuid4().hex}")
        try:
            _parts.write_files(self._root, tmp, part_id, prepared)
            _atomic.fsync_tree(tmp)  # every byte durable before the rename that commits the part
            published = self._publish(tmp, final, part_id)
            if published:
                _atomic.fsync_dir(self._root.join(PARTS))  # and the rename itself
            return published
        finally:
            self._root.remove_tree(tmp)

    def _publish(self, tmp: str, final: str, part_id: str) -> bool:
        if self._root.exists(final):
            if self._is_trusted(final, part_id):  # another writer of the same unit finished first
                return False
            self._root.remove_tree(final)
        try:
            self._root.rename_dir(tmp, final)
        except OSError as e:
            if self._is_trusted(final, part_id):
                return False
            raise StoreError(f"could not move part {part_id} into place at {final}: {e}") from e
        return True

    def cleanup(self) -> int:
        """Remove temporary and incomplete parts; returns how many. Run it when no writer is active."""
        removed = 0
        parts = self._root.join(PARTS)
        for name in self._root.list_names(parts):
            folder = self._root.under(parts, name)
            if name == "zarr.json" or (
                not name.startswith(_parts.TMP_PREFIX) and self._is_trusted(folder, name)
            ):
                continue
            logger.info("removing incomplete part %s", folder)
            self._root.remove_tree(folder)
            removed += 1
        return removed

    # --- reading -------------------------------------------------------------------------------------

    def completed_videos(self) -> dict[str, tuple[int, int]]:
        """video_id -> (size, mtime_ns) of the file whose embeddings the store holds, for ok videos."""
        parts = self._trusted_parts()
        return _view.resolve(parts, self._video_tables(parts)).fingerprint

    def read(
        self, *, arrays: bool = True, videos: Collection[str] | None = None, static: bool = True
    ) -> CacheView:
        """Everything in the trusted parts, each clip once; arrays=False reads the tables only.

        `videos` restricts the view to those video ids (only the parts holding them are read), for
        readers that stream a large store a group of videos at a time. static=False leaves the static
        clips out (no rows, no table) for readers of the motion clips only."""
        parts = self._trusted_parts()
        tables = self._tables(parts, "videos")
        resolution = _view.resolve(parts, tables)
        owned = resolution.owned_by(len(parts))
        if videos is not None:
            wanted = set(videos)
            owned = [[v for v in ids if v in wanted] for ids in owned]
        clips = _view.row_index(self._tables(parts, "clips"), owned, "clip_index", CLIPS_SCHEMA)
        static_tables = self._tables(parts, "static_clips") if static else [STATIC_CLIPS_SCHEMA.empty_table()]
        static_index = _view.row_index(
            static_tables, owned if static else [[]], "static_index", STATIC_CLIPS_SCHEMA
        )
        dim = self.attrs.dim
        motion_rows = np.zeros((0, dim), np.float32)
        static_rows = np.zeros((0, dim), np.float32)
        tokens = None
        if arrays:
            motion_rows = _view.load_all(self._arrays(parts, "motion"), clips.part, clips.row, (dim,))
            if static:
                static_arrays = self._arrays(parts, "static")
                static_rows = _view.load_all(static_arrays, static_index.part, static_index.row, (dim,))
            if self.attrs.tokens is not None:
                tokens = _view.load_all(
                    self._arrays(parts, "tokens"), clips.part, clips.row, self.attrs.tokens
                )
        return CacheView(
            attrs=self.attrs,
            videos=_ok_videos(tables, owned),
            clips=clips.table,
            motion=motion_rows,
            static_clips=static_index.table,
            static=static_rows,
            tokens=tokens,
            errors=self._errors(parts, resolution),
        )

    def iter_motion(self, chunk_rows: int) -> Iterator[tuple[pa.Table, np.ndarray]]:
        """Yield (clips rows, motion (rows, D) float32) in read() order, holding about one chunk in memory."""
        if chunk_rows < 1:
            raise StoreError(f"chunk_rows must be at least 1, got {chunk_rows}")
        return self._iter_motion(chunk_rows)

    def iter_motion_tokens(self, chunk_rows: int) -> Iterator[tuple[pa.Table, np.ndarray, np.ndarray]]:
        """Like iter_motion, with each chunk's temporal tokens (rows, T', D) float32 too; StoreError
        when the store holds none."""
        if chunk_rows < 1:
            raise StoreError(f"chunk_rows must be at least 1, got {chunk_rows}")
        if self.attrs.tokens is None:
            raise StoreError(f"{self.url} holds no temporal tokens; extract them with the encoder's tokens")
        return self._iter_motion_tokens(chunk_rows, self.attrs.tokens)

    def _clip_index(self) -> tuple[list[_view.TrustedPart], _view.RowIndex]:
        parts = self._trusted_parts()
        owned = _view.resolve(parts, self._video_tables(parts)).owned_by(len(parts))
        return parts, _view.row_index(self._tables(parts, "clips"), owned, "clip_index", CLIPS_SCHEMA)

    def _iter_motion(self, chunk_rows: int) -> Iterator[tuple[pa.Table, np.ndarray]]:
        parts, clips = self._clip_index()
        blocks = _view.BlockCache(self._arrays(parts, "motion"))
        for start in range(0, clips.table.num_rows, chunk_rows):
            stop = start + chunk_rows
            rows = blocks.gather(clips.part[start:stop], clips.row[start:stop], (self.attrs.dim,))
            yield clips.table.slice(start, len(rows)), rows

    def _iter_motion_tokens(
        self, chunk_rows: int, trailing: tuple[int, ...]
    ) -> Iterator[tuple[pa.Table, np.ndarray, np.ndarray]]:
        parts, clips = self._clip_index()
        blocks = _view.BlockCache(self._arrays(parts, "motion"))
        token_blocks = _view.BlockCache(self._arrays(parts, "tokens"))
        for start in range(0, clips.table.num_rows, chunk_rows):
            part, row = clips.part[start : start + chunk_rows], clips.row[start : start + chunk_rows]
            rows = blocks.gather(part, row, (self.attrs.dim,))
            yield clips.table.slice(start, len(rows)), rows, token_blocks.gather(part, row, trailing)

    # --- helpers -------------------------------------------------------------------------------------

    def _is_trusted(self, folder: str, part_id: str) -> bool:
        try:
            _parts.trusted_marker(self._root, folder, part_id, self.attrs)
        except _parts.UntrustedPartError:
            return False
        return True

    def _trusted_parts(self) -> list[_view.TrustedPart]:
        """Complete parts sorted by part_id; others are skipped and logged."""
        names = self._root.list_names(self._root.join(PARTS))
        names = [n for n in names if n != "zarr.json" and not n.startswith(_parts.TMP_PREFIX)]
        checked = _parallel(self._trusted_part, names)
        return sorted((p for p in checked if p is not None), key=lambda p: p.part_id)

    def _known(self, folder: str) -> tuple[str, str, int, str]:
        return (self._root.url if not self._root.local else "", folder, self.attrs.dim, self.attrs.dtype)

    def _video_tables(self, parts: Sequence[_view.TrustedPart]) -> list[pa.Table]:
        """Each part's (video_id, status, size, mtime_ns), from what `_trusted_part` kept."""

        def table(part: _view.TrustedPart) -> pa.Table:
            known = _KNOWN_PARTS.get(self._known(part.folder))
            if known is None or known[0] is not part:
                return self._table(part, "videos", VIDEO_COLUMNS)
            tables = known[2]
            if "videos" not in tables:
                tables["videos"] = self._table(part, "videos", VIDEO_COLUMNS)
            return tables["videos"]

        return _parallel(table, parts)

    def _trusted_part(self, name: str) -> _view.TrustedPart | None:
        folder = self._root.join(PARTS, name)
        key = self._known(folder)
        known = _KNOWN_PARTS.get(key)
        if known is not None:
            if self._root.file_sizes(folder) == known[1]:
                return known[0]
            del _KNOWN_PARTS[key]  # changed since: checked afresh (and not trusted, most likely)
        try:
            marker = _parts.trusted_marker(self._root, folder, name, self.attrs)
        except _parts.PartInProgressError as e:
            logger.info("ignoring part %s: %s", folder, e)
            return None
        except _parts.UntrustedPartError as e:
            logger.warning("ignoring part %s: %s; LatentCache.cleanup() removes it", folder, e)
            return None
        part = _view.TrustedPart(name, folder, marker)
        if len(_KNOWN_PARTS) >= _KNOWN_MAX:
            _KNOWN_PARTS.clear()
        _KNOWN_PARTS[key] = (part, self._root.file_sizes(folder), {})
        return part

    def _tables(
        self, parts: Sequence[_view.TrustedPart], key: str, columns: list[str] | None = None
    ) -> list[pa.Table]:
        return _parallel(lambda part: self._table(part, key, columns), parts)

    def _table(self, part: _view.TrustedPart, key: str, columns: list[str] | None = None) -> pa.Table:
        return self._root.read_table(self._root.under(part.folder, _parts.TABLE_FILES[key]), columns)

    def _arrays(self, parts: Sequence[_view.TrustedPart], name: str) -> list[zarr.Array]:
        return _parallel(lambda part: _parts.open_array(self._root, part.folder, name), parts)

    def _errors(self, parts: Sequence[_view.TrustedPart], resolution: _view.Resolution) -> pa.Table:
        failed = resolution.failed_in(len(parts))
        kept = []
        for part, video_ids in zip(parts, failed, strict=True):
            if video_ids:
                table = self._table(part, "errors")
                kept.append(table.filter(_view.keep(table, video_ids)))
        return _sorted_by_id(_view.concat(kept, ERRORS_SCHEMA))


def _parallel(function: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """`function` over `items` in threads, results in order: parts are many small files, often remote."""
    if len(items) < 2:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(IO_THREADS, len(items))) as pool:
        return list(pool.map(function, items))


def _ok_videos(videos: Sequence[pa.Table], owned: Sequence[list[str]]) -> pa.Table:
    kept = [t.filter(_view.keep(t, ids)) for t, ids in zip(videos, owned, strict=True)]
    return _sorted_by_id(_view.concat(kept, VIDEOS_SCHEMA))


def _sorted_by_id(table: pa.Table) -> pa.Table:
    return table.take(pc.sort_indices(table, [("video_id", "ascending")]))


def _check_compatible(stored: CacheAttrs, requested: CacheAttrs, url: str) -> None:
    differences = []
    for field in CacheAttrs.model_fields:
        old, new = getattr(stored, field), getattr(requested, field)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            for key in sorted(set(old) | set(new)):
                if old.get(key) != new.get(key):
                    differences.append(f"{field}.{key}: stored {old.get(key)!r}, requested {new.get(key)!r}")
        else:
            differences.append(f"{field}: stored {old!r}, requested {new!r}")
    if differences:
        raise IncompatibleStoreError(
            f"{url} holds embeddings made differently ({'; '.join(differences)}); "
            "use another --out for this encoder/preprocessing, or delete the store to start over"
        )


def _check_free(root: StoreRoot) -> None:
    """Refuse to create a store over a file or a folder with other content."""
    if root.fs.isfile(root.path):
        raise StoreError(f"{root.url} is a file; pass a folder path as --out")
    # What a creation killed before its last step leaves behind may be reused.
    leftovers = {n for n in root.list_names(root.path) if not n.startswith(f"{STORE_JSON}.tmp-")}
    leftovers -= {STORE_JSON, PARTS, WRITER_LOCK}
    leftovers |= {f"{PARTS}/{n}" for n in root.list_names(root.join(PARTS))} - {f"{PARTS}/zarr.json"}
    if leftovers:
        shown = ", ".join(sorted(leftovers)[:5])
        raise StoreError(
            f"{root.url} exists and is not a latent cache (it holds {shown}); choose another --out"
        )
