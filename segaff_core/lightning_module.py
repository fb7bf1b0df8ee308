"""SegAffordanceModule: training, validation, test and prediction of SegAffordance on every data set.

Checkpoints hold ``state_dict`` under ``model.`` and plain-dict ``hyper_parameters`` (``model_params``,
``loss_params``, ``optim``, ``freeze``, ``log_images``), so ``torch.load(weights_only=True)`` reads them and
:func:`segaff_core.checkpoint.load_model` rebuilds the network. The stored ``model_params.clip_pretrain``
is None (the CLIP weights are in ``state_dict``; the run's ``config.yaml`` names the file it started from).
``test_params`` and ``init_checkpoint`` are not stored: LightningCLI puts a checkpoint's hyper-parameters
over the config (``--ckpt_path FILE``), and a test config's thresholds must win, and a finished run must
not need the file it was initialised from.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, TypeVar

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor

from segaff_core.checkpoint import CheckpointError, model_state_dict, read_checkpoint
from segaff_core.config import LossParams, ModelParams, OptimParams, TestParams
from segaff_core.distributed import gather_unique
from segaff_core.inference import MOTION_TYPES, AffordancePrediction, prediction_from_outputs
from segaff_core.losses import compute_losses
from segaff_core.metrics import MetricAccumulator, write_report
from segaff_core.model import build_model
from segaff_core.visualize import draw_sample

log = logging.getLogger(__name__)

MAX_NONFINITE_STEPS = 3
"""Consecutive training steps with a NaN/inf loss after which the run stops."""

REPORT_NAMES = {"validate": "val_metrics", "test": "test_metrics"}
"""Reports of ``validate`` and ``test`` runs: ``<log_dir>/<name>.json`` and ``<log_dir>/<name>.md``."""

_TARGET_KEYS = ("mask", "axis", "motion_type")  # ground truth the model sees in training (mask pooling, CVAE)

ParamsT = TypeVar("ParamsT")


def as_params(cls: type[ParamsT], value: Any) -> ParamsT:
    """``value`` as the dataclass ``cls``: the instance itself, or built from a mapping (a checkpoint's)."""
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        return cls(**value)
    raise TypeError(f"expected {cls.__name__} or a mapping of its fields, got {type(value).__name__}")


def fused_adamw_fits(parameters: Sequence[Tensor], precision: str) -> bool:
    """Whether AdamW can run fused (one kernel over all parameters; ~8% of a small-model CPU step saved):
    the parameters are on the CPU or CUDA, and Lightning's ``precision`` is not mixed (its MixedPrecision
    plugin refuses gradient clipping with an optimizer that may unscale gradients inside its step)."""
    return not precision.endswith("-mixed") and all(p.device.type in ("cpu", "cuda") for p in parameters)


class SegAffordanceModule(L.LightningModule):
    """SegAffordance in Lightning: losses from :func:`compute_losses`, metrics from :class:`MetricAccumulator`.

    Args:
        model_params: architecture (a mapping of its fields is accepted too: checkpoints store dicts).
        loss_params: loss weights.
        test_params: evaluation thresholds (validation and test metrics).
        optim: AdamW and MultiStepLR settings; the CLIP backbone learns at ``lr * backbone_lr_multiplier``.
        freeze: model parts that do not train (e.g. ``[backbone, depth_encoder, neck]``), see
            :data:`segaff_core.model.FREEZABLE_PARTS`.
        init_checkpoint: a SegAffordance checkpoint whose network weights initialise this one (all names
            and shapes must match), read with weights-only loading; e.g. an OPDReal run for OPDMulti.
        log_images: validation samples drawn (ground truth | prediction) to the logger each epoch, when the
            logger can show images (TensorBoard); 0 = none.
        channels_last: convolutions in the channels-last memory format (oneDNN on the CPU: a small-model
            training step ~20% faster; CUDA tensor cores). The weights' values do not depend on it.
    """

    def __init__(
        self,
        model_params: ModelParams = ModelParams(),
        loss_params: LossParams = LossParams(),
        test_params: TestParams = TestParams(),
        optim: OptimParams = OptimParams(),
        freeze: Sequence[str] = (),
        init_checkpoint: Optional[str] = None,
        log_images: int = 4,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.model_params = as_params(ModelParams, model_params)
        self.loss_params = as_params(LossParams, loss_params)
        self.test_params = as_params(TestParams, test_params)
        self.optim_params = as_params(OptimParams, optim)
        self.log_images = log_images
        self.save_hyperparameters(
            {
                # The weights are in the checkpoint: rebuilding it must not need the CLIP file.
                "model_params": dataclasses.asdict(dataclasses.replace(self.model_params, clip_pretrain=None)),
                "loss_params": dataclasses.asdict(self.loss_params),
                "optim": dataclasses.asdict(self.optim_params),
                "freeze": list(freeze),
                "log_images": log_images,
            }
        )
        self.model = build_model(self.model_params)
        if init_checkpoint is not None:
            self._load_init_checkpoint(init_checkpoint)
        self.model.freeze(freeze)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        self.nonfinite_steps = 0  # training steps skipped for a NaN/inf loss, in all
        self._nonfinite_in_a_row = 0
        self.val_metrics = MetricAccumulator(self.test_params)
        self.test_metrics = MetricAccumulator(self.test_params)  # keeps the last test's per-sample results

    def _load_init_checkpoint(self, path: str) -> None:
        """Copy the network weights of the checkpoint at ``path`` into ``self.model`` (strict)."""
        weights = model_state_dict(read_checkpoint(path), f"init_checkpoint {path}")
        try:
            self.model.load_state_dict(weights, strict=True)
        except RuntimeError as error:
            raise CheckpointError(f"init_checkpoint {path} does not fit model_params: {error}") from None
        log.info("initialised the model from %s", path)

    def forward(self, batch: Mapping[str, Any], with_targets: bool = False) -> dict[str, Tensor]:
        """Model outputs for a collated batch; ``with_targets`` passes the training-time ground truth."""
        targets = {key: batch[key] for key in _TARGET_KEYS} if with_targets else None
        image = batch["image"].contiguous(memory_format=self.memory_format)
        return self.model(image, batch["depth"], batch["text"], targets, batch.get("image_index"))

    def training_step(self, batch: Optional[dict[str, Any]], batch_idx: int) -> Optional[Tensor]:
        """The weighted total loss; None (Lightning skips the update) when it is not finite or the batch empty.

        Lightning supports skipping only on one device: under DDP a rank that skips while others do not
        hangs (keep ``skip_bad`` off there; a NaN loss stops the run after ``MAX_NONFINITE_STEPS`` anyway).
        The forward pass of a skipped step has already updated the BatchNorm statistics.
        """
        if batch is None:  # every sample of the batch was skipped as bad
            return None
        outputs = self(batch, with_targets=True)
        total, terms = compute_losses(outputs, batch, self.loss_params)
        batch_size = len(batch["text"])  # samples (an image-grouped batch has fewer images)
        if not torch.isfinite(total):
            self._skip_nonfinite(terms, batch_idx)
            return None
        self._nonfinite_in_a_row = 0
        self.log("train/loss", total, prog_bar=True, batch_size=batch_size)
        self.log_dict({f"train/{name}": value for name, value in terms.items()}, batch_size=batch_size)
        return total

    def _skip_nonfinite(self, terms: Mapping[str, Tensor], batch_idx: int) -> None:
        """Count a NaN/inf loss; raise FloatingPointError after ``MAX_NONFINITE_STEPS`` in a row."""
        self.nonfinite_steps += 1
        self._nonfinite_in_a_row += 1
        bad = ", ".join(name for name, value in terms.items() if not torch.isfinite(value).all()) or "total"
        log.warning(
            "non-finite loss (%s) at epoch %d, batch %d, global step %d: step skipped (%d in a row, %d in all)",
            bad, self.current_epoch, batch_idx, self.global_step, self._nonfinite_in_a_row, self.nonfinite_steps,
        )
        self.log("train/nonfinite_steps", float(self.nonfinite_steps), reduce_fx="max")
        if self._nonfinite_in_a_row >= MAX_NONFINITE_STEPS:
            raise FloatingPointError(
                f"the training loss was NaN/inf for {self._nonfinite_in_a_row} steps in a row (terms: {bad}; "
                f"epoch {self.current_epoch}, batch {batch_idx}); stopping. Lower optim.lr, use 32-bit or "
                f"bf16 precision, set trainer.gradient_clip_val, or check the data (skip_bad)."
            )

    def _evaluate(self, batch: dict[str, Any], accumulator: MetricAccumulator) -> dict[str, Tensor]:
        """Outputs for ``batch`` (no targets: predicted mask, CVAE prior mean) added to ``accumulator``."""
        outputs = self(batch)
        predictions = self._postprocess(outputs, batch)
        accumulator.update(
            pred_mask=np.stack([p.mask for p in predictions]),
            gt_mask=batch["mask"],
            pred_motion_type=[MOTION_TYPES.index(p.motion_type) for p in predictions],
            gt_motion_type=batch["motion_type"],
            pred_axis=np.stack([p.axis for p in predictions]),
            gt_axis=batch["axis"],
            pred_point=outputs["point_xy"],
            gt_point=batch["point"],
            pred_origin=np.stack([p.origin for p in predictions]),
            gt_origin=batch["origin"],
            diameter=batch["diameter"],
            pred_trajectory=np.stack([p.trajectory for p in predictions]),
            pred_learned_trajectory=np.stack([p.learned_trajectory for p in predictions]),
            pred_extent=[p.opening_extent for p in predictions],
            gt_trajectory=batch["point_3d"][:, None, :] + batch["trajectory"],  # the data sets' are relative
            has_trajectory=batch["has_trajectory"],
            sample_index=batch.get("index"),
        )
        return outputs

    def _postprocess(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any]) -> list[AffordancePrediction]:
        """Per-sample predictions at the input size, lifted to 3D with the sample's depth and K (as Predictor)."""
        size = tuple(batch["image"].shape[-2:])
        depths = batch["depth"][:, 0].float().cpu().numpy()
        intrinsics = batch["K"].double().cpu().numpy()
        return [
            prediction_from_outputs(
                outputs, size, depths[i], intrinsics[i], i, self.test_params.test_pred_threshold,
                surface_axis=self.test_params.surface_axis, hinge_origin=self.test_params.hinge_origin,
            )
            for i in range(len(depths))
        ]

    def validation_step(self, batch: Optional[dict[str, Any]], batch_idx: int) -> None:
        """Log the loss terms (val/<name>) and collect metrics; draw the first batch's samples."""
        if batch is None:
            return
        outputs = self._evaluate(batch, self.val_metrics)
        total, terms = compute_losses(outputs, batch, self.loss_params)
        batch_size = len(batch["image"])
        self.log("val/loss", total, prog_bar=True, batch_size=batch_size, sync_dist=True)
        self.log_dict(
            {f"val/{name}": value for name, value in terms.items()}, batch_size=batch_size, sync_dist=True
        )
        if batch_idx == 0:
            self._log_images(batch, outputs)

    def _log_images(self, batch: Mapping[str, Any], outputs: Mapping[str, Tensor]) -> None:
        """Ground truth | prediction of the first ``log_images`` samples, for loggers with ``add_image``."""
        if self.log_images <= 0 or self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        experiment = getattr(self.logger, "experiment", None)
        if not hasattr(experiment, "add_image"):  # e.g. CSVLogger
            return
        for index in range(min(self.log_images, len(batch["image"]))):
            image = draw_sample(batch, outputs, index, self.test_params.test_pred_threshold)
            experiment.add_image(f"val/sample_{index}", image, self.global_step, dataformats="HWC")

    def on_validation_epoch_end(self) -> None:
        """Log the aggregate metrics (val/<name>) over every rank's samples, each once; a ``validate`` run
        also writes the report."""
        self._gather_results(self.val_metrics)
        if not self.val_metrics.results:  # every batch was skipped
            return
        metrics = self.val_metrics.compute()
        self.val_metrics.reset()
        # Every rank computed the same values from the same samples: their mean is each one.
        self.log_dict({f"val/{name}": float(value) for name, value in metrics.items()}, sync_dist=True)
        if self.trainer.state.fn == TrainerFn.VALIDATING:
            self._write_report(metrics)

    def test_step(self, batch: Optional[dict[str, Any]], batch_idx: int) -> None:
        """Collect the per-sample metrics of the batch."""
        if batch is not None:
            self._evaluate(batch, self.test_metrics)

    def on_test_epoch_start(self) -> None:
        self.test_metrics.reset()

    def on_test_epoch_end(self) -> None:
        """Log the aggregate metrics (test/<name>) over every rank's samples, each once, and write the JSON
        and Markdown report to the log dir; ``test_metrics.results`` keeps them, in data set order."""
        self._gather_results(self.test_metrics)
        metrics = self.test_metrics.compute()
        self.log_dict({f"test/{name}": float(value) for name, value in metrics.items()}, sync_dist=True)
        self._write_report(metrics)

    @staticmethod
    def _gather_results(accumulator: MetricAccumulator) -> None:
        """Replace ``accumulator``'s results with every rank's, one per sample (a collective under DDP)."""
        accumulator.results[:] = gather_unique(accumulator.results, lambda result: result.sample_index)

    def _write_report(self, metrics: dict[str, float]) -> None:
        """``<name>.json`` and ``<name>.md`` in the logger's log dir (else the trainer's default_root_dir),
        written by rank 0. Every rank asks for the log dir: under DDP that is a collective."""
        out_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        if self.trainer.is_global_zero:
            name = REPORT_NAMES[self.trainer.state.fn.value]
            write_report(metrics, out_dir / f"{name}.json", out_dir / f"{name}.md")

    def predict_step(self, batch: Optional[dict[str, Any]], batch_idx: int) -> Optional[dict[str, Any]]:
        """Per-sample :class:`AffordancePrediction`\\ s (input size) with their ``image_id`` and ``description``."""
        if batch is None:
            return None
        predictions = self._postprocess(self(batch), batch)
        return {"image_id": batch["image_id"], "description": batch["description"],
                "index": batch["index"].tolist(), "predictions": predictions}

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW on the trainable parameters (backbone at ``lr * backbone_lr_multiplier``) and the schedule of
        :class:`~segaff_core.config.OptimParams`: MultiStepLR by epoch, or warm-up + cosine by step."""
        optim = self.optim_params
        backbone, heads = [], []
        for name, parameter in self.model.named_parameters():
            if parameter.requires_grad:
                (backbone if name.startswith("backbone.") else heads).append(parameter)
        groups = [
            {"name": "heads", "params": heads, "lr": optim.lr},
            {"name": "backbone", "params": backbone, "lr": optim.lr * optim.backbone_lr_multiplier},
        ]
        optimizer = torch.optim.AdamW(
            [group for group in groups if group["params"]], lr=optim.lr, weight_decay=optim.weight_decay,
            fused=fused_adamw_fits(backbone + heads, str(getattr(self._trainer, "precision", "32-true"))),
        )
        if optim.schedule == "multistep":
            scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(optim.milestones), optim.gamma)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
        self.training_progress()  # fails now, not at the first step, when the run has no budget
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: self._cosine_factor())
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def training_progress(self) -> float:
        """Fraction of the run's budget used, in [0, 1]: steps against ``max_steps`` (or ``max_epochs`` in
        steps), time against ``max_time``, whichever is further. ValueError when the run has no budget."""
        trainer = self.trainer
        fractions = []
        total_steps = trainer.estimated_stepping_batches
        if math.isfinite(total_steps) and total_steps > 0:
            fractions.append(trainer.global_step / total_steps)
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        remaining_s = timer.time_remaining("train") if timer is not None else None
        if remaining_s is not None:
            elapsed_s = timer.time_elapsed("train")
            fractions.append(elapsed_s / max(elapsed_s + remaining_s, 1e-9))
        if not fractions:
            raise ValueError(
                "optim.schedule 'cosine' needs a budget: set trainer.max_steps, trainer.max_epochs or trainer.max_time"
            )
        return min(max(fractions), 1.0)

    def _cosine_factor(self) -> float:
        """The learning-rate factor of the warm-up + cosine schedule at the current step."""
        optim = self.optim_params
        cosine = 0.5 * (1.0 + math.cos(math.pi * self.training_progress()))
        warmup = min(1.0, (self.trainer.global_step + 1) / optim.warmup_steps) if optim.warmup_steps else 1.0
        return warmup * (optim.min_lr_ratio + (1.0 - optim.min_lr_ratio) * cosine)
