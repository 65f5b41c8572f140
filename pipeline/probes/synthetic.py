"""Synthetic clip embeddings with planted signals, so every probe can run (and be tested) with no video.

A clip embedding is Gaussian noise (unit variance per dimension) plus fixed random directions scaled by
the ``*_signal`` knobs: its action (or background / anomaly) for motion clips, its person's private
attributes and identity for motion and static clips. A signal of 0 plants nothing: probes must then
report chance. People are split train/test, so attribute probes must generalise across people.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.errors import ConfigError
from pipeline.probes.inputs import Clips

GENDERS = ("female", "male")
CLOTHING = ("red", "green", "blue", "black", "white")
SKIN_TONES = 4
FPS = 16.0
CLIP_SECONDS = 1.0  # one clip = 16 frames at 16 fps, clips back to back


@dataclass(frozen=True, eq=False)
class ProbeData:
    """Everything the probes read, in the shapes the probe flow will hand them over."""

    motion: Clips
    static: Clips
    splits: dict[str, str]
    actions: dict[str, str]  # trimmed videos
    segments: dict[str, list[tuple[float, float, str]]]  # untrimmed videos
    anomalies: dict[str, list[tuple[float, float]]]  # anomaly-task videos ([] = normal)
    num_frames: dict[str, int]
    fps: dict[str, float]
    attributes: dict[str, dict[str, object]]  # private attribute → {video_id: value}
    identities: dict[str, str]
    bias_splits: dict[str, str]  # trimmed videos in the bias protocol → train / test


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    d = rng.normal(size=(n, dim))
    return np.asarray(d / np.linalg.norm(d, axis=1, keepdims=True))


def synthetic_probe_data(
    seed: int = 0,
    *,
    dim: int = 64,
    identities: tuple[int, int] = (24, 12),
    num_actions: int = 6,
    actions_per_identity: int = 4,
    clips_per_action_video: int = 3,
    static_per_video: int = 4,
    untrimmed_clips: int = 12,
    anomaly_clips: int = 8,
    action_signal: float = 4.0,
    attribute_signal: float = 3.0,
    identity_signal: float = 3.0,
    anomaly_signal: float = 4.0,
) -> ProbeData:
    """A benchmark of ``identities`` = (train, test) people, each with ``actions_per_identity`` trimmed
    videos, one untrimmed video and one anomaly-task video (every other person's is abnormal)."""
    if anomaly_clips < 3 or untrimmed_clips < 3:
        raise ConfigError("synthetic probe data needs at least 3 clips per untrimmed and anomaly video")
    rng = np.random.default_rng([seed, 2718])
    action_dir = _unit(rng, num_actions + 1, dim) * action_signal  # the last one: background
    background, anomaly_dir = action_dir[num_actions], _unit(rng, 1, dim)[0]
    attr_dirs = {
        "gender": _unit(rng, len(GENDERS), dim),
        "skin_tone": _unit(rng, SKIN_TONES, dim),
        "clothing": _unit(rng, len(CLOTHING), dim),
    }
    actions = [f"action{a}" for a in range(num_actions)]
    motion: dict[str, list[np.ndarray]] = {"emb": [], "vid": [], "idx": []}
    static: dict[str, list[np.ndarray]] = {"emb": [], "vid": [], "idx": []}
    splits: dict[str, str] = {}
    labels: dict[str, str] = {}
    segments: dict[str, list[tuple[float, float, str]]] = {}
    anomalies: dict[str, list[tuple[float, float]]] = {}
    num_frames: dict[str, int] = {}
    attributes: dict[str, dict[str, object]] = {
        "private_gender": {},
        "private_skin_tone": {},
        "private_clothing": {},
    }
    owner: dict[str, str] = {}

    def add_video(vid: str, split: str, person: str, look: dict[str, int], content: np.ndarray) -> None:
        """content (T, D): the motion signal of each clip; appearance and noise are added here."""
        appearance = identity_signal * people[person]
        for k, v in look.items():
            appearance = appearance + attribute_signal * attr_dirs[k][v]
        n = len(content)
        motion["emb"].append(content + appearance + rng.normal(size=(n, dim)))
        motion["vid"].append(np.full(n, vid))
        motion["idx"].append(np.arange(n))
        static["emb"].append(appearance + rng.normal(size=(static_per_video, dim)))
        static["vid"].append(np.full(static_per_video, vid))
        static["idx"].append(np.arange(static_per_video))
        splits[vid] = split
        num_frames[vid] = int(n * CLIP_SECONDS * FPS)
        owner[vid] = person
        attributes["private_gender"][vid] = GENDERS[look["gender"]]
        attributes["private_skin_tone"][vid] = look["skin_tone"]
        attributes["private_clothing"][vid] = CLOTHING[look["clothing"]]

    people = {f"p{i:03d}": d for i, d in enumerate(_unit(rng, sum(identities), dim))}
    for i, person in enumerate(people):
        split = "train" if i < identities[0] else "test"
        look = {k: int(rng.integers(len(d))) for k, d in attr_dirs.items()}
        for k, a in enumerate(rng.permutation(num_actions)[:actions_per_identity]):
            vid = f"{person}_act{k}"
            add_video(vid, split, person, look, np.tile(action_dir[a], (clips_per_action_video, 1)))
            labels[vid] = actions[a]
        # Untrimmed: segments on whole-clip boundaries, background between them.
        content = np.tile(background, (untrimmed_clips, 1))
        segs, t = [], int(rng.integers(1, 3))
        while t + 2 <= untrimmed_clips:
            end = min(t + int(rng.integers(2, 4)), untrimmed_clips)
            a = int(rng.integers(num_actions))
            content[t:end] = action_dir[a]
            segs.append((t * CLIP_SECONDS, end * CLIP_SECONDS, actions[a]))
            t = end + int(rng.integers(1, 3))
        add_video(f"{person}_det0", split, person, look, content)
        segments[f"{person}_det0"] = segs
        # Anomaly task: every other person's video has an abnormal episode of one or two clips.
        content = np.tile(background, (anomaly_clips, 1))
        intervals: list[tuple[float, float]] = []
        if i % 2 == 1:
            start = int(rng.integers(1, anomaly_clips - 1))
            end = min(start + int(rng.integers(1, 3)), anomaly_clips)
            content[start:end] += anomaly_signal * anomaly_dir
            intervals.append((start * CLIP_SECONDS, end * CLIP_SECONDS))
        add_video(f"{person}_anom0", split, person, look, content)
        anomalies[f"{person}_anom0"] = intervals

    index = np.concatenate(motion["idx"])
    return ProbeData(
        motion=Clips(
            np.concatenate(motion["emb"]).astype(np.float32),
            np.concatenate(motion["vid"]),
            index,
            (index * CLIP_SECONDS).astype(np.float32),
            ((index + 1) * CLIP_SECONDS).astype(np.float32),
        ),
        static=Clips(
            np.concatenate(static["emb"]).astype(np.float32),
            np.concatenate(static["vid"]),
            np.concatenate(static["idx"]),
        ),
        splits=splits,
        actions=labels,
        segments=segments,
        anomalies=anomalies,
        num_frames=num_frames,
        fps=dict.fromkeys(splits, FPS),
        attributes=attributes,
        identities=owner,
        bias_splits=_bias_splits(labels, splits, attributes["private_gender"], rng),
    )


def _bias_splits(
    actions: dict[str, str], splits: dict[str, str], gender: dict[str, object], rng: np.random.Generator
) -> dict[str, str]:
    """Gender-skewed train subset (95/5; one "shortcut" action skewed the other way) and a balanced
    test subset, from the trimmed videos — the paper's bias protocol."""
    names = sorted(set(actions.values()))
    shortcut = names[int(rng.integers(len(names)))]
    chosen: dict[str, str] = {}
    for action in names:
        for split in ("train", "test"):
            pool = sorted(v for v, a in actions.items() if a == action and splits[v] == split)
            by = {g: [v for v in pool if gender[v] == g] for g in GENDERS}
            if split == "test":
                n = min(len(by[g]) for g in GENDERS)
                take = {g: n for g in GENDERS}
            else:
                major = "female" if action == shortcut else "male"
                minor = "male" if major == "female" else "female"
                take = {major: len(by[major]), minor: min(len(by[minor]), max(1, round(len(by[major]) / 19)))}
            for g in GENDERS:
                picked = rng.permutation(len(by[g]))[: take[g]]
                chosen.update({by[g][int(i)]: split for i in picked})
    return chosen
