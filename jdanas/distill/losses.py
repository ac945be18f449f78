"""Hinton knowledge distillation (Hinton, Vinyals & Dean 2015, https://arxiv.org/abs/1503.02531).

One definition covers the conventions of the papers jdanas hosts (docs/methods/)::

  loss_i = hard_weight * CE(y_i, softmax(z_s)) + soft_weight * T^2 * D(softmax(z_t / T), softmax(z_s / T))

with ``D`` either the KL divergence (``soft_form="kl"``, RepDistiller/CRD/DisWOT: hard 0.1, soft 0.9,
T=4) or the soft cross-entropy ``H(p_t, p_s)`` (``soft_form="soft_ce"``, DaSS: hard 0.5, soft 0.5,
T=6), which differs from KL by the teacher entropy and has the same gradient. The ``T^2`` factor
is explicit. Values are per example; callers reduce (``mean`` over the batch equals the papers'
sum-over-classes, mean-over-batch reduction). :func:`soft_kd_loss` is the soft term alone (the
"KD" zero-cost proxy of DisWOT uses it).

"DisWOT as a distiller" (Dong et al., CVPR 2023; docs/methods/diswot.md) adds feature-relation
terms computed on one feature tap of student and teacher (:mod:`jdanas.distill.taps`)::

  loss_i += semantic_weight * ICKD_i(f_s, f_t) + relation_weight * SP_i(f_s, f_t)

(:mod:`jdanas.distill.relations`; the channel-mismatch policy is documented there). DisWOT's
code does not expose these weights, so they are free parameters. With both weights 0 the loss
is exactly the logit KD loss (the same program: no feature is requested).

The oracle KD loss (Kang, Mun & Han, "Towards Oracle Knowledge Distillation with Neural
Architecture Search", AAAI 2020; docs/methods/oracle_kd.md) distils an ensemble teacher through
its *correct* members only (:func:`oracle_kd_loss`; ``KDLoss(target="oracle")``, the preset
``"oracle"``); with ``target="mean"`` (the default) an ensemble teacher is distilled through its
mean logits (the "IE" baseline).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from jdanas.distill.relations import ickd_loss, sp_loss
from jdanas.distill.taps import check_tap, tap_feature

SOFT_FORMS = ("kl", "soft_ce")
TARGETS = ("mean", "oracle")
ORACLE_AGGREGATES = ("logits", "probs")
ORACLE_NONE_RIGHT = ("ce", "average")  # oracle KD on examples no member gets right: the paper, or a jdanas variant


def soft_kd_loss(student_logits: jax.Array, teacher_logits: jax.Array, *, temperature: float = 4.0,
                 soft_form: str = "kl") -> jax.Array:
  """Per-example soft term ``T^2 * D(softmax(z_t / T), softmax(z_s / T))`` (``float32[B]``).

  ``soft_form="kl"``: ``D`` is the KL divergence ``KL(p_t || p_s)`` (the teacher is the target);
  ``"soft_ce"``: the cross-entropy ``H(p_t, p_s)``.
  """
  if soft_form not in SOFT_FORMS:
    raise ValueError(f"soft_form: {soft_form!r} is not one of {SOFT_FORMS}")
  t = float(temperature)
  return t * t * _divergence(student_logits, teacher_logits, t, soft_form)


def _divergence(student_logits, teacher_logits, t: float, soft_form: str) -> jax.Array:
  """``D(softmax(z_t / t), softmax(z_s / t))`` per example, without the ``t^2`` factor."""
  return _divergence_to(student_logits, jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / t, axis=-1), t,
                        soft_form)


def _divergence_to(student_logits, log_pt, t: float, soft_form: str) -> jax.Array:
  """``D(p_t, softmax(z_s / t))`` per example for target log-probabilities ``log_pt``."""
  log_ps = jax.nn.log_softmax(student_logits.astype(jnp.float32) / t, axis=-1)
  if soft_form == "kl":
    return jnp.sum(jnp.exp(log_pt) * (log_pt - log_ps), axis=-1)
  return -jnp.sum(jnp.exp(log_pt) * log_ps, axis=-1)


def kd_loss(student_logits: jax.Array, teacher_logits: jax.Array | None, labels: jax.Array, *,
            temperature: float = 4.0, hard_weight: float = 0.1, soft_weight: float = 0.9,
            soft_form: str = "kl") -> jax.Array:
  """Per-example KD loss.

  Args:
    student_logits: ``float[B, K]``.
    teacher_logits: ``float[B, K]``, or ``None`` for plain cross-entropy (then ``soft_weight`` is
      ignored).
    labels: ``int[B]`` class indices.
    temperature: softmax temperature ``T`` of the soft term.
    hard_weight: weight of the cross-entropy with the labels.
    soft_weight: weight of ``T^2 * D(teacher || student)``.
    soft_form: ``"kl"`` or ``"soft_ce"``.

  Returns:
    ``float32[B]``.
  """
  if soft_form not in SOFT_FORMS:
    raise ValueError(f"soft_form: {soft_form!r} is not one of {SOFT_FORMS}")
  student_logits = student_logits.astype(jnp.float32)
  hard = optax.softmax_cross_entropy_with_integer_labels(student_logits, labels)
  if teacher_logits is None or soft_weight == 0:
    return hard_weight * hard
  t = float(temperature)
  return hard_weight * hard + soft_weight * t * t * _divergence(student_logits, teacher_logits, t, soft_form)


def oracle_kd_loss(student_logits: jax.Array, member_logits: jax.Array, labels: jax.Array, *,
                   temperature: float = 4.0, hard_weight: float = 0.1, soft_weight: float = 0.9,
                   soft_form: str = "kl", aggregate: str = "logits", none_right: str = "ce") -> jax.Array:
  """Per-example oracle KD loss L_OD (Kang, Mun & Han, AAAI 2020)::

    C_i = {m : argmax z_m(x_i) = y_i}      (the members that classify x_i correctly)
    loss_i = kd_loss(z_s, z_OD, y)_i  if C_i is not empty,   CE(y_i, softmax(z_s))_i  otherwise

  The oracle teacher ``z_OD`` aggregates the correct members only: ``aggregate="logits"`` takes
  the mean of their logits (the default; the paper says "the correct models are the teacher"
  without the aggregation), ``"probs"`` the mean of their probabilities at temperature ``T``.
  The paper's temperature and weights are unknown: the defaults T = 4, soft 0.9, hard 0.1 are
  RepDistiller's (Tian et al., ICLR 2020). The fallback is plain cross-entropy (weight 1).

  ``none_right="average"`` is a jdanas variant, not the paper's: an example that no member gets right
  is distilled from the averaged ensemble (:func:`kd_loss` against the mean of every member's
  logits) instead of the full-weight cross-entropy. With members that underfit their training
  data, the paper's fallback trains the student mostly on the examples every member fails
  (docs/methods/oracle_kd.md, "The loss study"); the variant isolates that effect.

  Args:
    student_logits: ``float[B, K]``.
    member_logits: ``float[M, B, K]``, the members' logits (a single teacher is ``M = 1``).
    labels: ``int[B]``.
    temperature, hard_weight, soft_weight, soft_form: as in :func:`kd_loss`.
    aggregate: ``"logits"`` or ``"probs"``.
    none_right: ``"ce"`` (the paper) or ``"average"`` (averaged-ensemble KD, a jdanas variant).

  Returns:
    ``float32[B]``.
  """
  if soft_form not in SOFT_FORMS:
    raise ValueError(f"soft_form: {soft_form!r} is not one of {SOFT_FORMS}")
  if aggregate not in ORACLE_AGGREGATES:
    raise ValueError(f"aggregate: {aggregate!r} is not one of {ORACLE_AGGREGATES}")
  if none_right not in ORACLE_NONE_RIGHT:
    raise ValueError(f"none_right: {none_right!r} is not one of {ORACLE_NONE_RIGHT}")
  student_logits = student_logits.astype(jnp.float32)
  z = jax.lax.stop_gradient(member_logits.astype(jnp.float32))
  t = float(temperature)
  correct = (jnp.argmax(z, -1) == labels[None]).astype(jnp.float32)            # [M, B]
  count = correct.sum(0)                                                          # [B]
  weights = correct / jnp.maximum(count, 1.0)                                     # [M, B]
  if aggregate == "logits":
    log_pt = jax.nn.log_softmax(jnp.einsum("mb,mbk->bk", weights, z) / t, axis=-1)
  else:  # every row of weights sums to 1 where some member is right; 0 rows are masked below
    p = jnp.einsum("mb,mbk->bk", weights, jax.nn.softmax(z / t, axis=-1))
    log_pt = jnp.log(jnp.where(count[:, None] > 0, p, 1.0))
  hard = optax.softmax_cross_entropy_with_integer_labels(student_logits, labels)
  kd = hard_weight * hard + soft_weight * t * t * _divergence_to(student_logits, log_pt, t, soft_form)
  if none_right == "average":
    fallback = hard_weight * hard + soft_weight * t * t * _divergence(student_logits, z.mean(0), t, soft_form)
  else:
    fallback = hard
  return jnp.where(count > 0, kd, fallback)


@dataclasses.dataclass(frozen=True)
class KDLoss:
  """A KD loss configuration (hashable, so it can close over jitted code)."""
  temperature: float = 4.0
  hard_weight: float = 0.1
  soft_weight: float = 0.9
  soft_form: str = "kl"
  semantic_weight: float = 0.0
  relation_weight: float = 0.0
  relation_tap: str = "pre_pool"
  target: str = "mean"              # "oracle": :func:`oracle_kd_loss` over the teacher's members
  oracle_aggregate: str = "logits"  # the oracle teacher's aggregation (target="oracle")
  oracle_none_right: str = "ce"     # examples no member gets right: "ce" (paper) or "average" (jdanas variant)

  def __post_init__(self):
    if self.soft_form not in SOFT_FORMS:
      raise ValueError(f"loss.soft_form: {self.soft_form!r} is not one of {SOFT_FORMS}")
    if self.target not in TARGETS:
      raise ValueError(f"loss.target: {self.target!r} is not one of {TARGETS}")
    if self.oracle_aggregate not in ORACLE_AGGREGATES:
      raise ValueError(f"loss.oracle_aggregate: {self.oracle_aggregate!r} is not one of {ORACLE_AGGREGATES}")
    if self.oracle_none_right not in ORACLE_NONE_RIGHT:
      raise ValueError(f"loss.oracle_none_right: {self.oracle_none_right!r} is not one of {ORACLE_NONE_RIGHT}")
    if self.target == "oracle" and (self.soft_weight == 0 or self.uses_features):
      raise ValueError("loss.target: the oracle loss needs a soft term and no DisWOT relation terms")
    if not self.temperature > 0:
      raise ValueError(f"loss.temperature must be > 0, got {self.temperature}")
    if self.hard_weight < 0 or self.soft_weight < 0 or self.hard_weight + self.soft_weight == 0:
      raise ValueError(f"loss.hard_weight/soft_weight must be >= 0 and not both 0, got "
                       f"{self.hard_weight}/{self.soft_weight}")
    for name in ("semantic_weight", "relation_weight"):
      if not getattr(self, name) >= 0:
        raise ValueError(f"loss.{name} must be >= 0, got {getattr(self, name)}")
    check_tap(self.relation_tap, "loss.relation_tap")

  @property
  def uses_teacher(self) -> bool:
    return self.soft_weight > 0 or self.uses_features

  @property
  def uses_features(self) -> bool:
    """Whether the loss needs the teacher's feature tap (a DisWOT relation term is on)."""
    return self.semantic_weight > 0 or self.relation_weight > 0

  def teacher_targets(self, teacher_features: dict):
    """What the training step needs from one teacher pass: the logits, plus the tap when a
    relation term is on (``{"logits", "feature"}``); for the oracle loss the members' logits
    batch-first, ``[B, M, K]`` (batches are sharded on their leading axis; a single teacher is
    ``M = 1``)."""
    if self.target == "oracle":
      members = teacher_features.get("members", teacher_features["logits"][None])
      return jnp.moveaxis(members, 0, 1)
    if not self.uses_features:
      return teacher_features["logits"]
    return {"logits": teacher_features["logits"], "feature": tap_feature(teacher_features, self.relation_tap)}

  def from_features(self, student_features: dict, teacher_targets, labels) -> jax.Array:
    """Per-example loss from the student's Features dict and :meth:`teacher_targets`; with both
    relation weights 0 it is ``self(student_logits, teacher_logits, labels)``."""
    if not self.uses_features:
      return self(student_features["logits"], teacher_targets, labels)
    loss = self(student_features["logits"], teacher_targets["logits"], labels)
    f_s, f_t = tap_feature(student_features, self.relation_tap), teacher_targets["feature"]
    if self.semantic_weight > 0:
      loss = loss + self.semantic_weight * ickd_loss(f_s, f_t)
    if self.relation_weight > 0:
      loss = loss + self.relation_weight * sp_loss(f_s, f_t)
    return loss

  def __call__(self, student_logits, teacher_logits, labels) -> jax.Array:
    """Per-example loss; ``teacher_logits`` is ``[B, K]`` (``target="mean"``) or the members'
    ``[B, M, K]`` of :meth:`teacher_targets` (``target="oracle"``)."""
    if isinstance(teacher_logits, dict):
      teacher_logits = teacher_logits["logits"]
    if self.target == "oracle":
      return oracle_kd_loss(student_logits, jnp.moveaxis(teacher_logits, 1, 0), labels, temperature=self.temperature,
                            hard_weight=self.hard_weight, soft_weight=self.soft_weight, soft_form=self.soft_form,
                            aggregate=self.oracle_aggregate, none_right=self.oracle_none_right)
    return kd_loss(student_logits, teacher_logits, labels, temperature=self.temperature,
                   hard_weight=self.hard_weight, soft_weight=self.soft_weight, soft_form=self.soft_form)


KD_PRESETS: dict[str, KDLoss] = {
    # RepDistiller / CRD / DisWOT scripts: 0.1 * CE + 0.9 * T^2 KL, T = 4.
    "repdistiller": KDLoss(temperature=4.0, hard_weight=0.1, soft_weight=0.9, soft_form="kl"),
    # DaSS "alpha distillation": 0.5 * CE + 0.5 * T^2 * H(p_t, p_s), T = 6.
    "dass": KDLoss(temperature=6.0, hard_weight=0.5, soft_weight=0.5, soft_form="soft_ce"),
    # Oracle KD (Kang et al., AAAI 2020): RepDistiller's T and weights (the paper's are unknown).
    "oracle": KDLoss(temperature=4.0, hard_weight=0.1, soft_weight=0.9, soft_form="kl", target="oracle"),
    # Plain supervised training (no teacher).
    "ce": KDLoss(hard_weight=1.0, soft_weight=0.0),
}
