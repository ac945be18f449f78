"""Variable initialisation for training-free scoring, and which variables an architecture uses.

* ``init="gaussian"``: the rule of DisWOT's code (and Zen-NAS): every conv / linear kernel
  ``~ N(0, 1)``, biases 0, BatchNorm scale 1 and bias 0 (running mean 0, variance 1; scoring runs
  BN in train mode, so batch statistics are used). Each kernel is drawn from
  ``fold_in(key, crc32(path))``: a parameter's value depends only on the key and its name, so the
  masked NB201 superset and the per-cell module of the same cell get identical weights.
* ``init="flax"``: the modules' own initialisers (``module.init``); Flax also derives each
  parameter's random stream from its path, so the same holds.
* ``init="torch"``: PyTorch's defaults, which the zero-cost-proxy reference code (Abdelfattah et
  al., ICLR 2021) ran with: conv / linear kernels and biases ``~ U(-1/sqrt(fan_in),
  1/sqrt(fan_in))`` (``kaiming_uniform_(a=sqrt(5))``), BatchNorm scale 1 and bias 0; drawn on the
  host per path like ``"gaussian"``.

:func:`path_weight` says whether a variable (or a module's activations) belongs to the selected
architecture: 1 everywhere except in masked spaces: the ops that a masked NB201 encoding does
not select, and the blocks beyond a masked S1 student's depth (0). Proxies multiply per-layer
contributions by it, so parameters of unselected ops never enter a score.
"""
from __future__ import annotations

import functools
import re
import zlib
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jdanas.costs import num_params
from jdanas.spaces.base import AbstractSearchSpace
from jdanas.spaces.nb201 import EDGES, OPS, NB201Space
from jdanas.spaces.resnet_depth import ResNetDepthSpace

INITS = ("gaussian", "flax", "torch")
_S1_BLOCK = re.compile(r"^stage(\d+)_block(\d+)$")
_OP_OF_MODULE = {"conv1x1": OPS.index("nor_conv_1x1"), "conv3x3": OPS.index("nor_conv_3x3")}


def _key_name(entry: Any) -> str:
  return str(getattr(entry, "key", getattr(entry, "name", entry)))


def path_names(path: Sequence[Any]) -> tuple[str, ...]:
  return tuple(_key_name(p) for p in path)


def _seed_words(key: jax.Array) -> list[int]:
  data = np.asarray(jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key)
  return [int(w) for w in data.reshape(-1)]


def _host_variables(key: jax.Array, abstract: Any, rule: str) -> Any:
  """``"gaussian"`` or ``"torch"`` variables drawn on the host (numpy's PCG64 seeded by the key's
  words and ``crc32(path)``): compiling one JAX random program per parameter costs tens of seconds
  per model on XLA:CPU."""
  words = _seed_words(key)
  kernels = {path_names(p)[:-1]: leaf.shape for p, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0]
             if path_names(p)[-1] == "kernel"}

  def value(path, leaf):
    names = path_names(path)
    leaf_name = names[-1]
    if names[0] != "params":  # batch_stats: mean 0, var 1
      return np.full(leaf.shape, 1.0 if leaf_name == "var" else 0.0, leaf.dtype)
    if leaf_name == "scale":
      return np.ones(leaf.shape, leaf.dtype)
    rng = np.random.default_rng(words + [zlib.crc32("/".join(names).encode())])
    if rule == "gaussian":
      if leaf_name == "bias":
        return np.zeros(leaf.shape, leaf.dtype)
      return rng.standard_normal(leaf.shape, dtype=np.float32).astype(leaf.dtype)
    kernel = kernels.get(names[:-1])
    if kernel is None:  # a bias without a kernel (BatchNorm): 0
      return np.zeros(leaf.shape, leaf.dtype)
    bound = 1.0 / np.sqrt(max(int(np.prod(kernel[:-1])), 1))
    return rng.uniform(-bound, bound, leaf.shape).astype(leaf.dtype)
  return jax.tree_util.tree_map_with_path(value, abstract)


def gaussian_variables(key: jax.Array, abstract: Any) -> Any:
  """DisWOT's Gaussian rule applied to a tree of abstract variables (see module docstring)."""
  return _host_variables(key, abstract, "gaussian")


def torch_variables(key: jax.Array, abstract: Any) -> Any:
  """PyTorch's default initialisation applied to a tree of abstract variables (module docstring)."""
  return _host_variables(key, abstract, "torch")


@functools.lru_cache(maxsize=256)
def abstract_variables(module: nn.Module, input_shape: tuple[int, ...], enc_shape: tuple[int, ...] | None) -> Any:
  x = jnp.zeros((1,) + tuple(input_shape), jnp.float32)
  enc = None if enc_shape is None else jnp.zeros(enc_shape, jnp.int32)
  return jax.eval_shape(lambda: module.init(jax.random.key(0), x, enc, train=False))


def init_variables(key: jax.Array, module: nn.Module, input_shape: tuple[int, ...], enc: Any, init: str) -> Any:
  """Variables ``{'params', 'batch_stats'}`` of ``module`` by rule ``init`` (host arrays for
  ``"gaussian"`` and ``"torch"``; ``"flax"`` runs ``module.init`` under jit, one program per module)."""
  if init not in INITS:
    raise ValueError(f"init: {init!r} is not one of {INITS}")
  shape = None if enc is None else tuple(np.shape(enc))
  if init in ("gaussian", "torch"):
    return _host_variables(key, abstract_variables(module, tuple(input_shape), shape), init)
  return _flax_init(module, tuple(input_shape), shape)(key, None if enc is None else jnp.asarray(enc, jnp.int32))


@functools.lru_cache(maxsize=64)
def _flax_init(module: nn.Module, input_shape: tuple[int, ...], enc_shape):
  del enc_shape
  x = jnp.zeros((1,) + input_shape, jnp.float32)
  return jax.jit(lambda key, enc: module.init(key, x, enc, train=False))


def clear_caches():
  """Empties the caches of abstract variables and initialisation programs."""
  abstract_variables.cache_clear()
  _flax_init.cache_clear()


def path_weight(space: AbstractSearchSpace | None, names: Sequence[str], enc: Any, xp=jnp):
  """1 if the variable / module at ``names`` is part of architecture ``enc``, else 0.

  ``names`` is a module or variable path (collection names such as ``params`` are ignored). Only
  masked forms have unused parts: in masked NB201 the ``conv1x1`` / ``conv3x3`` op of edge ``jI``
  is used iff the edge's op is that convolution; in masked S1 (``s1_resnet_masked``) block ``b``
  of stage ``s`` (``stage{s}_block{b}``) is used iff ``b < depth_s``. ``xp`` is ``jnp`` under
  tracing or ``np`` on the host.
  """
  if isinstance(space, NB201Space) and space.masked:
    names = list(names)
    for i, name in enumerate(names[:-1]):
      if name.startswith("edge") and len(name) == 6 and names[i + 1] in _OP_OF_MODULE:
        e = EDGES.index((int(name[4]), int(name[5])))
        return (xp.asarray(enc)[e] == _OP_OF_MODULE[names[i + 1]]).astype(xp.float32)
  if isinstance(space, ResNetDepthSpace) and space.masked:
    for name in names:
      m = _S1_BLOCK.match(name)
      if m:
        stage, block = int(m.group(1)) - 1, int(m.group(2))
        depth = xp.asarray(space.depth_choices)[xp.asarray(enc)[stage]]
        return (block < depth).astype(xp.float32)
  return 1.0


def count_params(space: AbstractSearchSpace, module: nn.Module, enc: np.ndarray,
                 input_shape: tuple[int, ...]) -> int:
  """Number of parameters of ``module`` that architecture ``enc`` uses (:func:`jdanas.costs.num_params`
  with :func:`path_weight`: unselected ops of a masked space excluded)."""
  abstract = abstract_variables(module, tuple(input_shape), tuple(np.shape(enc)))
  return num_params(abstract, used=lambda path: path_weight(space, path_names(path), enc, xp=np))
