"""AKD's latency-aware reward (jdanas.rewards) and its pipeline wiring: the formula, the latency
cache (and its refill from a resumed ledger), the "NAS + KD" (plain CE) evaluator, the ledger and
report columns, and configs/akd_cifar10.py's variants."""
import json

import jax
import ml_collections
import numpy as np
import pytest

from configs import akd_cifar10
from conftest import require_file, smoke_config
from jdanas import pipeline
from jdanas.evaluators import Evaluation, EvaluatorBase, ScoreKind
from jdanas.evaluators.reward import RewardEvaluator
from jdanas.pipeline import ConfigError, build_plan
from jdanas.pipeline.setup import build_evaluator
from jdanas.rewards import LatencyModel, encoding_key, reward
from jdanas.spaces import get_space
from jdanas.teachers import Teacher


def test_reward_soft_and_hard_forms():
  acc = np.array([0.5, 0.5, 0.5, np.nan])
  lat = np.array([5.0, 10.0, 20.0, 10.0])
  soft = reward(acc, lat, target=10.0, alpha=-0.07, beta=-0.07)
  np.testing.assert_allclose(soft[:3], 0.5 * (lat[:3] / 10.0) ** -0.07, rtol=1e-6)
  assert soft[0] > soft[1] > soft[2] and np.isnan(soft[3])
  hard = reward(acc, lat, target=10.0, alpha=0.0, beta=-1.0)
  np.testing.assert_allclose(hard[:3], [0.5, 0.5, 0.25], rtol=1e-6)  # no bonus under T, acc * T/LAT over
  target = reward(acc, lat, target=10.0, alpha=1.0, beta=-1.0)  # a size target: under T loses reward too
  np.testing.assert_allclose(target[:3], [0.25, 0.5, 0.25], rtol=1e-6)


class _FakeAccuracy(EvaluatorBase):
  """An accuracy evaluator that counts its calls."""
  score_kind = ScoreKind("val_accuracy", "fraction in [0, 1]")

  def __init__(self):
    self.calls = 0

  def __call__(self, key, encodings):
    self.calls += 1
    return Evaluation(scores=(np.asarray(encodings).sum(1) / 10.0).astype(np.float32), num_compilations=1)


def test_reward_evaluator_caches_latency_per_architecture_and_records_the_terms():
  measured = []

  def latency(enc):
    measured.append(encoding_key(enc))
    return float(1 + np.asarray(enc).sum())

  ev = RewardEvaluator(_FakeAccuracy(), latency, target=3.0, alpha=0.0, beta=-1.0, latency_model="flops")
  encs = np.array([[0, 1], [2, 1], [0, 1]], np.int32)
  out = ev(jax.random.key(0), encs)
  assert measured == ["0,1", "2,1"]  # the duplicate is looked up, not measured again
  np.testing.assert_allclose(out.extras["accuracy"], [0.1, 0.3, 0.1], rtol=1e-6)
  np.testing.assert_allclose(out.extras["latency"], [2.0, 4.0, 2.0])
  np.testing.assert_allclose(out.scores, [0.1, 0.3 * 3 / 4, 0.1], rtol=1e-6)
  np.testing.assert_array_equal(out.extras["reward"], out.scores)
  assert out.num_compilations == 1 and ev.score_kind.kind.startswith("reward:val_accuracy")
  ev(jax.random.key(1), encs[:2])
  assert len(measured) == 2
  # A resumed run refills the cache from the ledger: nothing measured before is measured again.
  fresh = RewardEvaluator(_FakeAccuracy(), latency, target=3.0, latency_model="flops")
  fresh.resume([{"encoding": [2, 1], "latency": 9.0}, {"encoding": [0, 0], "latency": None}])
  fresh(jax.random.key(0), encs[1:2])
  assert len(measured) == 2 and fresh.cache == {"2,1": 9.0}


def test_latency_models_and_the_measured_protocol():
  space = get_space("s1_resnet", depth_choices=(1, 2), widths=(4, 8, 8), stem=4)
  enc = np.zeros(space.num_decisions, np.int32)
  kw = dict(num_classes=4, input_shape=(8, 8, 1))
  params, flops = LatencyModel("params", space, **kw), LatencyModel("flops", space, **kw)
  assert params(enc) > 0 and flops(enc) > params(enc)
  measured = LatencyModel("measured", space, batch_size=2, repeats=3, **kw)
  assert measured(enc) > 0
  p = measured.describe()["protocol"]
  assert p["batch_size"] == 2 and p["repeats"] == 3 and p["warmup_calls"] == 1 and p["statistic"] == "median"
  with pytest.raises(ValueError, match="latency_model"):
    LatencyModel("cycles", space, **kw)


def _with_reward(c, **reward_fields):
  fields = dict(latency_model="flops", target=1e5, alpha=-0.07, beta=-0.07, batch_size=1, repeats=5)
  c.evaluator.reward = ml_collections.ConfigDict({**fields, **reward_fields})
  return c


def test_plan_reads_the_reward_and_the_ce_short_run():
  plan = build_plan(_with_reward(smoke_config()))
  assert plan.evaluator.reward == dict(latency_model="flops", target=1e5, alpha=-0.07, beta=-0.07, batch_size=1,
                                       repeats=5)
  assert plan.evaluator.values["distill"] is True
  assert build_plan(smoke_config()).evaluator.reward is None
  c = _with_reward(smoke_config())
  c.evaluator.reward.latency_model = ""  # off
  assert build_plan(c).evaluator.reward is None
  c = smoke_config()
  c.evaluator.short_kd.distill = False
  assert build_plan(c).evaluator.values["distill"] is False


@pytest.mark.parametrize("field, value, match", [
    ("latency_model", "cycles", "config.evaluator.reward.latency_model"),
    ("target", 0.0, "config.evaluator.reward.target"),
    ("target", float("inf"), "config.evaluator.reward.target"),
    ("alpha", float("nan"), "config.evaluator.reward.alpha"),
    ("beta", 0.5, "config.evaluator.reward.beta"),
    ("beta", float("nan"), "config.evaluator.reward.beta"),
    ("batch_size", 0, "config.evaluator.reward.batch_size"),
    ("repeats", -3, "config.evaluator.reward.repeats"),
    ("window", 3, "config.evaluator.reward: unknown field"),
])
def test_bad_reward_values_name_the_field(field, value, match):
  c = _with_reward(smoke_config())
  c.evaluator.reward[field] = value
  with pytest.raises(ConfigError, match=match):
    build_plan(c)


def test_reward_needs_an_accuracy_evaluator_and_distill_is_a_bool():
  c = _with_reward(smoke_config())
  c.evaluator.name = "zero_cost"
  c.evaluator.zero_cost = dict(proxy="diswot")
  with pytest.raises(ConfigError, match="config.evaluator.reward: needs an accuracy evaluator"):
    build_plan(c)
  c = smoke_config()
  c.evaluator.short_kd.distill = "yes"
  with pytest.raises(ConfigError, match="config.evaluator.short_kd.distill"):
    build_plan(c)


def test_nas_kd_evaluator_trains_without_the_teacher(tiny_data):
  c = smoke_config(**{"evaluator.short_kd.distill": False})
  c = _with_reward(c)
  plan = build_plan(c)
  teacher = Teacher(name="stand-in", module=None, variables=None, num_classes=tiny_data.num_classes,
                    input_shape=tuple(tiny_data.image_shape))  # never called: nothing is trained here
  ev = build_evaluator(plan, tiny_data, teacher, seed=0)
  assert isinstance(ev, RewardEvaluator)
  assert ev.inner.trainer.teacher is None and ev.inner.score_kind.kind == "ce_val_accuracy"
  assert ev.inner.trainer.recipe.loss.soft_weight == 0.0
  assert ev.score_kind.kind.startswith("reward:ce_val_accuracy")
  with_kd = build_evaluator(build_plan(_with_reward(smoke_config())), tiny_data, teacher, seed=0)
  assert with_kd.inner.score_kind.kind == "val_accuracy" and with_kd.inner.trainer.teacher is teacher


@pytest.fixture(scope="module")
def reward_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("akd_reward")
  return workdir, pipeline.run(_with_reward(smoke_config(), target=2e5), workdir)


@pytest.mark.slow
def test_pipeline_records_acc_latency_reward_in_ledger_and_report(reward_run):
  workdir, report = reward_run
  ledger = json.loads((workdir / "ledger.json").read_text())
  for row in ledger:
    assert row["latency"] == row["flops"]  # the flops model is the ledger's FLOPs
    expected = reward(np.array([row["accuracy"]]), np.array([row["latency"]]), target=2e5, alpha=-0.07, beta=-0.07)
    assert row["reward"] == row["score"] == pytest.approx(float(expected[0]), rel=1e-6)
  assert report["search"]["reward"]["latency_model"] == "flops" and report["search"]["reward"]["target"] == 2e5
  assert report["search"]["score"]["kind"].startswith("reward:val_accuracy")
  by_arch = {r["arch"]: r for r in ledger}
  for top in report["top"]:
    row = by_arch[top["arch"]]
    assert (top["search_accuracy"], top["latency"], top["reward"]) == (row["accuracy"], row["latency"], row["reward"])
    expected = reward(np.array([top["val_accuracy"]]), np.array([top["latency"]]), target=2e5, alpha=-0.07,
                      beta=-0.07)
    assert top["final_reward"] == pytest.approx(float(expected[0]), rel=1e-6)
  # the final choice is the search's objective on the final validation accuracy
  assert report["final"]["arch"] == report["top"][0]["arch"]
  assert report["top"][0]["final_reward"] == max(t["final_reward"] for t in report["top"])
  md = (workdir / "report.md").read_text()
  assert "| Final reward |" in md
  assert "| Reward | ACC x (LAT/T)^w, LAT = flops (FLOPs), T = 200000" in md
  assert "ACC (val_accuracy) | LAT (FLOPs) | Reward |" in md


def test_akd_config_variants_differ_only_where_they_say():
  akd, nas_kd = akd_cifar10.get_config(), akd_cifar10.get_config("nas_kd")
  assert akd.searcher.name == "ppo" and akd.space.name == "mobilenet"
  assert akd.evaluator.short_kd.distill is True and nas_kd.evaluator.short_kd.distill is False
  nas_kd.evaluator.short_kd.distill = True
  assert nas_kd.to_dict() == akd.to_dict()  # everything else equal: budget, latency target, final KD
  assert akd.evaluator.reward.latency_model == "measured"
  local = akd_cifar10.get_config("runlocal")
  assert local.evaluator.reward.latency_model == "flops" and local.data.name == "npz"
  assert akd_cifar10.get_config("runlocal,latency=params").evaluator.reward.target == 220_000
  with pytest.raises(ValueError, match="unknown variant"):
    akd_cifar10.get_config("runlocal,bogus")


@pytest.mark.parametrize("variant", ["", "nas_kd", "latency=flops"])
def test_akd_config_validates(variant):
  build_plan(akd_cifar10.get_config(variant))


@pytest.mark.parametrize("variant", ["runlocal", "runlocal,nas_kd"])
def test_akd_runlocal_config_validates(variant, data_dir):
  require_file(data_dir / "cifar10_train_subset.npz")
  plan = build_plan(akd_cifar10.get_config(variant))
  assert plan.evaluator.reward["latency_model"] == "flops"
  assert plan.evaluator.values["distill"] == (variant == "runlocal")


def test_akd_bench_compare_keeps_its_own_seed_default():
  """``bench/akd.py --part compare`` must not inherit the pilot's 2 seeds (the compare default is 3)."""
  import importlib.util
  import pathlib
  path = pathlib.Path(__file__).resolve().parents[1] / "bench" / "akd.py"
  spec = importlib.util.spec_from_file_location("bench_akd", path)
  bench = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(bench)
  assert bench.parse_args(["--part", "compare"]).seeds is None  # akd_compare.FULL["seeds"] applies
  assert bench.parse_args(["--part", "compare", "--seeds", "4"]).seeds == 4
  assert bench.parse_args([]).seeds == bench.PILOT_FULL["seeds"]
  with pytest.raises(SystemExit):
    bench.parse_args(["--part", "pilot", "--seeds", "1"])


def test_final_choice_follows_the_reward_so_a_budget_binds_it(tmp_path):
  from jdanas.pipeline.final import choose
  from jdanas.report import write_report
  top = [{"arch": "big", "latency": 300.0}, {"arch": "small", "latency": 100.0}, {"arch": "failed", "latency": 90.0}]
  acc = np.array([0.60, 0.50, np.nan])
  assert choose(acc, top, None) == (0, None)  # no reward: the best validation accuracy
  hard = dict(target=150.0, alpha=0.0, beta=-1.0)  # 0.60 x 150/300 = 0.30 < 0.50
  i, r = choose(acc, top, hard)
  assert i == 1 and r[0] == pytest.approx(0.30) and r[1] == pytest.approx(0.50) and np.isnan(r[2])
  size_target = dict(target=300.0, alpha=1.0, beta=-1.0)  # 0.50 x 100/300 < 0.60: use the budget
  assert choose(acc, top, size_target)[0] == 0
  report = {"top": [dict(t, val_accuracy=None if np.isnan(a) else float(a), params=1, flops=1.0,
                         final_reward=None if np.isnan(v) else float(v), search_accuracy=0.4, reward=0.3)
                    for t, a, v in zip(top, acc, r)]}
  _, md = write_report(tmp_path, report)
  assert "Final reward" in md.read_text() and "| 0.5 |" in md.read_text()
