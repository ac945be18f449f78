"""Evaluator contract over the registry (jdanas.evaluators.EVALUATORS), as tests/test_searchers.py is
over SEARCHERS: every registered evaluator builds from a config through the registry, returns an
``Evaluation`` of ``float32[Q]`` scores with its declared score kind, reproduces a call after
``restore(state())``, describes itself as JSON, and names ``config.evaluator.<name>.<field>`` on a bad
field. A new evaluator without a tiny case here fails :func:`test_every_registered_evaluator_has_a_case`.
"""
from __future__ import annotations

import json
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from conftest import concrete_variables, smoke_config
from jdanas import evaluators
from jdanas.evaluators import EVALUATORS, BuildContext, Evaluation, Evaluator, EvaluatorBase, ScoreKind
from jdanas.models import get_model
from jdanas.pipeline.config import CHOICES, ConfigError, build_plan
from jdanas.spaces import get_space
from jdanas.teachers import Teacher

Q = 3
KDAS = dict(backbone="resnet8", depths=(2, 1, 2), widths=(4, 4, 8), stem=4, positions=(3,))
DASS = dict(stage_widths=(4, 8, 8, 8), max_depth=2, multipliers=(0.5, 1.0), image_size=8)


def _zoo_teacher(num_classes: int) -> Teacher:
  module = get_model("resnet8", num_classes)
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), None, train=False))
  return Teacher(name="resnet8", module=module, variables=concrete_variables(shapes), num_classes=num_classes,
                 input_shape=(8, 8, 3))


def _sample(space, n=Q, seed=0) -> np.ndarray:
  return np.asarray(jax.vmap(space.sample)(jax.random.split(jax.random.key(seed), n)), np.int32)


def _nb201_table(tmp) -> str:
  """A 16-cell NB201 table (the columns NB201Table reads), accuracies in percent."""
  space = get_space("nb201")
  encs = np.unique(_sample(space, 32, seed=1), axis=0)[:16]
  rows = ["index,arch_str,cifar10_valid_acc"] + [f"{i},{space.decode(e)},{50 + 2.5 * i}" for i, e in enumerate(encs)]
  path = tmp / "nb201_tiny.csv"
  path.write_text("\n".join(rows) + "\n")
  return str(path)


def _predictor(tmp, teacher: Teacher) -> str:
  """A (not meta-trained) DaSS predictor saved the way a meta_train job saves one (tests/test_dass_pipeline.py)."""
  from jdanas import meta
  from jdanas.spaces.dass import encoding_features
  space = get_space("dass_resnet", **DASS)
  noise = meta.noise_input(jax.random.key(0), space, 2)
  t_map = meta.embed_teacher(space, teacher.variables, noise, num_classes=teacher.num_classes)
  arch = encoding_features(space, jnp.asarray(space.teacher_encoding))
  example = meta.Task(maps=t_map[None], arch=arch[None], labels=jnp.zeros(1), teacher_map=t_map, teacher_arch=arch,
                      teacher_label=jnp.float32(80.0))
  model, config = meta.DassPredictor(hidden_channels=4, out_channels=8, h_dim=8), meta.MetaConfig(target="relative")
  state = meta.meta_init(jax.random.key(1), model, example, config)
  path = tmp / "predictor"
  meta.save_predictor(path, model, config, state, meta={
      "space": {"name": "dass_resnet", "kwargs": json.loads(json.dumps(DASS))}, "num_noise": 2, "noise_seed": 0,
      "remap": "copy_paste_first", "map_shape": list(t_map.shape)})
  return str(path)


def _dass_teacher(num_classes: int) -> Teacher:
  space = get_space("dass_resnet", **DASS)
  module = space.teacher(num_classes)
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), train=False))
  return Teacher(name="dass_resnet_teacher", module=module, variables=concrete_variables(shapes),
                 num_classes=num_classes, input_shape=(8, 8, 3),
                 meta={"space": {"name": "dass_resnet", "kwargs": json.loads(json.dumps(DASS))}})


# name -> (config, teacher, the Q encodings to score, the declared score kind); each builds its inputs in tmp
def _short_kd(tmp, data):
  c = smoke_config(**{"evaluator.short_kd.steps": 2, "evaluator.short_kd.batch_size": 16})
  return c, _zoo_teacher(data.num_classes), _sample(get_space(c.space.name, **c.space.kwargs)), "val_accuracy"


def _tabular(tmp, data):
  table = _nb201_table(tmp)
  c = smoke_config(**{"space": dict(name="nb201", kwargs={}), "evaluator.name": "tabular",
                      "evaluator.tabular": dict(table=table, column="cifar10_valid_acc")})
  from jdanas.benchmarks.nb201 import NB201Table
  return c, _zoo_teacher(data.num_classes), NB201Table(table).encodings[:Q], "tabular:cifar10_valid_acc"


def _zero_cost(tmp, data):
  c = smoke_config(**{"space.name": "s1_resnet_masked", "evaluator.name": "zero_cost"})
  c.evaluator.zero_cost = ml_collections.ConfigDict(dict(proxy="naswot", batch_size=8))
  return c, _zoo_teacher(data.num_classes), _sample(get_space(c.space.name, **c.space.kwargs)), "zero_cost:naswot"


def _one_shot(tmp, data):
  c = smoke_config(**{"space": dict(name="kdas_masked", kwargs=KDAS), "evaluator.name": "one_shot",
                      "evaluator.one_shot.steps": 2, "evaluator.one_shot.batch_size": 16,
                      "evaluator.one_shot.val_examples": 20})
  return c, _zoo_teacher(data.num_classes), _sample(get_space("kdas_masked", **KDAS)), "one_shot_val_accuracy"


def _predictor_case(tmp, data):
  from configs import dass_search
  teacher = _dass_teacher(data.num_classes)
  c = dass_search.get_config()  # full variant: its TFDS data is only named, not loaded, by build_plan
  c.space.kwargs = dict(DASS)
  c.evaluator.predictor.update(path=_predictor(tmp, teacher), chunk=2)
  return c, teacher, _sample(get_space("dass_resnet", **DASS)), "predicted_kd_accuracy"


CASES = {"short_kd": _short_kd, "tabular": _tabular, "zero_cost": _zero_cost, "one_shot": _one_shot,
         "predictor": _predictor_case}
SLOW = {"short_kd", "one_shot", "predictor"}  # over 20 s here: a training or embedding program compiles


@pytest.fixture(params=[pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in EVALUATORS])
def name(request):
  return request.param


@pytest.fixture
def case(name, tmp_path, tiny_data):
  config, teacher, encodings, kind = CASES[name](tmp_path, tiny_data)
  return config, teacher, encodings, kind


def test_every_registered_evaluator_has_a_case_a_section_and_its_choices_listed():
  assert set(CASES) == set(EVALUATORS)
  assert tuple(CHOICES["evaluator.name"]()) == tuple(EVALUATORS)
  for name, spec in EVALUATORS.items():
    assert spec.name == name and spec.section.name == f"evaluator.{name}"
    for field, allowed in spec.section.choices().items():
      assert field in CHOICES and tuple(CHOICES[field]()) == tuple(allowed())
    assert callable(spec.settings) and callable(spec.build)
  assert "evaluator.reward.latency_model" in CHOICES
  assert {n for n, s in EVALUATORS.items() if s.accuracy} == {"short_kd", "tabular", "one_shot"}


def test_importing_the_contract_imports_no_evaluator():
  """``jdanas.evaluators`` (the contract) imports neither the registry nor the evaluators' dependencies."""
  import subprocess
  code = ("import sys, jdanas.evaluators; print(sorted(m for m in ('jdanas.evaluators.registry', "
          "'jdanas.train.oneshot', 'jdanas.scoring', 'jdanas.meta', 'jdanas.pipeline') if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
  assert out.strip() == "[]"


def test_builds_scores_restores_and_describes(name, case, tiny_data):
  config, teacher, encodings, kind = case
  plan = build_plan(config)
  assert plan.evaluator.name == name and plan.evaluator.reward is None
  ev = evaluators.build(BuildContext(plan=plan, data=tiny_data, teacher=teacher, seed=0, teacher_val=0.5))
  assert isinstance(ev, Evaluator) and ev.name == name
  assert isinstance(ev.score_kind, ScoreKind) and ev.score_kind.kind == kind and ev.score_kind.higher_is_better
  saved = ev.state()
  saved = None if saved is None else jax.tree.map(np.array, saved)  # a host copy (a step may donate its buffers)
  first = ev(jax.random.key(1), encodings)
  assert isinstance(first, Evaluation)
  assert first.scores.shape == (Q,) and first.scores.dtype == np.float32 and np.isfinite(first.scores).all()
  ev.restore(saved)
  again = ev(jax.random.key(1), encodings)
  np.testing.assert_array_equal(again.scores, first.scores)
  json.dumps(ev.describe())
  ev.resume([])  # the search loop calls it unconditionally on a resumed run


@pytest.mark.parametrize("name", list(EVALUATORS))
def test_a_bad_field_names_it(name, tmp_path, tiny_data):
  """Every field of the evaluator's section refuses a value of the wrong kind with its own name (before any
  compute: build_plan only), and an unknown field names the section."""
  config, *_ = CASES[name](tmp_path, tiny_data)
  build_plan(config)  # the case itself is valid
  section = EVALUATORS[name].section
  wrong = {"str": 3, "int": "x", "number": "x", "bool": "maybe", "list": 3, "any": object()}
  for field, f in section.fields.items():
    bad = config.copy_and_resolve_references()
    with bad.ignore_type():
      bad.evaluator[name][field] = wrong[f.kind]
    with pytest.raises(ConfigError, match=rf"^config\.evaluator\.{name}\.{field}: "):
      build_plan(bad)
  bad = config.copy_and_resolve_references()
  bad.evaluator[name]["no_such_field"] = 1
  with pytest.raises(ConfigError, match=rf"^config\.evaluator\.{name}: unknown field\(s\) \['no_such_field'\]"):
    build_plan(bad)


def test_a_stateless_evaluator_refuses_a_state():
  class Constant(EvaluatorBase):
    name = "constant"
    score_kind = ScoreKind("constant", "one")

  ev = Constant()
  assert ev.state() is None and ev.describe() is None
  ev.restore(None)
  with pytest.raises(ValueError, match="stateless"):
    ev.restore({"step": 1})
