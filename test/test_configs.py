"""Every training command written in a config file's header parses: the configs' keys and values are
ones the LightningCLI of train/fit.py accepts (``--print_config`` parses, prints and exits)."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import sys
from pathlib import Path
from unittest import mock

import pytest
import yaml

from fit_script import load_fit_script

REPO = Path(__file__).resolve().parents[1]
COMMAND = re.compile(r"train/fit\.py (fit|validate|test) ((?:--config \S+\s*)+)")


def documented_commands() -> list[tuple[str, list[str]]]:
    commands = []
    for path in sorted((REPO / "config").glob("*.yaml")):
        for match in COMMAND.finditer(path.read_text()):
            configs = re.findall(r"--config (\S+)", match.group(2))
            commands.append((match.group(1), configs))
    return commands


def test_every_training_config_has_a_documented_command() -> None:
    documented = {Path(c).name for _, configs in documented_commands() for c in configs}
    configs = {p.name for p in (REPO / "config").glob("*.yaml")} - {"perception.yaml"}
    assert configs <= documented, f"configs without a command in any header: {sorted(configs - documented)}"


@pytest.mark.parametrize("subcommand, configs", documented_commands(),
                         ids=lambda value: "+".join(Path(c).stem for c in value) if isinstance(value, list) else value)
def test_documented_command_parses(subcommand: str, configs: list[str]) -> None:
    arguments = [subcommand]
    for config in configs:
        arguments += ["--config", str(REPO / config)]
    printed = io.StringIO()
    with mock.patch.object(sys, "argv", sys.argv[:1]), contextlib.redirect_stdout(printed), \
            pytest.raises(SystemExit) as exit_info:
        load_fit_script().main([*arguments, "--print_config"])
    assert exit_info.value.code in (0, None), printed.getvalue()[-2000:]
    parsed = yaml.safe_load(printed.getvalue())
    assert parsed["model"]["model_params"]["fpn_in"], "no model parameters in the parsed config"


def test_the_shipped_checkpoint_config_builds_its_architecture() -> None:
    """The documented command of config/synthetic_default.yaml builds the model the shipped checkpoint stores,
    with the loss recipe it was trained with (so the command reproduces it and resumes its last.ckpt)."""
    from segaff_core.checkpoint import model_params_from_checkpoint, read_checkpoint
    from segaff_core.config import LossParams
    from segaff_core.paths import find_default_checkpoint

    printed = io.StringIO()
    arguments = ["fit", "--config", str(REPO / "config" / "synthetic_train.yaml"),
                 "--config", str(REPO / "config" / "synthetic_default.yaml"), "--print_config"]
    with mock.patch.object(sys, "argv", sys.argv[:1]), contextlib.redirect_stdout(printed), pytest.raises(SystemExit):
        load_fit_script().main(arguments)
    parsed = yaml.safe_load(printed.getvalue())["model"]
    checkpoint = read_checkpoint(find_default_checkpoint())
    assert parsed["model_params"] == dataclasses.asdict(model_params_from_checkpoint(checkpoint))
    # the recipe it was trained with (options added since then at their defaults, the seed's)
    trained_with = dataclasses.asdict(LossParams(**checkpoint["hyper_parameters"]["loss_params"]))
    assert parsed["loss_params"] == trained_with
