"""SegAffordanceModule and train/fit.py on a tiny synthetic SceneFun3D-format data set (64 x 64, small model)."""
from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import cv2
import lightning as L
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import segaff_core.lightning_module as lightning_module
from segaff_core.checkpoint import CheckpointError, load_model, save_checkpoint
from segaff_core.config import ModelParams, OptimParams
from segaff_core.data import SF3DDataModule, SF3DDataset, collate_samples
from segaff_core.lightning_module import MAX_NONFINITE_STEPS, SegAffordanceModule
from segaff_core.losses import compute_losses
from segaff_core.model import build_model
from segaff_core.synth import generate_dataset
from fit_script import load_fit_script

REPO = Path(__file__).resolve().parents[1]
FROZEN = ("backbone", "depth_encoder", "neck")
DATA_ARGS = {"input_size": (64, 64), "batch_size": 4, "num_workers": 0, "pin_memory": False}
CLI_DATA_ARGS = [
    "--data.init_args.input_size=[64, 64]",
    "--data.init_args.batch_size=4",
    "--data.init_args.num_workers=0",
]


fit_script = load_fit_script()


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 train, 2 valid and 2 test images (scenes split 8/1/1), a sample per part, SceneFun3D format."""
    root = tmp_path_factory.mktemp("synthetic") / "sf3d"
    generate_dataset("sf3d", root, num_images=20, seed=0, image_size=(64, 64), views_per_scene=2)
    return root


def split_size(root: Path, split: str) -> int:
    return len(SF3DDataset(root, split))


def run_cli(subcommand: str, root: Path, run_dir: Path, *extra: str) -> Any:
    """train/fit.py in this process with the synthetic configs, the tiny data and ``run_dir``."""
    config = "synthetic_train.yaml" if subcommand == "fit" else "synthetic_test.yaml"
    with mock.patch.object(sys, "argv", sys.argv[:1]):
        return fit_script.main(
            [subcommand, "--config", str(REPO / "config" / config), f"--data.init_args.root={root}",
             *CLI_DATA_ARGS, f"--trainer.default_root_dir={run_dir}", "--trainer.enable_progress_bar=false", *extra]
        )


@pytest.fixture(scope="module")
def fitted(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Two training steps and one validation batch through the CLI, as the README's command runs them."""
    run_dir = tmp_path_factory.mktemp("fit")
    yield run_cli(
        "fit", synthetic_root, run_dir, "--trainer.max_steps=2", "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=1", "--trainer.num_sanity_val_steps=0",
    )


SYNTHETIC_PARAMS = dataclasses.replace(ModelParams.small(), clip_pretrain=None, use_cvae=False)
"""The model of config/synthetic_train.yaml (the fits above): the small one with the MLP motion head."""


def small_module(**kwargs: Any) -> SegAffordanceModule:
    return SegAffordanceModule(model_params=ModelParams.small(), **kwargs)


def quiet_trainer(**kwargs: Any) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, **kwargs,
    )


def test_fit_logs_finite_named_loss_terms(fitted: Any) -> None:
    metrics = fitted.trainer.callback_metrics
    assert fitted.trainer.global_step == 2
    for name in ("loss", "mask", "point_map", "coord", "vae", "motion_type", "origin", "trajectory", "geometric"):
        assert math.isfinite(float(metrics[f"train/{name}"])), name
    assert {"val/loss", "val/mIoU", "val/P_Det"} <= set(metrics)


def test_bf16_mixed_fit_validates_with_gradient_clipping(synthetic_root: Path, tmp_path: Path) -> None:
    """bf16 mixed precision on the CPU (native bf16 where the processor has it), with the config's gradient
    clipping: the optimizer is not fused (Lightning refuses clipping then) and validation metrics come out
    of bf16 outputs."""
    cli = run_cli(
        "fit", synthetic_root, tmp_path, "--trainer.precision=bf16-mixed", "--trainer.max_steps=2",
        "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1", "--trainer.num_sanity_val_steps=0",
    )
    assert cli.trainer.global_step == 2 and not cli.trainer.optimizers[0].defaults["fused"]
    metrics = cli.trainer.callback_metrics
    assert math.isfinite(float(metrics["train/loss"])) and 0.0 <= float(metrics["val/mIoU"]) <= 1.0


def test_fit_writes_checkpoints_images_and_learning_rates(fitted: Any, synthetic_root: Path) -> None:
    checkpoint_dir = Path(fitted.trainer.default_root_dir) / "checkpoints"
    assert sorted(p.name for p in checkpoint_dir.iterdir()) == ["best-epoch=000.ckpt", "last.ckpt"]
    events = EventAccumulator(fitted.trainer.log_dir)
    events.Reload()
    drawn = min(fitted.model.log_images, DATA_ARGS["batch_size"], split_size(synthetic_root, "valid"))
    assert set(events.Tags()["images"]) == {f"val/sample_{i}" for i in range(drawn)}
    assert {"lr-AdamW/heads", "lr-AdamW/backbone", "val/mIoU"} <= set(events.Tags()["scalars"])


def test_checkpoint_hyper_parameters_are_plain_and_rebuild_the_model(fitted: Any) -> None:
    path = Path(fitted.trainer.default_root_dir) / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    stored = checkpoint["hyper_parameters"]["model_params"]
    assert type(stored) is dict
    assert ModelParams(**stored) == SYNTHETIC_PARAMS

    rebuilt = build_model(ModelParams(**stored))
    prefix = "model."
    rebuilt.load_state_dict({k[len(prefix):]: v for k, v in checkpoint["state_dict"].items()}, strict=True)
    trained = fitted.model.model.eval()
    batch = next(iter(fitted.datamodule.val_dataloader()))
    with torch.no_grad():
        expected = trained(batch["image"], batch["depth"], batch["text"])
        actual = rebuilt.eval()(batch["image"], batch["depth"], batch["text"])
        loaded, _ = load_model(path)
        via_loader = loaded(batch["image"], batch["depth"], batch["text"])
    for key in ("mask_logits", "point_xy", "axis", "trajectory"):
        torch.testing.assert_close(actual[key], expected[key])
        torch.testing.assert_close(via_loader[key], expected[key])


@pytest.mark.parametrize(
    "subcommand, split, report", [("validate", "valid", "val_metrics"), ("test", "test", "test_metrics")]
)
def test_validate_and_test_write_reports(
    fitted: Any, synthetic_root: Path, tmp_path: Path, subcommand: str, split: str, report: str
) -> None:
    last = Path(fitted.trainer.default_root_dir) / "checkpoints" / "last.ckpt"
    cli = run_cli(subcommand, synthetic_root, tmp_path, f"--ckpt_path={last}")
    log_dir = Path(cli.trainer.log_dir)
    metrics = json.loads((log_dir / f"{report}.json").read_text())
    num_samples = split_size(synthetic_root, split)
    assert metrics["num_samples"] == num_samples
    assert 0.0 <= metrics["mIoU"] <= 1.0 and 0.0 <= metrics["P_Det"] <= 1.0
    table = (log_dir / f"{report}.md").read_text()
    assert "| mIoU |" in table and f"| num_samples | {num_samples} |" in table


def test_a_checkpoint_older_than_a_model_field_is_rebuilt_as_trained(synthetic_root: Path, tmp_path: Path) -> None:
    """A CVAE checkpoint written before ``cvae_prior`` existed (the seed's N(0, I) prior, as the shipped one)
    loads through load_model and through ``fit.py test --ckpt_path`` although today's default differs."""
    params = dataclasses.replace(ModelParams.small(), cvae_prior="standard")
    path = save_checkpoint(build_model(params), params, tmp_path / "older.ckpt")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    del checkpoint["hyper_parameters"]["model_params"]["cvae_prior"]
    torch.save(checkpoint, path)

    model, loaded_params = load_model(path)
    assert loaded_params.cvae_prior == "standard" and model.motion_head.prior is None
    cli = run_cli("test", synthetic_root, tmp_path / "run", f"--ckpt_path={path}")
    assert cli.model.model_params.cvae_prior == "standard"
    assert json.loads((Path(cli.trainer.log_dir) / "test_metrics.json").read_text())["num_samples"] == split_size(
        synthetic_root, "test"
    )


def test_predict_writes_a_line_and_a_mask_per_test_sample(fitted: Any, synthetic_root: Path, tmp_path: Path) -> None:
    last = Path(fitted.trainer.default_root_dir) / "checkpoints" / "last.ckpt"
    run_cli("predict", synthetic_root, tmp_path, f"--ckpt_path={last}")
    out = tmp_path / "predictions"
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    test_set = SF3DDataset(synthetic_root, "test")
    assert len(lines) == len(test_set)
    assert [line["description"] for line in lines] == [test_set[i]["description"] for i in range(len(test_set))]
    for line in lines:
        mask = cv2.imread(str(out / line["mask_file"]), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (64, 64) and set(np.unique(mask)) <= {0, 255}
        assert line["motion_type"] in ("translation", "rotation") and len(line["trajectory"]) == 20
        assert "mask" not in line
    assert len(list((out / "masks").iterdir())) == len(lines)


def test_frozen_parts_keep_their_weights_while_the_decoder_trains(synthetic_root: Path) -> None:
    module = small_module(freeze=list(FROZEN))
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    trainer = quiet_trainer(max_steps=1)
    trainer.fit(module, datamodule=SF3DDataModule(str(synthetic_root), **DATA_ARGS))

    after = module.model.state_dict()
    frozen = [k for k in before if k.split(".")[0] in FROZEN]
    assert frozen and any("running_mean" in k for k in frozen)  # BatchNorm statistics are covered too
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    assert [group["name"] for group in trainer.optimizers[0].param_groups] == ["heads"]


def test_optimizer_groups_and_schedule() -> None:
    module = small_module(optim=OptimParams(lr=1e-3, backbone_lr_multiplier=0.1, milestones=[2, 4], gamma=0.5))
    config = module.configure_optimizers()
    groups = {group["name"]: group for group in config["optimizer"].param_groups}
    assert groups["heads"]["lr"] == pytest.approx(1e-3) and groups["backbone"]["lr"] == pytest.approx(1e-4)
    backbone_ids = {id(p) for p in module.model.backbone.parameters()}
    assert {id(p) for p in groups["backbone"]["params"]} == backbone_ids
    scheduler = config["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(5):  # epochs
        lrs.append(config["optimizer"].param_groups[0]["lr"])
        config["optimizer"].step()
        scheduler.step()
    assert lrs == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4])


class RecordLearningRate(L.Callback):
    """The heads' learning rate at the start of every training step."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_optimizer_is_fused_unless_precision_is_mixed() -> None:
    module = small_module()
    assert module.configure_optimizers()["optimizer"].defaults["fused"]  # CPU, no trainer: 32-bit
    parameters = list(module.parameters())
    assert lightning_module.fused_adamw_fits(parameters, "bf16-true")
    assert not lightning_module.fused_adamw_fits(parameters, "16-mixed")
    assert not lightning_module.fused_adamw_fits(parameters, "bf16-mixed")
    assert not lightning_module.fused_adamw_fits([torch.zeros(1, device="meta")], "32-true")


def test_channels_last_training_matches_the_contiguous_layout(synthetic_root: Path) -> None:
    """channels_last (the default) changes the memory layout of the convolutions, not the results: the
    training loss and every gradient equal those of the contiguous layout with the same weights. In float64:
    training-mode batch norms over a few pixels amplify float32 rounding of the two layouts' different
    summation orders to 1e-3 of a gradient, which would hide a real difference."""
    batch = collate_samples([SF3DDataset(synthetic_root, "train", input_size=(64, 64))[i] for i in range(4)])
    batch = {key: value.double() if torch.is_tensor(value) and value.is_floating_point() else value
             for key, value in batch.items()}
    results = []
    torch.manual_seed(0)
    for channels_last in (True, False):
        module = small_module(channels_last=channels_last).double()
        if results:
            module.load_state_dict(results[0][2])
        weight = module.model.backbone.visual.conv1.weight
        assert weight.is_contiguous(memory_format=torch.channels_last) == channels_last
        torch.manual_seed(0)  # the same dropout
        loss, _ = compute_losses(module(batch, with_targets=True), batch, module.loss_params)
        loss.backward()
        grads = {name: p.grad for name, p in module.named_parameters()}
        results.append((loss.detach(), grads, module.state_dict()))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-10, rtol=1e-10)
    scale = max(float(grad.abs().max()) for grad in results[1][1].values())  # some are 0 up to rounding
    for name, grad in results[1][1].items():
        torch.testing.assert_close(results[0][1][name], grad, atol=1e-9 * scale, rtol=1e-7, msg=name)


def test_cosine_schedule_warms_up_then_anneals_over_max_steps(synthetic_root: Path) -> None:
    optim = OptimParams(lr=1e-3, schedule="cosine", warmup_steps=2, min_lr_ratio=0.1)
    record = RecordLearningRate()
    trainer = quiet_trainer(max_steps=8, callbacks=[record])
    trainer.fit(small_module(optim=optim), datamodule=SF3DDataModule(str(synthetic_root), **DATA_ARGS))
    cosine = [1e-4 + 9e-4 * 0.5 * (1 + math.cos(math.pi * step / 8)) for step in range(8)]
    warmup = [0.5, 1.0] + [1.0] * 6
    assert record.lrs == pytest.approx([c * w for c, w in zip(cosine, warmup)])


def test_cosine_schedule_follows_the_time_budget(synthetic_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning.pytorch.callbacks import Timer

    monkeypatch.setattr(Timer, "time_elapsed", lambda self, stage=None: 45.0)  # 45 s of a 60 s budget
    monkeypatch.setattr(Timer, "time_remaining", lambda self, stage=None: 15.0)
    record = RecordLearningRate()
    trainer = quiet_trainer(max_steps=3, max_time={"minutes": 1}, callbacks=[record])
    module = small_module(optim=OptimParams(lr=1e-3, schedule="cosine", min_lr_ratio=0.0))
    trainer.fit(module, datamodule=SF3DDataModule(str(synthetic_root), **DATA_ARGS))
    # Time (0.75) is further than the steps (0, 1/3, 2/3) at every step: the schedule follows it.
    assert record.lrs == pytest.approx([1e-3 * 0.5 * (1 + math.cos(math.pi * 0.75))] * 3)


def test_cosine_schedule_without_a_budget_is_refused(synthetic_root: Path) -> None:
    trainer = quiet_trainer(max_steps=-1, max_epochs=-1)
    module = small_module(optim=OptimParams(schedule="cosine"))
    with pytest.raises(ValueError, match="needs a budget"):
        trainer.fit(module, datamodule=SF3DDataModule(str(synthetic_root), **DATA_ARGS))
    with pytest.raises(ValueError, match="schedule"):
        OptimParams(schedule="linear")


def test_init_checkpoint_loads_weights_strictly(fitted: Any, tmp_path: Path) -> None:
    path = Path(fitted.trainer.default_root_dir) / "checkpoints" / "last.ckpt"
    saved = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    module = SegAffordanceModule(model_params=SYNTHETIC_PARAMS, init_checkpoint=str(path))
    assert all(torch.equal(value, saved[f"model.{key}"]) for key, value in module.model.state_dict().items())
    assert "init_checkpoint" not in module.hparams

    other = dataclasses.replace(SYNTHETIC_PARAMS, use_depth=False)
    with pytest.raises(CheckpointError, match="init_checkpoint"):
        SegAffordanceModule(model_params=other, init_checkpoint=str(path))


def _nonfinite_losses(monkeypatch: pytest.MonkeyPatch, pattern: list[bool]) -> None:
    """Make the training loss NaN at the steps where ``pattern`` (cycled) is True."""
    real = lightning_module.compute_losses
    calls = iter(range(10**6))

    def patched(outputs: Any, batch: Any, params: Any) -> Any:
        total, terms = real(outputs, batch, params)
        if outputs.get("vae_mu") is not None and pattern[next(calls) % len(pattern)]:  # training steps only
            total = total * float("nan")
        return total, terms

    monkeypatch.setattr(lightning_module, "compute_losses", patched)


def test_nonfinite_loss_skips_the_step(monkeypatch: pytest.MonkeyPatch, synthetic_root: Path) -> None:
    _nonfinite_losses(monkeypatch, [True, True, False, True])  # three NaN, never three in a row
    module = small_module()
    trainer = quiet_trainer(max_steps=4)  # Lightning counts a skipped step (no gradients) as a step
    trainer.fit(module, datamodule=SF3DDataModule(str(synthetic_root), **DATA_ARGS))
    assert module.nonfinite_steps == 3


def test_three_nonfinite_losses_in_a_row_stop_the_run(
    monkeypatch: pytest.MonkeyPatch, synthetic_root: Path
) -> None:
    _nonfinite_losses(monkeypatch, [True])
    module = small_module()
    before = {k: v.clone() for k, v in module.model.named_parameters()}
    trainer = quiet_trainer(max_steps=10)
    with pytest.raises(FloatingPointError, match=f"NaN/inf for {MAX_NONFINITE_STEPS} steps in a row"):
        trainer.fit(module, datamodule=SF3DDataModule(str(synthetic_root), **DATA_ARGS))
    assert module.nonfinite_steps == MAX_NONFINITE_STEPS
    assert all(torch.equal(before[k], v) for k, v in module.model.named_parameters())  # no optimizer update
