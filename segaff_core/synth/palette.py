"""What a scene's furniture is made of: the finishes and handle kinds a style draws from.

A :class:`Palette` belongs to the :class:`~segaff_core.synth.layout.SceneBuilder` of a scene, so every
furniture builder draws its finishes and handles from the scene's style.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from segaff_core.synth.materials import (
    APPLIANCE_FINISHES,
    FLAT_FINISHES,
    FURNITURE_FINISHES,
    HELDOUT_FINISHES,
    FinishSpec,
)

# bar: a bar on two posts; knob: a round knob; recessed: a dark grip slot in the front; none: a handleless
# push-to-open front; edge: a profile along the front's top edge; cup: a cup pull (the last two held out).
HandleKind = Literal["bar", "knob", "recessed", "none", "edge", "cup"]


def weighted_index(rng: np.random.Generator, weights: tuple[float, ...]) -> int:
    """An index drawn with probability proportional to ``weights``, from one uniform draw (so that
    weights (p, 1 - p) pick index 0 exactly when ``rng.random() < p``)."""
    bounds = np.cumsum(weights) / sum(weights)
    return min(int(np.searchsorted(bounds, rng.random(), side="right")), len(bounds) - 1)


@dataclass(frozen=True)
class Palette:
    """Finishes for furniture and appliances, and handle kinds with their relative weights."""

    finishes: tuple[FinishSpec, ...]
    appliance_finishes: tuple[FinishSpec, ...]
    handle_kinds: tuple[HandleKind, ...]
    handle_weights: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.handle_kinds) != len(self.handle_weights) or not self.handle_kinds:
            raise ValueError(f"Palette: {len(self.handle_kinds)} handle kinds for {len(self.handle_weights)} weights")

    def handle_kind(self, rng: np.random.Generator) -> HandleKind:
        """A handle kind drawn by weight."""
        return self.handle_kinds[weighted_index(rng, self.handle_weights)]


# What the shipped checkpoint was trained on: textured and plain finishes, bars and knobs.
CLASSIC_PALETTE = Palette(FURNITURE_FINISHES, APPLIANCE_FINISHES, ("bar", "knob"), (0.65, 0.35))
TRAIN_PALETTE = Palette(FURNITURE_FINISHES + FLAT_FINISHES, APPLIANCE_FINISHES,
                        ("bar", "knob", "recessed", "none"), (0.4, 0.25, 0.15, 0.2))
HELDOUT_PALETTE = Palette(HELDOUT_FINISHES, (), ("edge", "cup"), (0.5, 0.5))
