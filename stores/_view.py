"""Reading many parts as one: which part owns each video, the sorted row index, gathering embeddings."""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import zarr

from stores._parts import PartMarker
from stores.errors import StoreError

BLOCK_CACHE_BYTES = 256 << 20


@dataclass(frozen=True)
class TrustedPart:
    part_id: str
    folder: str
    marker: PartMarker


@dataclass(frozen=True)
class _Attempt:
    part: int  # index into the parts list, which is sorted by part_id
    when: tuple[int, str]  # (written_at_ns, part_id): later attempts sort last
    ok: bool
    fingerprint: tuple[int, int]  # (size, mtime_ns)


@dataclass(frozen=True)
class Resolution:
    """Per video: the part whose ok rows are kept, its file fingerprint, the part of its latest failure."""

    owner: dict[str, int]
    fingerprint: dict[str, tuple[int, int]]
    failed: dict[str, int]

    def owned_by(self, count: int) -> list[list[str]]:
        """For each of `count` parts, the video ids whose ok rows readers keep from it."""
        owned: list[list[str]] = [[] for _ in range(count)]
        for video_id, part in self.owner.items():
            owned[part].append(video_id)
        return owned

    def failed_in(self, count: int) -> list[list[str]]:
        failed: list[list[str]] = [[] for _ in range(count)]
        for video_id, part in self.failed.items():
            failed[part].append(video_id)
        return failed


def resolve(parts: Sequence[TrustedPart], videos: Sequence[pa.Table]) -> Resolution:
    """Decide, for every video seen in any part, which attempt readers believe.

    The latest attempt of a video decides: when it failed, the video is an error and none of its
    older rows are served (they came from a file that has changed or gone since); when it was ok,
    readers keep the rows of that file version (same size and mtime) from the part with the smallest
    part_id, so a re-run unit adds no duplicates and a changed file's re-extraction replaces the old
    rows: a reader sees one version of each video.
    """
    attempts: dict[str, list[_Attempt]] = defaultdict(list)
    for index, (part, table) in enumerate(zip(parts, videos, strict=True)):
        when = (part.marker.written_at_ns, part.part_id)
        columns = [table[name].to_pylist() for name in ("video_id", "status", "size", "mtime_ns")]
        for video_id, status, size, mtime_ns in zip(*columns, strict=True):
            ok = status == "ok"
            file = (int(size), int(mtime_ns)) if ok else (-1, -1)
            attempts[video_id].append(_Attempt(index, when, ok, file))
    owner: dict[str, int] = {}
    fingerprint: dict[str, tuple[int, int]] = {}
    failed: dict[str, int] = {}
    for video_id, tries in attempts.items():
        latest = max(tries, key=lambda a: a.when)
        if not latest.ok:
            failed[video_id] = latest.part
            continue
        newest = latest.fingerprint
        owner[video_id] = min(a.part for a in tries if a.ok and a.fingerprint == newest)
        fingerprint[video_id] = newest
    return Resolution(owner, fingerprint, failed)


def concat(tables: Sequence[pa.Table], empty: pa.Schema) -> pa.Table:
    """Concatenate tables whose extra (manifest) columns may differ between parts."""
    if not tables:
        return empty.empty_table()
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise StoreError(f"parts disagree on a column's type and cannot be read together: {e}") from e


def keep(table: pa.Table, video_ids: list[str]) -> pa.Array:
    """Boolean mask of the rows of `table` that belong to `video_ids`."""
    return pc.is_in(table["video_id"], value_set=pa.array(video_ids, pa.string()))


@dataclass(frozen=True)
class RowIndex:
    """Rows kept from all parts in reading order; row i lives at row[i] of part[i]'s array."""

    table: pa.Table
    part: np.ndarray  # (N,) int64
    row: np.ndarray  # (N,) int64


def row_index(
    tables: Sequence[pa.Table], owned: Sequence[list[str]], index_column: str, empty: pa.Schema
) -> RowIndex:
    """Keep the owned rows of every part's table and sort them by (video_id, `index_column`)."""
    kept: list[pa.Table] = []
    parts: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    for index, (table, video_ids) in enumerate(zip(tables, owned, strict=True)):
        mask = keep(table, video_ids)
        kept.append(table.filter(mask))
        found = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
        rows.append(found.astype(np.int64))
        parts.append(np.full(len(found), index, dtype=np.int64))
    table = concat(kept, empty)
    part = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    order = pc.sort_indices(table, [("video_id", "ascending"), (index_column, "ascending")]).to_numpy()
    return RowIndex(table.take(order), part[order], row[order])


def load_all(
    arrays: Sequence[zarr.Array], part: np.ndarray, row: np.ndarray, trailing: tuple[int, ...]
) -> np.ndarray:
    """Rows (part[i], row[i]) of the parts' arrays as one float32 array; reads each part whole once."""
    out = np.empty((len(part), *trailing), dtype=np.float32)  # (N, *trailing)
    for index, positions in groups(part):
        out[positions] = np.asarray(arrays[index][:])[row[positions]]
    return out


def groups(keys: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(key, positions of that key in ascending order) for each distinct key, in one sort."""
    order = np.argsort(keys, kind="stable")
    bounds = np.flatnonzero(np.diff(keys[order])) + 1
    for positions in np.split(order, bounds):
        if len(positions):
            yield int(keys[positions[0]]), positions


class BlockCache:
    """Decoded row blocks of the parts' arrays, least recently used evicted first within a byte budget.

    Streaming in (video_id, clip_index) order walks each part forward, so a block read for one chunk
    is usually needed again by the next; the budget bounds memory when many parts interleave.
    """

    def __init__(self, arrays: Sequence[zarr.Array], budget_bytes: int | None = None) -> None:
        self._arrays = arrays
        self._budget = BLOCK_CACHE_BYTES if budget_bytes is None else budget_bytes
        self._blocks: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._bytes = 0

    def gather(self, part: np.ndarray, row: np.ndarray, trailing: tuple[int, ...]) -> np.ndarray:
        """Rows (part[i], row[i]) as one float32 array of shape (len(part), *trailing)."""
        out = np.empty((len(part), *trailing), dtype=np.float32)
        for index, selected in groups(part):
            block_rows = self._arrays[index].chunks[0]
            blocks = row[selected] // block_rows
            for block, in_blocks in groups(blocks):
                in_block = selected[in_blocks]
                data = self._block(index, block, block_rows)
                out[in_block] = data[row[in_block] - block * block_rows]
        return out

    def _block(self, part: int, block: int, block_rows: int) -> np.ndarray:
        key = (part, block)
        if key in self._blocks:
            self._blocks.move_to_end(key)
            return self._blocks[key]
        data = np.asarray(self._arrays[part][block * block_rows : (block + 1) * block_rows], dtype=np.float32)
        self._blocks[key] = data
        self._bytes += data.nbytes
        while self._bytes > self._budget and len(self._blocks) > 1:
            _, evicted = self._blocks.popitem(last=False)
            self._bytes -= evicted.nbytes
        return data
