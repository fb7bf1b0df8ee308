"""ROS test set-up: every test process gets its own DDS domain, localhost-only, before rclpy starts."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from ros_helpers import isolate_ros_environment

isolate_ros_environment()


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of ModelParams.small() with random (seeded) weights, written like a trained one."""
    torch = pytest.importorskip("torch")
    from segaff_core.checkpoint import save_checkpoint
    from segaff_core.config import ModelParams
    from segaff_core.model import build_model

    torch.manual_seed(0)
    params = ModelParams.small()
    model = build_model(params)
    _centre_mask_logits(model)
    return save_checkpoint(model, params, tmp_path_factory.mktemp("checkpoint") / "small.ckpt")


def _centre_mask_logits(model: Any) -> None:
    """Random weights put every mask logit far below 0 (an empty mask, whatever the frame): shift the mask
    map's dynamic bias (instruction-independent) so that half of a plain frame's mask logits are positive."""
    import torch

    from segaff_core.text import tokenize

    image, depth = torch.zeros(1, 3, 128, 128), torch.full((1, 1, 128, 128), 1.5)
    with torch.inference_mode():
        logits = model.eval()(image, depth, tokenize(["open the top drawer"]))["mask_logits"]
    projector = model.projector
    with torch.no_grad():
        projector.txt.bias[projector.in_dim * projector.kernel_size ** 2] -= logits.median()  # map 0's bias


@pytest.fixture
def node_in_process(small_checkpoint: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The perception node built in this process under the namespace ``/in_process`` (own context), configured
    and activated by the fixture (``autostart`` false): its worker thread runs, its callbacks are never spun.
    Extra parameters: ``@pytest.mark.node_parameters(name=value)``."""
    import rclpy
    from rclpy.parameter import Parameter

    from segaff_ros.perception_node import PerceptionNode

    marker = request.node.get_closest_marker("node_parameters")
    from rclpy.lifecycle import TransitionCallbackReturn

    values = {"checkpoint": str(small_checkpoint), "device": "cpu", "input_height": 64, "input_width": 64,
              "backend": "torch", "autostart": False, **(marker.kwargs if marker else {})}
    context = rclpy.Context()
    rclpy.init(context=context)
    node = PerceptionNode(context=context, namespace="in_process",
                          parameter_overrides=[Parameter(name, value=value) for name, value in values.items()])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        yield node
    finally:
        node.destroy_node()
        context.try_shutdown()
