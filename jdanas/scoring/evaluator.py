"""A zero-cost proxy as a search evaluator, and randomly initialised teachers for scoring."""
from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np

from jdanas.evaluators import Evaluation, ScoreKind
from jdanas.models.zoo import get_model
from jdanas.scoring.init import abstract_variables
from jdanas import lowering as lowering_lib
from jdanas.scoring.population import ProgramCache, score_population
from jdanas.scoring.proxies import PROXY_INFO, PROXIES
from jdanas.spaces.base import AbstractSearchSpace
from jdanas.teachers import Teacher


def random_teacher(name: str, num_classes: int, input_shape: tuple[int, ...] = (32, 32, 3)) -> Teacher:
  """A zoo teacher without trained weights (``variables`` are abstract shapes).

  DisWOT scores against a randomly initialised teacher; :func:`score_population` (with the default
  ``teacher_init="random"``) draws its weights from the scoring key.
  """
  module = get_model(name, num_classes)
  return Teacher(name=name, module=module, variables=abstract_variables(module, tuple(input_shape), None),
                 num_classes=int(num_classes), input_shape=tuple(input_shape), meta={"random": True})


class ZeroCostEvaluator:
  """Scores candidates with one training-free proxy (higher = better).

  Called as ``evaluator(key, encodings) -> Evaluation`` like every evaluator of
  :mod:`jdanas.evaluators`. The call's ``key`` is ignored: the weights come from ``seed`` so that
  scores of different rounds are comparable (a candidate's score depends only on its
  architecture, the batch and ``seed``). Compiled programs are cached across calls in the
  evaluator's own :class:`jdanas.scoring.ProgramCache` (``programs``; one per proxy group and
  signature, all masked NB201 cells share one), so a search with a fixed number of asks compiles
  once; ``Evaluation.num_compilations`` counts the programs a call compiled. Scores reach the searcher as float32; SynFlow as ``log(synflow)`` (same
  order; the raw sums of deep cells exceed the float32 range).

  Args:
    space: the search space.
    teacher: a :class:`jdanas.teachers.Teacher` (or None for proxies without a teacher).
    images: ``float32[N, H, W, C]`` normalised batch; ``labels``: ``int[N]``.
    proxy: one name of :data:`jdanas.scoring.PROXIES`.
    num_classes: classifier width of the students (default: the teacher's).
    seed: fixes the weights.
    lowering: a name of :data:`jdanas.lowering.LOWERINGS` or a :class:`jdanas.lowering.Lowering`.
    **kwargs: passed to :func:`score_population` (``init``, ``relation_tap``, ``strategy``, ...);
      ``init`` defaults to the proxy's paper initialisation (``PROXY_INFO[proxy].paper_init``).
  """

  name = "zero_cost"

  def __init__(self, space: AbstractSearchSpace, teacher: Teacher | None, images: Any, labels: Any, proxy: str,
               *, num_classes: int | None = None, seed: int = 0,
               lowering: str | lowering_lib.Lowering = "auto", **kwargs):
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
  if proxy == "synflow":
    units = "log of the SynFlow sum"
  elif PROXY_INFO[proxy].needs_teacher:
    units = "negated distance to the teacher"
  elif proxy in ("params", "flops"):
    units = "count"
  else:
    units = "proxy value"
  return ScoreKind(f"zero_cost:{proxy}", units)


__all__ = ["ZeroCostEvaluator", "random_teacher", "zero_cost_score_kind"]
