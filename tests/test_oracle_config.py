"""configs/oracle_kd_cifar.py: every variant is a valid plan of the Oracle-KD pipeline (ensemble
teacher, KDAS supernet, reinforce + one_shot, oracle loss, the backbone as a baseline); the smoke
variant runs end to end (slow)."""
from __future__ import annotations

import json
import os

import pytest

from conftest import require_file
from configs import oracle_kd_cifar
from jdanas import costs
from jdanas.models import get_model
from jdanas.pipeline.config import build_plan, teacher_size
from jdanas.spaces import get_space


@pytest.mark.parametrize("variant", [None, "runlocal", "gpu", "smoke"])
def test_variants_are_oracle_kd_plans(variant, data_dir):
  c = oracle_kd_cifar.get_config(variant)
  if variant == "runlocal":  # the shared CIFAR-10 npz (JDANAS_DATA_DIR)
    require_file(os.path.join(data_dir, c.data.path))
    c.data.data_dir = str(data_dir)
  plan = build_plan(c)
  assert teacher_size(c.teacher) >= 2 and c.kd.loss == "oracle"
  assert c.space.name == "kdas_masked" and plan.space.masked and c.searcher.name == "reinforce" and c.evaluator.name == "one_shot"
  # The one baseline is the backbone: every add-on the identity, no extra connections.
  (backbone,) = plan.baselines
  n = len(c.space.kwargs["positions"])
  assert backbone == "|".join(["identity:00"] * n) and plan.space.decode(plan.space.encode(backbone)) == backbone
  assert {"data": "cifar100", "gpu": "cifar100", "runlocal": "npz", "smoke": "digits"}[variant or "data"] == c.data.name


def test_runlocal_backbone_is_the_plain_cifar_resnet():
  """With identity add-ons the exact KDAS network has exactly the parameters of the CIFAR ResNet
  with the space's depths (ResNet-8 with two blocks in stage 3 for ``runlocal``)."""
  c = oracle_kd_cifar.get_config("runlocal")
  space = get_space("kdas", **c.space.kwargs)
  enc = space.encode(c.final.baselines[0])
  kdas_params = costs.model_costs(space, enc, num_classes=10, input_shape=(32, 32, 3)).params
  import jax
  import jax.numpy as jnp
  module = get_model(c.space.kwargs["backbone"], 10).clone(depths=space.depths)
  assert space.depths == (1, 1, 2) and module.widths == space.widths and module.stem == space.stem
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), None, train=False))
  zoo_params = sum(int(x.size) for x in jax.tree.leaves(shapes["params"]))
  assert kdas_params == zoo_params


def test_the_memory_penalty_is_a_config_switch():
  """Off by default; latency_model=params turns the one-shot score into accuracy x min(1, T/params)."""
  c = oracle_kd_cifar.get_config("smoke")
  assert build_plan(c).evaluator.reward is None
  c.evaluator.reward.update(latency_model="params", target=2e5)
  assert build_plan(c).evaluator.reward == dict(latency_model="params", target=2e5, alpha=0.0, beta=-1.0, batch_size=1,
                                      repeats=20)


def test_the_none_right_fallback_is_a_config_switch():
  """kd.oracle_none_right: the paper's CE by default; 'average' (a jdanas variant) reaches the loss."""
  c = oracle_kd_cifar.get_config("smoke")
  assert build_plan(c).loss.oracle_none_right == "ce"
  c.kd.oracle_none_right = "average"
  loss = build_plan(c).loss
  assert (loss.target, loss.oracle_none_right) == ("oracle", "average")


def test_unknown_variant_is_refused():
  with pytest.raises(ValueError, match="unknown variant 'quick'"):
    oracle_kd_cifar.get_config("quick")


@pytest.mark.slow
def test_smoke_runs_end_to_end(tmp_path):
  from jdanas.pipeline import run
  report = run(oracle_kd_cifar.get_config("smoke"), tmp_path)
  ens = report["teacher"]["ensemble"]
  assert len(ens["members"]) == 2 and 0.0 <= ens["all_right"] <= ens["oracle"] <= 1.0
  (backbone,) = report["baselines"]
  assert backbone["arch"] == "identity:00|identity:00" and backbone["kd"]["test_accuracy"] is not None
  assert report["final"]["kd"]["test_accuracy"] is not None and (tmp_path / report["export"]).is_dir()
  assert json.loads((tmp_path / "report.json").read_text())["final"]["arch"] == report["final"]["arch"]
