"""Small Flax Linen building blocks shared by every model and search space.

Every jdanas model is called as ``module.apply(variables, x, enc, train=...)`` and returns
a :data:`Features` dict with the standard feature taps:

* ``stages``: tuple of stage outputs (NHWC), in order;
* ``pre_pool``: the last feature map before global pooling (after any final BN/ReLU);
* ``pooled``: the globally pooled vector ``[B, C]``;
* ``logits``: ``[B, num_classes]``.

``enc`` is the traced architecture encoding; modules whose structure is fully fixed by their
signature ignore it. BatchNorm uses PyTorch's conventions (momentum 0.1 -> Flax 0.9, eps 1e-5)
so recipes transfer from the papers' code.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Features = dict[str, Any]

# He/Kaiming normal with fan_out, as the CIFAR model zoos (RepDistiller, DisWOT) initialise convs.
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def batch_norm(train: bool, name: str | None = None, scale_init=nn.initializers.ones,
               affine: bool = True) -> nn.BatchNorm:
  """``affine=False``: no scale and bias parameters (PyTorch's ``BatchNorm2d(affine=False)``)."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, use_scale=affine,
                      use_bias=affine, scale_init=scale_init, name=name)


def conv(features: int, kernel: int, stride: int = 1, groups: int = 1, name: str | None = None,
         use_bias: bool = False, branch: bool = False) -> nn.Conv:
  """``branch=True``: computed by :func:`branch_conv` (convolutions inside ``lax.switch``, and every
  convolution of a network differentiated twice on XLA:CPU, e.g. for GraSP)."""
  pad = (kernel - 1) // 2
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                 feature_group_count=groups, use_bias=use_bias, kernel_init=conv_init, name=name,
                 conv_general_dilated=branch_conv_general_dilated if branch else None)


# ---- conditionals that activation recorders can see into -------------------------------------

# Stack of switch implementations installed by activation recorders (``jdanas.scoring.proxies``):
# a value computed inside a ``lax.switch`` branch cannot leave it except as a branch output, so a
# recorder that wants to see inside conditionals replaces :func:`switch` while it records.
_SWITCH_OVERRIDES: list[Callable] = []


def switch(index, branches, module: nn.Module, *operands):
  """``nn.switch(index, branches, module, *operands)``, unless an activation recorder is active
  (:func:`switch_override`), which then runs the branches itself and returns what ``nn.switch``
  returns. Models call this instead of ``nn.switch``."""
  if _SWITCH_OVERRIDES:
    return _SWITCH_OVERRIDES[-1](index, branches, module, *operands)
  return nn.switch(index, branches, module, *operands)


@contextlib.contextmanager
def switch_override(fn: Callable):
  """``with switch_override(fn):`` every :func:`switch` call is ``fn(index, branches, module,
  *operands)`` (nested overrides: the innermost wins)."""
  _SWITCH_OVERRIDES.append(fn)
  try:
    yield fn
  finally:
    _SWITCH_OVERRIDES.pop()


# ---- convolutions differentiated by forward convolutions only ---------------------------------
#
# XLA:CPU runs a convolution's kernel gradient (and, less so, its input gradient) that sits inside
# a conditional (``lax.switch``: the masked NB201 edges under ``edge_impl="switch"``) ~30x slower
# than the same gradient at top level (3x3 conv, 64x32x32x16: 647 ms vs 20 ms; branch_conv 24 ms;
# bench/branch_conv.py). Forward convolutions inside a conditional run at full speed, so
# :func:`branch_conv` writes every derivative, of any order, as a forward convolution:
#   d/dx <conv(x, w), g> = conv(g, flipT(w)),  d/dw <conv(x, w), g> = wgrad(x, g),
# and wgrad's own derivatives are again forward convolutions of its operands.

_DN = ("NHWC", "HWIO", "NHWC")


def _flip_t(w):
  return jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)


def _pad(k: int):
  return (((k - 1) // 2, (k - 1) // 2),) * 2


@jax.custom_vjp
def branch_conv(x, w):
  """Stride-1, 'SAME' (odd square kernel), ungrouped NHWC/HWIO convolution whose derivatives
  are forward convolutions (fast inside ``lax.switch`` on XLA:CPU; equal values)."""
  return jax.lax.conv_general_dilated(x, w, (1, 1), _pad(w.shape[0]), dimension_numbers=_DN)


def _branch_conv_fwd(x, w):
  return branch_conv(x, w), (x, w)


def _branch_conv_bwd(res, g):
  x, w = res
  return branch_conv(g, _flip_t(w)), _wgrad(x, g, w.shape[0])


branch_conv.defvjp(_branch_conv_fwd, _branch_conv_bwd)


def _wgrad_value(x, g, k: int):
  """``d/dw <conv(x, w), g>`` ``[k, k, Cin, Cout]`` as one forward convolution (Cin as batch,
  the examples as input features, the output map as the kernel). The zero padding is the
  convolution's own: padding ``x`` beforehand gives the same values but was measured 5.5x slower
  on XLA:CPU (``bench/branch_conv.py``, ``wgrad``)."""
  xt = x.transpose(3, 1, 2, 0)  # [Cin, H, W, N]
  gt = g.transpose(1, 2, 0, 3)  # [H, W, N, Cout]
  out = jax.lax.conv_general_dilated(xt, gt, (1, 1), _pad(k), dimension_numbers=_DN)  # [Cin, k, k, Cout]
  return out.transpose(1, 2, 0, 3)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _wgrad(x, g, k):
  return _wgrad_value(x, g, k)


def _wgrad_fwd(x, g, k):
  return _wgrad_value(x, g, k), (x, g)


def _wgrad_bwd(k, res, c):  # c: cotangent [k, k, Cin, Cout]
  del k
  x, g = res
  return branch_conv(g, _flip_t(c)), branch_conv(x, c)


_wgrad.defvjp(_wgrad_fwd, _wgrad_bwd)


def branch_conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                                dimension_numbers=None, feature_group_count=1, precision=None):
  """``lax.conv_general_dilated`` signature for ``nn.Conv(conv_general_dilated=...)``; only the
  configuration :func:`branch_conv` covers is accepted, plus equal strides ``s > 1``: the stride-1
  convolution subsampled ``[::s, ::s]`` (same values with padding ``(k - 1) / 2``; ``s^2`` times the
  forward FLOPs, but every derivative stays a forward convolution)."""
  del precision
  k = rhs.shape[0]
  expected = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _DN)
  unit = lambda v: v is None or all(int(a) == 1 for a in v)  # noqa: E731
  strides = tuple(int(s) for s in window_strides)
  if (len(strides) != 2 or strides[0] != strides[1] or strides[0] < 1 or not unit(lhs_dilation)
      or not unit(rhs_dilation) or feature_group_count != 1 or rhs.shape[0] != rhs.shape[1] or k % 2 == 0
      or tuple(map(tuple, padding)) != _pad(k) or (dimension_numbers is not None and dimension_numbers != expected)):
    raise ValueError("branch_conv: only equal-stride, 'SAME' (padding (k-1)/2), ungrouped, odd square NHWC/HWIO "
                     "convolutions")
  out = branch_conv(lhs, rhs)
  s = strides[0]
  return out if s == 1 else out[:, ::s, ::s, :]


def features_dict(stages, pre_pool, logits_layer: Callable) -> Features:
  pooled = jnp.mean(pre_pool, axis=(1, 2))
  return {"stages": tuple(stages), "pre_pool": pre_pool, "pooled": pooled, "logits": logits_layer(pooled)}


def classifier(num_classes: int, name: str = "classifier") -> nn.Dense:
  return nn.Dense(num_classes, name=name)


def avg_pool_3x3_exclude_pad(x):
  """3x3 average pool, stride 1, padding 1, ``count_include_pad=False`` (NAS-Bench-201's pool).

  The divisor (how many real pixels each window covers) is a numpy constant computed at trace
  time: the equivalent ``nn.avg_pool(..., count_include_pad=False)`` pools a batch-sized array of
  ones, which XLA:CPU constant-folds for seconds per program (``bench/population.py`` notes).
  """
  h, w = x.shape[-3], x.shape[-2]
  ones = np.pad(np.ones((h, w), np.float32), 1)
  counts = sum(ones[i:i + h, j:j + w] for i in range(3) for j in range(3))
  summed = nn.pool(x, 0.0, jax.lax.add, (3, 3), (1, 1), ((1, 1), (1, 1)))
  return summed / jnp.asarray(counts[:, :, None], x.dtype)
