"""Hinton KD loss: hand-computed values, the explicit T^2 factor, KL vs soft CE, presets."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jdanas.distill import KD_PRESETS, KDLoss, kd_loss

STUDENT = np.asarray([[2.0, -1.0, 0.5], [0.3, 0.1, -2.0]], np.float32)
TEACHER = np.asarray([[3.0, 0.0, -1.0], [-0.5, 1.5, 0.2]], np.float32)
LABELS = np.asarray([0, 2], np.int32)


def np_log_softmax(z):
  z = np.asarray(z, np.float64)
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_reference(s, t, y, temperature, hard_weight, soft_weight, soft_form):
  """The documented formula in float64 numpy, per example."""
  ce = -np_log_softmax(s)[np.arange(len(y)), y]
  log_ps, log_pt = np_log_softmax(s / temperature), np_log_softmax(t / temperature)
  pt = np.exp(log_pt)
  d = (pt * (log_pt - log_ps)).sum(-1) if soft_form == "kl" else -(pt * log_ps).sum(-1)
  return hard_weight * ce + soft_weight * temperature ** 2 * d


def loss(s=STUDENT, t=TEACHER, y=LABELS, **kw):
  return np.asarray(kd_loss(jnp.asarray(s), None if t is None else jnp.asarray(t), jnp.asarray(y), **kw))


def test_reference_by_hand_for_one_example():
  # Example 0, T = 1, KL only: the numbers written out, independently of np_reference.
  ps = np.exp(STUDENT[0].astype(np.float64)) / np.exp(STUDENT[0].astype(np.float64)).sum()
  pt = np.exp(TEACHER[0].astype(np.float64)) / np.exp(TEACHER[0].astype(np.float64)).sum()
  kl = sum(pt[k] * np.log(pt[k] / ps[k]) for k in range(3))
  assert np_reference(STUDENT, TEACHER, LABELS, 1.0, 0.0, 1.0, "kl")[0] == pytest.approx(kl, rel=1e-12)
  assert np_reference(STUDENT, TEACHER, LABELS, 1.0, 1.0, 0.0, "kl")[0] == pytest.approx(-np.log(ps[0]))


@pytest.mark.parametrize("soft_form", ["kl", "soft_ce"])
@pytest.mark.parametrize("temperature", [4.0, 1.0])
@pytest.mark.parametrize("hard_weight, soft_weight", [(0.1, 0.9), (0.5, 0.5), (0.0, 1.0), (1.0, 0.0), (0.3, 2.0)])
def test_matches_numpy_reference(soft_form, temperature, hard_weight, soft_weight):
  kw = dict(temperature=temperature, hard_weight=hard_weight, soft_weight=soft_weight, soft_form=soft_form)
  got = loss(**kw)
  assert got.shape == (2,) and got.dtype == np.float32
  np.testing.assert_allclose(got, np_reference(STUDENT, TEACHER, LABELS, **kw), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("soft_form", ["kl", "soft_ce"])
@pytest.mark.parametrize("temperature", [2.0, 4.0, 6.0])
def test_temperature_squared_factor_is_explicit(soft_form, temperature):
  # Logits scaled by T give the same softened distributions as T = 1, so only T^2 remains.
  kw = dict(hard_weight=0.0, soft_weight=1.0, soft_form=soft_form)
  base = loss(temperature=1.0, **kw)
  scaled = loss(STUDENT * temperature, TEACHER * temperature, temperature=temperature, **kw)
  np.testing.assert_allclose(scaled, temperature ** 2 * base, rtol=1e-5)


@pytest.mark.parametrize("temperature, soft_weight", [(4.0, 0.9), (1.0, 0.5), (6.0, 2.0)])
def test_soft_ce_minus_kl_is_weighted_teacher_entropy(temperature, soft_weight):
  kw = dict(temperature=temperature, hard_weight=0.3, soft_weight=soft_weight)
  diff = loss(soft_form="soft_ce", **kw) - loss(soft_form="kl", **kw)
  log_pt = np_log_softmax(TEACHER / temperature)
  entropy = -(np.exp(log_pt) * log_pt).sum(-1)
  assert np.all(entropy > 0)
  np.testing.assert_allclose(diff, temperature ** 2 * soft_weight * entropy, rtol=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_kl_and_soft_ce_have_equal_student_gradients(temperature):
  def total(s, soft_form):
    return kd_loss(s, jnp.asarray(TEACHER), jnp.asarray(LABELS), temperature=temperature,
                   hard_weight=0.1, soft_weight=0.9, soft_form=soft_form).sum()

  g_kl = jax.grad(total)(jnp.asarray(STUDENT), "kl")
  g_ce = jax.grad(total)(jnp.asarray(STUDENT), "soft_ce")
  assert float(jnp.abs(g_kl).max()) > 1e-3
  np.testing.assert_allclose(g_kl, g_ce, rtol=1e-5, atol=1e-6)
  # The soft gradient is soft_weight * T * (p_s - p_t) at temperature T.
  g_soft = jax.grad(lambda s: kd_loss(s, jnp.asarray(TEACHER), jnp.asarray(LABELS), temperature=temperature,
                                      hard_weight=0.0, soft_weight=0.9).sum())(jnp.asarray(STUDENT))
  expected = 0.9 * temperature * (np.exp(np_log_softmax(STUDENT / temperature))
                                  - np.exp(np_log_softmax(TEACHER / temperature)))
  np.testing.assert_allclose(g_soft, expected, rtol=1e-5, atol=1e-6)


def test_no_teacher_or_zero_soft_weight_is_weighted_cross_entropy():
  ce = -np_log_softmax(STUDENT)[np.arange(2), LABELS]
  np.testing.assert_allclose(loss(t=None, hard_weight=0.7, soft_weight=0.9), 0.7 * ce, rtol=1e-6)
  np.testing.assert_allclose(loss(t=None, hard_weight=1.0, soft_weight=0.0, soft_form="soft_ce"), ce, rtol=1e-6)
  np.testing.assert_allclose(loss(hard_weight=0.4, soft_weight=0.0), 0.4 * ce, rtol=1e-6)


def test_low_precision_and_extreme_logits():
  got = kd_loss(jnp.asarray(STUDENT, jnp.bfloat16), jnp.asarray(TEACHER, jnp.bfloat16), jnp.asarray(LABELS))
  assert got.dtype == jnp.float32
  huge = loss(STUDENT * 1e4, TEACHER * 1e4, temperature=4.0)
  assert np.all(np.isfinite(huge)) and np.all(huge >= 0)


def test_identical_logits_give_zero_kl():
  np.testing.assert_allclose(loss(t=STUDENT, hard_weight=0.0, soft_weight=1.0), 0.0, atol=1e-6)


def test_presets_have_documented_values():
  # The DisWOT relation terms (semantic_weight, relation_weight, relation_tap) are off in every preset;
  # each distils the teacher's mean logits (target "mean"; the oracle preset is in test_oracle_loss.py).
  tail = ("pre_pool", "mean", "logits", "ce")
  assert dataclasses.astuple(KD_PRESETS["repdistiller"]) == (4.0, 0.1, 0.9, "kl", 0.0, 0.0) + tail
  assert dataclasses.astuple(KD_PRESETS["dass"]) == (6.0, 0.5, 0.5, "soft_ce", 0.0, 0.0) + tail
  ce = KD_PRESETS["ce"]
  assert (ce.hard_weight, ce.soft_weight) == (1.0, 0.0)
  assert not ce.uses_teacher and KD_PRESETS["repdistiller"].uses_teacher and KD_PRESETS["dass"].uses_teacher


@pytest.mark.parametrize("preset", ["repdistiller", "dass", "ce"])
def test_kdloss_call_equals_kd_loss(preset):
  cfg = KD_PRESETS[preset]
  got = np.asarray(cfg(jnp.asarray(STUDENT), jnp.asarray(TEACHER), jnp.asarray(LABELS)))
  expected = np_reference(STUDENT, TEACHER, LABELS, cfg.temperature, cfg.hard_weight, cfg.soft_weight,
                          cfg.soft_form)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_kdloss_is_hashable_by_value():
  assert hash(KDLoss()) == hash(KD_PRESETS["repdistiller"]) and KDLoss() == KD_PRESETS["repdistiller"]
  assert KDLoss(temperature=2.0) != KDLoss()


@pytest.mark.parametrize("kwargs, field", [
    (dict(soft_form="mse"), "loss.soft_form"),
    (dict(temperature=0.0), "loss.temperature"),
    (dict(temperature=-1.0), "loss.temperature"),
    (dict(hard_weight=-0.1), "loss.hard_weight"),
    (dict(soft_weight=-1.0), "loss.hard_weight/soft_weight"),
    (dict(hard_weight=0.0, soft_weight=0.0), "loss.hard_weight/soft_weight"),
])
def test_kdloss_validation_names_the_field(kwargs, field):
  with pytest.raises(ValueError, match=f"^{field}") as info:
    KDLoss(**kwargs)
  assert "\n" not in str(info.value)


def test_kd_loss_rejects_unknown_soft_form():
  with pytest.raises(ValueError, match="soft_form: 'l2'"):
    loss(soft_form="l2")
