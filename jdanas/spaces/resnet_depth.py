"""DisWOT's S1 space: CIFAR ResNets with per-stage depths (Dong et al., CVPR 2023,
https://arxiv.org/abs/2303.15678; "mutable ResNet20" in the official code).

Stem 16, stage widths 16/32/64, strides 1/2/2, basic blocks, option-B shortcuts; each stage
has ``d in {1, 3, 5, 7}`` blocks (4^3 = 64 students). Names are the three depths as digits,
e.g. ``'557'``, exactly as in DisWOT's ground-truth files.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Hashable

import flax.linen as nn
import numpy as np

from jdanas.models.resnet import CifarResNet
from jdanas.spaces.base import AbstractSearchSpace, to_tuple


@dataclasses.dataclass(frozen=True)
class ResNetDepthSpace(AbstractSearchSpace):
  depth_choices: tuple[int, ...] = (1, 3, 5, 7)
  widths: tuple[int, ...] = (16, 32, 64)
  stem: int = 16
  name = "s1_resnet"

  @property
  def num_choices(self) -> tuple[int, ...]:
    return (len(self.depth_choices),) * len(self.widths)

  def encode(self, arch: str) -> np.ndarray:
    arch = str(arch).strip()
    if len(arch) != len(self.widths) or not arch.isdigit():
      raise ValueError(f"{self.name}: name must be {len(self.widths)} digits (depth per stage), got {arch!r}")
    try:
      return np.asarray([self.depth_choices.index(int(c)) for c in arch], np.int32)
    except ValueError:
      raise ValueError(f"{self.name}: depths in {arch!r} must be in {self.depth_choices}") from None

  def depths(self, enc: Any) -> tuple[int, ...]:
    return tuple(self.depth_choices[i] for i in to_tuple(self.check(enc)))

  def decode(self, enc: Any) -> str:
    return "".join(str(d) for d in self.depths(enc))

  def signature(self, enc: Any) -> Hashable:
    return self.depths(enc)

  def build(self, signature: Hashable, num_classes: int) -> nn.Module:
    return CifarResNet(depths=tuple(signature), widths=self.widths, stem=self.stem,
                       num_classes=num_classes)
