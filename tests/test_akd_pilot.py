"""bench/akd.py --part pilot: the Kendall tau-b and bootstrap statistics on synthetic data, and the
pilot's options (no training here: the bench's own runs are measured in docs/benchmarks.md)."""
from __future__ import annotations


import numpy as np
import pytest
from scipy.stats import kendalltau

from conftest import load_script


bench = load_script("bench/akd.py", "bench_akd_pilot")


def test_tau_b_matches_scipy_with_ties_and_per_row():
  rng = np.random.default_rng(0)
  a = rng.integers(0, 5, size=(6, 16)).astype(float)  # many ties, as resampling makes
  b = a + rng.integers(0, 4, size=(6, 16))
  got = bench.tau_b(a, b)
  assert got.shape == (6,)
  for row in range(6):
    assert got[row] == pytest.approx(kendalltau(a[row], b[row]).statistic, abs=1e-12)
  assert np.isnan(bench.tau_b(np.ones(5), np.arange(5.0)))  # a constant ranking has no tau


def test_bootstrap_interval_is_seeded_and_brackets_the_truth():
  rng = np.random.default_rng(1)
  x = rng.normal(size=40)
  strong = x + 0.3 * rng.normal(size=40)
  noise = rng.normal(size=40)
  r = bench.bootstrap_tau([(x, strong)], resamples=1000, seed=3)
  assert r == bench.bootstrap_tau([(x, strong)], resamples=1000, seed=3)
  assert r != bench.bootstrap_tau([(x, strong)], resamples=1000, seed=4)
  assert r["x"]["tau"] == pytest.approx(kendalltau(x, strong).statistic)
  assert r["x"]["lo"] < r["x"]["tau"] < r["x"]["hi"]
  assert r["x"]["lo"] > 0.5 and r["x"]["resamples"] == 1000
  unrelated = bench.bootstrap_tau([(x, noise)], resamples=1000, seed=3)["x"]
  assert unrelated["lo"] < 0 < unrelated["hi"]
  assert unrelated["hi"] - unrelated["lo"] > 0.2  # 40 independent students: a wide interval
  same = bench.bootstrap_tau([(x, x)], resamples=200, seed=0)["x"]
  assert same["tau"] == same["lo"] == same["hi"] == 1.0


def test_bootstrap_interval_covers_the_population_tau():
  """Coverage on synthetic students: intervals from many independent samples of 30 students
  contain the tau of a huge sample in roughly 95 % of the draws (percentile bootstrap, small n:
  a loose band, but a broken resampling, e.g. one draw for all pairs or swapped quantiles, fails)."""
  rng = np.random.default_rng(7)

  def draw(n):
    z = rng.normal(size=n)
    return z, z + rng.normal(size=n)

  truth = kendalltau(*draw(20000)).statistic
  hits = 0
  for k in range(60):
    r = bench.bootstrap_tau([draw(30)], resamples=400, seed=k)["x"]
    hits += r["lo"] <= truth <= r["hi"]
  assert 48 <= hits <= 60


def test_paired_difference_keeps_the_pairing():
  rng = np.random.default_rng(2)
  n = 24
  quality = rng.normal(size=n)
  seed_a, seed_b = quality + 0.2 * rng.normal(size=n), quality + 0.2 * rng.normal(size=n)
  other = rng.normal(size=n)  # a teacher whose ranking has nothing to do with the first one's
  r = bench.bootstrap_tau([(seed_a, other)], [(seed_a, seed_b)], resamples=1000, seed=0)
  assert r["diff"]["tau"] == pytest.approx(r["x"]["tau"] - r["y"]["tau"])
  assert r["diff"]["hi"] < 0 and r["p_diff_le_0"] == 1.0
  # The same pairs on both sides: every resample's difference is exactly 0.
  r0 = bench.bootstrap_tau([(seed_a, seed_b)], [(seed_a, seed_b)], resamples=300, seed=0)
  assert r0["diff"]["lo"] == r0["diff"]["hi"] == 0.0 and r0["p_diff_le_0"] == 1.0
  rec = bench.tau_record(r, "diff")
  assert rec["tau"] == round(r["diff"]["tau"], 4) and len(rec["ci95"]) == 2


def test_bootstrap_refuses_mismatched_students():
  with pytest.raises(ValueError, match="same students"):
    bench.bootstrap_tau([(np.arange(5.0), np.arange(6.0))])
  with pytest.raises(ValueError, match="at least one pair"):
    bench.bootstrap_tau([])


def test_pilot_options():
  args = bench.parse_args([])
  assert args.space == "nb201_masked" and args.space_kwargs == {"channels": 8, "num_cells": 1}
  assert args.image_size == 16 and args.students >= 16
  assert bench.parse_args(["--part", "compare"]).space == "mobilenet"  # compare keeps its own default
  args = bench.parse_args(["--space", "mobilenet", "--base-width", "0.5", "--image-size", "0", "--train-limit", "0"])
  assert args.space_kwargs == {"base_width": 0.5} and args.image_size == 0 and args.train_limit is None
  args = bench.parse_args(["--space-kwargs", '{"channels": 16}'])
  assert args.space_kwargs == {"channels": 16, "num_cells": 1}
  for bad in (["--space-kwargs", "[1]"], ["--space-kwargs", "{oops"], ["--image-size", "-1"], ["--resamples", "0"]):
    with pytest.raises(SystemExit):
      bench.parse_args(bad)


def test_teacher_steps_per_teacher():
  args = bench.parse_args(["--teachers", "resnet8:800,vgg8", "--teacher-steps", "150"])
  assert args.teacher_plan == {"resnet8": 800, "vgg8": 150}
  for bad in ("resnet8:x,vgg8", "resnet8:0,vgg8", "resnet8,resnet8", "resnet8"):
    with pytest.raises(SystemExit):
      bench.parse_args(["--teachers", bad])


def test_vgg8_quarter_is_vgg8_at_a_quarter_of_the_widths():
  """The pilot's second teacher family: the zoo's VGG-8 with every conv width divided by 4."""
  import jax
  import jax.numpy as jnp

  from jdanas.models.vgg import VGG_CFGS
  from jdanas.models.zoo import get_model

  shapes = jax.eval_shape(lambda: get_model("vgg8_quarter", 10).init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)),
                                                                      None, train=False))
  widths = [shapes["params"][f"group{g}_conv0"]["kernel"].shape[-1] for g in range(5)]
  assert widths == [group[0] // 4 for group in VGG_CFGS["vgg8"]] == [16, 32, 64, 128, 128]
