"""The shipped default checkpoint works on scenes it never saw: the instruction selects the named part.

Held-out scenes: the generator's data sets draw scene seeds from ``SeedSequence([seed, index])`` (64-bit),
so the small seeds searched here are never training scenes.
"""
from __future__ import annotations

import numpy as np
import pytest

from segaff_core.checkpoint import DEFAULT_CHECKPOINT
from segaff_core.inference import Predictor
from segaff_core.synth.sample import find_scene, scene_views

HELD_OUT_SEEDS = range(10_000, 10_500)
IMAGE_SIZE = (256, 256)


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    assert DEFAULT_CHECKPOINT.is_file(), f"the shipped checkpoint {DEFAULT_CHECKPOINT} is missing"
    return Predictor.from_checkpoint(device="cpu")


@pytest.mark.parametrize("instruction", [
    "open the top drawer",
    "open the left door",
    "open the bottom drawer",  # a scene with two columns of drawers: the lowest one overall
])
def test_the_named_part_is_selected_on_a_held_out_scene(predictor: Predictor, instruction: str) -> None:
    found = find_scene(instruction, HELD_OUT_SEEDS, min_siblings=1)  # a scene where the phrase must choose
    assert found is not None, f"no held-out scene has a part named by {instruction!r}"
    seed, part_index = found
    views, rng = scene_views(seed)
    sample = views.view(rng, IMAGE_SIZE, part_id=part_index)
    target = next(part for part in sample.parts if part.part_id == part_index)

    prediction = predictor(sample.rgb, sample.depth_m, instruction, sample.K)

    iou = np.logical_and(prediction.mask, target.mask).sum() / np.logical_or(prediction.mask, target.mask).sum()
    assert iou >= 0.5, f"{instruction!r} on held-out scene {seed}: mask IoU {iou:.2f} with the named part"
