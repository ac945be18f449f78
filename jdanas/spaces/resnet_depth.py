"""DisWOT's S1 space: CIFAR ResNets with per-stage depths (Dong et al., CVPR 2023,
https://arxiv.org/abs/2303.15678; "mutable ResNet20" in the official code).

Stem 16, stage widths 16/32/64, strides 1/2/2, basic blocks, option-B shortcuts; each stage
has ``d in {1, 3, 5, 7}`` blocks (4^3 = 64 students). Names are the three depths as digits,
e.g. ``'557'``, exactly as in DisWOT's ground-truth files.

Two forms share the encoding and the parameter names (``stage{s}_block{b}``):

* ``masked=False`` (``s1_resnet``): one module per student; signature = the depths, so every
  student is its own compiled program.
* ``masked=True`` (``s1_resnet_masked``): one module with ``max(depth_choices)`` blocks per stage
  whose depths are the traced ``enc`` input: block ``b >= 1`` of stage ``s`` computes
  ``where(b < depth_s, block(x), x)`` (an identity residual when skipped; block 0 carries the
  stride and always runs), so all 64 students share ONE compiled program (signature ``()``).
  Skipped blocks get zero gradients, and their BatchNorm running statistics (unused by the
  student) still move. Outputs equal the per-student module's; the price is the FLOPs of the
  deepest student per step. Params and FLOPs always come from the exact student
  (:meth:`ResNetDepthSpace.cost_module`); :meth:`ResNetDepthSpace.specialize` gives the masked
  layout with the depths fixed at trace time (only the student's blocks run).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Hashable

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jdanas.models import layers
from jdanas.models.resnet import BasicBlock, CifarResNet
from jdanas.spaces.base import AbstractSearchSpace, to_tuple


class MaskedCifarResNet(nn.Module):
  """CIFAR ResNet with per-stage depths from the traced ``enc`` (indices into ``depth_choices``),
  or fixed at trace time by ``static_depths`` (masked variable layout; see the module docstring)."""
  depth_choices: tuple[int, ...] = (1, 3, 5, 7)
  widths: tuple[int, ...] = (16, 32, 64)
  stem: int = 16
  num_classes: int = 10
  static_depths: tuple[int, ...] | None = None

  @nn.compact
  def __call__(self, x, enc=None, *, train: bool = False) -> layers.Features:
    if self.static_depths is None and enc is None:
      raise ValueError("the masked S1 ResNet needs the depth encoding `enc`")
    depths = (self.static_depths if self.static_depths is not None
              else jnp.asarray(self.depth_choices, jnp.int32)[jnp.asarray(enc, jnp.int32)])
    x = layers.conv(self.stem, 3, name="stem_conv")(x)
    x = layers.relu(layers.batch_norm(train, "stem_bn")(x))
    stages = []
    for s, width in enumerate(self.widths):
      for b in range(max(self.depth_choices)):
        block = BasicBlock(width, 2 if (s > 0 and b == 0) else 1, name=f"stage{s + 1}_block{b}")
        if b == 0:
          x = block(x, train)
        elif self.static_depths is None:
          x = jnp.where(b < depths[s], block(x, train), x)
        elif b < self.static_depths[s]:
          x = block(x, train)
        elif self.is_initializing():
          block(x, train)  # create the skipped block's variables: the masked layout
      stages.append(x)
    return layers.features_dict(stages, x, layers.classifier(self.num_classes))


@dataclasses.dataclass(frozen=True)
class ResNetDepthSpace(AbstractSearchSpace):
  depth_choices: tuple[int, ...] = (1, 3, 5, 7)
  widths: tuple[int, ...] = (16, 32, 64)
  stem: int = 16
  masked: bool = False
  name = "s1_resnet"

  def __post_init__(self):
    d = self.depth_choices
    if not (len(d) > 0 and all(isinstance(v, (int, np.integer)) and 1 <= v <= 9 for v in d)
            and len(set(d)) == len(d)):
      raise ValueError(f"s1_resnet.depth_choices: need distinct ints in 1..9 (one digit per stage), got {d!r}")

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
    return () if self.masked else self.depths(enc)

  def build(self, signature: Hashable, num_classes: int) -> nn.Module:
    if self.masked:
      return MaskedCifarResNet(depth_choices=tuple(self.depth_choices), widths=tuple(self.widths),
                               stem=self.stem, num_classes=num_classes)
    return CifarResNet(depths=tuple(signature), widths=self.widths, stem=self.stem, num_classes=num_classes)

  def cost_module(self, enc: Any, num_classes: int) -> nn.Module:
    return CifarResNet(depths=self.depths(enc), widths=self.widths, stem=self.stem, num_classes=num_classes)

  def specialize(self, enc: Any, num_classes: int) -> nn.Module | None:
    if not self.masked:
      return None
    return MaskedCifarResNet(depth_choices=tuple(self.depth_choices), widths=tuple(self.widths), stem=self.stem,
                             num_classes=num_classes, static_depths=self.depths(enc))
