"""Triangle soups of axis-aligned boxes and prisms, each triangle tagged with a surface id.

World frame of the synthetic scenes: x along the back wall (to the right seen from the room), y from the
room into the wall (furniture fronts face -y), z up, metres.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Corner k of a box has x = bit 0, y = bit 1, z = bit 2 (0 = low, 1 = high).
_BOX_CORNERS = np.array([[(k >> 0) & 1, (k >> 1) & 1, (k >> 2) & 1] for k in range(8)], dtype=np.float64)
_BOX_TRIANGLES = np.array(
    [
        [0, 4, 6], [0, 6, 2],  # x low
        [1, 3, 7], [1, 7, 5],  # x high
        [0, 1, 5], [0, 5, 4],  # y low (front)
        [2, 6, 7], [2, 7, 3],  # y high (back)
        [0, 2, 3], [0, 3, 1],  # z low
        [4, 5, 7], [4, 7, 6],  # z high
    ],
    dtype=np.int64,
)


@dataclass(frozen=True)
class TriangleMesh:
    """``vertices (V, 3) float32``, ``triangles (T, 3) uint32`` and ``surface_ids (T,) int32``."""

    vertices: np.ndarray
    triangles: np.ndarray
    surface_ids: np.ndarray


@dataclass
class MeshBuilder:
    """Collects boxes and prisms; :meth:`build` concatenates them into one :class:`TriangleMesh`."""

    _vertices: list[np.ndarray] = field(default_factory=list)
    _triangles: list[np.ndarray] = field(default_factory=list)
    _surfaces: list[np.ndarray] = field(default_factory=list)
    _num_vertices: int = 0

    def _add(self, vertices: np.ndarray, triangles: np.ndarray, surface: int) -> None:
        self._vertices.append(vertices)
        self._triangles.append(triangles + self._num_vertices)
        self._surfaces.append(np.full(len(triangles), surface, dtype=np.int32))
        self._num_vertices += len(vertices)

    def add_box(self, lo: np.ndarray, hi: np.ndarray, surface: int) -> None:
        """An axis-aligned box between corners ``lo`` and ``hi`` (metres)."""
        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        if np.any(hi <= lo):
            raise ValueError(f"box needs hi > lo on every axis, got lo={lo.tolist()} hi={hi.tolist()}")
        self._add(lo + _BOX_CORNERS * (hi - lo), _BOX_TRIANGLES, surface)

    def add_prism_y(
        self, centre_xz: tuple[float, float], y_range: tuple[float, float], radius: float, sides: int, surface: int
    ) -> None:
        """A closed regular prism (a low-poly cylinder) along y, e.g. a knob on a front facing -y."""
        angles = np.arange(sides) * (2 * np.pi / sides)
        ring_x = centre_xz[0] + radius * np.cos(angles)
        ring_z = centre_xz[1] + radius * np.sin(angles)
        vertices = np.concatenate(
            [
                np.stack([ring_x, np.full(sides, y_range[0]), ring_z], axis=1),
                np.stack([ring_x, np.full(sides, y_range[1]), ring_z], axis=1),
                [[centre_xz[0], y_range[0], centre_xz[1]], [centre_xz[0], y_range[1], centre_xz[1]]],
            ]
        )
        k = np.arange(sides)
        k1 = (k + 1) % sides
        sides_a = np.stack([k, k1, k1 + sides], axis=1)
        sides_b = np.stack([k, k1 + sides, k + sides], axis=1)
        cap_front = np.stack([np.full(sides, 2 * sides), k1, k], axis=1)
        cap_back = np.stack([np.full(sides, 2 * sides + 1), k + sides, k1 + sides], axis=1)
        self._add(vertices, np.concatenate([sides_a, sides_b, cap_front, cap_back]), surface)

    def build(self) -> TriangleMesh:
        """All shapes added so far as one mesh."""
        if not self._vertices:
            raise ValueError("the mesh is empty: add shapes before building it")
        return TriangleMesh(
            vertices=np.concatenate(self._vertices).astype(np.float32),
            triangles=np.concatenate(self._triangles).astype(np.uint32),
            surface_ids=np.concatenate(self._surfaces),
        )
