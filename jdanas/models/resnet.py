"""CIFAR ResNets with basic blocks (He et al. 2016), as in the RepDistiller / DisWOT model zoo.

``CifarResNet(depths=(3, 3, 3))`` is ResNet-20, ``(5, 5, 5)`` ResNet-32, ``(9, 9, 9)``
ResNet-56, ``(18, 18, 18)`` ResNet-110; ``stem=32, widths=(64, 128, 256), depths=(5, 5, 5)``
is ResNet32x4. The DisWOT S1 space uses per-stage depths in {1, 3, 5, 7}. Shortcuts are a
1x1 conv + BN when the shape changes ("option B").
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn

from jdanas.models import layers


class BasicBlock(nn.Module):
  features: int
  stride: int = 1

  @nn.compact
  def __call__(self, x, train: bool):
    y = layers.conv(self.features, 3, self.stride, name="conv1")(x)
    y = layers.relu(layers.batch_norm(train, "bn1")(y))
    y = layers.conv(self.features, 3, 1, name="conv2")(y)
    y = layers.batch_norm(train, "bn2")(y)
    if self.stride != 1 or x.shape[-1] != self.features:
      x = layers.conv(self.features, 1, self.stride, name="shortcut_conv")(x)
      x = layers.batch_norm(train, "shortcut_bn")(x)
    return layers.relu(x + y)


class CifarResNet(nn.Module):
  depths: Sequence[int] = (3, 3, 3)
  widths: Sequence[int] = (16, 32, 64)
  stem: int = 16
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, enc=None, *, train: bool = False) -> layers.Features:
    del enc  # the structure is fixed by (depths, widths)
    x = layers.conv(self.stem, 3, name="stem_conv")(x)
    x = layers.relu(layers.batch_norm(train, "stem_bn")(x))
    stages = []
    for s, (depth, width) in enumerate(zip(self.depths, self.widths)):
      for b in range(depth):
        stride = 2 if (s > 0 and b == 0) else 1
        x = BasicBlock(width, stride, name=f"stage{s + 1}_block{b}")(x, train)
      stages.append(x)
    return layers.features_dict(stages, x, layers.classifier(self.num_classes))


def cifar_resnet(blocks: int = 3, width_mult: float = 1.0, num_classes: int = 10) -> CifarResNet:
  """ResNet-``(6 * blocks + 2)`` with stem and stage widths ``int(16/16/32/64 * width_mult)``.

  ``cifar_resnet(3)`` is ResNet-20 and ``cifar_resnet(1, 4.0)`` is ResNet-8 with widths 64/128/256
  (ResNet8x4 has a 32-channel stem instead of 64).
  """
  if blocks < 1 or width_mult <= 0:
    raise ValueError(f"cifar_resnet: blocks must be >= 1 and width_mult > 0, got {blocks}, {width_mult}")
  widths = tuple(max(1, int(c * width_mult)) for c in (16, 32, 64))
  return CifarResNet(depths=(blocks,) * 3, widths=widths, stem=widths[0], num_classes=num_classes)
