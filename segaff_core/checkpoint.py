"""Safe loading (and test-time writing) of SegAffordance Lightning checkpoints.

A checkpoint is the dict Lightning writes: ``state_dict`` with the ``model.`` prefix of
``SegAffordanceModule.model`` and ``hyper_parameters["model_params"]`` holding :class:`ModelParams` as
a plain dict. It is read with ``torch.load(weights_only=True)``, so a file that would run pickled code
on loading is refused before anything in it is executed.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import zipfile
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import Tensor

from segaff_core.config import ModelParams
from segaff_core.model import SegAffordanceModel, build_model
from segaff_core.paths import find_default_checkpoint

log = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = find_default_checkpoint()
"""The shipped default checkpoint: ``checkpoints/segaff_default.ckpt`` at the repository root, or its
installed copy under ``share/segaff_ros/checkpoints`` (:func:`segaff_core.paths.find_default_checkpoint`)."""

MODEL_PREFIX = "model."
"""Prefix of the network's weights in the LightningModule's state dict."""

PathArg = Union[str, "PathLike[str]"]


class CheckpointError(ValueError):
    """A checkpoint that is unsafe to load, malformed, or does not fit the model it describes."""


def _unpickling_reason(error: Exception) -> str:
    """The line of torch's weights-only error that names what was refused (e.g. ``unsupported GLOBAL ...``)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "global" in line.lower() and not line.startswith("Weights only load failed"):
            return line
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    details = [line for line in lines if not line.startswith(boilerplate)]
    return details[-1] if details else type(error).__name__


def read_checkpoint(path: PathArg) -> dict[str, Any]:
    """The checkpoint dict at ``path``, read with ``weights_only=True`` onto the CPU.

    Raises FileNotFoundError for a missing file and :class:`CheckpointError` for a file holding pickled
    code or objects other than tensors and plain containers, or one that is not a checkpoint at all.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (torch.save writes zip archives)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"refusing to load checkpoint {path}: it holds pickled code or objects that weights-only loading "
            f"does not allow ({_unpickling_reason(error)}); only tensors and plain containers are accepted"
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error}") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(checkpoint).__name__}, not a checkpoint dict")
    return checkpoint


# ModelParams fields whose default changed after checkpoints were written without them: such a checkpoint
# was trained as the value here, not as today's default.
FIELDS_OF_OLDER_CHECKPOINTS: dict[str, Any] = {"cvae_prior": "standard"}


def _stored_model_params(checkpoint: Mapping[str, Any], source: str) -> Mapping[str, Any]:
    hyper_parameters = checkpoint.get("hyper_parameters")
    stored = hyper_parameters.get("model_params") if isinstance(hyper_parameters, Mapping) else None
    if not isinstance(stored, Mapping):
        raise CheckpointError(
            f"{source} has no hyper_parameters['model_params'] dict: it was not written by SegAffordanceModule"
        )
    return stored


def predated_model_params(checkpoint: Mapping[str, Any], source: str = "checkpoint") -> dict[str, Any]:
    """The entries of :data:`FIELDS_OF_OLDER_CHECKPOINTS` that ``checkpoint``'s model_params lack."""
    stored = _stored_model_params(checkpoint, source)
    return {name: value for name, value in FIELDS_OF_OLDER_CHECKPOINTS.items() if name not in stored}


def model_params_from_checkpoint(checkpoint: Mapping[str, Any], source: str = "checkpoint") -> ModelParams:
    """The :class:`ModelParams` stored in ``hyper_parameters["model_params"]`` (a plain dict); a field the
    checkpoint predates takes its value of :data:`FIELDS_OF_OLDER_CHECKPOINTS`, else its default."""
    stored = _stored_model_params(checkpoint, source)
    known = {field.name for field in dataclasses.fields(ModelParams)}
    unknown = sorted(set(stored) - known)
    if unknown:
        raise CheckpointError(f"{source} has model_params this version does not know: {', '.join(unknown)}")
    return ModelParams(**{**FIELDS_OF_OLDER_CHECKPOINTS, **stored})


def model_state_dict(checkpoint: Mapping[str, Any], source: str = "checkpoint") -> dict[str, Tensor]:
    """The network's weights: the entries of ``state_dict`` under ``model.``, with the prefix removed."""
    state_dict = checkpoint.get("state_dict")
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"{source} has no state_dict")
    weights = {key[len(MODEL_PREFIX):]: value for key, value in state_dict.items() if key.startswith(MODEL_PREFIX)}
    if not weights:
        raise CheckpointError(f"{source} has no weights under the '{MODEL_PREFIX}' prefix")
    return weights


def _describe_mismatch(model: torch.nn.Module, weights: Mapping[str, Tensor], limit: int = 5) -> str:
    """Missing, unexpected and wrongly shaped keys of ``weights`` for ``model``, a few of each."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    reshaped = sorted(
        f"{key} {tuple(weights[key].shape)} vs {tuple(expected[key].shape)}"
        for key in set(expected) & set(weights)
        if tuple(weights[key].shape) != tuple(expected[key].shape)
    )
    parts = []
    for name, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", reshaped)):
        if keys:
            shown = ", ".join(keys[:limit]) + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")
            parts.append(f"{name}: {shown}")
    return "; ".join(parts)


def load_model(path: PathArg) -> tuple[SegAffordanceModel, ModelParams]:
    """Rebuild the network from the ``ModelParams`` stored in the checkpoint at ``path`` and load its weights.

    The CLIP weights come from the checkpoint, so ``clip_pretrain`` is not read. The model is returned on
    the CPU in eval mode. Raises FileNotFoundError / :class:`CheckpointError` (see :func:`read_checkpoint`),
    and CheckpointError when the weights do not fit the stored configuration.
    """
    return model_from_checkpoint(read_checkpoint(path), f"checkpoint {path}")


def model_from_checkpoint(checkpoint: Mapping[str, Any], source: str) -> tuple[SegAffordanceModel, ModelParams]:
    """:func:`load_model` on an already read checkpoint dict; ``source`` names it in errors."""
    params = model_params_from_checkpoint(checkpoint, source)
    weights = model_state_dict(checkpoint, source)
    try:
        model = build_model(dataclasses.replace(params, clip_pretrain=None))
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"{source}: its model_params do not build a model: {error}") from None
    mismatch = _describe_mismatch(model, weights)
    if mismatch:
        raise CheckpointError(f"{source}: the weights do not fit its model_params ({mismatch})")
    model.load_state_dict(weights, strict=True)
    log.info("loaded %s (epoch %s, step %s)", source, checkpoint.get("epoch"), checkpoint.get("global_step"))
    return model.eval(), params


def training_input_size(checkpoint: Mapping[str, Any]) -> Optional[tuple[int, int]]:
    """The (H, W) network input size the checkpoint was trained at, when its data module recorded it."""
    size = checkpoint.get("datamodule_hyper_parameters", {}).get("input_size")
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size):
        return int(size[0]), int(size[1])
    return None


def save_checkpoint(model: torch.nn.Module, params: ModelParams, path: PathArg) -> Path:
    """Write ``model`` as a minimal Lightning-compatible checkpoint (weights and ``model_params`` only).

    The layout is the one ``SegAffordanceModule`` checkpoints have, so :func:`load_model` reads both.
    """
    import lightning

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "epoch": 0,
        "global_step": 0,
        "pytorch-lightning_version": lightning.__version__,
        "state_dict": {MODEL_PREFIX + key: value.detach().cpu() for key, value in model.state_dict().items()},
        "hyper_parameters": {"model_params": dataclasses.asdict(params)},
    }
    torch.save(checkpoint, path)
    return path


def export_inference_checkpoint(source: PathArg, destination: PathArg) -> Path:
    """Copy a training checkpoint without its optimizer, scheduler and callback state (for shipping).

    What stays is everything inference reads: the weights, ``hyper_parameters`` and the data module's
    ``input_size``. Written atomically (temporary file, then rename).
    """
    checkpoint = read_checkpoint(source)
    model_from_checkpoint(checkpoint, f"checkpoint {source}")  # refuse to ship one that does not load
    kept = {key: checkpoint[key] for key in ("epoch", "global_step", "pytorch-lightning_version",
                                               "state_dict", "hyper_parameters") if key in checkpoint}
    input_size = training_input_size(checkpoint)
    if input_size is not None:
        kept["datamodule_hyper_parameters"] = {"input_size": list(input_size)}
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(destination.name + ".tmp")
    torch.save(kept, temporary)
    os.replace(temporary, destination)
    return destination
