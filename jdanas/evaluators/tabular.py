"""The ``tabular`` evaluator: a lookup in a table of measured accuracies, for benchmarking searchers cheaply.

An NB201 table (:class:`jdanas.benchmarks.nb201.NB201Table`; nb201 spaces; a column in percent is
returned divided by 100) or DisWOT's S1 table (:mod:`jdanas.benchmarks.diswot_s1`: CIFAR-100 top-1
trained alone, ``vanilla_top1``, or with KD, ``kd_top1``; s1_resnet spaces; percent top-1 as stored).
It never reads a test column unless told to, and is never used inside a real distillation-aware search.
"""
from __future__ import annotations

import pathlib

import jax
import numpy as np

from jdanas.evaluators.base import BuildContext, Evaluation, EvaluatorBase, EvaluatorSettings, EvaluatorSpec, ScoreKind
from jdanas.errors import FieldError
from jdanas.pipeline.schema import ConfigError, Field, Section, need

# the table of the ``tabular`` evaluator by space, and its default column
TABULAR_SPACES = {"nb201": "NB201", "nb201_masked": "NB201", "s1_resnet": "DisWOT S1", "s1_resnet_masked": "DisWOT S1"}
TABULAR_DEFAULT_COLUMN = {"NB201": "cifar10_valid_acc", "DisWOT S1": "kd_top1"}


class TabularEvaluator(EvaluatorBase):
  """Table lookup: an NB201 table (``column`` values in percent are returned as fractions) or
  DisWOT's S1 table (:class:`jdanas.benchmarks.diswot_s1.DisWOTS1Table`, tied to an ``s1_resnet``
  space; percent top-1 returned as stored). A table that describes its own scores has a
  ``score_kind(column)`` method, which also checks the column. Deterministic: ``key`` is unused."""

  name = "tabular"

  def __init__(self, table, column: str = "cifar10_valid_acc"):
    self.table, self.column = table, column
    if hasattr(table, "score_kind"):  # a table that states its units (DisWOT's S1: percent)
      self.score_kind, self._divisor = table.score_kind(column), 1.0
      return
    if column not in table.columns:
      raise FieldError("column", f"{column!r} is not a column of {table.path}; "
                       f"choose from {', '.join(sorted(table.columns))}", owner="evaluator.tabular")
    units = "fraction in [0, 1]" if "acc" in column else "table value / 100"
    self.score_kind, self._divisor = ScoreKind(f"tabular:{column}", units), 100.0

  def __call__(self, key: jax.Array, encodings: np.ndarray) -> Evaluation:
    del key  # deterministic
    values = self.table.lookup(self.column, np.asarray(encodings))
    return Evaluation(scores=(values / self._divisor).astype(np.float32))


def build_tabular(table: str, column: str, space=None) -> TabularEvaluator:
  """The ``tabular`` evaluator: the NB201 table file for an nb201 space (or no space), DisWOT's S1
  table (checked against the space) for an s1_resnet space; a bad table or column is a
  ``config.evaluator.tabular.<field>`` (or ``config.space.<field>``) :class:`ConfigError`."""
  try:
    if space is not None and TABULAR_SPACES.get(space.name) == "DisWOT S1":
      from jdanas.benchmarks.diswot_s1 import DisWOTS1Table
      return TabularEvaluator(DisWOTS1Table(table, space), column)
    from jdanas.benchmarks.nb201 import NB201Table
    return TabularEvaluator(NB201Table(table), column)
  except FieldError as e:  # the table names the config field (evaluator.tabular.* or space.*)
    raise ConfigError(f"config.{e.owner}.{e.field}: {e.detail}") from None
  except ValueError as e:  # an unreadable table
    raise ConfigError(f"config.evaluator.tabular.table: {e}") from None


SECTION = Section("evaluator.tabular", {
    "table": Field("str", "", doc="the table file: NB201's (nb201 spaces) or DisWOT's S1 (s1_resnet spaces)"),
    "column": Field("str", "", doc="the scored column ('' = cifar10_valid_acc for NB201, kd_top1 for DisWOT S1)"),
}, doc="a table of measured accuracies (jdanas.benchmarks)")


def settings(config, space, loss, *, inputs_optional: bool = False) -> EvaluatorSettings:
  """The space has a table; the table exists and has the column (the table is read once here)."""
  del loss, inputs_optional  # a table is the config's own input, checked even for --show_config
  values = SECTION.read(config.evaluator.tabular)
  kind = TABULAR_SPACES.get(space.name)
  need(kind is not None, "evaluator.name", "'tabular' needs an nb201 space (an NB201 table) or an s1_resnet space "
       f"(DisWOT's S1 table), got {space.name!r}")
  need(bool(values["table"]) and pathlib.Path(values["table"]).exists(), "evaluator.tabular.table",
       f"{kind} table file {values['table']!r} does not exist")
  values["column"] = values["column"] or TABULAR_DEFAULT_COLUMN[kind]
  # the evaluator is built here (the table is read once); build() hands this one to the run
  return EvaluatorSettings(name="tabular", values=values,
                           built=build_tabular(values["table"], values["column"], space=space))


def build(ctx: BuildContext) -> TabularEvaluator:
  built = ctx.settings.built
  return built if built is not None else build_tabular(ctx.settings.values["table"], ctx.settings.values["column"],
                                                       space=ctx.plan.space)


SPEC = EvaluatorSpec(name="tabular", section=SECTION, settings=settings, build=build, accuracy=True,
                     summary=lambda s: f" ({s.values['column']} of {s.values['table']})")

__all__ = ["SECTION", "SPEC", "TABULAR_DEFAULT_COLUMN", "TABULAR_SPACES", "TabularEvaluator", "build_tabular"]
