"""Mask outlines for the writers: COCO polygons, a single outline (SceneFun3D), bounding boxes."""
from __future__ import annotations

import cv2
import numpy as np


def _contours(mask: np.ndarray) -> list[np.ndarray]:
    """External contours (N, 2) of the mask's components, x = column, at pixel centres."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1, 2) for c in contours]


def coco_polygons(mask: np.ndarray) -> list[list[float]]:
    """COCO ``segmentation``: one flat ``[x0, y0, x1, y1, ...]`` list per component with 3+ vertices."""
    return [c.astype(float).ravel().tolist() for c in _contours(mask) if len(c) >= 3]


def outline_yx(mask: np.ndarray) -> np.ndarray:
    """One polygon (N, 2) as (row, column): the outline of a single-component mask, else the convex hull
    of all components (the SceneFun3D records hold one hull polygon)."""
    contours = _contours(mask)
    if len(contours) == 1:
        outline = contours[0]
    else:
        outline = cv2.convexHull(np.concatenate(contours)).reshape(-1, 2)
    return outline[:, ::-1].astype(np.int64)


def bbox_xywh(mask: np.ndarray) -> list[float]:
    """COCO ``bbox`` [x, y, width, height] in pixels of a non-empty mask."""
    rows, cols = np.nonzero(mask)
    return [float(cols.min()), float(rows.min()), float(cols.max() - cols.min() + 1), float(rows.max() - rows.min() + 1)]
