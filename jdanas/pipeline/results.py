"""What the search phase hands on (:class:`SearchResult`) and the teacher checks both phases apply
(:func:`chance_accuracy`, :func:`at_chance`): one module that :mod:`jdanas.pipeline.search`,
:mod:`jdanas.pipeline.final` and :mod:`jdanas.pipeline.summary` import, so the final phase does not
import the search loop for them."""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np

from jdanas.evaluators import ScoreKind
from jdanas.pipeline.config import Plan
from jdanas.teachers import Teacher


@dataclasses.dataclass
class SearchResult:
  """What :func:`jdanas.pipeline.search` hands to :func:`jdanas.pipeline.train_final` and
  :func:`jdanas.pipeline.report`.

  Attributes:
    config, plan, workdir: the run's config, its :class:`~jdanas.pipeline.config.Plan`, its folder.
    data, teacher: the dataset and the teacher.
    teacher_accuracy: ``{"val_accuracy": float, "test_accuracy": float | None}``.
    ledger: one dict per evaluation (see :mod:`jdanas.report`).
    score_kind: what the ledger's ``score`` is (:class:`jdanas.evaluators.ScoreKind`).
    reward: the latency-aware reward's settings (:meth:`jdanas.evaluators.reward.RewardEvaluator.describe`:
      latency model, its protocol, target, alpha, beta), or None without a reward.
    stats: ``evaluations``, ``rounds``, ``search_seconds`` (wall time of the search loop, what its progress bar
      shows: compilations, costs and checkpoints included; summed over resumes), ``round_seconds`` (per round),
      ``evaluator_programs`` (programs the evaluator built in this process, compiled or loaded; called
      ``num_compilations`` in reports written before it was renamed), ``xla_compilations`` (every XLA
      compilation of the call to :func:`jdanas.pipeline.search`: teacher, evaluator, searcher, budget;
      :class:`jdanas.runtime.CompileCounter`), ``cache_loads`` (programs loaded from the persistent
      compilation cache instead), ``resumed_from_round``,
      ``resume_config_changes`` (the allowed config changes of every resume, :mod:`jdanas.pipeline.resume`).
    key_final: the key of the final phase (a function of ``config.seed`` only).
    mesh: the device mesh (None on one device).
    started: ``time.perf_counter()`` at the start of the run.
    derive: the derive step's candidates and their scores with the final shared weights
      (:func:`jdanas.pipeline.search.derive_candidates`; ``evaluator.one_shot.derive > 0``), from which the
      final training takes its top-K; None without it (the top-K are the ledger's best).
  """
  config: ml_collections.ConfigDict
  plan: Plan
  workdir: pathlib.Path
  data: Any
  teacher: Teacher
  teacher_accuracy: dict
  ledger: list
  score_kind: ScoreKind
  reward: dict | None
  stats: dict
  key_final: jax.Array
  mesh: Any
  started: float
  derive: dict | None = None


def chance_accuracy(split) -> float:
  """Accuracy of always predicting the most frequent label of ``split``."""
  return float(np.bincount(np.asarray(split.y)).max() / len(split.y))


def at_chance(teacher_name: str, val_accuracy: float, chance: float) -> str | None:
  """What is wrong with a teacher no better than ``chance`` on the validation split, else None."""
  if np.isfinite(val_accuracy) and val_accuracy > chance:
    return None
  return (f"the teacher {teacher_name} is no better than chance (val accuracy {val_accuracy:.4f} <= {chance:.4f}, "
          f"the most frequent class)")


__all__ = ["SearchResult", "at_chance", "chance_accuracy"]
