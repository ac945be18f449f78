"""The ``short_kd`` evaluator: a short KD training of every proposal, scored by its validation accuracy.

The population engine (:mod:`jdanas.train.population`) trains the whole batch for the recipe's
``steps`` (the fidelity) against the teacher; compiled programs are cached across rounds. With
``evaluator.short_kd.distill=False`` the same run uses plain cross-entropy and no teacher
(``ce_val_accuracy``): the search score of the "NAS + KD" baseline of AKD (Liu et al., CVPR 2020).
"""
from __future__ import annotations

import jax
import numpy as np

from jdanas.evaluators.base import (BuildContext, Evaluation, EvaluatorBase, EvaluatorSettings, EvaluatorSpec,
                                    ScoreKind, read_recipe_section)
from jdanas.pipeline.schema import Field, Section
from jdanas.train.population import PopulationTrainer


class ShortKDEvaluator(EvaluatorBase):
  """Short-schedule KD training of every candidate against the trainer's teacher (see the module
  docstring); a trainer without a teacher gives the ``ce_val_accuracy`` evaluator."""

  name = "short_kd"

  def __init__(self, trainer: PopulationTrainer, *, progress: bool = False):
    self.trainer = trainer
    self.progress = progress
    distill = trainer.teacher is not None
    self.score_kind = ScoreKind("val_accuracy" if distill else "ce_val_accuracy", "fraction in [0, 1]")

  def __call__(self, key: jax.Array, encodings: np.ndarray) -> Evaluation:
    result = self.trainer.train(key, list(np.asarray(encodings)), progress=self.progress, desc="short KD")
    # The students' weights are not kept: final training starts from scratch (docs/benchmarks.md, "Final
    # training from the search's weights").
    return Evaluation(scores=result.accuracy.astype(np.float32),
                      seconds=result.train_seconds + result.compile_seconds,
                      num_compilations=result.num_compilations)


SECTION = Section("evaluator.short_kd", {
    "distill": Field("bool", True, doc="False: the same short run with plain cross-entropy, no teacher"),
}, doc="a recipe (the short KD run that scores a proposal; its fields: config.build_recipe), plus distill")


def settings(config, space, loss, *, inputs_optional: bool = False) -> EvaluatorSettings:
  values, recipe = read_recipe_section(SECTION, config.evaluator.short_kd, loss)
  return EvaluatorSettings(name="short_kd", values={"distill": values["distill"]}, recipe=recipe)


def build(ctx: BuildContext) -> ShortKDEvaluator:
  from jdanas.pipeline.setup import trainer, vanilla_recipe
  s = ctx.settings
  if not s.values["distill"]:  # plain cross-entropy, no teacher (AKD's "NAS + KD" search score)
    return ShortKDEvaluator(trainer(ctx.plan, ctx.data, vanilla_recipe(s.recipe), None, ctx.mesh, field=s.field))
  return ShortKDEvaluator(trainer(ctx.plan, ctx.data, s.recipe, ctx.teacher, ctx.mesh, field=s.field))


def programs(s: EvaluatorSettings, plan, encodings: np.ndarray) -> str:
  """The population trainer's programs (:mod:`jdanas.train.population`)."""
  if plan.compute.specialize is True:
    return f"up to {len(encodings)}, one per distinct architecture"
  if plan.space.can_specialize:
    return "one shared masked program, or one per architecture where compute.specialize specialises"
  shapes = len({plan.space.signature(e) for e in encodings})
  return f"one per distinct network shape: {shapes} among this round's {len(encodings)} proposals"


SPEC = EvaluatorSpec(name="short_kd", section=SECTION, settings=settings, build=build, accuracy=True,
                     summary=lambda s: "" if s.values["distill"] else " (plain cross-entropy, no teacher)",
                     programs=programs)

__all__ = ["SECTION", "SPEC", "ShortKDEvaluator"]
