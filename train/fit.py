"""Train, validate, test or predict SegAffordance with LightningCLI.

    python train/fit.py {fit,validate,test,predict} --config config/<name>.yaml [--key value ...]
    python train/fit.py fit --config config/<name>.yaml --ckpt_path last    # resume the newest last.ckpt

One LightningModule for every data set; the data module (``segaff_core.data.OPDDataModule`` or
``SF3DDataModule``) is chosen by ``data.class_path`` in the config. Besides ``trainer``, ``model`` and
``data`` the CLI has two always-on ModelCheckpoint callbacks, each configurable under its own key:

- ``checkpoint``: the best ``val/mIoU`` (``best-epoch=NNN.ckpt``);
- ``last_checkpoint``: ``last.ckpt`` after every epoch. It is a second callback because since
  Lightning 2.6 ``save_last=True`` writes ``last.ckpt`` only when a top-k checkpoint is saved in the same
  step, i.e. only when the monitored metric improves.

A native crash prints every thread's Python traceback (:class:`segaff_core.callbacks.CrashTracebacks`).
``predict`` also writes what it predicts (:class:`segaff_core.callbacks.PredictionWriter`, key
``prediction_writer``): ``<trainer.default_root_dir>/predictions/predictions.jsonl`` and ``masks/``.

Both checkpoint callbacks write to ``<trainer.default_root_dir>/checkpoints`` (a fixed folder, so ``--ckpt_path last`` finds
the newest ``last*.ckpt`` of the run), atomically (:class:`segaff_core.callbacks.AtomicCheckpointIO`, the
default ``trainer.plugins``: a ``--trainer.plugins`` list replaces it). Other callbacks, such as the
LearningRateMonitor of the training configs, are ``trainer.callbacks``. TensorBoard logs, the resolved
``config.yaml`` and the validate/test reports go to ``<trainer.default_root_dir>/lightning_logs/version_N``
(Lightning's default logger).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from segaff_core.callbacks import CrashTracebacks, PredictionWriter
from segaff_core.checkpoint import predated_model_params, read_checkpoint
from segaff_core.crash_reports import enable_crash_tracebacks
from segaff_core.lightning_module import SegAffordanceModule

DEFAULT_ROOT_DIR = "runs/segaff"


def checkpoint_dir(default_root_dir: Optional[str]) -> str:
    """The checkpoint folder of a run: ``<default_root_dir>/checkpoints`` (the Trainer's: cwd when None)."""
    return os.path.join(default_root_dir or os.getcwd(), "checkpoints")


class SegAffordanceCLI(LightningCLI):
    """LightningCLI with the best and last checkpoint callbacks, configurable from YAML."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.add_lightning_class_args(PredictionWriter, "prediction_writer")  # acts in predict only
        parser.add_lightning_class_args(CrashTracebacks, "crash_tracebacks")  # no options: always on
        parser.set_defaults(
            {
                "trainer.default_root_dir": DEFAULT_ROOT_DIR,
                "checkpoint.monitor": "val/mIoU",
                "checkpoint.mode": "max",
                "checkpoint.filename": "best-{epoch:03d}",
                "last_checkpoint.filename": ModelCheckpoint.CHECKPOINT_NAME_LAST,  # monitor None: every epoch
            }
        )
        for key in ("checkpoint.dirpath", "last_checkpoint.dirpath"):
            parser.link_arguments("trainer.default_root_dir", key, compute_fn=checkpoint_dir)

    def before_instantiate_classes(self) -> None:
        """A ``ckpt_path`` file rebuilds the model it was trained as: LightningCLI fills the model's
        arguments from its hyperparameters, and a ModelParams field it predates takes its older value
        (:data:`segaff_core.checkpoint.FIELDS_OF_OLDER_CHECKPOINTS`), not today's default."""
        subcommand = self.config.get("subcommand")
        if subcommand is None:
            return
        config = self.config[subcommand]
        ckpt_path = config.get("ckpt_path")
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        for name, value in predated_model_params(read_checkpoint(ckpt_path), f"ckpt_path {ckpt_path}").items():
            setattr(config.model.model_params, name, value)


def main(args: Optional[list[str]] = None) -> SegAffordanceCLI:
    """Run the CLI on ``args`` (default: ``sys.argv``)."""
    enable_crash_tracebacks()
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("segaff_core").setLevel(logging.INFO)
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
