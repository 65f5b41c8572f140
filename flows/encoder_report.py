"""Figures of raw latents in a store: what the encoder keeps (actions) and leaks (attributes, identity)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.encoders.evaluate import EmbeddingSet, EncoderFigures, encoder_figures
from stores.latent_cache import LatentCache
from stores.manifest import private_columns


def store_figures(store: str | Path, seed: int = 0) -> EncoderFigures:
    """Linear-probe figures of the raw embeddings in `store` (needs split, action and private_* labels)."""
    view = LatentCache.open(store).read()
    videos = view.videos
    ids = videos.column("video_id").to_pylist()
    index = {v: i for i, v in enumerate(ids)}
    motion_video = np.array([index[v] for v in view.clips.column("video_id").to_pylist()])
    static_video = np.array([index[v] for v in view.static_clips.column("video_id").to_pylist()])
    private = {name: videos.column(name).to_pylist() for name in private_columns(videos)}
    return encoder_figures(
        EmbeddingSet(view.motion, motion_video),
        EmbeddingSet(view.static, static_video),
        videos.column("split").to_pylist(),
        videos.column("action").to_pylist(),
        private,
        seed=seed,
    )
