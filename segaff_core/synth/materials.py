"""Materials and their procedural textures (wood grain, tiles, planks), evaluated on hit points with numpy."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

TextureKind = Literal["plain", "wood", "tiles", "planks", "metal", "glass"]
_KIND_CODES: dict[str, int] = {"plain": 0, "wood": 1, "tiles": 2, "planks": 3, "metal": 4, "glass": 5}

# A fixed set of plane waves: a cheap smooth 3D noise in [-1, 1] without lattice look-ups.
_WAVES = np.random.default_rng(20240611).normal(size=(5, 3))
_PHASES = np.random.default_rng(20240612).uniform(0, 2 * np.pi, size=5)


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


# Furniture finishes: (name, kind, colour, accent).
FURNITURE_FINISHES: tuple[tuple[str, TextureKind, tuple[float, float, float], tuple[float, float, float]], ...] = (
    ("white", "plain", (0.82, 0.82, 0.80), (0.82, 0.82, 0.80)),
    ("light wooden", "wood", (0.72, 0.52, 0.30), (0.52, 0.34, 0.17)),
    ("dark wooden", "wood", (0.30, 0.18, 0.10), (0.18, 0.10, 0.05)),
    ("grey", "plain", (0.45, 0.46, 0.48), (0.45, 0.46, 0.48)),
    ("black", "plain", (0.06, 0.06, 0.07), (0.06, 0.06, 0.07)),
    ("blue", "plain", (0.16, 0.26, 0.50), (0.16, 0.26, 0.50)),
    ("green", "plain", (0.26, 0.42, 0.28), (0.26, 0.42, 0.28)),
    ("red", "plain", (0.58, 0.13, 0.10), (0.58, 0.13, 0.10)),
    ("beige", "plain", (0.78, 0.70, 0.56), (0.78, 0.70, 0.56)),
)
APPLIANCE_FINISHES: tuple[tuple[str, TextureKind, tuple[float, float, float], tuple[float, float, float]], ...] = (
    ("stainless steel", "metal", (0.58, 0.59, 0.60), (0.58, 0.59, 0.60)),
    ("white", "plain", (0.86, 0.86, 0.86), (0.86, 0.86, 0.86)),
    ("black", "metal", (0.07, 0.07, 0.08), (0.07, 0.07, 0.08)),
)
HANDLE_FINISHES: tuple[tuple[float, float, float], ...] = (
    (0.70, 0.70, 0.72),  # brushed steel
    (0.05, 0.05, 0.05),  # black
    (0.62, 0.45, 0.18),  # brass
)


def _noise(points: np.ndarray) -> np.ndarray:
    """Smooth pseudo-noise (N,) in about [-1, 1] at points (N, 3)."""
    return np.sin(points @ _WAVES.T + _PHASES).mean(axis=1) * 1.6


def _hash(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Per-cell pseudo-random value in [0, 1) from two integer grid coordinates."""
    value = np.sin(i * 12.9898 + j * 78.233) * 43758.5453
    return value - np.floor(value)


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
            colour=np.array([m.colour for m in materials]),
            accent=np.array([m.accent for m in materials]),
            scale_m=np.array([m.scale_m for m in materials]),
            axis=np.array([m.axis for m in materials]),
            specular=np.array([m.specular for m in materials]),
            offset=np.array([m.offset for m in materials]),
        )

    def albedo(self, points: np.ndarray, material_ids: np.ndarray) -> np.ndarray:
        """Linear-RGB albedo (N, 3) of hit points (N, 3) (world metres) on the given materials (N,)."""
        p = points + self.offset[material_ids]
        colour = self.colour[material_ids]
        accent = self.accent[material_ids]
        scale = self.scale_m[material_ids]
        axis = self.axis[material_ids]
        kind = self.kind[material_ids]
        rows = np.arange(len(p))
        along = p[rows, axis]
        across_a = p[rows, (axis + 1) % 3]
        across_b = p[rows, (axis + 2) % 3]
        fine = _noise(p * 40.0)
        out = colour * (1.0 + 0.04 * _noise(p * 3.0) + 0.02 * fine)[:, None]

        wood = kind == _KIND_CODES["wood"]
        if wood.any():
            w = np.nonzero(wood)[0]
            bend = _noise(np.stack([along[w] * 2.0, across_a[w] * 0.5, across_b[w] * 0.5], axis=1))
            rings = 0.5 + 0.5 * np.sin(2 * np.pi * ((across_a[w] + across_b[w]) / scale[w] + 0.8 * bend))
            t = (rings**3)[:, None]
            out[w] = (colour[w] * (1 - t) + accent[w] * t) * (1.0 + 0.04 * fine[w])[:, None]

        tiles = kind == _KIND_CODES["tiles"]
        if tiles.any():
            t_ = np.nonzero(tiles)[0]
            fu, fv = across_a[t_] / scale[t_], across_b[t_] / scale[t_]
            iu, iv = np.floor(fu), np.floor(fv)
            grout = np.minimum(fu - iu, fv - iv) < 0.035
            tint = 0.9 + 0.2 * _hash(iu, iv)
            out[t_] = np.where(grout[:, None], accent[t_], colour[t_] * tint[:, None])

        planks = kind == _KIND_CODES["planks"]
        if planks.any():
            k = np.nonzero(planks)[0]
            # Floor planks run along `axis` (0 or 1) and are `scale` wide along the other horizontal axis.
            width = p[k, 1 - axis[k]]
            index = np.floor(width / scale[k])
            offset_along = along[k] + 1.7 * _hash(index, index * 0.37)
            seam = (width / scale[k] - index) < 0.04
            seam |= (offset_along / 1.2 - np.floor(offset_along / 1.2)) < 0.004
            tone = 0.8 + 0.35 * _hash(index, np.floor(offset_along / 1.2))
            grain = 0.5 + 0.5 * np.sin(2 * np.pi * (width / 0.012 + 2.0 * _noise(p[k] * np.array([1.0, 1.0, 4.0]))))
            base = colour[k] * (1 - 0.25 * grain[:, None] ** 4) + accent[k] * 0.25 * grain[:, None] ** 4
            out[k] = np.where(seam[:, None], accent[k] * 0.6, base * tone[:, None])
        return np.clip(out, 0.0, 1.0)
