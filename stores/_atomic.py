"""Local-filesystem commit primitives: one writer at a time (an advisory lock that names its holder),
durable writes (fsync of files and of the folders that name them) and an atomic folder swap."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import json
import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from stores.errors import StoreError

_RENAME_EXCHANGE = 2  # linux/fs.h


class WriterBusyError(StoreError):
    """Another process holds the writer lock; its holder is named in the message."""


@contextmanager
def writer_lock(path: str, what: str) -> Iterator[None]:
    """Hold the advisory lock file `path` while the block runs; WriterBusyError at once when another
    process holds it. The lock goes with the process (a killed writer never leaves it held)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WriterBusyError(
                f"another writer is writing {what} ({_holder(fd)}); wait for it to finish and run again"
            ) from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return "holder unknown"
    if not isinstance(info, dict) or "pid" not in info:
        return "holder unknown"
    return f"pid {info['pid']} on {info.get('host', '?')} since {info.get('since', '?')}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- durability ----------------------------------------------------------------------------------------


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: str) -> None:
    """fsync every file under `path`, then every folder, deepest first."""
    folders = []
    for folder, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        folders.append(folder)
    for folder in reversed(folders):
        fsync_dir(folder)


# --- building a folder's next version ------------------------------------------------------------------


def link_files(src: str, dst: str, names: list[str]) -> None:
    """Hard-link (copy where links are refused) each '/'-separated `names` from `src` into `dst`."""
    for name in names:
        source = os.path.join(src, *name.split("/"))
        target = os.path.join(dst, *name.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            os.link(source, target)
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            shutil.copy2(source, target)


def exchange(new: str, live: str) -> None:
    """Make folder `new` the folder at `live` in one step; the old content ends up at `new`.

    Linux renameat2(RENAME_EXCHANGE) swaps the two atomically: a reader sees the old folder or the new
    one, never a mix and never nothing. Where the kernel or filesystem cannot, the old folder is moved
    aside and the new one renamed in: readers may then find no folder for that instant, but never
    files of one version under the other's manifest."""
    if _renameat2(new, live):
        return
    aside = f"{new}.old"
    os.rename(live, aside)
    os.rename(new, live)
    os.rename(aside, new)


def _renameat2(a: str, b: str) -> bool:
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    function = getattr(libc, "renameat2", None)
    if function is None:
        return False
    at_fdcwd = -100
    result = function(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), b)
