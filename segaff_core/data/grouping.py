"""Image-grouped training batches: several instructions of one image share its image encoding.

A scene image carries several annotated parts, each with its own instruction. Batching a few images with
several of their instructions each lets the model run the image side (CLIP image encoder, depth encoder)
once per image (``SegAffordanceModel.forward(..., image_index=...)``), and puts instructions that differ
only in the part they name side by side in one step.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from segaff_core.data.common import ImageGroup


class ImageGroupedBatchSampler(Sampler[list[ImageGroup]]):
    """Shuffled batches of ``batch_size // per_image`` images, each with up to ``per_image`` of its samples.

    An epoch visits every image once and draws that many of its samples at random (all of them when it
    has fewer). Each :class:`ImageGroup` carries a fresh seed, so its samples are augmented alike. The
    order comes from torch's global generator (``seed_everything`` makes it reproducible).
    """

    def __init__(self, image_keys: Sequence[str], batch_size: int, per_image: int) -> None:
        if per_image < 1 or batch_size < per_image:
            raise ValueError(f"need 1 <= per_image <= batch_size, got per_image {per_image}, batch_size {batch_size}")
        by_image: dict[str, list[int]] = {}
        for index, key in enumerate(image_keys):
            by_image.setdefault(key, []).append(index)
        self.images = [np.asarray(indices) for indices in by_image.values()]
        self.per_image = per_image
        self.images_per_batch = batch_size // per_image

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.images_per_batch)

    def __iter__(self) -> Iterator[list[ImageGroup]]:
        rng = np.random.default_rng(int(torch.randint(2**62, ())))
        order = rng.permutation(len(self.images))
        for start in range(0, len(order), self.images_per_batch):
            batch = []
            for image in order[start : start + self.images_per_batch]:
                indices = self.images[image]
                chosen = rng.choice(indices, min(self.per_image, len(indices)), replace=False)
                batch.append(ImageGroup(tuple(int(i) for i in chosen), int(rng.integers(2**31))))
            yield batch
