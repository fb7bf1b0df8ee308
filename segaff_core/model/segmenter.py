"""SegAffordanceModel: CLIP backbone + depth encoder + multi-modal FPN + decoder + mask/point/motion heads."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segaff_core.config import ModelParams
from segaff_core.model.backbone import CLIPBackbone, TextFeatures
from segaff_core.model.layers import (
    FPN,
    DepthEncoder,
    DynamicKernels,
    MotionMLP,
    MotionVAE,
    Projector,
    TrajectoryMLP,
    TransformerDecoder,
    WordMemory,
    soft_argmax,
)
from segaff_core.text import used_length

FREEZABLE_PARTS = ("backbone", "depth_encoder", "neck", "decoder", "projector", "motion_head", "trajectory_head")


def masked_average(features: Tensor, mask: Tensor) -> Tensor:
    """Average of ``features (B, C, h, w)`` weighted by ``mask (B, 1, H, W)`` in [0, 1] (area-resized) -> ``(B, C)``."""
    weights = F.adaptive_avg_pool2d(mask.to(features.dtype), features.shape[-2:])  # (B, 1, h, w)
    return (features * weights).sum(dim=(2, 3)) / weights.sum(dim=(2, 3)).clamp_min(1e-6)


@dataclass
class TextConditioning:
    """Everything the per-frame path reads from the instruction, computed once by
    :meth:`SegAffordanceModel.prepare_text` and reusable for every frame of any size."""

    state: Tensor  # (B, word_dim) sentence state (enters the motion condition)
    gate: Tensor  # (B, fpn_out[2], 1, 1) the FPN's text gate
    words: WordMemory  # the decoder's cross-attention keys and values
    kernels: DynamicKernels  # the projector's dynamic kernels

    def tensors(self) -> tuple[Tensor, ...]:
        """The tensors in the order of :meth:`tensor_names` (for graph export)."""
        return (
            self.state, self.gate, self.words.bias, self.kernels.weight, self.kernels.bias, self.kernels.border,
            *self.words.keys, *self.words.values,
        )

    @staticmethod
    def tensor_names(num_layers: int) -> list[str]:
        """Names of :meth:`tensors` for a decoder of ``num_layers`` layers."""
        return [
            "text_state", "text_gate", "word_bias", "kernel_weight", "kernel_bias", "kernel_border",
            *(f"word_keys_{index}" for index in range(num_layers)),
            *(f"word_values_{index}" for index in range(num_layers)),
        ]

    @classmethod
    def from_tensors(cls, tensors: Sequence[Tensor]) -> "TextConditioning":
        """Inverse of :meth:`tensors`."""
        state, gate, bias, weight, kernel_bias, border, *memory = tensors
        layers = len(memory) // 2
        return cls(
            state=state,
            gate=gate,
            words=WordMemory(keys=tuple(memory[:layers]), values=tuple(memory[layers:]), bias=bias),
            kernels=DynamicKernels(weight=weight, bias=kernel_bias, border=border),
        )


@dataclass
class _SharedFeatures:
    """Everything the motion and trajectory heads need, computed once per forward."""

    outputs: dict[str, Tensor]  # mask_logits, point_logits, point_xy
    condition: Tensor  # (B, cond_dim)


class SegAffordanceModel(nn.Module):
    """Image + depth + text -> part mask, interaction point, motion (axis, type, origin) and trajectory.

    Submodules ``backbone``, ``depth_encoder`` (None without depth), ``neck``, ``decoder``, ``projector``,
    ``motion_head`` and ``trajectory_head`` can be frozen by name with :meth:`freeze`.
    """

    def __init__(self, params: ModelParams) -> None:
        super().__init__()
        self.params = params
        self.backbone = CLIPBackbone(params.clip_model, params.clip_config)
        channels = self.backbone.image_channels
        if tuple(params.fpn_in) != channels:
            raise ValueError(f"fpn_in {list(params.fpn_in)} must equal the CLIP image channels {list(channels)}")
        if params.word_dim != self.backbone.embed_dim:
            raise ValueError(f"word_dim {params.word_dim} must equal the CLIP embed_dim {self.backbone.embed_dim}")
        if params.fpn_out[1] != params.vis_dim:
            raise ValueError(f"fpn_out[1] {params.fpn_out[1]} must equal vis_dim {params.vis_dim}")
        depth_channels = list(params.depth_channels) if params.use_depth else [0, 0]
        self.depth_encoder = DepthEncoder(params.depth_channels) if params.use_depth else None
        self.neck = FPN(
            in_channels=[params.fpn_in[0] + depth_channels[0], params.fpn_in[1] + depth_channels[1], params.fpn_in[2]],
            out_channels=params.fpn_out,
            state_dim=params.word_dim,
        )
        self.decoder = TransformerDecoder(
            params.num_layers, params.vis_dim, self.backbone.text_width, params.num_head, params.dim_ffn, params.dropout
        )
        self.projector = Projector(
            params.word_dim, params.vis_dim // 2, kernel_size=3, num_maps=2,
            skip_in=params.fpn_in[0] + depth_channels[0] if params.mask_skip_dim else 0, skip_dim=params.mask_skip_dim,
            skip4_in=self.backbone.h4_channels if params.mask_skip4_dim else 0, skip4_dim=params.mask_skip4_dim,
        )
        # condition: mask-pooled decoder features, pooled v4, sentence state, point_xy
        cond_dim = params.vis_dim + channels[2] + params.word_dim + 2
        self.motion_head: Union[MotionVAE, MotionMLP] = (
            MotionVAE(cond_dim, params.vae_hidden_dim, params.vae_latent_dim, params.cvae_prior)
            if params.use_cvae
            else MotionMLP(cond_dim, params.vae_hidden_dim)
        )
        self.trajectory_head = TrajectoryMLP(cond_dim, params.vae_hidden_dim, params.trajectory_points)
        self._frozen: set[str] = set()

    def freeze(self, parts: Iterable[str]) -> None:
        """Stop gradients into the named submodules and keep them in eval mode (BatchNorm statistics fixed)."""
        for name in parts:
            if name not in FREEZABLE_PARTS:
                raise ValueError(f"unknown model part {name!r}; choose from {', '.join(FREEZABLE_PARTS)}")
            module = getattr(self, name)
            if module is None:
                continue
            module.requires_grad_(False)
            self._frozen.add(name)
        self.train(self.training)

    def train(self, mode: bool = True) -> "SegAffordanceModel":
        super().train(mode)
        for name in self._frozen:
            getattr(self, name).eval()
        return self

    def encode_text(self, text: Tensor) -> TextFeatures:
        """``text (B, L)`` long tokens -> :class:`TextFeatures` (cacheable per instruction)."""
        return self.backbone.encode_text(text)

    def prepare_text(self, text_features: TextFeatures, trim_padding: bool = False) -> TextConditioning:
        """The text-only part of the network (FPN gate, decoder keys/values, projector kernels) on
        :meth:`encode_text` output. ``trim_padding`` drops the padding after the longest instruction of
        the batch (the attention masks it anyway; one host sync, so meant for per-instruction caching)."""
        words, padding_mask = text_features.words, text_features.padding_mask  # (B, L, C), (B, L)
        if trim_padding:
            length = used_length(padding_mask)
            words, padding_mask = words[:, :length], padding_mask[:, :length]
        state = text_features.state  # (B, word_dim)
        return TextConditioning(
            state=state,
            gate=self.neck.text_gate(state),
            words=self.decoder.text_side(words, padding_mask),
            kernels=self.projector.text_kernels(state),
        )

    def encode_image(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``image (B,3,H,W)`` (H, W multiples of 32) -> CLIP features ``v1 (B,C1,H/4,W/4)``,
        ``v2 (B,C2,H/8,W/8)``, ``v3 (B,C3,H/16,W/16)``, ``v4 (B,C4,H/32,W/32)``."""
        height, width = image.shape[-2:]
        if height % 32 or width % 32:
            raise ValueError(f"image height and width must be multiples of 32, got {height}x{width}")
        return self.backbone.encode_image(image)

    def _conditioning(self, text: Union[TextFeatures, TextConditioning]) -> TextConditioning:
        return text if isinstance(text, TextConditioning) else self.prepare_text(text)

    def _shared(
        self,
        image_features: tuple[Tensor, Tensor, Tensor, Tensor],
        depth: Tensor,
        text: TextConditioning,
        gt_mask: Optional[Tensor],
        image_index: Optional[Tensor],
    ) -> _SharedFeatures:
        v1, v2, v3, v4 = image_features  # (B,C1,H/4,W/4), (B,C2,H/8,W/8), (B,C3,H/16,W/16), (B,C4,H/32,W/32)
        state = text.state  # (B, word_dim)
        if self.depth_encoder is not None:
            depth_8, depth_16 = self.depth_encoder(depth)  # (B,d0,H/8,W/8), (B,d1,H/16,W/16)
            v2 = torch.cat([v2, depth_8], dim=1)  # (B, C2+d0, H/8, W/8)
            v3 = torch.cat([v3, depth_16], dim=1)  # (B, C3+d1, H/16, W/16)
        if image_index is not None:  # per image -> per sample
            v1, v2, v3, v4 = (features.index_select(0, image_index) for features in (v1, v2, v3, v4))
        fused = self.neck((v2, v3, v4), text.gate)  # (B, vis_dim, H/16, W/16)
        fused = self.decoder(fused, text.words)  # (B, vis_dim, H/16, W/16)
        skip = v2 if self.projector.skip is not None else None
        skip4 = v1 if self.projector.skip4 is not None else None
        maps = self.projector(fused, text.kernels, skip, skip4)  # (B, 2, H/4, W/4)
        mask_logits, point_logits = maps[:, :1], maps[:, 1:]  # (B, 1, H/4, W/4) each
        point_xy = soft_argmax(point_logits)  # (B, 2) in [0, 1]
        # Motion condition; predictions enter detached so motion losses do not reshape the mask/point maps.
        pool_mask = gt_mask if gt_mask is not None else mask_logits.detach().sigmoid()
        condition = torch.cat(
            [masked_average(fused, pool_mask), v4.mean(dim=(2, 3)), state, point_xy.detach()], dim=-1
        )  # (B, vis_dim + C4 + word_dim + 2)
        outputs = {"mask_logits": mask_logits, "point_logits": point_logits, "point_xy": point_xy}
        return _SharedFeatures(outputs=outputs, condition=condition)

    def forward_from_features(
        self,
        image_features: tuple[Tensor, Tensor, Tensor, Tensor],
        depth: Tensor,
        text_features: Union[TextFeatures, TextConditioning],
        targets: Optional[Mapping[str, Tensor]] = None,
        image_index: Optional[Tensor] = None,
    ) -> dict[str, Tensor]:
        """Depth encoder, neck, decoder and heads on :meth:`encode_image` output and the text as
        :meth:`encode_text` or :meth:`prepare_text` output (the latter skips all text-only work);
        ``image_index`` as in :meth:`forward`."""
        targets = targets or {}
        shared = self._shared(
            image_features, depth, self._conditioning(text_features), targets.get("mask"), image_index
        )
        motion = self.motion_head(shared.condition, targets.get("axis"), targets.get("motion_type"))
        trajectory = self.trajectory_head(
            shared.condition, motion["axis"], motion["motion_type_logits"], motion["origin_offset"]
        )  # (B, T, 3)
        return {**shared.outputs, **motion, "trajectory": trajectory}

    def forward_with_text(
        self,
        image: Tensor,
        depth: Tensor,
        text_features: Union[TextFeatures, TextConditioning],
        targets: Optional[Mapping[str, Tensor]] = None,
        image_index: Optional[Tensor] = None,
    ) -> dict[str, Tensor]:
        """Forward with pre-computed text (:meth:`encode_text` or :meth:`prepare_text` output); see
        :meth:`forward` for inputs and outputs."""
        return self.forward_from_features(self.encode_image(image), depth, text_features, targets, image_index)

    def forward(
        self,
        image: Tensor,
        depth: Tensor,
        text: Tensor,
        targets: Optional[Mapping[str, Tensor]] = None,
        image_index: Optional[Tensor] = None,
    ) -> dict[str, Tensor]:
        """``image (B,3,H,W)`` CLIP-normalised, ``depth (B,1,H,W)`` metres (0 invalid), ``text (B,L)`` tokens.

        With ``image_index (B,)`` the image side runs once per image: ``image (N,3,H,W)`` and ``depth
        (N,1,H,W)`` hold N images and sample ``b`` reads row ``image_index[b]`` (several instructions of
        one image in a training batch, :mod:`segaff_core.data.grouping`).

        ``targets`` (training) may hold ``mask (B,1,H,W)`` (pools the motion condition instead of the
        predicted mask) and ``axis (B,3)`` + ``motion_type (B,)`` (CVAE posterior). Returns
        ``mask_logits``, ``point_logits (B,1,H/4,W/4)``, ``point_xy (B,2)`` in [0,1], ``axis (B,3)`` unit,
        ``motion_type_logits (B,2)``, ``origin_offset (B,3)`` m, ``trajectory (B,T,3)`` m (first row 0),
        and ``vae_mu``, ``vae_logvar (B,latent)`` when the CVAE posterior was used (with the conditional
        prior also ``vae_prior_mu``, ``vae_prior_logvar`` and the posterior's ``vae_axis (B,3)``; ``axis``
        and the other motion outputs are then the prior mean's, as at inference).
        """
        return self.forward_with_text(image, depth, self.encode_text(text), targets, image_index)

    def sample_motion(
        self,
        image: Tensor,
        depth: Tensor,
        text: Union[Tensor, TextFeatures, TextConditioning],
        num_samples: int = 16,
        generator: Optional[torch.Generator] = None,
    ) -> dict[str, Tensor]:
        """Draw ``num_samples`` latents from the CVAE prior and summarise the motion they decode to.

        Returns the mask/point outputs plus ``axis (B,3)`` (normalised mean), ``axis_spread_deg (B,)``
        (mean angle of the samples to it), ``motion_type_prob (B,2)`` (mean), ``origin_offset`` and
        ``origin_offset_std (B,3)``, ``trajectory`` and ``trajectory_std (B,T,3)``.
        """
        if not isinstance(self.motion_head, MotionVAE):
            raise RuntimeError("sample_motion needs the CVAE motion head (ModelParams.use_cvae=True)")
        text_features = self.encode_text(text) if isinstance(text, Tensor) else text
        shared = self._shared(self.encode_image(image), depth, self._conditioning(text_features), None, None)
        samples = self.motion_head.sample(shared.condition, num_samples, generator)  # each (K, B, ...)
        condition = shared.condition.expand(num_samples, -1, -1)  # (K, B, cond_dim)
        trajectories = self.trajectory_head(
            condition, samples["axis"], samples["motion_type_logits"], samples["origin_offset"]
        )  # (K, B, T, 3)
        axis = F.normalize(samples["axis"].mean(dim=0), dim=-1, eps=1e-6)  # (B, 3)
        cosine = (samples["axis"] * axis).sum(dim=-1).clamp(-1.0, 1.0)  # (K, B)
        return {
            **shared.outputs,
            "axis": axis,
            "axis_spread_deg": torch.rad2deg(torch.acos(cosine)).mean(dim=0),
            "motion_type_prob": samples["motion_type_logits"].softmax(dim=-1).mean(dim=0),
            "origin_offset": samples["origin_offset"].mean(dim=0),
            "origin_offset_std": samples["origin_offset"].std(dim=0, unbiased=False),
            "trajectory": trajectories.mean(dim=0),
            "trajectory_std": trajectories.std(dim=0, unbiased=False),
        }
