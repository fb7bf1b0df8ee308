"""The sub-pixel peak of the point map (segaff_core.point_peak) on hand-made heat maps."""
from __future__ import annotations

import pytest
import torch

from segaff_core.model.layers import soft_argmax
from segaff_core.point_peak import refined_peak

H, W = 24, 32


def _gaussian(centre_xy: tuple[float, float], sigma: float = 1.0, height: int = H, width: int = W) -> torch.Tensor:
    """Logits (1, 1, h, w) of a Gaussian peak at ``centre_xy`` in cells (cell centres at integers)."""
    ys = torch.arange(height, dtype=torch.float32)[:, None]
    xs = torch.arange(width, dtype=torch.float32)[None, :]
    squared = (xs - centre_xy[0]) ** 2 + (ys - centre_xy[1]) ** 2
    return (-squared / (2 * sigma**2))[None, None]


def _cells(point_xy: torch.Tensor, height: int = H, width: int = W) -> tuple[float, float]:
    """[0, 1] -> cell coordinates (centres at integers)."""
    return float(point_xy[0] * width - 0.5), float(point_xy[1] * height - 0.5)


def test_a_peak_on_a_cell_is_that_cells_centre():
    x, y = _cells(refined_peak(_gaussian((7.0, 11.0)))[0])
    assert x == pytest.approx(7.0, abs=1e-5) and y == pytest.approx(11.0, abs=1e-5)


@pytest.mark.parametrize("centre", [(7.5, 11.0), (7.3, 10.6), (20.25, 3.8)])
def test_a_peak_between_cells_is_found_to_a_fraction_of_a_cell(centre):
    x, y = _cells(refined_peak(_gaussian(centre))[0])
    assert abs(x - centre[0]) < 0.1 and abs(y - centre[1]) < 0.1, (x, y)


def test_two_near_equal_peaks_give_the_higher_one_not_the_point_between():
    logits = torch.logaddexp(_gaussian((5.0, 5.0)), _gaussian((25.0, 18.0)) - 0.05)  # the second slightly lower
    x, y = _cells(refined_peak(logits)[0])
    assert x == pytest.approx(5.0, abs=0.05) and y == pytest.approx(5.0, abs=0.05)
    between_x, between_y = _cells(soft_argmax(logits)[0])  # the network's own estimate: between the two
    assert 10.0 < between_x < 20.0 and 8.0 < between_y < 15.0


def test_noise_far_from_the_peak_does_not_move_it():
    clean = _gaussian((10.4, 12.0), sigma=1.5)
    noisy = clean.clone()
    noisy[..., :, 24:] = torch.randn(1, 1, H, W - 24, generator=torch.Generator().manual_seed(0)) - 4.0
    assert torch.allclose(refined_peak(noisy), refined_peak(clean))
    moved = (soft_argmax(noisy) - soft_argmax(clean)).abs().max() * W
    assert moved > 1.0  # the whole-map soft-argmax moves by more than a cell


def test_a_peak_on_the_border_stays_inside_the_map():
    """Only the half of the peak inside the map weighs: within a cell of it, never outside the map."""
    x, y = _cells(refined_peak(_gaussian((0.0, H - 1.0)))[0])
    assert 0.0 <= x < 0.6 and H - 1.6 < y <= H - 1.0


def test_a_batch_refines_each_map_on_its_own():
    logits = torch.cat([_gaussian((3.0, 4.0)), _gaussian((20.5, 9.0))])
    points = refined_peak(logits)
    assert _cells(points[0]) == pytest.approx((3.0, 4.0), abs=1e-4)
    assert _cells(points[1]) == pytest.approx((20.5, 9.0), abs=0.1)


def test_radius_zero_is_the_arg_max_cell_and_a_negative_radius_is_refused():
    x, y = _cells(refined_peak(_gaussian((7.4, 11.0)), radius=0)[0])
    assert (x, y) == pytest.approx((7.0, 11.0), abs=1e-5)
    with pytest.raises(ValueError, match="radius"):
        refined_peak(_gaussian((1.0, 1.0)), radius=-1)
