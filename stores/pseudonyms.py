"""Keyed pseudonyms for published ids: HMAC-SHA256 of the owner's video id under a secret that stays with
the private latent cache and never goes into a published folder.

The same store (the same key) always gives a video the same pseudonym, so republishes and appends stay
joinable; without the key nobody can tell which video a pseudonym stands for, nor test a guess (unlike a
plain hash of `jane_doe_kitchen.mp4`). The key's fingerprint (a hash of it, not the key) is published so
that a partition never mixes pseudonyms made under two keys.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable
from typing import Any

from stores._fs import StoreRoot
from stores.errors import StoreError

KEY_FILE = "_pseudonym.key"  # inside the latent cache's root folder
KEY_BYTES = 32
PREFIX = "v-"
DIGITS = 20  # 80 bits of the HMAC: collisions need ~10^12 videos


def default_key_location(store: str) -> str:
    """Where a store keeps its key by default: inside the latent cache's root folder."""
    return (
        StoreRoot.from_url(store).join(KEY_FILE) if "://" not in store else f"{store.rstrip('/')}/{KEY_FILE}"
    )


def load_key(location: str, *, create: bool, storage_options: dict[str, Any] | None = None) -> bytes:
    """The pseudonym key in the file `location`; with `create`, a new random one is written there
    (owner-only) when there is none."""
    parent, _, name = location.rstrip("/").rpartition("/")
    root = StoreRoot.from_url(parent or ".", storage_options)
    path = root.under(root.path, name)
    if root.exists(path):
        key = bytes(root.fs.cat_file(path))
        if len(key) != KEY_BYTES:
            raise StoreError(
                f"{location} is not a pseudonym key ({len(key)} bytes, expected {KEY_BYTES}); restore it "
                "from a backup — a new key would give every published video a new pseudonym"
            )
        return key
    if not create:
        raise StoreError(
            f"{location}: no pseudonym key there; published ids cannot be mapped back without it"
        )
    key = secrets.token_bytes(KEY_BYTES)
    if root.local:
        os.makedirs(root.path, exist_ok=True)
        _write_private(path, key)
        return load_key(location, create=False)  # another writer may have created it first: theirs wins
    root.fs.pipe_file(path, key)
    return key


def _write_private(path: str, key: bytes) -> None:
    """Create `path` with mode 0600 and the key, atomically (O_EXCL: two writers cannot both create one)."""
    tmp = f"{path}.tmp-{secrets.token_hex(8)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails when another writer created the key first: theirs wins
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    dir_fd = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def fingerprint(key: bytes) -> str:
    """A public name for the key (12 hex of a hash of it): tells two keys apart, shows neither."""
    return hashlib.sha256(b"aam-pipeline pseudonym key\0" + key).hexdigest()[:12]


def pseudonym(key: bytes, video_id: str) -> str:
    """`v-` + 20 hex digits of HMAC-SHA256(key, video_id)."""
    return PREFIX + hmac.new(key, video_id.encode(), hashlib.sha256).hexdigest()[:DIGITS]


def pseudonyms(key: bytes, video_ids: Iterable[str]) -> dict[str, str]:
    """{video_id: pseudonym}; StoreError in the (astronomically unlikely) case of a collision."""
    mapping = {v: pseudonym(key, v) for v in video_ids}
    if len(set(mapping.values())) != len(mapping):
        raise StoreError("two video ids got the same pseudonym; publish with original ids or a new key")
    return mapping
