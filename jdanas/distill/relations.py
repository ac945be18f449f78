"""Relational distillation losses: functions of ``(student, teacher)`` arrays, per example.

Each returns ``float32[B]``; the batch mean is the paper's loss. Relational losses couple the
examples of a batch by definition (a Gram, distance or kernel matrix over the batch): example
``i``'s value is row ``i`` of that matrix's loss. All are usable as training losses: gradients are
finite everywhere, including at all-zero features (dead ReLU channels), where a plain L2 norm's
gradient is NaN.

* :func:`ickd_loss` -- inter-channel correlation (ICKD: Liu et al., ICCV 2021,
  https://arxiv.org/abs/2202.03680; DisWOT's "semantic" similarity is a channel correlation of
  this form). For one example with feature map ``F`` reshaped to ``[HW, C]``, the channel Gram
  ``G = F^T F`` (``C x C``) has each row L2-normalised (``g / max(||g||, 1e-12)``, PyTorch's
  ``F.normalize``); the loss is ``sum((G_s - G_t)^2) / C``. Its batch mean is ICKD's
  ``sum over batch / (B * C)``. Used by "DisWOT as a distiller" (Dong et al., CVPR 2023) and,
  on classifier gradients, by DisWOT's semantic proxy (:mod:`jdanas.distill.diswot`).
* :func:`sp_loss` -- similarity preservation (SP: Tung & Mori, ICCV 2019,
  https://arxiv.org/abs/1907.09682; DisWOT's "relation" similarity). Each example's map is
  flattened; the batch Gram ``G = F F^T`` (``B x B``) has each row L2-normalised; example ``i``'s
  loss is row ``i`` of the squared difference summed, divided by ``B``, so the batch mean is SP's
  ``||G_s - G_t||_F^2 / B^2``.
* :func:`rkd_loss` -- relational KD (Park et al., CVPR 2019, https://arxiv.org/abs/1904.05068):
  distance and angle terms with smooth-L1, RepDistiller's weights 25 and 50.
* :func:`pkt_loss` -- probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018,
  https://arxiv.org/abs/1803.10837): KL divergence of cosine-similarity kernels.

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


def safe_norm(x: jax.Array, axis: int = -1) -> jax.Array:
  """L2 norm over ``axis`` (kept), with gradient 0 instead of NaN where ``x`` is all zero."""
  sq = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
  nonzero = sq > 0
  return jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, sq, 1.0)), 0.0)


def l2_normalize(x: jax.Array, axis: int = -1) -> jax.Array:
  """``x / max(||x||, 1e-12)`` over ``axis`` (PyTorch's ``F.normalize``), with finite gradients at
  all-zero rows (a dead ReLU channel)."""
  return x / jnp.maximum(safe_norm(x, axis), _EPS)


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
  return l2_normalize(jnp.einsum("bpc,bpd->bcd", f, f))


def batch_gram(f: jax.Array) -> jax.Array:
  """Row-normalised batch Gram: ``f`` ``[B, ...]`` -> ``[B, B]``."""
  f = f.reshape(f.shape[0], -1).astype(jnp.float32)
  return l2_normalize(f @ f.T)


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


def _pairwise_distances(e: jax.Array) -> jax.Array:
  """Euclidean distances between the rows of ``e`` (``[B, D]``), 0 on the diagonal
  (RepDistiller's ``pdist``: squared distances clamped at 1e-12 before the root)."""
  sq = jnp.sum(e * e, axis=1)
  d2 = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * e @ e.T, _EPS)
  return jnp.sqrt(d2) * (1.0 - jnp.eye(e.shape[0], dtype=e.dtype))


def _smooth_l1(a: jax.Array, b: jax.Array) -> jax.Array:
  d = jnp.abs(a - b)
  return jnp.where(d < 1.0, 0.5 * d * d, d - 0.5)


def _mean_normalized(d: jax.Array) -> jax.Array:
  """``d / mean(positive off-diagonal entries)`` (1 where there are none: an all-equal batch)."""
  off = 1.0 - jnp.eye(d.shape[0], dtype=d.dtype)
  count = jnp.sum(off * (d > 0))
  mean = jnp.where(count > 0, jnp.sum(d) / jnp.maximum(count, 1.0), 1.0)
  return d / mean


def rkd_loss(student: jax.Array, teacher: jax.Array, w_dist: float = 25.0, w_angle: float = 50.0) -> jax.Array:
  """Per-example relational KD loss (Park et al., CVPR 2019; RepDistiller's ``RKDLoss``).

  Features are flattened per example. Distance term: pairwise distances normalised by their
  mean, smooth-L1 between student and teacher. Angle term: cosines of the angles at example
  ``i`` between the directions to ``j`` and ``k``, smooth-L1. Example ``i``'s value averages its
  row (``j``) and its vertex (``j, k``), so the batch mean is RepDistiller's
  ``w_dist * loss_d + w_angle * loss_a``.

  Args:
    student: ``float[B, ...]``; teacher: ``float[B, ...]`` (widths may differ).
    w_dist, w_angle: weights of the two terms.

  Returns:
    ``float32[B]``.
  """
  b = student.shape[0]
  if teacher.shape[0] != b:
    raise ValueError(f"rkd_loss: batch sizes differ ({b} vs {teacher.shape[0]})")
  fs, ft = student.reshape(b, -1).astype(jnp.float32), teacher.reshape(b, -1).astype(jnp.float32)
  ds, dt = _mean_normalized(_pairwise_distances(fs)), _mean_normalized(_pairwise_distances(ft))
  loss_d = jnp.mean(_smooth_l1(ds, dt), axis=1)
  vs = l2_normalize(fs[None, :, :] - fs[:, None, :], axis=2)
  vt = l2_normalize(ft[None, :, :] - ft[:, None, :], axis=2)
  angle_s = jnp.einsum("ijd,ikd->ijk", vs, vs)
  angle_t = jnp.einsum("ijd,ikd->ijk", vt, vt)
  loss_a = jnp.mean(_smooth_l1(angle_s, angle_t), axis=(1, 2))
  return w_dist * loss_d + w_angle * loss_a


def pkt_loss(student: jax.Array, teacher: jax.Array, eps: float = 1e-7) -> jax.Array:
  """Per-example probabilistic knowledge transfer loss (Passalis & Tefas, ECCV 2018;
  RepDistiller's ``PKT``).

  Features are flattened and L2-normalised per example (``f / (||f|| + eps)``); the cosine
  kernel ``(F F^T + 1) / 2`` is normalised per row to a distribution; example ``i``'s value is the
  mean over ``j`` of ``k_t log((k_t + eps) / (k_s + eps))``, so the batch mean is RepDistiller's.

  Returns:
    ``float32[B]``.
  """
  b = student.shape[0]
  if teacher.shape[0] != b:
    raise ValueError(f"pkt_loss: batch sizes differ ({b} vs {teacher.shape[0]})")

  def kernel(f):
    f = f.reshape(b, -1).astype(jnp.float32)
    f = f / (safe_norm(f, axis=1) + eps)
    k = (f @ f.T + 1.0) / 2.0
    return k / jnp.sum(k, axis=1, keepdims=True)

  ks, kt = kernel(student), kernel(teacher)
  return jnp.mean(kt * jnp.log((kt + eps) / (ks + eps)), axis=1)
