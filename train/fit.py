"""Train, validate, test or predict SegAffordance with LightningCLI.

    python train/fit.py {fit,validate,test,predict} --config config/<name>.yaml [--key value ...]

One LightningModule for every data set; the data module (``segaff_core.data.OPDDataModule`` or
``SF3DDataModule``) is chosen by ``data.class_path`` in the config. Besides the Trainer, the Module and
the data, the CLI has two always-on callbacks configured under their own keys: ``checkpoint``
(ModelCheckpoint: ``last.ckpt`` every epoch plus the best ``val/mIoU``) and ``lr_monitor``. Checkpoints
go to ``<trainer.default_root_dir>/checkpoints`` (a fixed folder, so ``--ckpt_path last`` resumes the
newest ``last*.ckpt`` there) and are written atomically (:class:`segaff_core.callbacks.AtomicCheckpointIO`).
TensorBoard logs go to ``<trainer.default_root_dir>/lightning_logs/version_N`` (Lightning's default
logger), together with the resolved ``config.yaml`` and the test reports.
"""
from __future__ import annotations

import logging
import os
from typing import Optional

from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from segaff_core.lightning_module import SegAffordanceModule

DEFAULT_ROOT_DIR = "runs/segaff"


def checkpoint_dir(default_root_dir: Optional[str]) -> str:
    """The checkpoint folder of a run: ``<default_root_dir>/checkpoints`` (the Trainer's: cwd when None)."""
    return os.path.join(default_root_dir or os.getcwd(), "checkpoints")


class SegAffordanceCLI(LightningCLI):
    """LightningCLI with the checkpoint and learning-rate callbacks configurable from YAML."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults(
            {
                "trainer.default_root_dir": DEFAULT_ROOT_DIR,
                "checkpoint.save_last": True,
                "checkpoint.monitor": "val/mIoU",
                "checkpoint.mode": "max",
                "checkpoint.filename": "best-{epoch:03d}",
                "lr_monitor.logging_interval": "epoch",
            }
        )
        parser.link_arguments("trainer.default_root_dir", "checkpoint.dirpath", compute_fn=checkpoint_dir)


def main(args: Optional[list[str]] = None) -> SegAffordanceCLI:
    """Run the CLI on ``args`` (default: ``sys.argv``)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return SegAffordanceCLI(
        SegAffordanceModule,
        LightningDataModule,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"plugins": [{"class_path": "segaff_core.callbacks.AtomicCheckpointIO"}]},
        args=args,
    )


if __name__ == "__main__":
    main()
