"""Left-right mirroring of training samples: the camera, the 3D motion and the instruction stay consistent."""
import numpy as np
import pytest

from segaff_core.data import SF3DDataset, common
from segaff_core.data.common import RawSample
from segaff_core.data.mirror import mirror_sample, mirror_words
from segaff_core.geometry import (
    normalised_to_pixel, pixel_to_normalised, project, trajectory_rotation, trajectory_translation,
)

SIZE = (60, 80)  # (height, width)
K = np.array([[100.0, 0.4, 37.3], [0.0, 95.0, 28.1], [0.0, 0.0, 1.0]])
ANGLE = 1.2  # rad, the hinge's opening range
DISTANCE = 0.35  # m, the drawer's


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Open the upper-left drawer.", "Open the upper-right drawer."),
        ("the leftmost door of the right cabinet", "the rightmost door of the left cabinet"),
        ("Pull the handle on the Right", "Pull the handle on the Left"),
        ("RIGHT-HAND door, second-from-right", "LEFT-HAND door, second-from-left"),
        ("turn it counter-clockwise, not clockwise", "turn it clockwise, not counterclockwise"),
        ("the bright door left of the copyright", "the bright door right of the copyright"),
        ("open the top drawer", "open the top drawer"),
    ],
)
def test_instruction_swaps_sides_and_turning_senses(text: str, expected: str) -> None:
    assert mirror_words(text) == expected


def _raw(motion_type: int) -> RawSample:
    """A part with a handle in view, moved as the synthetic generator moves it, and an image marking it."""
    handle = np.array([0.21, -0.08, 1.7])
    origin = np.array([0.45, 0.0, 1.9])
    axis = np.array([0.1, -0.97, 0.2]) if motion_type else np.array([-0.3, 0.05, -0.95])
    axis /= np.linalg.norm(axis)
    path = (trajectory_rotation(handle, axis, origin, ANGLE) if motion_type
            else trajectory_translation(handle, axis, DISTANCE))
    rng = np.random.default_rng(0)
    mask = np.zeros(SIZE, dtype=np.uint8)
    mask[10:30, 50:70] = 1
    return RawSample(
        rgb=rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8),
        depth_m=rng.uniform(0.5, 3.0, (SIZE[0] // 2, SIZE[1] // 2)).astype(np.float32),
        mask=mask,
        K=K,
        point_xy=pixel_to_normalised(project(handle, K)[0], SIZE),
        point_3d=handle,
        axis=axis,
        origin=origin,
        motion_type=motion_type,
        trajectory=path - path[0],
        has_trajectory=True,
        description="open the left door",
        image_id="scene0",
        diameter=0.8,
    )


@pytest.mark.parametrize("motion_type", [0, 1])
def test_mirrored_sample_is_the_mirrored_scene_seen_by_the_mirrored_camera(motion_type: int) -> None:
    raw = _raw(motion_type)
    mirrored = mirror_sample(raw)
    # The handle still projects onto the interaction point, with the new K, in the flipped image.
    np.testing.assert_allclose(project(mirrored.point_3d, mirrored.K)[0],
                               normalised_to_pixel(mirrored.point_xy, SIZE), atol=1e-9)
    np.testing.assert_allclose(normalised_to_pixel(mirrored.point_xy, SIZE),
                               [SIZE[1] - 1 - normalised_to_pixel(raw.point_xy, SIZE)[0],
                                normalised_to_pixel(raw.point_xy, SIZE)[1]], atol=1e-9)
    np.testing.assert_array_equal(mirrored.mask, raw.mask[:, ::-1])
    np.testing.assert_array_equal(mirrored.rgb, raw.rgb[:, ::-1])
    np.testing.assert_array_equal(mirrored.depth_m, raw.depth_m[:, ::-1])
    # The same opening (positive range), generated from the mirrored axis and origin, is the mirrored path:
    # the hinge keeps its right-hand sense, the drawer its direction.
    start = mirrored.point_3d
    path = (trajectory_rotation(start, mirrored.axis, mirrored.origin, ANGLE) if motion_type
            else trajectory_translation(start, mirrored.axis, DISTANCE))
    np.testing.assert_allclose(mirrored.trajectory, path - path[0], atol=1e-9)
    assert np.abs(mirrored.trajectory - raw.trajectory).max() > 0.05  # the motion did change
    assert mirrored.description == "open the right door"
    assert raw.description == "open the left door" and raw.K[0, 2] == K[0, 2]  # the input is untouched


@pytest.mark.parametrize("motion_type", [0, 1])
def test_mirroring_twice_gives_the_sample_back(motion_type: int) -> None:
    raw = _raw(motion_type)
    twice = mirror_sample(mirror_sample(raw))
    for name in ("rgb", "depth_m", "mask", "K", "point_xy", "point_3d", "axis", "origin", "trajectory"):
        np.testing.assert_allclose(getattr(twice, name), getattr(raw, name), atol=1e-12, err_msg=name)
    assert twice.description == raw.description


def test_augmented_training_samples_are_mirrored_with_their_instruction(sf3d_make_root, monkeypatch) -> None:
    def on_the_left(records: dict) -> None:
        for record in records.values():
            record["description"] = "Open the leftmost door."

    root = sf3d_make_root(num=4, edit=on_the_left)
    plain = SF3DDataset(root, "train", input_size=(64, 96))[0]
    monkeypatch.setattr(common, "MIRROR_PROBABILITY", 1.0)
    assert SF3DDataset(root, "train", input_size=(64, 96))[0]["description"] == plain["description"]  # no augment
    mirrored = SF3DDataset(root, "train", input_size=(64, 96), augment=True)[0]
    assert mirrored["description"] == "Open the rightmost door." and plain["description"] == "Open the leftmost door."
    # Nearest-neighbour resizing picks the pixel right of a tie, so edges may move by a source pixel.
    flipped_back, mask = mirrored["mask"].flip(-1).bool(), plain["mask"].bool()
    assert mask.sum() > 20 and float((flipped_back & mask).sum() / (flipped_back | mask).sum()) > 0.8
    assert float(mirrored["point"][0]) == pytest.approx(1.0 - float(plain["point"][0]), abs=1e-6)
    assert float(mirrored["origin"][0]) == pytest.approx(-float(plain["origin"][0]), abs=1e-6)
    assert float(mirrored["K"][0, 2]) == pytest.approx(96 - 1 - float(plain["K"][0, 2]), abs=1e-4)
    monkeypatch.setattr(common, "MIRROR_PROBABILITY", 0.0)
    kept = SF3DDataset(root, "train", input_size=(64, 96), augment=True)[0]
    assert kept["mask"].equal(plain["mask"]) and kept["description"] == plain["description"]
