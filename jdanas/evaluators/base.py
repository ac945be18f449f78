"""The evaluator contract: what a score is (:class:`ScoreKind`), what a call returns
(:class:`Evaluation`), the :class:`Evaluator` protocol the search loop calls, and the
:class:`EvaluatorSpec` an evaluator registers (its config section, its settings and its builder).

Kept free of the pipeline and of any evaluator's dependencies, so that importing the contract
(``jdanas.pipeline`` does, for its types) imports no evaluator.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, runtime_checkable

import jax
import numpy as np

if TYPE_CHECKING:  # annotations only: the pipeline imports this module
  from jdanas.pipeline.schema import Section
  from jdanas.train.recipe import Recipe


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
  the score (e.g. the reward's ``accuracy``, ``latency``, ``reward``: :mod:`jdanas.evaluators.reward`)."""
  scores: np.ndarray
  variables: list | None = None
  seconds: float = 0.0
  num_compilations: int = 0
  extras: dict | None = None


@runtime_checkable
class Evaluator(Protocol):
  """What the search loop calls, every method unconditionally (:class:`EvaluatorBase` gives the
  defaults of a stateless evaluator).

  * ``evaluator(key, encodings) -> Evaluation``: scores of an ``int[Q, D]`` batch, higher is better,
    NaN = failed, in the units of ``score_kind``.
  * ``state()``: the pytree a checkpoint saves with the searcher (None: nothing to save), so that
    ``restore(state)`` on a fresh evaluator continues bit-identically.
  * ``resume(ledger)``: refills what can be rebuilt from the restored ledger rows (e.g. cached latencies).
  * ``describe()``: settings for the report (a JSON dict), or None.
  """
  name: str
  score_kind: ScoreKind

  def __call__(self, key: jax.Array, encodings: np.ndarray) -> Evaluation: ...

  def state(self) -> Any | None: ...

  def restore(self, state: Any) -> None: ...

  def resume(self, ledger: list[dict]) -> None: ...

  def describe(self) -> dict | None: ...


class EvaluatorBase:
  """Defaults of the :class:`Evaluator` protocol for a stateless evaluator (a subclass defines ``__call__``)."""

  name: str = ""
  score_kind: ScoreKind

  def state(self) -> Any | None:
    """None: nothing to checkpoint."""
    return None

  def restore(self, state: Any) -> None:
    """A stateless evaluator has nothing to restore; a state given to it is a caller's mistake."""
    if state is not None:
      raise ValueError(f"the {self.name or type(self).__name__} evaluator is stateless; got a state to restore")

  def resume(self, ledger: list[dict]) -> None:
    """Nothing to rebuild from the ledger."""
    del ledger

  def describe(self) -> dict | None:
    return None


@dataclasses.dataclass(frozen=True)
class EvaluatorSettings:
  """``config.evaluator`` checked (``Plan.evaluator``): the chosen evaluator and what builds it.

  Attributes:
    name: ``evaluator.name`` (a key of :data:`jdanas.evaluators.EVALUATORS`).
    values: its subsection's values, defaults filled in (the spec's :class:`~jdanas.pipeline.schema.Section`).
    recipe: the training recipe of an evaluator that trains (``short_kd``, ``one_shot``), else None.
    reward: ``evaluator.reward``'s values (``latency_model``, ``target``, ``alpha``, ``beta``,
      ``batch_size``, ``repeats``), or None without a reward (:mod:`jdanas.evaluators.reward`).
    built: an evaluator the spec's ``settings`` already built to check the config and that needs nothing
      from the data (``tabular``: the table read once), handed to the run by its ``build``; else None.
  """
  name: str
  values: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  recipe: Recipe | None = None
  reward: dict | None = None
  built: Any = dataclasses.field(default=None, compare=False, repr=False)

  @property
  def field(self) -> str:
    """The config section of the evaluator, e.g. ``"evaluator.short_kd"`` (error messages)."""
    return f"evaluator.{self.name}"


@dataclasses.dataclass(frozen=True)
class BuildContext:
  """What an evaluator is built from once the data is loaded (:func:`jdanas.evaluators.build`).

  ``teacher_val``: the teacher's validation accuracy where the caller has it (else None)."""
  plan: Any  # jdanas.pipeline.config.Plan
  data: Any  # jdanas.data.Dataset
  teacher: Any  # jdanas.teachers.Teacher
  seed: int
  mesh: Any = None
  teacher_val: float | None = None

  @property
  def settings(self) -> EvaluatorSettings:
    return self.plan.evaluator


@dataclasses.dataclass(frozen=True)
class EvaluatorSpec:
  """One registered evaluator.

  Attributes:
    name: ``evaluator.name``.
    section: the :class:`~jdanas.pipeline.schema.Section` ``evaluator.<name>``: every field's type,
      default, choices and range, declared once (validation, ``--show_config`` and CHOICES read it).
    settings: ``settings(config, space, loss, *, inputs_optional) -> EvaluatorSettings``: the section
      read, the cross-field checks (the space, the teacher, the data section), the recipe where it has
      one; raises :class:`~jdanas.pipeline.schema.ConfigError`. ``inputs_optional``: an absent input
      file raises no :class:`~jdanas.pipeline.config.MissingInput` (``--show_config``).
    build: ``build(ctx: BuildContext) -> Evaluator``.
    accuracy: its score is an accuracy, so ``evaluator.reward`` may wrap it.
    summary: ``summary(settings) -> str``: what ``--show_config`` says after the name (e.g. " (plain
      cross-entropy, no teacher)"); "" by default.
    programs: ``programs(settings, plan, encodings) -> str | None``: what the first evaluation compiles
      (the search's ``[search] compiling ...`` note); None: nothing.
    check_data: ``check_data(settings, data)``: checks against the loaded data before compute, or None.
    one_teacher: why the evaluator needs a single teacher network ("" = an ensemble teacher works too);
      checked before its section, as ``config.evaluator.name: <one_teacher>``.
  """
  name: str
  section: Section
  settings: Callable[..., EvaluatorSettings]
  build: Callable[[BuildContext], Evaluator]
  accuracy: bool = False
  summary: Callable[[EvaluatorSettings], str] = lambda settings: ""
  programs: Callable[[EvaluatorSettings, Any, np.ndarray], str | None] = lambda settings, plan, encodings: None
  check_data: Callable[[EvaluatorSettings, Any], None] | None = None
  one_teacher: str = ""


def read_recipe_section(section: Section, sub, loss) -> tuple[dict, Recipe]:
  """A recipe subsection (``evaluator.short_kd``, ``evaluator.one_shot``): its recipe (built and checked
  by :func:`jdanas.pipeline.config.build_recipe`, which also refuses unknown fields) and the values of
  ``section``'s own fields (e.g. ``distill``)."""
  from jdanas.pipeline.config import build_recipe
  recipe = build_recipe(sub, section.name, loss, extra=tuple(section.fields))
  return section.read({k: sub[k] for k in section.fields if k in sub}), recipe


__all__ = ["BuildContext", "Evaluation", "Evaluator", "EvaluatorBase", "EvaluatorSettings", "EvaluatorSpec",
           "ScoreKind", "read_recipe_section"]
