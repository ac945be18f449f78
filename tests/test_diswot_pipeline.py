"""The DisWOT pieces in the run.py pipeline: budgets on every proposal, DisWOT KD terms, configs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import smoke_config as smoke
from jdanas import costs
from jdanas.pipeline import ConfigError, build_plan, run, validate_config
from jdanas.spaces import get_space



@pytest.mark.slow  # a whole smoke run (teacher, search, final KD, export): ~100 s on the loaded 2-core CPU
def test_pipeline_budget_holds_for_every_proposal(tmp_path):
  c = smoke()
  space = get_space(c.space.name, **dict(c.space.kwargs))
  encs = [space.encode(f"{a}{b}{d}") for a in "12" for b in "12" for d in "12"]
  params = sorted(costs.model_costs(space, e, num_classes=10, input_shape=(8, 8, 1), flops=False).params for e in encs)
  limit = params[4]  # 5 of the 8 tiny students fit
  c = smoke(**{"searcher.name": "diswot_evolution", "searcher.kwargs": dict(num_asks=2, population_size=2,
                                                                             tournament_size=2),
               "constraint.max_params": limit, "search.rounds": 2})
  report = run(c, tmp_path)
  ledger = json.loads((tmp_path / "ledger.json").read_text())
  assert len(ledger) == 4 and all(r["feasible"] and r["params"] <= limit for r in ledger)
  assert report["final"]["params"] <= limit
  rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert rows[-1]["constraint_unrepaired"] == 0


def test_bad_constraint_and_searcher_fields_name_the_field():
  with pytest.raises(ConfigError, match="config.constraint.max_latency_ms"):
    validate_config(smoke(**{"constraint.max_latency_ms": -1.0}))
  with pytest.raises(ConfigError, match="config.kd.semantic_weight: must be a number >= 0"):
    validate_config(smoke(**{"kd.semantic_weight": -0.5}))
  with pytest.raises(ConfigError, match="config.kd.relation_weight"):
    validate_config(smoke(**{"kd.relation_weight": "high"}))
  with pytest.raises(ConfigError, match="config.kd.relation_tap: 'fc' is not one of"):
    validate_config(smoke(**{"kd.relation_tap": "fc"}))
  with pytest.raises(ConfigError, match="config.searcher.kwargs: diswot_evolution: max_mutations"):
    validate_config(smoke(**{"searcher.name": "diswot_evolution", "searcher.kwargs": dict(max_mutations=0)}))


# ---- configs and the zero_cost evaluator ---------------------------------------------------------

CONFIGS = ["diswot_s1", "diswot_nb201"]


def _config(name, arg):
  import importlib
  return importlib.import_module(f"configs.{name}").get_config(arg)


def _has_scoring() -> bool:
  try:
    import jdanas.scoring  # noqa: F401
  except ImportError:
    return False
  return True


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("arg", [None, "runlocal", "runlocal,distiller"])
def test_diswot_configs_validate(name, arg):
  c = _config(name, arg)
  assert c.evaluator.name == "zero_cost" and c.evaluator.zero_cost.proxy == "diswot"
  assert c.searcher.name == "diswot_evolution" and c.constraint.max_params > 0
  assert (c.kd.relation_weight > 0) == ("distiller" in (arg or ""))
  if arg and "runlocal" in arg:
    assert c.data.name == "npz"
  if _has_scoring():
    validate_config(c)
  else:  # the branch without jdanas.scoring: one line naming the field and the missing package
    with pytest.raises(ConfigError, match=r"^config.evaluator.name: 'zero_cost' needs the jdanas.scoring package"):
      validate_config(c)
  c.evaluator.name = "short_kd"  # the check run used when jdanas.scoring is absent
  if c.data.name == "npz":
    validate_config(c)
  with pytest.raises(ValueError, match="unknown variant"):
    _config(name, "fast")


def zero_cost_smoke(proxy="diswot", batch_size=64, **changes):
  """The smoke config with the ``zero_cost`` evaluator (subsection ``evaluator.zero_cost``)."""
  import ml_collections
  c = smoke(**changes)
  c.evaluator.zero_cost = ml_collections.ConfigDict(dict(
      proxy=proxy, batch_size=batch_size, init="gaussian", relation_tap="pre_pool", teacher_init="random",
      semantic_mismatch="class_gram"))
  c.evaluator.name = "zero_cost"
  return c


def test_zero_cost_fields_name_the_field():
  pytest.importorskip("jdanas.scoring")
  with pytest.raises(ConfigError, match="config.evaluator.zero_cost.proxy: 'oracle' is not one of"):
    validate_config(zero_cost_smoke(proxy="oracle"))
  with pytest.raises(ConfigError, match="config.evaluator.zero_cost.init"):
    validate_config(_with(zero_cost_smoke(), "evaluator.zero_cost.init", "zeros"))
  with pytest.raises(ConfigError, match=r"config.evaluator.zero_cost: unknown field\(s\) \['proxi'\]"):
    validate_config(_with(zero_cost_smoke(), "evaluator.zero_cost.proxi", "diswot"))
  with pytest.raises(ConfigError, match="config.compute.score_strategy"):
    validate_config(_with(zero_cost_smoke(), "compute.score_strategy", "pmap"))


def _with(c, field, value):
  node = c
  *parents, leaf = field.split(".")
  for p in parents:
    node = node[p]
  node[leaf] = value
  return c


@pytest.mark.slow  # compiles the DisWOT scoring program: ~40 s on the loaded 2-core CPU
def test_zero_cost_evaluator_scores_through_the_pipeline_glue(tiny_data):
  pytest.importorskip("jdanas.scoring")
  import jax
  import jax.numpy as jnp
  from jdanas.evaluators.zero_cost import scoring_batch
  from jdanas.pipeline.setup import build_evaluator
  from jdanas.teachers import Teacher
  c = zero_cost_smoke(batch_size=8, **{"space.name": "s1_resnet_masked"})  # one scoring program for every student
  plan = build_plan(c)
  space = plan.space
  module = space.cost_module(space.encode("222"), tiny_data.num_classes)
  variables = module.init(jax.random.key(1), jnp.zeros((1, 8, 8, 3)), None, train=False)
  teacher = Teacher("tiny", module, variables, tiny_data.num_classes, (8, 8, 3))
  x, y = scoring_batch(plan.evaluator, tiny_data, c.seed)
  assert x.shape == (8, 8, 8, 3) and x.dtype == np.float32 and y.shape == (8,)
  evaluator = build_evaluator(plan, tiny_data, teacher, c.seed)
  assert evaluator.score_kind.kind == "zero_cost:diswot"
  assert evaluator.score_kind.units == "negated distance to the teacher"
  encs = np.stack([space.encode(n) for n in ("111", "212", "222")])
  first = evaluator(jax.random.key(0), encs)
  again = evaluator(jax.random.key(5), encs)  # the call key is ignored: scores comparable across rounds
  assert first.scores.shape == (3,) and np.isfinite(first.scores).all()
  np.testing.assert_array_equal(first.scores, again.scores)
