"""DisWOT's semantic distance (Dong et al., "DisWOT: Student Architecture Search for Distillation
WithOut Training", CVPR 2023, https://arxiv.org/abs/2303.15678; docs/methods/diswot.md).

DisWOT compares student and teacher through the gradient of the cross-entropy with respect to
each network's classifier weights (:func:`classifier_gradient`, one ``C``-vector per class) with
ICKD's inter-channel correlation (:func:`semantic_distance`), and through SP on a feature tap
(:func:`jdanas.distill.relations.sp_loss`, the relation term). Both are batch-level quantities:
one classifier gradient per batch.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jdanas.distill.relations import ickd_loss, sp_loss

SEMANTIC_MISMATCH = ("class_gram", "drop", "error")


def classifier_gradient(pooled: jax.Array, logits: jax.Array, labels: jax.Array) -> jax.Array:
  """``dCE/dW`` of the final linear layer, as ``[K, C]`` (PyTorch's ``fc.weight.grad`` layout).

  Every jdanas model computes ``logits = pooled @ W + b``, so the gradient of the batch-mean
  cross-entropy with respect to ``W`` (Flax layout ``[C, K]``) is ``pooled^T (softmax - onehot) / N``
  in closed form; no backward pass through the network is needed (tested against ``jax.grad``).

  Args:
    pooled: ``[N, C]`` input of the classifier.
    logits: ``[N, K]``.
    labels: ``int[N]``.
  Returns:
    ``[K, C]``.
  """
  n, k = logits.shape
  delta = jax.nn.softmax(logits, axis=-1) - jax.nn.one_hot(labels, k, dtype=logits.dtype)
  return (delta.T @ pooled) / n


def semantic_form(student_channels: int, teacher_channels: int, mismatch: str = "class_gram") -> str:
  """Which comparison :func:`semantic_distance` makes: ``"channel"`` (ICKD, equal widths) or the
  ``mismatch`` policy (``"class_gram"`` / ``"drop"``) when the widths differ.

  ``mismatch="error"`` raises a one-line ``ValueError`` for unequal widths.
  """
  if mismatch not in SEMANTIC_MISMATCH:
    raise ValueError(f"semantic_mismatch: {mismatch!r} is not one of {SEMANTIC_MISMATCH}")
  if teacher_channels == student_channels:
    return "channel"
  if mismatch == "error":
    raise ValueError(f"semantic_mismatch='error': teacher has {teacher_channels} classifier inputs, "
                     f"student {student_channels}")
  return mismatch


def semantic_distance(g_student: jax.Array, g_teacher: jax.Array, *, mismatch: str = "class_gram") -> jax.Array:
  """DisWOT's semantic distance M_s between two ``[K, C]`` maps (classifier gradients); a scalar.

  Equal widths (``C_S == C_T``), ICKD as in DisWOT's code: each of the ``K`` rows ``g_k`` is one
  example of :func:`jdanas.distill.relations.ickd_loss` with one position, so its channel Gram is
  the outer product ``g_k g_k^T`` with rows L2-normalised; the distance is
  ``sum_k ||G^S_k - G^T_k||_F^2 / (C K)``, the mean of ``ickd_loss`` over the classes.

  Unequal widths (DisWOT's code silently mis-reshapes here):

  * ``mismatch="class_gram"`` (default): SP on the ``K`` rows, i.e. the channel-agnostic
    ``K x K`` Grams ``g g^T`` (rows L2-normalised), ``||G^S - G^T||_F^2 / K^2``;
  * ``mismatch="drop"``: 0 (DisWOT's ImageNet search keeps only the relation term);
  * ``mismatch="error"``: ``ValueError``.

  Args:
    g_student: ``[K, C_S]``.
    g_teacher: ``[K, C_T]``.
    mismatch: policy for ``C_S != C_T`` (see :func:`semantic_form`).
  Returns:
    Scalar distance (>= 0).
  """
  if g_teacher.ndim != 2 or g_student.ndim != 2 or g_teacher.shape[0] != g_student.shape[0]:
    raise ValueError(f"semantic_distance: need [K, C] maps with equal K, got {g_student.shape} and "
                     f"{g_teacher.shape}")
  form = semantic_form(g_student.shape[1], g_teacher.shape[1], mismatch)
  if form == "channel":
    return jnp.mean(ickd_loss(g_student[:, None, :], g_teacher[:, None, :]))
  if form == "class_gram":
    return jnp.mean(sp_loss(g_student, g_teacher))
  return jnp.zeros((), jnp.float32)
