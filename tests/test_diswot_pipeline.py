"""The DisWOT pieces in the run.py pipeline: budgets on every proposal, DisWOT KD terms, configs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from configs import default
from jdanas import costs
from jdanas.experiment import ConfigError, run, validate_config
from jdanas.spaces import get_space


def smoke(**changes):
  c = default.get_config("smoke")
  for field, value in changes.items():
    node = c
    *parents, leaf = field.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c


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
  with pytest.raises(ConfigError, match="config.kd.relation_tap: 'logits' is not one of"):
    validate_config(smoke(**{"kd.relation_tap": "logits"}))
  with pytest.raises(ConfigError, match="config.searcher.kwargs: diswot_evolution: max_mutations"):
    validate_config(smoke(**{"searcher.name": "diswot_evolution", "searcher.kwargs": dict(max_mutations=0)}))
