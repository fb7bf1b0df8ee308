"""CLIP ResNet backbone built with open_clip: an image feature pyramid, word features and a sentence state.

The image side follows CRIS: CLIP's attention pool is applied at every spatial position (its positional
embedding interpolated to the feature size) so the top level stays a map, plus a residual 1x1 projection.
"""
from __future__ import annotations

import copy
import logging
import math
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import CLIP
from torch import Tensor, nn

logger = logging.getLogger(__name__)

# Checkpoint entries that are not weights of this backbone: OpenAI's metadata (open_clip drops it too),
# the contrastive logit scale/bias, and the causal mask (recomputed; a traced open_clip model stores it).
_NON_WEIGHT_KEYS = ("input_resolution", "context_length", "vocab_size", "logit_scale", "logit_bias", "attn_mask")


@dataclass
class TextFeatures:
    """Encoded text, computed once per instruction and reusable across frames."""

    words: Tensor  # (B, L, C) per-token features after ln_final (C = CLIP text width)
    padding_mask: Tensor  # (B, L) bool, True where the token is padding (id 0)
    state: Tensor  # (B, word_dim) sentence state: the end-of-text token through text_projection


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def clip_model_config(model_name: str, overrides: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """open_clip's config dict for ``model_name`` with ``overrides`` deep-merged over it."""
    config = open_clip.get_model_config(model_name)
    if config is None:
        raise ValueError(f"open_clip has no model config named {model_name!r}")
    if not isinstance(config["vision_cfg"].get("layers"), (list, tuple)):
        raise ValueError(f"{model_name!r} is not a CLIP ResNet; the backbone needs a ModifiedResNet image tower")
    return _deep_merge(config, overrides or {})


class CLIPBackbone(nn.Module):
    """CLIP ResNet image and text towers. Parameter names equal OpenAI's state-dict keys.

    Image: ``v1 (B, width*4, H/4, W/4)``, ``v2 (B, width*8, H/8, W/8)``, ``v3 (B, width*16, H/16, W/16)``,
    ``v4 (B, embed_dim, H/32, W/32)``.
    Text: :class:`TextFeatures` with ``words (B, L, text_width)`` and ``state (B, embed_dim)``.
    """

    def __init__(self, model_name: str = "RN50", config_overrides: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__()
        config = clip_model_config(model_name, config_overrides)
        # OpenAI's CLIP was trained with QuickGELU (open_clip's load_openai_model builds it the same way).
        clip = CLIP(config["embed_dim"], config["vision_cfg"], config["text_cfg"], quick_gelu=True)
        if not isinstance(clip.text_projection, nn.Parameter):
            raise ValueError(f"{model_name!r}: expected a plain text_projection matrix (OpenAI layout)")
        self.model_name = model_name
        self.visual = clip.visual
        self.transformer = clip.transformer
        self.token_embedding = clip.token_embedding
        self.positional_embedding = clip.positional_embedding
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.register_buffer("attn_mask", clip.attn_mask, persistent=False)  # (77, 77) causal, -inf above
        width = config["vision_cfg"]["width"]
        pool_dim = self.visual.attnpool.c_proj.in_features  # width * 32
        self.embed_dim: int = config["embed_dim"]
        self.image_channels: tuple[int, int, int] = (width * 8, width * 16, self.embed_dim)  # v2, v3, v4
        self.h4_channels: int = width * 4  # v1
        self.text_width: int = config["text_cfg"]["width"]
        self.context_length: int = self.positional_embedding.shape[0]
        # CRIS's residual around the spatial attention pool; not part of CLIP's weights.
        self.attnpool_residual = nn.Sequential(
            nn.Conv2d(pool_dim, self.embed_dim, 1, bias=False), nn.BatchNorm2d(self.embed_dim)
        )

    def clip_state_keys(self) -> set[str]:
        """Keys of this module's state dict that a CLIP checkpoint provides."""
        return {k for k in self.state_dict() if not k.startswith("attnpool_residual.")}

    def _pool_positional_embedding(self, height: int, width: int) -> Tensor:
        """Attention-pool positional embedding (1 + height*width, C), its grid resized bicubically.

        Computed every call (a few microseconds): a memo keyed on the weight's version counter would go
        stale, since fused optimizers (AdamW ``fused=True``) update weights without bumping it."""
        pos = self.visual.attnpool.positional_embedding  # (1 + S*S, C)
        side = math.isqrt(int(pos.shape[0]) - 1)
        if (height, width) == (side, side):
            return pos
        grid = pos[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)  # (1, C, S, S)
        grid = F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False)
        return torch.cat([pos[:1], grid.flatten(2)[0].T], dim=0)  # (1 + h*w, C)

    def _spatial_attention_pool(self, x: Tensor) -> Tensor:
        """CLIP's attention pool applied at every position: (B, C, h, w) -> (B, embed_dim, h, w)."""
        pool = self.visual.attnpool
        batch, channels, height, width = x.shape
        residual = self.attnpool_residual(x)  # (B, D, h, w)
        tokens = x.flatten(2).permute(2, 0, 1)  # (h*w, B, C)
        tokens = torch.cat([tokens.mean(dim=0, keepdim=True), tokens], dim=0)  # (1 + h*w, B, C)
        tokens = tokens + self._pool_positional_embedding(height, width)[:, None, :].to(tokens.dtype)
        out, _ = F.multi_head_attention_forward(
            query=tokens, key=tokens, value=tokens,
            embed_dim_to_check=channels,
            num_heads=pool.num_heads,
            q_proj_weight=pool.q_proj.weight,
            k_proj_weight=pool.k_proj.weight,
            v_proj_weight=pool.v_proj.weight,
            in_proj_weight=None,
            in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
            bias_k=None,
            bias_v=None,
            add_zero_attn=False,
            dropout_p=0.0,
            out_proj_weight=pool.c_proj.weight,
            out_proj_bias=pool.c_proj.bias,
            use_separate_proj_weight=True,
            training=self.training,
            need_weights=False,
        )  # (1 + h*w, B, D)
        out = out[1:].permute(1, 2, 0).reshape(batch, -1, height, width)  # (B, D, h, w)
        return F.relu(out + residual)

    def encode_image(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``image (B, 3, H, W)`` CLIP-normalised -> ``v1, v2, v3, v4`` (see the class docstring)."""
        visual = self.visual
        x = visual.stem(image)  # (B, width, H/4, W/4)
        v1 = visual.layer1(x)  # (B, width*4, H/4, W/4)
        v2 = visual.layer2(v1)  # (B, width*8, H/8, W/8)
        v3 = visual.layer3(v2)  # (B, width*16, H/16, W/16)
        x = visual.layer4(v3)  # (B, width*32, H/32, W/32)
        v4 = self._spatial_attention_pool(x)  # (B, embed_dim, H/32, W/32)
        return v1, v2, v3, v4

    def encode_text(self, text: Tensor) -> TextFeatures:
        """``text (B, L)`` token ids (L <= 77, zero padded) -> :class:`TextFeatures`."""
        length = text.shape[1]
        if length > self.context_length:
            raise ValueError(f"text has {length} tokens, CLIP's context holds {self.context_length}")
        x = self.token_embedding(text) + self.positional_embedding[:length]  # (B, L, C)
        x = self.transformer(x, attn_mask=self.attn_mask[:length, :length])  # (B, L, C), causal
        words = self.ln_final(x)  # (B, L, C)
        # The end-of-text token has the largest id in every row.
        eot = words[torch.arange(words.shape[0], device=words.device), text.argmax(dim=-1)]  # (B, C)
        state = eot @ self.text_projection  # (B, embed_dim)
        return TextFeatures(words=words, padding_mask=text == 0, state=state)


def _is_torchscript_archive(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") for name in archive.namelist())


def read_clip_state_dict(path: str | Path) -> dict[str, Tensor]:
    """CLIP weights from OpenAI's TorchScript archive (``RN50.pt``) or a plain state dict, on the CPU.

    Drops entries that are not weights (``input_resolution``, ``context_length``, ``vocab_size``,
    ``logit_scale``, ``attn_mask``) and a ``module.`` prefix; unwraps ``{"state_dict": ...}``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CLIP weights file not found: {path}")
    if _is_torchscript_archive(path):
        with warnings.catch_warnings():  # torch.jit.load is deprecated, yet it is the reader of OpenAI's files
            warnings.simplefilter("ignore", FutureWarning)
            loaded: Any = torch.jit.load(str(path), map_location="cpu").state_dict()
    else:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure means "not a readable state dict"
            raise ValueError(f"{path} is neither a TorchScript archive nor a state dict: {exc}") from exc
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors (got {type(loaded).__name__})")
    state = {k.removeprefix("module."): v for k, v in loaded.items()}
    return {k: v for k, v in state.items() if k not in _NON_WEIGHT_KEYS}


def _key_list(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return f"[{shown}{', ...' if len(keys) > limit else ''}] ({len(keys)})"


def load_clip_weights(backbone: CLIPBackbone, path: str | Path) -> None:
    """Load CLIP weights into ``backbone``; a file of another architecture raises ``ValueError``."""
    state = read_clip_state_dict(path)
    own = {k: v for k, v in backbone.state_dict().items() if k in backbone.clip_state_keys()}
    missing = sorted(k for k in own.keys() - state.keys() if not k.endswith("num_batches_tracked"))
    unexpected = sorted(state.keys() - own.keys())
    mismatched = sorted(
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own.keys() & state.keys()
        if state[k].shape != own[k].shape
    )
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"missing keys {_key_list(missing)}")
        if unexpected:
            problems.append(f"unexpected keys {_key_list(unexpected)}")
        if mismatched:
            problems.append(f"mismatched shapes (file vs model) {_key_list(mismatched)}")
        raise ValueError(
            f"{path} does not fit the CLIP backbone {backbone.model_name!r}: " + "; ".join(problems)
        )
    # attnpool_residual is CRIS's addition, absent from CLIP checkpoints; it keeps its initialisation.
    backbone.load_state_dict(state, strict=False)
    logger.info("Loaded CLIP weights from %s (%d tensors)", path, len(state))
