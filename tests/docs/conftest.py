"""The tiny publication the docs' snippets run against: one place, so a change of publish's defaults
lands here once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from stores.published import publish
from tests.stores.test_published_support import clips_and_emb, make_info

DIM = 16
# Ids unlike any the docs could name: a snippet that looks up a hard-coded clip fails here.
VIDEOS = [f"shop-cam{i:02d}" for i in range(12)]


@dataclass(frozen=True)
class Publication:
    root: Path  # what `anonymize --out` was given; holds dataset=demo/encoder=tiny/adapter=v1 and v2
    clip_ids: list[str]  # v1's clips, in published order
    unit: np.ndarray  # (N, DIM) v1's embeddings scaled to unit length

    def top_k(self, query: str, k: int = 5) -> list[str]:
        scores = self.unit @ self.unit[self.clip_ids.index(query)]
        return [self.clip_ids[i] for i in np.argsort(-scores)[:k]]


@pytest.fixture(scope="session")
def publication(tmp_path_factory: pytest.TempPathFactory) -> Publication:
    """demo/tiny/v1 (not unit length, with a flat faiss index) and a v2 beside it that readers must
    filter out."""
    root = tmp_path_factory.mktemp("docs") / "published"
    clips, emb = clips_and_emb(VIDEOS, dim=DIM, unit=False)
    publish(root, make_info("v1", normalisation="none"), clips, emb, faiss_index="flat", rows_per_file=10)
    other_clips, other = clips_and_emb(VIDEOS, dim=DIM, salt="v2", unit=False)
    publish(root, make_info("v2", normalisation="none"), other_clips, other)
    ids = [
        f"{v}#{i}"
        for v, i in zip(clips["video_id"].to_pylist(), clips["clip_index"].to_pylist(), strict=True)
    ]
    return Publication(root, ids, emb / np.linalg.norm(emb, axis=1, keepdims=True))


@dataclass(frozen=True)
class Store:
    url: Path  # a latent cache with two parts and one failed video
    videos: int  # videos that completed ok
    motion_clips: int


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    from stores.latent_cache import LatentCache
    from tests.stores.test_latent_cache import ATTRS, make_part

    url = tmp_path_factory.mktemp("docs") / "store.zarr"
    cache = LatentCache.create_or_open(url, ATTRS)
    cache.write_part("p1", make_part(VIDEOS[:3], clips=3))
    cache.write_part("p2", make_part(VIDEOS[3:6], clips=2, failed=[VIDEOS[5]], reason="corrupt"))
    return Store(url, videos=5, motion_clips=3 * 3 + 2 * 2)
