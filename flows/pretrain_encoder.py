"""`pretrain-encoder`: regenerate the `tiny` reference encoder from a seed (`make encoder`).

Synthesises the pretraining population (people and scenes disjoint from every benchmark preset),
decodes it once, pretrains (action classification + token-level reconstruction; nothing about the
private attributes) and writes the weights and their checksum into the package.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from flows.progress import progress
from flows.synth import synth_benchmark
from pipeline.data.clips import ClipSpec, cut_clips, plan_static, plan_windows
from pipeline.data.synthetic import ACTIONS
from pipeline.data.video import get_reader
from pipeline.encoders.pretrain import PretrainConfig, pretrain_tiny
from pipeline.encoders.tiny import TINY_CONFIG, WEIGHTS_FILE, save_tiny_weights
from stores.manifest import read_manifest

STATIC_PER_VIDEO = 2


def load_training_clips(manifest_path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode every pretraining video once: motion clips `[N, T, S, S, 3]` uint8, their action
    indices `[N]`, and static frames `[M, S, S, 3]` uint8, with S the encoder's input size."""
    table = read_manifest(manifest_path)
    reader = get_reader("decord")
    spec = ClipSpec(frames_per_clip=int(TINY_CONFIG["frames_per_clip"]))
    clips: list[np.ndarray] = []
    labels: list[int] = []
    statics: list[np.ndarray] = []
    rows = table.select(["path", "action"]).to_pylist()
    with progress("decode pretraining videos", len(rows), "videos") as advance:
        for row in rows:
            info = reader.probe(row["path"])
            windows = plan_windows(info.num_frames, spec)
            frames = reader.iter_frames(row["path"], short_side=int(TINY_CONFIG["resize"]))
            for clip in cut_clips(frames, windows, plan_static(info.num_frames, STATIC_PER_VIDEO)):
                if clip.kind == "motion":
                    clips.append(clip.frames)
                    labels.append(ACTIONS.index(row["action"]))
                else:
                    statics.append(clip.frames[0])
            advance()
    return np.stack(clips), np.array(labels), np.stack(statics)


def pretrain_encoder(
    workdir: str | Path, seed: int = 0, epochs: int = 8, weights: Path = WEIGHTS_FILE
) -> dict[str, Any]:
    """Synthesise, decode, pretrain and save; returns the recorded training info."""
    config = PretrainConfig(seed=seed, epochs=epochs)
    data_dir = Path(workdir) / f"pretrain-data-seed{seed}"
    synth = synth_benchmark(data_dir, preset="pretrain", seed=seed)
    clips, labels, statics = load_training_clips(synth.manifest)
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    with progress("pretrain tiny encoder", config.epochs, "epochs") as advance:

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            history.append({"epoch": epoch, **metrics})
            advance(1, **metrics)

        model = pretrain_tiny(clips, labels, statics, len(ACTIONS), config, on_epoch)
    info = {
        "objective": "action cross-entropy on the pooled embedding + token-level patch reconstruction",
        "data": {
            "preset": "pretrain",
            "seed": seed,
            "videos": synth.videos,
            "motion_clips": len(clips),
            "static_frames": len(statics),
        },
        "pretrain_config": asdict(config),
        "history": history,
        "train_seconds": round(time.perf_counter() - start, 1),
    }
    info["sha256"] = save_tiny_weights(model, info, weights, weights.with_suffix(".json"))
    return info
