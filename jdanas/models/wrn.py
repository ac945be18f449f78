"""Wide residual networks for CIFAR (Zagoruyko & Komodakis, BMVC 2016,
https://arxiv.org/abs/1605.07146), as in the RepDistiller / DisWOT model zoo (``models/wrn.py``).

WRN-``depth``-``k``: a 3x3 stem conv with 16 channels, then three stages of ``n = (depth - 4) / 6``
pre-activation wide basic blocks with widths ``16k, 32k, 64k`` and first strides 1/2/2, then a final
BN + ReLU, global average pooling and a linear classifier. ``WideResNet(depth=40, widen_factor=2)``
is WRN-40-2, the standard CIFAR-100 teacher of the CRD benchmark.

A wide basic block is BN-ReLU-conv3x3-BN-ReLU-conv3x3 with no activation after the residual sum.
When the channel count changes, the shortcut is a 1x1 conv (no BN) applied to the *pre-activated*
input ``relu(bn1(x))``, exactly as the reference code; otherwise it is the identity on ``x``. Dropout
between the two convs (``dropRate``) is 0 in every zoo recipe and is not implemented.
"""
from __future__ import annotations

import flax.linen as nn

from jdanas.models import layers


class WideBasicBlock(nn.Module):
  """Pre-activation wide basic block (see the module docstring)."""
  features: int
  stride: int = 1

  @nn.compact
  def __call__(self, x, train: bool):
    act = layers.relu(layers.batch_norm(train, "bn1")(x))
    y = layers.conv(self.features, 3, self.stride, name="conv1")(act)
    y = layers.relu(layers.batch_norm(train, "bn2")(y))
    y = layers.conv(self.features, 3, 1, name="conv2")(y)
    if x.shape[-1] == self.features:
      if self.stride != 1:
        raise ValueError("WideBasicBlock: a strided block must change the channel count "
                         f"(got {self.features} -> {self.features}, stride {self.stride})")
      return x + y
    return layers.conv(self.features, 1, self.stride, name="shortcut_conv")(act) + y


class WideResNet(nn.Module):
  """WRN-``depth``-``widen_factor`` for 32x32 inputs; ``depth`` must be ``6n + 4``."""
  depth: int = 16
  widen_factor: int = 1
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, enc=None, *, train: bool = False) -> layers.Features:
    del enc  # the structure is fixed by (depth, widen_factor)
    if self.depth < 10 or (self.depth - 4) % 6:
      raise ValueError(f"WideResNet: depth must be 6n+4 with n >= 1, got {self.depth}")
    n = (self.depth - 4) // 6
    widths = tuple(c * self.widen_factor for c in (16, 32, 64))
    x = layers.conv(16, 3, name="stem_conv")(x)
    stages = []
    for s, width in enumerate(widths):
      for b in range(n):
        stride = 2 if (s > 0 and b == 0) else 1
        x = WideBasicBlock(width, stride, name=f"stage{s + 1}_block{b}")(x, train)
      stages.append(x)
    pre_pool = layers.relu(layers.batch_norm(train, "final_bn")(x))
    return layers.features_dict(stages, pre_pool, layers.classifier(self.num_classes))
