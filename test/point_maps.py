"""Hand-made point-head outputs for tests that build network outputs themselves."""
from __future__ import annotations

import torch


def point_logits_at(u: float, v: float, image_hw: tuple[int, int], sigma_cells: float = 0.5) -> torch.Tensor:
    """``point_logits (1, 1, H/4, W/4)``: a sharp Gaussian bump (log-density) whose sub-pixel peak
    (:func:`segaff_core.point_peak.refined_peak`) is the image pixel ``(u, v)`` (pixel centres at integers)."""
    height, width = image_hw
    rows, cols = torch.meshgrid(torch.arange(height // 4, dtype=torch.float32),
                                torch.arange(width // 4, dtype=torch.float32), indexing="ij")
    centre_col, centre_row = (u + 0.5) / 4 - 0.5, (v + 0.5) / 4 - 0.5  # in cells, centres at integers
    return (-((rows - centre_row) ** 2 + (cols - centre_col) ** 2) / (2 * sigma_cells ** 2))[None, None]
