"""Exact Gaussian-process regression in JAX on fixed-capacity, masked data.

The surrogate of the trust-region searchers (:mod:`jdanas.searchers.trust_region`), written after
TuRBO (Eriksson et al., NeurIPS 2019, https://arxiv.org/abs/1910.01739) and CASMOPOLITAN (Wan et
al., ICML 2021, https://arxiv.org/abs/2102.07188):

* Inputs are ``float[N, D]`` rows. Dimensions listed in ``KernelSpec.continuous`` hold values in
  [0, 1] and use a Matern-5/2 ARD kernel; dimensions in ``KernelSpec.categorical`` hold integer
  category indices (as floats) and use the transformed overlap kernel
  ``k(h, h') = exp(-sum_i l_i [h_i != h'_i] / d_cat)``. That is CASMOPOLITAN's
  ``exp(sum_i l_i [h_i == h'_i] / d_cat)`` divided by its value at distance 0, so ``k(h, h) = 1``
  and the amplitude lives in the outputscale only.
* Mixed inputs use the CoCaBO/CASMOPOLITAN mixture
  ``k = (1 - lam) (k_cat + k_cont) + lam k_cat k_cont``, with ``lam`` fixed (default 0.5, the
  released CASMOPOLITAN default) or learned in [0, 1] (``KernelSpec.mixture=None``).
* Hyperparameters live in interval constraints ``theta = lo + (hi - lo) sigmoid(raw)`` (GPyTorch's
  ``Interval``) and are fitted on the exact marginal likelihood with Adam, from several starts at
  once (vmapped); the best final likelihood wins.
* Data are fixed-capacity arrays with a validity mask. Masked rows get zero kernel rows/columns, 1
  on the diagonal and target 0, so they add nothing to the likelihood or the posterior and the
  shapes never change as observations accumulate (nothing recompiles).
* Precision follows the dtype of the inputs. float64 needs x64 enabled around the jitted call
  (``with jax.enable_x64(True): ...`` in jax 0.10; ``jax.experimental.enable_x64`` no longer
  exists) or globally (``JAX_ENABLE_X64=1``); float32 is the default and relies on the noise lower
  bound plus a relative diagonal jitter.

Own code rather than tinygp 0.3.1 or gpjax 1.0.0 (both pip-installable here): neither ships an
overlap/Hamming kernel for categorical inputs, and neither takes fixed-capacity masked data, so each
new observation would change shapes and recompile.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import flax.struct
import jax
import jax.flatten_util
import jax.numpy as jnp
import optax

_SQRT5 = 5.0 ** 0.5


class Prediction(NamedTuple):
  """Marginal posterior at query points: ``mean`` and ``stddev``, both ``float[M]``."""
  mean: jax.Array
  stddev: jax.Array


class KernelSpec(NamedTuple):
  """Static kernel structure (hashable; closed over, never traced).

  Attributes:
    continuous: input dimensions with the Matern-5/2 ARD kernel (values in [0, 1]).
    categorical: input dimensions with the transformed overlap kernel (integer values).
    mixture: fixed ``lam`` of the mixed kernel, or None to learn it within ``Bounds.mixture``.
      Ignored unless both groups are non-empty.
    ard: one lengthscale (overlap weight) per dimension, or one shared by each group.
    categorical_kernel: ``"transformed_overlap"`` (CASMOPOLITAN's default), ``"overlap"`` (the
      additive ``sum_i w_i [h_i == h'_i] / sum_i w_i``) or ``"overlap_sum"`` (the mean of both:
      per-decision main effects plus interactions).
  """
  continuous: tuple[int, ...] = ()
  categorical: tuple[int, ...] = ()
  mixture: float | None = 0.5
  ard: bool = True
  categorical_kernel: str = "transformed_overlap"


class Bounds(NamedTuple):
  """Interval constraints ``(lo, hi)`` and initial values of the hyperparameters.

  Defaults are TuRBO's (lengthscale [0.005, 2], outputscale [0.05, 20], noise [5e-4, 0.2]; initial
  0.5 / 1 / 0.005). ``cat_lengthscale`` bounds the per-dimension overlap weights ``l_i``.
  """
  lengthscale: tuple[float, float] = (0.005, 2.0)
  cat_lengthscale: tuple[float, float] = (0.01, 10.0)
  outputscale: tuple[float, float] = (0.05, 20.0)
  noise: tuple[float, float] = (5e-4, 0.2)
  mixture: tuple[float, float] = (0.0, 1.0)
  init_lengthscale: float = 0.5
  init_cat_lengthscale: float = 1.0
  init_outputscale: float = 1.0
  init_noise: float = 0.005
  init_mixture: float = 0.5


@flax.struct.dataclass
class GPParams:
  """Unconstrained hyperparameters (``raw``; see :func:`constrain`).

  Attributes:
    lengthscale: ``float[Dc]`` Matern lengthscales.
    cat_lengthscale: ``float[Dk]`` overlap weights.
    outputscale: ``float[]``.
    noise: ``float[]`` observation-noise variance (of the transformed targets).
    mixture: ``float[]`` lam of the mixed kernel (used only when learned).
    mean: ``float[]`` constant prior mean (unconstrained).
  """
  lengthscale: jax.Array
  cat_lengthscale: jax.Array
  outputscale: jax.Array
  noise: jax.Array
  mixture: jax.Array
  mean: jax.Array


class Hyper(NamedTuple):
  """Constrained hyperparameters, same fields as :class:`GPParams`."""
  lengthscale: jax.Array
  cat_lengthscale: jax.Array
  outputscale: jax.Array
  noise: jax.Array
  mixture: jax.Array
  mean: jax.Array


def _to_raw(value: float, bound: tuple[float, float]) -> float:
  lo, hi = bound
  p = min(max((value - lo) / (hi - lo), 1e-4), 1 - 1e-4)
  return math.log(p) - math.log1p(-p)


def _from_raw(raw: jax.Array, bound: tuple[float, float]) -> jax.Array:
  lo, hi = bound
  return lo + (hi - lo) * jax.nn.sigmoid(raw)


def check_spec(spec: KernelSpec, bounds: Bounds) -> None:
  """Raises a one-line ``ValueError`` for an empty spec or an empty/inverted bound."""
  if not spec.continuous and not spec.categorical:
    raise ValueError("gp: KernelSpec needs at least one continuous or categorical dimension")
  if set(spec.continuous) & set(spec.categorical):
    raise ValueError("gp: a dimension cannot be both continuous and categorical in KernelSpec")
  for name in ("lengthscale", "cat_lengthscale", "outputscale", "noise", "mixture"):
    lo, hi = getattr(bounds, name)
    if not lo < hi:
      raise ValueError(f"gp: Bounds.{name} must satisfy lo < hi, got {(lo, hi)}")
  if spec.categorical_kernel not in ("transformed_overlap", "overlap", "overlap_sum"):
    raise ValueError(f"gp: unknown KernelSpec.categorical_kernel {spec.categorical_kernel!r}")
  if spec.mixture is not None and not 0.0 <= spec.mixture <= 1.0:
    raise ValueError(f"gp: KernelSpec.mixture must be in [0, 1] or None, got {spec.mixture}")


def init_params(spec: KernelSpec, bounds: Bounds = Bounds(), dtype=jnp.float32) -> GPParams:
  """Raw parameters at the initial values of ``bounds``. A kind of dimension the spec lacks keeps one unused
  parameter: a zero-size array cannot be checkpointed (orbax refuses it), which stopped a pipeline search with
  CASMOPOLITAN on a purely categorical space (NB201 cells) after its first round."""
  full = lambda n, v, b: jnp.full(((n if spec.ard else min(n, 1)) or 1,), _to_raw(v, b), dtype)
  scalar = lambda v, b: jnp.asarray(_to_raw(v, b), dtype)
  return GPParams(lengthscale=full(len(spec.continuous), bounds.init_lengthscale, bounds.lengthscale),
                  cat_lengthscale=full(len(spec.categorical), bounds.init_cat_lengthscale,
                                       bounds.cat_lengthscale),
                  outputscale=scalar(bounds.init_outputscale, bounds.outputscale),
                  noise=scalar(bounds.init_noise, bounds.noise),
                  mixture=scalar(bounds.init_mixture, bounds.mixture),
                  mean=jnp.zeros((), dtype))


def constrain(spec: KernelSpec, bounds: Bounds, raw: GPParams) -> Hyper:
  """Maps raw parameters into their intervals (the fixed mixture replaces the raw one)."""
  mixture = (_from_raw(raw.mixture, bounds.mixture) if spec.mixture is None
             else jnp.asarray(spec.mixture, raw.outputscale.dtype))
  return Hyper(lengthscale=_from_raw(raw.lengthscale, bounds.lengthscale),
               cat_lengthscale=_from_raw(raw.cat_lengthscale, bounds.cat_lengthscale),
               outputscale=_from_raw(raw.outputscale, bounds.outputscale),
               noise=_from_raw(raw.noise, bounds.noise),
               mixture=mixture, mean=raw.mean)


def matern52(x1: jax.Array, x2: jax.Array, lengthscale: jax.Array) -> jax.Array:
  """Matern-5/2 ARD correlation ``float[N, M]`` of ``float[N, Dc]`` and ``float[M, Dc]``."""
  diff = (x1[:, None, :] - x2[None, :, :]) / lengthscale
  r2 = jnp.sum(diff * diff, axis=-1)
  positive = r2 > 0
  r = jnp.where(positive, jnp.sqrt(jnp.where(positive, r2, 1.0)), 0.0)  # NaN-free gradient at 0
  return (1.0 + _SQRT5 * r + (5.0 / 3.0) * r2) * jnp.exp(-_SQRT5 * r)


def transformed_overlap(h1: jax.Array, h2: jax.Array, weights: jax.Array) -> jax.Array:
  """``exp(-sum_i w_i [h1_i != h2_i] / d)``, ``float[N, M]`` for ``[N, Dk]`` and ``[M, Dk]``."""
  differ = (h1[:, None, :] != h2[None, :, :]).astype(weights.dtype)
  return jnp.exp(-jnp.sum(differ * weights, axis=-1) / h1.shape[-1])  # weights may be [1] (no ARD)


def overlap(h1: jax.Array, h2: jax.Array, weights: jax.Array) -> jax.Array:
  """ARD overlap ``sum_i w_i [h1_i == h2_i] / sum_i w_i``, ``float[N, M]``."""
  same = (h1[:, None, :] == h2[None, :, :]).astype(weights.dtype)
  w = weights * jnp.ones((h1.shape[-1],), weights.dtype)
  return jnp.sum(same * w, axis=-1) / jnp.sum(w)


def kernel(spec: KernelSpec, hyp: Hyper, x1: jax.Array, x2: jax.Array) -> jax.Array:
  """Prior covariance ``float[N, M]`` (outputscale included, noise excluded)."""
  k_cont = k_cat = None
  if spec.continuous:
    idx = jnp.asarray(spec.continuous)
    k_cont = matern52(x1[:, idx], x2[:, idx], hyp.lengthscale)
  if spec.categorical:
    idx = jnp.asarray(spec.categorical)
    if spec.categorical_kernel == "overlap":
      k_cat = overlap(x1[:, idx], x2[:, idx], hyp.cat_lengthscale)
    elif spec.categorical_kernel == "overlap_sum":
      k_cat = 0.5 * (overlap(x1[:, idx], x2[:, idx], hyp.cat_lengthscale)
                     + transformed_overlap(x1[:, idx], x2[:, idx], hyp.cat_lengthscale))
    else:
      k_cat = transformed_overlap(x1[:, idx], x2[:, idx], hyp.cat_lengthscale)
  if k_cont is None:
    k = k_cat
  elif k_cat is None:
    k = k_cont
  else:
    lam = hyp.mixture
    k = (1.0 - lam) * (k_cat + k_cont) + lam * k_cat * k_cont
  return hyp.outputscale * k


def _jitter(dtype) -> float:
  return 1e-8 if jnp.dtype(dtype) == jnp.float64 else 1e-5


def _train_cov(spec: KernelSpec, hyp: Hyper, x: jax.Array, mask: jax.Array) -> jax.Array:
  """``K + (noise + jitter) I`` on valid rows, identity on masked rows."""
  k = kernel(spec, hyp, x, x)
  both = mask[:, None] & mask[None, :]
  diag = jnp.where(mask, hyp.noise + _jitter(x.dtype) * hyp.outputscale, 1.0)
  return jnp.where(both, k, 0.0) + jnp.diag(diag)


def neg_mll(spec: KernelSpec, bounds: Bounds, raw: GPParams, x: jax.Array, y: jax.Array,
            mask: jax.Array) -> jax.Array:
  """Negative exact marginal log-likelihood per valid observation (masked rows excluded)."""
  hyp = constrain(spec, bounds, raw)
  cov = _train_cov(spec, hyp, x, mask)
  chol = jnp.linalg.cholesky(cov)
  r = jnp.where(mask, y - hyp.mean, 0.0)
  alpha = jax.scipy.linalg.cho_solve((chol, True), r)
  n = jnp.maximum(mask.sum(), 1).astype(x.dtype)
  nll = 0.5 * r @ alpha + jnp.sum(jnp.log(jnp.diagonal(chol))) + 0.5 * n * jnp.log(2 * jnp.pi)
  return nll / n


def fit(key: jax.Array, spec: KernelSpec, bounds: Bounds, x: jax.Array, y: jax.Array,
        mask: jax.Array, *, steps: int = 50, learning_rate: float = 0.1, restarts: int = 1,
        init: GPParams | None = None, restart_scale: float = 1.0) -> tuple[GPParams, jax.Array]:
  """Maximum-likelihood hyperparameters by Adam from ``restarts`` starts (vmapped).

  Args:
    key: draws the perturbed starts.
    spec, bounds: kernel structure and constraints.
    x: ``float[N, D]`` inputs; y: ``float[N]`` (already transformed) targets; mask: ``bool[N]``.
    steps: Adam steps (TuRBO: 50, lr 0.1; CASMOPOLITAN: 300, lr 0.03).
    learning_rate: Adam learning rate.
    restarts: number of starts; start 0 is ``init`` (default: the initial values of ``bounds``),
      the others add ``N(0, restart_scale^2)`` noise to every raw parameter.
    init: warm start (e.g. the previous fit).
    restart_scale: spread of the perturbed starts in raw space.

  Returns:
    ``(best raw parameters, its final negative log-likelihood per point)``. Non-finite gradient
    entries are zeroed; a start whose final loss is non-finite falls back to its initial value.
  """
  if restarts < 1 or steps < 0:
    raise ValueError(f"gp.fit: restarts must be >= 1 and steps >= 0, got {restarts}, {steps}")
  dtype = x.dtype
  start = init_params(spec, bounds, dtype) if init is None else init
  flat, unravel = jax.flatten_util.ravel_pytree(start)
  if restarts > 1:  # one RNG call for all leaves (each RNG call costs compile time on CPU)
    noise = restart_scale * jax.random.normal(key, (restarts - 1, flat.shape[0]), dtype)
    flats = jnp.concatenate([flat[None], flat[None] + noise])
  else:
    flats = flat[None]
  starts = jax.vmap(unravel)(flats)
  opt = optax.adam(learning_rate)
  loss = lambda raw: neg_mll(spec, bounds, raw, x, y, mask)

  def one(raw0):
    def step(carry, _):
      raw, state = carry
      grad = jax.grad(loss)(raw)
      grad = jax.tree.map(lambda g: jnp.where(jnp.isfinite(g), g, 0.0), grad)
      updates, state = opt.update(grad, state, raw)
      return (optax.apply_updates(raw, updates), state), None

    (raw, _), _ = jax.lax.scan(step, (raw0, opt.init(raw0)), None, length=steps)
    final = loss(raw)
    ok = jnp.isfinite(final)
    return jax.tree.map(lambda r, r0: jnp.where(ok, r, r0), raw, raw0), jnp.where(ok, final, loss(raw0))

  raws, losses = jax.vmap(one)(starts)
  losses = jnp.where(jnp.isfinite(losses), losses, jnp.inf)
  i = jnp.argmin(losses)
  return jax.tree.map(lambda p: p[i], raws), losses[i]


@flax.struct.dataclass
class Posterior:
  """Everything needed to predict: training inputs, mask, Cholesky factor and weights."""
  hyp: Hyper
  x: jax.Array
  mask: jax.Array
  chol: jax.Array
  alpha: jax.Array


def posterior(spec: KernelSpec, bounds: Bounds, raw: GPParams, x: jax.Array, y: jax.Array,
              mask: jax.Array) -> Posterior:
  """Conditions the GP on the valid rows of ``(x, y)``."""
  hyp = constrain(spec, bounds, raw)
  chol = jnp.linalg.cholesky(_train_cov(spec, hyp, x, mask))
  alpha = jax.scipy.linalg.cho_solve((chol, True), jnp.where(mask, y - hyp.mean, 0.0))
  return Posterior(hyp=hyp, x=x, mask=mask, chol=chol, alpha=alpha)


def _cross(spec: KernelSpec, post: Posterior, xs: jax.Array) -> jax.Array:
  return jnp.where(post.mask[:, None], kernel(spec, post.hyp, post.x, xs), 0.0)  # [N, M]


def predict(spec: KernelSpec, post: Posterior, xs: jax.Array, include_noise: bool = False) -> Prediction:
  """Marginal posterior at ``float[M, D]`` query points (latent f, or y with ``include_noise``)."""
  ks = _cross(spec, post, xs)
  v = jax.scipy.linalg.solve_triangular(post.chol, ks, lower=True)
  var = post.hyp.outputscale - jnp.sum(v * v, axis=0) + (post.hyp.noise if include_noise else 0.0)
  mean = post.hyp.mean + ks.T @ post.alpha
  return Prediction(mean=mean, stddev=jnp.sqrt(jnp.maximum(var, 1e-12)))


def sample_joint(key: jax.Array, spec: KernelSpec, post: Posterior, xs: jax.Array, num_samples: int,
                 include_noise: bool = False) -> jax.Array:
  """Joint posterior samples ``float[S, M]`` at ``float[M, D]`` points (Thompson sampling).

  A relative jitter keeps the Cholesky of the posterior covariance finite in float32; if it still
  fails, the samples fall back to independent marginals.
  """
  ks = _cross(spec, post, xs)
  v = jax.scipy.linalg.solve_triangular(post.chol, ks, lower=True)
  mean = post.hyp.mean + ks.T @ post.alpha
  cov = kernel(spec, post.hyp, xs, xs) - v.T @ v
  extra = post.hyp.noise if include_noise else 0.0
  jitter = (1e-6 if xs.dtype == jnp.float64 else 1e-4) * post.hyp.outputscale
  cov = cov + (extra + jitter) * jnp.eye(xs.shape[0], dtype=xs.dtype)
  chol = jnp.linalg.cholesky(cov)
  marginal = jnp.diag(jnp.sqrt(jnp.maximum(jnp.diagonal(cov), 1e-12)))
  chol = jnp.where(jnp.all(jnp.isfinite(chol)), chol, marginal)
  z = jax.random.normal(key, (num_samples, xs.shape[0]), xs.dtype)
  return mean[None, :] + z @ chol.T


# ---- target transforms --------------------------------------------------------------------

def standardize(y: jax.Array, mask: jax.Array, center: str = "mean") -> jax.Array:
  """``(y - c) / std`` over the valid rows (``c`` = mean, or median as in TuRBO); std < 1e-6 -> 1.

  Masked rows are returned as 0.
  """
  n = jnp.maximum(mask.sum(), 1)
  mean = jnp.sum(jnp.where(mask, y, 0.0)) / n
  std = jnp.sqrt(jnp.sum(jnp.where(mask, (y - mean) ** 2, 0.0)) / jnp.maximum(n - 1, 1))
  std = jnp.where(std < 1e-6, 1.0, std)
  if center == "median":
    c = masked_median(y, mask)
  elif center == "mean":
    c = mean
  else:
    raise ValueError(f"standardize: center must be 'mean' or 'median', got {center!r}")
  return jnp.where(mask, (y - c) / std, 0.0)


def masked_median(y: jax.Array, mask: jax.Array) -> jax.Array:
  """Median of the valid entries (mean of the two middle ones for an even count)."""
  n = mask.sum()
  s = jnp.sort(jnp.where(mask, y, jnp.inf))
  lo = s[jnp.maximum((n - 1) // 2, 0)]
  hi = s[jnp.maximum(n // 2, 0)]
  return jnp.where(n > 0, 0.5 * (lo + hi), 0.0)


def copula(y: jax.Array, mask: jax.Array) -> jax.Array:
  """Rank -> standard-normal quantile of the valid rows: ``ndtri((rank + 0.5) / n)``.

  Ties share their average rank; masked rows are returned as 0. The result is invariant to any
  increasing transform of ``y`` (CASMOPOLITAN's copula standardisation).
  """
  below = (y[None, :] < y[:, None]) & mask[None, :]
  equal = (y[None, :] == y[:, None]) & mask[None, :]
  rank = below.sum(1) + 0.5 * (equal.sum(1) - 1)  # average rank among ties, 0-based
  n = jnp.maximum(mask.sum(), 1)
  q = jax.scipy.special.ndtri((rank + 0.5) / n)
  return jnp.where(mask, q, 0.0).astype(y.dtype)
