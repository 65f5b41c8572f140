"""Planted features: a seconds-fast stand-in for a latent cache, for tests and benchmarks.

Each person has an appearance (gender, skin tone, clothing colour + an identity part), each video a
motion (its action + a per-video nuisance), each clip some noise. Both latents pass through one fixed
random ReLU network, so appearance and motion are entangled non-linearly in the embedding, as in a
real encoder. Static clips carry the video's appearance with a "still" motion. Split by person.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.adapter.data import AdapterData

ATTRIBUTES = {"gender": 2, "skin_tone": 4, "clothing_color": 5}


@dataclass(frozen=True)
class PlantedData:
    """Training data plus the private labels that exist only to measure leakage."""

    data: AdapterData
    private: dict[str, np.ndarray]  # name -> (V,) int: "identity" and every ATTRIBUTES key


def planted_features(
    *,
    persons: tuple[int, int, int] = (24, 8, 16),
    videos_per_person: int = 4,
    clips_per_video: int = 4,
    static_per_video: int = 6,
    dim: int = 64,
    actions: int = 6,
    sequence_videos: bool = True,
    appearance: float = 1.0,
    seed: int = 0,
) -> PlantedData:
    """Planted features; with `sequence_videos`, each person also has one untrimmed detection video
    (12 clips) or one anomaly video (8 clips). `appearance` scales the appearance latent."""
    rng = np.random.default_rng([seed, 2718])
    k = max(dim // 4, 4)
    attr_emb = {name: rng.standard_normal((n, k)) for name, n in ATTRIBUTES.items()}
    motion_emb = rng.standard_normal((actions + 2, k)) * 1.5  # + background, anomaly
    still = rng.standard_normal(k)
    hidden = 2 * dim
    W1 = rng.standard_normal((hidden, 2 * k)) / np.sqrt(2 * k)
    b1 = rng.standard_normal(hidden) * 0.5
    W2 = rng.standard_normal((dim, hidden)) / np.sqrt(hidden)
    Lin = rng.standard_normal((dim, 2 * k)) / np.sqrt(2 * k)

    def embed(a: np.ndarray, m: np.ndarray) -> np.ndarray:  # (n, k), (n, k) -> (n, D)
        h = np.concatenate([a, m], axis=1)
        out: np.ndarray = np.maximum(h @ W1.T + b1, 0) @ W2.T + 0.5 * h @ Lin.T
        return (out + 0.05 * rng.standard_normal(out.shape)).astype(np.float32)

    motion: list[np.ndarray] = []
    video: list[np.ndarray] = []
    static: list[np.ndarray] = []
    static_video: list[np.ndarray] = []
    split: list[str] = []
    action: list[np.ndarray] = []
    detection: list[np.ndarray] = []
    anomaly: list[int] = []
    private: dict[str, list[int]] = {"identity": [], **{name: [] for name in ATTRIBUTES}}
    split_names = ["train"] * persons[0] + ["val"] * persons[1] + ["test"] * persons[2]
    for person, split_name in enumerate(split_names):
        attrs = {name: int(rng.integers(n)) for name, n in ATTRIBUTES.items()}
        look = sum(attr_emb[name][attrs[name]] for name in ATTRIBUTES) + 0.5 * rng.standard_normal(k)
        look = appearance * look
        plans: list[tuple[str, np.ndarray]] = []  # (kind, per-clip motion class)
        for a in rng.permutation(actions)[:videos_per_person]:
            plans.append(("action", np.full(clips_per_video, a)))
        if sequence_videos and person % 2 == 0:
            seq = np.full(12, actions)  # background, with two action segments
            seq[2:5], seq[7:10] = rng.integers(actions), rng.integers(actions)
            plans.append(("detection", seq))
        elif sequence_videos:
            seq = np.full(8, 0)  # a normal video walks (class 0) throughout
            if rng.random() < 0.5:
                seq[3:6] = actions + 1
            plans.append(("anomaly", seq))
        for kind, seq in plans:
            v = len(split)
            split.append(split_name)
            private["identity"].append(person)
            for name in ATTRIBUTES:
                private[name].append(attrs[name])
            nuisance = 0.4 * rng.standard_normal(k)
            m = motion_emb[seq] + nuisance + 0.3 * rng.standard_normal((len(seq), k))
            motion.append(embed(np.repeat(look[None], len(seq), 0), m))
            video.append(np.full(len(seq), v))
            s = still + 0.3 * rng.standard_normal((static_per_video, k))
            static.append(embed(np.repeat(look[None], static_per_video, 0), s))
            static_video.append(np.full(static_per_video, v))
            action.append(seq if kind == "action" else np.full(len(seq), -1))
            detection.append(seq if kind == "detection" else np.full(len(seq), -1))
            anomaly.append(-1 if kind != "anomaly" else int((seq == actions + 1).any()))
    data = AdapterData(
        motion=np.concatenate(motion),
        video=np.concatenate(video).astype(np.int64),
        static=np.concatenate(static),
        static_video=np.concatenate(static_video).astype(np.int64),
        split=np.array(split),
        action=np.concatenate(action).astype(np.int64),
        detection=np.concatenate(detection).astype(np.int64) if sequence_videos else None,
        detection_classes=actions if sequence_videos else 0,
        anomaly=np.array(anomaly, dtype=np.int64) if sequence_videos else None,
    )
    return PlantedData(data=data, private={name: np.array(v) for name, v in private.items()})
