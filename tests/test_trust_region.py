"""Trust-region BO: the region state machine on scripted scores, candidates inside their region,
no repeats / no re-evaluation across restarts, compile-once ask/tell, TuRBO on a continuous box."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jdanas.searchers import casmopolitan, get_searcher, turbo, turbo_box
from jdanas.searchers import trust_region as tr
from jdanas.spaces import get_space

HIDDEN = jnp.asarray([1, 4, 2, 0, 3, 2], jnp.int32)
Q = 4


def hamming_objective(encs):
  return -jnp.sum(encs != HIDDEN[None, :], axis=-1).astype(jnp.float32)


# ---- the state machine ---------------------------------------------------------------------

def scripted(config, layout, batches):
  """Runs :func:`update_region` over ``(batch_best, num_points)`` pairs; returns the trajectory."""
  length, radius = jnp.float32(config.length_init), jnp.int32(config.radius_init)
  succ = fail = jnp.int32(0)
  best = jnp.float32(-jnp.inf)
  out = []
  update = jax.jit(lambda *a: tr.update_region(config, layout, *a))
  for batch_best, num in batches:
    u = update(length, radius, succ, fail, best, jnp.float32(batch_best), jnp.int32(num))
    length, radius, succ, fail = u.length, u.radius, u.successes, u.failures
    best = jnp.maximum(best, batch_best) if num else best
    out.append((round(float(length), 7), int(radius), int(succ), int(fail), bool(u.collapsed)))
  return out


BOX = tr.Layout(dim=2, num_choices=None, categorical=(), box=(0, 1))
CAT = tr.Layout(dim=6, num_choices=(5,) * 6, categorical=tuple(range(6)), box=())


def turbo_config(**kw):
  args = dict(num_asks=1, num_trust_regions=1, preset="paper", n_init=4, capacity=32, num_candidates=16,
              acquisition="thompson", fit_steps=1, fit_restarts=1, warm_start=None, failure_tolerance=None,
              y_transform=None)
  args.update(kw)
  return tr._turbo_config("test", 2, **args)


def test_turbo_expands_after_three_successes_and_shrinks_after_failtol():
  config = turbo_config()
  assert config.failure_tolerance == 4  # ceil(max(4/1, 2/1))
  traj = scripted(config, BOX, [(1.0, 1), (2.0, 1), (3.0, 1), (3.0, 1), (3.0, 0), (3.001, 1), (3.0, 1),
                                (4.0, 1)])
  assert [t[0] for t in traj[:3]] == [0.8, 0.8, 1.6]  # the third success doubles L
  assert traj[2][2] == 0  # the counter resets after expanding
  assert traj[3][3] == 1 and traj[4] == traj[3]  # a batch without model points changes nothing
  assert traj[5][3] == 2  # 3.001 < 3 + 1e-3 * 3 is not a success
  assert traj[7][2:4] == (1, 0)  # a success resets the failures
  traj = scripted(config, BOX, [(1.0, 1)] + [(0.0, 1)] * 4 + [(0.0, 1)] * 4)
  assert traj[4][0] == 0.4 and traj[4][3] == 0 and traj[8][0] == 0.2  # /2 after 4 failures


def test_turbo_collapses_below_length_min_and_turbo_m_counts_points():
  config = turbo_config(failure_tolerance=1)
  traj = scripted(config, BOX, [(1.0, 1)] + [(0.0, 1)] * 7)
  lengths = [t[0] for t in traj]
  assert lengths[-1] == pytest.approx(0.8 / 2 ** 7) and traj[-1][4]  # 0.00625 < 2^-7: collapse
  assert not any(t[4] for t in traj[:-1])
  m_config = turbo_config(num_trust_regions=2, num_asks=3)
  assert m_config.failure_tolerance == 5 and m_config.count_points_as_failures  # max(5, D)
  traj = scripted(m_config, BOX, [(1.0, 1), (0.0, 3), (0.0, 2)])
  assert traj[1][3] == 3 and traj[2][0] == 0.4  # 3 + 2 failed points >= 5


def test_casmopolitan_radius_path_and_restart():
  space = get_space("nb201")
  config = casmopolitan(space)  # builds; the config itself is rebuilt below for the script
  del config
  cfg = tr.TRConfig(**{**turbo_config()._asdict(), "radius_init": 6, "radius_min": 1, "radius_max": 6,
                       "expand": 1.5, "shrink_factor": 1.5, "failure_tolerance": 2, "success_tolerance": 3})
  traj = scripted(cfg, CAT, [(1.0, 1)] + [(0.0, 1)] * 6)
  radii = [t[1] for t in traj]
  assert radii == [6, 6, 4, 4, 2, 2, 1]  # 6 -> 4 -> 2 -> 1 (int(r / 1.5))
  assert traj[-1][4] and not any(t[4] for t in traj[:-1])
  traj = scripted(cfg._replace(radius_init=4), CAT, [(1.0, 1), (2.0, 1), (3.0, 1)])
  assert traj[-1][1] == 6  # int(4 * 1.5) = 6 <= radius_max


# ---- candidates ----------------------------------------------------------------------------

def test_candidates_stay_inside_their_region():
  layout = tr.Layout(dim=4, num_choices=(5, 4, 5, 9), categorical=(0, 2), box=(1, 3))
  center = tr.to_features(layout, jnp.asarray([2, 1, 4, 6]))
  lb, ub = tr.box_bounds(layout, center, jnp.float32(0.4), jnp.asarray([0.2, 0.8]))
  # ls-weighted half-widths with a unit product: w = (0.5, 2.0) after normalisation.
  np.testing.assert_allclose(ub - lb, [0.2, 0.4 + 0.25], atol=1e-6)  # 0.75 + 0.4 is clipped at 1
  make = jax.jit(lambda k, r: tr.region_candidates(k, layout, center, lb, ub, r, 256), static_argnums=())
  for radius in (1, 2):
    cand = np.asarray(make(jax.random.key(radius), jnp.int32(radius)))
    hamming = (cand[:, [0, 2]] != np.asarray(center)[[0, 2]]).sum(1)
    assert hamming.max() <= radius and hamming.max() == radius
    box = cand[:, [1, 3]]
    assert np.all(box >= np.asarray(lb) - 1e-6) and np.all(box <= np.asarray(ub) + 1e-6)
    steps = np.array([3, 8])
    np.testing.assert_allclose(box * steps, np.round(box * steps), atol=1e-5)  # on the grid
    # The first rows are every Hamming-1 neighbour of the centre (4 + 4 of them).
    first = cand[:8]
    assert np.all((first[:, [0, 2]] != np.asarray(center)[[0, 2]]).sum(1) == 1)
    assert len({tuple(r) for r in first}) == 8


def test_single_choice_ordinal_decisions_stay_at_zero():
  # A knob grid of one value (TRADE's runlocal space) has no room: index 0 whatever the box says.
  layout = tr.Layout(dim=3, num_choices=(3, 1, 4), categorical=(0,), box=(1, 2))
  lb, ub = jnp.asarray([0.0, 0.0]), jnp.asarray([1.0, 1.0])
  snapped = tr._snap(layout, jnp.asarray([[1.0, 1.0], [0.6, 0.4]]), lb, ub)
  np.testing.assert_allclose(snapped, [[0.0, 1.0], [0.0, 1 / 3]], atol=1e-6)
  encs = tr.to_encodings(layout, jnp.asarray([[2.0, 1.0, 1.0], [0.0, 0.7, 0.2]]))
  np.testing.assert_array_equal(encs, [[2, 0, 3], [0, 0, 1]])


# ---- searchers: compile once, no repeats, restarts -----------------------------------------

@functools.lru_cache(maxsize=None)
def counted_pair(name: str):
  """A searcher with a tiny failure tolerance (restarts happen) and its traced-once ask/tell."""
  space = get_space("nb201")
  kwargs = dict(num_asks=Q, capacity=64, n_init=4, num_candidates=32, fit_steps=5)
  if name == "casmopolitan":
    searcher = casmopolitan(space, failure_tolerance=1, radius_init=3, **kwargs)
  else:
    searcher = turbo(space, failure_tolerance=1, **kwargs)
  traces = {"ask": 0, "tell": 0}

  def counted(fn_name, fn):
    def wrapped(*args):
      traces[fn_name] += 1
      return fn(*args)
    return wrapped

  return searcher, jax.jit(counted("ask", searcher.ask)), jax.jit(counted("tell", searcher.tell)), traces


@pytest.mark.parametrize("name", ["casmopolitan", pytest.param("turbo", marks=pytest.mark.slow)])
def test_no_repeats_across_restarts_and_one_trace(name):
  searcher, ask, tell, traces = counted_pair(name)
  key = jax.random.key(0)
  state = searcher.init(key)
  told, best = [], []
  for r in range(12):
    encs, state = ask(jax.random.fold_in(key, r), state)
    assert encs.shape == (Q, 6) and encs.dtype == jnp.int32
    assert bool(jnp.all(jax.vmap(get_space("nb201").is_valid)(encs)))
    state, metrics = tell(jax.random.fold_in(key, 100 + r), state, encs, hamming_objective(encs))
    told += [tuple(e) for e in np.asarray(encs)]
    best.append(float(metrics["best_score"]))
  assert traces == {"ask": 1, "tell": 1}  # the observation buffer filled up without retracing
  assert len(set(told)) == len(told) == 12 * Q  # never twice in a batch, never re-evaluated
  assert int(metrics["tr_restarts"]) >= 1
  if name == "casmopolitan":  # (TuRBO's box shrinks below the 5-value grid and then falls back)
    assert int(metrics["num_fallbacks"]) <= Q  # proposals come from the model, not the fallback
  assert best == sorted(best) and best[-1] > best[Q // 2]


def test_nan_scores_never_enter_the_model():
  searcher, ask, tell, _ = counted_pair("casmopolitan")
  key = jax.random.key(3)
  state = searcher.init(key)
  encs, state = ask(key, state)
  state, m = tell(key, state, encs, jnp.full((Q,), jnp.nan, jnp.float32))
  assert float(m["best_score"]) == -np.inf and int(m["num_failed"]) == Q
  encs, state = ask(jax.random.fold_in(key, 1), state)
  state, m = tell(key, state, encs, jnp.asarray([jnp.nan, -2.0, jnp.nan, -4.0]))
  assert float(m["best_score"]) == -2.0
  assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(state.regions.params))


def test_turbo_box_minimises_a_quadratic():
  searcher = turbo_box(2, num_asks=2, n_init=6, capacity=48, num_candidates=64, fit_steps=10)
  target = jnp.asarray([0.3, 0.7])
  objective = lambda x: -jnp.sum((x - target) ** 2, axis=-1)

  def run(key):
    def round_(state, r):
      x, state = searcher.ask(jax.random.fold_in(key, r), state)
      state, m = searcher.tell(jax.random.fold_in(key, 50 + r), state, x, objective(x))
      return state, (x, m["best_score"])
    return jax.lax.scan(round_, searcher.init(key), jnp.arange(15))

  state, (xs, best) = jax.jit(run)(jax.random.key(0))
  assert xs.shape == (15, 2, 2) and xs.dtype == jnp.float32
  assert bool(jnp.all((xs >= 0) & (xs <= 1)))
  design_best = float(best[2])  # after the 6 design points
  assert float(best[-1]) > design_best and float(best[-1]) > -2e-3
  np.testing.assert_allclose(state.best_x, target, atol=0.05)


def test_bad_arguments_raise():
  space = get_space("nb201")
  with pytest.raises(ValueError, match="acquisition"):
    casmopolitan(space, acquisition="pi")
  with pytest.raises(ValueError, match="preset"):
    turbo(space, preset="nope")
  with pytest.raises(ValueError, match="capacity"):
    get_searcher("casmopolitan", space, capacity=8, n_init=20)
  with pytest.raises(ValueError, match="num_candidates"):
    turbo_box(3, num_candidates=0)


@pytest.mark.slow
@pytest.mark.parametrize("acquisition", ["ei", "ucb"])
def test_ei_and_ucb_with_local_search_propose_new_cells(acquisition):
  space = get_space("nb201")
  searcher = casmopolitan(space, num_asks=2, capacity=32, n_init=4, num_candidates=32, fit_steps=5,
                          acquisition=acquisition, radius_init=2)

  def run(key):
    def round_(state, r):
      encs, state = searcher.ask(jax.random.fold_in(key, r), state)
      state, m = searcher.tell(jax.random.fold_in(key, 50 + r), state, encs, hamming_objective(encs))
      return state, (encs, m["best_score"], m["num_fallbacks"])
    return jax.lax.scan(round_, searcher.init(key), jnp.arange(8))[1]

  encs, best, fallbacks = jax.jit(run)(jax.random.key(0))
  told = [tuple(e) for e in np.asarray(encs).reshape(-1, 6)]
  assert len(set(told)) == len(told) == 16
  assert int(fallbacks[-1]) == 0 and float(best[-1]) > float(best[1])
