"""Randomly initialised teachers for scoring (DisWOT scores against one). The search evaluator of a proxy
is :class:`jdanas.evaluators.zero_cost.ZeroCostEvaluator`."""
from __future__ import annotations

from jdanas.models.zoo import get_model
from jdanas.scoring.init import abstract_variables
from jdanas.teachers import Teacher


def random_teacher(name: str, num_classes: int, input_shape: tuple[int, ...] = (32, 32, 3)) -> Teacher:
  """A zoo teacher without trained weights (``variables`` are abstract shapes).

  DisWOT scores against a randomly initialised teacher; :func:`score_population` (with the default
  ``teacher_init="random"``) draws its weights from the scoring key.
  """
  module = get_model(name, num_classes)
  return Teacher(name=name, module=module, variables=abstract_variables(module, tuple(input_shape), None),
                 num_classes=int(num_classes), input_shape=tuple(input_shape), meta={"random": True})


__all__ = ["random_teacher"]
