"""Scene layout: surfaces, articulated parts and furniture pieces, and the builder that collects them.

Everything here is in the world frame of :mod:`segaff_core.synth.mesh` (x along the back wall, fronts
facing -y, z up, metres). Parts are built closed; :mod:`segaff_core.synth.articulation` moves them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from segaff_core.synth.materials import Material
from segaff_core.synth.mesh import MeshBuilder, TriangleMesh
from segaff_core.synth.palette import CLASSIC_PALETTE, HandleKind, Palette

Category = Literal["drawer", "door", "lid"]
CEILING_M = 2.6  # height of every room's ceiling
RECESS_DEPTH_M = 0.0015  # how far a recessed grip's dark slot stands out of its front (flush, in effect)
CATEGORY_IDS: dict[str, int] = {"drawer": 1, "door": 2, "lid": 3}


@dataclass(frozen=True)
class Part:
    """An articulated part, closed. ``axis`` is the opening direction (translation) or the hinge axis
    oriented so that a positive angle opens it (rotation); ``hinge_point`` lies on the hinge line;
    ``handle`` is the centre of the handle's outer face; ``range_max`` in metres or radians."""

    name: str
    category: Category
    nouns: tuple[str, ...]
    furniture: int
    motion_type: int
    axis: np.ndarray
    hinge_point: np.ndarray
    handle: np.ndarray
    handle_kind: HandleKind
    range_max: float

    @property
    def origin(self) -> np.ndarray:
        """The motion origin: the handle projected onto the hinge line (rotation), the handle (translation)."""
        if self.motion_type == 0:
            return self.handle.copy()
        return self.hinge_point + float((self.handle - self.hinge_point) @ self.axis) * self.axis


@dataclass(frozen=True)
class Furniture:
    """A piece of furniture or an appliance: names for descriptions and its bounds (metres)."""

    name: str
    nouns: tuple[str, ...]
    colour: str
    lo: np.ndarray
    hi: np.ndarray


@dataclass(frozen=True)
class SceneLayout:
    """A built scene: one mesh whose triangles map to surfaces, each with a material and a part (-1 none)."""

    mesh: TriangleMesh
    surface_material: np.ndarray
    surface_part: np.ndarray
    materials: list[Material]
    parts: list[Part]
    furniture: list[Furniture]
    light_position: np.ndarray
    room_lo: np.ndarray
    room_hi: np.ndarray

    @property
    def furniture_lo(self) -> np.ndarray:
        return np.min([f.lo for f in self.furniture], axis=0)

    @property
    def furniture_hi(self) -> np.ndarray:
        return np.max([f.hi for f in self.furniture], axis=0)


@dataclass(frozen=True)
class HandleStyle:
    """How a piece's handles look (see :data:`~segaff_core.synth.palette.HandleKind`), sizes in metres
    (a recessed grip's slot is ``thickness_m`` high; a handleless front has no size) and the material."""

    kind: HandleKind
    material: int
    thickness_m: float
    standoff_m: float
    max_length_m: float


@dataclass
class SceneBuilder:
    """Accumulates boxes, materials, parts and furniture; :meth:`build` returns the :class:`SceneLayout`.
    Furniture builders draw finishes and handles from ``palette``."""

    palette: Palette = CLASSIC_PALETTE
    mesh: MeshBuilder = field(default_factory=MeshBuilder)
    materials: list[Material] = field(default_factory=list)
    parts: list[Part] = field(default_factory=list)
    furniture: list[Furniture] = field(default_factory=list)
    _surface_material: list[int] = field(default_factory=list)
    _surface_part: list[int] = field(default_factory=list)

    def add_material(self, material: Material) -> int:
        self.materials.append(material)
        return len(self.materials) - 1

    def add_box(self, lo: np.ndarray, hi: np.ndarray, material: int, part: int = -1) -> None:
        self._surface_material.append(material)
        self._surface_part.append(part)
        self.mesh.add_box(np.asarray(lo), np.asarray(hi), len(self._surface_material) - 1)

    def add_knob(self, centre_xz: tuple[float, float], y_range: tuple[float, float], radius: float,
                 material: int, part: int) -> None:
        self._surface_material.append(material)
        self._surface_part.append(part)
        self.mesh.add_prism_y(centre_xz, y_range, radius, 8, len(self._surface_material) - 1)

    @property
    def next_part(self) -> int:
        return len(self.parts)

    def add_handle(self, style: HandleStyle, centre_xz: tuple[float, float], face_y: float,
                   vertical: bool, length_m: float, part: int) -> np.ndarray:
        """A handle on a front whose outer face is the plane ``y = face_y``, ``vertical`` (doors) or
        horizontal; returns the handle point: the centre of its outer face, or where a handleless front
        is pushed."""
        x, z = centre_xz
        b, s = style.thickness_m, style.standoff_m
        half = min(length_m, style.max_length_m) / 2
        along = np.array([0.0, 0.0, 1.0]) if vertical else np.array([1.0, 0.0, 0.0])
        across = np.array([1.0, 0.0, 0.0]) if vertical else np.array([0.0, 0.0, 1.0])
        centre = np.array([x, face_y, z])
        if style.kind == "none":
            return centre
        if style.kind == "knob":
            self.add_knob((x, z), (face_y - s, face_y), b, style.material, part)
            return np.array([x, face_y - s, z])
        if style.kind in ("recessed", "edge", "cup"):  # one solid block on the face
            proud = RECESS_DEPTH_M if style.kind == "recessed" else s
            extent = half * along + b / 2 * across
            self.add_box(centre - extent - [0.0, proud, 0.0], centre + extent, style.material, part)
            return np.array([x, face_y - proud, z])
        post = 0.8 * b
        if vertical:
            self.add_box([x - b / 2, face_y - s - b, z - half], [x + b / 2, face_y - s, z + half], style.material, part)
            for zp in (z - half + b, z + half - b):
                self.add_box([x - post / 2, face_y - s, zp - post / 2], [x + post / 2, face_y, zp + post / 2],
                             style.material, part)
        else:
            self.add_box([x - half, face_y - s - b, z - b / 2], [x + half, face_y - s, z + b / 2], style.material, part)
            for xp in (x - half + b, x + half - b):
                self.add_box([xp - post / 2, face_y - s, z - post / 2], [xp + post / 2, face_y, z + post / 2],
                             style.material, part)
        return np.array([x, face_y - s - b, z])

    def build(self, light_position: np.ndarray, room_lo: np.ndarray, room_hi: np.ndarray) -> SceneLayout:
        return SceneLayout(
            mesh=self.mesh.build(),
            surface_material=np.array(self._surface_material, dtype=np.int64),
            surface_part=np.array(self._surface_part, dtype=np.int64),
            materials=list(self.materials),
            parts=list(self.parts),
            furniture=list(self.furniture),
            light_position=np.asarray(light_position, dtype=np.float64),
            room_lo=np.asarray(room_lo, dtype=np.float64),
            room_hi=np.asarray(room_hi, dtype=np.float64),
        )


def unit(vector: tuple[float, float, float]) -> np.ndarray:
    """A float64 unit vector."""
    v = np.asarray(vector, dtype=np.float64)
    return v / np.linalg.norm(v)

