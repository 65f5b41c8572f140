"""Published shards (design §3.3): the public types, the manifest model and the rules on public names."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pydantic

from stores.errors import StoreError

SCHEMA_VERSION = 1
KIND: Literal["aam-pipeline/published-partition"] = "aam-pipeline/published-partition"
MANIFEST = "_manifest.json"
INDEX_DIR = "_index"  # index.faiss + index_ids.parquet
ZARR_DIR = "_zarr"  # zarr group with `emb` [N, D] + clips.parquet
INDEX_FILE = "index.faiss"
INDEX_IDS_FILE = "index_ids.parquet"
ZARR_CLIPS_FILE = "clips.parquet"
KV_PREFIX = "aam."

Dtype = Literal["float32", "float16"]
Normalisation = Literal["l2", "none"]
Mode = Literal["new", "append"]
IndexKind = Literal["flat", "ivf"]

# A published name (column, metadata key, leakage key) that contains one of these is refused: the
# substring test is deliberately blunt — renaming a harmless "drawn_at" is cheaper than a leak.
FORBIDDEN_IN_NAMES = ("private", "path", "raw", "static")
# Leakage results legitimately compare raw and anonymized embeddings, static and motion clips; there
# only attribute columns (`private_*`) and file locations are refused.
FORBIDDEN_IN_LEAKAGE_KEYS = ("private", "path")
# Partition values must read back as strings in every hive reader (DuckDB, polars and pyarrow infer
# types: "1" is an integer, "true" a boolean, "nan" a double), so they start with a letter.
PARTITION_VALUE = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,63}")
_NOT_STRINGS = {"true", "false", "null", "none", "nan", "inf", "infinity"}
_EXTRA_KEY = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class LeakageNotMeasured:
    """Leakage was not measured at publication; `reason` says why (e.g. "the cache has no labels")."""

    reason: str


@dataclass(frozen=True)
class PublicationInfo:
    """What a publication is: where it goes (dataset/encoder/adapter) and what produced it.

    Every field is published. `encoder_id` is a public name (no file locations; see
    `public_encoder_id`); `leakage` maps attribute names (without the `private_` prefix) to the numbers
    measured on the anonymized embeddings, or is `LeakageNotMeasured(reason)`.
    """

    dataset: str
    encoder_id: str
    encoder_sha256: str
    adapter_sha256: str
    adapter_variant: str
    leakage: Mapping[str, Any] | LeakageNotMeasured
    adapter_version: str = ""  # the partition value; "" publishes under "sha-<adapter_sha256[:12]>"
    normalisation: Normalisation = "none"
    extra_metadata: Mapping[str, str] = field(default_factory=dict)
    # What `video_id` holds: "original" (the owner's ids) or "pseudonym:<key fingerprint>" (keyed
    # pseudonyms, stores/pseudonyms.py); a partition never mixes two schemes or two keys.
    id_scheme: str = "original"

    @property
    def encoder_slug(self) -> str:
        """The `encoder=` partition value: the encoder id, lower-cased, other characters as '-'."""
        slug = re.sub(r"[^a-z0-9._-]+", "-", self.encoder_id.lower()).strip("-.")
        return slug if slug[:1].isalpha() else f"enc-{slug}"

    @property
    def adapter_partition(self) -> str:
        """The `adapter=` partition value: the version, or "sha-" + 12 hex digits of the checksum."""
        return self.adapter_version or f"sha-{self.adapter_sha256[:12]}"


MODEL_FILE_SUFFIXES = (".pt", ".pth", ".pt2", ".ts", ".jit", ".torchscript", ".bin", ".safetensors", ".onnx")


def public_encoder_id(encoder_id: str) -> str:
    """A publishable encoder id: `kind:/some/dir/model.pt` -> `kind:model` (no location, no file
    suffix; the weights checksum says the rest)."""
    kind, sep, source = encoder_id.partition(":") if ":" in encoder_id else ("", "", encoder_id)
    name = re.split(r"[/\\]", source.rstrip("/\\"))[-1]
    stem, dot, suffix = name.rpartition(".")
    if dot and stem and f".{suffix.lower()}" in MODEL_FILE_SUFFIXES:
        name = stem
    return f"{kind}{sep}{name}"


# --- the manifest --------------------------------------------------------------------------------------


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")


class FileEntry(_Model):
    """One file of the partition, relative to the partition folder."""

    name: str
    size: int
    sha256: str
    rows: int | None = None  # data files only
    videos: int | None = None  # data files only
    content_sha256: str | None = None  # data files only: rows + embeddings, independent of encoding


class IndexEntry(_Model):
    kind: IndexKind
    metric: Literal["cosine"] = "cosine"
    rows: int
    nlist: int | None = None
    nprobe: int | None = None
    files: list[FileEntry]


class ZarrEntry(_Model):
    rows: int
    files: list[FileEntry]


class Publication(_Model):
    """One call of publish that changed the partition."""

    created_at: str
    mode: Mode
    files: list[str]
    rows: int
    videos: int
    leakage: dict[str, Any]


class PartitionManifest(_Model):
    """`_manifest.json`, written last: its presence means the partition is complete."""

    kind: Literal["aam-pipeline/published-partition"] = KIND
    schema_version: int
    dataset: str
    encoder_id: str
    encoder_slug: str
    encoder_sha256: str
    adapter_version: str
    adapter_partition: str
    adapter_sha256: str
    adapter_variant: str
    dim: int
    dtype: Dtype
    emb_encoding: Literal["BYTE_STREAM_SPLIT", "PLAIN"]
    normalisation: Normalisation
    extra_metadata: dict[str, str]
    id_scheme: str = "original"  # manifests before pseudonyms published original ids
    counts: dict[str, int]  # rows, videos, files
    files: list[FileEntry]
    faiss_index: IndexEntry | None = None
    zarr_copy: ZarrEntry | None = None
    leakage: dict[str, Any]  # {"measured": true, "results": {...}} or {"measured": false, "reason": ...}
    created_at: str
    updated_at: str
    publications: list[Publication]


IDENTITY_FIELDS = (
    "dataset",
    "encoder_id",
    "encoder_sha256",
    "adapter_sha256",
    "adapter_variant",
    "dim",
    "dtype",
    "normalisation",
    "id_scheme",
)


@dataclass(frozen=True)
class PartitionInfo:
    """One published partition, as its manifest describes it; `location` is its folder (path or URL)."""

    dataset: str
    encoder: str
    adapter: str
    location: str
    manifest: PartitionManifest

    @property
    def rows(self) -> int:
        return self.manifest.counts["rows"]

    @property
    def dim(self) -> int:
        return self.manifest.dim


@dataclass(frozen=True)
class PublishResult:
    """What one publish call did; `changed` is False when the partition already held these rows."""

    partition: PartitionInfo
    changed: bool
    files_added: tuple[str, ...]
    rows_added: int
    videos_added: int
    videos_skipped: int  # already published with the same rows and embeddings


# --- rules on what may be published --------------------------------------------------------------------


def forbidden_word(name: str, words: tuple[str, ...] = FORBIDDEN_IN_NAMES) -> str | None:
    """The first forbidden word inside `name` (case-insensitive), or None."""
    low = name.lower()
    return next((w for w in words if w in low), None)


def looks_like_location(text: str) -> bool:
    """True for text that names a file or folder: absolute paths, ~, ./, URLs, Windows drives."""
    return bool(
        text.startswith(("/", "~", "./", "../", "\\"))
        or "://" in text
        or ":/" in text
        or re.match(r"[A-Za-z]:\\", text)
        or re.search(r"(^|[\s=:\"'])/[^\s/]+/", text)
    )


def check_partition_value(what: str, value: str) -> None:
    if not PARTITION_VALUE.fullmatch(value) or value.lower() in _NOT_STRINGS:
        raise StoreError(
            f"{what} {value!r} cannot be a partition value; use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter (e.g. 'v3'), so every hive reader reads it back as text"
        )


def check_info(info: PublicationInfo) -> dict[str, Any]:
    """Refuse what must not be published; returns the manifest's `leakage` record."""
    check_partition_value("dataset", info.dataset)
    if info.adapter_version:
        check_partition_value("adapter_version", info.adapter_version)
    if not info.encoder_id or "/" in info.encoder_id or "\\" in info.encoder_id:
        public = public_encoder_id(info.encoder_id)
        raise StoreError(
            f"encoder_id {info.encoder_id!r} is empty or holds a file location, and published data never "
            f"names files; pass a public name (public_encoder_id gives {public!r})"
        )
    check_partition_value("encoder slug", info.encoder_slug)
    for what, value in (("encoder_sha256", info.encoder_sha256), ("adapter_sha256", info.adapter_sha256)):
        if not _SHA256.fullmatch(value):
            raise StoreError(f"{what} must be 64 lower-case hex digits (a sha256), got {value!r}")
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", info.adapter_variant):
        raise StoreError(f"adapter_variant {info.adapter_variant!r}: use a short name such as 'clip'")
    if not re.fullmatch(r"original|pseudonym:[0-9a-f]{12}", info.id_scheme):
        raise StoreError(f"id_scheme must be 'original' or 'pseudonym:<12 hex>', got {info.id_scheme!r}")
    if info.normalisation not in ("l2", "none"):
        raise StoreError(f"normalisation must be 'l2' or 'none', got {info.normalisation!r}")
    for key, value in info.extra_metadata.items():
        _check_extra(key, value)
    return _leakage_record(info.leakage)


def _check_extra(key: str, value: str) -> None:
    word = forbidden_word(key)
    if word is not None:
        raise StoreError(
            f"extra metadata key {key!r} contains {word!r}: private attributes, raw or static-clip "
            "embeddings and source locations are never published; drop it"
        )
    if not _EXTRA_KEY.fullmatch(key):
        raise StoreError(f"extra metadata key {key!r}: use lower-case letters, digits, '_', '.', '-'")
    if not isinstance(value, str):
        raise StoreError(f"extra metadata {key!r} must be a string, got {type(value).__name__}")
    if looks_like_location(value):
        raise StoreError(f"extra metadata {key!r} = {value!r} names a file location; drop it")


def _leakage_record(leakage: Mapping[str, Any] | LeakageNotMeasured) -> dict[str, Any]:
    if isinstance(leakage, LeakageNotMeasured):
        if not leakage.reason.strip():
            raise StoreError("LeakageNotMeasured needs a reason (e.g. 'the cache has no private_* labels')")
        _check_leakage_value(leakage.reason, "leakage.reason")
        return {"measured": False, "reason": leakage.reason}
    if not isinstance(leakage, Mapping) or not leakage:
        raise StoreError(
            "leakage must be a non-empty dict of measured numbers, or LeakageNotMeasured(reason) "
            "to publish saying clearly that it was not measured"
        )
    _check_leakage_value(leakage, "leakage")
    try:
        results = json.loads(json.dumps(leakage, allow_nan=False, sort_keys=True))
    except (TypeError, ValueError) as e:
        raise StoreError(f"leakage must be plain JSON with finite numbers (use None for 'n/a'): {e}") from e
    return {"measured": True, "results": results}


def _check_leakage_value(value: Any, where: str) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise StoreError(f"{where}: keys must be strings, got {key!r}")
            word = forbidden_word(key, FORBIDDEN_IN_LEAKAGE_KEYS)
            if word is not None:
                raise StoreError(
                    f"{where}.{key}: key contains {word!r}; name attributes without the private_ prefix "
                    "(e.g. 'gender') and never record file locations"
                )
            _check_leakage_value(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_leakage_value(item, f"{where}[{i}]")
    elif isinstance(value, str) and looks_like_location(value):
        raise StoreError(f"{where} = {value!r} names a file location; published data never does")
    elif isinstance(value, str) and "private_" in value.lower():
        raise StoreError(f"{where} = {value!r} names a private_* column; say 'attribute labels' instead")
    elif isinstance(value, float) and not math.isfinite(value):
        raise StoreError(f"{where} = {value}: use None for a number that could not be measured")
