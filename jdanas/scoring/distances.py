"""Distances between teacher and student representations, usable as proxies and as training losses.

Every function takes plain arrays (teacher first, then student, the teacher being the target) and
returns a scalar distance (lower = more similar). Zero-cost proxies use ``-distance``.

* :func:`semantic_loss` -- DisWOT's semantic term M_s: ICKD's inter-channel-correlation distance
  (Liu et al., "Exploring Inter-Channel Correlation for Diversity-preserved Knowledge
  Distillation", ICCV 2021) applied to the classifier gradients ``[K, C]`` (one ``C``-vector per
  class), as DisWOT's code does (Dong et al., CVPR 2023, https://arxiv.org/abs/2303.15678).
* :func:`relation_loss` -- DisWOT's relation term M_r = SP, the similarity-preserving loss
  (Tung & Mori, ICCV 2019, https://arxiv.org/abs/1907.09682) on ``[N, ...]`` feature maps.
* :func:`kd_distance` (Hinton et al. 2015), :func:`fitnet_distance` (Romero et al., ICLR 2015),
  :func:`at_distance` (Zagoruyko & Komodakis, ICLR 2017), :func:`rkd_distance` (Park et al.,
  CVPR 2019), :func:`pkt_distance` (Passalis & Tefas, ECCV 2018): the KD losses that DisWOT turns
  into "KD-based zero-cost proxies", with RepDistiller's constants.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

SEMANTIC_MISMATCH = ("class_gram", "drop", "error")
_EPS = 1e-12


def _l2_normalize(x: jax.Array, axis: int = -1) -> jax.Array:
  """``torch.nn.functional.normalize`` (eps 1e-12 on the norm)."""
  norm = jnp.sqrt(jnp.sum(x * x, axis=axis, keepdims=True))
  return x / jnp.maximum(norm, _EPS)


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


def semantic_form(teacher_channels: int, student_channels: int, mismatch: str = "class_gram") -> str:
  """Which semantic comparison :func:`semantic_loss` makes: ``"channel"`` (ICKD, equal widths) or
  the ``mismatch`` policy (``"class_gram"`` / ``"drop"``) when the widths differ.

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


def semantic_loss(g_teacher: jax.Array, g_student: jax.Array, *, mismatch: str = "class_gram") -> jax.Array:
  """DisWOT's semantic distance M_s between two ``[K, C]`` maps (e.g. classifier gradients).

  Equal widths (``C_T == C_S``), ICKD as in DisWOT's code: for each of the ``K`` rows ``g_k`` form
  the ``C x C`` outer product ``g_k g_k^T``, L2-normalise each of its rows, and return
  ``sum_k ||G^T_k - G^S_k||_F^2 / (C K)``.

  Unequal widths (the official code silently mis-reshapes here; methods.md §2.8 item 3):

  * ``mismatch="class_gram"`` (default): compare the channel-agnostic ``K x K`` Gram matrices
    ``g g^T`` (rows L2-normalised), ``||G^T - G^S||_F^2 / K^2``;
  * ``mismatch="drop"``: the term is 0 (DisWOT's ImageNet search keeps only the relation term);
  * ``mismatch="error"``: ``ValueError``.

  Args:
    g_teacher: ``[K, C_T]``.
    g_student: ``[K, C_S]``.
    mismatch: policy for ``C_T != C_S`` (see :func:`semantic_form`).
  Returns:
    Scalar distance (>= 0).
  """
  if g_teacher.ndim != 2 or g_student.ndim != 2 or g_teacher.shape[0] != g_student.shape[0]:
    raise ValueError(f"semantic_loss: need [K, C] maps with equal K, got {g_teacher.shape} and {g_student.shape}")
  form = semantic_form(g_teacher.shape[1], g_student.shape[1], mismatch)
  k, c = g_student.shape
  if form == "channel":
    emb_t = _l2_normalize(g_teacher[:, :, None] * g_teacher[:, None, :], axis=2)
    emb_s = _l2_normalize(g_student[:, :, None] * g_student[:, None, :], axis=2)
    return jnp.sum((emb_t - emb_s) ** 2) / (c * k)
  if form == "class_gram":
    return relation_loss(g_teacher, g_student)
  return jnp.zeros((), g_student.dtype)


def relation_loss(f_teacher: jax.Array, f_student: jax.Array) -> jax.Array:
  """SP distance (DisWOT's relation term M_r) between two ``[N, ...]`` feature batches.

  Each sample is flattened, ``G = F F^T`` (``N x N``), each row of ``G`` is L2-normalised, and the
  result is ``||G^T - G^S||_F^2 / N^2``. Feature widths and spatial sizes may differ.
  """
  n = f_student.shape[0]
  if f_teacher.shape[0] != n:
    raise ValueError(f"relation_loss: batch sizes differ ({f_teacher.shape[0]} vs {n})")
  ft = f_teacher.reshape(n, -1)
  fs = f_student.reshape(n, -1)
  gt = _l2_normalize(ft @ ft.T, axis=1)
  gs = _l2_normalize(fs @ fs.T, axis=1)
  return jnp.sum((gt - gs) ** 2) / (n * n)


def kd_distance(logits_teacher: jax.Array, logits_student: jax.Array, temperature: float = 4.0) -> jax.Array:
  """``T^2 KL(softmax(z_t/T) || softmax(z_s/T))``, summed over classes, batch mean (teacher = target)."""
  log_pt = jax.nn.log_softmax(logits_teacher / temperature, axis=-1)
  log_ps = jax.nn.log_softmax(logits_student / temperature, axis=-1)
  kl = jnp.sum(jnp.exp(log_pt) * (log_pt - log_ps), axis=-1)
  return jnp.mean(kl) * temperature ** 2


def fitnet_distance(f_teacher: jax.Array, f_student: jax.Array) -> jax.Array:
  """FitNet hint loss without a regressor: mean squared error of equal-shape features."""
  if f_teacher.shape != f_student.shape:
    raise ValueError(f"fitnet_distance: shapes differ ({f_teacher.shape} vs {f_student.shape})")
  return jnp.mean((f_teacher - f_student) ** 2)


def _attention(f: jax.Array, p: float = 2.0) -> jax.Array:
  """AT map: channel mean of ``|f|^p`` (NHWC), flattened and L2-normalised per sample."""
  am = jnp.mean(jnp.abs(f) ** p, axis=-1).reshape(f.shape[0], -1)
  return _l2_normalize(am, axis=1)


def _pool_to(am: jax.Array, size: tuple[int, int]) -> jax.Array:
  """Average-pools ``[N, H, W]`` down to ``size`` (integer factors only)."""
  n, h, w = am.shape
  fh, fw = h // size[0], w // size[1]
  if fh * size[0] != h or fw * size[1] != w:
    raise ValueError(f"at_distance: spatial sizes {(h, w)} and {size} are not integer multiples")
  return am.reshape(n, size[0], fh, size[1], fw).mean(axis=(2, 4))


def at_distance(stages_teacher, stages_student, p: float = 2.0) -> jax.Array:
  """Attention transfer: sum over paired stages of ``mean((a_T - a_S)^2)`` (RepDistiller's ``Attention``).

  Stages are paired from the last one backwards (``min`` of the two counts). When a pair's spatial
  sizes differ, the larger channel-mean map is average-pooled to the smaller size before
  normalisation (integer factors only).
  """
  k = min(len(stages_teacher), len(stages_student))
  total = 0.0
  for ft, fs in zip(stages_teacher[-k:], stages_student[-k:]):
    mt = jnp.mean(jnp.abs(ft) ** p, axis=-1)
    ms = jnp.mean(jnp.abs(fs) ** p, axis=-1)
    size = (min(mt.shape[1], ms.shape[1]), min(mt.shape[2], ms.shape[2]))
    mt, ms = _pool_to(mt, size), _pool_to(ms, size)
    at, as_ = _l2_normalize(mt.reshape(mt.shape[0], -1), 1), _l2_normalize(ms.reshape(ms.shape[0], -1), 1)
    total = total + jnp.mean((at - as_) ** 2)
  return jnp.asarray(total)


def _pairwise_distances(e: jax.Array) -> jax.Array:
  sq = jnp.sum(e * e, axis=1)
  d2 = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * e @ e.T, _EPS)
  d = jnp.sqrt(d2) * (1.0 - jnp.eye(e.shape[0], dtype=e.dtype))
  return d


def _smooth_l1(a: jax.Array, b: jax.Array) -> jax.Array:
  d = jnp.abs(a - b)
  return jnp.mean(jnp.where(d < 1.0, 0.5 * d * d, d - 0.5))


def rkd_distance(f_teacher: jax.Array, f_student: jax.Array, w_dist: float = 25.0,
                 w_angle: float = 50.0) -> jax.Array:
  """Relational KD (distance + angle terms, smooth-L1; RepDistiller's weights 25 and 50) on ``[N, D]``."""
  ft, fs = f_teacher.reshape(f_teacher.shape[0], -1), f_student.reshape(f_student.shape[0], -1)
  dt, ds = _pairwise_distances(ft), _pairwise_distances(fs)
  off = 1.0 - jnp.eye(ft.shape[0], dtype=ft.dtype)
  dt = dt / (jnp.sum(dt) / jnp.maximum(jnp.sum(off * (dt > 0)), 1.0))
  ds = ds / (jnp.sum(ds) / jnp.maximum(jnp.sum(off * (ds > 0)), 1.0))
  loss_d = _smooth_l1(ds, dt)
  vt = _l2_normalize(ft[None, :, :] - ft[:, None, :], axis=2)
  vs = _l2_normalize(fs[None, :, :] - fs[:, None, :], axis=2)
  at = jnp.einsum("ijd,ikd->ijk", vt, vt).reshape(-1)
  as_ = jnp.einsum("ijd,ikd->ijk", vs, vs).reshape(-1)
  loss_a = _smooth_l1(as_, at)
  return w_dist * loss_d + w_angle * loss_a


def pkt_distance(f_teacher: jax.Array, f_student: jax.Array, eps: float = 1e-7) -> jax.Array:
  """Probabilistic knowledge transfer (cosine-similarity kernel, KL) on ``[N, D]`` (RepDistiller's PKT)."""
  ft, fs = f_teacher.reshape(f_teacher.shape[0], -1), f_student.reshape(f_student.shape[0], -1)
  ft = ft / (jnp.sqrt(jnp.sum(ft * ft, axis=1, keepdims=True)) + eps)
  fs = fs / (jnp.sqrt(jnp.sum(fs * fs, axis=1, keepdims=True)) + eps)
  kt = (ft @ ft.T + 1.0) / 2.0
  ks = (fs @ fs.T + 1.0) / 2.0
  kt = kt / jnp.sum(kt, axis=1, keepdims=True)
  ks = ks / jnp.sum(ks, axis=1, keepdims=True)
  return jnp.mean(kt * jnp.log((kt + eps) / (ks + eps)))
