"""DisWOT's evolutionary search (Dong, Li & Wei, CVPR 2023, https://arxiv.org/abs/2303.15678).

The official code (``searcher/evo_search_zen.py``, after Zen-NAS) keeps a population of the best
architectures found so far, mutates one or two blocks of a parent, rejects children that break
the parameter / FLOPs / latency budgets, and removes the *lowest-scoring* member whenever the
population overflows. Batched to Q children per ``ask``, as a pure ``Searcher``:

* **Initial population**: the first ``population_size`` proposals are uniform random samples
  (textbook initialisation; the official Zen-style code grows the population from one seed
  structure instead).
* **Parent**: the best of a tournament of ``tournament_size`` members drawn uniformly without
  replacement from the population (``tournament_size=1`` is the official code's random parent).
  NaN-scored members lose every tournament to any number.
* **Child**: ``m`` distinct decisions of the parent changed to other values, ``m`` uniform in
  ``1 .. max_mutations`` (DisWOT: one or two blocks), then ``space.canonicalize``.
* **Survival**: the population holds the ``population_size`` best individuals told so far; a
  told batch joins it and the WORST are dropped (failed/NaN first, then the lowest scores; among
  equal scores the older survives), not the oldest as in regularized evolution. The incumbent is
  therefore never dropped.
* **Budgets**: ``feasible`` (a jittable ``int32[D] -> bool[]`` predicate, e.g. from
  :func:`jdanas.searchers.budgets.cost_predicate` with ``max_params`` / ``max_flops`` /
  ``max_latency_ms``) is checked for EVERY child, random or mutated (the official NB201 REA
  checks only its initial population; see docs/methods/diswot.md). A violating child is re-drawn (a new
  tournament and mutation, or a new sample) inside a ``lax.while_loop``, at most ``max_tries``
  times; a child still infeasible after that is proposed anyway and counted in the
  ``constraint_unrepaired`` metric (the pipeline scores such children NaN).

Nothing here reads ground truth: the searcher sees only the scores it is told (the official NB201
search picks its answer among its top-5 by querying NB201 test accuracy; docs/methods/diswot.md).
Shapes are fixed (population ``[P, D]``, archive ``[N, D]``), so ``ask`` and ``tell`` compile once.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp

from jdanas.searchers.base import (Archive, Searcher, archive_add, archive_init, best_index,
                                   check_sizes, tell_metrics)
from jdanas.searchers.wrappers import Predicate
from jdanas.spaces.base import AbstractSearchSpace


@flax.struct.dataclass
class DisWOTEvolutionState:
  """Attributes:
    population: the ``P`` best individuals told so far (an :class:`Archive` of capacity P:
      best-first, worst dropped on overflow).
    archive: every evaluated architecture (capacity N, best-first; see :class:`Archive`).
    num_asked: ``int32[]`` proposals made so far (decides the random phase).
    num_unrepaired: ``int32[]`` infeasible children proposed because ``max_tries`` ran out.
  """
  population: Archive
  archive: Archive
  num_asked: jax.Array
  num_unrepaired: jax.Array


def mutate_decisions(space: AbstractSearchSpace, key: jax.Array, enc: jax.Array,
                     max_mutations: int) -> jax.Array:
  """Changes ``m`` distinct decisions of ``enc`` to other values, ``m`` uniform in
  ``1 .. min(max_mutations, mutable decisions)``; decisions with one choice never change.

  Args:
    space: the space (``num_choices``).
    key: PRNG key.
    enc: ``int32[D]`` parent.
    max_mutations: most decisions changed.

  Returns:
    ``int32[D]`` child (before canonicalisation).
  """
  n = jnp.asarray(space.num_choices, jnp.int32)
  mutable = n > 1
  key_m, key_pos, key_val = jax.random.split(key, 3)
  most = jnp.minimum(max_mutations, mutable.sum(dtype=jnp.int32))
  m = jax.random.randint(key_m, (), 1, most + 1, dtype=jnp.int32)
  noise = jnp.where(mutable, jax.random.gumbel(key_pos, n.shape), -jnp.inf)
  rank = jnp.argsort(jnp.argsort(-noise))  # 0 for the largest noise: a uniform random order
  chosen = mutable & (rank < m)
  shift = jax.random.randint(key_val, n.shape, 1, jnp.maximum(n, 2), dtype=jnp.int32)
  enc = jnp.asarray(enc, jnp.int32)
  return jnp.where(chosen, (enc + shift) % n, enc).astype(jnp.int32)


def tournament(key: jax.Array, population: Archive, tournament_size: int) -> jax.Array:
  """The best of ``tournament_size`` members drawn uniformly without replacement from the filled
  rows of ``population`` (``int32[D]``); NaN-scored members lose to any number."""
  # Gumbel top-k with equal weights = a uniform subset without replacement of the filled rows.
  noise = jax.random.gumbel(key, population.scores.shape)
  _, members = jax.lax.top_k(jnp.where(population.valid, noise, -jnp.inf), tournament_size)
  winner = members[best_index(population.scores[members], population.valid[members])]
  return population.encodings[winner]


def redraw_until(key: jax.Array, draw: Callable[[jax.Array], jax.Array],
                 acceptable: Callable[[jax.Array], jax.Array], max_tries: int) -> tuple[jax.Array, jax.Array]:
  """``draw(fold_in(key, 0))``, redrawn with ``fold_in(key, attempt)`` while not ``acceptable``,
  at most ``max_tries`` times; returns ``(enc int32[D], still_bad bool[])``."""
  enc = draw(jax.random.fold_in(key, 0))

  def cond(carry):
    attempt, enc = carry
    return (attempt <= max_tries) & ~acceptable(enc)

  def body(carry):
    attempt, _ = carry
    return attempt + 1, draw(jax.random.fold_in(key, attempt))

  _, enc = jax.lax.while_loop(cond, body, (jnp.ones((), jnp.int32), enc))
  return enc, ~acceptable(enc)


def tell_population(state: DisWOTEvolutionState, encodings: jax.Array,
                    scores: jax.Array) -> tuple[DisWOTEvolutionState, dict[str, jax.Array]]:
  """Adds a told batch to the population (the best P survive) and the archive; the metrics."""
  encodings = jnp.asarray(encodings, jnp.int32)
  scores = jnp.asarray(scores, jnp.float32)
  # The population is an archive of capacity P: archive_add keeps the best P (drops the worst).
  state = state.replace(population=archive_add(state.population, encodings, scores),
                        archive=archive_add(state.archive, encodings, scores))
  metrics = tell_metrics(state.archive, scores)
  pop = state.population
  ok = pop.valid & ~jnp.isnan(pop.scores)
  metrics["population_best"] = jnp.max(jnp.where(ok, pop.scores, -jnp.inf))
  metrics["population_worst"] = jnp.min(jnp.where(ok, pop.scores, jnp.inf))
  metrics["constraint_unrepaired"] = state.num_unrepaired
  return state, metrics


def diswot_evolution(space: AbstractSearchSpace, *, num_asks: int = 8, population_size: int = 64,
                     tournament_size: int = 8, max_mutations: int = 2, capacity: int = 1024,
                     feasible: Predicate | None = None, max_tries: int = 32) -> Searcher:
  """DisWOT evolution: keep the best, mutate 1-2 decisions, budgets on every child.

  Args:
    space: the search space; ``sample``, ``canonicalize`` and ``is_valid`` must be jittable.
    num_asks: Q, children per ``ask``.
    population_size: P, individuals kept (also the number of random proposals).
    tournament_size: T <= P, members per parent tournament (1 = a uniformly random parent).
    max_mutations: most decisions changed per child (DisWOT: 2).
    capacity: N, rows of the archive that tracks the incumbent.
    feasible: optional jittable ``int32[D] -> bool[]`` budget predicate, checked for every child.
    max_tries: redraws of an infeasible (or invalid) child before it is proposed anyway.

  Returns:
    A :class:`Searcher` with :class:`DisWOTEvolutionState`; ``tell`` reports the common metrics
    plus ``population_best``, ``population_worst`` and ``constraint_unrepaired``.

  >>> from jdanas.spaces import get_space
  >>> s = diswot_evolution(get_space("s1_resnet"), num_asks=2, population_size=4, tournament_size=2)
  >>> encs, state = s.ask(jax.random.key(1), s.init(jax.random.key(0)))
  >>> encs.shape
  (2, 3)
  """
  check_sizes("diswot_evolution", num_asks=num_asks, population_size=population_size,
              tournament_size=tournament_size, max_mutations=max_mutations, capacity=capacity,
              max_tries=max_tries)
  if tournament_size > population_size:
    raise ValueError(f"diswot_evolution: tournament_size={tournament_size} exceeds "
                     f"population_size={population_size}")
  if feasible is not None and not callable(feasible):
    raise ValueError(f"diswot_evolution: feasible must be a predicate int32[D] -> bool[], got {feasible!r}")
  d = space.num_decisions

  def init(key: jax.Array) -> DisWOTEvolutionState:
    del key  # the random phase draws in ask
    return DisWOTEvolutionState(population=archive_init(population_size, d),
                                archive=archive_init(capacity, d),
                                num_asked=jnp.zeros((), jnp.int32),
                                num_unrepaired=jnp.zeros((), jnp.int32))

  def acceptable(enc: jax.Array) -> jax.Array:
    ok = space.is_valid(enc)
    return ok if feasible is None else ok & jnp.asarray(feasible(enc), bool)

  def propose(key: jax.Array, k: jax.Array, state: DisWOTEvolutionState) -> tuple[jax.Array, jax.Array]:
    use_fresh = (k < population_size) | (state.population.size == 0)

    def draw(key):
      key_sample, key_tournament, key_mutate = jax.random.split(key, 3)
      fresh = space.sample(key_sample).astype(jnp.int32)
      parent = tournament(key_tournament, state.population, tournament_size)
      child = space.canonicalize(mutate_decisions(space, key_mutate, parent, max_mutations))
      return jnp.where(use_fresh, fresh, child).astype(jnp.int32)

    if feasible is None:  # samples and mutants of a plain space are valid by construction
      enc = draw(jax.random.fold_in(key, 0))
      return enc, ~acceptable(enc)
    return redraw_until(key, draw, acceptable, max_tries)

  def ask(key: jax.Array, state: DisWOTEvolutionState) -> tuple[jax.Array, DisWOTEvolutionState]:
    k = state.num_asked + jnp.arange(num_asks, dtype=jnp.int32)
    keys = jax.random.split(key, num_asks)
    encs, bad = jax.vmap(propose, in_axes=(0, 0, None))(keys, k, state)
    return encs, state.replace(num_asked=state.num_asked + num_asks,
                               num_unrepaired=state.num_unrepaired + bad.sum(dtype=jnp.int32))

  def tell(key: jax.Array, state: DisWOTEvolutionState, encodings: jax.Array, scores: jax.Array,
           **extra: Any) -> tuple[DisWOTEvolutionState, dict[str, jax.Array]]:
    del key, extra  # deterministic; extra keywords (cost, ...) are not used
    return tell_population(state, encodings, scores)

  return Searcher(init, ask, tell)
