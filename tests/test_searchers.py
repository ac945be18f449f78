"""Searcher contract over the registry, the archive, REA's queue and tournaments, and wrappers.

Toy objective: negative Hamming distance to a hidden encoding (NASLib's dummy-API idea), on the
NB201 cell space (5^6 cells) or the 64-architecture DisWOT S1 space where repeats are likely.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jdanas.searchers import (SEARCHERS, archive_add, archive_best, archive_contains, archive_init,
                              best_index, enumerate_encodings, get_searcher, mixed_radix_index,
                              regularized_evolution, table_predicate, with_constraint, with_dedup)
from jdanas.spaces import get_space

Q, POPULATION, TOURNAMENT, CAPACITY = 4, 8, 4, 64
TRBO_TINY = dict(n_init=4, num_candidates=32, fit_steps=5)  # the GP fit dominates compile and run time
TINY = {"random": {}, "regularized_evolution": dict(population_size=POPULATION, tournament_size=TOURNAMENT),
        "diswot_evolution": dict(population_size=POPULATION, tournament_size=TOURNAMENT),
        "turbo": TRBO_TINY, "casmopolitan": TRBO_TINY,
        # Controllers: a small LSTM, and a learning rate for a 15-round budget (the defaults are
        # ENAS's and PPO's, sized for thousands of updates).
        "reinforce": dict(hidden_size=16, learning_rate=0.05), "ppo": dict(hidden_size=16, learning_rate=0.02)}
HIDDEN = jnp.asarray([1, 4, 2, 0, 3, 2], jnp.int32)


# GP-based searchers compile a GP fit into every program (~15 s each on 2 CPU cores): their
# contract runs in the slow step; tests/test_trust_region.py covers them in the fast suite.
MODEL_BASED = {"turbo", "casmopolitan"}


@pytest.fixture(params=[pytest.param(n, marks=pytest.mark.slow) if n in MODEL_BASED else n
                        for n in sorted(SEARCHERS)])
def searcher_name(request):
  return request.param


def make(name, space=None, **kwargs):
  space = get_space("nb201") if space is None else space
  return get_searcher(name, space, **{"num_asks": Q, "capacity": CAPACITY, **TINY[name], **kwargs})


def hamming_objective(hidden):
  return lambda encs: -jnp.sum(encs != hidden[None, :], axis=-1).astype(jnp.float32)


def run_loop(searcher, key, rounds, objective):
  """init + ``rounds`` ask/tell rounds inside ``lax.scan``; returns (state, asks[R,Q,D], metrics)."""
  key_init, key_loop = jax.random.split(key)

  def round_(state, r):
    key_ask, key_tell = jax.random.split(jax.random.fold_in(key_loop, r))
    encs, state = searcher.ask(key_ask, state)
    state, metrics = searcher.tell(key_tell, state, encs, objective(encs), cost=jnp.ones(Q))
    return state, (encs, metrics)

  state, (asks, metrics) = jax.lax.scan(round_, searcher.init(key_init), jnp.arange(rounds))
  return state, asks, metrics


# ---- contract, parametrized over the registry -------------------------------------------

@functools.lru_cache(maxsize=None)
def toy_loop(name: str):
  """One compiled program per searcher, shared by the contract tests: 3 rounds on the toy objective."""
  return jax.jit(lambda k: run_loop(make(name), k, 3, hamming_objective(HIDDEN)))


def test_asks_have_fixed_shape_dtype_and_are_valid(searcher_name, key):
  _, asks, _ = toy_loop(searcher_name)(key)
  assert asks.shape == (3, Q, 6) and asks.dtype == jnp.int32
  assert bool(jnp.all(jax.vmap(get_space("nb201").is_valid)(asks.reshape(-1, 6))))


def test_same_key_same_asks(searcher_name, key):
  loop = toy_loop(searcher_name)
  a, b, c = loop(key)[1], loop(key)[1], loop(jax.random.key(1))[1]
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


@functools.lru_cache(maxsize=None)
def jitted_ask_tell(name: str):
  """``(searcher, jit(ask), jit(tell), traces)``; ``traces`` counts how often each was traced."""
  searcher = make(name)
  traces = {"ask": 0, "tell": 0}

  def counted(fn_name, fn):
    def wrapped(*args, **kwargs):
      traces[fn_name] += 1
      return fn(*args, **kwargs)
    return wrapped

  return searcher, jax.jit(counted("ask", searcher.ask)), jax.jit(counted("tell", searcher.tell)), traces


def test_nan_never_becomes_the_incumbent(searcher_name, key):
  searcher, ask, tell, _ = jitted_ask_tell(searcher_name)
  state = searcher.init(key)
  encs, state = ask(key, state)
  state, m = tell(key, state, encs, jnp.asarray([jnp.nan, -jnp.inf, -jnp.inf, -jnp.inf]))
  assert float(m["best_score"]) == -np.inf and int(m["num_failed"]) == 1
  encs, state = ask(jax.random.key(1), state)
  state, m = tell(key, state, encs, jnp.full((Q,), jnp.nan, jnp.float32))  # not weakly typed
  assert float(m["best_score"]) == -np.inf and int(m["num_failed"]) == Q
  encs, state = ask(jax.random.key(2), state)
  state, m = tell(key, state, encs, jnp.asarray([jnp.nan, -5.0, jnp.nan, -7.0]))
  assert float(m["best_score"]) == -5.0


def test_loop_runs_under_scan(searcher_name, key):
  state, _, metrics = toy_loop(searcher_name)(key)
  assert metrics["best_score"].shape == (3,)
  assert all(v.shape == (3,) for v in metrics.values())
  assert int(metrics["num_told"][-1]) == 3 * Q
  assert bool(jnp.all(jnp.diff(metrics["best_score"]) >= 0))  # the incumbent never gets worse
  assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(state))


def test_ask_and_tell_trace_once(searcher_name, key):
  # The jitted pair is shared with other tests: one trace in total, whatever ran before.
  searcher, ask, tell, traces = jitted_ask_tell(searcher_name)
  objective = hamming_objective(HIDDEN)
  state = searcher.init(key)
  for r in range(5):
    encs, state = ask(jax.random.fold_in(key, r), state)
    state, _ = tell(key, state, encs, objective(encs))
  assert traces == {"ask": 1, "tell": 1}


@functools.lru_cache(maxsize=None)
def toy_search(name: str, rounds: int = 15):
  """Best score after ``rounds`` rounds, vmapped over seeds (compiled once per searcher)."""
  final = lambda k: run_loop(make(name), k, rounds, hamming_objective(HIDDEN))[2]["best_score"][-1]
  return jax.jit(jax.vmap(final))


def test_beats_random_search_on_toy_objective(searcher_name, key):
  keys = jax.random.split(key, 10)
  best = float(jnp.mean(toy_search(searcher_name)(keys)))
  assert -6.0 <= best <= 0.0
  if searcher_name != "random":
    assert best > float(jnp.mean(toy_search("random")(keys)))


# ---- archive ------------------------------------------------------------------------------

def test_archive_keeps_the_best_rows_when_full():
  add, contains, best = jax.jit(archive_add), jax.jit(archive_contains), jax.jit(archive_best)
  archive = archive_init(3, 2)
  archive = add(archive, jnp.asarray([[0, 0], [1, 1], [9, 9]]), jnp.asarray([1.0, jnp.nan, 5.0]),
                jnp.asarray([True, True, False]))  # a masked-out row is neither added nor counted
  assert int(archive.size) == 2 and int(archive.num_added) == 2
  assert bool(contains(archive, jnp.asarray([1, 1]))) and not bool(contains(archive, jnp.asarray([9, 9])))
  archive = add(archive, jnp.asarray([[2, 2], [3, 3], [4, 4]]), jnp.asarray([0.5, 2.0, -1.0]))
  # 5 rows offered to 3 slots: NaN goes first, then the lowest score.
  assert int(archive.size) == 3 and int(archive.num_added) == 5
  np.testing.assert_array_equal(archive.encodings, [[3, 3], [0, 0], [2, 2]])
  assert not bool(contains(archive, jnp.asarray([1, 1])))
  enc, score, found = best(archive)
  np.testing.assert_array_equal(enc, [3, 3])
  assert float(score) == 2.0 and bool(found)


def test_archive_best_ignores_nan_and_prefers_older_on_ties():
  add, best = jax.jit(archive_add), jax.jit(archive_best)
  archive = add(archive_init(4, 1), jnp.asarray([[7], [8], [9]]), jnp.asarray([jnp.nan, -jnp.inf, -jnp.inf]))
  enc, score, found = best(archive)
  assert int(enc[0]) == 8 and float(score) == -np.inf and bool(found)
  archive = add(archive_init(4, 1), jnp.asarray([[7], [8], [9]]), jnp.full((3,), jnp.nan))
  _, score, found = best(archive)
  assert float(score) == -np.inf and not bool(found)
  pick = jax.jit(best_index)(jnp.asarray([jnp.nan, -jnp.inf, 3.0]), jnp.asarray([True, True, False]))
  assert int(pick) == 1


# ---- regularized evolution specifics -----------------------------------------------------

def test_evolution_population_is_a_fifo_of_the_last_told(key):
  space = get_space("nb201")
  searcher = regularized_evolution(space, num_asks=3, population_size=4, tournament_size=2, capacity=8)
  tell = jax.jit(searcher.tell)
  state = searcher.init(key)
  told = []
  for r in range(3):
    encs = jnp.full((3, 6), r, jnp.int32).at[:, 0].set(jnp.arange(3))
    state, _ = tell(key, state, encs, jnp.arange(3, dtype=jnp.float32))
    told += [tuple(e) for e in np.asarray(encs)]
  assert {tuple(e) for e in np.asarray(state.population)} == set(told[-4:])
  assert bool(jnp.all(state.population_filled)) and int(state.num_told) == 9


def test_evolution_starts_random_then_mutates_tournament_winner(key):
  space = get_space("nb201")
  searcher = regularized_evolution(space, num_asks=4, population_size=4, tournament_size=4, capacity=8)
  ask, tell = jax.jit(searcher.ask), jax.jit(searcher.tell)
  parent = np.asarray([0, 1, 2, 3, 4, 0], np.int32)
  state = searcher.init(key)
  first, state = ask(key, state)  # the random phase: 4 uniform samples
  assert int(state.num_asked) == 4 and bool(jnp.all(jax.vmap(space.is_valid)(first)))
  # Failed (NaN) individuals lose even to -inf: every child mutates `parent`.
  population = np.concatenate([np.asarray(first[:3]), parent[None]])
  state, _ = tell(key, state, jnp.asarray(population), jnp.asarray([jnp.nan, jnp.nan, jnp.nan, -jnp.inf]))
  children, _ = ask(jax.random.key(3), state)
  np.testing.assert_array_equal((np.asarray(children) != parent[None, :]).sum(-1), 1)


# ---- wrappers -----------------------------------------------------------------------------

def test_dedup_never_repeats(searcher_name, key):
  space = get_space("s1_resnet")  # 64 architectures: 40 unwrapped draws repeat almost surely
  objective = lambda e: jnp.zeros(e.shape[:1], jnp.float32)  # flat: every parent competes
  searcher = with_dedup(make(searcher_name, space), space, capacity=CAPACITY)
  loop = lambda k, s: jax.jit(lambda k: run_loop(s, k, 10, objective))(k)
  _, asks, metrics = loop(key, searcher)
  asks = np.asarray(asks).reshape(-1, 3)
  assert int(metrics["dedup_unrepaired"][-1]) == 0
  assert len({tuple(e) for e in asks}) == len(asks) == 40
  if searcher_name == "random":  # the space is small enough for the wrapper to have work to do
    _, raw, _ = loop(key, make(searcher_name, space))
    assert len({tuple(e) for e in np.asarray(raw).reshape(-1, 3)}) < 40


def test_constraint_only_proposes_feasible(searcher_name, key):
  space = get_space("nb201")
  encs = enumerate_encodings(space.num_choices)
  index = mixed_radix_index(space.num_choices)
  np.testing.assert_array_equal(jax.vmap(index)(encs), np.arange(len(encs)))
  n_conv = np.isin(encs, (2, 3)).sum(1)  # a fake cost: convolutions per cell (ops 2 and 3)
  feasible = table_predicate(n_conv, 1, index)
  # The one budget path: every factory takes ``feasible`` (diswot_evolution checks it per child,
  # the others wrap themselves in with_constraint).
  searcher = make(searcher_name, space, feasible=feasible)
  _, asks, metrics = jax.jit(lambda k: run_loop(searcher, k, 5, hamming_objective(HIDDEN)))(key)
  assert int(metrics["constraint_unrepaired"][-1]) == 0
  assert bool(jnp.all(jax.vmap(feasible)(asks.reshape(-1, 6))))
  assert "best_score" in metrics


def test_wrappers_compose_under_scan_and_count_failures(key):
  space = get_space("s1_resnet")
  nothing_feasible = lambda enc: jnp.zeros((), bool)
  # Dedup outermost, the recommended order (see jdanas.searchers.wrappers).
  searcher = with_dedup(with_constraint(make("random", space), nothing_feasible, max_tries=2), space)
  objective = hamming_objective(jnp.zeros(3, jnp.int32))
  state, asks, metrics = jax.jit(lambda k: run_loop(searcher, k, 3, objective))(key)
  assert asks.shape == (3, Q, 3)
  np.testing.assert_array_equal(metrics["constraint_unrepaired"], [Q, 2 * Q, 3 * Q])
  assert int(metrics["dedup_unrepaired"][-1]) == 0
  assert int(state.seen.size) == 3 * Q


def test_get_searcher_errors():
  space = get_space("nb201")
  with pytest.raises(ValueError, match="unknown name 'nope'"):
    get_searcher("nope", space)
  with pytest.raises(ValueError, match="bad arguments"):
    get_searcher("random", space, population_size=3)
  with pytest.raises(ValueError, match="tournament_size"):
    get_searcher("regularized_evolution", space, population_size=2, tournament_size=3)
  with pytest.raises(ValueError, match="num_asks"):
    get_searcher("random", space, num_asks=0)
