"""Materials and their procedural textures (wood grain, tiles, planks), evaluated on hit points with numpy."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

# "flat": one colour without the faint noise of "plain" (a low-texture lacquer or laminate).
TextureKind = Literal["plain", "wood", "tiles", "planks", "metal", "glass", "flat"]
_KIND_CODES: dict[str, int] = {"plain": 0, "wood": 1, "tiles": 2, "planks": 3, "metal": 4, "glass": 5, "flat": 6}

# A fixed set of plane waves: a cheap smooth 3D noise in [-1, 1] without lattice look-ups. float32 keeps
# numpy's sine vectorised (float64 sine of large arguments is ~30x slower).
_WAVES = np.random.default_rng(20240611).normal(size=(4, 3)).astype(np.float32)
_PHASES = np.random.default_rng(20240612).uniform(0, 2 * np.pi, size=4).astype(np.float32)


@dataclass(frozen=True)
class Material:
    """Linear-RGB colours in [0, 1] and a texture; ``axis`` is the wood grain direction, the plank
    direction, or the normal of a tiled plane (0 x, 1 y, 2 z). ``name`` is the colour word used in
    descriptions ("white", "dark wooden", ...)."""

    kind: TextureKind
    colour: tuple[float, float, float]
    accent: tuple[float, float, float]
    scale_m: float = 0.05
    axis: int = 0
    specular: float = 0.0
    name: str = ""
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)


class FinishSpec(NamedTuple):
    """A finish to draw furniture from: its colour word, texture, colours and specular strength."""

    name: str
    kind: TextureKind
    colour: tuple[float, float, float]
    accent: tuple[float, float, float]
    specular: float = 0.0


FURNITURE_FINISHES: tuple[FinishSpec, ...] = (
    FinishSpec("white", "plain", (0.82, 0.82, 0.80), (0.82, 0.82, 0.80)),
    FinishSpec("light wooden", "wood", (0.72, 0.52, 0.30), (0.52, 0.34, 0.17)),
    FinishSpec("dark wooden", "wood", (0.30, 0.18, 0.10), (0.18, 0.10, 0.05)),
    FinishSpec("grey", "plain", (0.45, 0.46, 0.48), (0.45, 0.46, 0.48)),
    FinishSpec("black", "plain", (0.06, 0.06, 0.07), (0.06, 0.06, 0.07)),
    FinishSpec("blue", "plain", (0.16, 0.26, 0.50), (0.16, 0.26, 0.50)),
    FinishSpec("green", "plain", (0.26, 0.42, 0.28), (0.26, 0.42, 0.28)),
    FinishSpec("red", "plain", (0.58, 0.13, 0.10), (0.58, 0.13, 0.10)),
    FinishSpec("beige", "plain", (0.78, 0.70, 0.56), (0.78, 0.70, 0.56)),
)
# Low-texture flat fronts (lacquer, laminate) of the train style.
FLAT_FINISHES: tuple[FinishSpec, ...] = (
    FinishSpec("matte white", "flat", (0.86, 0.86, 0.85), (0.86, 0.86, 0.85)),
    FinishSpec("light grey", "flat", (0.66, 0.67, 0.68), (0.66, 0.67, 0.68)),
    FinishSpec("sage", "flat", (0.50, 0.58, 0.48), (0.50, 0.58, 0.48)),
    FinishSpec("navy", "flat", (0.10, 0.14, 0.28), (0.10, 0.14, 0.28)),
    FinishSpec("cream", "flat", (0.88, 0.84, 0.72), (0.88, 0.84, 0.72)),
)
# Finishes only the held-out style draws (names and looks no training style has).
HELDOUT_FINISHES: tuple[FinishSpec, ...] = (
    FinishSpec("walnut", "wood", (0.42, 0.27, 0.17), (0.26, 0.15, 0.08)),
    FinishSpec("pale oak", "wood", (0.80, 0.68, 0.50), (0.66, 0.52, 0.34)),
    FinishSpec("glossy white", "flat", (0.92, 0.92, 0.93), (0.92, 0.92, 0.93), 0.4),
    FinishSpec("charcoal", "flat", (0.16, 0.16, 0.17), (0.16, 0.16, 0.17)),
    FinishSpec("mustard", "flat", (0.72, 0.55, 0.12), (0.72, 0.55, 0.12)),
    FinishSpec("teal", "plain", (0.08, 0.40, 0.42), (0.08, 0.40, 0.42)),
    FinishSpec("terracotta", "plain", (0.66, 0.33, 0.22), (0.66, 0.33, 0.22)),
)
APPLIANCE_FINISHES: tuple[FinishSpec, ...] = (
    FinishSpec("stainless steel", "metal", (0.58, 0.59, 0.60), (0.58, 0.59, 0.60), 0.5),
    FinishSpec("white", "plain", (0.86, 0.86, 0.86), (0.86, 0.86, 0.86)),
    FinishSpec("black", "metal", (0.07, 0.07, 0.08), (0.07, 0.07, 0.08), 0.5),
)
HANDLE_FINISHES: tuple[tuple[float, float, float], ...] = (
    (0.70, 0.70, 0.72),  # brushed steel
    (0.05, 0.05, 0.05),  # black
    (0.62, 0.45, 0.18),  # brass
)


def _noise(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Smooth pseudo-noise (N,) in about [-1, 1] at points given by their coordinates (N,) each."""
    total = np.zeros_like(x)
    for (wx, wy, wz), phase in zip(_WAVES, _PHASES):
        total += np.sin(wx * x + wy * y + wz * z + phase)
    return total * np.float32(1.4 / len(_WAVES))


def _hash(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Per-cell pseudo-random value in [0, 1) from two integer-valued grid coordinates."""
    value = (i.astype(np.int64) * 73856093) ^ (j.astype(np.int64) * 19349663)
    return ((value * 2654435761) % 1021).astype(np.float32) / np.float32(1021)


@dataclass(frozen=True)
class MaterialTable:
    """The materials of one scene as arrays, for vectorised shading."""

    kind: np.ndarray  # (M,) int
    colour: np.ndarray  # (M, 3)
    accent: np.ndarray  # (M, 3)
    scale_m: np.ndarray  # (M,)
    axis: np.ndarray  # (M,) int
    specular: np.ndarray  # (M,)
    offset: np.ndarray  # (M, 3)

    @staticmethod
    def from_materials(materials: list[Material]) -> MaterialTable:
        return MaterialTable(
            kind=np.array([_KIND_CODES[m.kind] for m in materials]),
            colour=np.array([m.colour for m in materials], dtype=np.float32),
            accent=np.array([m.accent for m in materials], dtype=np.float32),
            scale_m=np.array([m.scale_m for m in materials], dtype=np.float32),
            axis=np.array([m.axis for m in materials]),
            specular=np.array([m.specular for m in materials], dtype=np.float32),
            offset=np.array([m.offset for m in materials], dtype=np.float32),
        )

    def albedo(self, points: np.ndarray, material_ids: np.ndarray) -> np.ndarray:
        """Linear-RGB albedo (N, 3) float32 of hit points (N, 3) (world metres) on the given materials (N,)."""
        p = points.astype(np.float32) + self.offset[material_ids]
        x, y, z = np.ascontiguousarray(p.T)
        out = self.colour[material_ids] * (1.0 + 0.05 * _noise(x * 3.0, y * 3.0, z * 3.0))[:, None]
        kind = self.kind[material_ids]
        flat = np.nonzero(kind == _KIND_CODES["flat"])[0]
        out[flat] = self.colour[material_ids[flat]]
        for code, shader in ((_KIND_CODES["wood"], self._wood), (_KIND_CODES["tiles"], self._tiles),
                             (_KIND_CODES["planks"], self._planks)):
            subset = np.nonzero(kind == code)[0]
            if len(subset):
                out[subset] = shader((x[subset], y[subset], z[subset]), material_ids[subset])
        return np.clip(out, 0.0, 1.0)

    def _axes(self, xyz: tuple[np.ndarray, ...], materials: np.ndarray) -> tuple[np.ndarray, ...]:
        """Coordinates along each material's axis and the two across it."""
        axis = self.axis[materials]
        return tuple(np.choose((axis + k) % 3, xyz) for k in range(3))

    def _wood(self, xyz: tuple[np.ndarray, ...], materials: np.ndarray) -> np.ndarray:
        """Grain: wavy rings across the grain direction, darker towards the accent colour."""
        along, across_a, across_b = self._axes(xyz, materials)
        across = across_a + across_b
        bend = _noise(along * 1.5, across * 4.0, across * 1.3)
        rings = 0.5 + 0.5 * np.sin(np.float32(2 * np.pi) * (across / self.scale_m[materials] + 2.5 * bend))
        t = (rings * rings) ** 2
        colour, accent = self.colour[materials], self.accent[materials]
        return colour + (accent - colour) * t[:, None]

    def _tiles(self, xyz: tuple[np.ndarray, ...], materials: np.ndarray) -> np.ndarray:
        """Square tiles of size ``scale`` on the plane normal to ``axis``, with grout lines."""
        _, across_a, across_b = self._axes(xyz, materials)
        scale = self.scale_m[materials]
        fu, fv = across_a / scale, across_b / scale
        iu, iv = np.floor(fu), np.floor(fv)
        grout = np.minimum(fu - iu, fv - iv) < 0.035
        tint = 0.9 + 0.2 * _hash(iu, iv)
        return np.where(grout[:, None], self.accent[materials], self.colour[materials] * tint[:, None])

    def _planks(self, xyz: tuple[np.ndarray, ...], materials: np.ndarray) -> np.ndarray:
        """Floor planks along ``axis`` (0 or 1), ``scale`` wide, staggered, with seams and grain."""
        x, y, z = xyz
        axis = self.axis[materials]
        along, width_m = np.where(axis == 0, x, y), np.where(axis == 0, y, x)
        scale = self.scale_m[materials]
        width = width_m / scale
        index = np.floor(width)
        length = (along + 1.7 * _hash(index, index + 7)) / 1.2
        seam = ((width - index) < 0.04) | ((length - np.floor(length)) < 0.004)
        tone = 0.8 + 0.35 * _hash(index, np.floor(length))
        grain = 0.5 + 0.5 * np.sin(np.float32(2 * np.pi) * (width_m / 0.012 + 2.0 * _noise(x, y, z * 4.0)))
        grain = 0.25 * (grain * grain) ** 2
        colour, accent = self.colour[materials], self.accent[materials]
        base = (colour + (accent - colour) * grain[:, None]) * tone[:, None]
        return np.where(seam[:, None], accent * 0.6, base)
