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
         use_bias: bool = False) -> nn.Conv:
  """A square convolution with PyTorch's ``(k - 1) / 2`` zero padding. How it is lowered (XLA's
  convolution or :func:`forward_only_conv`) is the program's choice (:mod:`jdanas.lowering`)."""
  pad = (kernel - 1) // 2
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                 feature_group_count=groups, use_bias=use_bias, kernel_init=conv_init, name=name)


# ---- activations and conditionals that recorders can see into --------------------------------

class Activation(nn.Module):
  """An elementwise activation as a (variable-free) module, so that activation recorders see its
  output through Flax's method interception (``nn.intercept_methods``; NASWOT, Zen)."""
  fn: Callable

  def __call__(self, x):
    return self.fn(x)


def _exact_gelu(x):
  return nn.gelu(x, approximate=False)


def relu(x):
  """ReLU as an :class:`Activation` of the calling module (call inside a compact method)."""
  return Activation(nn.relu)(x)


def gelu(x):
  """Exact (erf) GELU, PyTorch's ``nn.GELU()``, as an :class:`Activation` of the calling module."""
  return Activation(_exact_gelu)(x)


class Switching(nn.Module):
  """Base of modules with a data-dependent choice among sub-computations. They call
  ``self.switch(index, branches, *operands)`` (``nn.switch``) so that activation recorders can
  intercept the choice (``nn.intercept_methods``) and see into the branches: a value computed
  inside a ``lax.switch`` branch leaves it only as a branch output."""

  def switch(self, index, branches, *operands):
    return nn.switch(index, branches, self, *operands)


# ---- convolutions differentiated by forward convolutions only ---------------------------------
#
# XLA:CPU runs a convolution's kernel gradient (and, less so, its input gradient) that sits inside
# a conditional (``lax.switch``) or a loop (``lax.map``, as every scoring program is) more than an
# order of magnitude slower than the same gradient at top level (docs/lowering.md §1,
# bench/probes/forward_only_conv.py). Forward convolutions run at full speed
# there, so :func:`forward_only_conv` writes every derivative, of any order, as a forward
# convolution (grouped convolutions included; the groups stay groups):
#   d/dx <conv(x, w), g> = conv(g, flipT(w)),  d/dw <conv(x, w), g> = wgrad(x, g),
# and wgrad's own derivatives are again forward convolutions of its operands. Which programs use
# it is decided in one place, :mod:`jdanas.lowering`.

_DN = ("NHWC", "HWIO", "NHWC")


def _flip_t(w, groups: int):
  """The input-gradient kernel: spatially flipped, input/output features swapped per group."""
  k1, k2, cin_g, cout = w.shape
  w = jnp.flip(w, (0, 1)).reshape(k1, k2, cin_g, groups, cout // groups)
  return w.transpose(0, 1, 4, 3, 2).reshape(k1, k2, cout // groups, groups * cin_g)


def _pad(k: int):
  return (((k - 1) // 2, (k - 1) // 2),) * 2


def _conv(x, w, groups: int):
  return jax.lax.conv_general_dilated(x, w, (1, 1), _pad(w.shape[0]), dimension_numbers=_DN,
                                      feature_group_count=groups)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def forward_only_conv(x, w, groups: int = 1):
  """Stride-1, 'SAME' (odd square kernel) NHWC/HWIO convolution with ``groups`` feature groups,
  whose derivatives of any order are forward convolutions (fast inside loops and conditionals on
  XLA:CPU; equal values)."""
  return _conv(x, w, groups)


def _forward_only_conv_fwd(x, w, groups):
  return _conv(x, w, groups), (x, w)


def _forward_only_conv_bwd(groups, res, g):
  x, w = res
  return forward_only_conv(g, _flip_t(w, groups), groups), _wgrad(x, g, w.shape[0], groups)


forward_only_conv.defvjp(_forward_only_conv_fwd, _forward_only_conv_bwd)


def _wgrad_value(x, g, k: int, groups: int = 1):
  """``d/dw <conv(x, w), g>`` ``[k, k, Cin/G, Cout]`` as one forward convolution (Cin/G as batch,
  each group's examples as its input features, the output map as the kernel). The zero padding is
  the convolution's own: padding ``x`` beforehand gives the same values but is several times
  slower on XLA:CPU (docs/lowering.md §1, ``bench/probes/forward_only_conv.py``, ``wgrad``)."""
  n, h, w_, cin = x.shape
  xt = x.reshape(n, h, w_, groups, cin // groups).transpose(4, 1, 2, 3, 0).reshape(cin // groups, h, w_, groups * n)
  gt = g.transpose(1, 2, 0, 3)  # [H, W, N, Cout]
  out = jax.lax.conv_general_dilated(xt, gt, (1, 1), _pad(k), dimension_numbers=_DN,
                                     feature_group_count=groups)  # [Cin/G, k, k, Cout]
  return out.transpose(1, 2, 0, 3)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _wgrad(x, g, k, groups):
  return _wgrad_value(x, g, k, groups)


def _wgrad_fwd(x, g, k, groups):
  return _wgrad_value(x, g, k, groups), (x, g)


def _wgrad_bwd(k, groups, res, c):  # c: cotangent [k, k, Cin/G, Cout]
  del k
  x, g = res
  return forward_only_conv(g, _flip_t(c, groups), groups), forward_only_conv(x, c, groups)


_wgrad.defvjp(_wgrad_fwd, _wgrad_bwd)


def forward_only_conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                                      dimension_numbers=None, feature_group_count=1, precision=None):
  """``lax.conv_general_dilated`` signature; only the configuration :func:`forward_only_conv`
  covers is accepted, plus equal strides ``s > 1``: the stride-1 convolution subsampled
  ``[::s, ::s]`` (same values with padding ``(k - 1) / 2``; ``s^2`` times the forward FLOPs, but
  every derivative stays a forward convolution)."""
  del precision
  k = rhs.shape[0]
  expected = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _DN)
  unit = lambda v: v is None or all(int(a) == 1 for a in v)  # noqa: E731
  strides = tuple(int(s) for s in window_strides)
  if (len(strides) != 2 or strides[0] != strides[1] or strides[0] < 1 or not unit(lhs_dilation)
      or not unit(rhs_dilation) or rhs.shape[0] != rhs.shape[1] or k % 2 == 0 or isinstance(padding, str)
      or tuple(map(tuple, padding)) != _pad(k) or (dimension_numbers is not None and dimension_numbers != expected)):
    raise ValueError("forward_only_conv: only equal-stride, 'SAME' (padding (k-1)/2), odd square NHWC/HWIO "
                     "convolutions")
  out = forward_only_conv(lhs, rhs, int(feature_group_count))
  s = strides[0]
  return out if s == 1 else out[:, ::s, ::s, :]


def patch_conv(x, w):
  """A 'VALID' ungrouped convolution whose stride equals its ``[p, p, C, F]`` kernel (a patch
  embedding) as a reshape and a matrix product, whose derivatives are matrix products."""
  p = w.shape[0]
  n, h, w_, c = x.shape
  x = x[:, :h // p * p, :w_ // p * p].reshape(n, h // p, p, w_ // p, p, c)
  return jnp.einsum("nhawbc,abcf->nhwf", x, w)


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
