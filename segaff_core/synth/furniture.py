"""Procedural furniture: carcasses with grids of drawers, doors and flaps, lidded chests, kitchen runs,
built-in rows set flush into a wall, and the held-out families (filing cabinets, media units, bureaus,
ottomans) of :mod:`segaff_core.synth.styles`.

Each builder adds one or more pieces to a :class:`SceneBuilder` starting at lateral position ``x0``
(the piece's back against the wall ``y = 0``, its front facing -y) and returns where it ends in x.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Literal, Optional, Union

import numpy as np

from segaff_core.synth.layout import CEILING_M, Furniture, HandleStyle, Part, SceneBuilder, unit
from segaff_core.synth.materials import HANDLE_FINISHES, Material

# flap: a front hinged along its bottom edge that folds down into the room
CellKind = Literal["drawer", "door_left", "door_right", "flap", "oven", "dishwasher", "panel", "open"]
Row = tuple[float, list[tuple[float, CellKind]]]  # (height fraction, [(width fraction, kind)]), top row first
DoorHandlePlace = Literal["top", "bottom", "middle"]

CABINET_DOOR = ("cabinet door", "door")
DRAWER = ("drawer",)
FLAP = ("flap", "drop-down flap")
_RECESS = Material("plain", (0.03, 0.03, 0.03), (0.03, 0.03, 0.03), name="dark")


@dataclass(frozen=True)
class Finish:
    """The materials of one piece: grain across (drawers), grain up (doors, carcass), and a colour word."""

    horizontal: int
    vertical: int
    name: str


@dataclass(frozen=True)
class FrontStyle:
    """How the fronts of one piece are made."""

    finish: Finish
    recess: int
    handle: HandleStyle
    gap_m: float
    thickness_m: float
    frame_m: float
    drawer_handle_upper: bool
    door_handle: DoorHandlePlace
    door_nouns: tuple[str, ...]


def sample_finish(sb: SceneBuilder, rng: np.random.Generator, appliance: bool = False) -> Finish:
    """Materials for a piece, drawn from the palette's furniture (or appliance, where it has any) finishes."""
    table = (sb.palette.appliance_finishes if appliance else ()) or sb.palette.finishes
    name, kind, colour, accent, specular = table[int(rng.integers(len(table)))]
    tint = rng.uniform(0.9, 1.1, size=3)
    colour_t = tuple(float(c) for c in np.clip(np.array(colour) * tint, 0, 1))
    accent_t = tuple(float(c) for c in np.clip(np.array(accent) * tint, 0, 1))
    scale = float(rng.uniform(0.012, 0.03))
    offset = tuple(float(o) for o in rng.uniform(-50, 50, size=3))
    ids = [
        sb.add_material(Material(kind, colour_t, accent_t, scale, axis, specular, name, offset))  # type: ignore
        for axis in (0, 2)
    ]
    return Finish(horizontal=ids[0], vertical=ids[1], name=name)


def sample_handle(sb: SceneBuilder, rng: np.random.Generator) -> HandleStyle:
    """A handle style of a kind the palette draws, in steel, black or brass (a recessed grip: a dark slot)."""
    colour = HANDLE_FINISHES[int(rng.integers(len(HANDLE_FINISHES)))]
    material = sb.add_material(Material("metal", colour, colour, specular=0.6, name="handle"))
    kind = sb.palette.handle_kind(rng)
    if kind == "knob":
        return HandleStyle("knob", material, float(rng.uniform(0.012, 0.02)), float(rng.uniform(0.02, 0.03)), 0.0)
    if kind == "bar":
        return HandleStyle("bar", material, float(rng.uniform(0.011, 0.017)), float(rng.uniform(0.025, 0.035)),
                           float(rng.uniform(0.1, 0.32)))
    if kind == "recessed":
        return HandleStyle("recessed", sb.add_material(_RECESS), float(rng.uniform(0.015, 0.025)), 0.0,
                           float(rng.uniform(0.1, 0.25)))
    if kind == "edge":
        return HandleStyle("edge", material, float(rng.uniform(0.01, 0.016)), float(rng.uniform(0.015, 0.025)),
                           float(rng.uniform(0.3, 0.6)))
    if kind == "cup":
        return HandleStyle("cup", material, float(rng.uniform(0.025, 0.035)), float(rng.uniform(0.015, 0.02)),
                           float(rng.uniform(0.07, 0.1)))
    return HandleStyle("none", material, 0.0, 0.0, 0.0)


def sample_style(sb: SceneBuilder, rng: np.random.Generator, door_handle: DoorHandlePlace,
                 door_nouns: tuple[str, ...] = CABINET_DOOR, finish: Finish | None = None,
                 handle: HandleStyle | None = None) -> FrontStyle:
    """A front style for one piece (or a kitchen run when ``finish`` and ``handle`` are shared)."""
    return FrontStyle(
        finish=finish or sample_finish(sb, rng),
        recess=sb.add_material(_RECESS),
        handle=handle or sample_handle(sb, rng),
        gap_m=float(rng.uniform(0.005, 0.014)),
        thickness_m=float(rng.uniform(0.016, 0.024)),
        frame_m=0.0 if rng.random() < 0.6 else float(rng.uniform(0.02, 0.045)),
        drawer_handle_upper=bool(rng.random() < 0.3),
        door_handle=door_handle,
        door_nouns=door_nouns,
    )


def carcass(sb: SceneBuilder, lo: np.ndarray, hi: np.ndarray, style: FrontStyle) -> None:
    """A closed box with a dark recess behind the fronts that shows in the gaps."""
    sb.add_box(lo, hi, style.finish.vertical)
    side = max(style.frame_m, 0.018)
    sb.add_box([lo[0] + side, lo[1] - 0.002, lo[2] + side], [hi[0] - side, lo[1] + 0.01, hi[2] - side], style.recess)


def support(sb: SceneBuilder, rng: np.random.Generator, x0: float, x1: float, depth: float, height: float,
            style: FrontStyle) -> None:
    """Legs or a recessed plinth under a piece standing on the floor."""
    if rng.random() < 0.5:
        leg = 0.035
        for x in (x0 + 0.02, x1 - 0.02 - leg):
            for y in (-depth + 0.02, -0.02 - leg):
                sb.add_box([x, y, 0.0], [x + leg, y + leg, height], style.finish.vertical)
    else:
        sb.add_box([x0 + 0.02, -depth + 0.05, 0.0], [x1 - 0.02, -0.01, height], style.recess)


def top_slab(sb: SceneBuilder, x0: float, x1: float, depth: float, z: float, thickness: float, overhang: float,
             material: int) -> None:
    sb.add_box([x0 - overhang, -depth - overhang, z], [x1 + overhang, 0.0, z + thickness], material)


def clutter(sb: SceneBuilder, rng: np.random.Generator, x0: float, x1: float, depth: float, z: float) -> None:
    """0-2 small boxes (books, vases) standing on a top surface."""
    for _ in range(int(rng.integers(0, 3))):
        size = rng.uniform([0.06, 0.06, 0.05], [0.25, 0.2, 0.3])
        if x1 - x0 <= size[0] + 0.02:
            return
        x = rng.uniform(x0 + 0.01, x1 - size[0] - 0.01)
        y = rng.uniform(-depth + 0.03, -size[1] - 0.01)
        colour = tuple(float(c) for c in rng.uniform(0.05, 0.9, size=3))
        material = sb.add_material(Material("plain", colour, colour, name="object"))  # type: ignore[arg-type]
        sb.add_box([x, y, z], [x + size[0], y + size[1], z + size[2]], material)


def _door_handle_z(place: DoorHandlePlace, za: float, zb: float, length: float) -> float:
    if place == "top":
        return zb - min(0.07 + length / 2, (zb - za) / 2)
    if place == "bottom":
        return za + min(0.07 + length / 2, (zb - za) / 2)
    return min((za + zb) / 2, 1.05)


def _cell_part(sb: SceneBuilder, rng: np.random.Generator, kind: CellKind, rect: tuple[float, float, float, float],
               y_front: float, depth: float, style: FrontStyle, furniture: int, name: str) -> None:
    """One front: a drawer, a side-hinged door, a bottom-hinged flap or appliance door, or a fixed panel."""
    xa, xb, za, zb = rect
    t = style.thickness_m
    face = y_front - t
    part = sb.next_part
    width, height = xb - xa, zb - za
    if kind == "panel":
        sb.add_box([xa, face, za], [xb, y_front, zb], style.finish.horizontal)
        return
    if kind == "drawer":
        sb.add_box([xa, face, za], [xb, y_front, zb], style.finish.horizontal, part)
        z = zb - min(0.06, height / 4) if style.drawer_handle_upper and height > 0.2 else (za + zb) / 2
        handle = sb.add_handle(style.handle, ((xa + xb) / 2, z), face, False, 0.4 * width, part)
        sb.parts.append(Part(name, "drawer", DRAWER, furniture, 0, unit((0, -1, 0)), handle.copy(), handle,
                             style.handle.kind, float(depth * rng.uniform(0.55, 0.8))))
        return
    if kind in ("door_left", "door_right"):
        sb.add_box([xa, face, za], [xb, y_front, zb], style.finish.vertical, part)
        inset = float(np.clip(0.12 * width, 0.03, 0.06))
        length = min(0.35 * height, style.handle.max_length_m)
        z = _door_handle_z(style.door_handle, za, zb, length)
        left = kind == "door_left"
        x = xb - inset if left else xa + inset
        handle = sb.add_handle(style.handle, (x, z), face, True, length, part)
        hinge = np.array([xa if left else xb, y_front, z])
        axis = unit((0, 0, -1) if left else (0, 0, 1))
        sb.parts.append(Part(name, "door", style.door_nouns, furniture, 1, axis, hinge, handle,
                             style.handle.kind, float(rng.uniform(1.45, 1.75))))
        return
    if kind == "flap":
        sb.add_box([xa, face, za], [xb, y_front, zb], style.finish.vertical, part)
        z = zb - min(0.05, height / 4)
        handle = sb.add_handle(style.handle, ((xa + xb) / 2, z), face, False, 0.4 * width, part)
        hinge = np.array([(xa + xb) / 2, y_front, za])  # along the bottom edge: folds down into the room
        sb.parts.append(Part(name, "door", FLAP, furniture, 1, unit((1, 0, 0)), hinge, handle, style.handle.kind,
                             float(rng.uniform(1.4, 1.6))))
        return
    if kind in ("oven", "dishwasher"):
        sb.add_box([xa, face, za], [xb, y_front, zb], style.finish.vertical, part)
        if kind == "oven":
            glass = sb.add_material(Material("glass", (0.02, 0.02, 0.025), (0.02, 0.02, 0.025), specular=0.8,
                                             name="glass"))
            sb.add_box([xa + 0.1 * width, face - 0.003, za + 0.2 * height],
                       [xb - 0.1 * width, face + 0.005, zb - 0.3 * height], glass, part)
        bar = HandleStyle("bar", style.handle.material, 0.016, 0.045, 0.8 * width)
        handle = sb.add_handle(bar, ((xa + xb) / 2, zb - 0.045), face, False, 0.8 * width, part)
        hinge = np.array([(xa + xb) / 2, y_front, za])
        nouns = ("oven door", "door") if kind == "oven" else ("dishwasher door", "door")
        sb.parts.append(Part(name, "door", nouns, furniture, 1, unit((1, 0, 0)), hinge, handle, "bar",
                             float(rng.uniform(1.45, 1.6))))
        return
    if kind != "open":
        raise ValueError(f"unknown front kind {kind!r} for {name}")


def fronts(sb: SceneBuilder, rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, rows: list[Row],
           style: FrontStyle, furniture: int, name: str) -> None:
    """Lay ``rows`` of fronts over the face ``y = lo[1]`` of a carcass spanning ``lo``..``hi``."""
    x0, x1 = lo[0] + style.frame_m, hi[0] - style.frame_m
    z_top = hi[2] - style.frame_m
    z_span = (hi[2] - lo[2]) - 2 * style.frame_m
    half_gap = style.gap_m / 2
    for r, (height_fraction, cells) in enumerate(rows):
        z_bottom = z_top - height_fraction * z_span
        x = x0
        for c, (width_fraction, kind) in enumerate(cells):
            x_right = x + width_fraction * (x1 - x0)
            rect = (x + half_gap, x_right - half_gap, z_bottom + half_gap, z_top - half_gap)
            _cell_part(sb, rng, kind, rect, float(lo[1]), float(hi[1] - lo[1]), style, furniture,
                       f"{name}/{kind}_r{r}_c{c}")
            x = x_right
        z_top = z_bottom


def _add_furniture(sb: SceneBuilder, kind: str, nouns: tuple[str, ...], colour: str, lo: np.ndarray,
                   hi: np.ndarray) -> tuple[int, str]:
    index = len(sb.furniture)
    name = f"{kind}{index}"
    sb.furniture.append(Furniture(name, nouns, colour, np.asarray(lo, float), np.asarray(hi, float)))
    return index, name


def _cabinet(sb: SceneBuilder, rng: np.random.Generator, kind: str, nouns: tuple[str, ...], lo: np.ndarray,
             hi: np.ndarray, rows: list[Row], style: FrontStyle) -> None:
    index, name = _add_furniture(sb, kind, nouns, style.finish.name, lo, hi)
    carcass(sb, lo, hi, style)
    fronts(sb, rng, lo, hi, rows, style, index, name)


def _standing_cabinet(sb: SceneBuilder, rng: np.random.Generator, x0: float, size: tuple[float, float, float],
                      leg: float, kind: str, nouns: tuple[str, ...], rows: list[Row], style: FrontStyle,
                      top: Optional[tuple[float, Union[float, tuple[float, float]]]] = None,
                      clutter_on_top: bool = True) -> float:
    """A cabinet of ``size`` (width, height, depth) on a support ``leg`` high, its fronts ``rows``; with ``top``
    (thickness, overhang or an overhang range drawn after the fronts) a slab on it and, unless told not, clutter.
    Returns the cabinet's right edge."""
    width, height, depth = size
    lo, hi = np.array([x0, -depth, leg]), np.array([x0 + width, 0.0, height])
    support(sb, rng, x0, x0 + width, depth, leg, style)
    _cabinet(sb, rng, kind, nouns, lo, hi, rows, style)
    if top is not None:
        thickness, overhang = top
        over = float(rng.uniform(*overhang)) if isinstance(overhang, tuple) else overhang
        top_slab(sb, x0, x0 + width, depth, height, thickness, over, style.finish.horizontal)
        if clutter_on_top:
            clutter(sb, rng, x0, x0 + width, depth, height + thickness)
    return x0 + width


def _door_cells(rng: np.random.Generator, width: float, count: int | None = None) -> list[tuple[float, CellKind]]:
    """Side-hinged doors across a width: one door, a pair, or more pairs (hinges on the outer sides)."""
    n = count or (1 if width < 0.55 else 2 if width < 1.3 else 4)
    if n == 1:
        return [(1.0, "door_left" if rng.random() < 0.5 else "door_right")]
    return [(1.0 / n, "door_left" if i % 2 == 0 else "door_right") for i in range(n)]


def _drawer_rows(count: int, height_fraction: float, columns: int = 1) -> list[Row]:
    return [(height_fraction / count, [(1.0 / columns, "drawer")] * columns) for _ in range(count)]


def dresser(sb: SceneBuilder, rng: np.random.Generator, x0: float) -> float:
    """A chest of drawers: 1-3 columns of 2-5 drawers, sometimes a row of small drawers on top."""
    width, height, depth = rng.uniform(0.6, 1.6), rng.uniform(0.6, 1.3), rng.uniform(0.4, 0.55)
    leg = rng.uniform(0.05, 0.15)
    style = sample_style(sb, rng, "middle")
    columns = 1 if width < 0.8 else int(rng.integers(1, 3)) if width < 1.2 else int(rng.integers(2, 4))
    count = int(np.clip(rng.integers(2, 6), 2, int((height - leg) / 0.14)))
    rows = _drawer_rows(count, 1.0, columns)
    if columns == 1 and width >= 0.8 and count >= 3 and rng.random() < 0.5:
        rows = [(1.0 / count, [(0.5, "drawer"), (0.5, "drawer")])] + rows[1:]
    return _standing_cabinet(sb, rng, x0, (width, height, depth), leg, "dresser", ("dresser", "chest of drawers"),
                             rows, style, top=(0.025, (0.0, 0.02)))


def nightstand(sb: SceneBuilder, rng: np.random.Generator, x0: float) -> float:
    """A bedside table: a drawer above a drawer, a door or an open shelf."""
    width, height, depth = rng.uniform(0.4, 0.6), rng.uniform(0.5, 0.7), rng.uniform(0.35, 0.45)
    leg = rng.uniform(0.05, 0.15)
    style = sample_style(sb, rng, "top")
    lower: CellKind = ("drawer", "door_left", "door_right", "open")[int(rng.integers(4))]
    split = rng.uniform(0.3, 0.5)
    rows: list[Row] = [(split, [(1.0, "drawer")]), (1.0 - split, [(1.0, lower)])]
    return _standing_cabinet(sb, rng, x0, (width, height, depth), leg, "nightstand", ("nightstand", "bedside table"),
                             rows, style, top=(0.02, 0.01))


def wardrobe(sb: SceneBuilder, rng: np.random.Generator, x0: float) -> float:
    """A tall wardrobe: a pair (or two pairs) of doors, sometimes drawers at the bottom."""
    width, height, depth = rng.uniform(0.8, 1.5), rng.uniform(1.8, 2.1), rng.uniform(0.5, 0.6)
    style = sample_style(sb, rng, "middle", door_nouns=("wardrobe door", "door"))
    doors = _door_cells(rng, width, 2 if width < 1.2 else 4)
    rows: list[Row] = [(1.0, doors)]
    if rng.random() < 0.5:
        n = int(rng.integers(1, 3))
        rows = [(0.8, doors)] + _drawer_rows(n, 0.2, 2 if width > 1.0 else 1)
    return _standing_cabinet(sb, rng, x0, (width, height, depth), 0.08, "wardrobe", ("wardrobe", "closet"), rows,
                             style)


def sideboard(sb: SceneBuilder, rng: np.random.Generator, x0: float) -> float:
    """A low cabinet: 2-3 columns, drawers over doors or doors only."""
    width, height, depth = rng.uniform(1.0, 1.9), rng.uniform(0.6, 0.9), rng.uniform(0.4, 0.5)
    leg = rng.uniform(0.05, 0.2)
    style = sample_style(sb, rng, "top")
    columns = 2 if width < 1.4 else 3
    doors: list[tuple[float, CellKind]] = (
        [(0.5, "door_left"), (0.5, "door_right")] if columns == 2
        else [(1 / 3, "door_left"), (1 / 3, "door_left" if rng.random() < 0.5 else "door_right"), (1 / 3, "door_right")]
    )
    rows: list[Row] = [(1.0, doors)]
    if rng.random() < 0.6:
        rows = [(0.25, [(1.0 / columns, "drawer")] * columns), (0.75, doors)]
    return _standing_cabinet(sb, rng, x0, (width, height, depth), leg, "sideboard", ("sideboard", "cabinet"), rows,
                             style, top=(0.025, (0.0, 0.02)))


def _builtin_column(rng: np.random.Generator, width: float) -> list[Row]:
    """The fronts of one tall built-in column, top first: stacked doors, a door over stacked drawers, or a
    door, a bottom-hinged flap and drawers."""
    layout = int(rng.integers(3))
    doors = _door_cells(rng, width)
    if layout == 0:
        split = float(rng.uniform(0.35, 0.55))
        return [(split, doors), (1.0 - split, _door_cells(rng, width))]
    if layout == 1:
        return [(0.55, doors)] + _drawer_rows(int(rng.integers(2, 5)), 0.45)
    return [(0.35, doors), (0.2, [(1.0, "flap")])] + _drawer_rows(int(rng.integers(2, 4)), 0.45)


def builtin_row(sb: SceneBuilder, rng: np.random.Generator, x0: float) -> float:
    """A wall of 3-6 tall built-in units side by side, set into a surround up to the ceiling, their fronts
    (stacked drawers, doors, bottom-hinged flaps) flush with it and with each other."""
    finish, handle = sample_finish(sb, rng), sample_handle(sb, rng)
    style = dataclasses.replace(sample_style(sb, rng, "middle", finish=finish, handle=handle), frame_m=0.0,
                                gap_m=float(rng.uniform(0.003, 0.006)))
    depth, plinth = float(rng.uniform(0.45, 0.6)), float(rng.uniform(0.06, 0.12))
    height, side = float(rng.uniform(1.9, 2.3)), float(rng.uniform(0.03, 0.08))
    front_y = -depth - style.thickness_m
    x = x0 + side
    for _ in range(int(rng.integers(3, 7))):
        width = float(rng.choice([0.4, 0.45, 0.5, 0.6]))
        lo, hi = np.array([x, -depth, plinth]), np.array([x + width, 0.0, height])
        sb.add_box([x, -depth + 0.05, 0.0], [x + width, -0.01, plinth], style.recess)
        _cabinet(sb, rng, "builtin", ("cabinet", "built-in cabinet", "tall cabinet"), lo, hi,
                 _builtin_column(rng, width), style)
        x += width
    for xa, xb in ((x0, x0 + side), (x, x + side)):
        sb.add_box([xa, front_y, 0.0], [xb, 0.0, CEILING_M], finish.vertical)
    sb.add_box([x0 + side, front_y, height], [x, 0.0, CEILING_M], finish.vertical)
    return x + side


def filing_cabinet(sb: SceneBuilder, rng: np.random.Generator, x0: float) -> float:
    """A narrow office cabinet of 2-4 equal drawers, standing on a low plinth (held out)."""
    width, height, depth = rng.uniform(0.4, 0.5), rng.uniform(0.7, 1.35), rng.uniform(0.5, 0.6)
    style = sample_style(sb, rng, "middle")
    count = int(np.clip(rng.integers(2, 5), 2, int(height / 0.28)))
    return _standing_cabinet(sb, rng, x0, (width, height, depth), 0.03, "filingcabinet", ("filing cabinet", "cabinet"),
                             _drawer_rows(count, 1.0), style)


def media_unit(sb: SceneBuilder, rng: np.random.Generator, x0: float) -> float:
    """A low, wide unit of 2-3 bottom-hinged flaps side by side, sometimes over a row of drawers (held out)."""
    width, height, depth = rng.uniform(1.2, 2.0), rng.uniform(0.4, 0.6), rng.uniform(0.35, 0.45)
    leg = rng.uniform(0.1, 0.2)
    style = sample_style(sb, rng, "top")
    columns = int(rng.integers(2, 4))
    flaps: list[tuple[float, CellKind]] = [(1.0 / columns, "flap")] * columns
    rows: list[Row] = [(1.0, flaps)]
    if rng.random() < 0.4:
        rows = [(0.65, flaps), (0.35, [(1.0 / columns, "drawer")] * columns)]
    nouns = ("media unit", "TV stand", "lowboard")
    return _standing_cabinet(sb, rng, x0, (width, height, depth), leg, "mediaunit", nouns, rows, style, top=(0.02, 0.0))


def bureau(sb: SceneBuilder, rng: np.random.Generator, x0: float) -> float:
    """A writing bureau: a fall-front flap over 2-3 drawers (held out)."""
    width, height, depth = rng.uniform(0.8, 1.1), rng.uniform(1.0, 1.25), rng.uniform(0.45, 0.55)
    leg = rng.uniform(0.06, 0.15)
    style = sample_style(sb, rng, "top")
    rows: list[Row] = [(0.4, [(1.0, "flap")])] + _drawer_rows(int(rng.integers(2, 4)), 0.6)
    return _standing_cabinet(sb, rng, x0, (width, height, depth), leg, "bureau", ("bureau", "writing desk"), rows,
                             style, top=(0.02, 0.01), clutter_on_top=False)


def _lidded(sb: SceneBuilder, rng: np.random.Generator, x0: float, kind: str, nouns: tuple[str, ...],
            size_lo: tuple[float, float, float], size_hi: tuple[float, float, float], appliance: bool) -> float:
    """A box with a lid hinged along its top back edge (a chest, a trash can)."""
    width, height, depth = rng.uniform(size_lo, size_hi)
    finish = sample_finish(sb, rng, appliance=appliance)
    handle_style = sample_handle(sb, rng)
    lid_t, over = rng.uniform(0.03, 0.05), rng.uniform(0.0, 0.02)
    index, name = _add_furniture(sb, kind, nouns, finish.name, np.array([x0 - over, -depth - over, 0.0]),
                                 np.array([x0 + width + over, 0.0, height + lid_t]))
    sb.add_box([x0, -depth, 0.0], [x0 + width, 0.0, height], finish.vertical)
    part = sb.next_part
    sb.add_box([x0 - over, -depth - over, height], [x0 + width + over, 0.0, height + lid_t], finish.horizontal, part)
    style = HandleStyle(handle_style.kind, handle_style.material, min(handle_style.thickness_m, lid_t / 2.5),
                        handle_style.standoff_m, handle_style.max_length_m)
    handle = sb.add_handle(style, (x0 + width / 2, height + lid_t / 2), -depth - over, False, 0.3 * width, part)
    hinge = np.array([x0 + width / 2, 0.0, height + lid_t])  # along the top back edge of the lid
    sb.parts.append(Part(f"{name}/lid", "lid", ("lid",), index, 1, unit((-1, 0, 0)), hinge, handle,
                         style.kind, float(rng.uniform(1.2, 1.6))))
    return x0 + width + over


def chest(sb: SceneBuilder, rng: np.random.Generator, x0: float) -> float:
    return _lidded(sb, rng, x0, "chest", ("chest", "storage chest", "trunk"), (0.6, 0.4, 0.4), (1.2, 0.6, 0.55),
                   appliance=False)


def trash_can(sb: SceneBuilder, rng: np.random.Generator, x0: float) -> float:
    return _lidded(sb, rng, x0, "bin", ("trash can", "bin"), (0.28, 0.45, 0.28), (0.42, 0.7, 0.4), appliance=True)


def ottoman(sb: SceneBuilder, rng: np.random.Generator, x0: float) -> float:
    """A low storage bench whose lid lifts at the back (held out)."""
    return _lidded(sb, rng, x0, "ottoman", ("ottoman", "storage bench"), (0.7, 0.35, 0.35), (1.3, 0.5, 0.5),
                   appliance=False)


def kitchen(sb: SceneBuilder, rng: np.random.Generator, x0: float) -> float:
    """A run of base units under one worktop (cabinets, drawer units, an oven, a dishwasher), wall
    cabinets above some of them, sometimes a fridge at one end and a microwave on the worktop."""
    finish, handle = sample_finish(sb, rng), sample_handle(sb, rng)
    base_style = sample_style(sb, rng, "top", finish=finish, handle=handle)
    wall_style = sample_style(sb, rng, "bottom", finish=finish, handle=handle)
    appliance = sample_finish(sb, rng, appliance=True)
    plinth, top_z, depth = 0.1, float(rng.uniform(0.84, 0.88)), 0.58
    fridge_side = ("none", "left", "right")[int(rng.integers(3))]
    x = x0
    if fridge_side == "left":
        x = _fridge(sb, rng, x, appliance) + 0.01
    run_start = x
    kinds = [str(k) for k in rng.choice(["doors", "drawers", "drawer_doors", "oven", "dishwasher"],
                                        size=int(rng.integers(2, 5)), p=[0.3, 0.2, 0.25, 0.15, 0.1])]
    wall_z0 = top_z + 0.04 + float(rng.uniform(0.5, 0.6))
    wall_h, wall_depth = float(rng.uniform(0.55, 0.75)), 0.33
    for unit_kind in kinds:
        width = 0.6 if unit_kind in ("oven", "dishwasher") else float(rng.choice([0.4, 0.5, 0.6, 0.8, 0.9]))
        lo, hi = np.array([x, -depth, plinth]), np.array([x + width, 0.0, top_z])
        sb.add_box([x + 0.01, -depth + 0.06, 0.0], [x + width - 0.01, -0.01, plinth], base_style.recess)
        if unit_kind in ("oven", "dishwasher"):
            style = FrontStyle(appliance, base_style.recess, handle, 0.004, 0.03, 0.0, False, "top", CABINET_DOOR)
            nouns = ("oven",) if unit_kind == "oven" else ("dishwasher",)
            rows: list[Row] = [(1.0, [(1.0, "dishwasher")])]
            if unit_kind == "oven":
                rows = [(0.15, [(1.0, "panel")]), (0.65, [(1.0, "oven")]), (0.2, [(1.0, "drawer")])]
            _cabinet(sb, rng, unit_kind, nouns, lo, hi, rows, style)
        else:
            if unit_kind == "doors":
                rows = [(1.0, _door_cells(rng, width))]
            elif unit_kind == "drawers":
                rows = _drawer_rows(int(rng.integers(3, 5)), 1.0)
            else:
                rows = [(0.2, [(1.0, "drawer")]), (0.8, _door_cells(rng, width))]
            _cabinet(sb, rng, "cabinet", ("cabinet", "lower cabinet", "base cabinet"), lo, hi, rows, base_style)
        if unit_kind != "oven" and rng.random() < 0.6:
            wlo, whi = np.array([x, -wall_depth, wall_z0]), np.array([x + width, 0.0, wall_z0 + wall_h])
            _cabinet(sb, rng, "wallcabinet", ("wall cabinet", "upper cabinet"), wlo, whi,
                     [(1.0, _door_cells(rng, width))], wall_style)
        x += width
    counter = sb.add_material(sample_counter(rng))
    top_slab(sb, run_start, x, depth, top_z, 0.04, 0.0, counter)
    sb.add_box([run_start, -depth - 0.03, top_z], [x, -depth, top_z + 0.04], counter)
    if rng.random() < 0.4 and x - run_start > 0.6:
        _microwave(sb, rng, float(rng.uniform(run_start + 0.02, x - 0.52)), top_z + 0.04, appliance)
    else:
        clutter(sb, rng, run_start, x, depth, top_z + 0.04)
    if fridge_side == "right":
        x = _fridge(sb, rng, x + 0.01, appliance)
    return x


def sample_counter(rng: np.random.Generator) -> Material:
    """A worktop: stone-like plain colour or wood."""
    if rng.random() < 0.3:
        return Material("wood", (0.6, 0.42, 0.25), (0.42, 0.27, 0.14), 0.02, 0, 0.1, "wooden")
    grey = float(rng.uniform(0.1, 0.85))
    return Material("plain", (grey, grey, grey * 0.97), (grey, grey, grey), specular=0.3, name="stone")


def _fridge(sb: SceneBuilder, rng: np.random.Generator, x0: float, finish: Finish) -> float:
    width, height, depth = float(rng.uniform(0.6, 0.75)), float(rng.uniform(1.7, 1.9)), 0.65
    handle = HandleStyle("bar", sb.add_material(Material("metal", (0.7, 0.7, 0.72), (0.7, 0.7, 0.72), specular=0.6)),
                         0.02, 0.04, 0.5)
    hinge: CellKind = "door_left" if rng.random() < 0.5 else "door_right"
    split = float(rng.uniform(0.6, 0.7))
    index, name = _add_furniture(sb, "fridge", ("fridge", "refrigerator"), finish.name, np.array([x0, -depth, 0.0]),
                                 np.array([x0 + width, 0.0, height]))
    style = FrontStyle(finish, sb.add_material(_RECESS), handle, 0.01, 0.04, 0.0, False, "bottom",
                       ("fridge door", "door"))
    lo, hi = np.array([x0, -depth, 0.02]), np.array([x0 + width, 0.0, height])
    carcass(sb, lo, hi, style)
    fronts(sb, rng, lo, hi, [(split, [(1.0, hinge)])], style, index, name)
    freezer_style = FrontStyle(finish, style.recess, handle, 0.01, 0.04, 0.0, False, "top", ("freezer door", "door"))
    fronts(sb, rng, lo, np.array([hi[0], hi[1], hi[2] - split * (hi[2] - lo[2])]), [(1.0, [(1.0, hinge)])],
           freezer_style, index, f"{name}/freezer")
    return x0 + width


def _microwave(sb: SceneBuilder, rng: np.random.Generator, x0: float, z0: float, finish: Finish) -> None:
    width, height, depth = 0.5, float(rng.uniform(0.26, 0.32)), 0.36
    y_back = -float(rng.uniform(0.05, 0.15))
    lo, hi = np.array([x0, y_back - depth, z0]), np.array([x0 + width, y_back, z0 + height])
    index, name = _add_furniture(sb, "microwave", ("microwave",), finish.name, lo, hi)
    handle = HandleStyle("bar", sb.add_material(Material("metal", (0.5, 0.5, 0.52), (0.5, 0.5, 0.52), specular=0.6)),
                         0.015, 0.025, 0.2)
    style = FrontStyle(finish, sb.add_material(_RECESS), handle, 0.006, 0.015, 0.0, False, "middle",
                       ("microwave door", "door"))
    carcass(sb, lo, hi, style)
    fronts(sb, rng, lo, hi, [(1.0, [(0.75, "door_left"), (0.25, "panel")])], style, index, name)
    door = len(sb.parts) - 1
    glass = sb.add_material(Material("glass", (0.02, 0.02, 0.025), (0.02, 0.02, 0.025), specular=0.8, name="glass"))
    face = lo[1] - style.thickness_m
    sb.add_box([x0 + 0.05, face - 0.003, z0 + 0.05], [x0 + 0.75 * width - 0.1, face + 0.005, z0 + height - 0.05],
               glass, door)


Builder = Callable[[SceneBuilder, np.random.Generator, float], float]
FLOOR_PIECES: tuple[Builder, ...] = (dresser, nightstand, wardrobe, sideboard, chest, trash_can)
HELDOUT_PIECES: tuple[Builder, ...] = (filing_cabinet, media_unit, bureau, ottoman)
