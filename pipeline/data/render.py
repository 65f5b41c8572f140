"""Drawing primitives and the people-like actor of the synthetic benchmark.

Everything draws in place into an `[H, W, 3]` float32 canvas, touching only the bounding box of
the shape, so a frame costs a few hundred microseconds at 128x128.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Color = tuple[float, float, float]
_AXIS = np.arange(4096, dtype=np.float32)


def _grid(y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, np.ndarray]:
    """Open pixel-coordinate grids of a window, like np.ogrid but without its overhead."""
    return _AXIS[y0:y1, None], _AXIS[None, x0:x1]


SKIN_TONES: tuple[Color, ...] = (
    (244.0, 204.0, 178.0),
    (222.0, 170.0, 128.0),
    (189.0, 128.0, 88.0),
    (138.0, 86.0, 55.0),
    (86.0, 52.0, 36.0),
)
CLOTHING_COLORS: dict[str, Color] = {
    "red": (205.0, 40.0, 45.0),
    "green": (40.0, 160.0, 70.0),
    "blue": (45.0, 75.0, 205.0),
    "yellow": (225.0, 200.0, 45.0),
    "purple": (135.0, 55.0, 165.0),
    "orange": (240.0, 130.0, 30.0),
}
CLOTHING_PATTERNS = ("solid", "stripes", "checks")
GENDERS = ("female", "male")
HAIR_COLORS: tuple[Color, ...] = (
    (30.0, 25.0, 22.0),
    (105.0, 62.0, 30.0),
    (222.0, 192.0, 120.0),
    (165.0, 70.0, 35.0),
    (165.0, 165.0, 165.0),
)
TROUSER_COLORS: tuple[Color, ...] = (
    (35.0, 45.0, 90.0),
    (25.0, 25.0, 25.0),
    (90.0, 65.0, 45.0),
    (110.0, 110.0, 115.0),
)
GLASSES_COLORS: tuple[Color | None, ...] = (None, (15.0, 15.0, 15.0), (200.0, 30.0, 30.0))


@dataclass(frozen=True)
class Appearance:
    """Everything about how an actor looks; the private attributes are a subset of it."""

    skin_tone: int
    gender: str
    clothing_color: str
    clothing_pattern: str
    hair_color: int
    trouser_color: int
    glasses: int
    build: float  # shoulder-width multiplier, 0.9-1.1
    height: float  # height multiplier, 0.9-1.1


@dataclass(frozen=True)
class Pose:
    """One frame of the actor. Angles in radians from straight down, positive = outward."""

    x: float  # feet centre, pixels
    y: float  # ground line, pixels
    size: float  # full height in pixels
    l_shoulder: float = 0.15
    l_elbow: float = 0.0
    r_shoulder: float = 0.15
    r_elbow: float = 0.0
    l_hip: float = 0.05
    l_knee: float = 0.0
    r_hip: float = 0.05
    r_knee: float = 0.0
    lift: float = 0.0  # how far the body is off the ground (jump), pixels
    crouch: float = 0.0  # 0..1, how far the hips drop (squat)
    turn: float = 1.0  # horizontal scale in [-1, 1]: cos of the rotation about the vertical axis
    tilt: float = 0.0  # rotation of the whole body about the feet (falls), radians


def fill_circle(img: np.ndarray, cx: float, cy: float, r: float, color: Color) -> None:
    h, w = img.shape[:2]
    x0, x1 = max(int(cx - r - 1), 0), min(int(cx + r + 2), w)
    y0, y1 = max(int(cy - r - 1), 0), min(int(cy + r + 2), h)
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = _grid(y0, y1, x0, x1)
    mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    img[y0:y1, x0:x1][mask] = color


def fill_capsule(img: np.ndarray, p0: np.ndarray, p1: np.ndarray, r: float, color: Color) -> None:
    """A thick line segment with round caps (a limb)."""
    h, w = img.shape[:2]
    x0 = max(int(min(p0[0], p1[0]) - r - 1), 0)
    x1 = min(int(max(p0[0], p1[0]) + r + 2), w)
    y0 = max(int(min(p0[1], p1[1]) - r - 1), 0)
    y1 = min(int(max(p0[1], p1[1]) + r + 2), h)
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = _grid(y0, y1, x0, x1)
    d = p1 - p0
    denom = float(d @ d) or 1e-6
    t = np.clip(((xx - p0[0]) * d[0] + (yy - p0[1]) * d[1]) / denom, 0.0, 1.0)
    dist2 = (xx - p0[0] - t * d[0]) ** 2 + (yy - p0[1] - t * d[1]) ** 2
    img[y0:y1, x0:x1][dist2 <= r * r] = color


def polygon_mask(pts: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """Mask of a convex polygon over the window [y0:y1, x0:x1]; vertices may come in any order."""
    centre = pts.mean(0)
    pts = pts[np.argsort(np.arctan2(pts[:, 1] - centre[1], pts[:, 0] - centre[0]))]
    yy, xx = _grid(y0, y1, x0, x1)
    inside_pos = np.ones((y1 - y0, x1 - x0), dtype=bool)
    inside_neg = np.ones_like(inside_pos)
    n = len(pts)
    for i in range(n):
        ax, ay = pts[i]
        bx, by = pts[(i + 1) % n]
        cross = (bx - ax) * (yy - ay) - (by - ay) * (xx - ax)
        inside_pos &= cross >= 0
        inside_neg &= cross <= 0
    return inside_pos | inside_neg


def fill_polygon(
    img: np.ndarray,
    pts: np.ndarray,
    color: Color,
    pattern: str = "solid",
    period: float = 4.0,
    origin: tuple[float, float] = (0.0, 0.0),
) -> None:
    """Fill a convex polygon; `stripes`/`checks` alternate `color` with a darker shade of it."""
    h, w = img.shape[:2]
    x0, x1 = max(int(pts[:, 0].min()), 0), min(int(pts[:, 0].max()) + 2, w)
    y0, y1 = max(int(pts[:, 1].min()), 0), min(int(pts[:, 1].max()) + 2, h)
    if x0 >= x1 or y0 >= y1:
        return
    mask = polygon_mask(pts, y0, y1, x0, x1)
    region = img[y0:y1, x0:x1]
    if pattern == "solid":
        region[mask] = color
        return
    yy, xx = _grid(y0, y1, x0, x1)
    band_y = np.floor((yy - origin[1]) / period).astype(np.int64)
    if pattern == "stripes":
        dark = (band_y % 2 == 1) & np.ones_like(mask)
    else:
        band_x = np.floor((xx - origin[0]) / period).astype(np.int64)
        dark = (band_x + band_y) % 2 == 1
    shade = tuple(0.45 * c for c in color)
    region[mask & ~dark] = color
    region[mask & dark] = shade


def _limb(origin: np.ndarray, angle: float, length: float, side: float, turn: float) -> np.ndarray:
    step = np.array([side * turn * np.sin(angle) * length, np.cos(angle) * length])
    end: np.ndarray = origin + step
    return end


def draw_actor(img: np.ndarray, look: Appearance, pose: Pose) -> dict[str, np.ndarray]:
    """Draw the actor; return key points (pixels) for tests: head, hands, feet, torso centre."""
    s = pose.size * look.height
    female = look.gender == "female"
    skin = SKIN_TONES[look.skin_tone]
    cloth = CLOTHING_COLORS[look.clothing_color]
    hair = HAIR_COLORS[look.hair_color]
    trousers = TROUSER_COLORS[look.trouser_color]
    turn = pose.turn if abs(pose.turn) > 0.18 else np.copysign(0.18, pose.turn)

    # Knees bend outward when crouching; the hips sit where the lower foot touches the ground.
    thigh, shin = 0.25 * s, 0.23 * s
    a_thigh = (pose.l_hip + 0.9 * pose.crouch, pose.r_hip + 0.9 * pose.crouch)
    a_shin = (
        pose.l_hip + pose.l_knee - 0.9 * pose.crouch,
        pose.r_hip + pose.r_knee - 0.9 * pose.crouch,
    )
    leg_len = max(thigh * np.cos(a) + shin * np.cos(b) for a, b in zip(a_thigh, a_shin, strict=True))
    hip = np.array([pose.x, pose.y - pose.lift - leg_len])
    neck = hip + np.array([0.0, -0.31 * s])
    head = neck + np.array([0.0, -0.105 * s])
    head_r = 0.088 * s
    half_sh = (0.10 if female else 0.135) * s * look.build
    half_hip = (0.095 if female else 0.075) * s
    sh_l, sh_r = neck + np.array([-half_sh * turn, 0.02 * s]), neck + np.array([half_sh * turn, 0.02 * s])
    hp_l, hp_r = hip + np.array([-half_hip * turn, 0.0]), hip + np.array([half_hip * turn, 0.0])

    kn_l = _limb(hp_l, a_thigh[0], thigh, -1.0, turn)
    kn_r = _limb(hp_r, a_thigh[1], thigh, 1.0, turn)
    ft_l = _limb(kn_l, a_shin[0], shin, -1.0, turn)
    ft_r = _limb(kn_r, a_shin[1], shin, 1.0, turn)
    el_l = _limb(sh_l, pose.l_shoulder, 0.17 * s, -1.0, turn)
    el_r = _limb(sh_r, pose.r_shoulder, 0.17 * s, 1.0, turn)
    hd_l = _limb(el_l, pose.l_shoulder + pose.l_elbow, 0.16 * s, -1.0, turn)
    hd_r = _limb(el_r, pose.r_shoulder + pose.r_elbow, 0.16 * s, 1.0, turn)

    points = {
        "head": head,
        "neck": neck,
        "hip": hip,
        "hand_l": hd_l,
        "hand_r": hd_r,
        "foot_l": ft_l,
        "foot_r": ft_r,
        "elbow_r": el_r,
        "torso": (neck + hip) / 2,
    }
    if pose.tilt:
        pivot = np.array([pose.x, pose.y])
        c, si = np.cos(pose.tilt), np.sin(pose.tilt)
        rot = np.array([[c, -si], [si, c]])
        points = {k: pivot + rot @ (v - pivot) for k, v in points.items()}
        sh_l, sh_r, hp_l, hp_r, kn_l, kn_r, el_l, el_r = (
            pivot + rot @ (p - pivot) for p in (sh_l, sh_r, hp_l, hp_r, kn_l, kn_r, el_l, el_r)
        )
        head, neck, hip = points["head"], points["neck"], points["hip"]
        hd_l, hd_r, ft_l, ft_r = points["hand_l"], points["hand_r"], points["foot_l"], points["foot_r"]

    limb_r = 0.032 * s
    leg_r = 0.042 * s
    # Long hair hangs behind the head and shoulders.
    if female:
        fill_capsule(img, head, head + (neck - head) * 1.9, head_r * 1.05, hair)
    for knee, foot, hp in ((kn_l, ft_l, hp_l), (kn_r, ft_r, hp_r)):
        fill_capsule(img, hp, knee, leg_r, trousers)
        fill_capsule(img, knee, foot, leg_r * 0.9, trousers)
        fill_circle(img, foot[0], foot[1], leg_r * 1.1, (30.0, 30.0, 30.0))
    torso = np.array([sh_l, sh_r, hp_r, hp_l])
    period = max(2.0, 0.045 * s)
    fill_polygon(img, torso, cloth, look.clothing_pattern, period, (float(neck[0]), float(neck[1])))
    if female:
        # A flared skirt below the hips.
        down = (hip - neck) / np.linalg.norm(hip - neck)
        side = np.array([-down[1], down[0]])
        flare = 0.15 * s * abs(turn)
        hem = hip + down * 0.17 * s
        skirt = np.array([hp_l, hp_r, hem - side * flare, hem + side * flare])
        fill_polygon(img, skirt, cloth, look.clothing_pattern, period, (float(neck[0]), float(neck[1])))
    for sh, el, hd in ((sh_l, el_l, hd_l), (sh_r, el_r, hd_r)):
        fill_capsule(img, sh, el, limb_r * 1.15, cloth)  # short sleeve
        fill_capsule(img, el, hd, limb_r, skin)
        fill_circle(img, hd[0], hd[1], limb_r * 1.2, skin)
    fill_capsule(img, neck, head, 0.03 * s, skin)
    facing_away = pose.turn < 0
    fill_circle(img, head[0], head[1], head_r, hair if facing_away else skin)
    if not facing_away:
        # Hair cap on the top half of the head; glasses as a band across the eyes.
        up = (head - neck) / max(float(np.linalg.norm(head - neck)), 1e-6)
        cap = head + up * head_r * 0.45
        fill_circle(img, float(cap[0]), float(cap[1]), head_r * 0.8, hair)
        fill_circle(img, head[0], head[1], head_r * 0.72, skin)
        glasses = GLASSES_COLORS[look.glasses]
        if glasses is not None:
            side = np.array([-up[1], up[0]]) * head_r * 0.7 * abs(turn)
            fill_capsule(img, head - side, head + side, max(0.9, 0.018 * s), glasses)
    return points
