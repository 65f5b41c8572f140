"""Where a store lives: a local folder or any fsspec URL, with the few byte operations stores need."""

from __future__ import annotations

import json
import os
import posixpath
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem
from zarr.abc.store import Store
from zarr.storage import FsspecStore, LocalStore


@dataclass(frozen=True)
class StoreRoot:
    """The root folder of a store; `local` stores can rename folders atomically, others cannot."""

    url: str
    path: str
    local: bool
    storage_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_url(cls, url: str | Path, storage_options: dict[str, Any] | None = None) -> StoreRoot:
        """A plain path or file:// URL is local; anything else (memory://, s3://, …) goes through fsspec."""
        text = str(url)
        options = dict(storage_options or {})
        if isinstance(url, Path) or "://" not in text or text.startswith("file://"):
            local_path = text.removeprefix("file://")
            return cls(url=text, path=os.path.abspath(local_path), local=True, storage_options=options)
        _, path = fsspec.core.url_to_fs(text, **options)
        return cls(url=text.rstrip("/"), path=path.rstrip("/"), local=False, storage_options=options)

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        if self.local:
            return LocalFileSystem()
        fs, _ = fsspec.core.url_to_fs(self.url, **self.storage_options)
        return fs

    def join(self, *names: str) -> str:
        """The path of `names` under the root, in the filesystem's own notation."""
        return self.under(self.path, *names)

    def under(self, folder: str, *names: str) -> str:
        """The path of `names` under `folder` (a path inside this root)."""
        return os.path.join(folder, *names) if self.local else posixpath.join(folder, *names)

    def zarr_store(self, path: str, *, read_only: bool) -> Store:
        """A zarr store rooted at `path` (a folder under this root)."""
        if self.local:
            return LocalStore(path, read_only=read_only)
        url = self.fs.unstrip_protocol(path)
        return FsspecStore.from_url(url, storage_options=self.storage_options, read_only=read_only)

    # --- plain files -------------------------------------------------------------------------------

    def exists(self, path: str) -> bool:
        fs = self.fs
        fs.invalidate_cache(posixpath.dirname(path) if not self.local else path)
        return bool(fs.exists(path))

    def read_json(self, path: str) -> Any:
        """Parsed JSON at `path`; FileNotFoundError when absent, ValueError when not JSON."""
        return json.loads(self.fs.cat_file(path))

    def write_json(self, path: str, obj: Any) -> None:
        """Write JSON; locally through a temporary file and a rename so a reader never sees half of it."""
        data = json.dumps(obj, indent=2, sort_keys=True).encode() + b"\n"
        if not self.local:
            self.fs.pipe_file(path, data)
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)

    def write_table(self, path: str, table: pa.Table) -> None:
        if self.local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        with self.fs.open(path, "wb") as f:
            pq.write_table(table, f, compression="zstd")

    def read_table(self, path: str, columns: list[str] | None = None) -> pa.Table:
        with self.fs.open(path, "rb") as f:
            return pq.read_table(f, columns=columns)

    def parquet_rows(self, path: str) -> int:
        """Row count from the Parquet footer only."""
        with self.fs.open(path, "rb") as f:
            return int(pq.ParquetFile(f).metadata.num_rows)

    # --- folders -----------------------------------------------------------------------------------

    def list_names(self, path: str) -> list[str]:
        """Names of the entries directly under `path`; empty when it does not exist."""
        if self.local:
            return sorted(os.listdir(path)) if os.path.isdir(path) else []
        # Listings may be cached by the filesystem object while zarr writes through another one.
        self.fs.invalidate_cache(path)
        try:
            entries = self.fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        return sorted(posixpath.basename(str(e).rstrip("/")) for e in entries)

    def file_sizes(self, path: str) -> dict[str, int]:
        """Size of every file under `path`, keyed by its '/'-separated path relative to `path`."""
        sizes: dict[str, int] = {}
        if self.local:
            for folder, _, files in os.walk(path):
                for name in files:
                    full = os.path.join(folder, name)
                    sizes[os.path.relpath(full, path).replace(os.sep, "/")] = os.path.getsize(full)
            return sizes
        self.fs.invalidate_cache(path)
        prefix = path.rstrip("/") + "/"
        for name, info in self.fs.find(path, detail=True).items():
            full = str(name)
            if info.get("type") == "file" and full.startswith(prefix):
                sizes[full[len(prefix) :]] = int(info["size"])
        return sizes

    def remove_tree(self, path: str) -> None:
        if self.exists(path):
            self.fs.rm(path, recursive=True)

    def rename_dir(self, src: str, dst: str) -> None:
        """Atomic local rename; raises OSError when `dst` already exists and is not empty."""
        assert self.local, "only local folders can be renamed atomically"
        os.rename(src, dst)
