"""Tiny synthetic publications shared by the test_published* files (no tests here)."""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from stores.published import LeakageNotMeasured, PublicationInfo

DIM = 8
ENCODER_SHA = "e0" * 32
ADAPTER_SHA = {"v1": "a1" * 32, "v2": "a2" * 32}
LEAKAGE = {"gender": {"cmap_linear": 0.52, "cmap_mlp": 0.55, "raw_cmap_mlp": 0.71}, "chance": 0.5}


def video_ids(count: int, start: int = 0) -> list[str]:
    return [f"vid-{i:03d}" for i in range(start, start + count)]


def clips_and_emb(
    videos: Sequence[str], clips_per_video: int = 3, dim: int = DIM, salt: str = "v1", unit: bool = True
) -> tuple[pa.Table, np.ndarray]:
    """Clip rows and embeddings (N, dim); each embedding depends only on (video, clip, salt)."""
    rows = [(v, i) for v in videos for i in range(clips_per_video)]
    emb = np.stack(
        [np.random.default_rng(zlib.crc32(f"{v}#{i}/{salt}".encode())).standard_normal(dim) for v, i in rows]
    ).astype(np.float32)
    if unit:
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    clips = pa.table(
        {
            "video_id": [v for v, _ in rows],
            "clip_index": pa.array([i for _, i in rows], pa.int32()),
            "t_start_s": pa.array([1.5 * i for _, i in rows], pa.float32()),
            "t_end_s": pa.array([1.5 * i + 2.0 for _, i in rows], pa.float32()),
        }
    )
    return clips, emb


def make_info(
    version: str = "v1",
    *,
    leakage: Mapping[str, Any] | LeakageNotMeasured = LEAKAGE,
    normalisation: str = "l2",
    **changes: Any,
) -> PublicationInfo:
    fields: dict[str, Any] = {
        "dataset": "demo",
        "encoder_id": "tiny",
        "encoder_sha256": ENCODER_SHA,
        "adapter_sha256": ADAPTER_SHA.get(version, "a9" * 32),
        "adapter_variant": "clip",
        "adapter_version": version,
        "leakage": leakage,
        "normalisation": normalisation,
    }
    return PublicationInfo(**(fields | changes))


def partition(out: Path, version: str = "v1") -> Path:
    return out / "dataset=demo" / "encoder=tiny" / f"adapter={version}"


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder` but the writer locks: relative path -> (bytes, mtime_ns)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.startswith(".lock-"):
            found[path.relative_to(folder).as_posix()] = (path.read_bytes(), os.stat(path).st_mtime_ns)
    return found
