"""MnasNet-style factorized hierarchical space (Tan et al., "MnasNet: Platform-Aware Neural
Architecture Search for Mobile", CVPR 2019, https://arxiv.org/abs/1807.11626) on the CIFAR
MobileNetV2 skeleton (Sandler et al., CVPR 2018) of :mod:`jdanas.models.mobilenetv2`, as used by
AKD (Liu et al., "Search to Distill", CVPR 2020) for distillation-aware search.

Skeleton (32x32 inputs): stem conv3x3 with ``int(32 * base_width)`` channels (stride
``stem_stride``; 2 as in RepDistiller's CIFAR MobileNetV2) -> the 7 MobileNetV2 blocks -> conv1x1
head (1280, or ``int(1280 * base_width)`` when ``base_width > 1``) -> global pool -> linear. Block
``b`` has MobileNetV2's base width ``c_b * base_width`` (``c = 16, 24, 32, 64, 96, 160, 320``),
base repeat count ``n_b`` (``1, 2, 3, 4, 3, 3, 1``) and first stride (``1, 1, 2, 2, 1, 2, 1``).

Each block searches ONE layer type, repeated in the whole block (MnasNet's factorization), with
6 decisions in this order (42 decisions in all):

0. conv type: ``mbconv`` (mobile inverted bottleneck), ``sepconv`` (depthwise-separable conv),
   ``conv`` (regular conv); see :class:`jdanas.models.mobilenetv2.MobileLayer`;
1. kernel size: 3, 5;
2. expansion: 3, 6 (only read by ``mbconv``);
3. squeeze-and-excite: off, on (ratio 0.25);
4. width multiplier: 0.75, 1.0, 1.25 of the block's base width, rounded to a multiple of 8 (at
   least 8, never more than 10% below the unrounded width: MobileNet's ``make_divisible``);
5. layer delta: -1, 0, +1 on the block's base repeat count (never below 1 layer).

MnasNet's SkipOp decision is not searched: every layer has MobileNetV2's identity residual when
its stride is 1 and its input and output widths agree. Every combination is valid.

Strings: the 7 block tokens joined by ``'|'``, each
``<op>_e<3|6>_k<3|5>_se<0|1>_w<0.75|1.0|1.25>_l<-1|+0|+1>`` (op, expansion, kernel, SE, width
multiplier, layer delta), e.g. ``'mbconv_e6_k3_se0_w1.0_l+0'``. Every decision appears (the
expansion too, even where it is inactive), so strings and encodings are in bijection; ``encode``
accepts exactly the strings ``decode`` writes. The signature is the tuple of resolved
:class:`~jdanas.models.mobilenetv2.BlockSpec` (actual widths, repeat counts, and expansion 1
unless the block is ``mbconv``), so architectures that build the same network share a signature.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Hashable

import flax.linen as nn
import numpy as np

from jdanas.models.mobilenetv2 import (LAYER_TYPES, MOBILENETV2_ROWS, BlockSpec, MobileNet,
                                       mobilenetv2_head)
from jdanas.spaces.base import AbstractSearchSpace, to_tuple

KERNELS = (3, 5)
EXPANSIONS = (3, 6)
SE_CHOICES = (False, True)
WIDTH_MULTS = (0.75, 1.0, 1.25)
LAYER_DELTAS = (-1, 0, 1)
BLOCK_CHOICES = (len(LAYER_TYPES), len(KERNELS), len(EXPANSIONS), len(SE_CHOICES),
                 len(WIDTH_MULTS), len(LAYER_DELTAS))
TOKEN_FORMAT = "<op>_e<3|6>_k<3|5>_se<0|1>_w<0.75|1.0|1.25>_l<-1|+0|+1>"


def block_token(decisions: tuple[int, ...]) -> str:
  """The readable token of one block's 6 decision indices."""
  op, k, e, se, w, d = decisions
  return (f"{LAYER_TYPES[op]}_e{EXPANSIONS[e]}_k{KERNELS[k]}_se{int(SE_CHOICES[se])}"
          f"_w{WIDTH_MULTS[w]}_l{LAYER_DELTAS[d]:+d}")


_TOKENS = {block_token(d): d for d in itertools.product(*(range(n) for n in BLOCK_CHOICES))}


def make_divisible(value: float, divisor: int = 8) -> int:
  """Nearest multiple of ``divisor`` (at least ``divisor``), at most 10% below ``value``."""
  rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
  if rounded < 0.9 * value:
    rounded += divisor
  return rounded


@dataclasses.dataclass(frozen=True)
class MobileNetSpace(AbstractSearchSpace):
  """MnasNet-style per-block search on CIFAR MobileNetV2 (see the module docstring)."""
  base_width: float = 0.5
  stem_stride: int = 2
  name = "mobilenet"

  @property
  def num_choices(self) -> tuple[int, ...]:
    return BLOCK_CHOICES * len(MOBILENETV2_ROWS)

  def _blocks(self, enc: Any) -> list[tuple[int, ...]]:
    d = len(BLOCK_CHOICES)
    flat = to_tuple(self.check(enc))
    return [flat[i:i + d] for i in range(0, len(flat), d)]

  def encode(self, arch: str) -> np.ndarray:
    tokens = str(arch).strip().split("|")
    if len(tokens) != len(MOBILENETV2_ROWS):
      raise ValueError(f"{self.name}: name must be {len(MOBILENETV2_ROWS)} block tokens joined by '|', "
                       f"got {len(tokens)} in {arch!r}")
    out = []
    for b, token in enumerate(tokens):
      if token not in _TOKENS:
        raise ValueError(f"{self.name}: block {b} token {token!r} is malformed; expected {TOKEN_FORMAT} "
                         f"with op in {', '.join(LAYER_TYPES)}")
      out.extend(_TOKENS[token])
    return np.asarray(out, np.int32)

  def decode(self, enc: Any) -> str:
    return "|".join(block_token(block) for block in self._blocks(enc))

  def signature(self, enc: Any) -> Hashable:
    specs = []
    for (op, k, e, se, w, d), (c, n, s) in zip(self._blocks(enc), MOBILENETV2_ROWS):
      layer_type = LAYER_TYPES[op]
      specs.append(BlockSpec(
          op=layer_type, kernel=KERNELS[k],
          expansion=EXPANSIONS[e] if layer_type == "mbconv" else 1, se=SE_CHOICES[se],
          features=make_divisible(c * self.base_width * WIDTH_MULTS[w]),
          repeats=max(1, n + LAYER_DELTAS[d]), stride=s))
    return tuple(specs)

  def build(self, signature: Hashable, num_classes: int) -> nn.Module:
    return MobileNet(blocks=tuple(BlockSpec(*b) for b in signature),
                     stem_features=int(32 * self.base_width),
                     head_features=mobilenetv2_head(self.base_width),
                     stem_stride=self.stem_stride, num_classes=num_classes)
