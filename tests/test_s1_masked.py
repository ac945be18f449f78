"""The masked DisWOT S1 ResNet space: equal to the per-student networks, exact costs, one program."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import concrete_variables
from jdanas.costs import model_costs
from jdanas.distill import KD_PRESETS
from jdanas.spaces import get_space
from jdanas.train import PopulationTrainer, Recipe

KW = dict(depth_choices=(1, 2, 3), widths=(4, 8, 8), stem=4)
NAMES = ("111", "321", "213", "333")


@functools.cache
def spaces():
  return get_space("s1_resnet_masked", **KW), get_space("s1_resnet", **KW)


@functools.cache
def masked_variables():
  masked, _ = spaces()
  module = masked.build((), 5)
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), jnp.zeros(3, jnp.int32)))
  return concrete_variables(shapes, seed=1)


def student_variables(variables, depths):
  """The per-student subset of the masked variables (blocks beyond each stage's depth dropped)."""
  def keep(name):
    if not name.startswith("stage"):
      return True
    stage, block = name.split("_block")
    return int(block) < depths[int(stage[5:]) - 1]
  return {col: {k: v for k, v in tree.items() if keep(k)} for col, tree in variables.items()}


@functools.cache
def masked_forward(train: bool):
  module = spaces()[0].build((), 5)
  if train:
    return jax.jit(lambda v, x, e: module.apply(v, x, e, train=True, mutable=["batch_stats"])[0]["logits"])
  return jax.jit(lambda v, x, e: module.apply(v, x, e, train=False)["logits"])


@pytest.mark.parametrize("train", [False, True])
def test_masked_forward_equals_per_student_forward(train):
  masked, plain = spaces()
  variables = masked_variables()
  x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 8, 8, 3)), jnp.float32)
  for name in NAMES:
    enc = masked.encode(name)
    got = masked_forward(train)(variables, x, jnp.asarray(enc))  # one program for every student
    module = plain.build(plain.signature(enc), 5)
    sub = student_variables(variables, plain.depths(enc))
    if train:
      want = module.apply(sub, x, None, train=True, mutable=["batch_stats"])[0]["logits"]
    else:
      want = module.apply(sub, x, None, train=False)["logits"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    static = masked.specialize(enc, 5).apply(variables, x, None, train=False)["logits"]
    if not train:
      np.testing.assert_allclose(static, want, rtol=1e-5, atol=1e-5)


def test_signature_is_shared_and_costs_are_the_exact_students():
  masked, plain = spaces()
  assert {masked.signature(masked.encode(n)) for n in NAMES} == {()}
  for name in ("111", "333"):
    a = model_costs(masked, masked.encode(name), num_classes=5, input_shape=(8, 8, 3), flops=False)
    b = model_costs(plain, plain.encode(name), num_classes=5, input_shape=(8, 8, 3), flops=False)
    assert a.params == b.params
  deep = model_costs(masked, masked.encode("333"), num_classes=5, input_shape=(8, 8, 3), flops=False)
  shallow = model_costs(masked, masked.encode("111"), num_classes=5, input_shape=(8, 8, 3), flops=False)
  assert shallow.params < deep.params
  with pytest.raises(ValueError, match="depth_choices"):
    get_space("s1_resnet_masked", depth_choices=(0, 1))
  assert plain.specialize(plain.encode("111"), 5) is None and not plain.can_specialize


def test_all_students_train_in_one_compiled_program(tiny_data, key):
  masked, _ = spaces()
  recipe = Recipe(steps=2, batch_size=16, loss=KD_PRESETS["ce"], learning_rate=0.05, eval_batch_size=16)
  # "loop": one P=1 program per signature, and every masked student has the signature ().
  trainer = PopulationTrainer(masked, tiny_data, recipe=recipe, strategy="loop", specialize=False)
  result = trainer.train(key, [masked.encode(n) for n in NAMES])
  assert result.num_compilations == 1 and np.isfinite(result.accuracy).all()


_CHEAP = ("snip", "gradnorm", "fisher", "synflow", "naswot", "zen", "diswot", "kd", "fitnet", "at", "sp", "rkd",
          "pkt", "params")


@pytest.mark.parametrize("names", [pytest.param(_CHEAP, id="cheap", marks=pytest.mark.slow),
                                   pytest.param(("grasp", "jacob_cov"), id="heavy", marks=pytest.mark.slow)])
def test_masked_scores_equal_per_student_scores(names):
  """Every proxy of a masked S1 student equals its per-student module's: blocks beyond a stage's
  depth (computed, then discarded by ``where``) never enter a score (``path_weight``)."""
  from jdanas.models.resnet import CifarResNet
  from jdanas.scoring import score_population
  from jdanas.scoring.init import abstract_variables
  from jdanas.teachers import Teacher
  masked, per_student = spaces()
  rng = np.random.default_rng(3)
  x, y = rng.standard_normal((8, 8, 8, 3)).astype(np.float32), rng.integers(0, 5, 8).astype(np.int32)
  module = CifarResNet(depths=(1, 1, 1), widths=(2, 4, 8), stem=4, num_classes=5)
  teacher = Teacher(name="tiny8", module=module, variables=abstract_variables(module, (8, 8, 3), None),
                    num_classes=5, input_shape=(8, 8, 3))
  encs = np.stack([masked.encode(n) for n in NAMES[1:]])
  for init in ("flax", "gaussian"):
    a = score_population(jax.random.key(0), masked, encs, x, y, proxies=names, num_classes=5, teacher=teacher,
                         init=init)
    b = score_population(jax.random.key(0), per_student, encs, x, y, proxies=names, num_classes=5, teacher=teacher,
                         init=init)
    for name in names:
      np.testing.assert_allclose(a[name], b[name], rtol=2e-4, err_msg=f"{name} ({init})")
