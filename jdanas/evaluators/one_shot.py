"""The ``one_shot`` evaluator: ENAS-style weight sharing (the protocol KDAS searches with) as a search score.

Each round it trains the shared weights of a masked supernet (:class:`jdanas.train.oneshot.SharedWeights`)
for ``steps_per_round`` steps on the round's children (the controller's proposals), then scores each
child by its held-out accuracy with the shared weights. The shared weights and the data position are
its :meth:`OneShotEvaluator.state`, which the search checkpoints with the controller, so a resumed
search continues bit-identically. The supernet training is imported when the evaluator is built.

``evaluator.one_shot.derive = N`` adds ENAS's derive step after the last round
(:func:`jdanas.pipeline.search.derive_candidates`): N children sampled from the final controller plus every
distinct feasible child of the ledger, all scored with the *final* shared weights (:meth:`OneShotEvaluator.derive`),
so the final training's candidates are ranked by scores of one age, not by ledger scores measured with the
weights of the round each child was proposed in.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import numpy as np

from jdanas import lowering as lowering_lib
from jdanas.evaluators.base import (BuildContext, Evaluation, EvaluatorBase, EvaluatorSettings, EvaluatorSpec,
                                    ScoreKind, read_recipe_section)
from jdanas.pipeline.schema import ConfigError, Field, Section, need


class OneShotEvaluator(EvaluatorBase):
  """Shared-weight training and scoring of the children of a search (see the module docstring).

  Args:
    space: a masked space (one signature for every architecture).
    data: a :class:`jdanas.data.Dataset`.
    recipe: the shared weights' recipe; ``steps`` is the total over the search (the schedule's
      length), ``batch_size`` the batch of every step, ``loss`` e.g. ``KD_PRESETS["oracle"]``.
    steps_per_round: shared-weight steps per call.
    teacher: required when the loss has a soft term.
    seed: the shared weights' initialisation and the data stream derive from it.
    val_examples: size of the held-out scoring set (0: the whole validation split).
    lowering: a name of :data:`jdanas.lowering.LOWERINGS` or a Lowering.
    bn: the BatchNorm statistics a child is scored with, ``"running"`` or ``"batch"`` (ENAS's;
      :data:`jdanas.train.oneshot.BN_MODES`).
  """

  name = "one_shot"
  score_kind = ScoreKind("one_shot_val_accuracy", "fraction in [0, 1]")

  def __init__(self, space, data, *, recipe, steps_per_round: int, teacher=None, seed: int = 0,
               val_examples: int = 0, lowering: str | lowering_lib.Lowering = "auto", bn: str = "running"):
    from jdanas.train.oneshot import SharedWeights
    if steps_per_round < 1:
      raise ValueError(f"steps_per_round: must be >= 1, got {steps_per_round}")
    self.steps_per_round = int(steps_per_round)
    self.shared = SharedWeights(space, data, recipe=recipe, teacher=teacher, seed=seed, val_examples=val_examples,
                                lowering=lowering, bn=bn)
    self.space, self.recipe = space, recipe

  @property
  def trace_counts(self) -> dict[str, int]:
    """Programs traced so far, by kind (``init``, ``step``, ``score``)."""
    return self.shared.trace_counts

  def __call__(self, key: jax.Array, encodings: np.ndarray) -> Evaluation:
    """Trains the shared weights on the children ``encodings`` (``int[Q, D]``), then scores them.
    ``key`` is unused: the data stream is the evaluator's own (its position is in the state)."""
    del key
    encs = self.shared.children(encodings)
    t0 = time.perf_counter()
    self.shared.train(encs, self.steps_per_round)
    scores = self.shared.score(encs)
    return Evaluation(scores=scores, seconds=time.perf_counter() - t0, num_compilations=self.shared.new_programs())

  def score(self, encodings: np.ndarray) -> np.ndarray:
    """The held-out accuracy of each child of ``encodings`` (``int[Q, D]``) with the current shared
    weights, without training them (ENAS's derive step: rank candidates after the search)."""
    return self.shared.score(self.shared.children(encodings))

  def derive(self, encodings: np.ndarray) -> Evaluation:
    """:meth:`score` as an :class:`Evaluation` (the form a call returns, which the reward wraps the same way)."""
    t0 = time.perf_counter()
    scores = self.score(encodings)
    return Evaluation(scores=scores, seconds=time.perf_counter() - t0, num_compilations=self.shared.new_programs())

  def state(self) -> Any:
    """The shared weights and the data position (:class:`jdanas.train.oneshot.OneShotState`)."""
    return self.shared.state

  def restore(self, state: Any) -> None:
    """Continues from a checkpointed :meth:`state`."""
    self.shared.restore(state)


SECTION = Section("evaluator.one_shot", {
    "val_examples": Field("int", 0, lo=0, note="0 = the whole validation split",
                          doc="held-out examples that score a child"),
    "bn": Field("str", "running", choices=lambda: __import__("jdanas.train.oneshot", fromlist=["BN_MODES"]).BN_MODES,
                doc="BatchNorm statistics of child scoring: 'running' (eval mode, shared running averages) or "
                    "'batch' (ENAS's: each held-out batch's own statistics)"),
    "derive": Field("int", 0, lo=0, note="0 = off: the final candidates are the ledger's best scores",
                    doc="N > 0: after the last round the final training's top_k are the best by a score with the "
                        "final shared weights of (a) N children sampled from the final controller (ENAS's derive) "
                        "and (b) every distinct feasible child of the ledger (a jdanas addition)"),
}, doc="a recipe (steps: shared-weight steps per round; its fields: config.build_recipe), plus val_examples, bn, "
       "derive")


def settings(config, space, loss, *, inputs_optional: bool = False) -> EvaluatorSettings:
  del inputs_optional
  from jdanas.train.oneshot import has_one_signature
  need(has_one_signature(space), "space.name", f"the one_shot evaluator shares one supernet's weights: it needs a "
       f"masked space (kdas_masked, nb201_masked, s1_resnet_masked), got {space.name!r}")
  values, recipe = read_recipe_section(SECTION, config.evaluator.one_shot, loss)
  return EvaluatorSettings(name="one_shot", values=values, recipe=recipe)


def build(ctx: BuildContext) -> OneShotEvaluator:
  s, plan = ctx.settings, ctx.plan
  # the schedule spans the whole search: rounds x steps per round
  recipe = dataclasses.replace(s.recipe, steps=s.recipe.steps * plan.rounds)
  try:
    return OneShotEvaluator(plan.space, ctx.data, recipe=recipe, steps_per_round=s.recipe.steps, teacher=ctx.teacher,
                            seed=int(ctx.seed), val_examples=s.values["val_examples"], lowering=plan.compute.lowering,
                            bn=s.values["bn"])
  except ValueError as e:
    raise ConfigError(f"config.evaluator.one_shot: {e}") from None


SPEC = EvaluatorSpec(name="one_shot", section=SECTION, settings=settings, build=build, accuracy=True,
                     summary=lambda s: (f" (derive: {s.values['derive']} sampled children and the ledger's, scored "
                                        f"with the final shared weights, pick the final top_k)" if s.values["derive"]
                                        else ""),
                     programs=lambda s, plan, encodings: "2: the shared weights' training step and the children's "
                     "scoring")

__all__ = ["OneShotEvaluator", "SECTION", "SPEC"]
