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


MAIN_COMPONENT_SHARE = 0.9


def outline_yx(mask: np.ndarray) -> np.ndarray:
    """One polygon (N, 2) as (row, column), as the SceneFun3D records hold: the outline of the largest
    component when it holds 90% of the mask (dropping specks), else the convex hull of all components."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    areas = stats[1:count, cv2.CC_STAT_AREA]
    largest = int(np.argmax(areas)) + 1
    if areas[largest - 1] >= MAIN_COMPONENT_SHARE * areas.sum():
        outline = _contours(labels == largest)[0]
    else:
        outline = cv2.convexHull(np.concatenate(_contours(mask))).reshape(-1, 2)
    return outline[:, ::-1].astype(np.int64)


def bbox_xywh(mask: np.ndarray) -> list[float]:
    """COCO ``bbox`` [x, y, width, height] in pixels of a non-empty mask."""
    x, y, width, height = cv2.boundingRect(mask.astype(np.uint8))
    return [float(x), float(y), float(width), float(height)]
