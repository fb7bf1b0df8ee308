"""Records shared by the SceneFun3D data tests (a module, not conftest.py: test/ros has a conftest too)."""
from __future__ import annotations

from typing import Any

import numpy as np

SF3D_SIZE = (480, 640)  # (H, W) of the RGB images; depth is half that
SF3D_K = np.array([[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]])


def sf3d_record(index: int) -> dict[str, Any]:
    """A consistent synthetic record: a 60 x 40 px hull, a rotation path sampled unevenly."""
    origin = np.array([0.1 * index - 0.2, 0.05, 1.5])
    pixel = SF3D_K @ origin
    pixel = pixel[:2] / pixel[2]
    y0, x0 = 200 + 10 * index, 250
    angles = np.array([0.0, 0.05, 0.1, 0.5, 1.0])
    trajectory = origin + 0.3 * np.stack([np.sin(angles), np.zeros(5), -np.cos(angles) + 1], axis=1)
    return {
        "rgb_path": f"images/frame_{index}.jpg",
        "depth_path": f"depth/frame_{index}.png",
        "mask_coordinates_yx": [[y0, x0], [y0, x0 + 60], [y0 + 40, x0 + 60], [y0 + 40, x0]],
        "description": f"Open the door number {index}.",
        "motion_type": "rot" if index % 2 else "trans",
        "motion_dir_camera_coords": [0.0, 2.0, 0.0],
        "motion_origin_camera_coords": origin.tolist(),
        "motion_origin_pixel": pixel.tolist(),
        "intrinsics": SF3D_K.tolist(),
        "extrinsics": np.eye(4).tolist(),
        "image_size": list(SF3D_SIZE),
        "trajectory_3d_camera_coords": trajectory.tolist(),
        **({"interaction_pixel": [300.0, 220.0], "interaction_point_camera_coords": [0.1, -0.03, 1.4]}
           if index == 0 else {}),
    }
