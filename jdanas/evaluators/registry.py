"""The registry of evaluators: ``evaluator.name`` -> :class:`~jdanas.evaluators.base.EvaluatorSpec`.

The pipeline reads evaluators only through this module: :func:`settings` (the config checked, in
:func:`jdanas.pipeline.config.build_plan`), :func:`build` (the evaluator of a run, wrapped into the
reward of ``evaluator.reward`` when the config has one) and :func:`choices` (the listing of
``--show_config`` and :data:`jdanas.pipeline.config.CHOICES`).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

from jdanas.evaluators import one_shot, predictor, reward, short_kd, tabular, zero_cost
from jdanas.evaluators.base import BuildContext, Evaluator, EvaluatorSettings, EvaluatorSpec
from jdanas.pipeline.schema import need

# One line per evaluator (the order is the order --show_config lists them in).
EVALUATORS: dict[str, EvaluatorSpec] = {spec.name: spec for spec in (
    short_kd.SPEC, tabular.SPEC, zero_cost.SPEC, one_shot.SPEC, predictor.SPEC)}


def get_spec(name: str) -> EvaluatorSpec:
  """The spec of ``evaluator.name`` (a ``config.evaluator.name`` error for an unknown one)."""
  need(name in EVALUATORS, "evaluator.name", f"{name!r} is not one of {', '.join(EVALUATORS)}")
  return EVALUATORS[name]


def settings(config, space, loss, *, inputs_optional: bool = False) -> EvaluatorSettings:
  """``config.evaluator`` checked by its spec (the other subsections a config carries for
  ``--config.evaluator.name=...`` switches are not read), with ``evaluator.reward``."""
  from jdanas.pipeline.config import teacher_size
  ev = config.evaluator
  spec = get_spec(ev.name)
  if spec.one_teacher:
    need(teacher_size(config.teacher) <= 1, "evaluator.name", spec.one_teacher)
  need(ev.name in ev, f"evaluator.{ev.name}", f"section is missing (needed by evaluator.name={ev.name!r})")
  s = spec.settings(config, space, loss, inputs_optional=inputs_optional)
  return dataclasses.replace(s, reward=reward.settings(ev, spec))


def build(ctx: BuildContext) -> Evaluator:
  """The evaluator of ``ctx.plan``, wrapped into the latency-aware reward where the plan has one."""
  inner = EVALUATORS[ctx.settings.name].build(ctx)
  return inner if ctx.settings.reward is None else reward.wrap(inner, ctx)


def choices() -> dict[str, Callable[[], Sequence]]:
  """``{"evaluator.<name>.<field>": allowed values}`` of every registered section (and ``evaluator.name``,
  ``evaluator.reward``), read from the sections' declarations."""
  out: dict[str, Callable[[], Sequence]] = {"evaluator.name": lambda: tuple(EVALUATORS)}
  for spec in EVALUATORS.values():
    out.update(spec.section.choices())
  out.update(reward.SECTION.choices())
  return out


__all__ = ["EVALUATORS", "build", "choices", "get_spec", "settings"]
