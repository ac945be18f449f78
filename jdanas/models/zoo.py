"""The CIFAR model zoo used as teachers and students: name -> builder(num_classes).

Names and architectures follow the RepDistiller zoo (Tian et al., "Contrastive Representation
Distillation", ICLR 2020, https://github.com/HobbitLong/RepDistiller), which DisWOT and most
CIFAR distillation papers reuse:

* ``resnet{8,14,20,32,44,56,110}``: CIFAR ResNets (He et al., CVPR 2016) with ``n = (depth-2)/6``
  basic blocks per stage, widths 16/32/64; ``resnet8x4`` / ``resnet32x4``: stem 32, widths
  64/128/256, 1 and 5 blocks per stage (:mod:`jdanas.models.resnet`).
* ``wrn_{16,40}_{1,2}``: wide ResNets (Zagoruyko & Komodakis, BMVC 2016; :mod:`jdanas.models.wrn`).
* ``vgg{8,11,13}``: VGG with BN (Simonyan & Zisserman, ICLR 2015; :mod:`jdanas.models.vgg`).
* ``mobilenetv2`` (T=6, width 1.0) and ``mobilenetv2_half`` (T=6, width 0.5, RepDistiller's
  ``mobile_half``): MobileNetV2 (Sandler et al., CVPR 2018; :mod:`jdanas.models.mobilenetv2`).
"""
from __future__ import annotations

import functools
from typing import Callable

import flax.linen as nn

from jdanas.models.mobilenetv2 import mobilenetv2
from jdanas.models.resnet import CifarResNet
from jdanas.models.vgg import VGG, VGG_CFGS, vgg
from jdanas.models.wrn import WideResNet


def _cifar_resnet(num_classes: int, depth: int, widths=(16, 32, 64), stem: int = 16) -> CifarResNet:
  n = (depth - 2) // 6
  return CifarResNet(depths=(n, n, n), widths=widths, stem=stem, num_classes=num_classes)


def _wrn(num_classes: int, depth: int, widen_factor: int) -> WideResNet:
  return WideResNet(depth=depth, widen_factor=widen_factor, num_classes=num_classes)


def _vgg(num_classes: int, name: str) -> VGG:
  return VGG(cfg=VGG_CFGS[name], num_classes=num_classes)


def _vgg_scaled(num_classes: int, name: str, width_mult: float) -> VGG:
  return vgg(name, num_classes, width_mult=width_mult)


def _mobilenetv2(num_classes: int, width_mult: float) -> nn.Module:
  return mobilenetv2(num_classes, expansion=6, width_mult=width_mult)


MODELS: dict[str, Callable[[int], nn.Module]] = {
    **{f"resnet{d}": functools.partial(_cifar_resnet, depth=d) for d in (8, 14, 20, 32, 44, 56, 110)},
    "resnet8x4": functools.partial(_cifar_resnet, depth=8, widths=(64, 128, 256), stem=32),
    "resnet32x4": functools.partial(_cifar_resnet, depth=32, widths=(64, 128, 256), stem=32),
    "wrn_16_1": functools.partial(_wrn, depth=16, widen_factor=1),
    "wrn_16_2": functools.partial(_wrn, depth=16, widen_factor=2),
    "wrn_40_1": functools.partial(_wrn, depth=40, widen_factor=1),
    "wrn_40_2": functools.partial(_wrn, depth=40, widen_factor=2),
    **{name: functools.partial(_vgg, name=name) for name in ("vgg8", "vgg11", "vgg13")},
    # VGG-8 at a quarter of the widths (16-128 channels): a non-residual teacher as cheap as ResNet-8 on a CPU.
    "vgg8_quarter": functools.partial(_vgg_scaled, name="vgg8", width_mult=0.25),
    "mobilenetv2": functools.partial(_mobilenetv2, width_mult=1.0),
    "mobilenetv2_half": functools.partial(_mobilenetv2, width_mult=0.5),
}


def get_model(name: str, num_classes: int) -> nn.Module:
  """Builds a zoo model; unknown names raise a one-line error listing the choices."""
  if name not in MODELS:
    raise ValueError(f"model: unknown name {name!r}; choose one of {', '.join(sorted(MODELS))}")
  return MODELS[name](num_classes)
