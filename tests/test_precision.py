"""Mixed precision (``compute.precision = "bf16"``): bfloat16 compute, float32 parameters,
optimizer state, BatchNorm statistics and losses; finite results; validated config."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jdanas.distill import KD_PRESETS
from jdanas.spaces import get_space
from jdanas.teachers import Teacher
from jdanas.train import PopulationTrainer, Recipe
from jdanas.train.population import _single_step, apply_in_precision

CELLS = ("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|",
         "|nor_conv_1x1~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_3x3~1|none~2|")


@pytest.fixture(scope="module")
def space():
  return get_space("nb201_masked", channels=4, num_cells=1)


@pytest.fixture(scope="module")
def teacher(space, tiny_data):
  module = space.cost_module(space.encode(CELLS[0]), tiny_data.num_classes)
  variables = module.init(jax.random.key(9), jnp.zeros((1, 8, 8, 3)), None, train=False)
  return Teacher("nb201-cell", module, variables, tiny_data.num_classes, (8, 8, 3))


def _floating_dtypes(tree) -> set:
  return {str(a.dtype) for a in jax.tree.leaves(tree) if jnp.issubdtype(a.dtype, jnp.floating)}


@pytest.mark.slow
def test_bf16_trains_with_float32_state_and_finite_results(space, tiny_data, teacher, key):
  recipe = Recipe(steps=3, batch_size=16, loss=KD_PRESETS["repdistiller"], optimizer="adam", learning_rate=1e-3,
                  eval_batch_size=16)
  trainer = PopulationTrainer(space, tiny_data, recipe=recipe, teacher=teacher, strategy="unroll", specialize=False,
                              precision="bf16")
  result = trainer.train(key, [space.encode(c) for c in CELLS])
  assert np.all(np.isfinite(result.accuracy)) and np.all(np.isfinite(result.loss))
  state = result.state(0)
  assert _floating_dtypes(state.params) == {"float32"}
  assert _floating_dtypes(state.batch_stats) == {"float32"}
  assert _floating_dtypes(state.opt_state) == {"float32"}
  assert state.loss.dtype == jnp.float32


@pytest.mark.slow
def test_bf16_step_computes_convolutions_in_bf16_and_the_loss_in_float32(space, tiny_data, teacher, key):
  recipe = Recipe(steps=1, batch_size=8, loss=KD_PRESETS["repdistiller"], eval_batch_size=8)
  trainer = PopulationTrainer(space, tiny_data, recipe=recipe, teacher=teacher, strategy="loop", specialize=False,
                              precision="bf16")
  enc = jnp.asarray(space.encode(CELLS[0]))
  sig = space.signature(np.asarray(enc))
  state = jax.eval_shape(trainer._build_init_fn(sig), key, enc, jnp.float32(1))
  module = trainer._modules(trainer.plan([np.asarray(enc)])[0])[0]
  x = jnp.zeros((8, 8, 8, 3), jnp.float32)
  y = jnp.zeros((8,), jnp.int32)
  t = jnp.zeros((8, tiny_data.num_classes), jnp.float32)
  for precision, conv_dtype in (("bf16", "bf16"), ("fp32", "f32")):
    text = str(jax.make_jaxpr(lambda s: _single_step(module, trainer.tx, recipe.loss, s, x, y, t, precision))(state))
    # forward and backward convolutions, by the dtype of their results (= of their operands)
    dtypes = re.findall(r"(\w+)\[[\d,]*\] = conv_general_dilated", text)
    assert dtypes and set(dtypes) == {conv_dtype}, (precision, set(dtypes))
    out = jax.eval_shape(lambda s: _single_step(module, trainer.tx, recipe.loss, s, x, y, t, precision), state)
    assert out.loss.dtype == jnp.float32 and _floating_dtypes(out.params) == {"float32"}


def test_apply_in_precision_returns_float32(space, tiny_data, teacher):
  x = jnp.ones((2, 8, 8, 3))
  out = jax.jit(lambda v, x: apply_in_precision(teacher.module, v, x, None, precision="bf16", train=False))(
      teacher.variables, x)
  ref = jax.jit(lambda v, x: teacher.module.apply(v, x, None, train=False))(teacher.variables, x)
  assert out["logits"].dtype == jnp.float32 and np.all(np.isfinite(out["logits"]))
  np.testing.assert_allclose(out["logits"], ref["logits"], atol=0.1, rtol=0.1)  # bfloat16: ~3 significant digits
  with pytest.raises(ValueError, match="precision"):
    apply_in_precision(teacher.module, teacher.variables, x, None, precision="fp16", train=False)


def test_precision_is_validated(space, tiny_data):
  with pytest.raises(ValueError, match="^precision: 'fp16'"):
    PopulationTrainer(space, tiny_data, recipe=Recipe(batch_size=8, loss=KD_PRESETS["ce"]), precision="fp16")
  from conftest import smoke_config
  from jdanas.pipeline import ConfigError, build_plan
  assert build_plan(smoke_config(**{"compute.precision": "bf16"})).compute.precision == "bf16"
  with pytest.raises(ConfigError, match=r"^config\.compute\.precision: 'fp16' is not one of fp32, bf16$"):
    build_plan(smoke_config(**{"compute.precision": "fp16"}))
