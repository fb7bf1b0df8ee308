"""Training losses of SegAffordance: one function, named terms, weights from :class:`LossParams`.

Every term is computed in float32 (inputs are cast first), so the losses are stable under fp16/bf16
autocast; BCE always takes logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from segaff_core.config import LossParams

#: Weighted terms of the total and the ``LossParams`` field that weights each.
TERM_WEIGHTS: dict[str, str] = {
    "mask": "mask_weight",
    "point_map": "point_map_weight",
    "coord": "coord_weight",
    "vae": "vae_weight",
    "motion_type": "motion_type_weight",
    "origin": "origin_weight",
    "trajectory": "trajectory_weight",
    "geometric": "geometric_weight",
}

_EPS = 1e-6
_ROTATION = 1


def dice_loss(logits: Tensor, target: Tensor, smooth: float = 1.0) -> Tensor:
    """Mean over the batch of ``1 - (2|P.T| + s) / (|P| + |T| + s)`` with ``P = sigmoid(logits)``."""
    probs = torch.sigmoid(logits.float()).flatten(1)
    target = target.float().flatten(1)
    intersection = (probs * target).sum(dim=1)
    union = probs.sum(dim=1) + target.sum(dim=1)
    return (1.0 - (2.0 * intersection + smooth) / (union + smooth)).mean()


def resize_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize a (B, 1, H, W) mask to ``size``: area averaging when shrinking, nearest otherwise."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask.float()
    shrinking = mask.shape[-2] >= size[0] and mask.shape[-1] >= size[1]
    return F.interpolate(mask.float(), size=size, mode="area" if shrinking else "nearest")


def gaussian_heatmap(point_xy: Tensor, size: tuple[int, int], sigma: float) -> Tensor:
    """Gaussian targets (B, 1, h, w) with peak 1 at ``point_xy`` (B, 2) in [0, 1] (x = column).

    Pixel ``j`` covers ``[j/w, (j+1)/w)``: its centre is ``(j + 0.5) / w``. ``sigma`` is in pixels.
    """
    height, width = size
    device = point_xy.device
    cols = torch.arange(width, device=device, dtype=torch.float32)
    rows = torch.arange(height, device=device, dtype=torch.float32)
    centre_x = point_xy[:, 0].float() * width - 0.5
    centre_y = point_xy[:, 1].float() * height - 0.5
    dist_sq = (cols[None, None, :] - centre_x[:, None, None]) ** 2 + (
        rows[None, :, None] - centre_y[:, None, None]
    ) ** 2
    return torch.exp(-dist_sq / (2.0 * sigma**2)).unsqueeze(1)


def axis_loss(pred_axis: Tensor, gt_axis: Tensor) -> Tensor:
    """Sign-invariant axis loss ``1 - cos^2``, mean over the batch (0 parallel or opposite, 1 orthogonal)."""
    pred_unit = F.normalize(pred_axis.float(), dim=-1, eps=_EPS)
    cos = (pred_unit * F.normalize(gt_axis.float(), dim=-1, eps=_EPS)).sum(-1)
    return (1.0 - cos**2).mean()


def kl_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over the latent and averaged over the batch."""
    mu, logvar = mu.float(), logvar.float()
    return (-0.5 * (1.0 + logvar - mu**2 - logvar.exp()).sum(dim=-1)).mean()


def kl_normals(mu: Tensor, logvar: Tensor, prior_mu: Tensor, prior_logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(prior_mu, exp(prior_logvar))) of diagonal Gaussians, summed over the
    latent and averaged over the batch."""
    mu, logvar, prior_mu, prior_logvar = mu.float(), logvar.float(), prior_mu.float(), prior_logvar.float()
    ratio = (logvar - prior_logvar).exp() + (mu - prior_mu) ** 2 * (-prior_logvar).exp()
    return (0.5 * (ratio - 1.0 - logvar + prior_logvar).sum(dim=-1)).mean()


def geometric_residuals(
    trajectory: Tensor, point_3d: Tensor, axis: Tensor, origin: Tensor, motion_type: Tensor
) -> Tensor:
    """Per-sample mean squared deviation (B,) of a relative trajectory (B, T, 3) from its motion.

    Translation: the component perpendicular to the axis (a straight line along it). Rotation: the
    change of distance to the axis line through ``origin`` and of the height along the axis, both
    relative to the first point ``point_3d`` (an arc around the axis).
    """
    trajectory = trajectory.float()
    unit_axis = F.normalize(axis.float(), dim=-1, eps=_EPS)[:, None, :]  # (B, 1, 3)
    height = (trajectory * unit_axis).sum(-1)  # (B, T), along the axis from the first point
    perpendicular = trajectory - height[..., None] * unit_axis
    translation = (perpendicular**2).sum(-1).mean(-1)

    from_origin = point_3d.float()[:, None, :] + trajectory - origin.float()[:, None, :]
    along = (from_origin * unit_axis).sum(-1, keepdim=True)
    radial_sq = ((from_origin - along * unit_axis) ** 2).sum(-1)  # (B, T)
    radius = torch.sqrt(radial_sq + _EPS**2)
    rotation = ((radius - radius[:, :1]) ** 2 + height**2).mean(-1)
    return torch.where(motion_type.long() == _ROTATION, rotation, translation)


def _masked_mean(values: Tensor, weights: Tensor) -> Tensor:
    """Weighted mean of per-sample values (B,); 0 (with a graph) when all weights are 0."""
    weights = weights.float()
    return (values * weights).sum() / weights.sum().clamp(min=1.0)


def compute_losses(
    outputs: dict[str, Tensor], batch: dict[str, Tensor], params: LossParams
) -> tuple[Tensor, dict[str, Tensor]]:
    """Total loss and its terms (detached, for logging) from model ``outputs`` and a collated ``batch``.

    Terms (see :data:`TERM_WEIGHTS`): mask Dice+BCE against the mask resized to the logits' size (or of
    the logits upsampled to the mask's size, ``mask_loss_resolution="input"``);
    point heatmap BCE against a Gaussian (sigma ``point_sigma`` feature pixels); L1 of the soft-argmax
    point; ``vae`` = axis ``1 - cos^2``, plus ``vae_beta`` * KL when ``vae_mu`` is present (against
    ``vae_prior_mu``/``vae_prior_logvar`` when given, else N(0, I)) and the posterior's axis loss when
    ``vae_axis`` is (the conditional-prior CVAE's ``axis`` is its prior mean's); motion type CE
    with label smoothing; origin L1 of ``origin_offset`` vs ``origin - point_3d`` over rotation samples;
    trajectory MSE over samples with ``has_trajectory``; geometric consistency of the predicted
    trajectory with the ground-truth motion. Also returned, unweighted parts: ``mask_bce``, ``mask_dice``,
    ``axis`` and (with the CVAE) ``kl``.
    """
    mask_logits = outputs["mask_logits"].float()
    if params.mask_loss_resolution == "input":
        mask_target = batch["mask"].float()
        mask_logits = F.interpolate(mask_logits, size=mask_target.shape[-2:], mode="bilinear", align_corners=False)
    else:
        mask_target = resize_mask(batch["mask"], tuple(mask_logits.shape[-2:]))
    mask_bce = F.binary_cross_entropy_with_logits(mask_logits, mask_target)
    mask_dice = dice_loss(mask_logits, mask_target)

    point_logits = outputs["point_logits"].float()
    heatmap = gaussian_heatmap(batch["point"], tuple(point_logits.shape[-2:]), params.point_sigma)
    point_map = F.binary_cross_entropy_with_logits(point_logits, heatmap)
    coord = F.l1_loss(outputs["point_xy"].float(), batch["point"].float())

    axis = axis_loss(outputs["axis"], batch["axis"])
    parts = {"mask_bce": mask_bce, "mask_dice": mask_dice, "axis": axis}
    vae = axis
    if outputs.get("vae_mu") is not None:
        if outputs.get("vae_prior_mu") is not None:
            kl = kl_normals(outputs["vae_mu"], outputs["vae_logvar"], outputs["vae_prior_mu"], outputs["vae_prior_logvar"])
        else:
            kl = kl_standard_normal(outputs["vae_mu"], outputs["vae_logvar"])
        parts["kl"] = kl
        vae = axis + params.vae_beta * kl
    if outputs.get("vae_axis") is not None:
        posterior_axis = axis_loss(outputs["vae_axis"], batch["axis"])
        parts["posterior_axis"] = posterior_axis
        vae = vae + posterior_axis

    motion_type = batch["motion_type"].long()
    is_rotation = motion_type == _ROTATION
    motion_ce = F.cross_entropy(
        outputs["motion_type_logits"].float(), motion_type, label_smoothing=params.label_smoothing
    )
    origin_target = batch["origin"].float() - batch["point_3d"].float()
    origin_l1 = (outputs["origin_offset"].float() - origin_target).abs().mean(-1)

    pred_trajectory = outputs["trajectory"].float()
    gt_trajectory = batch["trajectory"].float()
    if pred_trajectory.shape != gt_trajectory.shape:
        raise ValueError(
            f"predicted trajectory {tuple(pred_trajectory.shape)} and target "
            f"{tuple(gt_trajectory.shape)} differ in shape"
        )
    trajectory_mse = ((pred_trajectory - gt_trajectory) ** 2).mean(dim=(1, 2))
    geometric = geometric_residuals(
        pred_trajectory, batch["point_3d"], batch["axis"], batch["origin"], motion_type
    ).mean()

    terms = {
        "mask": params.bce_weight * mask_bce + params.dice_weight * mask_dice,
        "point_map": point_map,
        "coord": coord,
        "vae": vae,
        "motion_type": motion_ce,
        "origin": _masked_mean(origin_l1, is_rotation),
        "trajectory": _masked_mean(trajectory_mse, batch["has_trajectory"].bool()),
        "geometric": geometric,
    }
    total = sum(getattr(params, TERM_WEIGHTS[name]) * value for name, value in terms.items())
    logged = {name: value.detach() for name, value in {**terms, **parts}.items()}
    return total, logged
