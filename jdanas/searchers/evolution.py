"""Regularized (ageing) evolution, REA (Real et al., AAAI 2019, https://arxiv.org/abs/1802.01548).

Algorithm 1 of the paper, batched to Q proposals per ``ask``:

* The first ``population_size`` proposals are uniform random samples.
* Afterwards each child is ``space.mutate(parent)``, where the parent is the best of a tournament
  of ``tournament_size`` members drawn uniformly *without* replacement from the current
  population. Each of the Q children runs its own tournament.
* The population is a FIFO queue of the ``population_size`` most recently *evaluated*
  individuals: each told individual enters and the oldest leaves (ageing, not the worst).
* NaN-scored (failed) individuals join the queue but lose every tournament to any number; a
  tournament of NaNs only picks its first member.

The queue is a ring buffer of fixed shape ``[P, D]``: the k-th told individual (counting from 0)
lives in slot ``k % P``. If ``ask`` finds the queue empty after the random phase (asks ahead of
tells), it samples at random.
"""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from jdanas.searchers.base import (Archive, Searcher, archive_add, archive_init, best_index,
                                   check_sizes, tell_metrics)
from jdanas.searchers.wrappers import Predicate, constrained
from jdanas.spaces.base import AbstractSearchSpace


@flax.struct.dataclass
class EvolutionState:
  """Attributes:
    population: ``int32[P, D]`` ring buffer of the P most recently told encodings.
    population_scores: ``float32[P]`` their scores (NaN = failed).
    population_filled: ``bool[P]`` slots that hold an individual.
    archive: every evaluated architecture (capacity N, best-first; see :class:`Archive`).
    num_asked: ``int32[]`` proposals made so far (decides the random phase).
    num_told: ``int32[]`` individuals told so far (decides the ring slot).
  """
  population: jax.Array
  population_scores: jax.Array
  population_filled: jax.Array
  archive: Archive
  num_asked: jax.Array
  num_told: jax.Array


def regularized_evolution(space: AbstractSearchSpace, *, num_asks: int = 8, population_size: int = 32,
                          tournament_size: int = 8, capacity: int = 1024,
                          feasible: Predicate | None = None) -> Searcher:
  """Regularized evolution with tournament selection and ageing (see the module docstring).

  Args:
    space: the search space; ``sample`` and ``mutate`` must be jittable and vmappable.
    num_asks: Q, children per ``ask``.
    population_size: P, length of the FIFO population (also the number of random proposals).
    tournament_size: T <= P, members per tournament (REA's sample size S).
    capacity: N, rows of the archive that tracks the incumbent.
    feasible: optional jittable ``int32[D] -> bool[]`` budget predicate; proposals are kept
      within it by :func:`jdanas.searchers.with_constraint`.

  Returns:
    A :class:`Searcher` whose ``ask`` returns ``int32[Q, D]`` children.

  >>> from jdanas.spaces import get_space
  >>> s = regularized_evolution(get_space("nb201"), num_asks=2, population_size=4, tournament_size=2)
  >>> encs, state = s.ask(jax.random.key(1), s.init(jax.random.key(0)))
  >>> encs.shape
  (2, 6)
  """
  check_sizes("regularized_evolution", num_asks=num_asks, population_size=population_size,
              tournament_size=tournament_size, capacity=capacity)
  if tournament_size > population_size:
    raise ValueError(f"regularized_evolution: tournament_size={tournament_size} exceeds "
                     f"population_size={population_size}")
  d = space.num_decisions

  def init(key: jax.Array) -> EvolutionState:
    del key  # the random phase draws in ask
    return EvolutionState(population=jnp.zeros((population_size, d), jnp.int32),
                          population_scores=jnp.full((population_size,), jnp.nan, jnp.float32),
                          population_filled=jnp.zeros((population_size,), bool),
                          archive=archive_init(capacity, d),
                          num_asked=jnp.zeros((), jnp.int32),
                          num_told=jnp.zeros((), jnp.int32))

  def tournament(key: jax.Array, state: EvolutionState) -> jax.Array:
    # Gumbel top-k with equal weights = a uniform subset without replacement of the filled slots.
    noise = jax.random.gumbel(key, (population_size,))
    _, members = jax.lax.top_k(jnp.where(state.population_filled, noise, -jnp.inf), tournament_size)
    member_ok = state.population_filled[members]
    winner = members[best_index(state.population_scores[members], member_ok)]
    return state.population[winner]

  def propose(key: jax.Array, k: jax.Array, state: EvolutionState) -> jax.Array:
    key_sample, key_tournament, key_mutate = jax.random.split(key, 3)
    fresh = space.sample(key_sample).astype(jnp.int32)
    child = space.mutate(key_mutate, tournament(key_tournament, state)).astype(jnp.int32)
    use_fresh = (k < population_size) | ~jnp.any(state.population_filled)
    return jnp.where(use_fresh, fresh, child)

  def ask(key: jax.Array, state: EvolutionState) -> tuple[jax.Array, EvolutionState]:
    k = state.num_asked + jnp.arange(num_asks, dtype=jnp.int32)
    keys = jax.random.split(key, num_asks)
    encs = jax.vmap(propose, in_axes=(0, 0, None))(keys, k, state)
    return encs, state.replace(num_asked=state.num_asked + num_asks)

  def tell(key: jax.Array, state: EvolutionState, encodings: jax.Array, scores: jax.Array,
           **extra: Any) -> tuple[EvolutionState, dict[str, jax.Array]]:
    del key, extra  # deterministic; extra keywords (cost, ...) are not used
    encodings = jnp.asarray(encodings, jnp.int32)
    scores = jnp.asarray(scores, jnp.float32)
    q = scores.shape[0]
    i = jnp.arange(q, dtype=jnp.int32)
    # Only the last P of a batch can survive ageing; the others get an out-of-range slot (dropped).
    slot = jnp.where(i >= q - population_size, (state.num_told + i) % population_size, population_size)
    archive = archive_add(state.archive, encodings, scores)
    state = state.replace(
        population=state.population.at[slot].set(encodings, mode="drop"),
        population_scores=state.population_scores.at[slot].set(scores, mode="drop"),
        population_filled=state.population_filled.at[slot].set(True, mode="drop"),
        archive=archive,
        num_told=state.num_told + q)
    metrics = tell_metrics(archive, scores)
    ok = state.population_filled & ~jnp.isnan(state.population_scores)
    metrics["population_best"] = jnp.max(jnp.where(ok, state.population_scores, -jnp.inf))
    return state, metrics

  return constrained(Searcher(init, ask, tell), feasible)
