"""LightningDataModules of the OPD and SceneFun3D readers (plain-typed arguments for LightningCLI).

With ``skip_bad`` a bad sample is dropped from its batch (:func:`collate_samples`); the module adds a
:class:`SkippedSamplesReport` callback to its trainer, which logs after every epoch how many samples
each stage skipped and which.
"""
from __future__ import annotations

import logging
from typing import Any, Optional

import lightning as L
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader

from segaff_core.data.common import AffordanceDataset, collate_samples
from segaff_core.data.grouping import ImageGroupedBatchSampler
from segaff_core.data.opd import OPDDataset
from segaff_core.data.sf3d import SF3DDataset

log = logging.getLogger(__name__)

_REPORTED_NAMES = 5


class SkippedSamplesReport(Callback):
    """At the end of every epoch, has the trainer's :class:`AffordanceDataModule` report skipped samples."""

    def _report(self, trainer: L.Trainer, stage: str) -> None:
        if isinstance(trainer.datamodule, AffordanceDataModule):
            trainer.datamodule.report_skipped(stage)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer, "train")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer, "val")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer, "test")

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer, "predict")


class AffordanceDataModule(L.LightningDataModule):
    """Data loaders over the train / val / test splits of one data set; subclasses make the datasets.

    ``predict`` uses the test split. ``augment`` turns on colour jitter and left-right mirroring (half the
    samples, instruction included) for the training split only. ``instructions_per_image`` > 1 makes
    training batches of ``batch_size // instructions_per_image`` images with up to that many of their
    samples each, the image side computed once per image (:mod:`segaff_core.data.grouping`; one device
    only); 1 shuffles samples independently. Evaluation batches are never grouped.
    """

    def __init__(
        self,
        input_size: tuple[int, int],
        batch_size: int,
        num_workers: int,
        splits: dict[str, Optional[str]],
        skip_bad: bool,
        pin_memory: bool,
        persistent_workers: bool,
        augment: bool,
        instructions_per_image: int,
    ) -> None:
        super().__init__()
        if not 1 <= instructions_per_image <= batch_size:
            raise ValueError(
                f"instructions_per_image must be between 1 and batch_size {batch_size}, got {instructions_per_image}"
            )
        self.instructions_per_image = instructions_per_image
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.splits = splits
        self.skip_bad = skip_bad
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.augment = augment
        self.datasets: dict[str, AffordanceDataset] = {}

    def make_dataset(self, split: Optional[str], augment: bool) -> AffordanceDataset:
        """The dataset of ``split``."""
        raise NotImplementedError

    def setup(self, stage: str) -> None:
        """Create the datasets that ``stage`` (fit, validate, test, predict) needs, once."""
        names = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}[stage]
        for name in names:
            if name not in self.datasets:
                split = self.splits["test" if name == "predict" else name]
                self.datasets[name] = self.make_dataset(split, augment=self.augment and name == "train")
        if self.trainer is not None and not any(isinstance(c, SkippedSamplesReport) for c in self.trainer.callbacks):
            self.trainer.callbacks.insert(0, SkippedSamplesReport())  # model checkpoints stay last

    def _loader(self, name: str, **batching: Any) -> DataLoader:
        """The loader of dataset ``name``; ``batching``: DataLoader's batching arguments (default
        ``batch_size``, shuffled for training)."""
        batching = batching or {"batch_size": self.batch_size, "shuffle": name == "train"}
        return DataLoader(
            self.datasets[name],
            **batching,
            num_workers=self.num_workers,
            collate_fn=collate_samples,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
        )

    def train_dataloader(self) -> DataLoader:
        if self.instructions_per_image == 1:
            return self._loader("train")
        if self.trainer is not None and self.trainer.world_size > 1:
            raise ValueError(
                "instructions_per_image > 1 batches by image on one device only; set it to 1 for "
                f"{self.trainer.world_size} devices"
            )
        keys = self.datasets["train"].image_keys()
        return self._loader(
            "train", batch_sampler=ImageGroupedBatchSampler(keys, self.batch_size, self.instructions_per_image)
        )

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")

    def report_skipped(self, name: str) -> int:
        """Log (WARNING) and reset how many samples of dataset ``name`` were skipped; the count."""
        dataset = self.datasets.get(name)
        skipped = dataset.skipped.take() if dataset is not None else []
        if skipped:
            examples = "; ".join(dataset.describe(i) for i in skipped[:_REPORTED_NAMES])
            log.warning("%s: skipped %d bad samples this epoch (skip_bad=True), e.g. %s", name, len(skipped), examples)
        return len(skipped)


class OPDDataModule(AffordanceDataModule):
    """OPDReal or OPDMulti (:class:`OPDDataset`) from ``root``."""

    def __init__(
        self,
        root: str,
        input_size: tuple[int, int] = (256, 256),
        batch_size: int = 32,
        num_workers: int = 4,
        train_split: str = "train",
        val_split: str = "valid",
        test_split: str = "test",
        skip_bad: bool = False,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        augment: bool = True,
        annotation_dir: str = "annotations_bwdf",
        attributes_path: Optional[str] = None,
        instructions_per_image: int = 1,
    ) -> None:
        super().__init__(
            input_size, batch_size, num_workers, {"train": train_split, "val": val_split, "test": test_split},
            skip_bad, pin_memory, persistent_workers, augment, instructions_per_image,
        )
        self.save_hyperparameters()
        self.root = root
        self.annotation_dir = annotation_dir
        self.attributes_path = attributes_path

    def make_dataset(self, split: Optional[str], augment: bool) -> OPDDataset:
        if split is None:
            raise ValueError("OPD splits are named: train, valid or test")
        return OPDDataset(
            self.root, split, self.input_size, skip_bad=self.skip_bad, annotation_dir=self.annotation_dir,
            attributes_path=self.attributes_path, augment=augment,
        )


class SF3DDataModule(AffordanceDataModule):
    """Processed SceneFun3D (:class:`SF3DDataset`) from ``root``; a split of ``None`` = every record."""

    def __init__(
        self,
        root: str,
        lmdb_path: Optional[str] = None,
        input_size: tuple[int, int] = (256, 256),
        batch_size: int = 32,
        num_workers: int = 4,
        train_split: Optional[str] = "train",
        val_split: Optional[str] = "valid",
        test_split: Optional[str] = "test",
        skip_bad: bool = False,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        augment: bool = True,
        instructions_per_image: int = 1,
        cached_images: int = 1,
    ) -> None:
        """``cached_images``: decoded images each loader process keeps per split (see :class:`SF3DDataset`)."""
        super().__init__(
            input_size, batch_size, num_workers, {"train": train_split, "val": val_split, "test": test_split},
            skip_bad, pin_memory, persistent_workers, augment, instructions_per_image,
        )
        self.save_hyperparameters()
        self.root = root
        self.lmdb_path = lmdb_path
        self.cached_images = cached_images

    def make_dataset(self, split: Optional[str], augment: bool) -> SF3DDataset:
        return SF3DDataset(
            self.root, split, self.input_size, skip_bad=self.skip_bad, lmdb_path=self.lmdb_path, augment=augment,
            cached_images=self.cached_images,
        )
