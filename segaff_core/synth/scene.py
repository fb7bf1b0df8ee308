"""A whole scene: a kitchen run, a built-in row or 1-3 free-standing pieces against the back wall of a
simple room, drawn in one of the worlds of :mod:`segaff_core.synth.styles`."""
from __future__ import annotations

import numpy as np

from segaff_core.synth import furniture as fb
from segaff_core.synth.layout import CEILING_M, SceneBuilder, SceneLayout
from segaff_core.synth.materials import Material
from segaff_core.synth.palette import weighted_index
from segaff_core.synth.styles import CLASSIC, SceneStyle


def _floor_material(rng: np.random.Generator) -> Material:
    offset = tuple(float(o) for o in rng.uniform(-20, 20, size=3))
    if rng.random() < 0.6:
        tone = rng.uniform(0.6, 1.2)
        colour = tuple(float(c) for c in np.clip(np.array([0.55, 0.38, 0.22]) * tone, 0, 1))
        accent = tuple(float(c) for c in np.clip(np.array([0.35, 0.22, 0.12]) * tone, 0, 1))
        return Material("planks", colour, accent, float(rng.uniform(0.1, 0.2)), int(rng.integers(2)), 0.0,
                        "wooden", offset)  # type: ignore[arg-type]
    grey = float(rng.uniform(0.3, 0.9))
    colour = (grey, grey * 0.97, grey * 0.93)
    return Material("tiles", colour, (grey * 0.6,) * 3, float(rng.uniform(0.3, 0.6)), 2, 0.2, "tiled", offset)


def _wall_material(rng: np.random.Generator) -> Material:
    hue = rng.uniform([0.75, 0.72, 0.65], [0.95, 0.93, 0.92])
    colour = tuple(float(c) for c in hue)
    return Material("plain", colour, colour, name="wall")  # type: ignore[arg-type]


def _pictures(sb: SceneBuilder, rng: np.random.Generator, x0: float, x1: float) -> None:
    """0-2 framed pictures on the back wall between ``x0`` and ``x1``: distractors without parts; none where
    the wall beside the furniture is too narrow (``x1 <= x0``)."""
    count = int(rng.integers(0, 3))
    if x1 <= x0:
        return
    for _ in range(count):
        w, h = rng.uniform(0.3, 0.8), rng.uniform(0.25, 0.6)
        x, z = rng.uniform(x0, x1), rng.uniform(1.3, 2.3 - h)
        frame = sb.add_material(Material("plain", (0.1, 0.08, 0.06), (0.1, 0.08, 0.06)))
        colour = tuple(float(c) for c in rng.uniform(0.1, 0.9, size=3))
        art = sb.add_material(Material("wood", colour, tuple(c * 0.5 for c in colour), float(rng.uniform(0.02, 0.1)),
                                       int(rng.integers(3)), 0.0, "art", (0.0, 0.0, 0.0)))  # type: ignore[arg-type]
        sb.add_box([x, -0.02, z], [x + w, 0.0, z + h], frame)
        sb.add_box([x + 0.03, -0.025, z + 0.03], [x + w - 0.03, -0.01, z + h - 0.03], art)


def build_scene(rng: np.random.Generator, style: SceneStyle = CLASSIC) -> SceneLayout:
    """Draw a scene of ``style``: furniture along the back wall (y = 0), a floor, side walls and a ceiling."""
    sb = SceneBuilder(palette=style.palette)
    x = 0.0
    kinds = style.scene_kinds
    kind = kinds[weighted_index(rng, style.scene_weights)] if len(kinds) > 1 else kinds[0]
    is_kitchen = kind == "kitchen"
    if is_kitchen:
        x = fb.kitchen(sb, rng, x)
        if rng.random() < 0.3:
            x = fb.trash_can(sb, rng, x + float(rng.uniform(0.05, 0.4)))
    elif kind == "builtin":
        x = fb.builtin_row(sb, rng, x)
    else:
        for k in range(int(rng.integers(1, 4))):
            piece = style.floor_pieces[int(rng.integers(len(style.floor_pieces)))]
            x = piece(sb, rng, x + (float(rng.uniform(0.05, 0.6)) if k else 0.0))
    lo = np.min([f.lo for f in sb.furniture], axis=0)
    hi = np.max([f.hi for f in sb.furniture], axis=0)
    left_wall = lo[0] - float(rng.uniform(0.3, 2.5))
    right_wall = hi[0] + float(rng.uniform(0.3, 2.5))
    room_lo, room_hi = np.array([left_wall, -8.0, 0.0]), np.array([right_wall, 0.0, CEILING_M])

    floor = sb.add_material(_floor_material(rng))
    wall = sb.add_material(_wall_material(rng))
    sb.add_box([left_wall - 0.1, -8.0, -0.1], [right_wall + 0.1, 0.1, 0.0], floor)
    sb.add_box([left_wall - 0.1, 0.0, 0.0], [right_wall + 0.1, 0.1, CEILING_M], wall)
    sb.add_box([left_wall - 0.1, -8.0, 0.0], [left_wall, 0.0, CEILING_M], wall)
    sb.add_box([right_wall, -8.0, 0.0], [right_wall + 0.1, 0.0, CEILING_M], wall)
    ceiling = sb.add_material(Material("plain", (0.9, 0.9, 0.9), (0.9, 0.9, 0.9), name="ceiling"))
    sb.add_box([left_wall - 0.1, -8.0, CEILING_M], [right_wall + 0.1, 0.1, CEILING_M + 0.1], ceiling)
    if is_kitchen:
        tiles = sb.add_material(Material("tiles", (0.85, 0.86, 0.84), (0.55, 0.55, 0.55), float(rng.uniform(0.08, 0.2)),
                                         1, 0.3, "tiles", (0.0, 0.0, 0.0)))
        sb.add_box([lo[0], -0.008, 0.85], [hi[0], 0.0, 1.5], tiles)
    _pictures(sb, rng, left_wall + 0.2, right_wall - 0.9)
    centre_x = (lo[0] + hi[0]) / 2
    light = np.array([centre_x + rng.uniform(-1.5, 1.5), rng.uniform(-3.0, -1.0), rng.uniform(2.0, 2.5)])
    return sb.build(light, room_lo, room_hi)
