"""The ResNet family of DaSS (Lee, An, Kim, Hwang; "Meta-prediction Model for Distillation-Aware NAS on
Unseen Datasets", ICLR 2023): four stages of BasicBlocks with parameter-free shortcuts.

* Stem: 3x3 conv (no bias) + BN + ReLU, no max-pool; its width is the first block's width.
* Stages with strides 1, 2, 2, 2. A block is ``conv3x3(stride) BN ReLU conv3x3 BN``, added to a
  parameter-free shortcut, then ReLU. The shortcut 2x2-max-pools for stride 2 and zero-pads (or
  truncates) channels to the block's width, so every block may have its own width.
* Global average pool, linear classifier.

The teacher "ResNet-42" is 5 blocks per stage with widths 32/64/128/256. Two forms:

* :class:`DassResNet`: the exact network of one architecture (``widths[s][b]`` per block; a stage's
  depth is ``len(widths[s])``).
* :class:`MaskedDassResNet`: the teacher-sized network with the architecture as a traced input
  (``block_widths int32[S, B]``, 0 for an absent block): block ``b`` of stage ``s`` runs its first
  ``block_widths[s, b]`` output channels (the others are multiplied by 0) and a block with width 0 is
  an identity (block 0 of each stage always runs). With the first channels and the first blocks of
  the teacher's weights, its outputs equal the exact student's whose weights are those slices (the
  ``copy_paste_first`` remapping, :func:`jdanas.meta.remap`), so many students share one program
  and one set of weights. Masked channels get zero gradients.
"""
from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jdanas.models import layers


def shortcut(x: jax.Array, width: int, stride: int) -> jax.Array:
  """The parameter-free shortcut: 2x2 max-pool for stride 2, then zero-pad or truncate channels."""
  if stride == 2:
    x = nn.max_pool(x, (2, 2), (2, 2))
  c = x.shape[-1]
  if c < width:
    return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, width - c)])
  return x[..., :width]


class PadBlock(nn.Module):
  """BasicBlock with a parameter-free shortcut; ``mask`` (``[features]``, 0/1) keeps the first
  channels of the masked form (None: every channel)."""
  features: int
  stride: int = 1

  @nn.compact
  def __call__(self, x, train: bool, mask=None):
    keep = (lambda v: v) if mask is None else (lambda v: v * mask.astype(v.dtype))
    y = layers.conv(self.features, 3, self.stride, name="conv1")(x)
    y = keep(layers.relu(layers.batch_norm(train, "bn1")(y)))
    y = layers.conv(self.features, 3, 1, name="conv2")(y)
    y = keep(layers.batch_norm(train, "bn2")(y))
    return keep(layers.relu(shortcut(x, self.features, self.stride) + y))


STRIDES = (1, 2, 2, 2)


class DassResNet(nn.Module):
  """One architecture: ``widths[s]`` lists the widths of stage ``s``'s blocks (its depth is the length)."""
  widths: Sequence[Sequence[int]] = ((32,) * 5, (64,) * 5, (128,) * 5, (256,) * 5)
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, enc=None, *, train: bool = False) -> layers.Features:
    del enc  # the structure is fixed by ``widths``
    x = layers.conv(self.widths[0][0], 3, name="stem_conv")(x)
    x = layers.relu(layers.batch_norm(train, "stem_bn")(x))
    stages = []
    for s, stage in enumerate(self.widths):
      for b, width in enumerate(stage):
        x = PadBlock(width, STRIDES[s] if b == 0 else 1, name=f"stage{s + 1}_block{b}")(x, train)
      stages.append(x)
    return layers.features_dict(stages, x, layers.classifier(self.num_classes))


class MaskedDassResNet(nn.Module):
  """The teacher-sized network; ``enc`` is ``int32[S, B]`` block widths (0 = absent block), see the
  module docstring. ``stage_widths[s]`` is the full width of stage ``s``; ``to_widths`` (optional, jittable)
  turns another encoding into those block widths first (a space's ``block_widths``)."""
  stage_widths: Sequence[int] = (32, 64, 128, 256)
  max_depth: int = 5
  num_classes: int = 10
  to_widths: Callable[[jax.Array], jax.Array] | None = None

  @nn.compact
  def __call__(self, x, enc=None, *, train: bool = False) -> layers.Features:
    if enc is None:
      raise ValueError("the masked DaSS ResNet needs the block widths `enc` (int32[stages, max_depth])")
    widths = jnp.asarray(enc if self.to_widths is None else self.to_widths(enc), jnp.int32)
    first = self.stage_widths[0]
    stem_mask = jnp.arange(first) < widths[0, 0]
    x = layers.conv(first, 3, name="stem_conv")(x)
    x = layers.relu(layers.batch_norm(train, "stem_bn")(x)) * stem_mask.astype(x.dtype)
    stages = []
    for s, full in enumerate(self.stage_widths):
      for b in range(self.max_depth):
        block = PadBlock(full, STRIDES[s] if b == 0 else 1, name=f"stage{s + 1}_block{b}")
        y = block(x, train, jnp.arange(full) < widths[s, b])
        x = y if b == 0 else jnp.where(widths[s, b] > 0, y, x)
      stages.append(x)
    return layers.features_dict(stages, x, layers.classifier(self.num_classes))
