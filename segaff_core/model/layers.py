"""Reusable layers: depth encoder, CRIS's multi-modal FPN, transformer decoder and projector, motion heads."""
from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class InferenceCache:
    """Tensors that depend only on a spatial size, memoised for inference.

    The cache is used only while autograd is off (``no_grad`` / ``inference_mode``) and not while
    ``torch.compile`` or the ONNX exporter traces the model, so a memoised tensor never enters a graph
    that trains or is exported. Nothing derived from weights belongs here: a fused optimizer step
    changes weights in place without bumping their version counters, so no key could tell.
    """

    def __init__(self, max_entries: int = 8) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, Tensor] = OrderedDict()

    def get(self, key: Callable[[], Hashable], compute: Callable[[], Tensor]) -> Tensor:
        """``compute()``, memoised under ``key()`` while caching is allowed (``key`` is not called otherwise,
        so it may read what tracing cannot, such as version counters)."""
        if torch.is_grad_enabled() or torch.compiler.is_compiling() or torch.jit.is_tracing():
            return compute()
        key = (key(), torch.is_inference_mode_enabled())
        value = self._entries.get(key)
        if value is None:
            value = self._entries[key] = compute()
            if len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        return value


def conv_bn_relu(in_dim: int, out_dim: int, kernel_size: int = 1, stride: int = 1) -> nn.Sequential:
    """Conv (same padding, no bias) -> BatchNorm -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_dim, out_dim, kernel_size, stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_dim),
        nn.ReLU(inplace=True),
    )


def linear_ln_relu(in_dim: int, out_dim: int, bias: bool = True) -> nn.Sequential:
    """Linear -> LayerNorm -> ReLU (LayerNorm rather than BatchNorm1d so a batch of one trains)."""
    return nn.Sequential(nn.Linear(in_dim, out_dim, bias=bias), nn.LayerNorm(out_dim), nn.ReLU(inplace=True))


class CoordConv(nn.Module):
    """conv_bn_relu over the input with two extra channels: x and y in [-1, 1]."""

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = conv_bn_relu(in_dim + 2, out_dim, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        batch, _, height, width = x.shape
        ys = torch.linspace(-1, 1, height, device=x.device, dtype=x.dtype)
        xs = torch.linspace(-1, 1, width, device=x.device, dtype=x.dtype)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # (h, w) each
        coords = torch.stack([grid_x, grid_y]).expand(batch, -1, -1, -1)  # (B, 2, h, w)
        return self.conv(torch.cat([x, coords], dim=1))


class DepthEncoder(nn.Module):
    """Depth in metres ``(B, 1, H, W)`` (0, NaN, inf invalid) -> ``(B, c8, H/8, W/8)``, ``(B, c16, H/16, W/16)``.

    The input is two channels: depth clipped to ``max_depth_m`` and scaled to [0, 1], and the validity mask.
    """

    def __init__(self, channels: Sequence[int] = (128, 256), max_depth_m: float = 10.0) -> None:
        super().__init__()
        c8, c16 = channels
        self.max_depth_m = max_depth_m
        self.stem = nn.Sequential(conv_bn_relu(2, c8 // 4, 3, 2), conv_bn_relu(c8 // 4, c8 // 4, 3))  # H/2
        self.down4 = conv_bn_relu(c8 // 4, c8 // 2, 3, 2)  # H/4
        self.down8 = nn.Sequential(conv_bn_relu(c8 // 2, c8, 3, 2), conv_bn_relu(c8, c8, 3))  # H/8
        self.down16 = nn.Sequential(conv_bn_relu(c8, c16, 3, 2), conv_bn_relu(c16, c16, 3))  # H/16

    def forward(self, depth_m: Tensor) -> tuple[Tensor, Tensor]:
        valid = torch.isfinite(depth_m) & (depth_m > 0)  # (B, 1, H, W)
        depth = torch.where(valid, depth_m, torch.zeros_like(depth_m)).clamp(max=self.max_depth_m)
        x = torch.cat([depth / self.max_depth_m, valid.to(depth.dtype)], dim=1)  # (B, 2, H, W)
        x = self.down4(self.stem(x))  # (B, c8/2, H/4, W/4)
        feat_8 = self.down8(x)  # (B, c8, H/8, W/8)
        feat_16 = self.down16(feat_8)  # (B, c16, H/16, W/16)
        return feat_8, feat_16


class FPN(nn.Module):
    """CRIS's multi-modal FPN: the sentence state gates the top level, then top-down fusion and CoordConv.

    Inputs ``v2 (B, in[0], H/8)``, ``v3 (B, in[1], H/16)``, ``v4 (B, in[2], H/32)`` and the text gate
    ``(B, out[2], 1, 1)`` from :meth:`text_gate`; output ``(B, out[1], H/16, W/16)``.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int], state_dim: int) -> None:
        super().__init__()
        in2, in3, in4 = in_channels
        out2, out3, out4 = out_channels
        self.txt_proj = linear_ln_relu(state_dim, out4, bias=False)
        # fusion 1: v4 gated by the text -> f4 (B, out4, H/32)
        self.f1_v_proj = conv_bn_relu(in4, out4, 1)
        self.norm_layer = nn.Sequential(nn.BatchNorm2d(out4), nn.ReLU(inplace=True))
        # fusion 2: v3 & up(f4) -> f3 (B, out3, H/16)
        self.f2_v_proj = conv_bn_relu(in3, out3, 3)
        self.f2_cat = conv_bn_relu(out4 + out3, out3, 1)
        # fusion 3: down(v2) & f3 -> f2 (B, out3, H/16)
        self.f3_v_proj = conv_bn_relu(in2, out2, 3)
        self.f3_cat = conv_bn_relu(out2 + out3, out3, 1)
        # fusion 4: the three levels at H/16 -> aggregate
        self.f4_proj5 = conv_bn_relu(out4, out3, 3)
        self.f4_proj4 = conv_bn_relu(out3, out3, 3)
        self.f4_proj3 = conv_bn_relu(out3, out3, 3)
        self.aggr = conv_bn_relu(3 * out3, out3, 1)
        self.coordconv = nn.Sequential(CoordConv(out3, out3, 3), conv_bn_relu(out3, out3, 3))

    def text_gate(self, state: Tensor) -> Tensor:
        """The text side: ``state (B, state_dim)`` -> the gate on the top level ``(B, out[2], 1, 1)``."""
        return self.txt_proj(state)[:, :, None, None]

    def forward(self, features: tuple[Tensor, Tensor, Tensor], gate: Tensor) -> Tensor:
        """``features`` (v2, v3, v4) and ``gate`` = :meth:`text_gate` of the sentence state."""
        v2, v3, v4 = features
        f4 = self.norm_layer(self.f1_v_proj(v4) * gate)  # (B, out4, H/32, W/32)
        f4_up = F.interpolate(f4, scale_factor=2, mode="bilinear", align_corners=False)  # (B, out4, H/16)
        f3 = self.f2_cat(torch.cat([self.f2_v_proj(v3), f4_up], dim=1))  # (B, out3, H/16, W/16)
        f2 = F.avg_pool2d(self.f3_v_proj(v2), 2, 2)  # (B, out2, H/16, W/16)
        f2 = self.f3_cat(torch.cat([f2, f3], dim=1))  # (B, out3, H/16, W/16)
        q4 = F.interpolate(self.f4_proj5(f4), scale_factor=2, mode="bilinear", align_corners=False)
        fused = torch.cat([self.f4_proj3(f2), self.f4_proj4(f3), q4], dim=1)  # (B, 3*out3, H/16, W/16)
        return self.coordconv(self.aggr(fused))  # (B, out3, H/16, W/16)


def sine_position_1d(d_model: int, length: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Sinusoidal encoding ``(length, d_model)``."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]  # (L, 1)
    div = torch.exp(torch.arange(0, d_model, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(length, d_model, device=device)
    pe[:, 0::2] = torch.sin(position * div)
    pe[:, 1::2] = torch.cos(position * div)
    return pe.to(dtype)


def sine_position_2d(d_model: int, height: int, width: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """2D sinusoidal encoding ``(height*width, d_model)``: first half encodes the column, second the row."""
    if d_model % 4:
        raise ValueError(f"2D positional encoding needs d_model divisible by 4, got {d_model}")
    half = d_model // 2
    pe_x = sine_position_1d(half, width, device, dtype)  # (w, d/2)
    pe_y = sine_position_1d(half, height, device, dtype)  # (h, d/2)
    pe = torch.cat([pe_x[None].expand(height, -1, -1), pe_y[:, None].expand(-1, width, -1)], dim=-1)
    return pe.reshape(height * width, d_model)  # row-major, like a flattened (h, w) map


@dataclass
class WordMemory:
    """The decoder's text side, computed once per instruction (:meth:`TransformerDecoder.text_side`)."""

    keys: tuple[Tensor, ...]  # per layer (B, heads, L, head_dim): cross-attention keys of words + positions
    values: tuple[Tensor, ...]  # per layer (B, heads, L, head_dim): cross-attention values of the words
    bias: Tensor  # (B, 1, 1, L) float32 additive attention bias: 0 for words, -inf for padding


def in_projections(
    attention: nn.MultiheadAttention,
) -> tuple[tuple[Tensor, Tensor, Tensor], tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor]]]:
    """Query, key and value projection weights and biases of ``attention`` (packed or separate layout)."""
    if attention._qkv_same_embed_dim:
        w_q, w_k, w_v = attention.in_proj_weight.chunk(3)
    else:
        w_q, w_k, w_v = attention.q_proj_weight, attention.k_proj_weight, attention.v_proj_weight
    if attention.in_proj_bias is None:
        return (w_q, w_k, w_v), (None, None, None)
    b_q, b_k, b_v = attention.in_proj_bias.chunk(3)
    return (w_q, w_k, w_v), (b_q, b_k, b_v)


class TransformerDecoderLayer(nn.Module):
    """CRIS decoder layer (pre-norm): self-attention over pixels, cross-attention to words, FFN.

    The cross-attention's word side (key and value projections) is :meth:`word_keys_values`, computed
    once per instruction; a frame projects only its queries.
    """

    def __init__(self, d_model: int, word_width: int, num_head: int, dim_ffn: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, num_head, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(
            d_model, num_head, dropout=dropout, kdim=word_width, vdim=word_width, batch_first=True
        )
        self.self_attn_norm = nn.LayerNorm(d_model)
        self.cross_attn_norm = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, dim_ffn),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.LayerNorm(dim_ffn),
            nn.Linear(dim_ffn, d_model),
        )
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def word_keys_values(self, words: Tensor, word_pos: Tensor) -> tuple[Tensor, Tensor]:
        """``words (B, L, C)`` and ``word_pos (1, L, C)`` -> cross-attention keys and values ``(B, heads, L, d)``."""
        (_, w_k, w_v), (_, b_k, b_v) = in_projections(self.cross_attn)
        heads = self.cross_attn.num_heads
        keys = F.linear(words + word_pos, w_k, b_k).unflatten(-1, (heads, -1)).transpose(1, 2)
        values = F.linear(words, w_v, b_v).unflatten(-1, (heads, -1)).transpose(1, 2)
        return keys, values

    def _cross_attention(self, x: Tensor, keys: Tensor, values: Tensor, word_bias: Tensor) -> Tensor:
        """``nn.MultiheadAttention`` with pre-projected keys and values: ``x (B, N, D)`` queries -> ``(B, N, D)``."""
        attention = self.cross_attn
        (w_q, _, _), (b_q, _, _) = in_projections(attention)
        query = F.linear(x, w_q, b_q).unflatten(-1, (attention.num_heads, -1)).transpose(1, 2)  # (B, h, N, d)
        out = F.scaled_dot_product_attention(
            query, keys, values, attn_mask=word_bias.to(query.dtype),
            dropout_p=attention.dropout if self.training else 0.0,
        )  # (B, h, N, d)
        return attention.out_proj(out.transpose(1, 2).flatten(2))  # (B, N, D)

    def forward(self, vis: Tensor, vis_pos: Tensor, keys: Tensor, values: Tensor, word_bias: Tensor) -> Tensor:
        """``vis (B, N, D)``, ``vis_pos (1, N, D)``, this layer's ``keys``/``values`` and the ``word_bias``
        of :class:`WordMemory`."""
        x = self.norm1(vis)
        q = k = x + vis_pos
        x = self.self_attn(q, k, value=x, need_weights=False)[0]  # (B, N, D)
        vis = vis + self.dropout1(self.self_attn_norm(x))
        x = self._cross_attention(self.norm2(vis) + vis_pos, keys, values, word_bias)  # (B, N, D)
        vis = vis + self.dropout2(self.cross_attn_norm(x))
        return vis + self.dropout3(self.ffn(self.norm3(vis)))


class TransformerDecoder(nn.Module):
    """Stack of :class:`TransformerDecoderLayer` with sine positions: ``(B, D, h, w)`` -> ``(B, D, h, w)``.

    The word side of every layer is :meth:`text_side` (once per instruction); the pixel positions are
    memoised per feature size for inference.
    """

    def __init__(
        self, num_layers: int, d_model: int, word_width: int, num_head: int, dim_ffn: int, dropout: float
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerDecoderLayer(d_model, word_width, num_head, dim_ffn, dropout) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self._positions = InferenceCache()

    def text_side(self, words: Tensor, padding_mask: Tensor) -> WordMemory:
        """``words (B, L, C)`` and ``padding_mask (B, L)`` (True = padding) -> :class:`WordMemory`."""
        word_pos = sine_position_1d(words.shape[-1], words.shape[1], words.device, words.dtype)[None]  # (1, L, C)
        keys, values = zip(*(layer.word_keys_values(words, word_pos) for layer in self.layers))
        bias = torch.zeros(padding_mask.shape, device=words.device).masked_fill(padding_mask, float("-inf"))
        return WordMemory(keys=tuple(keys), values=tuple(values), bias=bias[:, None, None, :])

    def forward(self, vis: Tensor, words: WordMemory) -> Tensor:
        batch, channels, height, width = vis.shape
        vis_pos = self._positions.get(
            lambda: (channels, height, width, vis.device, vis.dtype),
            lambda: sine_position_2d(channels, height, width, vis.device, vis.dtype)[None],
        )  # (1, h*w, D)
        x = vis.flatten(2).transpose(1, 2)  # (B, h*w, D)
        for layer, keys, values in zip(self.layers, words.keys, words.values):
            x = layer(x, vis_pos, keys, values, words.bias)  # (B, h*w, D)
        return self.norm(x).transpose(1, 2).reshape(batch, channels, height, width)  # (B, D, h, w)


@dataclass
class DynamicKernels:
    """The projector's text side, computed once per instruction (:meth:`Projector.text_kernels`)."""

    weight: Tensor  # (B*M, C, k, k) dynamic kernels with the projector's last 1x1 convolution folded in
    bias: Tensor  # (B*M,) dynamic biases
    border: Tensor  # (B*M, 1, k, k) that 1x1 convolution's bias seen through the kernels


class Projector(nn.Module):
    """The seed's Projector_Mult: upsample x4, then dynamic 3x3 kernels from the sentence state give maps.

    ``x (B, 2*in_dim, H/16, W/16)`` and :class:`DynamicKernels` -> ``(B, num_maps, H/4, W/4)``.
    The last 1x1 convolution of ``vis`` is linear, so :meth:`text_kernels` folds it into the dynamic
    kernels (with a border term for the zero padding): the same maps without that convolution per frame.

    With ``skip_in > 0`` (``ModelParams.mask_skip_dim``) an H/8 feature map ``(B, skip_in, H/8, W/8)`` is
    projected to ``skip_dim`` channels and concatenated after the first upsampling, so mask edges come from
    H/8 image detail rather than from the H/16 grid alone; ``skip4_in > 0`` (``mask_skip4_dim``) does the
    same with an H/4 map after the second. Upsampling masks from H/16, H/8 and H/4 bounds the mean IoU of
    the synthetic test parts at 160x160 at 0.54, 0.85 and 0.96.
    """

    def __init__(
        self,
        state_dim: int,
        in_dim: int,
        kernel_size: int = 3,
        num_maps: int = 2,
        skip_in: int = 0,
        skip_dim: int = 0,
        skip4_in: int = 0,
        skip4_dim: int = 0,
    ) -> None:
        super().__init__()
        for name, inputs, outputs in (("skip", skip_in, skip_dim), ("skip4", skip4_in, skip4_dim)):
            if (inputs > 0) != (outputs > 0):
                raise ValueError(f"{name}_in and {name}_dim must both be positive or both 0, got {inputs}, {outputs}")
        self.in_dim = in_dim
        self.kernel_size = kernel_size
        self.num_maps = num_maps
        self.skip = conv_bn_relu(skip_in, skip_dim, 1) if skip_dim else None
        self.skip4 = conv_bn_relu(skip4_in, skip4_dim, 1) if skip4_dim else None
        self.vis = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            conv_bn_relu(in_dim * 2 + skip_dim, in_dim * 2, 3),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            conv_bn_relu(in_dim * 2 + skip4_dim, in_dim, 3),
            nn.Conv2d(in_dim, in_dim, 1),
        )
        self.txt = nn.Linear(state_dim, num_maps * (in_dim * kernel_size * kernel_size + 1))

    def text_kernels(self, state: Tensor) -> DynamicKernels:
        """``state (B, state_dim)`` -> :class:`DynamicKernels`."""
        rows = state.shape[0] * self.num_maps
        params = self.txt(state).reshape(rows, -1)  # (B*M, C*k*k + 1)
        kernels = params[:, :-1].reshape(rows, self.in_dim, self.kernel_size, self.kernel_size)  # (B*M, C, k, k)
        last = self.vis[-1]  # 1x1 conv: y = W x + b
        weight = torch.einsum("mcij,cd->mdij", kernels, last.weight[:, :, 0, 0])  # kernel o W
        border = torch.einsum("mcij,c->mij", kernels, last.bias)[:, None]  # (B*M, 1, k, k): kernel o b
        return DynamicKernels(weight=weight, bias=params[:, -1], border=border)

    def forward(
        self, x: Tensor, kernels: DynamicKernels, skip: Optional[Tensor] = None, skip4: Optional[Tensor] = None
    ) -> Tensor:
        """``x (B, 2*in_dim, H/16, W/16)``, the kernels, and the H/8 ``skip`` and H/4 ``skip4`` maps when
        built with them."""
        for given, layer, scale in ((skip, self.skip, "H/8"), (skip4, self.skip4, "H/4")):
            if (given is None) != (layer is None):
                raise ValueError("the projector was built " + ("with" if layer is not None else "without")
                                 + f" an {scale} skip input")
        x = self.vis[0](x)  # (B, 2*in_dim, H/8, W/8)
        if self.skip is not None:
            x = torch.cat([x, self.skip(skip)], dim=1)  # (B, 2*in_dim + skip_dim, H/8, W/8)
        x = self.vis[2](self.vis[1](x))  # (B, 2*in_dim, H/4, W/4)
        if self.skip4 is not None:
            x = torch.cat([x, self.skip4(skip4)], dim=1)  # (B, 2*in_dim + skip4_dim, H/4, W/4)
        x = self.vis[3](x)  # (B, C, H/4, W/4), before the 1x1 conv folded into the kernels
        batch, channels, height, width = x.shape
        padding = self.kernel_size // 2
        # One group per sample: (1, B*C, h, w) * (B*M, C, k, k) -> (1, B*M, h, w)
        out = F.conv2d(
            x.reshape(1, batch * channels, height, width), kernels.weight, kernels.bias, padding=padding, groups=batch
        )
        # The 1x1 conv's bias reaches an output only through the taps that fall inside the image.
        out = out + F.conv2d(x.new_ones(1, 1, height, width), kernels.border, padding=padding)
        return out.reshape(batch, self.num_maps, height, width)


def soft_argmax(logits: Tensor) -> Tensor:
    """Expected pixel-centre position under ``softmax(logits (B, 1, h, w))`` -> ``(B, 2)`` in [0, 1].

    x is the column, y the row, both as fractions of the map's width and height.
    """
    batch, _, height, width = logits.shape
    prob = logits.flatten(1).softmax(dim=-1).reshape(batch, height, width)
    xs = (torch.arange(width, device=logits.device, dtype=prob.dtype) + 0.5) / width  # (w,)
    ys = (torch.arange(height, device=logits.device, dtype=prob.dtype) + 0.5) / height  # (h,)
    x = (prob.sum(dim=1) * xs).sum(dim=-1)  # (B,)
    y = (prob.sum(dim=2) * ys).sum(dim=-1)  # (B,)
    return torch.stack([x, y], dim=-1)


class MotionHeads(nn.Module):
    """Hidden motion feature ``(..., hidden)`` -> unit ``axis (..., 3)``, ``motion_type_logits (..., 2)``,
    ``origin_offset (..., 3)`` metres."""

    def __init__(self, hidden_dim: int) -> None:
        super().__init__()
        self.axis = nn.Linear(hidden_dim, 3)
        self.motion_type = nn.Linear(hidden_dim, 2)
        self.origin_offset = nn.Linear(hidden_dim, 3)

    def forward(self, hidden: Tensor) -> dict[str, Tensor]:
        return {
            "axis": F.normalize(self.axis(hidden), dim=-1, eps=1e-6),
            "motion_type_logits": self.motion_type(hidden),
            "origin_offset": self.origin_offset(hidden),
        }


class MotionMLP(nn.Module):
    """Deterministic motion head: condition ``(B, cond_dim)`` -> :class:`MotionHeads` outputs."""

    def __init__(self, cond_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            linear_ln_relu(cond_dim, hidden_dim), nn.Linear(hidden_dim, hidden_dim), nn.ReLU(inplace=True)
        )
        self.heads = MotionHeads(hidden_dim)

    def forward(
        self, condition: Tensor, axis: Optional[Tensor] = None, motion_type: Optional[Tensor] = None
    ) -> dict[str, Tensor]:
        """``axis`` and ``motion_type`` (ground truth) are accepted for a common signature and unused."""
        return self.heads(self.net(condition))


class MotionVAE(nn.Module):
    """Conditional VAE over the motion (axis, type): one motion hypothesis per latent z.

    ``prior="conditional"`` (the default): a learned prior p(z | condition), the KL is taken against it,
    and the decoder is trained twice per step, on a posterior sample (reconstruction) and on the prior
    mean (the deterministic prediction inference makes). The outputs the downstream heads and the losses
    read (``axis``, ``motion_type_logits``, ``origin_offset``) are the prior mean's, in training as at
    inference, so what is trained is what is used; the posterior's axis is ``vae_axis``. The posterior and
    the KL reach the CVAE's own layers only, not the condition: the features upstream learn from the
    prediction's losses alone (a 30-minute bench with them reaching it learned masks more slowly).

    ``prior="standard"``: the seed's N(0, I) prior, with the decoder trained on posterior samples only
    and given z = 0 at inference: it learns to read the axis from a latent inference never has (a held-out
    axis error of 24 deg where the MLP head reached 7). Kept to load the checkpoints trained that way.

    With ground truth (``axis (B, 3)``, ``motion_type (B,)``) the encoder gives ``vae_mu``, ``vae_logvar``
    (and, with the conditional prior, ``vae_prior_mu``, ``vae_prior_logvar``); z is a posterior sample in
    training mode, its mean in eval mode. Without ground truth z is the prior mean. :meth:`sample` draws
    z from the prior.
    """

    def __init__(
        self, cond_dim: int, hidden_dim: int, latent_dim: int, prior: Literal["standard", "conditional"] = "conditional"
    ) -> None:
        super().__init__()
        if prior not in ("standard", "conditional"):
            raise ValueError(f"MotionVAE prior must be 'standard' or 'conditional', got {prior!r}")
        self.latent_dim = latent_dim
        self.condition = linear_ln_relu(cond_dim, hidden_dim)
        self.encoder = nn.Sequential(
            nn.Linear(hidden_dim + 3 + 2, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, 2 * latent_dim)
        )
        self.prior = nn.Linear(hidden_dim, 2 * latent_dim) if prior == "conditional" else None
        self.decoder = nn.Sequential(
            nn.Linear(hidden_dim + latent_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(inplace=True),
        )
        self.heads = MotionHeads(hidden_dim)

    def _decode(self, hidden: Tensor, z: Tensor) -> dict[str, Tensor]:
        return self.heads(self.decoder(torch.cat([hidden, z], dim=-1)))

    def _prior(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance ``(..., latent)`` of p(z | condition)."""
        if self.prior is None:
            zeros = hidden.new_zeros(*hidden.shape[:-1], self.latent_dim)
            return zeros, zeros
        mu, logvar = self.prior(hidden).chunk(2, dim=-1)
        return mu, logvar

    def forward(
        self, condition: Tensor, axis: Optional[Tensor] = None, motion_type: Optional[Tensor] = None
    ) -> dict[str, Tensor]:
        hidden = self.condition(condition)  # (B, hidden)
        prior_mu, _ = self._prior(hidden)  # (B, latent)
        if axis is None or motion_type is None:
            return self._decode(hidden, prior_mu)
        if self.prior is None:
            mu, logvar, z = self._posterior(hidden, axis, motion_type)
            return {**self._decode(hidden, z), "vae_mu": mu, "vae_logvar": logvar}
        # The posterior and the KL train the CVAE's own layers only: what reaches the condition (and the
        # features it pools) is the loss of the prediction inference makes, as with the MLP head.
        fixed = hidden.detach()
        mu, logvar, z = self._posterior(fixed, axis, motion_type)
        kl_prior_mu, kl_prior_logvar = self._prior(fixed)
        return {
            **self._decode(hidden, prior_mu),
            "vae_axis": self._decode(fixed, z)["axis"],
            "vae_mu": mu,
            "vae_logvar": logvar,
            "vae_prior_mu": kl_prior_mu,
            "vae_prior_logvar": kl_prior_logvar,
        }

    def _posterior(self, hidden: Tensor, axis: Tensor, motion_type: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mean and log-variance ``(B, latent)`` of q(z | condition, motion) and z: a sample of it in
        training mode, its mean in eval mode."""
        motion = torch.cat([axis.to(hidden.dtype), F.one_hot(motion_type.long(), 2).to(hidden.dtype)], dim=-1)
        mu, logvar = self.encoder(torch.cat([hidden, motion], dim=-1)).chunk(2, dim=-1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return mu, logvar, z

    def sample(
        self, condition: Tensor, num_samples: int, generator: Optional[torch.Generator] = None
    ) -> dict[str, Tensor]:
        """``num_samples`` prior draws -> each output with a leading sample axis ``(K, B, ...)``."""
        hidden = self.condition(condition)  # (B, hidden)
        prior_mu, prior_logvar = self._prior(hidden)
        noise = torch.randn(
            num_samples, *hidden.shape[:-1], self.latent_dim, device=hidden.device, dtype=hidden.dtype,
            generator=generator,
        )  # (K, B, latent)
        z = prior_mu + noise * torch.exp(0.5 * prior_logvar)
        return self._decode(hidden.expand(num_samples, -1, -1), z)


class TrajectoryMLP(nn.Module):
    """Condition + motion -> ``(..., num_points, 3)`` metres relative to the first point (first row 0)."""

    def __init__(self, cond_dim: int, hidden_dim: int, num_points: int) -> None:
        super().__init__()
        self.num_points = num_points
        self.net = nn.Sequential(
            linear_ln_relu(cond_dim + 3 + 2 + 3, hidden_dim),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, (num_points - 1) * 3),
        )

    def forward(self, condition: Tensor, axis: Tensor, motion_type_logits: Tensor, origin_offset: Tensor) -> Tensor:
        x = torch.cat([condition, axis, motion_type_logits.softmax(dim=-1), origin_offset], dim=-1)
        steps = self.net(x).unflatten(-1, (self.num_points - 1, 3))  # (..., T-1, 3)
        return torch.cat([steps.new_zeros(*steps.shape[:-2], 1, 3), steps], dim=-2)  # (..., T, 3)
