"""Searcher wrappers: deduplication and feasibility constraints, composed by wrapping.

Like optax's ``masked`` / ``apply_if_finite``, a wrapper takes a :class:`Searcher` and returns a
new one whose state holds the inner state plus a few arrays. Both wrappers share one repair
rule, which stays pure and jittable:

1. ``encs, inner' = inner.ask(key, inner)``; rows that are *bad* (a duplicate, or infeasible)
   are flagged.
2. Up to ``max_tries`` times, inside ``lax.while_loop``: redraw
   ``fresh, _ = inner.ask(fold_in(key, attempt), inner)`` from the *same* inner state and
   replace only the bad rows with the same rows of ``fresh``; re-flag.
3. Rows still bad after ``max_tries`` redraws are kept as they are and counted in the state;
   ``tell`` reports the running count as a metric.

The inner state returned is ``inner'`` from step 1, so an inner ``ask`` must update its state
independently of which rows it drew (true of counters such as ``num_asked``). Without bad rows the
wrapped searcher proposes exactly what the inner one does.

Order when nesting: ``with_dedup(with_constraint(s, feasible), space)``. Each wrapper guarantees its
property for the batch it assembles; an outer wrapper mixes rows of several inner draws, which keeps
per-row properties (feasible, not told before) but can break in-batch uniqueness, so dedup goes
outermost.

Constraints are jittable predicates ``feasible(enc int32[D]) -> bool[]``. For a small space whose
architectures can be enumerated (NB201: 5^6 = 15,625 cells), compute the cost of every
architecture once on the host, in the order of :func:`enumerate_encodings`, and turn the array
into a lookup-table predicate::

    encs = enumerate_encodings(space.num_choices)                    # int32[M, D]
    costs = table.lookup("params_cifar10_M", encs)                   # or any host cost function
    feasible = table_predicate(costs, 0.5, mixed_radix_index(space.num_choices))
    searcher = with_constraint(regularized_evolution(space), feasible)
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jdanas.searchers.base import Archive, Searcher, archive_add, archive_contains, archive_init, check_sizes
from jdanas.spaces.base import AbstractSearchSpace

Predicate = Callable[[jax.Array], jax.Array]  # int32[D] -> bool[]


def _repair(ask: Callable, key: jax.Array, inner_state: Any, is_bad: Callable[[jax.Array], jax.Array],
            max_tries: int) -> tuple[jax.Array, Any, jax.Array]:
  """The shared redraw loop (see the module docstring).

  Args:
    ask: the inner searcher's ask.
    key: the ask key.
    inner_state: the inner state before asking.
    is_bad: ``int32[Q, D] -> bool[Q]``.
    max_tries: redraws at most.

  Returns:
    ``(encodings int32[Q, D], inner state after the first draw, int32[] rows still bad)``.
  """
  encs, next_state = ask(key, inner_state)
  encs = encs.astype(jnp.int32)

  def cond(carry):
    attempt, _, bad = carry
    return (attempt <= max_tries) & jnp.any(bad)

  def body(carry):
    attempt, encs, bad = carry
    fresh, _ = ask(jax.random.fold_in(key, attempt), inner_state)
    encs = jnp.where(bad[:, None], fresh.astype(jnp.int32), encs)
    return attempt + 1, encs, is_bad(encs)

  _, encs, bad = jax.lax.while_loop(cond, body, (jnp.ones((), jnp.int32), encs, is_bad(encs)))
  return encs, next_state, bad.sum(dtype=jnp.int32)


@flax.struct.dataclass
class DedupState:
  """Attributes:
    inner: the wrapped searcher's state.
    seen: every told encoding (capacity N, best-first eviction; see :class:`Archive`).
    num_unrepaired: ``int32[]`` duplicates proposed so far because ``max_tries`` ran out.
  """
  inner: Any
  seen: Archive
  num_unrepaired: jax.Array


def duplicates(encodings: jax.Array, seen: Archive) -> jax.Array:
  """``bool[Q]``: rows of ``int32[Q, D]`` that are in ``seen`` or repeat an earlier row."""
  in_archive = jax.vmap(archive_contains, in_axes=(None, 0))(seen, encodings)
  same = jnp.all(encodings[:, None, :] == encodings[None, :, :], axis=-1)  # [Q, Q]
  q = encodings.shape[0]
  earlier = jnp.tril(jnp.ones((q, q), bool), k=-1)
  return in_archive | jnp.any(same & earlier, axis=1)


def with_dedup(searcher: Searcher, space: AbstractSearchSpace, *, max_tries: int = 32,
               capacity: int = 1024) -> Searcher:
  """Never proposes an encoding already told, nor one twice in a batch.

  Args:
    searcher: the inner searcher.
    space: the space (for the encoding length D).
    max_tries: redraws of duplicate rows per ``ask`` before giving up.
    capacity: N, told encodings remembered; past N the eviction rule of :func:`archive_add`
      applies (failed and worst rows are forgotten first and may be proposed again).

  Returns:
    A :class:`Searcher` with :class:`DedupState`; ``tell`` adds ``dedup_unrepaired`` (running
    count of duplicates that could not be avoided) to the inner metrics.
  """
  check_sizes("with_dedup", max_tries=max_tries, capacity=capacity)
  d = space.num_decisions

  def init(key: jax.Array) -> DedupState:
    return DedupState(inner=searcher.init(key), seen=archive_init(capacity, d),
                      num_unrepaired=jnp.zeros((), jnp.int32))

  def ask(key: jax.Array, state: DedupState) -> tuple[jax.Array, DedupState]:
    encs, inner, unrepaired = _repair(searcher.ask, key, state.inner,
                                      lambda e: duplicates(e, state.seen), max_tries)
    return encs, state.replace(inner=inner, num_unrepaired=state.num_unrepaired + unrepaired)

  def tell(key: jax.Array, state: DedupState, encodings: jax.Array, scores: jax.Array,
           **extra: Any) -> tuple[DedupState, dict[str, jax.Array]]:
    inner, metrics = searcher.tell(key, state.inner, encodings, scores, **extra)
    state = state.replace(inner=inner, seen=archive_add(state.seen, encodings, scores))
    return state, {**metrics, "dedup_unrepaired": state.num_unrepaired}

  return Searcher(init, ask, tell)


@flax.struct.dataclass
class ConstraintState:
  """Attributes:
    inner: the wrapped searcher's state.
    num_unrepaired: ``int32[]`` infeasible proposals so far because ``max_tries`` ran out.
  """
  inner: Any
  num_unrepaired: jax.Array


def constrained(searcher: Searcher, feasible: Predicate | None) -> Searcher:
  """``searcher`` if ``feasible`` is None, else :func:`with_constraint` of it: how every searcher
  factory that does not check budgets itself applies its ``feasible`` argument."""
  return searcher if feasible is None else with_constraint(searcher, feasible)


def with_constraint(searcher: Searcher, feasible: Predicate, *, max_tries: int = 32) -> Searcher:
  """Only proposes encodings with ``feasible(enc)`` True, redrawing infeasible rows.

  Args:
    searcher: the inner searcher.
    feasible: jittable, vmappable ``int32[D] -> bool[]`` (e.g. from :func:`table_predicate`).
    max_tries: redraws of infeasible rows per ``ask`` before giving up; rows still infeasible
      are proposed anyway (the caller may score them NaN) and counted.

  Returns:
    A :class:`Searcher` with :class:`ConstraintState`; ``tell`` adds ``constraint_unrepaired``
    (running count of infeasible proposals) to the inner metrics.
  """
  check_sizes("with_constraint", max_tries=max_tries)

  def is_bad(encs: jax.Array) -> jax.Array:
    return ~jax.vmap(feasible)(encs).astype(bool)

  def init(key: jax.Array) -> ConstraintState:
    return ConstraintState(inner=searcher.init(key), num_unrepaired=jnp.zeros((), jnp.int32))

  def ask(key: jax.Array, state: ConstraintState) -> tuple[jax.Array, ConstraintState]:
    encs, inner, unrepaired = _repair(searcher.ask, key, state.inner, is_bad, max_tries)
    return encs, state.replace(inner=inner, num_unrepaired=state.num_unrepaired + unrepaired)

  def tell(key: jax.Array, state: ConstraintState, encodings: jax.Array, scores: jax.Array,
           **extra: Any) -> tuple[ConstraintState, dict[str, jax.Array]]:
    inner, metrics = searcher.tell(key, state.inner, encodings, scores, **extra)
    return state.replace(inner=inner), {**metrics, "constraint_unrepaired": state.num_unrepaired}

  return Searcher(init, ask, tell)


def mixed_radix_index(num_choices: Sequence[int]) -> Callable[[jax.Array], jax.Array]:
  """Jittable ``int32[D] -> int32[]`` position of an encoding in :func:`enumerate_encodings`
  order (decision 0 most significant; for NB201 the base-5 code of ``NB201Table``)."""
  n = [int(c) for c in num_choices]
  if math.prod(n) >= 2 ** 31:
    raise ValueError(f"mixed_radix_index: {math.prod(n)} architectures do not fit int32")
  weights = np.asarray([math.prod(n[i + 1:]) for i in range(len(n))], np.int32)

  def index(enc: jax.Array) -> jax.Array:
    return jnp.sum(jnp.asarray(enc, jnp.int32) * weights, dtype=jnp.int32)

  return index


def enumerate_encodings(num_choices: Sequence[int]) -> np.ndarray:
  """Host: every encoding of a small space, ``int32[prod(num_choices), D]``, in
  :func:`mixed_radix_index` order."""
  n = tuple(int(c) for c in num_choices)
  return np.stack(np.unravel_index(np.arange(math.prod(n)), n), axis=-1).astype(np.int32)


def table_predicate(values: Any, budget: float, index_fn: Callable[[jax.Array], jax.Array]) -> Predicate:
  """A jittable feasibility predicate from a precomputed per-architecture cost array.

  The comparison runs once on the host; the predicate is a lookup in a ``bool[M]`` constant.

  Args:
    values: ``float[M]`` cost of every architecture, indexed by ``index_fn`` (NaN = infeasible).
    budget: feasible iff ``value <= budget``.
    index_fn: jittable ``int32[D] -> int32[]`` row of an encoding, e.g. :func:`mixed_radix_index`.

  Returns:
    ``feasible(enc int32[D]) -> bool[]``.
  """
  values = np.asarray(values, np.float64)
  if values.ndim != 1:
    raise ValueError(f"table_predicate: values must be 1-D, got shape {values.shape}")
  table = jnp.asarray(values <= budget)  # NaN compares False: infeasible

  def feasible(enc: jax.Array) -> jax.Array:
    return table[index_fn(enc)]

  return feasible
