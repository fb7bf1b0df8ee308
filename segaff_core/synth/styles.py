"""The worlds the generator draws: which scenes, furniture, finishes, handles, views and camera effects.

- ``classic``: the world the shipped checkpoint was trained on (kitchen runs and free-standing pieces,
  textured and plain finishes, bar and knob handles, views from slightly above); what
  :func:`~segaff_core.synth.sample.scene_views` draws unless told otherwise.
- ``train`` (``segaff synth``'s default): the classic world and built-in rows set flush into a wall,
  flat low-texture finishes, recessed grips and handleless push-to-open fronts, frontal and oblique
  views, and camera effects (white balance, exposure, blur).
- ``heldout``: furniture families, finishes and handle kinds that ``train`` never draws (filing
  cabinets, media units, bureaus, ottomans; :data:`~segaff_core.synth.materials.HELDOUT_FINISHES`;
  edge pulls and cup pulls), with train's views and camera effects: a measure of generalisation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from segaff_core.synth import furniture as fb
from segaff_core.synth.camera import CLASSIC_VIEW, FRONTAL_VIEW, OBLIQUE_VIEW, ViewRange
from segaff_core.synth.palette import CLASSIC_PALETTE, HELDOUT_PALETTE, TRAIN_PALETTE, Palette

StyleName = Literal["train", "heldout", "classic"]
# kitchen: a kitchen run (sometimes with a bin); builtin: a built-in row; floor: 1-3 free-standing pieces
SceneKind = Literal["kitchen", "builtin", "floor"]


@dataclass(frozen=True)
class SceneStyle:
    """One world: its palette, scene kinds with weights, free-standing pieces, camera views and whether
    images get camera effects."""

    name: str
    palette: Palette
    scene_kinds: tuple[SceneKind, ...]
    scene_weights: tuple[float, ...]
    floor_pieces: tuple[fb.Builder, ...]
    views: tuple[ViewRange, ...]
    camera_effects: bool

    def families(self) -> set[str]:
        """Names of the furniture builders this style can call (kitchen runs count as their units)."""
        names = {piece.__name__ for piece in self.floor_pieces}
        if "kitchen" in self.scene_kinds:
            names |= {"kitchen", "trash_can"}
        if "builtin" in self.scene_kinds:
            names.add("builtin_row")
        return names


CLASSIC = SceneStyle("classic", CLASSIC_PALETTE, ("kitchen", "floor"), (0.4, 0.6), fb.FLOOR_PIECES,
                     (CLASSIC_VIEW,), camera_effects=False)
TRAIN = SceneStyle("train", TRAIN_PALETTE, ("kitchen", "builtin", "floor"), (0.3, 0.3, 0.4), fb.FLOOR_PIECES,
                   (CLASSIC_VIEW, FRONTAL_VIEW, OBLIQUE_VIEW), camera_effects=True)
HELDOUT = SceneStyle("heldout", HELDOUT_PALETTE, ("floor",), (1.0,), fb.HELDOUT_PIECES,
                     (CLASSIC_VIEW, FRONTAL_VIEW, OBLIQUE_VIEW), camera_effects=True)
#: ``classic``: the world before the styles, which the shipped checkpoint was trained and scored on.
STYLES: dict[str, SceneStyle] = {"train": TRAIN, "heldout": HELDOUT, "classic": CLASSIC}


def style_named(name: str) -> SceneStyle:
    """The style called ``name`` (``train``, ``heldout`` or ``classic``)."""
    if name not in STYLES:
        raise ValueError(f"unknown styles {name!r}: expected one of {sorted(STYLES)}")
    return STYLES[name]
