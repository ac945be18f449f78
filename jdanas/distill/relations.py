"""Feature-relation distillation losses used by "DisWOT as a distiller" (methods.md §2.5).

Two plain functions on arrays, per example (callers take the mean over the batch):

* :func:`ickd_loss` -- inter-channel correlation (ICKD: Liu et al., ICCV 2021,
  https://arxiv.org/abs/2202.03680; DisWOT's "semantic" similarity is a channel correlation of
  this form). For one example with feature map ``F`` reshaped to ``[HW, C]``, the channel Gram
  ``G = F^T F`` (``C x C``) has each row L2-normalised (``g / max(||g||, 1e-12)``, PyTorch's
  ``F.normalize``); the loss is ``sum((G_s - G_t)^2) / C``. Its batch mean is ICKD's
  ``sum over batch / (B * C)``.
* :func:`sp_loss` -- similarity preservation (SP: Tung & Mori, ICCV 2019,
  https://arxiv.org/abs/1907.09682; DisWOT's "relation" similarity). Each example's map is
  flattened; the batch Gram ``G = F F^T`` (``B x B``) has each row L2-normalised; example ``i``'s
  loss is row ``i`` of the squared difference summed, divided by ``B``, so the batch mean is SP's
  ``||G_s - G_t||_F^2 / B^2``. It couples the examples of a batch (by definition).

Channel-count mismatch (student ``C_s`` != teacher ``C_t``): SP compares ``B x B`` Grams, which
do not depend on channel counts or spatial sizes. ICKD's ``C x C`` Grams do, and the original
method learns a 1x1 projection of the student; jdanas keeps the loss parameter-free and maps the
larger channel axis onto the smaller one by area averaging (:func:`channel_pool`): target channel
``k`` of ``c`` is the overlap-weighted mean of the source channels in ``[k C/c, (k+1) C/c)``,
i.e. the mean of contiguous groups when ``c`` divides ``C``. Equal counts are compared channel to
channel. Spatial sizes may differ (the channel Gram sums over positions).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_EPS = 1e-12


def _row_normalize(g: jax.Array) -> jax.Array:
  """``g / max(||g||, eps)`` per row, with a finite gradient for all-zero rows (a dead ReLU
  channel): the norm's own gradient is NaN at 0, so the zero rows take a constant branch."""
  sq = jnp.sum(jnp.square(g), axis=-1, keepdims=True)
  big = sq > _EPS * _EPS
  norm = jnp.where(big, jnp.sqrt(jnp.where(big, sq, 1.0)), _EPS)
  return g / norm


def channel_pool_matrix(c_in: int, c_out: int) -> np.ndarray:
  """``float32[c_in, c_out]`` area-averaging map from ``c_in`` channels to ``c_out <= c_in``
  (columns sum to 1; see the module docstring)."""
  if not 1 <= c_out <= c_in:
    raise ValueError(f"channel_pool: need 1 <= c_out <= c_in, got c_in={c_in}, c_out={c_out}")
  edges = np.arange(c_out + 1) * (c_in / c_out)  # target bin k covers [edges[k], edges[k+1])
  lo, hi = np.arange(c_in)[:, None], np.arange(c_in)[:, None] + 1
  overlap = np.clip(np.minimum(hi, edges[None, 1:]) - np.maximum(lo, edges[None, :-1]), 0, None)
  return (overlap / overlap.sum(0, keepdims=True)).astype(np.float32)


def channel_pool(f: jax.Array, channels: int) -> jax.Array:
  """Area-averages the last (channel) axis of ``f`` down to ``channels``."""
  c = f.shape[-1]
  if c == channels:
    return f
  return f @ jnp.asarray(channel_pool_matrix(c, channels), f.dtype)


def channel_gram(f: jax.Array) -> jax.Array:
  """Row-normalised channel Gram per example: ``f`` ``[B, ..., C]`` -> ``[B, C, C]``."""
  f = f.reshape(f.shape[0], -1, f.shape[-1]).astype(jnp.float32)
  return _row_normalize(jnp.einsum("bpc,bpd->bcd", f, f))


def batch_gram(f: jax.Array) -> jax.Array:
  """Row-normalised batch Gram: ``f`` ``[B, ...]`` -> ``[B, B]``."""
  f = f.reshape(f.shape[0], -1).astype(jnp.float32)
  return _row_normalize(f @ f.T)


def ickd_loss(student: jax.Array, teacher: jax.Array) -> jax.Array:
  """Per-example inter-channel correlation loss (see the module docstring).

  Args:
    student: ``float[B, H, W, C_s]`` (or ``[B, C_s]``) student features.
    teacher: ``float[B, H', W', C_t]`` (or ``[B, C_t]``) teacher features.

  Returns:
    ``float32[B]``.
  """
  if student.shape[0] != teacher.shape[0]:
    raise ValueError(f"ickd_loss: batch sizes differ ({student.shape[0]} vs {teacher.shape[0]})")
  c = min(student.shape[-1], teacher.shape[-1])
  g_s = channel_gram(channel_pool(student, c))
  g_t = channel_gram(channel_pool(teacher, c))
  return jnp.sum(jnp.square(g_s - g_t), axis=(1, 2)) / c


def sp_loss(student: jax.Array, teacher: jax.Array) -> jax.Array:
  """Per-example similarity-preserving loss (see the module docstring).

  Args:
    student: ``float[B, ...]`` student features (any shape per example).
    teacher: ``float[B, ...]`` teacher features.

  Returns:
    ``float32[B]``; the mean is ``||G_s - G_t||_F^2 / B^2``.
  """
  if student.shape[0] != teacher.shape[0]:
    raise ValueError(f"sp_loss: batch sizes differ ({student.shape[0]} vs {teacher.shape[0]})")
  b = student.shape[0]
  return jnp.sum(jnp.square(batch_gram(student) - batch_gram(teacher)), axis=1) / b
