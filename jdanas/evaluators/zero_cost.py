"""The ``zero_cost`` evaluator: one training-free proxy of :mod:`jdanas.scoring` as a search score.

Its scores are the proxy's own values (a negated distance to the teacher for DisWOT and the other
KD-based proxies, ``log`` of the SynFlow sum, ...), comparable only with each other. The scoring
package is optional: it is imported when this evaluator is configured or built, not by the registry.
"""
from __future__ import annotations

import importlib
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np

from jdanas import lowering as lowering_lib
from jdanas.distill import SEMANTIC_MISMATCH, TAPS, is_tap
from jdanas.evaluators.base import BuildContext, Evaluation, EvaluatorBase, EvaluatorSettings, EvaluatorSpec, ScoreKind
from jdanas.pipeline.schema import ConfigError, Field, Section, need
from jdanas.spaces.base import AbstractSearchSpace


class ZeroCostEvaluator(EvaluatorBase):
  """Scores candidates with one training-free proxy (higher = better).

  The call's ``key`` is ignored: the weights come from ``seed`` so that scores of different rounds
  are comparable (a candidate's score depends only on its architecture, the batch and ``seed``).
  Compiled programs are cached across calls in the evaluator's own :class:`jdanas.scoring.ProgramCache`
  (``programs``; one per proxy group and signature, all masked NB201 cells share one), so a search
  with a fixed number of asks compiles once; ``Evaluation.num_compilations`` counts the programs a call
  compiled. Scores reach the searcher as float32; SynFlow as ``log(synflow)`` (same order; the raw sums
  of deep cells exceed the float32 range).

  Args:
    space: the search space.
    teacher: a :class:`jdanas.teachers.Teacher` (or None for proxies without a teacher).
    images: ``float32[N, H, W, C]`` normalised batch; ``labels``: ``int[N]``.
    proxy: one name of :data:`jdanas.scoring.PROXIES`.
    num_classes: classifier width of the students (default: the teacher's).
    seed: fixes the weights.
    lowering: a name of :data:`jdanas.lowering.LOWERINGS` or a :class:`jdanas.lowering.Lowering`.
    **kwargs: passed to :func:`jdanas.scoring.score_population` (``init``, ``relation_tap``,
      ``strategy``, ...); ``init`` defaults to the proxy's paper initialisation (``PROXY_INFO[proxy].paper_init``).
  """

  name = "zero_cost"

  def __init__(self, space: AbstractSearchSpace, teacher, images: Any, labels: Any, proxy: str,
               *, num_classes: int | None = None, seed: int = 0,
               lowering: str | lowering_lib.Lowering = "auto", **kwargs):
    from jdanas.scoring import PROXIES, PROXY_INFO, ProgramCache
    if proxy not in PROXY_INFO:
      raise ValueError(f"evaluator.proxy: unknown proxy {proxy!r}; choose from {', '.join(PROXIES)}")
    if PROXY_INFO[proxy].needs_teacher and teacher is None:
      raise ValueError(f"evaluator.teacher: proxy {proxy!r} needs a teacher")
    if num_classes is None:
      if teacher is None:
        raise ValueError("evaluator.num_classes: give num_classes when there is no teacher")
      num_classes = teacher.num_classes
    self.space, self.teacher, self.proxy = space, teacher, proxy
    self.images = np.asarray(images, np.float32)
    self.labels = np.asarray(labels, np.int32)
    self.num_classes = int(num_classes)
    self.seed = int(seed)
    self.lowering = lowering_lib.resolve(lowering)
    self.programs = ProgramCache()
    self.kwargs = kwargs
    self.last_info: dict = {}
    self.score_kind = zero_cost_score_kind(proxy)

  def __call__(self, key: jax.Array, encodings: np.ndarray) -> Evaluation:
    from jdanas.scoring import score_population
    del key  # weights come from ``seed`` (see class docstring)
    t0 = time.perf_counter()
    info: dict = {}
    scores = score_population(jax.random.key(self.seed), self.space, np.asarray(encodings), self.images,
                              self.labels, proxies=(self.proxy,), num_classes=self.num_classes,
                              teacher=self.teacher, lowering=self.lowering, programs=self.programs, info=info,
                              **self.kwargs)[self.proxy]
    self.last_info = info
    if self.proxy == "synflow":  # >= 0 and beyond the float32 range on deep cells; log keeps the order
      with np.errstate(divide="ignore"):
        scores = np.log(scores)
    return Evaluation(scores=scores.astype(np.float32), seconds=time.perf_counter() - t0,
                      num_compilations=info["num_compilations"])


def zero_cost_score_kind(proxy: str) -> ScoreKind:
  """What the scores of :class:`ZeroCostEvaluator` with ``proxy`` are (higher is better)."""
  from jdanas.scoring import PROXY_INFO
  if proxy == "synflow":
    units = "log of the SynFlow sum"
  elif PROXY_INFO[proxy].needs_teacher:
    units = "negated distance to the teacher"
  elif proxy in ("params", "flops"):
    units = "count"
  else:
    units = "proxy value"
  return ScoreKind(f"zero_cost:{proxy}", units)


def _scoring(module: str, name: str) -> Callable[[], Sequence]:
  """A choice tuple of ``jdanas.scoring<module>``, imported only when asked (a zero_cost config, --show_config)."""
  return lambda: getattr(importlib.import_module(f"jdanas.scoring{module}"), name)


def _tap(v) -> str | None:
  return None if is_tap(v) else f"must be one of {', '.join(TAPS)} or stageI (I >= 1)"


SECTION = Section("evaluator.zero_cost", {
    "proxy": Field("str", choices=_scoring("", "PROXIES"), doc="the proxy (jdanas.scoring.PROXY_INFO)"),
    "batch_size": Field("int", 64, lo=1, doc="training examples of the one fixed scoring batch"),
    "init": Field("str", None, choices=_scoring("", "INITS"),
                  doc="the students' initialisation (None or '': each proxy's paper initialisation)"),
    "relation_tap": Field("str", "pre_pool", check=_tap, doc="the feature the relation terms compare"),
    "teacher_init": Field("str", "random", choices=_scoring(".population", "TEACHER_INITS"),
                          doc="'random': a randomly initialised teacher (DisWOT); 'trained': the run's teacher"),
    "semantic_mismatch": Field("str", "class_gram", choices=lambda: SEMANTIC_MISMATCH,
                               doc="DisWOT's semantic term when student and teacher class counts differ"),
}, doc="a training-free proxy (jdanas.scoring)")


def settings(config, space, loss, *, inputs_optional: bool = False) -> EvaluatorSettings:
  """The section, a batch within the training split, and ``compute.score_strategy`` (read only by this
  evaluator)."""
  del space, loss, inputs_optional
  from jdanas.pipeline.config import choices
  try:
    importlib.import_module("jdanas.scoring.population")  # its choices are read through the section
  except ImportError as e:
    raise ConfigError(f"config.evaluator.name: 'zero_cost' needs the jdanas.scoring package ({e})") from None
  sub = dict(config.evaluator.zero_cost)
  if not sub.get("init"):  # None / "": each proxy's paper initialisation (scoring.PROXY_INFO)
    sub.pop("init", None)
  values = SECTION.read(sub)
  data = config.data
  bs, limit = values["batch_size"], data.get("train_limit") or 0
  need(not limit or bs <= limit * (1 - data.val_fraction), "evaluator.zero_cost.batch_size",
       f"{bs} exceeds the training split (train_limit {limit}, val_fraction {data.val_fraction})")
  strategy = config.compute.get("score_strategy", "auto")
  allowed = choices("compute.score_strategy")
  need(strategy in allowed, "compute.score_strategy", f"{strategy!r} is not one of {', '.join(map(str, allowed))}")
  return EvaluatorSettings(name="zero_cost", values=values)


def check_data(s: EvaluatorSettings, data) -> None:
  n, bs = len(data.train), s.values["batch_size"]
  need(bs <= n, "evaluator.zero_cost.batch_size", f"{bs} is larger than the training split ({n} examples)")


def scoring_batch(s: EvaluatorSettings, data, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """The fixed batch the evaluator scores on: ``evaluator.zero_cost.batch_size`` training examples
  drawn without replacement with ``seed``, normalised (float32 NHWC), and their labels."""
  from jdanas.train.batching import normalize
  n = int(s.values["batch_size"])
  idx = np.sort(np.random.default_rng(seed).choice(len(data.train.y), n, replace=False))
  x = np.asarray(normalize(np.asarray(data.train.x[idx]), data.mean, data.std), np.float32)
  return x, np.asarray(data.train.y[idx], np.int32)


def build(ctx: BuildContext) -> ZeroCostEvaluator:
  s, plan, data = ctx.settings, ctx.plan, ctx.data
  kw = {k: v for k, v in s.values.items() if k not in ("proxy", "batch_size")}
  x, y = scoring_batch(s, data, ctx.seed)
  try:
    return ZeroCostEvaluator(plan.space, ctx.teacher, x, y, s.values["proxy"], num_classes=data.num_classes,
                             seed=int(ctx.seed), strategy=plan.compute.score_strategy,
                             lowering=plan.compute.lowering, **kw)
  except ValueError as e:
    raise ConfigError(f"config.evaluator.zero_cost: {e}") from None


SPEC = EvaluatorSpec(name="zero_cost", section=SECTION, settings=settings, build=build,
                     summary=lambda s: f" (proxy {s.values['proxy']})",
                     programs=lambda s, plan, encodings: f"the {s.values['proxy']} proxy's scoring program(s)",
                     check_data=check_data,
                     one_teacher="zero_cost proxies compare features with ONE teacher; an ensemble teacher needs "
                     "short_kd, one_shot or tabular")

__all__ = ["SECTION", "SPEC", "ZeroCostEvaluator", "scoring_batch", "zero_cost_score_kind"]
