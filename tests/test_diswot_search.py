"""DisWOT evolution: drop-the-worst survival, 1-2 decision mutations, budgets on every child,
determinism, compile-once; and the budget predicates built from exact costs."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jdanas import costs
from jdanas.searchers import (cost_predicate, diswot_evolution, enumerate_encodings, get_searcher,
                              mixed_radix_index, table_predicate)
from jdanas.searchers.diswot_evolution import mutate_decisions
from jdanas.spaces import get_space

NB201 = get_space("nb201")
TINY_S1 = dict(depth_choices=(1, 2), widths=(4, 8, 8), stem=4)


def hamming(hidden):
  return lambda encs: -jnp.sum(encs != hidden[None, :], axis=-1).astype(jnp.float32)


def fake_cost_predicate(limit: int):
  """Feasible iff the NB201 cell has at most ``limit`` convolutions (ops 2 and 3)."""
  encs = enumerate_encodings(NB201.num_choices)
  return table_predicate(np.isin(encs, (2, 3)).sum(1), limit, mixed_radix_index(NB201.num_choices))


@functools.lru_cache(maxsize=None)
def searcher_and_jits(**kwargs):
  s = diswot_evolution(NB201, **{"num_asks": 4, "population_size": 4, "tournament_size": 2, "capacity": 16,
                                 **kwargs})
  traces = {"ask": 0, "tell": 0}

  def counted(name, fn):
    def wrapped(*a):
      traces[name] += 1
      return fn(*a)
    return wrapped

  return s, jax.jit(counted("ask", s.ask)), jax.jit(counted("tell", s.tell)), traces


def test_population_drops_the_worst_not_the_oldest(key):
  s, _, tell, _ = searcher_and_jits()
  state = s.init(key)
  first = jnp.asarray([[0] * 6, [1] * 6, [2] * 6, [3] * 6], jnp.int32)
  state, _ = tell(key, state, first, jnp.asarray([5.0, 1.0, jnp.nan, 3.0]))
  second = jnp.asarray([[4] * 6, [0, 1, 0, 1, 0, 1], [1, 0, 1, 0, 1, 0], [2, 2, 2, 2, 2, 3]], jnp.int32)
  state, m = tell(key, state, second, jnp.asarray([4.0, 0.5, jnp.nan, 2.0]))
  kept = {tuple(e): float(v) for e, v, ok in zip(np.asarray(state.population.encodings),
                                                  np.asarray(state.population.scores),
                                                  np.asarray(state.population.valid)) if ok}
  # The 4 best of the 8 told: 5, 4, 3, 2; the oldest (score 5) survives, NaNs and 1, 0.5 go.
  assert sorted(kept.values(), reverse=True) == [5.0, 4.0, 3.0, 2.0]
  assert (0,) * 6 in kept and (4,) * 6 in kept
  assert float(m["population_worst"]) == 2.0 and float(m["population_best"]) == 5.0
  assert float(m["best_score"]) == 5.0 and int(m["num_told"]) == 8


def test_children_change_one_or_two_decisions_of_the_tournament_winner(key):
  s, ask, tell, _ = searcher_and_jits(tournament_size=4)  # every tournament sees the whole population
  state = s.init(key)
  _, state = ask(key, state)  # the random phase (population_size proposals)
  parent = jnp.asarray([0, 1, 2, 3, 4, 0], jnp.int32)
  others = jnp.asarray([[1] * 6, [2] * 6, [3] * 6], jnp.int32)
  # Failed (NaN) members lose to any number: every tournament is won by `parent`.
  state, _ = tell(key, state, jnp.concatenate([others, parent[None]]), jnp.asarray([jnp.nan, jnp.nan, jnp.nan, -1.0]))
  changed = []
  for r in range(12):
    children, state = ask(jax.random.key(r), state)
    changed += list(np.asarray(jnp.sum(children != parent[None], axis=-1)))
  assert set(changed) == {1, 2}


def test_mutate_decisions_changes_up_to_max_distinct_decisions(key):
  space = get_space("s1_resnet", depth_choices=(1, 3, 5, 7))
  masked = jax.jit(jax.vmap(lambda k, e: mutate_decisions(space, k, e, 3), in_axes=(0, None)))
  enc = jnp.asarray([0, 3, 2], jnp.int32)
  kids = np.asarray(masked(jax.random.split(key, 64), enc))
  diff = (kids != np.asarray(enc)[None]).sum(1)
  assert set(diff) == {1, 2, 3} and np.all((kids >= 0) & (kids < 4))


def test_every_child_respects_the_budget(key):
  feasible = fake_cost_predicate(1)
  s = diswot_evolution(NB201, num_asks=4, population_size=4, tournament_size=2, capacity=16, feasible=feasible)
  objective = hamming(jnp.asarray([3, 3, 3, 3, 3, 3], jnp.int32))  # pulls towards infeasible cells

  def loop(key):
    def round_(state, r):
      k_ask, k_tell = jax.random.split(jax.random.fold_in(key, r))
      encs, state = s.ask(k_ask, state)
      state, m = s.tell(k_tell, state, encs, objective(encs))
      return state, (encs, m)
    return jax.lax.scan(round_, s.init(key), jnp.arange(6))

  state, (asks, metrics) = jax.jit(loop)(key)
  asks = asks.reshape(-1, 6)
  assert bool(jnp.all(jax.vmap(feasible)(asks)))  # random phase and every mutated child
  assert int(metrics["constraint_unrepaired"][-1]) == 0
  assert float(metrics["best_score"][-1]) >= -5.0  # 1 conv at most: distance >= 5 from all-conv3


def test_unrepairable_children_are_counted(key):
  s = diswot_evolution(NB201, num_asks=4, population_size=4, tournament_size=2, capacity=16,
                       feasible=lambda e: jnp.zeros((), bool), max_tries=3)
  encs, state = jax.jit(s.ask)(key, s.init(key))
  assert encs.shape == (4, 6) and int(state.num_unrepaired) == 4


def test_same_key_same_asks_and_compiles_once(key):
  s, ask, tell, traces = searcher_and_jits(max_mutations=2)
  objective = hamming(jnp.asarray([1, 4, 2, 0, 3, 2], jnp.int32))

  def run(k):
    state, out = s.init(k), []
    for r in range(4):  # random phase, then mutation rounds: one program for both
      encs, state = ask(jax.random.fold_in(k, r), state)
      state, _ = tell(k, state, encs, objective(encs))
      out.append(np.asarray(encs))
    return np.stack(out)

  a, b, c = run(key), run(key), run(jax.random.key(7))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert traces == {"ask": 1, "tell": 1}


def test_bad_arguments_raise_one_line_errors():
  with pytest.raises(ValueError, match="tournament_size=5 exceeds population_size=4"):
    get_searcher("diswot_evolution", NB201, population_size=4, tournament_size=5)
  with pytest.raises(ValueError, match="max_mutations"):
    get_searcher("diswot_evolution", NB201, max_mutations=0)
  with pytest.raises(ValueError, match="feasible must be a predicate"):
    diswot_evolution(NB201, feasible=3)


# ---- budget predicates from exact costs --------------------------------------------------------

def test_cost_predicate_table_matches_exact_params_and_flops():
  space = get_space("s1_resnet", **TINY_S1)  # 8 architectures: costed one by one
  encs = enumerate_encodings(space.num_choices)
  exact = [costs.model_costs(space, e, num_classes=4, input_shape=(8, 8, 3)) for e in encs]
  params = np.asarray([c.params for c in exact])
  flops = np.asarray([c.flops for c in exact])
  max_params, max_flops = float(np.median(params)), float(np.median(flops))
  feasible = cost_predicate(space, num_classes=4, input_shape=(8, 8, 3), max_params=max_params, max_flops=max_flops)
  got = np.asarray(jax.jit(jax.vmap(feasible))(encs))
  np.testing.assert_array_equal(got, (params <= max_params) & (flops <= max_flops))
  assert 0 < got.sum() < len(encs)


def test_cost_predicate_additive_model_for_large_spaces():
  space = get_space("s1_resnet", **TINY_S1)
  encs = enumerate_encodings(space.num_choices)
  params = np.asarray([costs.model_costs(space, e, num_classes=4, input_shape=(8, 8, 3), flops=False).params
                       for e in encs])
  limit = float(np.sort(params)[3])
  # max_enumerate=1 forces the additive model (verified on random architectures).
  feasible = cost_predicate(space, num_classes=4, input_shape=(8, 8, 3), max_params=limit, max_enumerate=1)
  np.testing.assert_array_equal(np.asarray(jax.vmap(feasible)(encs)), params <= limit)
  with pytest.raises(ValueError, match="max_latency_ms: needs every architecture measured"):
    cost_predicate(space, num_classes=4, input_shape=(8, 8, 3), max_latency_ms=1.0, max_enumerate=1)
  with pytest.raises(ValueError, match="max_params: must be a number >= 0"):
    cost_predicate(space, num_classes=4, input_shape=(8, 8, 3), max_params=-1)
  assert cost_predicate(space, num_classes=4, input_shape=(8, 8, 3)) is None
