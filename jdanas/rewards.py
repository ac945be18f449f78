"""The latency-aware reward of AKD (Liu et al., "Search to Distill: Pearls are Everywhere but not the
Eyes", CVPR 2020), which is MnasNet's (Tan et al., "MnasNet: Platform-Aware Neural Architecture
Search for Mobile", CVPR 2019)::

  R(m) = ACC(m) x (LAT(m) / T) ** w,    w = alpha if LAT(m) <= T else beta

``ACC`` is the score of an accuracy evaluator (``short_kd``: the held-out accuracy after the short KD
run from the teacher, AKD's ACC_KD; with ``evaluator.short_kd.distill=False`` the same run with plain
cross-entropy, the "NAS + KD" baseline; ``tabular``: an NB201 table column; ``one_shot``: the child's
accuracy with the shared supernet weights, where ``latency_model="params"`` makes the reward the
memory penalty of KDAS, Kang, Mun & Han, AAAI 2020, docs/methods/oracle_kd.md). ``LAT`` comes from a
latency model (:data:`LATENCY_MODELS`): ``measured`` (:func:`jdanas.costs.latency_ms` on the run's
own device), ``flops`` or ``params`` (:func:`jdanas.costs.model_costs`); ``T`` is in the model's
unit. Soft form (MnasNet, used by AKD): ``alpha = beta = -0.07``; hard form: ``alpha = 0, beta = -1``.
``alpha > 0`` (a jdanas extension, not in MnasNet or AKD) makes ``T`` a size *target*: a model under
``T`` loses reward too, so the search looks for the best model near ``T`` rather than the best one
under it; KDAS uses it to trace an accuracy-vs-size curve where the upper bound alone never binds
(docs/methods/oracle_kd.md). ``beta`` must be ``<= 0``.

The search evaluator that applies it, :class:`jdanas.evaluators.reward.RewardEvaluator` (``evaluator.reward``
in a config), caches latencies per architecture (keyed by :func:`encoding_key`): a measured latency is
noisy, and the same architecture must get the same reward every time it is proposed. The cache is
rebuilt from the search ledger (whose rows record each candidate's ``latency``) when a run resumes, so a
resumed run uses the values measured before the interruption. docs/methods/akd.md has the measured spread.
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

from jdanas import costs
from jdanas.spaces.base import AbstractSearchSpace, to_tuple

LATENCY_MODELS = ("measured", "flops", "params")
LATENCY_UNITS = {"measured": "ms", "flops": "FLOPs", "params": "parameters"}


def reward(accuracy: np.ndarray, latency: np.ndarray, *, target: float, alpha: float, beta: float) -> np.ndarray:
  """``accuracy * (latency / target) ** w`` with ``w = alpha`` where ``latency <= target``, else
  ``beta`` (``float32``; a NaN accuracy stays NaN)."""
  accuracy = np.asarray(accuracy, np.float64)
  ratio = np.asarray(latency, np.float64) / float(target)
  w = np.where(ratio <= 1.0, float(alpha), float(beta))
  return (accuracy * ratio ** w).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class LatencyModel:
  """``LAT(m)`` of one latency model on one task (classes, input shape).

  Attributes:
    name: one of :data:`LATENCY_MODELS`.
    space, num_classes, input_shape: what the architecture is built with.
    batch_size, repeats: the ``measured`` protocol (one warm-up call, then the median of
      ``repeats`` timed calls of the jitted inference forward pass at ``batch_size``).
  """
  name: str
  space: AbstractSearchSpace
  num_classes: int
  input_shape: tuple[int, ...]
  batch_size: int = 1
  repeats: int = 20

  def __post_init__(self):
    if self.name not in LATENCY_MODELS:
      raise ValueError(f"latency_model: {self.name!r} is not one of {', '.join(LATENCY_MODELS)}")

  def __call__(self, enc) -> float:
    if self.name == "measured":
      return costs.latency_ms(self.space, enc, num_classes=self.num_classes, input_shape=self.input_shape,
                              batch_size=self.batch_size, repeats=self.repeats)
    c = costs.model_costs(self.space, enc, num_classes=self.num_classes, input_shape=self.input_shape,
                          flops=self.name == "flops")
    return float(c.flops if self.name == "flops" else c.params)

  def describe(self) -> dict:
    """The model and, for ``measured``, its protocol and device (recorded in the report)."""
    out = {"latency_model": self.name, "units": LATENCY_UNITS[self.name]}
    if self.name == "measured":
      device = jax.devices()[0]
      out["protocol"] = {"batch_size": self.batch_size, "warmup_calls": 1, "repeats": self.repeats,
                         "statistic": "median", "device": f"{device.platform}:{device.device_kind}",
                         "function": "jdanas.costs.latency_ms"}
    return out


def encoding_key(enc) -> str:
  """The cache key of an encoding: its decisions joined by commas."""
  return ",".join(str(int(v)) for v in to_tuple(enc))


__all__ = ["LATENCY_MODELS", "LATENCY_UNITS", "LatencyModel", "encoding_key", "reward"]
