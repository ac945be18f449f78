"""Functional embeddings of students for the DaSS predictor (Lee, An, Kim, Hwang, ICLR 2023).

A student's embedding is the last stage's output feature map of the student whose parameters are
remapped from the teacher (:func:`jdanas.meta.remap`), for a fixed noise input; the teacher's embedding
is the same map of the teacher. No data is needed. The official code ships these maps only as a
precomputed archive; the noise it used is not released. jdanas's choice (a documented design decision):
``num_noise`` images of i.i.d. N(0, 1) pixels drawn from ``key`` (one fixed key per study), BatchNorm in
eval mode with the remapped running statistics, and the maps averaged over the noise images.

With ``copy_paste_first`` remapping every student's weights are slices of the teacher's, so
:func:`embed_students` computes a whole population in one program: the space's masked network with
the teacher's variables and each student's encoding as input (exactly the sliced students; tested).
Other remapping modes embed each student with its exact network (:func:`embed_exact`).
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jdanas.meta.remap import remap
from jdanas.spaces.dass import DassSpace


def noise_input(key: jax.Array, space: DassSpace, num_noise: int = 1) -> jax.Array:
  """``float32[num_noise, H, W, 3]`` N(0, 1) images of the space's ``image_size``."""
  return jax.random.normal(key, (num_noise, space.image_size, space.image_size, 3), jnp.float32)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _masked_maps(space: DassSpace, num_classes: int, chunk: int, variables, noise, encs):
  module = space.masked_module(num_classes)

  def one(enc):
    return jnp.mean(module.apply(variables, noise, enc, train=False)["pre_pool"], axis=0)

  return jax.lax.map(one, encs, batch_size=chunk)


def embed_students(space: DassSpace, teacher_variables: Any, encs: Any, noise: jax.Array, *,
                   num_classes: int, chunk: int = 32) -> jax.Array:
  """``float32[N, h, w, C]``: the ``copy_paste_first`` functional embedding of each student in ``encs``
  (``int[N, D]``), all in one compiled program. The teacher's variables are shared (not batched), so
  ``chunk`` students at a time run as one convolution over ``chunk x num_noise`` images; ``chunk``
  bounds the memory. Each distinct ``(N, chunk)`` compiles once."""
  encs = np.asarray(encs)
  if encs.ndim != 2 or encs.shape[0] < 1:
    raise ValueError(f"embed_students: encs must be int[N, D] with N >= 1, got shape {encs.shape}")
  encs = jnp.asarray(np.stack([space.check(e) for e in encs]), jnp.int32)
  return _masked_maps(space, int(num_classes), max(1, min(int(chunk), encs.shape[0])), teacher_variables,
                      noise, encs)


def embed_exact(space: DassSpace, teacher_variables: Any, enc: Any, noise: jax.Array, *, num_classes: int,
                mode: str = "copy_paste_first") -> jax.Array:
  """``float32[h, w, C]``: one student's embedding through its exact network and ``remap(mode)``."""
  module = space.build(space.signature(enc), int(num_classes))
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), noise[:1], train=False))
  variables = remap(teacher_variables, shapes, mode)
  return jnp.mean(module.apply(variables, noise, train=False)["pre_pool"], axis=0)


def embed_teacher(space: DassSpace, teacher_variables: Any, noise: jax.Array, *, num_classes: int) -> jax.Array:
  """``float32[h, w, C]``: the teacher's embedding (its own last-stage map for the same noise)."""
  module = space.teacher(int(num_classes))
  return jnp.mean(module.apply(teacher_variables, noise, train=False)["pre_pool"], axis=0)
