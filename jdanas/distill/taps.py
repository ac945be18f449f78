"""Feature taps: the names of the representations that distillation losses and proxies compare.

Every jdanas model returns a Features dict (``{"stages": [...], "pre_pool", "pooled",
"logits"}``). A *tap* names one entry: ``pre_pool`` (the last feature map, ``[B, H, W, C]``),
``pooled`` (the classifier's input, ``[B, C]``), ``logits`` (``[B, K]``), or ``stageI``, the
output of stage ``I`` (1-based). The same vocabulary serves the DisWOT relation term of a
training loss (``KDLoss.relation_tap``) and of the zero-cost proxy (``score_population``'s
``relation_tap``).
"""
from __future__ import annotations

import jax

TAPS = ("pre_pool", "pooled", "logits")


def is_tap(tap) -> bool:
  """Whether ``tap`` names a feature tap: one of :data:`TAPS` or ``stageI`` (I >= 1)."""
  return isinstance(tap, str) and (tap in TAPS or (tap.startswith("stage") and tap[5:].isdigit()
                                                   and int(tap[5:]) >= 1))


def check_tap(tap, what: str = "relation_tap") -> str:
  """``tap`` if it names a feature tap, else a one-line ``ValueError`` naming the field ``what``."""
  if not is_tap(tap):
    raise ValueError(f"{what}: {tap!r} is not one of {', '.join(TAPS)} or stageI (I >= 1)")
  return tap


def tap_feature(features: dict, tap: str) -> jax.Array:
  """The feature ``tap`` of a model's Features dict."""
  check_tap(tap)
  if tap in TAPS:
    return features[tap]
  i = int(tap[5:])
  if i > len(features["stages"]):
    raise ValueError(f"relation_tap: {tap!r} but the model has {len(features['stages'])} stages")
  return features["stages"][i - 1]
