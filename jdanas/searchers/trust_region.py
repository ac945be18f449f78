"""Trust-region Bayesian optimisation: TuRBO boxes and CASMOPOLITAN Hamming balls, fully jittable.

References: TuRBO (Eriksson et al., NeurIPS 2019, https://arxiv.org/abs/1910.01739) and
CASMOPOLITAN (Wan et al., ICML 2021, https://arxiv.org/abs/2102.07188); the behaviour follows the
reference implementations (see docs/methods/trade.md for the CASMOPOLITAN settings jdanas uses).

Representation. Every encoding maps to a feature row ``x float[D]``: a *categorical* decision keeps
its category index (overlap kernel, Hamming-ball region), an *ordinal* decision becomes
``index / (n - 1)`` in [0, 1] (Matern-5/2 kernel, TuRBO box, candidates snapped back to the grid).
``casmopolitan(space)`` takes the kinds from ``space.decision_kinds()`` (mixed spaces interleave
both: each candidate redraws categorical values inside the ball *and* box coordinates);
``turbo(space)`` treats every decision as ordinal (TuRBO on the index relaxation, a baseline);
``turbo_box(dim)`` optimises functions on [0, 1]^dim (proposals are ``float32[Q, dim]``).

Loop (scores are higher-is-better; NaN = failed, never the incumbent, never in the GP):

* ``init`` draws an initial design of ``n_init`` points per trust region (centred Latin hypercube
  with jitter on box dimensions, uniform categories on categorical ones); ``ask`` serves it first.
* After its design a region proposes by Thompson sampling: ``num_candidates`` candidates inside the
  region (box: TuRBO's perturbation mask with probability min(20/D, 1) over a uniform draw from the
  lengthscale-weighted box; ball: exactly min(radius, D_cat) categorical decisions redrawn
  uniformly, plus, with ``include_neighbours``, every Hamming-1 neighbour of the centre), joint
  posterior samples of the GP fitted on the region's own data, one sample per batch slot, the
  arg-max of each sample taken without repeats. Candidates that are already evaluated (compared on
  ``space.canonicalize``-d encodings) or repeated within the pool are excluded; if nothing is left a
  slot falls back to a fresh random draw. With several regions (TuRBO-m) the pools are merged and
  each slot takes the global arg-max. ``acquisition="ei"`` / ``"ucb"`` score the pool plus the end
  points of a random-neighbour hill climb from the centre instead (batch = the top-Q distinct).
* ``tell`` adds the batch to a fixed-capacity ring buffer of observations (the oldest row is
  overwritten once ``capacity`` is reached), updates each region that received model points
  (success if the batch best beats the region best by ``1e-3 |best|``; ``success_tolerance``
  successes expand, ``failure_tolerance`` failures shrink; box x2 / /2 for TuRBO, x1.5 / /1.5 for
  CASMOPOLITAN boxes and radii), restarts a collapsed region (its data are detached; TuRBO draws a
  fresh design, CASMOPOLITAN a *guided* one around the UCB optimum of an auxiliary GP fitted on the
  best point of every earlier region), and refits the GP hyperparameters of each region whose data
  changed (Adam on the exact marginal likelihood; warm-started from the previous fit unless
  ``warm_start=False``).

Everything has fixed shapes, so ``ask`` and ``tell`` compile once. Differences from the references:
uniform random numbers instead of Sobol points; Adam instead of L-BFGS for the "botorch-tutorial"
preset; the perturbation mask's fallback coordinate is drawn from all D dimensions (the references
never pick the last one); categorical initial designs are uniform rather than LHS on a one-hot
relaxation; EI/UCB batches take the top-Q candidates instead of kriging-believer fantasies.
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp

from jdanas.searchers import gp
from jdanas.searchers.base import (Archive, Searcher, archive_add, archive_init, check_sizes,
                                   tell_metrics)
from jdanas.searchers.wrappers import Predicate, constrained
from jdanas.spaces.base import AbstractSearchSpace


class Layout(NamedTuple):
  """Static description of the feature rows.

  Attributes:
    dim: D.
    num_choices: cardinalities per decision, or None for a continuous [0, 1]^D problem.
    categorical: decisions with Hamming-ball regions and the overlap kernel.
    box: decisions with box regions and the Matern kernel (ordinal or continuous).
  """
  dim: int
  num_choices: tuple[int, ...] | None
  categorical: tuple[int, ...]
  box: tuple[int, ...]


class TRConfig(NamedTuple):
  """Static settings of the trust-region engine (see the factories for their meaning)."""
  num_asks: int
  num_trust_regions: int
  n_init: int
  capacity: int
  num_candidates: int
  acquisition: str
  length_init: float
  length_min: float
  length_max: float
  radius_init: int
  radius_min: int
  radius_max: int
  success_tolerance: int
  failure_tolerance: int
  count_points_as_failures: bool
  expand: float
  shrink_factor: float
  sample_noise: bool
  y_transform: str
  fit_steps: int
  fit_restarts: int
  learning_rate: float
  warm_start: bool
  guided_restart: bool
  include_neighbours: bool
  bounds: gp.Bounds
  mixture: float | None
  ucb_beta: float
  local_search_steps: int
  local_search_restarts: int
  restart_memory: int
  global_model: bool
  categorical_kernel: str = "transformed_overlap"


@flax.struct.dataclass
class RegionState:
  """Per trust region, each leaf with a leading axis of size m (the number of regions).

  Attributes:
    length: ``float32[m]`` box edge length L (box decisions).
    radius: ``int32[m]`` Hamming radius (categorical decisions).
    successes, failures: ``int32[m]`` consecutive counters.
    best: ``float32[m]`` best score of the region's data (-inf if none).
    center: ``float32[m, D]`` features of the region's best point.
    design: ``float32[m, n_init, D]`` initial design of the current run of the region (used on
      continuous problems; on spaces the rows are drawn at ``ask`` time from its key, see
      ``design_guided``, so that a wrapper's redraw gets different rows).
    design_guided: ``bool[m]`` the current design is a guided restart: row 0 is ``center``, the
      others are uniform in the Hamming ball of radius ``radius_init`` around it.
    design_pos: ``int32[m]`` design rows served so far.
    restarts: ``int32[m]`` restarts of the region.
    params: raw GP hyperparameters (:class:`jdanas.searchers.gp.GPParams`) with leading axis m.
  """
  length: jax.Array
  radius: jax.Array
  successes: jax.Array
  failures: jax.Array
  best: jax.Array
  center: jax.Array
  design: jax.Array
  design_guided: jax.Array
  design_pos: jax.Array
  restarts: jax.Array
  params: gp.GPParams


@flax.struct.dataclass
class TRBOState:
  """Attributes:
    x: ``float32[N, D]`` features of told points (ring buffer, slot ``k % N`` for the k-th told).
    encodings: ``int32[N, D]`` their canonical encodings (zeros for ``turbo_box``).
    y: ``float32[N]`` scores (NaN = failed).
    filled: ``bool[N]`` slots holding an observation.
    owner: ``int32[N]`` region that proposed the row (-1: detached by a restart, or a fallback).
    regions: :class:`RegionState`.
    memory_x, memory_y: ``float32[R, D]`` / ``float32[R]`` best point of each finished region
      (ring of R rows, NaN score = empty), the data of CASMOPOLITAN's guided restarts.
    memory_count: ``int32[]`` finished regions so far.
    pending_owner: ``int32[Q]`` region of each row of the last ``ask``.
    pending_design: ``bool[Q]`` whether the row came from an initial design.
    pending_exhausted: ``bool[m]`` regions that had no unevaluated candidate at the last ``ask``
      (their region has shrunk below the grid); ``tell`` restarts them.
    archive: incumbent tracking (:class:`Archive`); None for ``turbo_box``.
    best_x: ``float32[D]`` features of the best told point; best_y ``float32[]`` its score.
    num_told, num_asked, num_fallbacks: ``int32[]`` counters (fallbacks: slots filled at random
      because no unevaluated candidate was left).
  """
  x: jax.Array
  encodings: jax.Array
  y: jax.Array
  filled: jax.Array
  owner: jax.Array
  regions: RegionState
  memory_x: jax.Array
  memory_y: jax.Array
  memory_count: jax.Array
  pending_owner: jax.Array
  pending_design: jax.Array
  pending_exhausted: jax.Array
  archive: Archive | None
  best_x: jax.Array
  best_y: jax.Array
  num_told: jax.Array
  num_asked: jax.Array
  num_fallbacks: jax.Array


# ---- features <-> encodings ----------------------------------------------------------------

def _scale(layout: Layout) -> jax.Array:
  """Per decision, the factor from index to feature (1 for categorical, 1/(n-1) for ordinal)."""
  if layout.num_choices is None:
    return jnp.ones((layout.dim,), jnp.float32)
  scale = [1.0] * layout.dim
  for i in layout.box:
    scale[i] = 1.0 / max(layout.num_choices[i] - 1, 1)
  return jnp.asarray(scale, jnp.float32)


def to_features(layout: Layout, encodings: jax.Array) -> jax.Array:
  """``float32[..., D]`` features of ``int32[..., D]`` encodings (identity for ``turbo_box``)."""
  if layout.num_choices is None:
    return jnp.asarray(encodings, jnp.float32)
  return jnp.asarray(encodings, jnp.float32) * _scale(layout)


def to_encodings(layout: Layout, x: jax.Array) -> jax.Array:
  """Inverse of :func:`to_features` (rounds to the grid)."""
  if layout.num_choices is None:
    return x.astype(jnp.float32)
  top = jnp.asarray(layout.num_choices, jnp.float32) - 1
  return jnp.clip(jnp.round(x / _scale(layout)), 0, top).astype(jnp.int32)


def box_bounds(layout: Layout, center: jax.Array, length: jax.Array,
               lengthscale: jax.Array) -> tuple[jax.Array, jax.Array]:
  """TuRBO's box ``[lb, ub]`` (``float32[Db]`` each) around the box part of ``center``.

  Half-widths ``L/2 * w`` with ``w = ls / mean(ls)`` normalised to a unit product (volume L^Db),
  clipped to [0, 1].
  """
  c = center[jnp.asarray(layout.box)]
  w = lengthscale * jnp.ones_like(c) / jnp.mean(lengthscale * jnp.ones_like(c))
  w = w / jnp.exp(jnp.mean(jnp.log(w)))
  return jnp.clip(c - 0.5 * length * w, 0.0, 1.0), jnp.clip(c + 0.5 * length * w, 0.0, 1.0)


def _snap(layout: Layout, v: jax.Array, lb: jax.Array, ub: jax.Array) -> jax.Array:
  """Box values ``float[..., Db]`` rounded to the ordinal grid, staying inside ``[lb, ub]``.

  The centre is a grid point inside the box, so the clipped index range is never empty.
  """
  if layout.num_choices is None:
    return v
  steps = jnp.asarray([max(layout.num_choices[i] - 1, 1) for i in layout.box], jnp.float32)
  top = jnp.asarray([layout.num_choices[i] - 1 for i in layout.box], jnp.float32)  # 0: one choice
  lo = jnp.minimum(jnp.ceil(lb * steps - 1e-4), top)
  hi = jnp.minimum(jnp.floor(ub * steps + 1e-4), top)
  return jnp.clip(jnp.round(v * steps), lo, hi) / steps


def region_candidates(key: jax.Array, layout: Layout, center: jax.Array, lb: jax.Array, ub: jax.Array,
                      radius: jax.Array, num: int, include_neighbours: bool = True) -> jax.Array:
  """``float32[num, D]`` candidates inside one trust region.

  Box decisions: the centre with each coordinate replaced, with probability min(20/Db, 1), by a
  uniform draw from ``[lb, ub]`` (rows with none replaced get one random coordinate), snapped to
  the grid. Categorical decisions: exactly ``min(radius, Dk)`` of them redrawn uniformly (so the
  Hamming distance to the centre is at most ``radius``); with ``include_neighbours`` the first rows
  are every Hamming-1 neighbour of the centre (categorical part; the box part stays at the centre).
  """
  db, dk = len(layout.box), len(layout.categorical)
  # One RNG call for everything (every RNG call is a separate threefry program to compile on CPU).
  u = jax.random.uniform(key, (num, 3 * db + 2 * dk))
  u_pert, u_mask, u_fix = u[:, :db], u[:, db:2 * db], u[:, 2 * db:3 * db]
  u_pos, u_val = u[:, 3 * db:3 * db + dk], u[:, 3 * db + dk:]
  x = jnp.tile(center[None, :], (num, 1))
  if layout.box:
    idx = jnp.asarray(layout.box)
    c = center[idx]
    pert = lb + (ub - lb) * u_pert
    mask = u_mask < min(20.0 / db, 1.0)
    fix = jax.nn.one_hot(jnp.argmax(u_fix, axis=1), db, dtype=bool)
    mask = mask | (~mask.any(1, keepdims=True) & fix)
    x = x.at[:, idx].set(_snap(layout, jnp.where(mask, pert, c[None, :]), lb, ub))
  if layout.categorical:
    dk = len(layout.categorical)
    idx = jnp.asarray(layout.categorical)
    n = jnp.asarray([layout.num_choices[i] for i in layout.categorical], jnp.int32)
    ranks = jnp.argsort(jnp.argsort(u_pos, axis=1), axis=1)
    chosen = ranks < jnp.minimum(radius, dk)
    values = jnp.minimum(jnp.floor(u_val * n), n - 1).astype(jnp.float32)
    cat = jnp.where(chosen, values, center[idx][None, :])
    if include_neighbours:
      rows = []
      for j, i in enumerate(layout.categorical):
        for s in range(1, layout.num_choices[i]):
          rows.append((j, s))
      rows = rows[:num]
      if rows:
        dims = jnp.asarray([r[0] for r in rows])
        shifts = jnp.asarray([r[1] for r in rows], jnp.int32)
        base = center[idx].astype(jnp.int32)
        nb = jnp.tile(base[None, :], (len(rows), 1))
        nb = nb.at[jnp.arange(len(rows)), dims].set((base[dims] + shifts) % n[dims]).astype(jnp.float32)
        ok = radius >= 1
        cat = cat.at[:len(rows)].set(jnp.where(ok, nb, cat[:len(rows)]))
        if layout.box:  # neighbours keep the centre's box part
          x = x.at[:len(rows), jnp.asarray(layout.box)].set(
              jnp.where(ok, center[jnp.asarray(layout.box)][None, :], x[:len(rows), jnp.asarray(layout.box)]))
    x = x.at[:, idx].set(cat)
  return x


def _uniform_points(key: jax.Array, layout: Layout, num: int) -> jax.Array:
  """``float32[num, D]`` uniform points of the whole domain (on the grid for spaces)."""
  u = jax.random.uniform(key, (num, layout.dim))
  if layout.num_choices is None:
    return u
  n = jnp.asarray(layout.num_choices, jnp.float32)
  index = jnp.minimum(jnp.floor(u * n), n - 1)
  return to_features(layout, index.astype(jnp.int32))


def initial_design(key: jax.Array, layout: Layout, num: int) -> jax.Array:
  """``float32[num, D]``: centred Latin hypercube with uniform jitter on box decisions (snapped to
  the grid for ordinal ones; TuRBO's design), uniform categories on categorical decisions."""
  key_lhs, key_rest = jax.random.split(key)
  x = _uniform_points(key_rest, layout, num)
  if layout.box:
    db = len(layout.box)
    u = jax.random.uniform(key_lhs, (2, num, db))
    perms = jnp.argsort(u[0], axis=0)  # a random permutation of the cells per dimension
    v = (2.0 * perms + 1.0) / (2.0 * num) + (u[1] - 0.5) / num
    v = jnp.clip(v, 0.0, 1.0)
    if layout.num_choices is not None:
      v = _snap(layout, v, jnp.zeros(db), jnp.ones(db))
    x = x.at[:, jnp.asarray(layout.box)].set(v)
  return x


# ---- the trust-region state machine --------------------------------------------------------

class RegionUpdate(NamedTuple):
  """Result of :func:`update_region` for one region."""
  length: jax.Array
  radius: jax.Array
  successes: jax.Array
  failures: jax.Array
  collapsed: jax.Array


def update_region(config: TRConfig, layout: Layout, length: jax.Array, radius: jax.Array,
                  successes: jax.Array, failures: jax.Array, best: jax.Array, batch_best: jax.Array,
                  num_points: jax.Array) -> RegionUpdate:
  """One trust-region update after a batch of ``num_points`` model proposals (0 = no update).

  Success: ``batch_best > best + 1e-3 |best|`` (maximisation; a first finite score after -inf
  counts as success). Successes reset failures and vice versa; ``success_tolerance`` successes
  expand (length x ``expand`` up to ``length_max``; radius x ``expand``, truncated, up to
  ``radius_max``), ``failure_tolerance`` failures shrink (length / ``shrink_factor``; radius
  / ``shrink_factor``, truncated). Failures grow by 1 per batch, or by the number of points with
  ``count_points_as_failures`` (TuRBO-m). ``collapsed`` when a box length falls below
  ``length_min`` or a radius to ``radius_min`` or below.
  """
  active = num_points > 0
  thresh = jnp.where(jnp.isfinite(best), best + 1e-3 * jnp.abs(best), -jnp.inf)
  success = active & (batch_best > thresh)
  failure = active & ~success
  step = num_points if config.count_points_as_failures else jnp.ones_like(num_points)
  successes = jnp.where(success, successes + 1, jnp.where(failure, 0, successes))
  failures = jnp.where(failure, failures + step, jnp.where(success, 0, failures))
  grow = successes >= config.success_tolerance
  cut = failures >= config.failure_tolerance
  length = jnp.where(grow, jnp.minimum(config.expand * length, config.length_max), length)
  length = jnp.where(cut, length / config.shrink_factor, length)
  new_radius = jnp.where(grow, jnp.minimum(jnp.floor(config.expand * radius), config.radius_max), radius)
  new_radius = jnp.where(cut, jnp.floor(new_radius / config.shrink_factor), new_radius).astype(jnp.int32)
  successes = jnp.where(grow, 0, successes)
  failures = jnp.where(cut, 0, failures)
  collapsed = jnp.zeros((), bool)
  if layout.box:
    collapsed = collapsed | (length < config.length_min)
  if layout.categorical:
    collapsed = collapsed | (new_radius <= config.radius_min)
  return RegionUpdate(length, new_radius, successes.astype(jnp.int32), failures.astype(jnp.int32),
                      collapsed)


# ---- the engine ----------------------------------------------------------------------------

def _transform(config: TRConfig, y: jax.Array, mask: jax.Array) -> jax.Array:
  if config.y_transform == "copula":
    return gp.copula(y, mask)
  return gp.standardize(y, mask, center="median" if config.y_transform == "median" else "mean")


class _Engine(NamedTuple):
  """Static context of one trust-region searcher (what its init/ask/tell close over)."""
  layout: Layout
  config: TRConfig
  spec: gp.KernelSpec
  canonicalize: Callable[[jax.Array], jax.Array] | None
  sample: Callable[[jax.Array], jax.Array] | None
  track_archive: bool

  @property
  def discrete(self) -> bool:
    return self.layout.num_choices is not None

  @property
  def guided(self) -> bool:
    return self.config.guided_restart and bool(self.layout.categorical)

  @property
  def pool_size(self) -> int:
    """Candidates per region: the random pool plus, for EI/UCB, the hill-climb end points."""
    c = self.config
    return c.num_candidates + (c.local_search_restarts if c.acquisition != "thompson" else 0)


def _canon_x(e: _Engine, x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Canonical (encoding, features) of feature rows ``[K, D]``."""
  if not e.discrete:
    return jnp.zeros(x.shape, jnp.int32), x
  enc = to_encodings(e.layout, x)
  if e.canonicalize is not None:
    enc = jax.vmap(e.canonicalize)(enc).astype(jnp.int32)
  return enc, to_features(e.layout, enc)


def _fresh_design(e: _Engine, key: jax.Array) -> jax.Array:
  return _canon_x(e, initial_design(key, e.layout, e.config.n_init))[1]


def _init(e: _Engine, key: jax.Array) -> TRBOState:
  config, m, n, d = e.config, e.config.num_trust_regions, e.config.capacity, e.layout.dim
  q = config.num_asks
  keys = jax.random.split(key, m)
  design = jax.vmap(lambda k: _fresh_design(e, k))(keys)
  params = jax.tree.map(lambda p: jnp.tile(p[None], (m,) + (1,) * p.ndim), gp.init_params(e.spec, config.bounds))
  regions = RegionState(
      length=jnp.full((m,), config.length_init, jnp.float32),
      radius=jnp.full((m,), config.radius_init, jnp.int32),
      successes=jnp.zeros((m,), jnp.int32), failures=jnp.zeros((m,), jnp.int32),
      best=jnp.full((m,), -jnp.inf, jnp.float32), center=design[:, 0],
      design=design, design_guided=jnp.zeros((m,), bool), design_pos=jnp.zeros((m,), jnp.int32),
      restarts=jnp.zeros((m,), jnp.int32), params=params)
  r = config.restart_memory
  return TRBOState(
      x=jnp.zeros((n, d), jnp.float32), encodings=jnp.zeros((n, d), jnp.int32),
      y=jnp.full((n,), jnp.nan, jnp.float32), filled=jnp.zeros((n,), bool),
      owner=jnp.full((n,), -1, jnp.int32), regions=regions,
      memory_x=jnp.zeros((r, d), jnp.float32), memory_y=jnp.full((r,), jnp.nan, jnp.float32),
      memory_count=jnp.zeros((), jnp.int32),
      pending_owner=jnp.full((q,), -1, jnp.int32), pending_design=jnp.zeros((q,), bool),
      pending_exhausted=jnp.zeros((m,), bool),
      archive=archive_init(n, d) if e.track_archive else None,
      best_x=design[0, 0], best_y=jnp.full((), -jnp.inf, jnp.float32),
      num_told=jnp.zeros((), jnp.int32), num_asked=jnp.zeros((), jnp.int32),
      num_fallbacks=jnp.zeros((), jnp.int32))


def _region_mask(state: TRBOState, t: jax.Array) -> jax.Array:
  return state.filled & (state.owner == t) & ~jnp.isnan(state.y)


def _model_mask(e: _Engine, state: TRBOState, t: jax.Array) -> jax.Array:
  """Rows the GP of region t sees: its own data, or every finite observation (``global_model``)."""
  if e.config.global_model:
    return state.filled & ~jnp.isnan(state.y)
  return _region_mask(state, t)


def _evaluated(e: _Engine, state: TRBOState, enc: jax.Array) -> jax.Array:
  """``bool[K]``: rows of ``int32[K, D]`` already told (within the buffer)."""
  if not e.discrete:
    return jnp.zeros(enc.shape[:1], bool)
  same = jnp.all(enc[:, None, :] == state.encodings[None, :, :], axis=-1)
  return jnp.any(same & state.filled[None, :], axis=1)


def _local_search(e: _Engine, key: jax.Array, score: Callable, center: jax.Array, lb, ub, radius) -> jax.Array:
  """End points ``[R, D]`` of random-neighbour hill climbs from the centre."""
  layout = e.layout

  def climb(key):
    def step(carry, k):
      x, s = carry
      cand = region_candidates(k, layout, x, lb, ub, jnp.ones((), jnp.int32), 1, False)[0]
      if layout.categorical:
        idx = jnp.asarray(layout.categorical)
        inside = jnp.sum(cand[idx] != center[idx]) <= radius
      else:
        inside = jnp.ones((), bool)
      s_new = score(cand[None])[0]
      better = inside & (s_new > s)
      return (jnp.where(better, cand, x), jnp.where(better, s_new, s)), None
    (x, _), _ = jax.lax.scan(step, (center, score(center[None])[0]),
                             jax.random.split(key, e.config.local_search_steps))
    return x
  return jax.vmap(climb)(jax.random.split(key, e.config.local_search_restarts))


def _acquisition(e: _Engine, post: gp.Posterior, incumbent: jax.Array) -> Callable[[jax.Array], jax.Array]:
  """UCB (``mean + sqrt(beta) std``) or augmented EI against ``incumbent`` of rows ``[K, D]``."""
  noise = post.hyp.noise

  def acq(xs):
    pred = gp.predict(e.spec, post, xs)
    if e.config.acquisition == "ucb":
      return pred.mean + math.sqrt(e.config.ucb_beta) * pred.stddev
    imp = pred.mean - incumbent
    z = imp / pred.stddev
    ei = imp * jax.scipy.stats.norm.cdf(z) + pred.stddev * jax.scipy.stats.norm.pdf(z)
    return ei * (1.0 - jnp.sqrt(noise) / jnp.sqrt(noise + pred.stddev ** 2))
  return acq


def _region_scores(e: _Engine, key: jax.Array, state: TRBOState, t: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Candidates ``float32[M, D]`` of region t and their slot scores ``float32[Q, M]``."""
  config, layout = e.config, e.layout
  reg = jax.tree.map(lambda a: a[t], state.regions)
  key_cand, key_sample, key_ls = jax.random.split(key, 3)
  mask = _model_mask(e, state, t)
  post = gp.posterior(e.spec, config.bounds, reg.params, state.x, _transform(config, state.y, mask), mask)
  if layout.box:
    lengthscale = gp.constrain(e.spec, config.bounds, reg.params).lengthscale
    lb, ub = box_bounds(layout, reg.center, reg.length, lengthscale)
  else:
    lb = ub = jnp.zeros((0,), jnp.float32)
  cand = region_candidates(key_cand, layout, reg.center, lb, ub, reg.radius, config.num_candidates,
                           config.include_neighbours)
  if config.acquisition == "thompson":
    scores = gp.sample_joint(key_sample, e.spec, post, cand, config.num_asks, include_noise=config.sample_noise)
    return cand, scores
  acq = _acquisition(e, post, gp.predict(e.spec, post, reg.center[None]).mean[0])
  extra = _local_search(e, key_ls, acq, reg.center, lb, ub, reg.radius)
  cand = jnp.concatenate([cand, _canon_x(e, extra)[1]])
  return cand, jnp.tile(acq(cand)[None], (config.num_asks, 1))


class _Pool(NamedTuple):
  """The merged candidate pool of one ``ask`` (``P = m * pool_size`` rows)."""
  enc: jax.Array        # int32[P, D]
  x: jax.Array          # float32[P, D]
  scores: jax.Array     # float32[Q, P]: the score of each row for each batch slot
  ok: jax.Array         # bool[P]: eligible, not repeated in the pool, not evaluated
  exhausted: jax.Array  # bool[m]: regions past their design with no eligible candidate


def _candidate_pool(e: _Engine, key: jax.Array, state: TRBOState) -> _Pool:
  m, d, ps, q = e.config.num_trust_regions, e.layout.dim, e.pool_size, e.config.num_asks
  regs = state.regions
  cand, scores = jax.vmap(lambda k, t: _region_scores(e, k, state, t))(
      jax.random.split(key, m), jnp.arange(m))  # [m, M, D], [m, Q, M]
  cand_enc, cand = jax.vmap(lambda c: _canon_x(e, c))(cand)
  has_data = jax.vmap(lambda t: jnp.any(_region_mask(state, t)))(jnp.arange(m))
  eligible = (regs.design_pos >= e.config.n_init) & has_data  # [m]
  dup = jnp.all(cand_enc[:, :, None, :] == cand_enc[:, None, :, :], axis=-1)  # [m, M, M]
  earlier = jnp.tril(jnp.ones((ps, ps), bool), k=-1)
  in_pool_dup = jnp.any(dup & earlier[None], axis=-1) if e.discrete else jnp.zeros((m, ps), bool)
  seen = jax.vmap(lambda enc: _evaluated(e, state, enc))(cand_enc)
  ok = eligible[:, None] & ~in_pool_dup & ~seen  # [m, M]
  return _Pool(enc=cand_enc.reshape(m * ps, d), x=cand.reshape(m * ps, d),
               scores=jnp.transpose(scores, (1, 0, 2)).reshape(q, m * ps), ok=ok.reshape(-1),
               exhausted=eligible & ~jnp.any(ok, axis=1))


def _pick_alternative(e: _Engine, state: TRBOState, alt, taken_enc: jax.Array, taken_n: jax.Array):
  """The first row of ``alt`` neither evaluated nor among the first ``taken_n`` rows chosen."""
  enc, x = alt
  earlier = (jnp.arange(e.config.num_asks) < taken_n)[None, :]
  clash = jnp.any(jnp.all(enc[:, None, :] == taken_enc[None, :, :], -1) & earlier, 1)
  good = ~clash & ~_evaluated(e, state, enc) if e.discrete else jnp.ones(enc.shape[:1], bool)
  j = jnp.argmax(good)
  return enc[j], x[j]


def _ask(e: _Engine, key: jax.Array, state: TRBOState) -> tuple[jax.Array, TRBOState]:
  """Serves open design rows first (region by region), then the pool's best row per slot."""
  config, m, d, q = e.config, e.config.num_trust_regions, e.layout.dim, e.config.num_asks
  n_init, ps = config.n_init, e.pool_size
  key_regions, key_fallback, key_design = jax.random.split(key, 3)
  regs = state.regions
  pool = _candidate_pool(e, key_regions, state)
  # Design rows still to serve, region by region in order.
  pos = jnp.arange(n_init)
  open_rows = (pos[None, :] >= regs.design_pos[:, None]).reshape(-1)  # [m*n_init]
  order = jnp.argsort(~open_rows, stable=True)
  if e.discrete:
    design_flat = jax.vmap(lambda k, c, g: _ask_design(e, k, c, g))(
        jax.random.split(key_design, m), regs.center, regs.design_guided).reshape(m * n_init, d)
  else:
    design_flat = regs.design.reshape(m * n_init, d)
  design_enc, design_x = _canon_x(e, design_flat)
  num_design = jnp.minimum(open_rows.sum(), q)
  fallback_x = _canon_x(e, _uniform_points(key_fallback, e.layout, q * 8))
  design_alt = _canon_x(e, _uniform_points(jax.random.fold_in(key_design, 1), e.layout, q * 8))

  def slot(k, carry):
    taken, out_enc, out_x, owner, from_design, fallbacks = carry
    is_design = k < num_design
    # design row
    row = order[jnp.minimum(k, m * n_init - 1)]
    d_enc, d_x = design_enc[row], design_x[row]
    if e.discrete:
      repeat = jnp.any(jnp.all(out_enc == d_enc[None], -1) & (jnp.arange(q) < k))
      d_bad = repeat | _evaluated(e, state, d_enc[None])[0]
    else:
      d_bad = jnp.zeros((), bool)
    a_enc, a_x = _pick_alternative(e, state, design_alt, out_enc, k)
    d_enc = jnp.where(d_bad, a_enc, d_enc)
    d_x = jnp.where(d_bad, a_x, d_x)
    # model row
    s = jnp.where(pool.ok & ~taken, pool.scores[k], -jnp.inf)
    i = jnp.argmax(s)
    found = jnp.isfinite(s[i])
    f_enc, f_x = _pick_alternative(e, state, fallback_x, out_enc, k)
    m_enc = jnp.where(found, pool.enc[i], f_enc)
    m_x = jnp.where(found, pool.x[i], f_x)
    enc = jnp.where(is_design, d_enc, m_enc)
    x = jnp.where(is_design, d_x, m_x)
    who = jnp.where(is_design, row // n_init, jnp.where(found, i // ps, -1))
    if e.discrete:
      taken = taken | jnp.all(pool.enc == enc[None], -1)
    else:
      taken = taken.at[i].set(taken[i] | ~is_design)
    return (taken, out_enc.at[k].set(enc), out_x.at[k].set(x), owner.at[k].set(who),
            from_design.at[k].set(is_design), fallbacks + (~is_design & ~found))

  carry = (jnp.zeros((m * ps,), bool), jnp.full((q, d), -1, jnp.int32),
           jnp.zeros((q, d), jnp.float32), jnp.full((q,), -1, jnp.int32), jnp.zeros((q,), bool),
           jnp.zeros((), jnp.int32))
  _, enc, x, owner, from_design, fallbacks = jax.lax.fori_loop(0, q, slot, carry)
  served = jnp.zeros((m,), jnp.int32).at[jnp.where(from_design, owner, m)].add(1, mode="drop")
  state = state.replace(
      regions=regs.replace(design_pos=regs.design_pos + served),
      pending_owner=owner, pending_design=from_design, pending_exhausted=pool.exhausted,
      num_asked=state.num_asked + q, num_fallbacks=state.num_fallbacks + fallbacks)
  return (enc if e.discrete else x), state


def _ball_design(e: _Engine, key: jax.Array, center: jax.Array) -> jax.Array:
  """``n_init`` rows: the centre, then uniform draws in the Hamming ball of radius ``radius_init``
  (box decisions: uniform in the box of edge ``length_init`` around the centre)."""
  layout, config = e.layout, e.config
  if layout.box:
    lb = jnp.clip(center[jnp.asarray(layout.box)] - 0.5 * config.length_init, 0.0, 1.0)
    ub = jnp.clip(center[jnp.asarray(layout.box)] + 0.5 * config.length_init, 0.0, 1.0)
  else:
    lb = ub = jnp.zeros((0,), jnp.float32)
  ball = region_candidates(key, layout, center, lb, ub, jnp.asarray(config.radius_init),
                           config.n_init, include_neighbours=False)
  return _canon_x(e, ball.at[0].set(center))[1]


def _ask_design(e: _Engine, key: jax.Array, center: jax.Array, guided_now: jax.Array) -> jax.Array:
  return jnp.where(guided_now, _ball_design(e, key, center), _fresh_design(e, key))


def _restart_region(e: _Engine, key: jax.Array, state: TRBOState, aux: gp.GPParams) -> tuple[jax.Array, jax.Array]:
  """New ``(design [n_init, D], centre [D])`` for a restarted region (``aux``: the auxiliary
  GP's hyperparameters, fitted on the restart memory)."""
  key_design, key_cand, key_ball = jax.random.split(key, 3)
  plain = _fresh_design(e, key_design)
  if not e.guided:
    return plain, plain[0]
  mem_mask = ~jnp.isnan(state.memory_y)
  y_aux = _transform(e.config, state.memory_y, mem_mask)
  post = gp.posterior(e.spec, e.config.bounds, aux, state.memory_x, y_aux, mem_mask)
  enc, pts = _canon_x(e, _uniform_points(key_cand, e.layout, e.config.num_candidates))
  pred = gp.predict(e.spec, post, pts)
  ucb = jnp.where(_evaluated(e, state, enc), -jnp.inf, pred.mean + 1.96 * pred.stddev)
  center = pts[jnp.argmax(ucb)]
  return _ball_design(e, key_ball, center), center


def _told_rows(e: _Engine, encodings: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(canonical encodings ``int32[Q, D]``, features ``float32[Q, D]``) of a told batch."""
  if e.discrete:
    enc = jnp.asarray(encodings, jnp.int32)
    if e.canonicalize is not None:
      enc = jax.vmap(e.canonicalize)(enc).astype(jnp.int32)
    return enc, to_features(e.layout, enc)
  return jnp.zeros((e.config.num_asks, e.layout.dim), jnp.int32), jnp.asarray(encodings, jnp.float32)


def _retire(e: _Engine, state: TRBOState, collapsed: jax.Array, center: jax.Array,
            best: jax.Array) -> TRBOState:
  """Stores the best point of each collapsed region in the restart memory and detaches its data."""
  m, r = e.config.num_trust_regions, e.config.restart_memory
  new_memory = jnp.cumsum(collapsed) - 1 + state.memory_count
  mem_slot = jnp.where(collapsed, new_memory % r, r)
  state = state.replace(memory_x=state.memory_x.at[mem_slot].set(center, mode="drop"),
                        memory_y=state.memory_y.at[mem_slot].set(best, mode="drop"),
                        memory_count=state.memory_count + collapsed.sum(dtype=jnp.int32))
  detach = jnp.any(collapsed[:, None] & (state.owner[None, :] == jnp.arange(m)[:, None]), axis=0)
  return state.replace(owner=jnp.where(detach, -1, state.owner))


def _refit(e: _Engine, key: jax.Array, state: TRBOState, init_p: gp.GPParams) -> tuple[gp.GPParams, gp.GPParams]:
  """Each region's GP refitted on its data (warm-started unless configured otherwise), and the
  auxiliary GP of guided restarts on the restart memory (``init_p`` when not guided)."""
  config, m = e.config, e.config.num_trust_regions
  regs = state.regions
  masks = jax.vmap(lambda t: _model_mask(e, state, t))(jnp.arange(m))  # [m, N]
  ys = jax.vmap(lambda mk: _transform(config, state.y, mk))(masks)
  starts = regs.params if config.warm_start else jax.tree.map(
      lambda p, i: jnp.broadcast_to(i, p.shape), regs.params, init_p)
  key_fit, key_aux = jax.random.split(key)

  def refit(key, y, mask, start):
    raw, _ = gp.fit(key, e.spec, config.bounds, state.x, y, mask, steps=config.fit_steps,
                    learning_rate=config.learning_rate, restarts=config.fit_restarts, init=start)
    return raw

  fitted = jax.vmap(refit)(jax.random.split(key_fit, m), ys, masks, starts)
  if not e.guided:
    return fitted, init_p
  # the auxiliary GP on the best point of every finished region (R rows, cheap)
  mem_mask = ~jnp.isnan(state.memory_y)
  aux, _ = gp.fit(key_aux, e.spec, config.bounds, state.memory_x, _transform(config, state.memory_y, mem_mask),
                  mem_mask, steps=config.fit_steps, learning_rate=config.learning_rate)
  return fitted, aux


def _tell_metrics(e: _Engine, state: TRBOState, enc: jax.Array, scores: jax.Array,
                  finite: jax.Array) -> tuple[TRBOState, dict[str, jax.Array]]:
  if e.track_archive:
    archive = archive_add(state.archive, enc, scores)
    state = state.replace(archive=archive)
    metrics = tell_metrics(archive, scores)
  else:
    metrics = {"best_score": state.best_y,
               "batch_best": jnp.max(jnp.where(finite, scores, -jnp.inf)),
               "num_failed": (~finite).sum(dtype=jnp.int32),
               "archive_size": state.filled.sum(dtype=jnp.int32),
               "num_told": state.num_told}
  regs = state.regions
  metrics.update(tr_length=regs.length[0], tr_radius=regs.radius[0],
                 tr_restarts=regs.restarts.sum(dtype=jnp.int32), num_fallbacks=state.num_fallbacks)
  return state, metrics


def _tell(e: _Engine, key: jax.Array, state: TRBOState, encodings: jax.Array, scores: jax.Array,
          **extra: Any) -> tuple[TRBOState, dict[str, jax.Array]]:
  """Stores the batch, updates / restarts the regions, refits the GPs, tracks the incumbent."""
  del extra  # cost and other keywords are not used
  config, m, n, q = e.config, e.config.num_trust_regions, e.config.capacity, e.config.num_asks
  scores = jnp.asarray(scores, jnp.float32)
  enc, x = _told_rows(e, encodings)
  owner = state.pending_owner
  slots = (state.num_told + jnp.arange(q)) % n
  finite = ~jnp.isnan(scores)
  regs = state.regions
  # Per-region batch summaries, before the rows are added.
  member = owner[None, :] == jnp.arange(m)[:, None]  # [m, Q]
  model_rows = member & ~state.pending_design[None, :]
  batch_best = jnp.max(jnp.where(model_rows & finite[None], scores[None], -jnp.inf), axis=1)
  num_model = model_rows.sum(1).astype(jnp.int32)
  upd = jax.vmap(lambda *a: update_region(config, e.layout, *a))(
      regs.length, regs.radius, regs.successes, regs.failures, regs.best, batch_best, num_model)
  state = state.replace(
      x=state.x.at[slots].set(x), encodings=state.encodings.at[slots].set(enc),
      y=state.y.at[slots].set(scores), filled=state.filled.at[slots].set(True),
      owner=state.owner.at[slots].set(owner))
  # New best (and centre) of each region from its data.
  masks = jax.vmap(lambda t: _region_mask(state, t))(jnp.arange(m))  # [m, N]
  masked_y = jnp.where(masks, state.y[None], -jnp.inf)
  best = jnp.max(masked_y, axis=1)
  center = jnp.where(jnp.isfinite(best)[:, None], state.x[jnp.argmax(masked_y, axis=1)], regs.center)
  # Restarts (a region whose design is still running never collapses).
  c = (upd.collapsed & (num_model > 0)) | state.pending_exhausted
  key_restart, key_fit = jax.random.split(key)
  state = _retire(e, state, c, center, best)
  init_p = gp.init_params(e.spec, config.bounds)
  sel = lambda new, old: jnp.where(c.reshape((m,) + (1,) * (old.ndim - 1)), new, old)
  fitted, aux = _refit(e, key_fit, state, init_p)
  designs, centers = jax.vmap(lambda k: _restart_region(e, k, state, aux))(jax.random.split(key_restart, m))
  changed = member.any(1) & ~c  # refitted regions whose data changed keep the new fit
  keep_fit = lambda new, old: jnp.where(changed.reshape((m,) + (1,) * (old.ndim - 1)), new[:m], old)
  params = jax.tree.map(keep_fit, fitted, regs.params)
  regs = regs.replace(
      length=sel(jnp.full((m,), config.length_init, jnp.float32), upd.length),
      radius=sel(jnp.full((m,), config.radius_init, jnp.int32), upd.radius),
      successes=sel(jnp.zeros((m,), jnp.int32), upd.successes),
      failures=sel(jnp.zeros((m,), jnp.int32), upd.failures),
      best=sel(jnp.full((m,), -jnp.inf), best), center=sel(centers, center),
      design=sel(designs, regs.design), design_guided=sel(jnp.full((m,), e.guided), regs.design_guided),
      design_pos=sel(jnp.zeros((m,), jnp.int32), regs.design_pos),
      restarts=regs.restarts + c.astype(jnp.int32),
      params=jax.tree.map(lambda p, i: sel(jnp.broadcast_to(i, p.shape), p), params, init_p))
  # Global incumbent.
  batch_i = jnp.argmax(jnp.where(finite, scores, -jnp.inf))
  improved = finite[batch_i] & (scores[batch_i] > state.best_y)
  state = state.replace(regions=regs, num_told=state.num_told + q,
                        best_x=jnp.where(improved, x[batch_i], state.best_x),
                        best_y=jnp.where(improved, scores[batch_i], state.best_y))
  return _tell_metrics(e, state, enc, scores, finite)


def _engine(layout: Layout, config: TRConfig, canonicalize: Callable[[jax.Array], jax.Array] | None,
            sample: Callable[[jax.Array], jax.Array] | None, track_archive: bool) -> Searcher:
  """The shared init/ask/tell (see the module docstring)."""
  spec = gp.KernelSpec(continuous=layout.box, categorical=layout.categorical, mixture=config.mixture,
                       categorical_kernel=config.categorical_kernel)
  gp.check_spec(spec, config.bounds)
  e = _Engine(layout, config, spec, canonicalize, sample, track_archive)

  def init(key: jax.Array) -> TRBOState:
    return _init(e, key)

  def ask(key: jax.Array, state: TRBOState) -> tuple[jax.Array, TRBOState]:
    return _ask(e, key, state)

  def tell(key: jax.Array, state: TRBOState, encodings: jax.Array, scores: jax.Array,
           **extra: Any) -> tuple[TRBOState, dict[str, jax.Array]]:
    return _tell(e, key, state, encodings, scores, **extra)

  return Searcher(init, ask, tell)


# ---- factories -----------------------------------------------------------------------------

TURBO_PRESETS = {
    # uber-research/TuRBO: succtol 3, Adam 50 steps lr 0.1 from scratch, samples with noise,
    # y -> (y - median) / std, n_cand = min(100 D, 5000).
    "paper": dict(success_tolerance=3, fit_steps=50, learning_rate=0.1, warm_start=False,
                  sample_noise=True, y_transform="median", candidates=lambda d: min(100 * d, 5000),
                  bounds=gp.Bounds()),
    # BoTorch TuRBO-1 tutorial: succtol 10, noiseless samples, mean standardisation, lengthscale
    # <= 4, noise in [1e-8, 1e-3] (raised to 1e-6 here for float32), n_cand = min(5000, max(2000, 200 D)).
    "botorch-tutorial": dict(success_tolerance=10, fit_steps=100, learning_rate=0.1, warm_start=False,
                             sample_noise=False, y_transform="mean",
                             candidates=lambda d: min(5000, max(2000, 200 * d)),
                             bounds=gp.Bounds(lengthscale=(0.005, 4.0), noise=(1e-6, 1e-3),
                                              init_noise=1e-4)),
}
ACQUISITIONS = ("thompson", "ei", "ucb")


def _check_common(name: str, num_asks, num_trust_regions, n_init, capacity, num_candidates, acquisition,
                  fit_steps, fit_restarts) -> None:
  check_sizes(name, num_asks=num_asks, num_trust_regions=num_trust_regions, n_init=n_init,
              capacity=capacity, num_candidates=num_candidates, fit_restarts=fit_restarts)
  if acquisition not in ACQUISITIONS:
    raise ValueError(f"{name}: acquisition must be one of {ACQUISITIONS}, got {acquisition!r}")
  if not isinstance(fit_steps, int) or fit_steps < 0:
    raise ValueError(f"{name}: fit_steps must be a non-negative int, got {fit_steps!r}")
  if capacity < num_trust_regions * n_init:
    raise ValueError(f"{name}: capacity={capacity} is smaller than num_trust_regions * n_init")


def _turbo_config(name: str, dim: int, *, num_asks, num_trust_regions, preset, n_init, capacity,
                  num_candidates, acquisition, fit_steps, fit_restarts, warm_start, failure_tolerance,
                  y_transform, global_model=False) -> TRConfig:
  if preset not in TURBO_PRESETS:
    raise ValueError(f"{name}: preset must be one of {sorted(TURBO_PRESETS)}, got {preset!r}")
  p = TURBO_PRESETS[preset]
  n_init = 2 * dim if n_init is None else n_init
  num_candidates = p["candidates"](dim) if num_candidates is None else num_candidates
  fit_steps = p["fit_steps"] if fit_steps is None else fit_steps
  _check_common(name, num_asks, num_trust_regions, n_init, capacity, num_candidates, acquisition,
                fit_steps, fit_restarts)
  if failure_tolerance is None:
    failure_tolerance = (math.ceil(max(4 / num_asks, dim / num_asks)) if num_trust_regions == 1
                         else max(5, dim))
  return TRConfig(
      num_asks=num_asks, num_trust_regions=num_trust_regions, n_init=n_init, capacity=capacity,
      num_candidates=num_candidates, acquisition=acquisition, length_init=0.8,
      length_min=0.5 ** 7, length_max=1.6, radius_init=0, radius_min=0, radius_max=0,
      success_tolerance=p["success_tolerance"], failure_tolerance=failure_tolerance,
      count_points_as_failures=num_trust_regions > 1, expand=2.0, shrink_factor=2.0,
      sample_noise=p["sample_noise"], y_transform=y_transform or p["y_transform"],
      fit_steps=fit_steps, fit_restarts=fit_restarts, learning_rate=p["learning_rate"],
      warm_start=p["warm_start"] if warm_start is None else warm_start, guided_restart=False,
      include_neighbours=False, bounds=p["bounds"], mixture=0.5, ucb_beta=5.0,
      local_search_steps=50, local_search_restarts=3, restart_memory=min(32, capacity),
      global_model=global_model)


def turbo(space: AbstractSearchSpace, *, num_asks: int = 1, num_trust_regions: int = 1,
          preset: str = "paper", n_init: int | None = None, capacity: int = 256,
          num_candidates: int | None = None, acquisition: str = "thompson", fit_steps: int | None = None,
          fit_restarts: int = 1, warm_start: bool | None = None, failure_tolerance: int | None = None,
          y_transform: str | None = None, feasible: Predicate | None = None) -> Searcher:
  """TuRBO-1 / TuRBO-m on a search space, every decision relaxed to ``index / (n - 1)`` in [0, 1].

  Args:
    space: the search space (its ``canonicalize`` is applied to every proposal).
    num_asks: Q, proposals per ``ask``.
    num_trust_regions: m (1 = TuRBO-1; m > 1 = TuRBO-m with failure tolerance max(5, D) counted
      in points).
    preset: ``"paper"`` (uber-research/TuRBO) or ``"botorch-tutorial"`` (see ``TURBO_PRESETS``).
    n_init: initial design per region (default 2 D).
    capacity: N, observations kept for the GPs (ring buffer); each GP solve is O(N^3).
    num_candidates: Thompson candidates per region (default from the preset).
    acquisition: ``"thompson"``, ``"ei"`` or ``"ucb"``.
    fit_steps: Adam steps per GP fit (default from the preset).
    fit_restarts: random starts per GP fit.
    warm_start: start each fit from the previous hyperparameters (default from the preset).
    failure_tolerance: override of ceil(max(4/Q, D/Q)) (TuRBO-1) / max(5, D) (TuRBO-m).
    y_transform: override of the preset's ``"median"`` / ``"mean"`` standardisation, or ``"copula"``.
    feasible: optional jittable ``int32[D] -> bool[]`` budget predicate; proposals are kept
      within it by :func:`jdanas.searchers.with_constraint`.

  Returns:
    A :class:`Searcher` with :class:`TRBOState`; ``ask`` returns ``int32[Q, D]``.
  """
  d = space.num_decisions
  config = _turbo_config("turbo", d, num_asks=num_asks, num_trust_regions=num_trust_regions, preset=preset,
                         n_init=n_init, capacity=capacity, num_candidates=num_candidates,
                         acquisition=acquisition, fit_steps=fit_steps, fit_restarts=fit_restarts,
                         warm_start=warm_start, failure_tolerance=failure_tolerance, y_transform=y_transform)
  layout = Layout(dim=d, num_choices=tuple(space.num_choices), categorical=(), box=tuple(range(d)))
  return constrained(_engine(layout, config, space.canonicalize, space.sample, track_archive=True), feasible)


def turbo_box(dim: int, *, num_asks: int = 1, num_trust_regions: int = 1, preset: str = "paper",
              n_init: int | None = None, capacity: int = 256, num_candidates: int | None = None,
              acquisition: str = "thompson", fit_steps: int | None = None, fit_restarts: int = 1,
              warm_start: bool | None = None, failure_tolerance: int | None = None,
              y_transform: str | None = None) -> Searcher:
  """TuRBO on the continuous cube [0, 1]^dim (benchmarks); same arguments as :func:`turbo`.

  ``ask`` returns ``float32[Q, dim]``; ``tell`` takes them back with higher-is-better scores
  (negate a function to minimise it). The state has no :class:`Archive` (``archive=None``); the
  incumbent is ``best_x`` / ``best_y``.
  """
  check_sizes("turbo_box", dim=dim)
  config = _turbo_config("turbo_box", dim, num_asks=num_asks, num_trust_regions=num_trust_regions,
                         preset=preset, n_init=n_init, capacity=capacity, num_candidates=num_candidates,
                         acquisition=acquisition, fit_steps=fit_steps, fit_restarts=fit_restarts,
                         warm_start=warm_start, failure_tolerance=failure_tolerance, y_transform=y_transform)
  layout = Layout(dim=dim, num_choices=None, categorical=(), box=tuple(range(dim)))
  return _engine(layout, config, None, None, track_archive=False)


def casmopolitan(space: AbstractSearchSpace, *, num_asks: int = 1, n_init: int = 20, capacity: int = 256,
                 num_candidates: int = 500, acquisition: str = "thompson", radius_init: int = 20,
                 radius_max: int = 30, radius_min: int = 1, success_tolerance: int = 3,
                 failure_tolerance: int = 40, fit_steps: int = 50, fit_restarts: int = 1,
                 learning_rate: float = 0.03, warm_start: bool = True, y_transform: str = "copula",
                 include_neighbours: bool = True, guided_restart: bool = True,
                 mixture: float | None = 0.5, sample_noise: bool = True,
                 bounds: gp.Bounds | None = None, global_model: bool = False,
                 categorical_kernel: str = "transformed_overlap", feasible: Predicate | None = None) -> Searcher:
  """CASMOPOLITAN: Hamming-ball regions on categorical decisions, TuRBO boxes on ordinal ones.

  Decision kinds come from ``space.decision_kinds()``. Radii start at ``min(radius_init, D_cat)``
  (a radius above D_cat is the whole space), expand x1.5 after ``success_tolerance`` successes (at
  most ``radius_max``), shrink /1.5 after ``failure_tolerance`` failures, and restart the region
  at ``radius <= radius_min`` (20 -> 13 -> 8 -> 5 -> 3 -> 2 -> 1 -> restart); boxes follow the
  mixed-space rule (L x1.5 / /1.5, restart below 2^-7). Restarts are guided (see the module
  docstring). The GP uses the transformed overlap kernel (and the mixed kernel with weight
  ``mixture`` on mixed spaces) on copula-transformed scores.

  Args:
    space: the search space.
    num_asks: Q.
    n_init: initial design (and the size of each restart design).
    capacity: N, observations kept for the GP (ring buffer); each GP solve is O(N^3).
    num_candidates: candidates per ask (Hamming-1 neighbours of the centre first with
      ``include_neighbours``, then random draws in the ball).
    acquisition: ``"thompson"`` (default), ``"ei"`` (augmented EI against the posterior mean at the
      centre) or ``"ucb"`` (mean + sqrt(5) std).
    radius_init, radius_max, radius_min: Hamming radii (CASMOPOLITAN defaults 20 / 30 / 1).
    success_tolerance, failure_tolerance: 3 and 40 in CASMOPOLITAN.
    fit_steps, fit_restarts, learning_rate: Adam fit of the GP (CASMOPOLITAN: lr 0.03).
    warm_start: start each fit from the previous hyperparameters.
    y_transform: ``"copula"`` (CASMOPOLITAN), ``"mean"`` or ``"median"`` standardisation.
    include_neighbours: put every Hamming-1 neighbour of the centre in the pool.
    guided_restart: restart around the UCB optimum of the auxiliary GP (else a fresh design).
    mixture: lam of the mixed kernel (None = learned).
    sample_noise: Thompson samples include observation noise (as in the reference code).
    categorical_kernel: see :class:`jdanas.searchers.gp.KernelSpec` (``"overlap_sum"`` adds the
      additive overlap kernel's per-decision main effects).
    global_model: fit the GP on every observation instead of the region's own data (the region
      still restricts the candidates; restarts then keep the model's knowledge).
    bounds: GP constraints (default: CASMOPOLITAN's noise [1e-4, 0.1] -- 1e-6 in the reference,
      raised for float32 -- outputscale [0.5, 5], lengthscale [0.01, 0.5] on box decisions and
      overlap weights in [0.01, 10]).
    feasible: optional jittable ``int32[D] -> bool[]`` budget predicate; proposals are kept
      within it by :func:`jdanas.searchers.with_constraint`.

  Returns:
    A :class:`Searcher` with :class:`TRBOState`; ``ask`` returns ``int32[Q, D]``.
  """
  d = space.num_decisions
  _check_common("casmopolitan", num_asks, 1, n_init, capacity, num_candidates, acquisition, fit_steps,
                fit_restarts)
  check_sizes("casmopolitan", radius_init=radius_init, radius_max=radius_max, radius_min=radius_min,
              success_tolerance=success_tolerance, failure_tolerance=failure_tolerance)
  if y_transform not in ("copula", "mean", "median"):
    raise ValueError(f"casmopolitan: y_transform must be 'copula', 'mean' or 'median', got {y_transform!r}")
  kinds = tuple(space.decision_kinds())
  if len(kinds) != d or set(kinds) - {"categorical", "ordinal"}:
    raise ValueError(f"casmopolitan: space.decision_kinds() must give {d} of 'categorical'/'ordinal'")
  categorical = tuple(i for i, k in enumerate(kinds) if k == "categorical")
  box = tuple(i for i, k in enumerate(kinds) if k == "ordinal")
  dk = max(len(categorical), 1)
  if bounds is None:
    bounds = gp.Bounds(lengthscale=(0.01, 0.5), cat_lengthscale=(0.01, 10.0), outputscale=(0.5, 5.0),
                       noise=(1e-4, 0.1), init_lengthscale=math.sqrt(0.01 * 0.5), init_noise=0.005)
  config = TRConfig(
      num_asks=num_asks, num_trust_regions=1, n_init=n_init, capacity=capacity,
      num_candidates=num_candidates, acquisition=acquisition, length_init=0.8, length_min=0.5 ** 7,
      length_max=1.6, radius_init=min(radius_init, dk), radius_min=radius_min,
      radius_max=max(min(radius_max, dk), min(radius_init, dk)),
      success_tolerance=success_tolerance, failure_tolerance=failure_tolerance,
      count_points_as_failures=False, expand=1.5, shrink_factor=1.5, sample_noise=sample_noise,
      y_transform=y_transform, fit_steps=fit_steps, fit_restarts=fit_restarts,
      learning_rate=learning_rate, warm_start=warm_start, guided_restart=guided_restart,
      include_neighbours=include_neighbours, bounds=bounds, mixture=mixture, ucb_beta=5.0,
      local_search_steps=50, local_search_restarts=3, restart_memory=min(32, capacity),
      global_model=global_model, categorical_kernel=categorical_kernel)
  layout = Layout(dim=d, num_choices=tuple(space.num_choices), categorical=categorical, box=box)
  return constrained(_engine(layout, config, space.canonicalize, space.sample, track_archive=True), feasible)
