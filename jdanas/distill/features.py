"""Feature-matching distillation losses: functions of ``(student, teacher)`` arrays, per example.

Each returns ``float32[B]``; the batch mean is the paper's loss (RepDistiller's constants).

* :func:`fitnet_loss` -- FitNet hints (Romero et al., ICLR 2015, https://arxiv.org/abs/1412.6550)
  without the regressor: squared error of equal-shape features.
* :func:`at_loss` -- attention transfer (Zagoruyko & Komodakis, ICLR 2017,
  https://arxiv.org/abs/1612.03928).
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from jdanas.distill.relations import l2_normalize


def fitnet_loss(student: jax.Array, teacher: jax.Array) -> jax.Array:
  """Per-example mean squared error of equal-shape features (``float32[B]``)."""
  if student.shape != teacher.shape:
    raise ValueError(f"fitnet_loss: shapes differ ({student.shape} vs {teacher.shape})")
  d = (student.astype(jnp.float32) - teacher.astype(jnp.float32)).reshape(student.shape[0], -1)
  return jnp.mean(jnp.square(d), axis=1)


def _pool_to(am: jax.Array, size: tuple[int, int]) -> jax.Array:
  """Average-pools ``[B, H, W]`` down to ``size`` (integer factors only)."""
  b, h, w = am.shape
  fh, fw = h // size[0], w // size[1]
  if fh * size[0] != h or fw * size[1] != w:
    raise ValueError(f"at_loss: spatial sizes {(h, w)} and {size} are not integer multiples")
  return am.reshape(b, size[0], fh, size[1], fw).mean(axis=(2, 4))


def at_loss(student_stages: Sequence[jax.Array], teacher_stages: Sequence[jax.Array], p: float = 2.0) -> jax.Array:
  """Per-example attention-transfer loss (RepDistiller's ``Attention``).

  A stage's attention map is the channel mean of ``|f|^p`` (NHWC), flattened and L2-normalised per
  example; the loss sums over paired stages the mean squared difference of the maps. Stages are
  paired from the last one backwards (``min`` of the two counts). When a pair's spatial sizes
  differ, the larger map is average-pooled to the smaller size before normalisation (integer
  factors only).

  Returns:
    ``float32[B]``.
  """
  k = min(len(student_stages), len(teacher_stages))
  if k == 0:
    raise ValueError("at_loss: need at least one stage of each network")
  total = 0.0
  for fs, ft in zip(student_stages[-k:], teacher_stages[-k:]):
    ms = jnp.mean(jnp.abs(fs.astype(jnp.float32)) ** p, axis=-1)
    mt = jnp.mean(jnp.abs(ft.astype(jnp.float32)) ** p, axis=-1)
    size = (min(ms.shape[1], mt.shape[1]), min(ms.shape[2], mt.shape[2]))
    ms, mt = _pool_to(ms, size), _pool_to(mt, size)
    a_s = l2_normalize(ms.reshape(ms.shape[0], -1), axis=1)
    a_t = l2_normalize(mt.reshape(mt.shape[0], -1), axis=1)
    total = total + jnp.mean(jnp.square(a_s - a_t), axis=1)
  return total
