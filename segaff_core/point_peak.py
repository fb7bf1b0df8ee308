"""The interaction point from the point head's map: a sub-pixel peak, stable under reduced precision.

The network's own ``point_xy`` is a soft-argmax over the whole map: every cell of the background weighs
in, so small errors spread over thousands of cells (int8, bf16) move it far, and two near-equal peaks put
it between them, on neither. :func:`refined_peak` takes the map's arg max and refines it to sub-pixel
precision with a soft-argmax over the ``(2r+1)^2`` cells around it only: the same estimator near the
peak, blind to the rest of the map. Shared by every runtime (:mod:`segaff_core.inference`) and by the
runtimes' verification.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

PEAK_RADIUS = 2
"""Cells on each side of the arg max that the sub-pixel refinement weighs (5 x 5 cells; 1 cell = 4 input px)."""


def refined_peak(point_logits: Tensor, radius: int = PEAK_RADIUS) -> Tensor:
    """``point_logits (B, 1, h, w)`` -> ``(B, 2)`` (x = column, y = row) in [0, 1], pixel centres at
    ``(i + 0.5) / size`` as in :func:`~segaff_core.model.layers.soft_argmax`: the expected position under
    the softmax of the logits within ``radius`` cells of the arg max (cells outside the map weigh nothing)."""
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    batch, _, height, width = point_logits.shape
    logits = point_logits.float().reshape(batch, height, width)
    peak = logits.flatten(1).argmax(dim=1)  # (B,)
    row, col = peak // width, peak % width
    offsets = torch.arange(-radius, radius + 1, device=logits.device)  # (k,)
    padded = F.pad(logits, (radius, radius, radius, radius), value=float("-inf"))  # (B, h+2r, w+2r)
    rows = (row + radius)[:, None, None] + offsets[None, :, None]  # (B, k, 1) in padded coordinates
    cols = (col + radius)[:, None, None] + offsets[None, None, :]  # (B, 1, k)
    window = padded[torch.arange(batch, device=logits.device)[:, None, None], rows, cols]  # (B, k, k)
    weights = window.flatten(1).softmax(dim=-1).reshape_as(window)  # -inf outside the map: weight 0
    dy = (weights.sum(dim=2) * offsets).sum(dim=1)  # (B,) cells
    dx = (weights.sum(dim=1) * offsets).sum(dim=1)
    x = (col + dx + 0.5) / width
    y = (row + dy + 0.5) / height
    return torch.stack([x, y], dim=-1)
