"""Random search: every ask draws Q independent uniform samples from the space.

The baseline that Li & Talwalkar (UAI 2019, https://arxiv.org/abs/1902.07638) and
NAS-Bench-201 (Dong & Yang, ICLR 2020, https://arxiv.org/abs/2001.00326) show to be hard to
beat. Samples are not deduplicated; wrap with :func:`jdanas.searchers.with_dedup` for that.
"""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from jdanas.searchers.base import (Archive, Searcher, archive_add, archive_init, check_sizes,
                                   tell_metrics)
from jdanas.searchers.wrappers import Predicate, constrained
from jdanas.spaces.base import AbstractSearchSpace


@flax.struct.dataclass
class RandomSearchState:
  """Attributes:
    archive: every evaluated architecture (capacity N, best-first; see :class:`Archive`).
    num_asked: ``int32[]`` proposals made so far.
  """
  archive: Archive
  num_asked: jax.Array


def random_search(space: AbstractSearchSpace, *, num_asks: int = 8, capacity: int = 1024,
                  feasible: Predicate | None = None) -> Searcher:
  """Uniform random search.

  Args:
    space: the search space; its ``sample`` must be jittable and vmappable.
    num_asks: Q, proposals per ``ask``.
    capacity: N, rows of the archive that tracks the incumbent.
    feasible: optional jittable ``int32[D] -> bool[]`` budget predicate; proposals are kept
      within it by :func:`jdanas.searchers.with_constraint`.

  Returns:
    A :class:`Searcher` whose ``ask`` returns ``int32[Q, D]`` uniform samples.

  >>> from jdanas.spaces import get_space
  >>> s = random_search(get_space("nb201"), num_asks=2, capacity=8)
  >>> encs, state = s.ask(jax.random.key(1), s.init(jax.random.key(0)))
  >>> encs.shape, encs.dtype
  ((2, 6), dtype('int32'))
  """
  check_sizes("random_search", num_asks=num_asks, capacity=capacity)
  d = space.num_decisions

  def init(key: jax.Array) -> RandomSearchState:
    del key  # nothing random before the first ask
    return RandomSearchState(archive=archive_init(capacity, d), num_asked=jnp.zeros((), jnp.int32))

  def ask(key: jax.Array, state: RandomSearchState) -> tuple[jax.Array, RandomSearchState]:
    encs = jax.vmap(space.sample)(jax.random.split(key, num_asks)).astype(jnp.int32)
    return encs, state.replace(num_asked=state.num_asked + num_asks)

  def tell(key: jax.Array, state: RandomSearchState, encodings: jax.Array, scores: jax.Array,
           **extra: Any) -> tuple[RandomSearchState, dict[str, jax.Array]]:
    del key, extra  # deterministic; extra keywords (cost, ...) are not used
    archive = archive_add(state.archive, encodings, scores)
    return state.replace(archive=archive), tell_metrics(archive, scores)

  return constrained(Searcher(init, ask, tell), feasible)
