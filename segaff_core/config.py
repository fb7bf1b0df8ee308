"""Configuration dataclasses with the defaults of the seed's configuration tables.

YAML files (``config/*.yaml``) override only what differs; LightningCLI fills these from them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional


@dataclass
class ModelParams:
    """Architecture of the SegAffordance model.

    ``clip_model`` names an open_clip model config (``RN50``); ``clip_config`` optionally overrides
    parts of that config dict (``embed_dim``, ``vision_cfg``, ``text_cfg``) to build a narrower variant.
    ``clip_pretrain`` is OpenAI's ``RN50.pt`` (TorchScript) or a plain state dict; ``None`` = random weights.
    ``mask_skip_dim`` > 0 feeds the neck's H/8 input (CLIP v2 + depth) to the projector through that many
    channels, ``mask_skip4_dim`` > 0 CLIP's H/4 features (layer1) to its last stage (see
    :class:`~segaff_core.model.layers.Projector`); 0 and 0 is the seed's projector. ``cvae_prior``
    (with ``use_cvae``): ``"conditional"``, a learned prior whose mean inference decodes, trained as such;
    ``"standard"``, the seed's N(0, I) prior (see :class:`~segaff_core.model.layers.MotionVAE`).
    """

    clip_pretrain: Optional[str] = "pretrain/RN50.pt"
    clip_model: str = "RN50"
    clip_config: Optional[dict[str, Any]] = None
    word_len: int = 77
    use_depth: bool = True
    use_cvae: bool = True
    cvae_prior: Literal["standard", "conditional"] = "conditional"
    fpn_in: list[int] = field(default_factory=lambda: [512, 1024, 1024])
    fpn_out: list[int] = field(default_factory=lambda: [256, 512, 1024])
    depth_channels: list[int] = field(default_factory=lambda: [128, 256])
    vis_dim: int = 512
    word_dim: int = 1024
    num_layers: int = 3
    num_head: int = 8
    dim_ffn: int = 1024
    mask_skip_dim: int = 0
    mask_skip4_dim: int = 0
    dropout: float = 0.2
    intermediate: bool = False
    vae_latent_dim: int = 32
    vae_hidden_dim: int = 256
    trajectory_points: int = 20

    def __post_init__(self) -> None:
        if self.cvae_prior not in ("standard", "conditional"):
            raise ValueError(f"ModelParams.cvae_prior must be 'standard' or 'conditional', got {self.cvae_prior!r}")

    @classmethod
    def small(cls) -> "ModelParams":
        """A narrow variant (~5.5 M parameters, 3.2 M of them the token embedding) for tests and CPU
        training from scratch. fpn_in = (width*8, width*16, embed_dim); vis_dim = text width; word_dim = embed_dim.
        """
        return cls(
            clip_pretrain=None,
            clip_config={
                "embed_dim": 128,
                "vision_cfg": {"layers": [1, 1, 1, 1], "width": 16, "head_width": 32},
                "text_cfg": {"width": 64, "heads": 4, "layers": 2},
            },
            fpn_in=[128, 256, 128],
            fpn_out=[32, 64, 128],
            depth_channels=[16, 32],
            vis_dim=64,
            word_dim=128,
            num_layers=1,
            num_head=4,
            dim_ffn=128,
            mask_skip_dim=32,
            mask_skip4_dim=16,
            dropout=0.1,
            vae_latent_dim=16,
            vae_hidden_dim=64,
        )


@dataclass
class LossParams:
    """Loss weights (seed defaults) and loss shape parameters.

    ``mask_loss_resolution``: ``"logits"`` (the seed's) compares the mask logits with the ground truth
    area-averaged to their grid (H/4); ``"input"`` upsamples the logits bilinearly to the ground truth's
    size, as the Predictor does before thresholding, so the loss scores the edges the metrics see.
    """

    mask_weight: float = 0.5
    point_map_weight: float = 1.0
    coord_weight: float = 0.5
    vae_weight: float = 0.5
    motion_type_weight: float = 0.5
    trajectory_weight: float = 0.5
    geometric_weight: float = 0.5
    origin_weight: float = 0.5
    bce_weight: float = 0.5
    dice_weight: float = 0.5
    mask_loss_resolution: Literal["logits", "input"] = "logits"
    point_sigma: float = 8.0
    vae_beta: float = 0.01
    label_smoothing: float = 0.1

    def __post_init__(self) -> None:
        if self.mask_loss_resolution not in ("logits", "input"):
            raise ValueError(
                f"LossParams.mask_loss_resolution must be 'logits' or 'input', got {self.mask_loss_resolution!r}"
            )


@dataclass
class TestParams:
    """Evaluation thresholds (seed defaults) and the two named origin criteria.

    ``surface_axis``: evaluate the axis as the Predictor publishes it by default, made to agree with the
    part's surface where it nearly does (:func:`segaff_core.motion.surface_consistent_axis`); False scores
    the model's own axis. ``hinge_origin``: evaluate a rotation's origin as the Predictor publishes it by
    default, on the hinge line that the mask and the depth show (:func:`segaff_core.hinge.find_hinge_line`);
    False scores the model's own origin.
    """

    test_iou_threshold: float = 0.5
    test_motion_threshold_deg: float = 10.0
    test_pred_threshold: float = 0.5
    test_match_metric: Literal["mask", "bbox"] = "mask"
    test_visualize_debug: bool = False
    opd_origin_threshold: float = 0.25
    seed_origin_threshold: float = 0.1
    surface_axis: bool = True
    hinge_origin: bool = True


@dataclass
class OptimParams:
    """AdamW; the CLIP backbone learns at ``lr * backbone_lr_multiplier``.

    ``schedule``: ``"multistep"`` (the seed's: ``lr * gamma`` at each epoch of ``milestones``) or ``"cosine"``
    (per step: a cosine from ``lr`` down to ``lr * min_lr_ratio`` over the run's budget, ``trainer.max_steps``
    or ``max_epochs`` in steps, or ``max_time``, whichever runs out first, so a time-bounded run also ends
    annealed; scaled by a linear warm-up over the first ``warmup_steps``).
    """

    lr: float = 1e-4
    weight_decay: float = 1e-4
    backbone_lr_multiplier: float = 0.1
    schedule: str = "multistep"
    milestones: list[int] = field(default_factory=lambda: [35])
    gamma: float = 0.1
    warmup_steps: int = 0
    min_lr_ratio: float = 0.01

    def __post_init__(self) -> None:
        if self.schedule not in ("multistep", "cosine"):
            raise ValueError(f"OptimParams.schedule must be 'multistep' or 'cosine', got {self.schedule!r}")
        if self.warmup_steps < 0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(
                f"need warmup_steps >= 0 and 0 <= min_lr_ratio <= 1, got {self.warmup_steps}, {self.min_lr_ratio}"
            )
