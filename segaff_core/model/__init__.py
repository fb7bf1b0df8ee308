"""The SegAffordance network (CRIS-style, CLIP RN50 from open_clip) and its builder."""
from __future__ import annotations

import logging

from segaff_core.config import ModelParams
from segaff_core.model.backbone import CLIPBackbone, TextFeatures, load_clip_weights, read_clip_state_dict
from segaff_core.model.fusion import fold_batchnorm
from segaff_core.model.segmenter import FREEZABLE_PARTS, SegAffordanceModel, TextConditioning

__all__ = [
    "CLIPBackbone",
    "FREEZABLE_PARTS",
    "SegAffordanceModel",
    "TextConditioning",
    "TextFeatures",
    "build_model",
    "fold_batchnorm",
    "load_clip_weights",
    "read_clip_state_dict",
]

logger = logging.getLogger(__name__)


def build_model(params: ModelParams) -> SegAffordanceModel:
    """Build the model; load CLIP weights from ``params.clip_pretrain`` unless it is None (random weights)."""
    model = SegAffordanceModel(params)
    if params.clip_pretrain is not None:
        load_clip_weights(model.backbone, params.clip_pretrain)
    else:
        logger.info("clip_pretrain is None: the CLIP backbone keeps random weights")
    return model
