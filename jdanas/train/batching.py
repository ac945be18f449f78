"""Device-side input pipeline: deterministic batches and augmentation under jit.

Batch ``step`` is a pure function of ``(key, step)``: each epoch is a fresh permutation
``permutation(fold_in(key, epoch), N)`` and the step takes its slice, so a resumed run sees exactly
the batches an uninterrupted one would. The last incomplete batch of an epoch is dropped.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp


def batch_indices(key: jax.Array, step: jax.Array, num_examples: int, batch_size: int) -> jax.Array:
  """``int32[batch_size]`` indices of batch ``step`` (deterministic, without replacement per epoch)."""
  steps_per_epoch = num_examples // batch_size
  epoch = step // steps_per_epoch
  perm = jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)
  start = (step % steps_per_epoch) * batch_size
  return jax.lax.dynamic_slice_in_dim(perm, start, batch_size).astype(jnp.int32)


def normalize(x_uint8: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
  x = x_uint8.astype(jnp.float32) / 255.0
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def augment(key: jax.Array, x: jax.Array, pad: int, flip: bool = True) -> jax.Array:
  """Random crop after zero padding by ``pad`` pixels, and random horizontal flip. ``x``: [B,H,W,C]."""
  b, h, w, _ = x.shape
  key_crop, key_flip = jax.random.split(key)
  if pad > 0:
    padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = jax.random.randint(key_crop, (b, 2), 0, 2 * pad + 1)
    crop = lambda img, off: jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, img.shape[-1]))
    x = jax.vmap(crop)(padded, offsets)
  if flip:
    do_flip = jax.random.bernoulli(key_flip, 0.5, (b, 1, 1, 1))
    x = jnp.where(do_flip, x[:, :, ::-1, :], x)
  return x


def default_pad(image_size: int) -> int:
  """4 pixels for 32x32 (the CIFAR convention), scaled with the image size (1 for 8x8)."""
  return max(1, image_size // 8)
