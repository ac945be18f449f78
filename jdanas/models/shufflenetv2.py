"""ShuffleNetV2 for CIFAR (Ma et al., ECCV 2018, https://arxiv.org/abs/1807.11164), as in the
RepDistiller / DisWOT model zoo (``models/ShuffleNetv2.py``, itself kuangliu's pytorch-cifar port).

Structure for 32x32 inputs: a 3x3 stem conv (24 channels, stride 1, no max-pool) + BN + ReLU, then
three stages; stage ``s`` is one :class:`DownBlock` (stride 2, ``c_in -> c_s``) followed by
``blocks[s]`` :class:`ShuffleBlock` units; then a 1x1 conv to ``head`` channels + BN + ReLU, global
average pooling and a linear classifier. ``width`` selects RepDistiller's ``net_size`` table:

==========  =======================  =====
width       stage widths             head
==========  =======================  =====
0.5         48, 96, 192              1024
1           116, 232, 464            1024
1.5         176, 352, 704            1024
2           224, 488, 976            2048
==========  =======================  =====

with ``blocks = (3, 7, 3)``. A unit splits its input channels in half, transforms the second half
with 1x1 conv-BN-ReLU -> depthwise 3x3 conv-BN -> 1x1 conv-BN-ReLU, concatenates the untouched
half back and shuffles the channels (2 groups). A down-sampling block concatenates a left branch
(depthwise 3x3 s2 conv-BN -> 1x1 conv-BN-ReLU to ``c/2``) and a right branch (1x1 conv-BN-ReLU to
``c/2`` -> depthwise 3x3 s2 conv-BN -> 1x1 conv-BN-ReLU) and shuffles. No conv has a bias.

Stage taps are the three stage outputs; ``pre_pool`` is the head's ReLU output.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from jdanas.models import layers

SHUFFLENETV2_WIDTHS: dict[float, tuple[tuple[int, int, int], int]] = {
    0.5: ((48, 96, 192), 1024),
    1.0: ((116, 232, 464), 1024),
    1.5: ((176, 352, 704), 1024),
    2.0: ((224, 488, 976), 2048),
}


def channel_shuffle(x, groups: int = 2):
  """``[B, H, W, C] -> [B, H, W, C]``: PyTorch's ``view(g, C/g) -> transpose -> flatten`` on channels."""
  b, h, w, c = x.shape
  return x.reshape(b, h, w, groups, c // groups).swapaxes(-1, -2).reshape(b, h, w, c)


class ShuffleBlock(nn.Module):
  """The stride-1 unit (channel split, see the module docstring)."""

  @nn.compact
  def __call__(self, x, train: bool):
    c = x.shape[-1] // 2
    x1, x2 = x[..., :c], x[..., c:]
    y = layers.relu(layers.batch_norm(train, "bn1")(layers.conv(c, 1, name="conv1")(x2)))
    y = layers.batch_norm(train, "bn2")(layers.conv(c, 3, groups=c, name="conv2")(y))
    y = layers.relu(layers.batch_norm(train, "bn3")(layers.conv(c, 1, name="conv3")(y)))
    return channel_shuffle(jnp.concatenate([x1, y], axis=-1))


class DownBlock(nn.Module):
  """The stride-2 unit: ``c_in -> features`` channels (see the module docstring)."""
  features: int

  @nn.compact
  def __call__(self, x, train: bool):
    c_in, mid = x.shape[-1], self.features // 2
    left = layers.batch_norm(train, "bn1")(layers.conv(c_in, 3, 2, groups=c_in, name="conv1")(x))
    left = layers.relu(layers.batch_norm(train, "bn2")(layers.conv(mid, 1, name="conv2")(left)))
    right = layers.relu(layers.batch_norm(train, "bn3")(layers.conv(mid, 1, name="conv3")(x)))
    right = layers.batch_norm(train, "bn4")(layers.conv(mid, 3, 2, groups=mid, name="conv4")(right))
    right = layers.relu(layers.batch_norm(train, "bn5")(layers.conv(mid, 1, name="conv5")(right)))
    return channel_shuffle(jnp.concatenate([left, right], axis=-1))


class ShuffleNetV2(nn.Module):
  """CIFAR ShuffleNetV2 with explicit stage widths (see :func:`shufflenetv2` for the zoo sizes)."""
  widths: Sequence[int] = SHUFFLENETV2_WIDTHS[1.0][0]
  head: int = 1024
  blocks: Sequence[int] = (3, 7, 3)
  stem: int = 24
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, enc=None, *, train: bool = False) -> layers.Features:
    del enc  # the structure is fixed by (widths, head, blocks)
    if any(w % 2 for w in self.widths):
      raise ValueError(f"ShuffleNetV2: stage widths must be even, got {tuple(self.widths)}")
    x = layers.relu(layers.batch_norm(train, "stem_bn")(layers.conv(self.stem, 3, name="stem_conv")(x)))
    stages = []
    for s, (width, n) in enumerate(zip(self.widths, self.blocks)):
      x = DownBlock(width, name=f"stage{s + 1}_down")(x, train)
      for b in range(n):
        x = ShuffleBlock(name=f"stage{s + 1}_block{b}")(x, train)
      stages.append(x)
    x = layers.conv(self.head, 1, name="head_conv")(x)
    pre_pool = layers.relu(layers.batch_norm(train, "head_bn")(x))
    return layers.features_dict(stages, pre_pool, layers.classifier(self.num_classes))


def shufflenetv2(num_classes: int = 10, width: float = 1.0) -> ShuffleNetV2:
  """RepDistiller's ``ShuffleV2(net_size=width)``; ``width`` in 0.5, 1, 1.5, 2."""
  if float(width) not in SHUFFLENETV2_WIDTHS:
    raise ValueError(f"shufflenetv2: width must be one of {sorted(SHUFFLENETV2_WIDTHS)}, got {width!r}")
  widths, head = SHUFFLENETV2_WIDTHS[float(width)]
  return ShuffleNetV2(widths=widths, head=head, num_classes=num_classes)
