"""Evaluators: how a search scores a batch of proposed architectures.

Every evaluator is called as ``evaluator(key, encodings) -> Evaluation`` with ``encodings`` an
``int[Q, D]`` batch. Scores are higher-is-better and NaN marks a failed evaluation (a diverged
student); *what* a score is depends on the evaluator, and each says so in its ``score_kind``
(a :class:`ScoreKind`, recorded in the search ledger and the report):

* ``short_kd``: KD-trains the batch with the population engine for a short schedule (the
  fidelity is the recipe's ``steps``) and returns validation accuracies (fractions in [0, 1]).
  Compiled programs are cached across rounds. Without a teacher it trains with plain
  cross-entropy (``ce_val_accuracy``).
* :class:`jdanas.rewards.RewardEvaluator` wraps an accuracy evaluator into AKD's latency-aware
  reward (``evaluator.reward`` in a config).
* ``tabular``: looks the architecture up in a NAS-Bench-201 table and returns the column divided
  by 100 (accuracy columns, in percent, become fractions in [0, 1]), or in DisWOT's S1 table
  (:mod:`jdanas.benchmarks.diswot_s1`: measured CIFAR-100 top-1 trained alone, ``vanilla_top1``, or
  with KD, ``kd_top1``) and returns percent top-1 as stored. For benchmarking searchers cheaply
  only; it never reads a test column unless told to, and is never used inside a real
  distillation-aware search.
* ``predictor`` (:class:`PredictorEvaluator`): DaSS's meta-trained accuracy predictor, adapted once
  to the run's teacher; the predicted KD accuracy on a percent scale, uncalibrated on an unseen task
  (it can exceed 100), so only its order is used: a rank score, not an accuracy.
* ``zero_cost`` (:class:`jdanas.scoring.ZeroCostEvaluator`): a training-free proxy; its scores are
  the proxy's own values (a negated distance to the teacher for DisWOT and the other KD-based
  proxies, ``log`` of the SynFlow sum, ...), comparable only with each other.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jdanas.benchmarks.nb201 import NB201Table
from jdanas.train.population import PopulationTrainer


@dataclasses.dataclass(frozen=True)
class ScoreKind:
  """What an evaluator's scores are.

  Attributes:
    kind: short name, e.g. ``"val_accuracy"``, ``"tabular:cifar10_valid_acc"``, ``"zero_cost:diswot"``.
    units: e.g. ``"fraction in [0, 1]"``, ``"negated distance"``, ``"log"``.
    higher_is_better: always True for what a searcher is told (a minimised quantity is negated).
  """
  kind: str
  units: str
  higher_is_better: bool = True

  @property
  def label(self) -> str:
    """A plot axis label, e.g. ``"val_accuracy (fraction in [0, 1], higher is better)"``."""
    return f"{self.kind} ({self.units}, {'higher' if self.higher_is_better else 'lower'} is better)"

  def to_dict(self) -> dict:
    return {**dataclasses.asdict(self), "label": self.label}


@dataclasses.dataclass
class Evaluation:
  """``scores``: ``float32[Q]`` (NaN = failed); ``variables``: per-candidate Flax variables or None;
  ``extras``: named per-candidate columns (``[Q]`` arrays) that the search ledger records next to
  the score (e.g. the reward's ``accuracy``, ``latency``, ``reward``: :mod:`jdanas.rewards`)."""
  scores: np.ndarray
  variables: list | None = None
  seconds: float = 0.0
  num_compilations: int = 0
  extras: dict | None = None


class ShortKDEvaluator:
  """Short-schedule KD training of every candidate against the teacher (see module docstring).

  A trainer without a teacher (plain cross-entropy) gives the same evaluator without KD, whose
  score kind is ``ce_val_accuracy``: the search score of the "NAS + KD" baseline of AKD (Liu et al.,
  CVPR 2020).
  """

  name = "short_kd"

  def __init__(self, trainer: PopulationTrainer, *, progress: bool = False):
    self.trainer = trainer
    self.progress = progress
    distill = trainer.teacher is not None
    self.score_kind = ScoreKind("val_accuracy" if distill else "ce_val_accuracy", "fraction in [0, 1]")

  def __call__(self, key: jax.Array, encodings: np.ndarray) -> Evaluation:
    result = self.trainer.train(key, list(np.asarray(encodings)), progress=self.progress, desc="short KD")
    # The students' weights are dropped with the round (the final phase trains its own; pipeline/checkpoints.py).
    return Evaluation(scores=result.accuracy.astype(np.float32),
                      seconds=result.train_seconds + result.compile_seconds,
                      num_compilations=result.num_compilations)


class TabularEvaluator:
  """Table lookup: an NB201 table (:class:`NB201Table`; ``column`` values in percent are returned as
  fractions) or DisWOT's S1 table (:class:`jdanas.benchmarks.diswot_s1.DisWOTS1Table`, tied to an
  ``s1_resnet`` space; percent top-1 returned as stored). A table that describes its own scores has
  a ``score_kind(column)`` method, which also checks the column."""

  name = "tabular"

  def __init__(self, table, column: str = "cifar10_valid_acc"):
    self.table, self.column = table, column
    if hasattr(table, "score_kind"):  # a table that states its units (DisWOT's S1: percent)
      self.score_kind, self._divisor = table.score_kind(column), 1.0
      return
    if column not in table.columns:
      raise ValueError(f"evaluator.column: {column!r} is not a column of {table.path}; "
                       f"choose from {', '.join(sorted(table.columns))}")
    units = "fraction in [0, 1]" if "acc" in column else "table value / 100"
    self.score_kind, self._divisor = ScoreKind(f"tabular:{column}", units), 100.0

  def __call__(self, key: jax.Array, encodings: np.ndarray) -> Evaluation:
    del key  # deterministic
    values = self.table.lookup(self.column, np.asarray(encodings))
    return Evaluation(scores=(values / self._divisor).astype(np.float32))


PREDICTOR_UNITS = "uncalibrated predictor score on a percent scale, only its order is used; may exceed 100"


class PredictorEvaluator:
  """DaSS's meta-test (Lee, An, Kim & Hwang, "Meta-prediction Model for Distillation-Aware NAS on Unseen
  Datasets", ICLR 2023; docs/methods/dass.md): a meta-trained accuracy predictor (a folder written by
  :func:`jdanas.meta.save_predictor`, e.g. by a ``config.job='meta_train'`` run) reads the run's teacher
  (the DaSS space's full network) and each candidate student remapped from it (functional embedding
  for the predictor's fixed noise, :func:`jdanas.meta.embed_students`; architecture vector,
  :func:`jdanas.spaces.dass.encoding_features`) and predicts its KD accuracy on a percent scale
  (``score_kind``: uncalibrated, it ranks the candidates; see :data:`PREDICTOR_UNITS`).

  The predictor is adapted ONCE, at the first call, by one Meta-SGD step on the teacher-only support
  (the teacher's own architecture, map and ``teacher_accuracy``; ``adapt=False``: the ablation without
  adaptation); every call then only embeds and predicts (one compiled program per batch size).
  Deterministic: ``key`` is unused.
  """

  name = "predictor"

  def __init__(self, space, teacher, teacher_accuracy: float, path, *, adapt: bool = True, chunk: int = 32):
    from jdanas import meta  # the DaSS package, imported when this evaluator is used
    from jdanas.spaces.dass import encoding_features
    info = json.loads((pathlib.Path(path) / "predictor.json").read_text())["meta"]
    self.space, self.teacher, self.chunk, self.adapt = space, teacher, int(chunk), bool(adapt)
    self.noise = meta.noise_input(jax.random.key(int(info["noise_seed"])), space, int(info["num_noise"]))
    k = teacher.num_classes
    teacher_map = meta.embed_teacher(space, teacher.variables, self.noise, num_classes=k)
    if tuple(teacher_map.shape) != tuple(info["map_shape"]):
      raise ValueError(f"evaluator.predictor.path: the predictor reads maps of shape {tuple(info['map_shape'])}, "
                       f"the teacher gives {tuple(teacher_map.shape)}")
    # programs counted as they are traced (a jit traces once per program it compiles; no private JAX API)
    self.trace_counts = {"features": 0, "predict": 0}

    def features(e):
      self.trace_counts["features"] += 1
      return jax.vmap(lambda one: encoding_features(space, one))(e)

    self._features = jax.jit(features)
    teacher_arch = self._features(jnp.asarray(space.teacher_encoding)[None])
    # the support: the teacher as its own student, labelled with its validation accuracy in percent
    self.support = meta.Task(maps=teacher_map[None], arch=teacher_arch, labels=jnp.zeros((1,), jnp.float32),
                             teacher_map=teacher_map, teacher_arch=teacher_arch[0],
                             teacher_label=jnp.float32(100.0 * teacher_accuracy))
    self.model, self.config, self.params, self.alphas, self.info = meta.load_predictor(path, self.support)

    def predict(params, task):
      self.trace_counts["predict"] += 1
      return meta.predict(self.model, params, task, target=self.config.target)

    self._predict = jax.jit(predict)
    self._adapted = None
    self.num_adaptations = 0
    # Not an accuracy: the predictor's output is on the percent scale of its labels but uncalibrated on an
    # unseen task (values above 100 happen); the search and the top-K use only its order.
    self.score_kind = ScoreKind("predicted_kd_accuracy" if adapt else "predicted_kd_accuracy_no_adapt",
                                PREDICTOR_UNITS)

  def adapted_params(self):
    """The predictor's parameters adapted to this teacher (computed once, then cached)."""
    if self._adapted is None:
      from jdanas import meta
      self._adapted = (meta.adapt(self.model, self.params, self.alphas, self.support, target=self.config.target,
                                  first_order=True) if self.adapt else self.params)
      self.num_adaptations += 1
    return self._adapted

  def __call__(self, key: jax.Array, encodings: np.ndarray) -> Evaluation:
    del key  # deterministic
    from jdanas import meta
    t0 = time.perf_counter()
    before = sum(self.trace_counts.values())
    encs = np.asarray(encodings, np.int32)
    maps = meta.embed_students(self.space, self.teacher.variables, encs, self.noise,
                               num_classes=self.teacher.num_classes, chunk=self.chunk)
    task = self.support._replace(maps=maps, arch=self._features(jnp.asarray(encs)),
                                 labels=jnp.zeros((len(encs),), jnp.float32))
    scores = np.asarray(jax.device_get(self._predict(self.adapted_params(), task)), np.float32)
    # the predictor's and the feature map's new programs (the embedding's own jit is not counted)
    compiled = sum(self.trace_counts.values()) - before
    return Evaluation(scores=scores, seconds=time.perf_counter() - t0, num_compilations=compiled)


EVALUATORS: dict[str, Callable[..., Any]] = {"short_kd": ShortKDEvaluator, "tabular": TabularEvaluator,
                                             "predictor": PredictorEvaluator}
