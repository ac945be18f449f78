"""DisWOT as a distiller: ICKD / SP losses against hand-computed values, channel mismatch, and
the KD step of the population engine with the relation terms off (bit-identical) and on."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jdanas.distill import (KD_PRESETS, KDLoss, at_loss, channel_pool, check_tap, fitnet_loss, ickd_loss, is_tap,
                            pkt_loss, rkd_loss, semantic_distance, soft_kd_loss, sp_loss, tap_feature)
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


# Every distance of jdanas.distill as a function of (student, teacher) feature maps [B, H, W, C].
DISTANCES = {
    "ickd": ickd_loss, "sp": sp_loss, "rkd": rkd_loss, "pkt": pkt_loss, "fitnet": fitnet_loss,
    "at": lambda s, t: at_loss([s], [t]),
    "kd": lambda s, t: soft_kd_loss(s.reshape(s.shape[0], -1), t.reshape(t.shape[0], -1)),
    "semantic": lambda s, t: semantic_distance(s.reshape(s.shape[0], -1), t.reshape(t.shape[0], -1)),
}


@pytest.mark.parametrize("name", sorted(DISTANCES))
@pytest.mark.parametrize("zero", ["row", "feature", "all"])
def test_distance_gradients_finite_at_zero_features(name, zero):
  """A dead example (row), a dead channel (feature) or an all-zero student: finite values and
  gradients for both arguments (a plain L2 norm has a NaN gradient at 0)."""
  rng = np.random.default_rng(0)
  s = jnp.asarray(rng.standard_normal((4, 2, 2, 3)), jnp.float32)
  t = jnp.asarray(rng.standard_normal((4, 2, 2, 3)), jnp.float32)
  s = {"row": s.at[1].set(0.0), "feature": s.at[..., 0].set(0.0), "all": jnp.zeros_like(s)}[zero]
  fn = DISTANCES[name]
  value = fn(s, t)
  assert np.isfinite(np.asarray(value)).all()
  for argnum in (0, 1):
    g = jax.grad(lambda a, b: jnp.mean(fn(a, b)), argnums=argnum)(s, t)
    assert np.isfinite(np.asarray(g)).all(), (name, zero, argnum)


@pytest.mark.parametrize("name", ["ickd", "sp", "rkd", "pkt", "fitnet", "at", "kd"])
def test_distances_are_per_example_and_zero_for_equal_inputs(name):
  rng = np.random.default_rng(1)
  s = jnp.asarray(rng.standard_normal((5, 2, 2, 3)), jnp.float32)
  t = jnp.asarray(rng.standard_normal((5, 2, 2, 3)), jnp.float32)
  value = DISTANCES[name](s, t)
  assert value.shape == (5,) and np.all(np.asarray(value) > 0)
  np.testing.assert_allclose(DISTANCES[name](t, t), np.zeros(5), atol=1e-5)


def _rkd_reference(fs, ft):
  """RepDistiller's RKDLoss (distance 25, angle 50) transcribed to numpy."""
  def pdist(e):
    sq = (e ** 2).sum(1)
    d = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * e @ e.T, 1e-12))
    np.fill_diagonal(d, 0.0)
    return d / d[d > 0].mean()

  def angles(e):
    v = e[None, :, :] - e[:, None, :]
    v = v / np.maximum(np.linalg.norm(v, axis=2, keepdims=True), 1e-12)
    return np.einsum("ijd,ikd->ijk", v, v)

  def smooth_l1(a, b):
    d = np.abs(a - b)
    return np.where(d < 1, 0.5 * d * d, d - 0.5).mean()
  return 25 * smooth_l1(pdist(fs), pdist(ft)) + 50 * smooth_l1(angles(fs), angles(ft))


def _pkt_reference(fs, ft, eps=1e-7):
  """RepDistiller's PKT cosine_similarity_loss transcribed to numpy."""
  def kernel(f):
    f = f / (np.linalg.norm(f, axis=1, keepdims=True) + eps)
    k = (f @ f.T + 1) / 2
    return k / k.sum(1, keepdims=True)
  ks, kt = kernel(fs), kernel(ft)
  return (kt * np.log((kt + eps) / (ks + eps))).mean()


def test_rkd_and_pkt_batch_means_match_repdistiller():
  rng = np.random.default_rng(2)
  fs, ft = rng.standard_normal((6, 5)), rng.standard_normal((6, 7))
  s, t = jnp.asarray(fs, jnp.float32), jnp.asarray(ft, jnp.float32)
  np.testing.assert_allclose(float(jnp.mean(rkd_loss(s, t))), _rkd_reference(fs, ft), rtol=1e-5)
  np.testing.assert_allclose(float(jnp.mean(pkt_loss(s, t))), _pkt_reference(fs, ft), rtol=1e-4)


def test_one_tap_vocabulary():
  features = {"stages": [jnp.zeros((1, 4, 4, 2)), jnp.ones((1, 2, 2, 4))], "pre_pool": jnp.ones((1, 2, 2, 4)),
              "pooled": jnp.ones((1, 4)), "logits": jnp.ones((1, 3))}
  assert all(is_tap(t) for t in ("pre_pool", "pooled", "logits", "stage1", "stage12"))
  assert not any(is_tap(t) for t in ("stage0", "stage", "pool", 3, None))
  assert tap_feature(features, "stage2") is features["stages"][1]
  with pytest.raises(ValueError, match="kd.relation_tap: 'stage0'"):
    check_tap("stage0", "kd.relation_tap")
  with pytest.raises(ValueError, match="2 stages"):
    tap_feature(features, "stage3")
  with pytest.raises(ValueError, match="loss.relation_tap"):
    KDLoss(relation_tap="pool")
