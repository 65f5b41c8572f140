"""The synthetic privacy benchmark: people-like actors whose private attributes are pure appearance
and whose actions are pure motion, in cluttered scenes with camera jitter and noise.

`plan_benchmark(preset, seed)` decides every video (deterministic for a seed); `render_frames(spec)`
draws one. Identities are split by person: no identity of the test split is seen in training, so
attribute probes must generalise rather than memorise people. Populations: `tiny`, `demo` and `bench`
draw people "s…"; `dev` (the development benchmark recipes are chosen on) draws "d…", `pretrain` (the
reference encoder's data) "p…" and `stills` (still images, the paper's VISPR stand-in) "v…", each from
its own random stream. Stills' scene seeds lie in [2**31, 2**32), every other preset's below, so no
still shows a scene of another preset.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypedDict

import numpy as np

from pipeline.data.render import (
    CLOTHING_COLORS,
    CLOTHING_PATTERNS,
    GENDERS,
    GLASSES_COLORS,
    HAIR_COLORS,
    SKIN_TONES,
    TROUSER_COLORS,
    Appearance,
    Pose,
    draw_actor,
    fill_circle,
    fill_polygon,
)
from pipeline.errors import ConfigError

ACTIONS = ("wave", "jump", "walk_left", "walk_right", "squat", "spin", "clap", "kick")
ANOMALIES = ("fall", "erratic")
FPS = 16
Task = Literal["action", "detection", "anomaly", "still"]
STILL_SEEDS = 2**31  # offset of every still's scene seed: disjoint from every video's (< 2**31)


@dataclass(frozen=True)
class Preset:
    """Sizes of one benchmark preset."""

    identities: tuple[int, int, int]  # train, val, test people
    actions_per_identity: int  # trimmed clips per person, distinct actions
    trimmed_frames: int
    detection_per_identity: float  # untrimmed videos per person (fractional: some people)
    detection_frames: int
    anomaly_per_identity: float
    anomaly_frames: int
    size: int = 128  # frame height = width
    stills_per_identity: int = 0  # > 0: a stills preset (png images only, no videos)


PRESETS: dict[str, Preset] = {
    "tiny": Preset((16, 4, 8), 3, 32, 0.25, 96, 0.25, 64),
    "demo": Preset((64, 16, 40), 5, 48, 0.5, 160, 0.5, 96),
    "bench": Preset((240, 60, 120), 6, 48, 0.5, 240, 0.5, 128),
    "pretrain": Preset((320, 0, 0), 4, 32, 0.0, 0, 0.0, 0),
    "dev": Preset((64, 16, 40), 5, 48, 0.5, 160, 0.5, 96),
    "stills": Preset((80, 20, 60), 0, 1, 0.0, 0, 0.0, 0, stills_per_identity=2),
}
# preset -> (identity prefix, random stream): one population per entry, disjoint from the others.
POPULATIONS: dict[str, tuple[str, int]] = {
    "pretrain": ("p", 7919),
    "dev": ("d", 15485863),
    "stills": ("v", 32452843),
}
DEFAULT_POPULATION = ("s", 104729)


@dataclass(frozen=True)
class Segment:
    start: float  # seconds
    end: float
    label: str


@dataclass(frozen=True)
class VideoSpec:
    """Everything needed to render one video, and the labels it carries."""

    video_id: str
    identity: str
    look: Appearance
    split: str
    task: Task
    num_frames: int
    seed: int
    size: int
    action: str | None = None
    segments: tuple[Segment, ...] = ()  # detection: action segments; anomaly: abnormal intervals
    speed: float = 1.0
    phase: float = 0.0
    x: float = 0.5  # feet centre as a fraction of the width
    ground: float = 0.85  # ground line as a fraction of the height
    scale: float = 0.6  # actor height as a fraction of the frame
    bias_split: str | None = None
    anomaly_kinds: tuple[str, ...] = field(default=())

    def manifest_row(self, path: str) -> dict[str, Any]:
        """One row of the manifest contract (design §3.1) plus benchmark extras."""
        anomaly: str | None = None
        segments: str | None = None
        if self.task == "anomaly":
            anomaly = json.dumps([[s.start, s.end] for s in self.segments])
        elif self.task == "detection":
            segments = json.dumps([{"start": s.start, "end": s.end, "label": s.label} for s in self.segments])
        return {
            "video_id": self.video_id,
            "path": path,
            "split": self.split,
            "action": None if self.task == "still" else self.action,  # a still's pose is no label
            "segments": segments,
            "anomaly_segments": anomaly,
            "task": self.task,
            "bias_split": self.bias_split,
            "num_frames": self.num_frames,
            "fps": float(FPS),
            "private_identity": self.identity,
            "private_skin_tone": self.look.skin_tone,
            "private_gender": self.look.gender,
            "private_clothing_color": self.look.clothing_color,
            "private_clothing_pattern": self.look.clothing_pattern,
        }


def _draw_look(rng: np.random.Generator) -> Appearance:
    return Appearance(
        skin_tone=int(rng.integers(len(SKIN_TONES))),
        gender=str(rng.choice(GENDERS)),
        clothing_color=str(rng.choice(list(CLOTHING_COLORS))),
        clothing_pattern=str(rng.choice(CLOTHING_PATTERNS)),
        hair_color=int(rng.integers(len(HAIR_COLORS))),
        trouser_color=int(rng.integers(len(TROUSER_COLORS))),
        glasses=int(rng.integers(len(GLASSES_COLORS))),
        build=float(rng.uniform(0.9, 1.1)),
        height=float(rng.uniform(0.92, 1.08)),
    )


class Placement(TypedDict):
    speed: float
    phase: float
    x: float
    ground: float
    scale: float


def _placement(rng: np.random.Generator, task: Task | str) -> Placement:
    walking = task in ("walk_left", "walk_right", "detection", "anomaly")
    return {
        "speed": float(rng.uniform(0.75, 1.35)),
        "phase": float(rng.uniform(0, 2 * math.pi)),
        "x": float(rng.uniform(0.38, 0.62) if walking else rng.uniform(0.3, 0.7)),
        "ground": float(rng.uniform(0.82, 0.92)),
        "scale": float(rng.uniform(0.55, 0.7)),
    }


def _detection_segments(rng: np.random.Generator, num_frames: int) -> tuple[Segment, ...]:
    duration = num_frames / FPS
    segments: list[Segment] = []
    t = float(rng.uniform(0.4, 1.2))
    while True:
        length = float(rng.uniform(1.5, 2.75))
        if t + length > duration - 0.3:
            break
        segments.append(Segment(round(t, 4), round(t + length, 4), str(rng.choice(ACTIONS))))
        t += length + float(rng.uniform(0.6, 1.8))
    return tuple(segments)


def _anomaly_segments(rng: np.random.Generator, num_frames: int) -> tuple[Segment, ...]:
    duration = num_frames / FPS
    start = float(rng.uniform(0.25, 0.55)) * duration
    kind = str(rng.choice(ANOMALIES))
    end = min(duration, start + (float(rng.uniform(1.5, 2.5)) if kind == "erratic" else duration))
    return (Segment(round(start, 4), round(end, 4), kind),)


SegmentMaker = Callable[[np.random.Generator, int], tuple[Segment, ...]]


def _balanced_looks(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    """Private attributes for `n` people with every level equally often (up to one), shuffled per
    attribute: a small split then reads leakage on balanced attributes, not on a chance skew."""
    levels: dict[str, list[Any]] = {
        "skin_tone": list(range(len(SKIN_TONES))),
        "gender": list(GENDERS),
        "clothing_color": list(CLOTHING_COLORS),
        "clothing_pattern": list(CLOTHING_PATTERNS),
    }
    columns = {
        k: [v[int(i)] for i in rng.permutation(np.resize(np.arange(len(v)), n))] for k, v in levels.items()
    }
    return [{k: columns[k][i] for k in levels} for i in range(n)]


def _person_videos(
    rng: np.random.Generator, p: Preset, identity: str, split: str, private: dict[str, Any] | None = None
) -> list[VideoSpec]:
    """One person's look and videos. The order of random draws is part of the dataset's definition."""
    look = _draw_look(rng)
    if private is not None:
        look = replace(look, **private)

    def video(
        suffix: str,
        task: Task,
        frames: int,
        place: str,
        segments: SegmentMaker | None = None,
        action: str | None = None,
    ) -> VideoSpec:
        seed = int(rng.integers(2**31))
        segs = segments(rng, frames) if segments is not None else ()
        return VideoSpec(
            video_id=f"{identity}_{suffix}",
            identity=identity,
            look=look,
            split=split,
            task=task,
            num_frames=frames,
            seed=seed,
            size=p.size,
            action=action,
            segments=segs,
            **_placement(rng, place),
        )

    actions = rng.permutation(len(ACTIONS))[: p.actions_per_identity]
    videos = [
        video(f"act{k}", "action", p.trimmed_frames, ACTIONS[a], action=ACTIONS[a])
        for k, a in enumerate(actions)
    ]
    if p.stills_per_identity:
        return [
            replace(
                video(f"img{k}", "still", 1, ACTIONS[int(a)]),
                seed=STILL_SEEDS + int(rng.integers(2**31)),
                phase=float(rng.uniform(0, 2 * math.pi)),  # a person caught mid-action, a varied pose
                action=ACTIONS[int(a)],
            )
            for k, a in enumerate(rng.integers(len(ACTIONS), size=p.stills_per_identity))
        ]
    if rng.random() < p.detection_per_identity:
        videos.append(video("det0", "detection", p.detection_frames, "detection", _detection_segments))
    if rng.random() < p.anomaly_per_identity:
        abnormal = bool(rng.random() < 0.5)
        videos.append(
            video("anom0", "anomaly", p.anomaly_frames, "anomaly", _anomaly_segments if abnormal else None)
        )
    return videos


def plan_benchmark(preset: str, seed: int) -> list[VideoSpec]:
    """Every video of a preset, deterministic for `seed`. Ids are stable and sortable."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    p = PRESETS[preset]
    prefix, stream = POPULATIONS.get(preset, DEFAULT_POPULATION)
    rng = np.random.default_rng([seed, stream])
    specs: list[VideoSpec] = []
    splits = ["train"] * p.identities[0] + ["val"] * p.identities[1] + ["test"] * p.identities[2]
    private: list[dict[str, Any] | None] = [None] * len(splits)
    if p.stills_per_identity:  # stills: attributes balanced within every split
        private = [look for n in p.identities for look in _balanced_looks(rng, n)]
    for person, split in enumerate(splits):
        specs += _person_videos(rng, p, f"{prefix}{person:04d}", split, private[person])
    return _assign_bias_splits(specs, seed)


def _assign_bias_splits(specs: list[VideoSpec], seed: int) -> list[VideoSpec]:
    """The bias protocol: a gender-skewed training subset (95/5, with one "shortcut" action skewed
    the other way) and a gender-balanced test subset, both drawn from the trimmed action clips."""
    rng = np.random.default_rng([seed, 31337])
    chosen: dict[str, str] = {}
    shortcut = ACTIONS[int(rng.integers(len(ACTIONS)))]
    for action in ACTIONS:
        for split, bias in (("train", "train"), ("test", "test")):
            pool = [s for s in specs if s.task == "action" and s.action == action and s.split == split]
            by_gender = {g: [s.video_id for s in pool if s.look.gender == g] for g in GENDERS}
            if bias == "test":
                n = min(len(v) for v in by_gender.values())
                take = {g: n for g in GENDERS}
            else:
                majority = "female" if action == shortcut else "male"
                minority = "male" if majority == "female" else "female"
                n_major = len(by_gender[majority])
                take = {majority: n_major, minority: max(1, round(n_major * 5 / 95))}
            for g in GENDERS:
                ids = sorted(by_gender[g])
                picked = rng.permutation(len(ids))[: take[g]]
                chosen.update({ids[i]: bias for i in picked})
    return [_replace_bias(s, chosen.get(s.video_id)) for s in specs]


def _replace_bias(spec: VideoSpec, bias: str | None) -> VideoSpec:
    return replace(spec, bias_split=bias)


# ---------------------------------------------------------------------------------------------------
# Motion: each action maps (time in seconds, video spec) to a Pose. Only motion differs by class.

PoseFn = Callable[[float, "Motion"], Pose]


@dataclass
class Motion:
    """Per-video motion state: placement plus the walker's position, carried across segments."""

    spec: VideoSpec
    width: float
    height: float
    x: float
    rng: np.random.Generator

    @property
    def size(self) -> float:
        return self.spec.scale * self.height

    @property
    def ground(self) -> float:
        return self.spec.ground * self.height

    def phase(self, t: float, hz: float) -> float:
        return 2 * math.pi * hz * self.spec.speed * t + self.spec.phase

    def base(self, **kw: float) -> Pose:
        return Pose(x=self.x, y=self.ground, size=self.size, **kw)


def _idle(t: float, m: Motion) -> Pose:
    sway = 0.05 * math.sin(m.phase(t, 0.4))
    return m.base(l_shoulder=0.15 + sway, r_shoulder=0.15 - sway, l_elbow=0.1, r_elbow=0.1)


def _wave(t: float, m: Motion) -> Pose:
    ph = m.phase(t, 1.6)
    return m.base(l_shoulder=0.15, r_shoulder=2.5, r_elbow=0.55 * math.sin(ph), l_elbow=0.1)


def _jump(t: float, m: Motion) -> Pose:
    ph = m.phase(t, 1.1)
    up = abs(math.sin(ph))
    return m.base(
        lift=0.22 * m.size * up,
        l_shoulder=0.3 + 1.6 * up,
        r_shoulder=0.3 + 1.6 * up,
        crouch=0.35 * (1 - up) ** 4,
    )


def _walk(direction: float) -> PoseFn:
    def walk(t: float, m: Motion) -> Pose:
        ph = m.phase(t, 1.0)
        swing = 0.45 * math.sin(ph)
        m.x += direction * 0.012 * m.width * m.spec.speed
        return m.base(
            l_hip=swing,
            r_hip=-swing,
            l_knee=-0.4 * max(0.0, math.sin(ph + 1.2)),
            r_knee=-0.4 * max(0.0, -math.sin(ph + 1.2)),
            l_shoulder=0.1 - 0.5 * swing,
            r_shoulder=0.1 + 0.5 * swing,
            lift=0.02 * m.size * abs(math.sin(ph)),
        )

    return walk


def _squat(t: float, m: Motion) -> Pose:
    down = 0.5 - 0.5 * math.cos(m.phase(t, 0.8))
    return m.base(crouch=0.8 * down, l_shoulder=0.2 + 1.2 * down, r_shoulder=0.2 + 1.2 * down)


def _spin(t: float, m: Motion) -> Pose:
    ph = m.phase(t, 0.9)
    return m.base(turn=math.cos(ph), l_shoulder=1.1, r_shoulder=1.1, l_elbow=0.2, r_elbow=0.2)


def _clap(t: float, m: Motion) -> Pose:
    closed = 0.5 + 0.5 * math.sin(m.phase(t, 2.0))
    shoulder = 1.25 - 0.15 * closed
    elbow = -0.4 - 1.5 * closed
    return m.base(l_shoulder=shoulder, r_shoulder=shoulder, l_elbow=elbow, r_elbow=elbow)


def _kick(t: float, m: Motion) -> Pose:
    up = max(0.0, math.sin(m.phase(t, 1.0))) ** 1.5
    return m.base(r_hip=1.5 * up, r_knee=-0.6 * (1 - up), l_shoulder=0.9, r_shoulder=0.9)


def _fall(t: float, m: Motion) -> Pose:
    progress = min(1.0, t / 0.45)
    tilt = (1 if m.spec.seed % 2 else -1) * (math.pi / 2) * progress**2
    return m.base(tilt=tilt, l_shoulder=0.6 * progress, r_shoulder=0.6 * progress)


def _erratic(t: float, m: Motion) -> Pose:
    # A new random limb configuration and jolt every two frames.
    step = int(t * FPS) // 2
    r = np.random.default_rng([m.spec.seed, step])
    m.x = float(np.clip(m.x + r.normal(0, 0.03 * m.width), 0.2 * m.width, 0.8 * m.width))
    a = r.uniform(-0.4, 2.6, size=4)
    return m.base(
        l_shoulder=a[0],
        r_shoulder=a[1],
        l_hip=a[2] * 0.4,
        r_hip=a[3] * 0.4,
        lift=float(r.uniform(0, 0.12)) * m.size,
        tilt=float(r.uniform(-0.35, 0.35)),
    )


MOTIONS: dict[str, PoseFn] = {
    "idle": _idle,
    "wave": _wave,
    "jump": _jump,
    "walk_left": _walk(-1.0),
    "walk_right": _walk(1.0),
    "squat": _squat,
    "spin": _spin,
    "clap": _clap,
    "kick": _kick,
    "fall": _fall,
    "erratic": _erratic,
}


def _activity_at(spec: VideoSpec, t: float, m: Motion) -> tuple[str, float]:
    """The activity at time t and the time since it began."""
    if spec.task in ("action", "still"):
        assert spec.action is not None
        return spec.action, t
    for seg in spec.segments:
        if seg.start <= t < seg.end:
            return seg.label, t - seg.start
    if spec.task == "anomaly":
        # Normal behaviour: walk back and forth, turning at the edges of the scene.
        direction = "walk_right" if math.sin(2 * math.pi * t / 6.0 + spec.phase) >= 0 else "walk_left"
        return direction, t
    return "idle", t


def pose_at(spec: VideoSpec, t: float, m: Motion) -> Pose:
    label, local_t = _activity_at(spec, t, m)
    if spec.task == "anomaly" and spec.segments and t >= spec.segments[0].end:
        label, local_t = "idle", t  # back to normal after an erratic episode
    pose = MOTIONS[label](local_t, m)
    margin = 0.12 * m.width
    m.x = float(np.clip(m.x, margin, m.width - margin))
    return pose


# ---------------------------------------------------------------------------------------------------
# Scenes


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Textured, cluttered background `[h, w, 3]` float32: gradient + low-frequency noise + objects."""
    top, bottom = rng.uniform(60, 200, size=3), rng.uniform(40, 180, size=3)
    ramp = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    img = (top * (1 - ramp) + bottom * ramp) * np.ones((1, w, 1), dtype=np.float32)
    coarse = rng.normal(0, 22, size=(6, 6, 3)).astype(np.float32)
    img += np.kron(coarse, np.ones((h // 6 + 1, w // 6 + 1, 1), dtype=np.float32))[:h, :w]
    fine = rng.normal(0, 7, size=(h // 4 + 1, w // 4 + 1, 3)).astype(np.float32)
    img += np.kron(fine, np.ones((4, 4, 1), dtype=np.float32))[:h, :w]
    floor = int(h * rng.uniform(0.62, 0.75))
    img[floor:] = img[floor:] * 0.6 + rng.uniform(40, 160, size=3) * 0.4
    palette = [*CLOTHING_COLORS.values(), *SKIN_TONES]
    for _ in range(int(rng.integers(6, 14))):
        color = palette[int(rng.integers(len(palette)))] if rng.random() < 0.5 else rng.uniform(20, 235, 3)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        if rng.random() < 0.5:
            fill_circle(img, cx, cy, float(rng.uniform(3, 12)), tuple(color))
        else:
            hw, hh = rng.uniform(3, 16), rng.uniform(3, 16)
            box = np.array([[cx - hw, cy - hh], [cx + hw, cy - hh], [cx + hw, cy + hh], [cx - hw, cy + hh]])
            pattern = str(rng.choice(["solid", "solid", "stripes", "checks"]))
            fill_polygon(img, box, tuple(color), pattern, float(rng.uniform(2, 5)))
    return img


JITTER = 4  # pixels of camera shake on each side


def render_frames(spec: VideoSpec, trace: list[dict[str, np.ndarray]] | None = None) -> Iterator[np.ndarray]:
    """Yield the frames of one video, `[H, W, 3]` uint8 RGB. If `trace` is a list, the actor's key
    points (frame coordinates) are appended to it per frame."""
    rng = np.random.default_rng(spec.seed)
    h = w = spec.size
    pad = JITTER
    bg = _background(rng, h + 2 * pad, w + 2 * pad)
    light = float(rng.uniform(0.85, 1.15))
    m = Motion(spec=spec, width=float(w), height=float(h), x=spec.x * w, rng=rng)
    cam = np.zeros(2)
    for i in range(spec.num_frames):
        t = i / FPS
        cam = np.clip(0.8 * cam + rng.normal(0, 0.9, size=2), -pad, pad)
        dx, dy = round(cam[0]), round(cam[1])
        canvas = bg.copy()
        pose = pose_at(spec, t, m)
        shifted = replace(pose, x=pose.x + pad, y=pose.y + pad)
        points = draw_actor(canvas, spec.look, shifted)
        frame = canvas[pad + dy : pad + dy + h, pad + dx : pad + dx + w]
        frame = frame * light + 3.0 * rng.standard_normal(size=frame.shape, dtype=np.float32)
        if trace is not None:
            trace.append({k: v - np.array([pad + dx, pad + dy]) for k, v in points.items()})
        yield np.clip(frame, 0, 255).astype(np.uint8)


def file_name(spec: VideoSpec) -> str:
    """The file a spec renders to: `ID.png` for a still, `ID.mp4` for a video."""
    return f"{spec.video_id}.png" if spec.task == "still" else f"{spec.video_id}.mp4"


def render_to_file(spec: VideoSpec, path: str) -> None:
    """Render one video as H.264, or one still as PNG (atomically: a half-written file never has `path`)."""
    if spec.task == "still":
        from PIL import Image

        tmp = f"{path}.part"
        Image.fromarray(next(render_frames(spec))).save(tmp, format="PNG")
        os.replace(tmp, path)
        return
    from pipeline.data.video import write_video

    write_video(path, render_frames(spec), fps=FPS, preset="veryfast")
