"""Image-grouped training batches: the sampler, alike augmentation, the collated layout, the model's
per-image forward, the data module and a fit through train/fit.py."""
from __future__ import annotations

import collections
import dataclasses
import math
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import lightning as L
import pytest
import torch

from segaff_core.config import ModelParams
from segaff_core.data import SF3DDataModule, SF3DDataset, collate_samples, sf3d
from segaff_core.data.common import GroupedSamples, ImageGroup
from segaff_core.data.grouping import ImageGroupedBatchSampler
from segaff_core.lightning_module import SegAffordanceModule
from segaff_core.model import build_model
from segaff_core.synth import generate_dataset

KEYS = ["a", "b", "a", "c", "b", "a", "a", "d", "c", "a"]  # a: 5 samples, b: 2, c: 2, d: 1


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("grouped") / "sf3d"
    generate_dataset("sf3d", root, num_images=12, seed=1, image_size=(64, 64), views_per_scene=2)
    return root


def _epoch(sampler: ImageGroupedBatchSampler) -> list[list[ImageGroup]]:
    return list(iter(sampler))


def test_sampler_takes_every_image_once_with_up_to_k_of_its_samples() -> None:
    torch.manual_seed(0)
    sampler = ImageGroupedBatchSampler(KEYS, batch_size=6, per_image=3)
    batches = _epoch(sampler)
    assert len(batches) == len(sampler) == 2  # 4 images, 2 per batch
    groups = [group for batch in batches for group in batch]
    assert all(len(batch) <= 2 for batch in batches)
    images = [{KEYS[i] for i in group.indices} for group in groups]
    assert all(len(image) == 1 for image in images)  # a group is one image
    assert sorted(image.pop() for image in images) == ["a", "b", "c", "d"]  # each image once
    sizes = {KEYS[group.indices[0]]: len(set(group.indices)) for group in groups}
    assert sizes == {"a": 3, "b": 2, "c": 2, "d": 1}
    assert len({group.seed for group in groups}) == len(groups)
    orders = {tuple(tuple(g.indices) for b in _epoch(sampler) for g in b) for _ in range(8)}
    assert len(orders) > 1  # epochs reshuffle (images and the samples drawn)
    drawn = collections.Counter(i for _ in range(40) for b in _epoch(sampler) for g in b for i in g.indices)
    assert set(drawn) == set(range(len(KEYS)))  # over epochs every sample of a large image is used


def test_sampler_is_reproducible_from_the_global_seed() -> None:
    sampler = ImageGroupedBatchSampler(KEYS, batch_size=4, per_image=2)
    torch.manual_seed(3)
    first = _epoch(sampler)
    torch.manual_seed(3)
    assert _epoch(sampler) == first


@pytest.mark.parametrize("batch_size,per_image", [(4, 0), (2, 3)])
def test_sampler_refuses_impossible_groups(batch_size: int, per_image: int) -> None:
    with pytest.raises(ValueError, match="per_image"):
        ImageGroupedBatchSampler(KEYS, batch_size, per_image)


def test_a_group_is_augmented_alike_and_collates_once_per_image(synthetic_root: Path) -> None:
    dataset = SF3DDataset(synthetic_root, "train", input_size=(64, 64), augment=True)
    keys = dataset.image_keys()
    by_image = collections.defaultdict(list)
    for index, key in enumerate(keys):
        by_image[key].append(index)
    first, second = [indices for indices in by_image.values() if len(indices) >= 2][:2]
    images_by_seed = []
    for seed in range(6):
        group = dataset[ImageGroup(tuple(first), seed)]
        assert isinstance(group, GroupedSamples) and len(group.samples) == len(first)
        for sample in group.samples[1:]:  # one mirroring and one colour jitter for the whole group
            assert torch.equal(sample["image"], group.samples[0]["image"])
            assert torch.equal(sample["depth"], group.samples[0]["depth"])
        assert not torch.equal(group.samples[0]["mask"], group.samples[1]["mask"])  # different parts
        images_by_seed.append(group.samples[0]["image"])
    assert any(not torch.equal(images_by_seed[0], image) for image in images_by_seed[1:])  # seeds differ

    items = [dataset[ImageGroup(tuple(first), 0)], dataset[ImageGroup(tuple(second[:1]), 1)]]
    batch = collate_samples(items)
    assert batch["image"].shape == (2, 3, 64, 64) and batch["depth"].shape == (2, 1, 64, 64)
    assert batch["image_index"].tolist() == [0] * len(first) + [1]
    assert batch["mask"].shape[0] == batch["text"].shape[0] == len(batch["description"]) == len(first) + 1
    assert torch.equal(batch["image"][1], items[1].samples[0]["image"])
    # A bad sample is dropped from its group; a group with none left drops its image.
    items[0].samples[0] = None
    items.append(GroupedSamples([None]))
    batch = collate_samples(items)
    assert batch["image"].shape[0] == 2 and batch["image_index"].tolist() == [0] * (len(first) - 1) + [1]
    assert collate_samples([GroupedSamples([None])]) is None
    assert "image_index" not in collate_samples([dataset[first[0]], dataset[first[1]]])


def test_a_group_decodes_its_image_once(synthetic_root: Path) -> None:
    dataset = SF3DDataset(synthetic_root, "train", input_size=(64, 64), augment=True)
    keys = dataset.image_keys()
    shared = max(set(keys), key=keys.count)  # an image with several parts
    indices = [i for i, key in enumerate(keys) if key == shared]
    other = next(i for i, key in enumerate(keys) if key != shared)
    with mock.patch("segaff_core.data.sf3d.read_rgb", wraps=sf3d.read_rgb) as read_rgb:
        group = dataset[ImageGroup(tuple(indices), 0)]
        assert read_rgb.call_count == 1 and len(group.samples) == len(indices) >= 2
        dataset[other]
        dataset[indices[0]]
        assert read_rgb.call_count == 3  # by default only the last image is kept
    for rgb, depth in dataset._images.values():
        assert not rgb.flags.writeable and not depth.flags.writeable  # nothing downstream can change it


@pytest.mark.parametrize("cached_images", [0, 2])
def test_the_image_cache_keeps_the_most_recently_used_images(synthetic_root: Path, cached_images: int) -> None:
    dataset = SF3DDataset(synthetic_root, "train", input_size=(64, 64), cached_images=cached_images)
    keys = dataset.image_keys()
    first = {key: keys.index(key) for key in keys}  # one sample of each image
    a, b, c = list(first.values())[:3]
    with mock.patch("segaff_core.data.sf3d.read_rgb", wraps=sf3d.read_rgb) as read_rgb:
        reference = dataset[a]
        for index in (b, a, c, a, b):  # with 2 kept: a, b decoded; a hit; c evicts b; a hit; b evicts c
            dataset[index]
        assert read_rgb.call_count == (4 if cached_images == 2 else 6)
        again = dataset[a]
    for key in reference:  # a cached image gives the sample a fresh decode gives
        assert torch.equal(reference[key], again[key]) if isinstance(again[key], torch.Tensor) \
            else reference[key] == again[key]
    assert len(dataset._images) == cached_images
    with pytest.raises(ValueError, match="cached_images must be >= 0"):
        SF3DDataset(synthetic_root, "train", cached_images=-1)
    module = SF3DDataModule(str(synthetic_root), input_size=(64, 64), num_workers=0, cached_images=cached_images)
    module.setup("fit")
    assert all(module.datasets[split].cached_images == cached_images for split in ("train", "val"))


def test_grouped_forward_equals_the_forward_of_repeated_images() -> None:
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(ModelParams.small(), use_cvae=False)).eval()
    images, depths = torch.randn(2, 3, 64, 64), torch.rand(2, 1, 64, 64) * 3.0
    index = torch.tensor([0, 0, 1, 0, 1])
    text = torch.randint(1, 400, (5, 8))
    with torch.inference_mode():
        grouped = model(images, depths, text, image_index=index)
        repeated = model(images[index], depths[index], text)
    assert set(grouped) == set(repeated)
    for key in grouped:
        torch.testing.assert_close(grouped[key], repeated[key], atol=1e-5, rtol=1e-5)


def test_data_module_groups_training_batches_only(synthetic_root: Path) -> None:
    module = SF3DDataModule(
        str(synthetic_root), input_size=(64, 64), batch_size=4, num_workers=0, pin_memory=False,
        instructions_per_image=2,
    )
    module.setup("fit")
    train = next(iter(module.train_dataloader()))
    assert train["image"].shape[0] == 2 and len(train["image_index"]) == len(train["text"]) <= 4
    val = next(iter(module.val_dataloader()))
    assert "image_index" not in val and val["image"].shape[0] == len(val["text"])
    module.trainer = SimpleNamespace(world_size=2)
    with pytest.raises(ValueError, match="one device only"):
        module.train_dataloader()
    with pytest.raises(ValueError, match="instructions_per_image must be between 1 and batch_size 4, got 5"):
        SF3DDataModule(str(synthetic_root), batch_size=4, instructions_per_image=5)


def test_fit_with_grouped_batches_runs_the_image_side_once_per_image(synthetic_root: Path, tmp_path: Path) -> None:
    module = SegAffordanceModule(model_params=dataclasses.replace(ModelParams.small(), use_cvae=False))
    data = SF3DDataModule(
        str(synthetic_root), input_size=(64, 64), batch_size=4, num_workers=0, pin_memory=False,
        instructions_per_image=2,
    )
    rows = []
    module.model.backbone.visual.layer1.register_forward_hook(lambda m, args, out: rows.append(len(out)))
    trainer = L.Trainer(
        accelerator="cpu", max_steps=3, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=data)
    assert trainer.global_step == 3 and rows == [2, 2, 2]  # 2 images for up to 4 samples a step
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))
