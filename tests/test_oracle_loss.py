"""Oracle KD loss L_OD (Kang, Mun & Han, AAAI 2020): a hand-computed example with the all-right,
one-right and all-wrong cases, both aggregations, the KDLoss/preset wiring, finite gradients."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jdanas.distill import KD_PRESETS, KDLoss, kd_loss, oracle_kd_loss

# 3 examples, K = 3 classes, M = 2 members. Labels 0, 1, 2.
STUDENT = np.asarray([[1.0, 0.0, -1.0], [0.2, 0.4, -0.3], [-1.0, 2.0, 0.5]], np.float32)
MEMBERS = np.asarray([
    [[3.0, 0.0, 1.0], [2.0, 1.0, 0.0], [0.0, 3.0, 1.0]],    # member 0: right, wrong, wrong
    [[2.0, 1.5, -1.0], [0.0, 2.5, 1.0], [2.0, 0.0, 1.0]],   # member 1: right, right, wrong
], np.float32)
LABELS = np.asarray([0, 1, 2], np.int32)
T, HARD, SOFT = 2.0, 0.1, 0.9


def _log_softmax(z):
  z = np.asarray(z, np.float64)
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _kd(s, log_pt, y):
  ce = -_log_softmax(s)[y]
  pt = np.exp(log_pt)
  return HARD * ce + SOFT * T * T * float((pt * (log_pt - _log_softmax(s / T))).sum())


def test_hand_computed_logits_aggregation():
  expected = [
      _kd(STUDENT[0], _log_softmax((MEMBERS[0, 0] + MEMBERS[1, 0]) / 2 / T), 0),  # both right: mean logits
      _kd(STUDENT[1], _log_softmax(MEMBERS[1, 1] / T), 1),                         # only member 1 right
      -_log_softmax(STUDENT[2])[2],                                                # none right: plain CE
  ]
  got = oracle_kd_loss(STUDENT, MEMBERS, LABELS, temperature=T, hard_weight=HARD, soft_weight=SOFT)
  assert got.shape == (3,) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_hand_computed_probability_aggregation():
  p0 = (np.exp(_log_softmax(MEMBERS[0, 0] / T)) + np.exp(_log_softmax(MEMBERS[1, 0] / T))) / 2
  expected = [_kd(STUDENT[0], np.log(p0), 0), _kd(STUDENT[1], _log_softmax(MEMBERS[1, 1] / T), 1),
              -_log_softmax(STUDENT[2])[2]]
  got = oracle_kd_loss(STUDENT, MEMBERS, LABELS, temperature=T, hard_weight=HARD, soft_weight=SOFT,
                       aggregate="probs")
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # With every member right and equal members the two aggregations agree.
  same = np.stack([MEMBERS[1], MEMBERS[1]])
  a, b = (oracle_kd_loss(STUDENT[:2], same[:, :2], LABELS[:2], aggregate=g) for g in ("logits", "probs"))
  np.testing.assert_allclose(a, b, rtol=1e-5)


def test_single_member_is_kd_where_right_and_ce_where_wrong():
  z = MEMBERS[1]
  got = oracle_kd_loss(STUDENT, z[None], LABELS)
  kd = kd_loss(STUDENT, z, LABELS)
  ce = kd_loss(STUDENT, None, LABELS, hard_weight=1.0)
  np.testing.assert_allclose(got, [kd[0], kd[1], ce[2]], rtol=1e-6)


def test_kdloss_preset_and_teacher_targets():
  loss = KD_PRESETS["oracle"]
  assert (loss.target, loss.temperature, loss.hard_weight, loss.soft_weight) == ("oracle", 4.0, 0.1, 0.9)
  assert loss.uses_teacher and not loss.uses_features
  targets = loss.teacher_targets({"logits": MEMBERS.mean(0), "members": jnp.asarray(MEMBERS)})
  assert targets.shape == (3, 2, 3)  # batch-first (sharded on the data axis)
  np.testing.assert_allclose(loss(STUDENT, targets, LABELS), oracle_kd_loss(STUDENT, MEMBERS, LABELS), rtol=1e-6)
  # A single teacher (no "members") is M = 1.
  single = loss.teacher_targets({"logits": jnp.asarray(MEMBERS[1])})
  np.testing.assert_allclose(loss(STUDENT, single, LABELS), oracle_kd_loss(STUDENT, MEMBERS[1:], LABELS), rtol=1e-6)
  # target="mean" reads the averaged ensemble (the IE baseline).
  ie = KD_PRESETS["repdistiller"]
  np.testing.assert_allclose(ie(STUDENT, ie.teacher_targets({"logits": MEMBERS.mean(0), "members": MEMBERS}), LABELS),
                             kd_loss(STUDENT, MEMBERS.mean(0), LABELS), rtol=1e-6)


def test_gradient_is_finite_and_stops_at_the_teacher():
  for aggregate in ("logits", "probs"):
    f = lambda s, z: oracle_kd_loss(s, z, LABELS, aggregate=aggregate).mean()  # noqa: E731
    gs, gz = jax.grad(f, argnums=(0, 1))(jnp.asarray(STUDENT), jnp.asarray(MEMBERS))
    assert np.all(np.isfinite(gs)) and np.any(gs != 0)
    assert np.all(gz == 0)
    # An all-wrong batch (example 2, no member right): the CE fallback only, finite.
    g = jax.grad(lambda s: oracle_kd_loss(s, MEMBERS[:, 2:], LABELS[2:], aggregate=aggregate).sum())(
        jnp.asarray(STUDENT[2:]))
    np.testing.assert_allclose(g, jax.grad(lambda s: kd_loss(s, None, LABELS[2:], hard_weight=1.0).sum())(
        jnp.asarray(STUDENT[2:])), rtol=1e-6)


def test_invalid_settings():
  with pytest.raises(ValueError, match="^aggregate:"):
    oracle_kd_loss(STUDENT, MEMBERS, LABELS, aggregate="max")
  with pytest.raises(ValueError, match="^loss.target:"):
    KDLoss(target="best")
  with pytest.raises(ValueError, match="^loss.oracle_aggregate:"):
    KDLoss(target="oracle", oracle_aggregate="median")
  with pytest.raises(ValueError, match="^loss.target:"):
    KDLoss(target="oracle", relation_weight=1.0)


def test_every_member_right_is_averaged_kd_and_none_right_is_ce():
  """The two ends of L_OD: where every member is right the oracle teacher is the whole ensemble (mean logits), so
  L_OD equals averaged-ensemble KD; where no member is right it is plain cross-entropy (hand-computed)."""
  right = np.stack([MEMBERS[0, :1], MEMBERS[1, :1]])  # example 0: both members right
  got = oracle_kd_loss(STUDENT[:1], right, LABELS[:1], temperature=T, hard_weight=HARD, soft_weight=SOFT)
  avg = kd_loss(STUDENT[:1], right.mean(0), LABELS[:1], temperature=T, hard_weight=HARD, soft_weight=SOFT)
  np.testing.assert_allclose(got, avg, rtol=1e-5)
  np.testing.assert_allclose(got, [_kd(STUDENT[0], _log_softmax(right.mean(0)[0] / T), 0)], rtol=1e-5)
  wrong = MEMBERS[:, 2:]  # example 2: no member right
  got = oracle_kd_loss(STUDENT[2:], wrong, LABELS[2:], temperature=T, hard_weight=HARD, soft_weight=SOFT)
  np.testing.assert_allclose(got, [-_log_softmax(STUDENT[2])[2]], rtol=1e-5)


def test_none_right_average_variant():
  """``none_right="average"`` (a jdanas variant): only the none-right example changes, to averaged-ensemble KD."""
  paper = oracle_kd_loss(STUDENT, MEMBERS, LABELS, temperature=T, hard_weight=HARD, soft_weight=SOFT)
  got = oracle_kd_loss(STUDENT, MEMBERS, LABELS, temperature=T, hard_weight=HARD, soft_weight=SOFT,
                       none_right="average")
  np.testing.assert_allclose(got[:2], paper[:2], rtol=1e-6)
  np.testing.assert_allclose(got[2], _kd(STUDENT[2], _log_softmax(MEMBERS[:, 2].mean(0) / T), 2), rtol=1e-5)
  assert not np.isclose(got[2], paper[2])
  loss = KDLoss(target="oracle", oracle_none_right="average", temperature=T, hard_weight=HARD, soft_weight=SOFT)
  np.testing.assert_allclose(loss(STUDENT, jnp.moveaxis(MEMBERS, 0, 1), LABELS), got, rtol=1e-6)
  with pytest.raises(ValueError, match="^none_right:"):
    oracle_kd_loss(STUDENT, MEMBERS, LABELS, none_right="kd")
  with pytest.raises(ValueError, match="^loss.oracle_none_right:"):
    KDLoss(target="oracle", oracle_none_right="mean")
