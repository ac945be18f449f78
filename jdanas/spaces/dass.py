"""The DaSS student space (Lee, An, Kim, Hwang; ICLR 2023): sub-networks of the ResNet-42 teacher.

The teacher skeleton is :class:`jdanas.models.dass_resnet.DassResNet` with 5 blocks per stage and
widths 32/64/128/256. A student has, per stage, a depth ``d in 1..max_depth`` and, per block, a width
multiplier ``m in multipliers`` (default 0.5, 0.5625, ..., 1.0: step 1/16) of the stage width. The stem
width is the first block's width.

Encoding (``int32[S + S * max_depth]``; the paper's 181-d layout was never released, this one is ours):

* decisions ``0 .. S-1``: the depth index of each stage (``depth = index + 1``);
* decision ``S + s * max_depth + b``: the multiplier index of block ``b`` of stage ``s``; inactive when
  ``b >= depth_s`` (canonical value 0).

``pin_last=True`` (default) fixes the last block of the last stage to the full width, as the official
code implies (the teacher's classifier is copied whole into the student and the functional embedding
has the teacher's channel count): that block's decision is then inactive, and the last stage has only
``max_depth - 1`` width decisions (its block ``max_depth - 1``, when present, is always the last one), so
``D = S + S * max_depth - 1``. Readable names list the block
widths per stage: ``"18.32|64|128.96|256"``.

``image_size`` (64 in the paper; 32 for CIFAR-sized data) is the input size the DaSS embeddings and
costs use (:func:`jdanas.meta.embed`); the networks themselves take any size divisible by 8.

Networks: :meth:`DassSpace.build` gives the exact student (one program per architecture; training and
zero-cost scoring use it). :meth:`DassSpace.masked_module` gives the teacher-sized
:class:`~jdanas.models.dass_resnet.MaskedDassResNet` that takes the encoding as a traced input (same
parameter names: ``stem_conv``, ``stage{s}_block{b}``, ``classifier``): with the teacher's weights it
computes every ``copy_paste_first``-remapped student in one program (:func:`jdanas.meta.embed`).

``DassSpace(masked=True)`` is the training form the meta-dataset builder uses (:mod:`jdanas.meta.tasks`):
``build`` returns that masked network for every architecture (signature ``()``: one compiled program
for a whole population). Started from the teacher's variables, a student trained in it is exactly the
``copy_paste_first``-remapped student trained alone (unused channels get zero gradients; weight decay
only shrinks weights the student never reads), and its exact variables are
``remap(trained, student_shapes)``. It is not a registry space: zero-cost proxies that read every
BatchNorm or weight (Zen, SynFlow, ...) would see the unused channels, so score the exact form.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Hashable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jdanas.models.dass_resnet import DassResNet, MaskedDassResNet
from jdanas.spaces.base import ConditionalSpace

MULTIPLIERS = tuple(0.5 + i / 16 for i in range(9))


@dataclasses.dataclass(frozen=True)
class DassSpace(ConditionalSpace):
  stage_widths: tuple[int, ...] = (32, 64, 128, 256)
  max_depth: int = 5
  multipliers: tuple[float, ...] = MULTIPLIERS
  pin_last: bool = True
  image_size: int = 64
  masked: bool = False
  name = "dass_resnet"

  def __post_init__(self):
    if not (len(self.stage_widths) >= 1 and all(isinstance(w, (int, np.integer)) and w >= 1
                                                for w in self.stage_widths)):
      raise ValueError(f"dass_resnet.stage_widths: need positive ints, got {self.stage_widths!r}")
    if not (isinstance(self.max_depth, (int, np.integer)) and self.max_depth >= 1):
      raise ValueError(f"dass_resnet.max_depth: need an int >= 1, got {self.max_depth!r}")
    m = self.multipliers
    if not (len(m) >= 1 and all(0 < v <= 1 for v in m) and list(m) == sorted(set(m))):
      raise ValueError(f"dass_resnet.multipliers: need increasing values in (0, 1], got {m!r}")
    for w in self.stage_widths:
      for v in m:
        if abs(v * w - round(v * w)) > 1e-9 or round(v * w) < 1:
          raise ValueError(f"dass_resnet.multipliers: {v} x stage width {w} is not a whole channel count")
    if not (isinstance(self.image_size, (int, np.integer)) and self.image_size >= 8 and self.image_size % 8 == 0):
      raise ValueError(f"dass_resnet.image_size: need a multiple of 8 (three stride-2 stages), got {self.image_size!r}")

  # ---- structure ----------------------------------------------------------------------------------
  @property
  def num_stages(self) -> int:
    return len(self.stage_widths)

  @property
  def num_slots(self) -> int:
    """Width decisions: one per block slot, less the always-pinned last slot of the last stage."""
    return self.num_stages * self.max_depth - int(self.pin_last)

  @property
  def num_choices(self) -> tuple[int, ...]:
    return (self.max_depth,) * self.num_stages + (len(self.multipliers),) * self.num_slots

  def _slots(self, enc: jax.Array) -> jax.Array:
    """``int32[S, max_depth]`` multiplier index of every block slot (0 in the removed pinned slot)."""
    flat = jnp.asarray(enc, jnp.int32)[self.num_stages:]
    if self.pin_last:
      flat = jnp.concatenate([flat, jnp.zeros((1,), jnp.int32)])
    return flat.reshape(self.num_stages, self.max_depth)

  def decision_kinds(self) -> tuple[str, ...]:
    return ("ordinal",) * self.num_decisions

  def _width_table(self) -> np.ndarray:
    """``int32[S, M]``: the width of each multiplier in each stage."""
    return np.asarray([[round(v * w) for v in self.multipliers] for w in self.stage_widths], np.int32)

  def _pinned(self, depths: jax.Array) -> jax.Array:
    """``bool[S, B]``: the slot whose width is fixed to the stage width (the last block of the last stage)."""
    s, b = self.num_stages, self.max_depth
    last = (jnp.arange(s)[:, None] == s - 1) & (jnp.arange(b)[None, :] == depths[-1] - 1)
    return last & self.pin_last

  def active(self, enc: jax.Array) -> jax.Array:
    enc = jnp.asarray(enc, jnp.int32)
    s, b = self.num_stages, self.max_depth
    depths = enc[:s] + 1
    present = jnp.arange(b)[None, :] < depths[:, None]
    slots = (present & ~self._pinned(depths)).reshape(-1)[:self.num_slots]
    return jnp.concatenate([jnp.ones((s,), bool), slots])

  def block_widths(self, enc: jax.Array) -> jax.Array:
    """``int32[S, max_depth]`` block widths, 0 for absent blocks (jittable)."""
    enc = jnp.asarray(enc, jnp.int32)
    s, b = self.num_stages, self.max_depth
    depths = enc[:s] + 1
    table = jnp.asarray(self._width_table())
    widths = jnp.take_along_axis(table, self._slots(enc), axis=1)
    widths = jnp.where(self._pinned(depths), jnp.asarray(self.stage_widths, jnp.int32)[:, None], widths)
    return jnp.where(jnp.arange(b)[None, :] < depths[:, None], widths, 0).astype(jnp.int32)

  def widths(self, enc: Any) -> tuple[tuple[int, ...], ...]:
    """Host side: the exact architecture, one tuple of block widths per stage."""
    w = np.asarray(self.block_widths(jnp.asarray(self.check(enc))))
    return tuple(tuple(int(v) for v in row if v > 0) for row in w)

  @property
  def teacher_encoding(self) -> np.ndarray:
    """The full network (every stage ``max_depth`` blocks at full width): the DaSS teacher."""
    enc = np.zeros(self.num_decisions, np.int32)
    enc[:self.num_stages] = self.max_depth - 1
    enc[self.num_stages:] = len(self.multipliers) - 1  # canonicalize clears the pinned and absent slots
    return np.asarray(self.canonicalize(jnp.asarray(enc)))

  # ---- host side ----------------------------------------------------------------------------------
  def encode(self, arch: str) -> np.ndarray:
    stages = str(arch).strip().split("|")
    if len(stages) != self.num_stages:
      raise ValueError(f"{self.name}: name must have {self.num_stages} stages separated by '|', got {arch!r}")
    table = self._width_table()
    enc = np.zeros(self.num_decisions, np.int32)
    for s, text in enumerate(stages):
      try:
        widths = [int(v) for v in text.split(".")]
      except ValueError:
        raise ValueError(f"{self.name}: stage {s + 1} of {arch!r} must be block widths joined by '.'") from None
      if not 1 <= len(widths) <= self.max_depth:
        raise ValueError(f"{self.name}: stage {s + 1} of {arch!r} has {len(widths)} blocks; allowed 1..{self.max_depth}")
      enc[s] = len(widths) - 1
      for b, w in enumerate(widths):
        last = self.pin_last and s == self.num_stages - 1 and b == len(widths) - 1
        if last:
          if w != self.stage_widths[s]:
            raise ValueError(f"{self.name}: the last block of {arch!r} must have {self.stage_widths[s]} channels "
                             "(pin_last=True)")
          continue
        hits = np.nonzero(table[s] == w)[0]
        if not hits.size:
          raise ValueError(f"{self.name}: width {w} in stage {s + 1} of {arch!r} is not one of {table[s].tolist()}")
        enc[self.num_stages + s * self.max_depth + b] = int(hits[0])
    return enc

  def decode(self, enc: Any) -> str:
    return "|".join(".".join(str(w) for w in stage) for stage in self.widths(enc))

  def signature(self, enc: Any) -> Hashable:
    return () if self.masked else self.widths(enc)

  def build(self, signature: Hashable, num_classes: int) -> nn.Module:
    if self.masked:
      return self.masked_module(num_classes)
    return DassResNet(widths=tuple(tuple(s) for s in signature), num_classes=num_classes)

  def masked_module(self, num_classes: int) -> MaskedDassResNet:
    """The teacher-sized network called as ``apply(variables, x, enc)`` with this space's encoding."""
    exact = dataclasses.replace(self, masked=False)  # the widths function must not depend on the form
    return MaskedDassResNet(stage_widths=self.stage_widths, max_depth=self.max_depth, num_classes=num_classes,
                            to_widths=exact.block_widths)

  def cost_module(self, enc: Any, num_classes: int) -> nn.Module:
    return DassResNet(widths=self.widths(enc), num_classes=num_classes)

  def teacher(self, num_classes: int) -> DassResNet:
    """The exact teacher network (the full architecture)."""
    return self.cost_module(self.teacher_encoding, num_classes)


def encoding_features(space: DassSpace, enc: jax.Array) -> jax.Array:
  """The fixed-length architecture vector the DaSS predictor reads (jittable): the depth one-hot
  (``S x max_depth``) and, per block slot, a one-hot over the multipliers plus an "absent" state
  (``S x max_depth x (M + 1)``); a pinned slot reads as the full-width multiplier. ``float32[F]``."""
  enc = space.canonicalize(enc)
  s, b, m = space.num_stages, space.max_depth, len(space.multipliers)
  depth_hot = jax.nn.one_hot(enc[:s], b).reshape(-1)
  depths = enc[:s] + 1
  present = jnp.arange(b)[None, :] < depths[:, None]
  idx = space._slots(enc)
  idx = jnp.where(space._pinned(depths), m - 1, idx)
  idx = jnp.where(present, idx, m)  # the "absent" state
  return jnp.concatenate([depth_hot, jax.nn.one_hot(idx, m + 1).reshape(-1)]).astype(jnp.float32)
