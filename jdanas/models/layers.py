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

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Features = dict[str, Any]

# He/Kaiming normal with fan_out, as the CIFAR model zoos (RepDistiller, DisWOT) initialise convs.
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def batch_norm(train: bool, name: str | None = None, scale_init=nn.initializers.ones) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                      scale_init=scale_init, name=name)


def conv(features: int, kernel: int, stride: int = 1, groups: int = 1, name: str | None = None,
         use_bias: bool = False) -> nn.Conv:
  pad = (kernel - 1) // 2
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                 feature_group_count=groups, use_bias=use_bias, kernel_init=conv_init, name=name)


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
