"""Jittable budget predicates (params / FLOPs / latency) for searchers, built once on the host.

A searcher checks budgets inside ``ask`` (under jit), so the cost of an architecture must be a
jittable function of its encoding. :func:`cost_predicate` builds one from the exact costs of
:mod:`jdanas.costs` (measured on ``space.cost_module``, the unmasked architecture):

* **Small spaces (at most ``max_enumerate`` architectures; the S1 ResNet space has 64): a table.**
  Every architecture is costed once (params from shapes; FLOPs by XLA cost analysis, one
  compilation per architecture, about 1 s each on the 2-core CPU; latency as the median of a
  jitted batch-1 forward on this host) and the predicate is a lookup in a ``bool[M]`` constant.
* **Larger spaces, params and FLOPs: an additive model, verified.** Params are a sum over layers
  and in the spaces jdanas ships every decision adds its own layers (an NB201 edge its op), so
  ``cost(enc) = base + sum_i delta[i, enc_i]``, with ``base`` the cost of the all-zeros encoding
  and ``delta[i, v]`` the change when decision ``i`` alone takes value ``v``: ``1 + sum_i (n_i - 1)``
  exact costs (31 for NB201's 15,625 cells). The model is checked against the exact costs of
  ``check_samples`` random architectures (params exactly, FLOPs within ``flops_rtol``); if it
  fails, the limit is refused with a one-line ``ValueError``. NB201 FLOPs fail this check
  (measured): an edge whose output never reaches the cell output is dead code that XLA removes,
  so an edge's FLOPs depend on the other edges; use ``max_params`` there.
* **Larger spaces, latency**: refused (it is a wall-clock measurement, not additive).

A limit of 0 means no limit; with no limit at all, :func:`cost_predicate` returns ``None``.
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jdanas import costs
from jdanas.errors import FieldError
from jdanas.searchers.wrappers import Predicate, enumerate_encodings, mixed_radix_index
from jdanas.spaces.base import AbstractSearchSpace


def additive_costs(space: AbstractSearchSpace, cost_fn: Callable[[np.ndarray], float]) -> tuple[float, np.ndarray]:
  """``(base, delta float64[D, max_n])`` of the additive model (see the module docstring);
  ``delta[i, v]`` is 0 for ``v >= num_choices[i]``."""
  n = [int(c) for c in space.num_choices]
  zero = np.zeros(len(n), np.int32)
  base = float(cost_fn(zero))
  delta = np.zeros((len(n), max(n)), np.float64)
  for i, ni in enumerate(n):
    for v in range(1, ni):
      e = zero.copy()
      e[i] = v
      delta[i, v] = float(cost_fn(e)) - base
  return base, delta


def _additive_fn(base: float, delta: np.ndarray) -> Callable[[jax.Array], jax.Array]:
  table = jnp.asarray(delta, jnp.float32)
  rows = jnp.arange(delta.shape[0])

  def cost(enc: jax.Array) -> jax.Array:
    return jnp.float32(base) + jnp.sum(table[rows, jnp.asarray(enc, jnp.int32)])

  return cost


def cost_predicate(space: AbstractSearchSpace, *, num_classes: int, input_shape: tuple[int, ...],
                   max_params: float = 0, max_flops: float = 0, max_latency_ms: float = 0,
                   check_samples: int = 4, flops_rtol: float = 1e-3, max_enumerate: int = 256,
                   seed: int = 0) -> Predicate | None:
  """A jittable ``feasible(enc int32[D]) -> bool[]`` for the given limits (0 = no limit).

  Args:
    space: the search space.
    num_classes: classifier size the costs are measured with.
    input_shape: ``(H, W, C)`` of one example.
    max_params: most parameters (``jdanas.costs.Costs.params``).
    max_flops: most FLOPs of one batch-1 forward (XLA's count; see :mod:`jdanas.costs`).
    max_latency_ms: most milliseconds of one batch-1 forward on this host.
    check_samples: random architectures the additive model is checked on.
    flops_rtol: relative tolerance of that check for FLOPs.
    max_enumerate: largest space costed architecture by architecture (a table).
    seed: seed of the check samples.

  Returns:
    The predicate, or ``None`` when every limit is 0.
  """
  limits = {"params": max_params, "flops": max_flops, "latency_ms": max_latency_ms}
  for name, v in limits.items():
    if not (isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and v >= 0):
      raise FieldError(f"max_{name}", f"must be a number >= 0 (0 = no limit), got {v!r}")
  limits = {k: float(v) for k, v in limits.items() if v}
  if not limits:
    return None
  size = math.prod(int(c) for c in space.num_choices)
  index = mixed_radix_index(space.num_choices)
  shape = tuple(int(s) for s in input_shape)

  def exact(metric: str, enc: np.ndarray) -> float:
    if metric == "latency_ms":
      return costs.latency_ms(space, enc, num_classes=num_classes, input_shape=shape)
    c = costs.model_costs(space, enc, num_classes=num_classes, input_shape=shape, flops=metric == "flops")
    return float(getattr(c, metric))

  def enumerated(metric: str) -> Predicate:
    values = np.asarray([exact(metric, e) for e in enumerate_encodings(space.num_choices)], np.float64)
    ok = jnp.asarray(values <= limits[metric])
    return lambda enc: ok[index(enc)]

  checks: list[Predicate] = []
  rng = np.random.default_rng(seed)
  samples = [rng.integers(0, np.asarray(space.num_choices)).astype(np.int32) for _ in range(check_samples)]
  for metric, limit in limits.items():
    own = space.params_predicate(limit, num_classes=num_classes, input_shape=shape) \
        if metric == "params" else None
    if own is not None:  # the space tabulates its own params (e.g. the multi-family TRADE space)
      checks.append(own)
      continue
    if size <= max_enumerate:
      checks.append(enumerated(metric))
      continue
    if metric == "latency_ms":
      raise FieldError("max_latency_ms", f"needs every architecture measured, but space {space.name!r} has "
                       f"{size} > max_enumerate={max_enumerate}")
    base, delta = additive_costs(space, lambda e, m=metric: exact(m, e))
    predicted = lambda e: base + float(sum(delta[i, v] for i, v in enumerate(e)))
    rtol = 0.0 if metric == "params" else flops_rtol
    if not all(abs(predicted(e) - exact(metric, e)) <= rtol * abs(exact(metric, e)) + 1e-6 for e in samples):
      raise FieldError(f"max_{metric}", f"the {metric} of space {space.name!r} are not additive per decision and "
                       f"its {size} architectures exceed max_enumerate={max_enumerate}")
    fn = _additive_fn(base, delta)
    checks.append(lambda enc, fn=fn, limit=limit: fn(enc) <= limit)

  def feasible(enc: jax.Array) -> jax.Array:
    ok = jnp.ones((), bool)
    for check in checks:
      ok = ok & check(enc)
    return ok

  return feasible
