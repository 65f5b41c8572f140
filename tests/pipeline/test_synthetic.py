"""The synthetic benchmark renders what its labels say: pixel-level sanity checks."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data.render import CLOTHING_COLORS
from pipeline.data.synthetic import ACTIONS, FPS, PRESETS, VideoSpec, plan_benchmark, render_frames


def _trace(spec: VideoSpec) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    points: list[dict[str, np.ndarray]] = []
    frames = np.stack(list(render_frames(spec, points)))
    return frames, {k: np.stack([p[k] for p in points]) for k in points[0]}


def test_plan_is_deterministic_and_ids_unique() -> None:
    a, b = plan_benchmark("tiny", 3), plan_benchmark("tiny", 3)
    assert a == b
    assert len({s.video_id for s in a}) == len(a)
    assert plan_benchmark("tiny", 4) != a


def test_identities_are_disjoint_across_splits_and_recur() -> None:
    specs = plan_benchmark("demo", 0)
    by_split: dict[str, set[str]] = {}
    for s in specs:
        by_split.setdefault(s.split, set()).add(s.identity)
    assert not (by_split["train"] & by_split["test"]) and not (by_split["val"] & by_split["test"])
    per_identity: dict[str, set[str]] = {}
    for s in specs:
        if s.task == "action":
            per_identity.setdefault(s.identity, set()).add(str(s.action))
    assert min(len(v) for v in per_identity.values()) >= PRESETS["demo"].actions_per_identity


def test_pretrain_population_is_disjoint() -> None:
    pretrain = {s.identity for s in plan_benchmark("pretrain", 0)}
    bench = {s.identity for s in plan_benchmark("demo", 0)}
    assert not pretrain & bench


def test_every_class_and_attribute_level_is_covered() -> None:
    specs = plan_benchmark("demo", 0)
    assert {s.action for s in specs if s.task == "action"} == set(ACTIONS)
    assert {s.look.skin_tone for s in specs} == {0, 1, 2, 3, 4}
    assert {s.look.gender for s in specs} == {"female", "male"}
    assert {s.look.clothing_color for s in specs} == set(CLOTHING_COLORS)
    anomaly = [s for s in specs if s.task == "anomaly"]
    assert any(s.segments for s in anomaly) and any(not s.segments for s in anomaly)
    detection = [s for s in specs if s.task == "detection"]
    assert all(len(s.segments) >= 2 for s in detection)
    for s in detection:
        for a, b in zip(s.segments, s.segments[1:], strict=False):
            assert b.start - a.end > 0.5  # idle gaps between segments


def test_bias_split_is_skewed_in_train_and_balanced_in_test() -> None:
    specs = plan_benchmark("demo", 0)
    for bias, check in (("train", "skewed"), ("test", "balanced")):
        for action in ACTIONS:
            genders = [s.look.gender for s in specs if s.bias_split == bias and s.action == action]
            female = genders.count("female") / len(genders)
            if check == "balanced":
                assert female == 0.5
            else:
                assert female <= 0.1 or female >= 0.9
    train = [s for s in specs if s.bias_split == "train"]
    shortcut = {s.action for s in train if s.look.gender == "female"} - {
        s.action for s in train if s.look.gender == "male" and _majority(train, s.action) == "male"
    }
    assert len(shortcut) >= 1


def _majority(specs: list[VideoSpec], action: str | None) -> str:
    genders = [s.look.gender for s in specs if s.action == action]
    return max(set(genders), key=genders.count)


def test_render_is_deterministic() -> None:
    spec = plan_benchmark("tiny", 0)[0]
    first, second = np.stack(list(render_frames(spec))), np.stack(list(render_frames(spec)))
    assert first.shape == (spec.num_frames, spec.size, spec.size, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, second)


def _chroma(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, dtype=np.float64)
    return rgb / (np.linalg.norm(rgb, axis=-1, keepdims=True) + 1e-6)


def _patch(frame: np.ndarray, xy: np.ndarray, r: int = 1) -> np.ndarray:
    x, y = round(xy[0]), round(xy[1])
    return frame[y - r : y + r + 1, x - r : x + r + 1].reshape(-1, 3)


def test_clothing_colour_is_read_off_the_torso() -> None:
    specs = [s for s in plan_benchmark("demo", 1) if s.task == "action" and s.action != "spin"][:40]
    names = list(CLOTHING_COLORS)
    palette = _chroma(np.array(list(CLOTHING_COLORS.values())))
    correct = 0
    for spec in specs:
        frames, pts = _trace(spec)
        pixels = np.concatenate([_patch(f, p) for f, p in zip(frames, pts["torso"], strict=True)])
        bright = pixels[pixels.sum(1) >= np.median(pixels.sum(1))]  # pattern shades are darker
        guess = names[int(np.argmax(palette @ _chroma(bright.mean(0))))]
        correct += guess == spec.look.clothing_color
    assert correct / len(specs) >= 0.9


def test_skin_tone_orders_face_brightness() -> None:
    from scipy.stats import spearmanr

    specs = [s for s in plan_benchmark("demo", 1) if s.task == "action" and s.action == "clap"][:40]
    tones, luma = [], []
    for spec in specs:
        frames, pts = _trace(spec)
        chin = pts["head"] + (pts["head"] - pts["neck"]) * -0.45  # below the glasses band
        pixels = np.concatenate([_patch(f, p, 0) for f, p in zip(frames, chin, strict=True)])
        tones.append(spec.look.skin_tone)
        luma.append(float(np.median(pixels.mean(1))))
    rho = spearmanr(tones, luma).statistic
    assert rho < -0.8


def test_gender_presentation_shows_as_a_skirt() -> None:
    specs = [s for s in plan_benchmark("demo", 1) if s.task == "action" and s.action in ("wave", "clap")][:40]
    correct = 0
    for spec in specs:
        frames, pts = _trace(spec)
        size = spec.scale * spec.size * spec.look.height
        cloth = _chroma(np.array(CLOTHING_COLORS[spec.look.clothing_color]))
        hits = []
        for f, hip in zip(frames, pts["hip"], strict=True):
            for side in (-1, 1):
                p = hip + np.array([side * 0.125 * size, 0.14 * size])
                hits.append(float(_chroma(_patch(f, p, 0).mean(0)) @ cloth) > 0.97)
        correct += (np.mean(hits) > 0.5) == (spec.look.gender == "female")
    assert correct / len(specs) >= 0.85


def test_pattern_shows_as_texture_on_the_torso() -> None:
    # Waving keeps the arms off the chest.
    specs = [s for s in plan_benchmark("demo", 1) if s.task == "action" and s.action == "wave"][:40]
    std = {"solid": [], "stripes": [], "checks": []}  # type: dict[str, list[float]]
    for spec in specs:
        frames, pts = _trace(spec)
        vals = [_patch(f, p, 3).sum(1).std() for f, p in zip(frames, pts["torso"], strict=True)]
        std[spec.look.clothing_pattern].append(float(np.median(vals)))
    assert max(std["solid"]) < min(std["stripes"] + std["checks"])


@pytest.mark.parametrize("action", ACTIONS)
def test_each_action_is_its_motion(action: str) -> None:
    spec = next(s for s in plan_benchmark("demo", 2) if s.action == action)
    _, pts = _trace(spec)
    hip, head, hand_r, foot_r = pts["hip"], pts["head"], pts["hand_r"], pts["foot_r"]
    size = spec.scale * spec.size
    dx = hip[-1, 0] - hip[0, 0]
    checks = {
        "walk_left": dx < -0.3 * size,
        "walk_right": dx > 0.3 * size,
        # Key points are in frame coordinates, so camera shake (a few pixels) moves them all.
        "jump": np.ptp(foot_r[:, 1]) > 0.1 * size and abs(dx) < 0.1 * size,
        "squat": np.ptp(foot_r[:, 1] - hip[:, 1]) > 0.1 * size and np.ptp(foot_r[:, 1]) < 0.15 * size,
        "wave": (hand_r[:, 1] < head[:, 1]).all() and np.ptp(hand_r[:, 0]) > 0.08 * size,
        "spin": np.ptp(pts["hand_r"][:, 0] - hip[:, 0]) > 0.3 * size,
        "clap": np.ptp(pts["hand_r"][:, 0] - pts["hand_l"][:, 0]) > 0.15 * size,
        "kick": np.ptp(foot_r[:, 1]) > 0.2 * size,
    }
    assert checks[action]
    # Everything but the motion is the same across actions: no action changes the actor's look.
    assert spec.num_frames / FPS >= 2.0


def test_dev_population_is_disjoint_from_the_demo() -> None:
    dev, demo = plan_benchmark("dev", 0), plan_benchmark("demo", 0)
    assert not {s.identity for s in dev} & {s.identity for s in demo}
    assert not {s.look for s in dev} & {s.look for s in demo}  # build and height are continuous draws
    assert not {s.seed for s in dev} & {s.seed for s in demo}  # every video's scene
    # same distribution of attributes and actions: every level appears in every split
    for split in ("train", "val", "test"):
        in_split = [s for s in dev if s.split == split]
        assert {s.action for s in in_split if s.task == "action"} == set(ACTIONS)
        assert {s.look.gender for s in in_split} == {s.look.gender for s in demo}


def test_stills_people_and_scenes_are_absent_from_every_other_preset() -> None:
    stills = plan_benchmark("stills", 0)
    assert stills and all(s.task == "still" and s.num_frames == 1 for s in stills)
    for preset in ("demo", "dev", "tiny", "pretrain"):
        other = plan_benchmark(preset, 0)
        assert not {s.identity for s in stills} & {s.identity for s in other}, preset
        assert not {s.look for s in stills} & {s.look for s in other}, preset
        assert not {s.seed for s in stills} & {s.seed for s in other}, preset  # seeds draw the scenes


def test_stills_are_split_by_person_with_balanced_attributes() -> None:
    stills = plan_benchmark("stills", 0)
    people: dict[str, set[str]] = {}
    for s in stills:
        people.setdefault(s.identity, set()).add(s.split)
    assert all(len(v) == 1 for v in people.values())
    rows = [s.manifest_row(f"videos/{s.video_id}.png") for s in stills]
    assert all(r["action"] is None for r in rows)
    for column in (
        "private_skin_tone",
        "private_gender",
        "private_clothing_color",
        "private_clothing_pattern",
    ):
        levels = {r[column] for r in rows}
        overall = {v: sum(r[column] == v for r in rows) / len(rows) for v in levels}
        for split in ("train", "val", "test"):
            part = [r for r in rows if r["split"] == split]
            for v, share in overall.items():
                got = sum(r[column] == v for r in part) / len(part)
                assert abs(got - share) < 0.15, (column, split, v, got, share)


def test_a_still_is_one_frame_of_a_person_in_a_scene() -> None:
    spec = plan_benchmark("stills", 0)[0]
    frames = list(render_frames(spec))
    assert len(frames) == 1 and frames[0].shape == (spec.size, spec.size, 3)
    assert frames[0].std() > 10  # a scene, not a blank image
