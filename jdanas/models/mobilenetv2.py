"""MobileNetV2 for CIFAR (Sandler et al., CVPR 2018, https://arxiv.org/abs/1801.04381) and the
generic MobileNet-family layer shared with the MnasNet-style space (Tan et al., CVPR 2019,
https://arxiv.org/abs/1807.11626; :mod:`jdanas.spaces.mobilenet`).

Vocabulary (MnasNet's): a *block* is a group of ``repeats`` identical *layers*; only the first
layer of a block has the block's stride. :class:`BlockSpec` describes a block,
:class:`MobileLayer` is one layer, and :class:`MobileNet` is the network: stem conv3x3 + BN + ReLU
-> blocks -> conv1x1 head + BN + ReLU -> global average pool -> linear classifier.

Layer types (MnasNet's ConvOp), all with BN after every conv and ReLU as the activation:

* ``mbconv``: mobile inverted bottleneck: 1x1 expand to ``expansion * c_in`` -> BN -> ReLU ->
  depthwise kxk (stride) -> BN -> ReLU -> [SE] -> 1x1 linear projection -> BN. As in RepDistiller's
  ``InvertedResidual``, the expansion conv exists even when ``expansion == 1``.
* ``sepconv``: depthwise-separable conv: depthwise kxk (stride) -> BN -> ReLU -> [SE] -> 1x1 linear
  projection -> BN (MnasNet's ``SepConv``, i.e. an MBConv without the expansion conv).
* ``conv``: regular kxk conv (stride) -> BN -> ReLU -> [SE].

Every layer adds an identity residual iff its stride is 1 and ``c_in == c_out`` (MobileNetV2's
rule). SE is squeeze-and-excitation as in MnasNet: global average pool -> linear to
``max(1, int(c_in * se_ratio))`` -> ReLU -> linear back -> sigmoid gate; ``c_in`` is the layer's
input width and the gate acts on the depthwise output (the conv output for ``conv``).

:func:`mobilenetv2` builds RepDistiller's CIFAR MobileNetV2 (``models/mobilenetv2.py``, used by the
CRD benchmark): rows (t, c, n, s) = (1,16,1,1), (T,24,2,1), (T,32,3,2), (T,64,4,2), (T,96,3,1),
(T,160,3,2), (T,320,1,1); widths ``int(c * width_mult)`` (no rounding), stem ``int(32 * width_mult)``,
head ``1280`` (``int(1280 * width_mult)`` when ``width_mult > 1``), ReLU rather than ReLU6. The
reference stem has stride 2 (``conv_bn(3, input_channel, 2)``), so a 32x32 input ends in a 2x2 map;
``stem_stride=1`` gives the variant that keeps 32x32 in the first blocks. RepDistiller's
``mobile_half`` is ``mobilenetv2(expansion=6, width_mult=0.5)``.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jdanas.models import layers

LAYER_TYPES = ("mbconv", "sepconv", "conv")

# MobileNetV2's CIFAR body as (out channels c, repeats n, first stride s); the first row has
# expansion 1, the others the network's expansion T.
MOBILENETV2_ROWS: tuple[tuple[int, int, int], ...] = (
    (16, 1, 1), (24, 2, 1), (32, 3, 2), (64, 4, 2), (96, 3, 1), (160, 3, 2), (320, 1, 1))


class BlockSpec(NamedTuple):
  """A block of ``repeats`` identical layers; ``expansion`` is only read by ``mbconv``."""
  op: str
  kernel: int
  expansion: int
  se: bool
  features: int
  repeats: int
  stride: int


class SqueezeExcite(nn.Module):
  """Squeeze-and-excitation gate (Hu et al. 2018) with ``reduced`` hidden units."""
  reduced: int

  @nn.compact
  def __call__(self, x):
    s = jnp.mean(x, axis=(1, 2), keepdims=True)
    s = layers.relu(nn.Dense(self.reduced, kernel_init=layers.conv_init, name="reduce")(s))
    s = nn.sigmoid(nn.Dense(x.shape[-1], kernel_init=layers.conv_init, name="expand")(s))
    return x * s


class MobileLayer(nn.Module):
  """One MobileNet-family layer (see the module docstring for the three types)."""
  op: str
  features: int
  kernel: int = 3
  expansion: int = 6
  se: bool = False
  stride: int = 1
  se_ratio: float = 0.25

  @nn.compact
  def __call__(self, x, train: bool):
    if self.op not in LAYER_TYPES:
      raise ValueError(f"MobileLayer: unknown op {self.op!r}; choose one of {', '.join(LAYER_TYPES)}")
    c_in = x.shape[-1]
    se = SqueezeExcite(max(1, int(c_in * self.se_ratio)), name="se") if self.se else None
    if self.op == "conv":
      y = layers.conv(self.features, self.kernel, self.stride, name="conv")(x)
      y = layers.relu(layers.batch_norm(train, "bn")(y))
      if se is not None:
        y = se(y)
    else:
      y = x
      if self.op == "mbconv":
        y = layers.conv(c_in * self.expansion, 1, name="expand_conv")(y)
        y = layers.relu(layers.batch_norm(train, "expand_bn")(y))
      hidden = y.shape[-1]
      y = layers.conv(hidden, self.kernel, self.stride, groups=hidden, name="dw_conv")(y)
      y = layers.relu(layers.batch_norm(train, "dw_bn")(y))
      if se is not None:
        y = se(y)
      y = layers.conv(self.features, 1, name="project_conv")(y)
      y = layers.batch_norm(train, "project_bn")(y)
    if self.stride == 1 and c_in == self.features:
      y = x + y
    return y


class MobileNet(nn.Module):
  """Stem -> ``blocks`` -> 1x1 head -> GAP -> linear (see the module docstring).

  Stage taps are the outputs of the last block before each stride-2 block, plus the last block
  (for MobileNetV2: blocks 1, 2, 4 and 6, RepDistiller's ``f1..f4``); ``pre_pool`` is the head.
  """
  blocks: Sequence[BlockSpec]
  stem_features: int = 32
  head_features: int = 1280
  stem_stride: int = 2
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, enc=None, *, train: bool = False) -> layers.Features:
    del enc  # the structure is fixed by the block specs
    x = layers.conv(self.stem_features, 3, self.stem_stride, name="stem_conv")(x)
    x = layers.relu(layers.batch_norm(train, "stem_bn")(x))
    stages = []
    for i, block in enumerate(self.blocks):
      for r in range(block.repeats):
        x = MobileLayer(block.op, block.features, block.kernel, block.expansion, block.se,
                        block.stride if r == 0 else 1, name=f"block{i}_layer{r}")(x, train)
      if i == len(self.blocks) - 1 or self.blocks[i + 1].stride != 1:
        stages.append(x)
    x = layers.conv(self.head_features, 1, name="head_conv")(x)
    pre_pool = layers.relu(layers.batch_norm(train, "head_bn")(x))
    return layers.features_dict(stages, pre_pool, layers.classifier(self.num_classes))


def mobilenetv2_blocks(expansion: int = 6, width_mult: float = 1.0,
                       depth_mult: float = 1.0) -> tuple[BlockSpec, ...]:
  """RepDistiller's CIFAR MobileNetV2 body as block specs (widths ``int(c * width_mult)``, at least 1).

  ``depth_mult`` scales every block's repeat count to ``ceil(n * depth_mult)`` (EfficientNet's
  depth rule), so 1.0 is MobileNetV2 and no block ever disappears.
  """
  return tuple(
      BlockSpec("mbconv", 3, 1 if i == 0 else expansion, False, max(1, int(c * width_mult)),
                int(math.ceil(n * depth_mult - 1e-9)), s)
      for i, (c, n, s) in enumerate(MOBILENETV2_ROWS))


def mobilenetv2_head(width_mult: float) -> int:
  """MobileNetV2's last 1x1 conv width: 1280, scaled only when ``width_mult > 1``."""
  return int(1280 * width_mult) if width_mult > 1.0 else 1280


def mobilenetv2(num_classes: int = 10, expansion: int = 6, width_mult: float = 1.0,
                stem_stride: int = 2, depth_mult: float = 1.0) -> MobileNet:
  """RepDistiller's ``mobilenetv2_T_w(T=expansion, W=width_mult)`` (see the module docstring);
  ``depth_mult`` scales the repeat counts (see :func:`mobilenetv2_blocks`)."""
  if depth_mult <= 0 or width_mult <= 0:
    raise ValueError(f"mobilenetv2: width_mult and depth_mult must be > 0, got {width_mult}, {depth_mult}")
  return MobileNet(blocks=mobilenetv2_blocks(expansion, width_mult, depth_mult),
                   stem_features=max(1, int(32 * width_mult)), head_features=mobilenetv2_head(width_mult),
                   stem_stride=stem_stride, num_classes=num_classes)
