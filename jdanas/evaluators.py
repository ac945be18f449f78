"""Evaluators: how a search scores a batch of proposed architectures.

Every evaluator is called as ``evaluator(key, encodings) -> Evaluation`` with ``encodings`` an
``int[Q, D]`` batch; scores are higher-is-better fractions in [0, 1] and NaN marks a failed
evaluation (a diverged student).

* ``short_kd``: KD-trains the batch with the population engine for a short schedule (the
  fidelity is the recipe's ``steps``) and returns validation accuracies. Compiled programs are
  cached across rounds.
* ``tabular``: looks the architecture up in a NAS-Bench-201 table. For benchmarking searchers
  cheaply only; it never reads a test column unless told to, and is never used inside a real
  distillation-aware search.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import numpy as np

from jdanas.benchmarks.nb201 import NB201Table
from jdanas.train.population import PopulationTrainer


@dataclasses.dataclass
class Evaluation:
  """``scores``: ``float32[Q]`` (NaN = failed); ``variables``: per-candidate Flax variables or None."""
  scores: np.ndarray
  variables: list | None = None
  seconds: float = 0.0
  num_compilations: int = 0


class ShortKDEvaluator:
  """Short-schedule KD training of every candidate against the teacher (see module docstring)."""

  name = "short_kd"

  def __init__(self, trainer: PopulationTrainer, *, progress: bool = False):
    self.trainer = trainer
    self.progress = progress

  def __call__(self, key: jax.Array, encodings: np.ndarray) -> Evaluation:
    result = self.trainer.train(key, list(np.asarray(encodings)), progress=self.progress, desc="short KD")
    variables = [jax.device_get(result.variables(i)) for i in range(len(encodings))]
    return Evaluation(scores=result.accuracy.astype(np.float32), variables=variables,
                      seconds=result.train_seconds + result.compile_seconds,
                      num_compilations=result.num_compilations)


class TabularEvaluator:
  """Table lookup (NB201 encodings only); ``column`` values in percent are returned as fractions."""

  name = "tabular"

  def __init__(self, table: NB201Table, column: str = "cifar10_valid_acc"):
    if column not in table.columns:
      raise ValueError(f"evaluator.column: {column!r} is not a column of {table.path}; "
                       f"choose from {', '.join(sorted(table.columns))}")
    self.table, self.column = table, column

  def __call__(self, key: jax.Array, encodings: np.ndarray) -> Evaluation:
    del key  # deterministic
    values = self.table.lookup(self.column, np.asarray(encodings))
    return Evaluation(scores=(values / 100.0).astype(np.float32))


EVALUATORS: dict[str, Callable[..., Any]] = {"short_kd": ShortKDEvaluator, "tabular": TabularEvaluator}
