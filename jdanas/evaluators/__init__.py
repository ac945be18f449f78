"""Evaluators: how a search scores a batch of proposed architectures.

Every evaluator is called as ``evaluator(key, encodings) -> Evaluation`` with ``encodings`` an
``int[Q, D]`` batch, and follows the :class:`Evaluator` protocol (``state()``/``restore()`` for what
a checkpoint saves, ``resume(ledger)``, ``describe()``; :class:`EvaluatorBase` gives the defaults).
Scores are higher-is-better and NaN marks a failed evaluation (a diverged student); *what* a score
is depends on the evaluator, and each says so in its ``score_kind`` (a :class:`ScoreKind`, recorded
in the search ledger and the report). One file per evaluator, each with its config section, its
settings and its builder (an :class:`EvaluatorSpec`):

* ``short_kd`` (:mod:`.short_kd`): KD-trains the batch with the population engine for a short schedule
  (the fidelity is the recipe's ``steps``) and returns validation accuracies (fractions in [0, 1]);
  ``distill=False``: the same run with plain cross-entropy (``ce_val_accuracy``).
* ``tabular`` (:mod:`.tabular`): an NB201 table column / 100, or DisWOT's S1 table in percent top-1.
  For benchmarking searchers cheaply only; never used inside a real distillation-aware search.
* ``zero_cost`` (:mod:`.zero_cost`): a training-free proxy of :mod:`jdanas.scoring`; its scores are the
  proxy's own values, comparable only with each other.
* ``one_shot`` (:mod:`.one_shot`): ENAS/KDAS weight sharing, the child's accuracy with the shared weights
  of a masked supernet (:mod:`jdanas.train.oneshot`); stateful (the shared weights are checkpointed).
* ``predictor`` (:mod:`.predictor`): DaSS's meta-trained accuracy predictor adapted to the teacher; a
  rank score, not an accuracy.
* ``evaluator.reward`` (:mod:`.reward`) wraps an accuracy evaluator (``EvaluatorSpec.accuracy``) into
  AKD's latency-aware reward; it is not an ``evaluator.name``.

Adding an evaluator: write ``jdanas/evaluators/<name>.py`` with the class (subclass :class:`EvaluatorBase`)
and a ``SPEC = EvaluatorSpec(name, section, settings, build, ...)`` (the ``Section`` declares every field
of ``evaluator.<name>``; ``settings`` does the cross-field checks; ``build(ctx)`` returns the evaluator),
then add ``<name>.SPEC`` to the one tuple of :data:`EVALUATORS` in :mod:`.registry`. The config checks,
``--show_config``, the search loop and tests/test_evaluators.py's contract read the registry.

``EVALUATORS`` and the registry functions are imported on first use (the evaluator files read the
pipeline's config schema, and the pipeline imports this package for its types).
"""
from __future__ import annotations

import importlib

from jdanas.evaluators.base import (BuildContext, Evaluation, Evaluator, EvaluatorBase, EvaluatorSettings,
                                    EvaluatorSpec, ScoreKind)

_REGISTRY = ("EVALUATORS", "build", "choices", "get_spec", "settings")


def __getattr__(name: str):
  if name in _REGISTRY:
    return getattr(importlib.import_module("jdanas.evaluators.registry"), name)
  raise AttributeError(f"module 'jdanas.evaluators' has no attribute {name!r}")


__all__ = ["BuildContext", "EVALUATORS", "Evaluation", "Evaluator", "EvaluatorBase", "EvaluatorSettings",
           "EvaluatorSpec", "ScoreKind", "build", "choices", "get_spec", "settings"]
