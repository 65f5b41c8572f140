"""`pretrain-encoder`: regenerate the `tiny` reference encoder from a seed (`make encoder`).

Synthesises the pretraining population (people and scenes disjoint from every benchmark preset),
decodes it once, pretrains (action classification, token-level and motion-guided reconstruction;
nothing about the private attributes or identities) and writes the weights and their checksum into
the package.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from flows.cpu import torch_threads
from flows.progress import progress
from flows.synth import synth_benchmark
from pipeline.data.synthetic import ACTIONS
from pipeline.data.video import get_reader
from pipeline.encoders.pretrain import PretrainConfig, pretrain_tiny
from pipeline.encoders.tiny import TINY_CONFIG, WEIGHTS_FILE, save_tiny_weights
from stores.manifest import read_manifest

# One thread: float sums then happen in the same order on every machine, so `make encoder` gives the
# same bytes on a 2-core laptop and a 64-core server (more threads split the reductions differently).
PRETRAIN_THREADS = 1
OBJECTIVE = (
    "0.5 x action cross-entropy on the pooled embedding + token-level patch reconstruction + "
    "6 x reconstruction of the colours and texture energy around the clip's motion centre from the "
    "pooled embedding, pixels weighted up by their motion energy"
)


def load_training_videos(manifest_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Decode every pretraining video once at the encoder's input size: uint8 `[V, F, S, S, 3]` and
    action indices `[V]` (every video of the `pretrain` preset has the same length F)."""
    table = read_manifest(manifest_path)
    reader = get_reader("decord")
    videos: list[np.ndarray] = []
    labels: list[int] = []
    rows = table.select(["path", "action"]).to_pylist()
    size = int(TINY_CONFIG["resize"])
    with progress("decode pretraining videos", len(rows), "videos") as advance:
        for row in rows:
            videos.append(np.stack(list(reader.iter_frames(row["path"], short_side=size))))
            labels.append(ACTIONS.index(row["action"]))
            advance()
    return np.stack(videos), np.array(labels)


def mirrored_actions() -> list[int]:
    """Index of the action each action becomes when a video is flipped left-right."""
    swap = {"walk_left": "walk_right", "walk_right": "walk_left"}
    return [ACTIONS.index(swap.get(a, a)) for a in ACTIONS]


def pretrain_encoder(
    workdir: str | Path, seed: int = 0, epochs: int | None = None, weights: Path = WEIGHTS_FILE
) -> dict[str, Any]:
    """Synthesise, decode, pretrain and save; returns the recorded training info.
    `epochs` None keeps the shipped recipe's (`PretrainConfig`)."""
    config = PretrainConfig(seed=seed) if epochs is None else PretrainConfig(seed=seed, epochs=epochs)
    data_dir = Path(workdir) / f"pretrain-data-seed{seed}"
    synth = synth_benchmark(data_dir, preset="pretrain", seed=seed)
    videos, labels = load_training_videos(synth.manifest)
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    with progress("pretrain tiny encoder", config.epochs, "epochs") as advance:

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            history.append({"epoch": epoch, **metrics})
            advance(1, **metrics)

        with torch_threads(PRETRAIN_THREADS):
            model = pretrain_tiny(videos, labels, len(ACTIONS), mirrored_actions(), config, on_epoch)
    info = {
        "version": 3,
        "objective": OBJECTIVE,
        "data": {
            "preset": "pretrain",
            "seed": seed,
            "videos": synth.videos,
            "frames_per_video": int(videos.shape[1]),
        },
        "pretrain_config": asdict(config),
        "history": history,
        "train_seconds": round(time.perf_counter() - start, 1),
    }
    info["sha256"] = save_tiny_weights(model, info, weights, weights.with_suffix(".json"))
    return info
