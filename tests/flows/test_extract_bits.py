"""Embeddings do not depend on how clips were batched: a resumed run, whose batches are cut
differently from a clean run's, stores the same bits (the encoder always sees one batch shape)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flows.extract import ExtractConfig, _Encoder, _Video, load_encoder
from tests.flows.extract_support import CROP, FRAMES, encoder_config_kwargs

Clip = tuple[str, str, np.ndarray]  # (name, "motion" | "static", uint8 pixels)


def _embed(encoder_file: Path, batches: list[list[Clip]]) -> dict[str, np.ndarray]:
    """name -> embedding of every clip, the clips handed to the batcher and flushed batch by batch."""
    encoder = load_encoder(ExtractConfig(**encoder_config_kwargs(encoder_file)))
    enc = _Encoder(encoder, batch_size=8, tokens=False)
    videos: dict[str, tuple[str, _Video]] = {}
    for batch in batches:
        for name, kind, pixels in batch:
            video = _Video(row=len(videos), fingerprint=None)
            video.motion = np.zeros((1, encoder.dim), np.float32)
            video.static = np.zeros((1, encoder.dim), np.float32)
            videos[name] = (kind, video)
            enc.add(video, kind, 0, pixels)
        enc.flush()
    out = {}
    for name, (kind, video) in videos.items():
        rows = video.motion if kind == "motion" else video.static
        assert rows is not None
        out[name] = rows[0]
    return out


def test_an_embedding_is_the_same_bits_in_any_batch(script_encoder: Path) -> None:
    rng = np.random.default_rng(0)
    motion = [(f"m{k}", "motion", rng.integers(0, 256, (FRAMES, CROP, CROP, 3), np.uint8)) for k in range(5)]
    static = [(f"s{k}", "static", rng.integers(0, 256, (CROP, CROP, 3), np.uint8)) for k in range(5)]
    alone = _embed(script_encoder, [[c] for c in motion + static])  # batches of one, as a resume's tail
    together = _embed(script_encoder, [motion[:3] + static[:4], motion[3:] + static[4:]])
    assert sorted(alone) == sorted(together)
    for name, embedding in alone.items():
        np.testing.assert_array_equal(embedding, together[name], err_msg=name)
