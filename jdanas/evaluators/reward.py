"""``evaluator.reward``: an accuracy evaluator wrapped into AKD's latency-aware reward.

``R(m) = ACC(m) x (LAT(m) / T) ** w`` (the formula and the latency models are in :mod:`jdanas.rewards`).
The wrapped evaluator is any registered one whose score is an accuracy (``EvaluatorSpec.accuracy``:
``short_kd``, ``tabular``, ``one_shot``). Latencies are cached per architecture (a measured latency is
noisy; an architecture must get the same reward every time it is proposed), and the cache is refilled
from the ledger's ``latency`` column when a search resumes (:meth:`RewardEvaluator.resume`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import numpy as np

from jdanas.evaluators.base import BuildContext, Evaluation, EvaluatorBase, EvaluatorSpec, ScoreKind
from jdanas.pipeline.schema import Field, Section, need
from jdanas.rewards import LATENCY_MODELS, LATENCY_UNITS, LatencyModel, encoding_key, reward


class RewardEvaluator(EvaluatorBase):
  """An accuracy evaluator wrapped into the AKD/MnasNet reward (see the module docstring).

  ``evaluator(key, encodings)`` runs the inner evaluator (so ``accuracy`` is exactly its score) and
  returns the rewards as scores; ``Evaluation.extras`` carries the per-candidate ``accuracy``,
  ``latency`` and ``reward`` columns (recorded in the search ledger). Its state is the inner evaluator's.
  """

  name = "reward"

  def __init__(self, inner, latency: Callable[[np.ndarray], float], *, target: float, alpha: float = -0.07,
               beta: float = -0.07, latency_model: str | None = None):
    if not target > 0:
      raise ValueError(f"target: must be > 0, got {target!r}")
    self.inner, self.latency = inner, latency
    self.target, self.alpha, self.beta = float(target), float(alpha), float(beta)
    self.latency_model = latency_model or getattr(latency, "name", "latency")
    self.cache: dict[str, float] = {}
    units = LATENCY_UNITS.get(self.latency_model, "?")
    self.score_kind = ScoreKind(
        f"reward:{inner.score_kind.kind} x ({self.latency_model}/T)^w",
        f"{inner.score_kind.units} x ({self.latency_model} in {units} / {self.target:g})^w, "
        f"w = {self.alpha:g} if under T else {self.beta:g}")

  def latencies(self, encodings: np.ndarray) -> np.ndarray:
    """``LAT`` of each encoding, from the cache or measured (then cached)."""
    out = np.empty(len(encodings), np.float64)
    for i, e in enumerate(np.asarray(encodings)):
      k = encoding_key(e)
      if k not in self.cache:
        self.cache[k] = float(self.latency(e))
      out[i] = self.cache[k]
    return out

  def state(self) -> Any:
    """The inner evaluator's checkpointable state (the ``one_shot`` shared weights), or None."""
    return self.inner.state()

  def restore(self, state: Any) -> None:
    """Continues the inner evaluator from a checkpointed :meth:`state`."""
    self.inner.restore(state)

  def resume(self, ledger: list[dict]) -> None:
    """Refills the cache from the ``latency`` column of a restored ledger, and resumes the inner evaluator."""
    for row in ledger:
      if row.get("latency") is not None:
        self.cache.setdefault(encoding_key(row["encoding"]), float(row["latency"]))
    self.inner.resume(ledger)

  def describe(self) -> dict:
    """The reward's settings for the report."""
    d = self.latency.describe() if hasattr(self.latency, "describe") else {"latency_model": self.latency_model}
    return {**d, "target": self.target, "alpha": self.alpha, "beta": self.beta,
            "accuracy": self.inner.score_kind.kind, "cached_architectures": len(self.cache)}

  def _rewarded(self, ev: Evaluation, encodings: np.ndarray) -> Evaluation:
    """The inner evaluation ``ev`` of ``encodings`` with the rewards as scores and the reward's columns."""
    lat = self.latencies(encodings)
    r = reward(ev.scores, lat, target=self.target, alpha=self.alpha, beta=self.beta)
    extras = {"accuracy": np.asarray(ev.scores, np.float32), "latency": lat, "reward": r}
    return dataclasses.replace(ev, scores=r, extras=extras)

  def __call__(self, key: jax.Array, encodings: np.ndarray) -> Evaluation:
    return self._rewarded(self.inner(key, encodings), encodings)

  def derive(self, encodings: np.ndarray) -> Evaluation:
    """The inner evaluator's :meth:`derive` (one_shot: its current shared weights, nothing trained) turned
    into the reward the search used, with the same columns as a call (ENAS's derive step)."""
    return self._rewarded(self.inner.derive(encodings), encodings)

  def score(self, encodings: np.ndarray) -> np.ndarray:
    """The reward of each of ``encodings`` from the inner evaluator's score, training nothing."""
    return self.derive(encodings).scores


SECTION = Section("evaluator.reward", {
    "latency_model": Field("str", "", choices=lambda: LATENCY_MODELS, doc="LAT: measured, flops or params ('' = off)"),
    "target": Field("number", lo=0, lo_open=True, note="in the latency model's unit (ms, FLOPs or parameters)",
                    doc="T"),
    "alpha": Field("number", -0.07, note="soft form -0.07, hard form 0, > 0 a size target", doc="w where LAT <= T"),
    "beta": Field("number", -0.07, hi=0, note="soft form alpha=beta=-0.07, hard form alpha=0, beta=-1",
                  doc="w where LAT > T"),
    "batch_size": Field("int", 1, lo=1, doc="the measured latency's batch"),
    "repeats": Field("int", 20, lo=1, doc="timed calls of the measured latency (their median)"),
}, doc="AKD's latency-aware reward of an accuracy evaluator (jdanas.rewards)")


def settings(ev, spec: EvaluatorSpec) -> dict | None:
  """``evaluator.reward`` checked (None when absent or ``latency_model`` is empty), for the evaluator ``spec``."""
  sub = ev.get("reward", None)
  if sub is None or not sub.get("latency_model", ""):
    return None
  values = SECTION.read(sub)
  from jdanas.evaluators.registry import EVALUATORS
  accurate = [name for name, s in EVALUATORS.items() if s.accuracy]
  need(spec.accuracy, "evaluator.reward",
       f"needs an accuracy evaluator (evaluator.name {', '.join(map(repr, accurate))}), not {spec.name!r}")
  return values


def wrap(inner, ctx: BuildContext) -> RewardEvaluator:
  """``inner`` wrapped into the reward of ``ctx.plan.evaluator.reward``."""
  kw, data = dict(ctx.settings.reward), ctx.data
  latency = LatencyModel(kw.pop("latency_model"), ctx.plan.space, num_classes=data.num_classes,
                         input_shape=tuple(data.image_shape), batch_size=kw.pop("batch_size"),
                         repeats=kw.pop("repeats"))
  return RewardEvaluator(inner, latency, **kw)


def summary(values: dict | None) -> str:
  """The score line of ``--show_config``."""
  if values is None:
    return "the evaluator's score"
  return (f"reward ACC x (LAT/T)^w, LAT = {values['latency_model']}, T = {values['target']:g}, "
          f"w = {values['alpha']:g} if LAT <= T else {values['beta']:g}")


__all__ = ["RewardEvaluator", "SECTION", "settings", "summary", "wrap"]
