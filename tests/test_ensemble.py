"""Ensemble teachers: stacked vs looped forward, oracle statistics by hand, save/load, the report,
and the population engine distilling an ensemble (IE average and oracle loss)."""
from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import concrete_variables
from jdanas.distill import KD_PRESETS
from jdanas.lowering import resolve
from jdanas.models import get_model
from jdanas.spaces import get_space
from jdanas.teachers import (EnsembleModule, Teacher, ensemble_report, ensemble_teacher, evaluate, load_teacher,
                             oracle_statistics, save_teacher)
from jdanas.train import PopulationTrainer, Recipe


def _teacher(name, seed, num_classes=4, shape=(8, 8, 3)):
  module = get_model(name, num_classes)
  abstract = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1,) + shape), None, train=False))
  return Teacher(name=name, module=module, variables=concrete_variables(abstract, seed), num_classes=num_classes,
                 input_shape=shape, meta={"seed": seed})


@pytest.fixture(scope="module")
def members():
  return [_teacher("resnet8", 0), _teacher("resnet8", 1), _teacher("resnet14", 2)]


def test_forward_shapes_stacked_equals_loop(members):
  x = np.random.default_rng(0).standard_normal((5, 8, 8, 3)).astype(np.float32)
  out = {}
  for stack in (True, False):
    t = ensemble_teacher(members, stack=stack)
    assert t.name == "resnet8+resnet8+resnet14" and t.size == 3 and t.num_classes == 4
    out[stack] = jax.jit(lambda v, x, t=t: t.module.apply(v, x, None, train=False))(t.variables, x)
  assert out[True]["members"].shape == (3, 5, 4) and out[True]["logits"].shape == (5, 4)
  np.testing.assert_allclose(out[True]["members"], out[False]["members"], rtol=1e-5, atol=1e-5)
  for i, m in enumerate(members):
    np.testing.assert_allclose(out[True]["members"][i], m.logits(x), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out[True]["logits"], out[True]["members"].mean(0), rtol=1e-6)
  assert [idx for _, idx in EnsembleModule(tuple(m.module for m in members)).groups()] == [(0, 1), (2,)]
  assert ensemble_teacher(members[:2]).name == "2xresnet8"


def test_invalid_ensembles(members):
  with pytest.raises(ValueError, match="^teacher.ensemble: an ensemble needs >= 2"):
    ensemble_teacher(members[:1])
  with pytest.raises(ValueError, match="^teacher.ensemble: members disagree"):
    ensemble_teacher([members[0], _teacher("resnet8", 3, num_classes=5)])
  with pytest.raises(ValueError, match="eval mode only"):
    ensemble_teacher(members).module.apply(ensemble_teacher(members).variables, np.zeros((1, 8, 8, 3)), train=True)


def test_oracle_statistics_by_hand():
  # 3 members, 4 examples, 3 classes; arg-maxes per member: [0,1,2,0], [0,2,2,1], [0,1,1,2]; labels [0,1,2,1].
  onehot = lambda c: np.eye(3)[c] * 2.0  # noqa: E731
  z = np.stack([onehot([0, 1, 2, 0]), onehot([0, 2, 2, 1]), onehot([0, 1, 1, 2])])
  z[0, 3] += [0.0, 0.0, 0.1]  # the mean logits of example 3 favour class 2 (0.7 vs 0.67 vs 0.67)
  s = oracle_statistics(z, [0, 1, 2, 1])
  assert s["members"] == [0.75, 0.75, 0.5]
  assert s["all_right"] == 0.25 and s["none_right"] == 0.0 and s["oracle"] == 1.0
  assert s["vote"] == 0.75       # example 3: one vote each -> tie -> class 0 (wrong)
  assert s["average"] == 0.75    # example 3: class 2 (wrong)


def test_save_load_and_report(members, tiny_data, tmp_path):
  members = members[:2]
  t = ensemble_teacher(members)
  path = save_teacher(tmp_path / "ens", t)
  loaded = load_teacher(path, stack=False)
  assert loaded.name == t.name and loaded.size == 2 and loaded.module.stack is False
  assert [m.meta for m in loaded.members] == [m.meta for m in members]
  for a, b in zip(jax.tree.leaves(t.variables), jax.tree.leaves(loaded.variables)):
    assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
  report = ensemble_report(loaded, tiny_data.val, tiny_data.mean, tiny_data.std, batch_size=16)
  assert set(report) == {"members", "average", "vote", "oracle", "all_right", "none_right"}
  for acc, m in zip(report["members"], members):
    assert acc == pytest.approx(evaluate(m.module, m.variables, tiny_data.val, tiny_data.mean, tiny_data.std))
  assert report["average"] == pytest.approx(evaluate(t.module, t.variables, tiny_data.val, tiny_data.mean,
                                                     tiny_data.std))
  assert report["oracle"] >= max(report["members"]) and report["all_right"] <= min(report["members"])
  assert report["none_right"] == pytest.approx(1 - report["oracle"])


@pytest.mark.parametrize("loss", [pytest.param("repdistiller", marks=pytest.mark.slow), "oracle"])
def test_population_distils_an_ensemble(members, tiny_data, loss):
  """One teacher pass per batch gives the members' logits; both the IE average and the oracle
  loss train a student to finite values, with the member forward compiled once."""
  space = get_space("s1_resnet", depth_choices=(1,), widths=(4, 4, 4), stem=4)
  recipe = Recipe(steps=3, batch_size=16, loss=KD_PRESETS[loss], eval_batch_size=40, augment=False)
  teacher = ensemble_teacher(members[:2], stack=resolve("auto").ensemble == "vmap")
  trainer = PopulationTrainer(space, tiny_data, recipe=recipe, teacher=teacher, strategy="loop")
  result = trainer.train(jax.random.key(0), [np.zeros(space.num_decisions, np.int32)])
  assert np.isfinite(result.accuracy).all() and np.isfinite(result.loss).all()
  assert trainer.trace_counts[("batch",)] == 1


def test_config_teacher_fields(members, tmp_path):
  from conftest import smoke_config
  from jdanas.pipeline.config import ConfigError, build_plan, teacher_size
  one = save_teacher(tmp_path / "one", members[0])
  two = save_teacher(tmp_path / "two", members[1])
  assert teacher_size(smoke_config(**{"teacher.ensemble": 3}).teacher) == 3
  assert teacher_size(smoke_config(**{"teacher.paths": [str(one), str(two)]}).teacher) == 2
  assert build_plan(smoke_config(**{"teacher.paths": [str(one), str(two)]})).teacher_train is None
  ens = save_teacher(tmp_path / "ens", ensemble_teacher(members[:2]))
  assert teacher_size(smoke_config(**{"teacher.path": str(ens)}).teacher) == 2
  for changes, field in [({"teacher.paths": [str(one)]}, "config.teacher.paths: an ensemble needs >= 2"),
                         ({"teacher.paths": [str(one), str(tmp_path)]}, "config.teacher.paths: no teacher.json"),
                         ({"teacher.paths": [str(one), str(two)], "teacher.path": str(one)}, "config.teacher.paths"),
                         ({"teacher.ensemble": 2, "kd.relation_weight": 1.0}, "config.kd.relation_weight")]:
    with pytest.raises(ConfigError, match="^" + field):
      build_plan(smoke_config(**changes))


def test_cached_teacher_of_another_size_is_an_error(members, tmp_path, tiny_data):
  from jdanas.pipeline.config import ConfigError, build_plan
  from jdanas.pipeline.setup import get_teacher
  from conftest import smoke_config
  save_teacher(tmp_path / "teacher", members[0])
  config = smoke_config(**{"teacher.ensemble": 2})
  with pytest.raises(ConfigError, match="^config.teacher.ensemble: 2, but the teacher cached in"):
    get_teacher(config, build_plan(config), tiny_data, tmp_path, jax.random.key(0))
