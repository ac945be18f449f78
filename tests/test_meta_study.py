"""jdanas.meta.study: rank metrics, bootstrap intervals, regret and the synthetic learnability target, on
synthetic data with known answers (scipy is the reference for the rank statistics)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from jdanas.meta import Task
from jdanas.meta import study as S


def test_rank_metrics_match_scipy_and_drop_non_finite_pairs():
  rng = np.random.default_rng(0)
  truth = rng.normal(size=30)
  pred = truth + rng.normal(size=30)
  got = S.rank_metrics(pred, truth)
  assert got["spearman"] == pytest.approx(stats.spearmanr(pred, truth).statistic)
  assert got["kendall"] == pytest.approx(stats.kendalltau(pred, truth).statistic)
  bad_p, bad_t = pred.copy(), truth.copy()
  bad_p[3], bad_t[7], bad_t[11] = np.nan, np.inf, np.nan
  keep = np.ones(30, bool)
  keep[[3, 7, 11]] = False
  dropped = S.rank_metrics(bad_p, bad_t)
  assert dropped["spearman"] == pytest.approx(stats.spearmanr(pred[keep], truth[keep]).statistic)
  assert dropped["kendall"] == pytest.approx(stats.kendalltau(pred[keep], truth[keep]).statistic)
  assert S.rank_metrics(np.arange(5.0), -np.arange(5.0)) == pytest.approx({"spearman": -1.0, "kendall": -1.0})


def test_rank_metrics_undefined_cases_are_nan():
  assert all(np.isnan(v) for v in S.rank_metrics(np.ones(6), np.arange(6.0)).values())  # constant
  assert all(np.isnan(v) for v in S.rank_metrics([1.0, 2.0, np.nan], [1.0, 2.0, 3.0]).values())  # 2 pairs
  with pytest.raises(ValueError, match="same length"):
    S.rank_metrics(np.arange(3.0), np.arange(4.0))


def test_vectorised_rows_equal_scipy_with_ties():
  rng = np.random.default_rng(1)
  p = rng.integers(0, 5, size=(40, 12)).astype(float)  # many ties, as in bootstrap resamples
  t = rng.integers(0, 4, size=(40, 12)).astype(float)
  sp, kt = S._spearman_rows(p, t), S.tau_b(p, t, chunk=7)
  for i in range(40):
    ref_s, ref_k = stats.spearmanr(p[i], t[i]).statistic, stats.kendalltau(p[i], t[i]).statistic
    assert (np.isnan(sp[i]) and np.isnan(ref_s)) or sp[i] == pytest.approx(ref_s)
    assert (np.isnan(kt[i]) and np.isnan(ref_k)) or kt[i] == pytest.approx(ref_k)


def _noisy_tasks(rng, tasks: int, n: int, noise: float):
  truth = [rng.normal(size=n) for _ in range(tasks)]
  return [t + noise * rng.normal(size=n) for t in truth], truth


def test_bootstrap_ci_brackets_the_point_and_shrinks_with_students():
  rng = np.random.default_rng(2)
  pred, truth = _noisy_tasks(rng, 1, 20, 1.0)
  lo, hi = S.bootstrap_ci(pred, truth, "spearman", n_boot=1000, seed=0)
  point = S.pooled_metric(pred, truth, "spearman")
  assert point == pytest.approx(stats.spearmanr(pred[0], truth[0]).statistic)
  assert lo < point < hi
  assert (lo, hi) == S.bootstrap_ci(pred, truth, "spearman", n_boot=1000, seed=0)  # seeded
  assert (lo, hi) != S.bootstrap_ci(pred, truth, "spearman", n_boot=1000, seed=1)
  big_p, big_t = _noisy_tasks(rng, 1, 400, 1.0)
  lo_b, hi_b = S.bootstrap_ci(big_p, big_t, "spearman", n_boot=1000, seed=0)
  assert hi_b - lo_b < 0.6 * (hi - lo)  # ~ 1/sqrt(n): 20 -> 400 students
  klo, khi = S.bootstrap_ci(pred, truth, "kendall", n_boot=500, seed=0)
  assert klo < S.pooled_metric(pred, truth, "kendall") < khi


def test_bootstrap_ci_pooled_is_the_mean_over_tasks_and_covers_the_population_value():
  # pooled over 4 tasks: narrower than one task's interval, and it covers the population rho of the
  # generating model (rho_s = 6/pi * asin(r/2) for Gaussian r = 1/sqrt(2)) in most repetitions.
  rng = np.random.default_rng(3)
  r = 1 / np.sqrt(2)
  population = 6 / np.pi * np.arcsin(r / 2)
  covered = 0
  for rep in range(40):
    pred, truth = _noisy_tasks(rng, 4, 30, 1.0)
    lo, hi = S.bootstrap_ci(pred, truth, "spearman", n_boot=400, seed=rep)
    covered += lo <= population <= hi
    if rep == 0:
      one = S.bootstrap_ci(pred[:1], truth[:1], "spearman", n_boot=400, seed=rep)
      assert hi - lo < one[1] - one[0]
      means = np.mean([stats.spearmanr(p, t).statistic for p, t in zip(pred, truth)])
      assert S.pooled_metric(pred, truth, "spearman") == pytest.approx(means)
  assert covered >= 32  # nominal 95 %; the percentile bootstrap under-covers a little at n = 30


def test_bootstrap_ci_seed_rows_share_the_students_and_nan_students_are_dropped():
  rng = np.random.default_rng(4)
  truth = rng.normal(size=25)
  a = truth + rng.normal(size=25)
  # two identical seed rows: the interval equals the one-row interval (same draws, same statistic)
  assert S.bootstrap_ci([np.stack([a, a])], [truth], "spearman", n_boot=300, seed=5) == \
      S.bootstrap_ci([a], [truth], "spearman", n_boot=300, seed=5)
  t_nan = truth.copy()
  t_nan[0] = np.nan
  assert S.bootstrap_ci([a], [t_nan], "spearman", n_boot=300, seed=5) == \
      S.bootstrap_ci([a[1:]], [truth[1:]], "spearman", n_boot=300, seed=5)
  lo, hi = S.bootstrap_ci([a], [truth], lambda p, t: S.regret(p, t, 1), n_boot=200, seed=0)
  assert 0 <= lo <= hi
  assert np.isnan(S.bootstrap_ci([np.ones(5)], [np.arange(5.0)], "spearman", n_boot=50)[0])
  with pytest.raises(ValueError, match="metric"):
    S.bootstrap_ci([a], [truth], "pearson")
  with pytest.raises(ValueError, match="task 0"):
    S.bootstrap_ci([a[:3]], [truth], "spearman")


def test_regret_top_k_and_stable_ties():
  truth = np.array([70.0, 90.0, 80.0, 60.0])
  assert S.regret([4, 1, 3, 2], truth, 1) == 20.0  # picks student 0 (70) vs best 90
  assert S.regret([4, 1, 3, 2], truth, 2) == 10.0  # top-2: students 0, 2 -> 80
  assert S.regret([1, 4, 3, 2], truth, 1) == 0.0
  assert S.regret([5, 5, 1, 1], truth, 1) == 20.0  # a tie: the earlier index (0) wins
  assert S.regret([5, 5, 1, 1], truth[[1, 0, 2, 3]], 1) == 0.0
  assert S.regret([4, 1, 3, 2], truth, 10) == 0.0  # k beyond the pool: everyone is picked
  assert S.regret([np.nan, 1, 3, 2], truth, 1) == 10.0  # student 0 dropped: picks 2 (80)
  assert np.isnan(S.regret([np.nan], [1.0], 1))
  with pytest.raises(ValueError, match="k"):
    S.regret([1.0], [1.0], 0)


def _task(labels):
  n = len(labels)
  return Task(maps=np.zeros((n, 2, 2, 1), np.float32), arch=np.zeros((n, 3), np.float32),
              labels=np.asarray(labels, np.float32), teacher_map=np.zeros((2, 2, 1), np.float32),
              teacher_arch=np.zeros(3, np.float32), teacher_label=np.float32(90.0))


def test_synthetic_labels_follow_the_flops_rank_on_the_real_scale():
  rng = np.random.default_rng(5)
  real = [rng.uniform(60, 80, size=32), rng.uniform(85, 95, size=32)]
  flops = [rng.uniform(1e6, 1e8, size=32) for _ in real]
  clean = S.synthetic_labels(0, [_task(r) for r in real], flops, 0.0)
  for t, r, f in zip(clean, real, flops):
    assert stats.spearmanr(t.labels, f).statistic == pytest.approx(1.0)
    assert float(t.labels.min()) == pytest.approx(r.min(), rel=1e-6)
    assert float(t.labels.max()) == pytest.approx(r.max(), rel=1e-6)
    assert t.labels.dtype == np.float32 and t.teacher_label == 90.0  # the support is untouched
  noisy = S.synthetic_labels(0, [_task(r) for r in real], flops, 0.5)
  rho = [stats.spearmanr(t.labels, f).statistic for t, f in zip(noisy, flops)]
  assert all(0.5 < x < 0.995 for x in rho)  # noise 0.5 x label sd: a learnable but not exact target
  resid = noisy[0].labels - clean[0].labels
  assert np.std(resid) == pytest.approx(0.5 * real[0].std(), rel=0.35)
  again = S.synthetic_labels(0, [_task(r) for r in real], flops, 0.5)
  assert all(np.array_equal(a.labels, b.labels) for a, b in zip(noisy, again))
  other = S.synthetic_labels(1, [_task(r) for r in real], flops, 0.5)
  assert not np.array_equal(other[0].labels, noisy[0].labels)


def test_synthetic_labels_keep_nan_students_and_accept_a_jax_key():
  import jax
  real = np.array([70.0, np.nan, 75.0, 80.0])
  out = S.synthetic_labels(jax.random.key(3), [_task(real)], [np.array([3.0, 2.0, 1.0, 4.0])], 0.0)[0]
  assert np.isnan(out.labels[1])
  assert out.labels[[0, 2, 3]].tolist() == [75.0, 70.0, 80.0]  # FLOPs ranks 2, 1, 3 of the finite three
  with pytest.raises(ValueError, match="FLOPs"):
    S.synthetic_labels(0, [_task(real)], [np.ones(3)], 0.5)
  with pytest.raises(ValueError, match="noise"):
    S.synthetic_labels(0, [_task(real)], [np.ones(4)], -1.0)
