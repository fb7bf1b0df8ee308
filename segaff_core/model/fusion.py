"""Inference-time rewrites of a trained model that keep its outputs: batch norm folded into convolutions."""
from __future__ import annotations

import copy
import logging

from open_clip.modified_resnet import Bottleneck, ModifiedResNet
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

log = logging.getLogger(__name__)

# open_clip's ResNet stem and bottlenecks apply bn{i} right after conv{i} (named attributes, not a Sequential).
_NAMED_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))


def _fold_pair(parent: nn.Module, conv_name: str, bn_name: str) -> bool:
    """Fold ``parent.<bn_name>`` into ``parent.<conv_name>`` and make the former an identity, if both fit."""
    conv, bn = getattr(parent, conv_name, None), getattr(parent, bn_name, None)
    if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
        return False
    setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
    setattr(parent, bn_name, nn.Identity())
    return True


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every BatchNorm2d that directly follows a Conv2d folded into it.

    Folded: consecutive ``Conv2d -> BatchNorm2d`` in any ``nn.Sequential`` (the conv-bn-relu blocks of the
    depth encoder, FPN, CoordConv and projector, CRIS's attention-pool residual, the ResNet downsample
    branches) and ``conv{i} -> bn{i}`` of open_clip's ResNet stem and bottlenecks. Other batch norms
    (the FPN's norm after the text gate) stay. The outputs equal the model's in eval mode up to
    floating-point rounding; ``model`` itself is not changed.
    """
    folded = copy.deepcopy(model).eval()
    count = 0
    for module in list(folded.modules()):
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for conv_name, bn_name in zip(names, names[1:]):
                count += _fold_pair(module, conv_name, bn_name)
        elif isinstance(module, (Bottleneck, ModifiedResNet)):
            count += sum(_fold_pair(module, conv_name, bn_name) for conv_name, bn_name in _NAMED_PAIRS)
    remaining = sum(isinstance(module, nn.BatchNorm2d) for module in folded.modules())
    log.info("folded %d batch norms into convolutions (%d left)", count, remaining)
    return folded
