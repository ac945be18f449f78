"""Exact GP: kernels against hand formulas, a two-point posterior by hand, masking, fitting inside
the bounds, joint samples, target transforms and the float64 path."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jdanas.searchers import gp

CONT = gp.KernelSpec(continuous=(0,))
BOUNDS = gp.Bounds()


def raw_params(spec, bounds, *, lengthscale=(), cat_lengthscale=(), outputscale=1.0, noise=0.01,
               mean=0.0):
  """Raw parameters whose constrained values are the given ones."""
  logit = lambda v, b: math.log((v - b[0]) / (b[1] - v))
  return gp.GPParams(
      lengthscale=jnp.asarray([logit(v, bounds.lengthscale) for v in lengthscale], jnp.float32),
      cat_lengthscale=jnp.asarray([logit(v, bounds.cat_lengthscale) for v in cat_lengthscale], jnp.float32),
      outputscale=jnp.asarray(logit(outputscale, bounds.outputscale), jnp.float32),
      noise=jnp.asarray(logit(noise, bounds.noise), jnp.float32),
      mixture=jnp.zeros((), jnp.float32), mean=jnp.asarray(mean, jnp.float32))


def matern_by_hand(r):
  return (1 + math.sqrt(5) * r + 5 * r * r / 3) * math.exp(-math.sqrt(5) * r)


def test_two_point_posterior_matches_hand_computation():
  ls, s2, noise = 0.7, 2.0, 0.01
  raw = raw_params(CONT, BOUNDS, lengthscale=(ls,), outputscale=s2, noise=noise, mean=0.3)
  x = jnp.asarray([[0.0], [1.0]])
  y = jnp.asarray([1.0, -1.0])
  post = jax.jit(gp.posterior, static_argnums=(0, 1))(CONT, BOUNDS, raw, x, y, jnp.ones(2, bool))
  pred = gp.predict(CONT, post, jnp.asarray([[0.25]]))
  # By hand: K = s2 [[1, k01], [k01, 1]] + noise I, k* = s2 [m(0.25/ls), m(0.75/ls)].
  jit = 1e-5 * s2
  k01 = s2 * matern_by_hand(1.0 / ls)
  kmat = np.array([[s2 + noise + jit, k01], [k01, s2 + noise + jit]])
  kstar = s2 * np.array([matern_by_hand(0.25 / ls), matern_by_hand(0.75 / ls)])
  mean = 0.3 + kstar @ np.linalg.solve(kmat, np.array([1.0, -1.0]) - 0.3)
  var = s2 - kstar @ np.linalg.solve(kmat, kstar)
  np.testing.assert_allclose(pred.mean[0], mean, rtol=1e-4)
  np.testing.assert_allclose(pred.stddev[0], math.sqrt(var), rtol=1e-3)


def test_overlap_and_mixed_kernels_match_formulas():
  spec = gp.KernelSpec(continuous=(0,), categorical=(1, 2), mixture=0.3)
  w = (0.5, 2.0)
  hyp = gp.constrain(spec, BOUNDS, raw_params(spec, BOUNDS, lengthscale=(0.4,), cat_lengthscale=w,
                                              outputscale=1.5))
  x1 = jnp.asarray([[0.1, 0.0, 3.0]])
  x2 = jnp.asarray([[0.5, 0.0, 1.0], [0.1, 2.0, 1.0]])
  k = np.asarray(jax.jit(gp.kernel, static_argnums=0)(spec, hyp, x1, x2))[0]
  k_cat = np.array([math.exp(-w[1] / 2), math.exp(-(w[0] + w[1]) / 2)])
  k_cont = np.array([matern_by_hand(0.4 / 0.4), 1.0])
  expected = 1.5 * (0.7 * (k_cat + k_cont) + 0.3 * k_cat * k_cont)
  np.testing.assert_allclose(k, expected, rtol=1e-5)
  cat_only = gp.KernelSpec(categorical=(1, 2))
  np.testing.assert_allclose(np.asarray(gp.kernel(cat_only, hyp, x1, x1))[0, 0], 1.5, rtol=1e-6)
  # Additive overlap: sum_i w_i [equal] / sum_i w_i; "overlap_sum" averages it with the transformed one.
  additive = np.asarray(gp.kernel(cat_only._replace(categorical_kernel="overlap"), hyp, x1, x2))[0]
  np.testing.assert_allclose(additive, 1.5 * np.array([w[0] / sum(w), 0.0]), rtol=1e-5, atol=1e-7)
  both = np.asarray(gp.kernel(cat_only._replace(categorical_kernel="overlap_sum"), hyp, x1, x2))[0]
  np.testing.assert_allclose(both, 0.5 * (additive + 1.5 * k_cat), rtol=1e-5)


def test_masked_rows_do_not_change_posterior_or_likelihood():
  spec = gp.KernelSpec(continuous=(0,), categorical=(1,))
  raw = raw_params(spec, BOUNDS, lengthscale=(0.3,), cat_lengthscale=(1.0,))
  x = jnp.asarray([[0.1, 0.0], [0.6, 1.0], [0.9, 1.0]])
  y = jnp.asarray([0.5, -0.2, 1.0])
  junk_x = jnp.concatenate([x, jnp.asarray([[0.11, 0.0], [5.0, 3.0]])])
  junk_y = jnp.concatenate([y, jnp.asarray([100.0, jnp.nan])])
  mask = jnp.asarray([True, True, True, False, False])
  xs = jnp.asarray([[0.3, 1.0], [0.1, 0.0]])

  @jax.jit
  def predict_and_nll(x, y, mask):
    pred = gp.predict(spec, gp.posterior(spec, BOUNDS, raw, x, y, mask), xs)
    return pred, gp.neg_mll(spec, BOUNDS, raw, x, y, mask)

  a, nll_a = predict_and_nll(x, y, jnp.ones(3, bool))
  b, nll_b = predict_and_nll(junk_x, jnp.where(mask, junk_y, 0.0), mask)
  np.testing.assert_allclose(a.mean, b.mean, rtol=1e-5)
  np.testing.assert_allclose(a.stddev, b.stddev, rtol=1e-5)
  np.testing.assert_allclose(nll_a, nll_b, rtol=1e-5)


@pytest.fixture(scope="module")
def fitted():
  """Noisy sin on 12 of 16 slots (4 masked), fitted with 3 starts."""
  spec = gp.KernelSpec(continuous=(0, 1))
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(size=(16, 2)), jnp.float32)
  y = jnp.sin(6 * x[:, 0]) + 0.01 * jnp.asarray(rng.standard_normal(16), jnp.float32)
  mask = jnp.arange(16) < 12
  y = gp.standardize(y, mask)
  fit = jax.jit(lambda k: gp.fit(k, spec, BOUNDS, x, y, mask, steps=60, restarts=3))
  raw, nll = fit(jax.random.key(0))
  return spec, x, y, mask, raw, nll


def test_fit_improves_likelihood_and_stays_inside_bounds(fitted):
  spec, x, y, mask, raw, nll = fitted
  start = gp.neg_mll(spec, BOUNDS, gp.init_params(spec, BOUNDS), x, y, mask)
  assert float(nll) < float(start)
  hyp = gp.constrain(spec, BOUNDS, raw)
  for name in ("lengthscale", "outputscale", "noise"):
    lo, hi = getattr(BOUNDS, name)
    value = np.asarray(getattr(hyp, name))
    assert np.all((value >= lo) & (value <= hi)), name
  # x[:, 1] is irrelevant: its lengthscale grows past the one of the informative dimension.
  assert float(hyp.lengthscale[1]) > float(hyp.lengthscale[0])


def test_joint_samples_match_the_posterior(fitted):
  spec, x, y, mask, raw, _ = fitted
  post = gp.posterior(spec, BOUNDS, raw, x, y, mask)
  xs = jnp.asarray([[0.2, 0.5], [0.21, 0.5], [0.8, 0.1]])
  samples = jax.jit(lambda k: gp.sample_joint(k, spec, post, xs, 4000))(jax.random.key(1))
  pred = gp.predict(spec, post, xs)
  np.testing.assert_allclose(samples.mean(0), pred.mean, atol=0.05 + 4 * float(pred.stddev.max()) / 60)
  np.testing.assert_allclose(samples.std(0), pred.stddev, rtol=0.15, atol=0.02)
  # Nearby points are strongly correlated in the joint samples.
  assert np.corrcoef(np.asarray(samples[:, :2]).T)[0, 1] > 0.8


def test_copula_and_standardize():
  y = jnp.asarray([3.0, 1.0, 2.0, 2.0, 50.0, 7.0])
  mask = jnp.asarray([True, True, True, True, False, True])
  copula = jax.jit(gp.copula)
  c = copula(y, mask)
  assert float(c[4]) == 0.0
  np.testing.assert_allclose(c[2], c[3])  # ties share a quantile
  np.testing.assert_allclose(copula(jnp.exp(y), mask), c, rtol=1e-6)  # monotone invariant
  np.testing.assert_array_equal(np.argsort(np.asarray(c)[[0, 1, 2, 5]]), [1, 2, 0, 3])
  s = jax.jit(gp.standardize)(y, mask)
  valid = np.asarray(s)[np.asarray(mask)]
  np.testing.assert_allclose(valid.mean(), 0.0, atol=1e-6)
  np.testing.assert_allclose(valid.std(ddof=1), 1.0, rtol=1e-5)
  assert float(jax.jit(gp.masked_median)(y, mask)) == 2.0
  with pytest.raises(ValueError, match="center"):
    gp.standardize(y, mask, center="mode")


def test_float64_fit_under_enable_x64():
  spec = gp.KernelSpec(continuous=(0,), categorical=(1,))
  with jax.enable_x64(True):
    x = jnp.asarray([[0.0, 0.0], [0.5, 1.0], [1.0, 2.0], [0.2, 1.0]], jnp.float64)
    y = gp.copula(jnp.asarray([0.1, 0.9, 0.3, 0.5], jnp.float64), jnp.ones(4, bool))
    raw, nll = jax.jit(lambda k: gp.fit(k, spec, BOUNDS, x, y, jnp.ones(4, bool), steps=5, restarts=2))(
        jax.random.key(0))
    assert raw.lengthscale.dtype == jnp.float64 and bool(jnp.isfinite(nll))


def test_bad_spec_raises():
  with pytest.raises(ValueError, match="at least one"):
    gp.check_spec(gp.KernelSpec(), BOUNDS)
  with pytest.raises(ValueError, match="categorical_kernel"):
    gp.check_spec(gp.KernelSpec(categorical=(0,), categorical_kernel="hamming"), BOUNDS)
  with pytest.raises(ValueError, match="Bounds.noise"):
    gp.check_spec(CONT, BOUNDS._replace(noise=(0.1, 0.01)))
