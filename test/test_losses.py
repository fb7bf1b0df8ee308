"""Hand-made known values for segaff_core.losses."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from segaff_core import geometry
from segaff_core.config import LossParams
from segaff_core.losses import (
    TERM_WEIGHTS,
    axis_loss,
    compute_losses,
    dice_loss,
    gaussian_heatmap,
    geometric_residuals,
    kl_normals,
    kl_standard_normal,
    resize_mask,
)

B, H, W, T = 4, 32, 32, 20


def _arc(start: np.ndarray, axis: np.ndarray, origin: np.ndarray, angle: float) -> torch.Tensor:
    path = geometry.trajectory_rotation(start, axis, origin, angle, n=T)
    return torch.tensor(path - path[0], dtype=torch.float32)


def _line(axis: np.ndarray, distance: float) -> torch.Tensor:
    path = geometry.trajectory_translation(np.zeros(3), axis, distance, n=T)
    return torch.tensor(path, dtype=torch.float32)


def make_case(motion_types: tuple[int, ...] = (0, 1, 0, 1)) -> tuple[dict, dict]:
    """A batch and outputs that match it (masks exact at 1/4 resolution, motions on their axes)."""
    n = len(motion_types)
    mask = torch.zeros(n, 1, H, W)
    mask[:, :, 8:20, 4:16] = 1.0
    axis = torch.nn.functional.normalize(torch.tensor([[0.0, 1.0, 0.2]] * n), dim=-1)
    point_3d = torch.tensor([[0.1, 0.0, 1.0]] * n)
    origin = torch.where(
        torch.tensor(motion_types)[:, None] == 1, torch.tensor([[0.4, 0.0, 1.1]] * n), point_3d
    )
    trajectory = torch.stack(
        [
            _arc(point_3d[i].numpy(), axis[i].numpy(), origin[i].numpy(), 1.2)
            if motion_types[i] == 1
            else _line(axis[i].numpy(), 0.3)
            for i in range(n)
        ]
    )
    batch = {
        "mask": mask,
        "point": torch.tensor([[0.3, 0.4]] * n),
        "point_3d": point_3d,
        "axis": axis,
        "origin": origin,
        "motion_type": torch.tensor(motion_types),
        "trajectory": trajectory,
        "has_trajectory": torch.ones(n, dtype=torch.bool),
    }
    mask_logits = 40.0 * resize_mask(mask, (H // 4, W // 4)) - 20.0
    outputs = {
        "mask_logits": mask_logits,
        "point_logits": torch.zeros(n, 1, H // 4, W // 4),
        "point_xy": batch["point"].clone(),
        "axis": -axis,
        "motion_type_logits": torch.nn.functional.one_hot(batch["motion_type"], 2).float() * 5.0,
        "trajectory": trajectory.clone(),
        "origin_offset": origin - point_3d,
        "vae_mu": torch.zeros(n, 8),
        "vae_logvar": torch.zeros(n, 8),
    }
    return outputs, batch


def test_dice_perfect_and_all_wrong() -> None:
    target = torch.zeros(2, 1, 8, 8)
    target[:, :, 2:6, 2:6] = 1.0
    assert dice_loss(40.0 * target - 20.0, target).item() == pytest.approx(0.0, abs=1e-6)
    # 16 target pixels, 48 predicted elsewhere: 1 - 1 / (48 + 16 + 1).
    assert dice_loss(20.0 - 40.0 * target, target).item() == pytest.approx(1 - 1 / 65, abs=1e-6)


def test_resize_mask_area_of_aligned_block_is_exact() -> None:
    mask = torch.zeros(1, 1, 32, 32)
    mask[:, :, 8:20, 4:16] = 1.0
    small = resize_mask(mask, (8, 8))
    expected = torch.zeros(1, 1, 8, 8)
    expected[:, :, 2:5, 1:4] = 1.0
    assert torch.equal(small, expected)
    assert resize_mask(small, (32, 32)).shape == (1, 1, 32, 32)


def test_perfect_mask_gives_zero_dice_through_compute_losses() -> None:
    outputs, batch = make_case()
    _, terms = compute_losses(outputs, batch, LossParams())
    assert terms["mask_dice"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["mask_bce"].item() < 1e-6


def test_mask_loss_at_input_resolution_scores_the_upsampled_logits() -> None:
    """mask_loss_resolution="input": BCE and Dice of the logits upsampled bilinearly to the mask's size (the
    Predictor's mask). A part edge inside a logit cell: the H/4 grid's soft target can be met exactly, the
    upsampled edge cannot, so the two settings differ; the known values come from explicit upsampling."""
    outputs, batch = make_case()
    batch["mask"] = torch.zeros(len(batch["mask"]), 1, H, W)
    batch["mask"][:, :, 8:19, 5:15] = 1.0  # edges inside 4 x 4 cells
    target_grid = resize_mask(batch["mask"], (H // 4, W // 4))
    outputs["mask_logits"] = torch.logit(target_grid.clamp(1e-4, 1 - 1e-4))  # the grid's soft target, exactly
    _, at_logits = compute_losses(outputs, batch, LossParams())
    _, at_input = compute_losses(outputs, batch, LossParams(mask_loss_resolution="input"))
    upsampled = torch.nn.functional.interpolate(
        outputs["mask_logits"], size=(H, W), mode="bilinear", align_corners=False
    )
    expected_bce = torch.nn.functional.binary_cross_entropy_with_logits(upsampled, batch["mask"])
    assert at_input["mask_bce"].item() == pytest.approx(expected_bce.item(), rel=1e-5)
    assert at_input["mask_dice"].item() == pytest.approx(dice_loss(upsampled, batch["mask"]).item(), rel=1e-5)
    assert at_logits["mask_bce"].item() != pytest.approx(at_input["mask_bce"].item(), rel=1e-3)
    with pytest.raises(ValueError, match="mask_loss_resolution must be 'logits' or 'input', got 'full'"):
        LossParams(mask_loss_resolution="full")


def test_axis_loss_sign_invariant() -> None:
    axis = torch.tensor([[0.0, 0.0, 1.0]])
    assert axis_loss(-axis, axis).item() == pytest.approx(0.0, abs=1e-7)
    assert axis_loss(torch.tensor([[1.0, 0.0, 0.0]]), axis).item() == pytest.approx(1.0)
    sixty_deg_not_unit = 2.0 * torch.tensor([[math.sin(math.pi / 3), 0.0, math.cos(math.pi / 3)]])
    assert axis_loss(sixty_deg_not_unit, axis).item() == pytest.approx(0.75, abs=1e-6)


def test_kl_known_values() -> None:
    assert kl_standard_normal(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0.0
    assert kl_standard_normal(torch.ones(1, 2), torch.zeros(1, 2)).item() == pytest.approx(1.0)
    log2 = torch.full((1, 1), math.log(2.0))
    assert kl_standard_normal(torch.zeros(1, 1), log2).item() == pytest.approx(0.5 * (1 - math.log(2)))


def test_gaussian_target_peaks_at_the_pixel() -> None:
    h, w, sigma = 16, 24, 2.0
    row, col = 5, 17
    point = torch.tensor([[(col + 0.5) / w, (row + 0.5) / h]])
    heatmap = gaussian_heatmap(point, (h, w), sigma)
    assert heatmap.shape == (1, 1, h, w)
    assert divmod(int(heatmap.argmax()), w) == (row, col)
    assert heatmap[0, 0, row, col].item() == pytest.approx(1.0)
    assert heatmap[0, 0, row, col - 2].item() == pytest.approx(math.exp(-0.5))


def test_geometric_straight_line_along_axis_is_zero_perpendicular_is_not() -> None:
    axis = torch.tensor([[0.0, 0.0, 1.0]])
    point, origin, translation = torch.zeros(1, 3), torch.zeros(1, 3), torch.zeros(1, dtype=torch.long)
    along = _line(np.array([0.0, 0.0, 1.0]), 0.4)[None]
    assert geometric_residuals(along, point, axis, origin, translation).item() == pytest.approx(0.0)
    across = _line(np.array([1.0, 0.0, 0.0]), 0.4)[None]
    expected = float(np.mean(np.linspace(0, 0.4, T) ** 2))
    assert geometric_residuals(across, point, axis, origin, translation).item() == pytest.approx(expected)


def test_geometric_perfect_arc_is_zero_and_broken_arcs_are_not() -> None:
    axis_np, origin_np = np.array([0.0, 1.0, 0.0]), np.array([0.5, 0.2, 2.0])
    start_np = np.array([0.1, 0.0, 1.8])
    axis, origin, start = (torch.tensor(a, dtype=torch.float32)[None] for a in (axis_np, origin_np, start_np))
    rotation = torch.ones(1, dtype=torch.long)
    arc = _arc(start_np, axis_np, origin_np, 1.5)[None]
    assert geometric_residuals(arc, start, axis, origin, rotation).item() == pytest.approx(0.0, abs=1e-10)
    # The same arc about a tilted axis: the radius about the true axis changes.
    tilted = _arc(start_np, np.array([1.0, 1.0, 0.0]), origin_np, 1.5)[None]
    assert geometric_residuals(tilted, start, axis, origin, rotation).item() > 1e-3
    # Moving along the axis keeps the radius but changes the height.
    lifted = _line(axis_np, 0.2)[None]
    expected = float(np.mean(np.linspace(0, 0.2, T) ** 2))
    assert geometric_residuals(lifted, start, axis, origin, rotation).item() == pytest.approx(expected)


def test_matching_outputs_give_zero_for_exact_terms() -> None:
    outputs, batch = make_case()
    _, terms = compute_losses(outputs, batch, LossParams())
    for name in ("coord", "vae", "axis", "kl", "origin", "trajectory", "geometric"):
        assert terms[name].item() == pytest.approx(0.0, abs=1e-6), name


def test_kl_between_normals_known_values() -> None:
    mu, logvar = torch.randn(3, 4), torch.randn(3, 4)
    assert kl_normals(mu, logvar, mu, logvar).item() == pytest.approx(0.0, abs=1e-6)
    zeros = torch.zeros(3, 4)
    assert kl_normals(mu, logvar, zeros, zeros).item() == pytest.approx(kl_standard_normal(mu, logvar).item(), rel=1e-6)
    # N(0, 1) against N(1, 4): 0.5 * (1/4 + 1/4 - 1 + ln 4)
    kl = kl_normals(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1, 1), torch.full((1, 1), math.log(4.0)))
    assert kl.item() == pytest.approx(0.5 * (0.5 - 1.0 + math.log(4.0)), rel=1e-6)


def test_conditional_prior_cvae_terms() -> None:
    """KL against the given prior, and the posterior's axis loss added to the prior mean's."""
    outputs, batch = make_case()
    outputs["vae_mu"] = torch.ones(B, 8)
    outputs["vae_prior_mu"] = torch.ones(B, 8)
    outputs["vae_prior_logvar"] = torch.zeros(B, 8)
    outputs["vae_axis"] = torch.tensor([[1.0, 0.0, 0.0]] * B)  # orthogonal to the ground truth's axis
    params = LossParams()
    _, terms = compute_losses(outputs, batch, params)
    assert terms["kl"].item() == pytest.approx(0.0, abs=1e-6)  # the posterior equals the prior
    assert terms["axis"].item() == pytest.approx(0.0, abs=1e-6)  # the prior mean's axis is right
    assert terms["posterior_axis"].item() == pytest.approx(1.0, abs=1e-6)
    assert terms["vae"].item() == pytest.approx(1.0, abs=1e-6)


def test_total_equals_weighted_sum_of_terms() -> None:
    outputs, batch = make_case()
    outputs["axis"] = torch.randn(B, 3)
    outputs["trajectory"] = outputs["trajectory"] + 0.1 * torch.randn(B, T, 3)
    outputs["origin_offset"] = torch.randn(B, 3)
    outputs["point_xy"] = torch.rand(B, 2)
    outputs["vae_mu"] = torch.randn(B, 8)
    params = LossParams(
        mask_weight=0.3, point_map_weight=2.0, coord_weight=0.7, vae_weight=1.1,
        motion_type_weight=0.2, origin_weight=0.9, trajectory_weight=1.3, geometric_weight=0.4,
    )
    total, terms = compute_losses(outputs, batch, params)
    expected = sum(getattr(params, weight) * terms[name] for name, weight in TERM_WEIGHTS.items())
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    vae_expected = terms["axis"] + params.vae_beta * terms["kl"]
    assert terms["vae"].item() == pytest.approx(vae_expected.item(), rel=1e-6)
    mask_expected = params.bce_weight * terms["mask_bce"] + params.dice_weight * terms["mask_dice"]
    assert terms["mask"].item() == pytest.approx(mask_expected.item(), rel=1e-6)
    assert all(not value.requires_grad for value in terms.values())


def test_known_values_of_coord_motion_type_and_origin() -> None:
    outputs, batch = make_case((0, 1))
    outputs["point_xy"] = batch["point"] + torch.tensor([0.1, 0.0])
    outputs["motion_type_logits"] = torch.zeros(2, 2)
    outputs["origin_offset"] = outputs["origin_offset"] + torch.tensor([[5.0, 5.0, 5.0], [0.3, 0.0, 0.0]])
    _, terms = compute_losses(outputs, batch, LossParams())
    assert terms["coord"].item() == pytest.approx(0.05)
    assert terms["motion_type"].item() == pytest.approx(math.log(2.0))
    # Only the rotation sample counts: |0.3| / 3 coordinates.
    assert terms["origin"].item() == pytest.approx(0.1)


def test_trajectory_only_over_samples_that_have_one() -> None:
    outputs, batch = make_case((0, 1))
    outputs["trajectory"] = outputs["trajectory"].clone()
    outputs["trajectory"][0] += 100.0
    outputs["trajectory"][1] += 0.5
    batch["has_trajectory"] = torch.tensor([False, True])
    _, terms = compute_losses(outputs, batch, LossParams())
    assert terms["trajectory"].item() == pytest.approx(0.25)


def test_no_trajectory_gives_zero_not_nan_and_gradients_flow() -> None:
    outputs, batch = make_case()
    outputs["trajectory"] = (outputs["trajectory"] + 1.0).requires_grad_(True)
    batch["has_trajectory"] = torch.zeros(B, dtype=torch.bool)
    total, terms = compute_losses(outputs, batch, LossParams())
    assert terms["trajectory"].item() == 0.0
    total.backward()
    assert torch.isfinite(outputs["trajectory"].grad).all()


@pytest.mark.parametrize("motion_types", [(0, 0, 0), (1, 1, 1)])
def test_single_motion_type_batches_are_finite(motion_types: tuple[int, ...]) -> None:
    outputs, batch = make_case(motion_types)
    outputs = {name: value.clone().requires_grad_(True) for name, value in outputs.items()}
    total, terms = compute_losses(outputs, batch, LossParams())
    total.backward()
    assert torch.isfinite(total)
    assert all(torch.isfinite(value) for value in terms.values())
    assert all(torch.isfinite(value.grad).all() for value in outputs.values())
    if motion_types[0] == 0:
        assert terms["origin"].item() == 0.0


def test_without_cvae_outputs_vae_is_axis_only() -> None:
    outputs, batch = make_case()
    outputs["axis"] = torch.tensor([[1.0, 0.0, 0.0]] * B)
    del outputs["vae_mu"], outputs["vae_logvar"]
    _, terms = compute_losses(outputs, batch, LossParams())
    assert "kl" not in terms
    assert terms["vae"].item() == pytest.approx(terms["axis"].item())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_and_extreme_logits_stay_finite(dtype: torch.dtype) -> None:
    outputs, batch = make_case()
    outputs["mask_logits"] = outputs["mask_logits"] * 1000.0  # +-20000: saturated in fp16
    outputs["point_logits"] = torch.full_like(outputs["point_logits"], -30000.0)
    outputs["trajectory"] = outputs["trajectory"] + 3.0
    low = {name: value.to(dtype).requires_grad_(True) for name, value in outputs.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total, terms = compute_losses(low, batch, LossParams())
    assert total.dtype == torch.float32
    assert all(torch.isfinite(value) for value in terms.values())
    total.backward()
    assert all(torch.isfinite(value.grad.float()).all() for value in low.values())


def test_shape_mismatch_of_trajectory_rejected() -> None:
    outputs, batch = make_case()
    outputs["trajectory"] = outputs["trajectory"][:, :10]
    with pytest.raises(ValueError, match="trajectory"):
        compute_losses(outputs, batch, LossParams())


def test_motion_type_uses_label_smoothing_0_1() -> None:
    outputs, batch = make_case((0, 1))
    outputs["motion_type_logits"] = torch.tensor([[10.0, -10.0], [-10.0, 10.0]])  # confident and right
    _, terms = compute_losses(outputs, batch, LossParams())
    log_right, log_wrong = -math.log1p(math.exp(-20.0)), -20.0 - math.log1p(math.exp(-20.0))
    expected = -(0.95 * log_right + 0.05 * log_wrong)  # smoothing 0.1 spread over 2 classes
    assert LossParams().label_smoothing == 0.1
    assert terms["motion_type"].item() == pytest.approx(expected, rel=1e-5)  # about 1.0, not 0


def test_point_map_is_bce_against_a_gaussian_of_sigma_8_feature_pixels() -> None:
    assert LossParams().point_sigma == 8.0
    outputs, batch = make_case((0, 1))
    h, w = outputs["point_logits"].shape[-2:]
    outputs["point_logits"] = torch.full_like(outputs["point_logits"], 1.0)
    _, terms = compute_losses(outputs, batch, LossParams())
    # BCE(z, y) = log(1 + e^z) - z y at every pixel; y is the Gaussian around the point's pixel centre.
    rows, cols = np.mgrid[0:h, 0:w]
    means = []
    for x, y in batch["point"].numpy():
        centre_col, centre_row = x * w - 0.5, y * h - 0.5
        target = np.exp(-((cols - centre_col) ** 2 + (rows - centre_row) ** 2) / (2 * 8.0**2))
        means.append(target.mean())
    expected = math.log1p(math.e) - float(np.mean(means))
    assert terms["point_map"].item() == pytest.approx(expected, rel=1e-5)
