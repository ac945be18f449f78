"""DisWOT as a distiller: ICKD / SP losses against hand-computed values, channel mismatch, and
the KD step of the population engine with the relation terms off (bit-identical) and on."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jdanas.distill import KD_PRESETS, KDLoss, channel_pool, ickd_loss, sp_loss
from jdanas.distill.relations import channel_pool_matrix
from jdanas.spaces import get_space
from jdanas.train import PopulationTrainer, Recipe

R2 = np.sqrt(2.0)


def test_sp_loss_hand_computed():
  # G_s = I; G_t = all ones -> rows (1/sqrt2, 1/sqrt2). Row i: (1 - 1/sqrt2)^2 + 1/2 = 2 - sqrt2.
  s = jnp.asarray([[1.0, 0.0], [0.0, 1.0]])
  t = jnp.asarray([[1.0, 0.0], [1.0, 0.0]])
  np.testing.assert_allclose(sp_loss(s, t), [(2 - R2) / 2] * 2, rtol=1e-6)
  # The batch mean is SP's ||G_s - G_t||_F^2 / B^2.
  assert float(jnp.mean(sp_loss(s, t))) == pytest.approx(2 * (2 - R2) / 4, rel=1e-6)
  assert np.all(np.asarray(sp_loss(t, t)) == 0)


def test_ickd_loss_hand_computed():
  # One example, 2 positions x 2 channels. F_s = I -> G_s = I; F_t = ones -> G_t rows (1/sqrt2, 1/sqrt2).
  s = jnp.asarray([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # [B=1, H=2, W=1, C=2]
  t = jnp.ones((1, 2, 1, 2))
  np.testing.assert_allclose(ickd_loss(s, t), [2 * (2 - R2) / 2], rtol=1e-6)
  # Scale invariance (rows are normalised) and zero for identical features.
  np.testing.assert_allclose(ickd_loss(3.0 * s, t), ickd_loss(s, t), rtol=1e-6)
  assert float(ickd_loss(t, t)[0]) == 0.0


def test_channel_pool_is_area_averaging():
  np.testing.assert_allclose(channel_pool_matrix(4, 2), [[0.5, 0], [0.5, 0], [0, 0.5], [0, 0.5]])
  np.testing.assert_allclose(channel_pool_matrix(3, 2), [[2 / 3, 0], [1 / 3, 1 / 3], [0, 2 / 3]], rtol=1e-6)
  f = jnp.arange(8.0).reshape(2, 4)
  np.testing.assert_allclose(channel_pool(f, 2), [[0.5, 2.5], [4.5, 6.5]])
  with pytest.raises(ValueError, match="c_out <= c_in"):
    channel_pool_matrix(2, 3)


def test_channel_mismatch_policy():
  rng = np.random.default_rng(0)
  f = jnp.asarray(rng.standard_normal((3, 4, 4, 2)), jnp.float32)
  doubled = jnp.repeat(f, 2, axis=-1)  # channels [a, a, b, b]: pools back to [a, b]
  np.testing.assert_allclose(ickd_loss(f, doubled), np.zeros(3), atol=1e-6)
  np.testing.assert_allclose(ickd_loss(doubled, f), np.zeros(3), atol=1e-6)
  # SP's batch Gram ignores channel counts and spatial sizes: tiling scales G, normalised away.
  tiled = jnp.tile(f, (1, 2, 2, 3))
  np.testing.assert_allclose(sp_loss(f, tiled), np.zeros(3), atol=1e-6)
  assert ickd_loss(f, jnp.asarray(rng.standard_normal((3, 2, 2, 5)), jnp.float32)).shape == (3,)


def test_kdloss_with_zero_weights_is_the_logit_loss():
  rng = np.random.default_rng(1)
  feats = lambda: {"logits": jnp.asarray(rng.standard_normal((4, 3)), jnp.float32),
                   "pre_pool": jnp.asarray(rng.standard_normal((4, 2, 2, 5)), jnp.float32),
                   "pooled": jnp.zeros((4, 5)), "stages": ()}
  s, t, y = feats(), feats(), jnp.asarray([0, 1, 2, 0])
  base = KD_PRESETS["repdistiller"]
  off = dataclasses.replace(base, relation_tap="pooled")
  assert not off.uses_features and off.teacher_targets(t) is t["logits"]
  np.testing.assert_array_equal(off.from_features(s, off.teacher_targets(t), y), base(s["logits"], t["logits"], y))
  on = dataclasses.replace(base, semantic_weight=2.0, relation_weight=3.0)
  targets = on.teacher_targets(t)
  assert set(targets) == {"logits", "feature"}
  assert dataclasses.replace(on, relation_tap="stage1").teacher_targets({**t, "stages": (t["pre_pool"],)})[
      "feature"] is t["pre_pool"]
  expected = (base(s["logits"], t["logits"], y) + 2.0 * ickd_loss(s["pre_pool"], t["pre_pool"])
              + 3.0 * sp_loss(s["pre_pool"], t["pre_pool"]))
  np.testing.assert_allclose(on.from_features(s, targets, y), expected, rtol=1e-6)
  for bad, match in [(dict(semantic_weight=-1.0), "semantic_weight"), (dict(relation_tap="stage0"), "relation_tap")]:
    with pytest.raises(ValueError, match=match):
      dataclasses.replace(base, **bad)


# ---- the engine's KD step ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def setup(tiny_data):
  from jdanas.teachers import Teacher
  space = get_space("s1_resnet", depth_choices=(1, 2), widths=(4, 8, 8), stem=4)
  module = space.build((2, 2, 2), tiny_data.num_classes)  # the teacher: wider last stage than none
  variables = module.init(jax.random.key(9), jnp.zeros((1, 8, 8, 3)), None, train=False)
  teacher = Teacher("tiny", module, variables, tiny_data.num_classes, (8, 8, 3))
  return space, teacher


def _train(space, teacher, data, loss):
  recipe = Recipe(steps=3, batch_size=16, loss=loss, learning_rate=0.1, eval_batch_size=16)
  trainer = PopulationTrainer(space, data, recipe=recipe, teacher=teacher, strategy="loop")
  result = trainer.train(jax.random.key(0), [space.encode("121")])
  return trainer, result, jax.tree.leaves(jax.device_get(result.variables(0)))


def test_engine_zero_weights_bit_identical_nonzero_changes_training(setup, tiny_data):
  space, teacher = setup
  base = KD_PRESETS["repdistiller"]
  _, ref, ref_params = _train(space, teacher, tiny_data, base)
  _, off, off_params = _train(space, teacher, tiny_data, dataclasses.replace(base, relation_tap="stage3"))
  np.testing.assert_array_equal(off.loss, ref.loss)
  for a, b in zip(ref_params, off_params):
    np.testing.assert_array_equal(a, b)
  on_loss = dataclasses.replace(base, semantic_weight=5.0, relation_weight=5.0)
  trainer, on, on_params = _train(space, teacher, tiny_data, on_loss)
  assert np.isfinite(on.loss).all() and on.loss[0] > ref.loss[0]
  assert any(not np.array_equal(a, b) for a, b in zip(ref_params, on_params))
  # The teacher's tap comes from the one shared teacher pass of the batch program.
  _, _, t = trainer._build_batch_fn()(*trainer._batch_args(*jax.random.split(jax.random.key(0)), 0))
  assert set(t) == {"logits", "feature"} and t["feature"].shape == (16, 2, 2, 8)


def test_gradients_finite_for_dead_channels():
  s = jnp.zeros((2, 2, 2, 3)).at[..., 0].set(1.0)  # channels 1 and 2 are all zero
  t = jnp.ones((2, 2, 2, 3))
  for fn in (ickd_loss, sp_loss):
    g = jax.grad(lambda f: jnp.mean(fn(f, t)))(s)
    assert np.isfinite(np.asarray(g)).all()
  assert np.isfinite(np.asarray(jax.grad(lambda f: jnp.mean(sp_loss(f, t)))(jnp.zeros((2, 3))))).all()
