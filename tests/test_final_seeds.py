"""``final.seeds``: the chosen student's KD gain over paired seeds, with its standard error and interval."""
import numpy as np
import pytest
from scipy import stats

from conftest import smoke_config
from jdanas import pipeline
from jdanas.pipeline.final import paired_gain
from jdanas.report import seeds_text


def test_paired_gain_matches_a_paired_t_test():
  rng = np.random.default_rng(0)
  no_kd = rng.uniform(0.8, 0.9, size=7)
  kd = no_kd + rng.normal(0.01, 0.005, size=7)
  g = paired_gain(kd, no_kd, confidence=0.9)
  d = kd - no_kd
  assert g["n"] == 7 and g["failed"] == 0 and g["kd_wins"] == int((d > 0).sum())
  assert g["gain_mean"] == pytest.approx(d.mean())
  assert g["gain_se"] == pytest.approx(stats.sem(d))
  lo, hi = stats.t.interval(0.9, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
  assert g["gain_interval"] == pytest.approx([lo, hi])
  assert g["kd_se"] == pytest.approx(stats.sem(kd)) and g["no_kd_mean"] == pytest.approx(no_kd.mean())


def test_paired_gain_leaves_out_diverged_pairs():
  g = paired_gain([0.9, float("nan"), 0.8, 0.85], [0.8, 0.7, 0.8, 0.9])
  assert g["n"] == 3 and g["failed"] == 1 and g["kd_wins"] == 1 and g["ties"] == 1
  assert g["gain_mean"] == pytest.approx((0.1 + 0.0 - 0.05) / 3)
  one = paired_gain([0.9], [0.8])  # one pair: a difference but no spread
  assert one["n"] == 1 and np.isnan(one["gain_se"]) and np.isnan(one["gain_interval"][0])
  assert "n/a" in seeds_text({"split": "test", "kd": [0.9], "no_kd": [0.8], **one})


@pytest.mark.slow  # a whole smoke pipeline run (~30 s unloaded)
def test_final_seeds_trains_paired_runs_and_reports_the_interval(tmp_path, capsys):
  report = pipeline.run(smoke_config(**{"final.seeds": 2}), tmp_path)
  seeds = report["final"]["seeds"]
  assert seeds["n"] == 2 and seeds["split"] == "test"
  assert len(seeds["kd"]) == len(seeds["no_kd"]) == 2
  assert all(0 <= a <= 1 for a in seeds["kd"] + seeds["no_kd"])
  assert seeds["gain_mean"] == pytest.approx(np.mean(np.subtract(seeds["kd"], seeds["no_kd"])))
  lo, hi = seeds["gain_interval"]
  assert lo <= seeds["gain_mean"] <= hi
  text = (tmp_path / "report.md").read_text()
  assert "Over 2 paired seeds" in text and "% interval" in text
  assert "KD gain over 2 seeds" in capsys.readouterr().err
