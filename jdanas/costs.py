"""Architecture costs measured from the built model, not from hand formulas.

* ``params``: number of elements of the ``params`` collection (weights, biases, BN scale/bias; not BN
  running statistics), i.e. PyTorch's ``sum(p.numel() for p in model.parameters())``. Every
  parameter count in jdanas is :func:`num_params` (teachers, the ``params`` proxy, budgets).
* ``flops``: XLA's cost analysis of the *lowered* (not compiled) inference forward pass at batch
  size 1 (:func:`forward_flops`). Lowering takes a fraction of a compilation and compiles nothing, and
  the figure does not depend on XLA's optimisation passes or flags (the compiled program's count moves
  with fusion and constant folding: a few percent either way on NB201 cells, more with
  ``jax_disable_most_optimizations``). XLA counts a multiply-add as 2 FLOPs (so ``flops ~= 2 x MACs``
  plus element-wise work); many papers (and the NB201 tables) report MACs under the name FLOPs. The
  population engine's work estimate (:func:`jdanas.train.population.masked_flops`) is the same function.

Masked spaces are costed through ``space.cost_module(enc)``: unselected ops never count.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jdanas.spaces.base import AbstractSearchSpace, to_tuple


@dataclasses.dataclass(frozen=True)
class Costs:
  params: int
  flops: float


def num_params(variables: Any, used: Callable[[tuple], float] | None = None) -> int:
  """Number of parameters in ``variables`` (arrays or ``jax.ShapeDtypeStruct``s; a
  ``{"params", ...}`` dict or the ``params`` tree itself).

  ``used(path)`` (a leaf's key path, as from ``jax.tree_util.tree_flatten_with_path``) returns 1
  for a leaf that the architecture uses and 0 otherwise, for superset networks whose unselected
  parts must not count (:func:`jdanas.scoring.init.count_params`).
  """
  tree = variables["params"] if hasattr(variables, "keys") and "params" in variables else variables
  total = 0.0
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    weight = 1.0 if used is None else float(used(path))
    total += weight * math.prod(leaf.shape)
  return int(total)


def forward_flops(fn: Callable, *args) -> float:
  """FLOPs of ``jax.jit(fn)(*args)`` by XLA's cost analysis of the lowered program (``args`` may be
  ``jax.ShapeDtypeStruct``s): nothing is compiled. The one definition of FLOPs in jdanas."""
  analysis = jax.jit(fn).lower(*args).cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older jax returns one dict per program
    analysis = analysis[0]
  return float((analysis or {}).get("flops", float("nan")))


@functools.lru_cache(maxsize=4096)
def _costs(space: AbstractSearchSpace, enc: tuple[int, ...], num_classes: int,
           input_shape: tuple[int, ...], with_flops: bool) -> Costs:
  module = space.cost_module(enc, num_classes)
  x = jax.ShapeDtypeStruct((1,) + input_shape, jnp.float32)  # shapes only: no device work
  e = np.asarray(enc, np.int32)
  abstract = jax.eval_shape(lambda x: module.init(jax.random.key(0), x, e, train=False), x)
  params = num_params(abstract)
  flops = float("nan")
  if with_flops:
    flops = forward_flops(lambda v, x: module.apply(v, x, e, train=False)["logits"], abstract, x)
  return Costs(params=params, flops=flops)


def model_costs(space: AbstractSearchSpace, enc: Any, *, num_classes: int,
                input_shape: tuple[int, ...] = (32, 32, 3), flops: bool = True) -> Costs:
  """Params and FLOPs (:func:`forward_flops`) of architecture ``enc`` (cached per architecture);
  compiles nothing."""
  return _costs(space, to_tuple(space.check(enc)), int(num_classes), tuple(input_shape), bool(flops))


def latency_ms(space: AbstractSearchSpace, enc: Any, *, num_classes: int,
               input_shape: tuple[int, ...] = (32, 32, 3), batch_size: int = 1, repeats: int = 20) -> float:
  """Median wall-clock milliseconds of the exact architecture's jitted inference forward pass.

  Measured on the default device of this process (after one warm-up call), with weights of the
  right shapes (latency does not depend on their values). It is a property of the host: compare
  latencies measured on the same machine only.
  """
  import time

  module = space.cost_module(to_tuple(space.check(enc)), int(num_classes))
  x = jnp.zeros((batch_size,) + tuple(input_shape), jnp.float32)
  e = jnp.asarray(to_tuple(enc), jnp.int32)
  abstract = jax.eval_shape(lambda: module.init(jax.random.key(0), x[:1], e, train=False))
  variables = jax.tree.map(lambda a: jnp.full(a.shape, 0.01, a.dtype), abstract)
  forward = jax.jit(lambda v, x: module.apply(v, x, e, train=False)["logits"])
  jax.block_until_ready(forward(variables, x))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(forward(variables, x))
    times.append(time.perf_counter() - t0)
  return float(sorted(times)[len(times) // 2] * 1e3)
