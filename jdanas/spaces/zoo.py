"""A one-decision space over named zoo models (``jdanas.models.zoo.MODELS``).

Used to train teachers and predefined baseline students with the same population engine as
searched students (e.g. ResNet-20 vs WRN-16-2 vs a searched cell under one KD recipe).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Hashable

import flax.linen as nn
import numpy as np

from jdanas.spaces.base import AbstractSearchSpace, to_tuple


@dataclasses.dataclass(frozen=True)
class ZooSpace(AbstractSearchSpace):
  models: tuple[str, ...] = ("resnet20",)
  name = "zoo"

  def __post_init__(self):
    from jdanas.models.zoo import MODELS  # local: the zoo imports the space modules' blocks
    unknown = [m for m in self.models if m not in MODELS]
    if not self.models or unknown:
      raise ValueError(f"zoo.models: unknown model(s) {unknown or '(empty)'}; choose from {', '.join(sorted(MODELS))}")

  @property
  def num_choices(self) -> tuple[int, ...]:
    return (len(self.models),)

  def encode(self, arch: str) -> np.ndarray:
    if arch not in self.models:
      raise ValueError(f"zoo: {arch!r} is not one of {self.models}")
    return np.asarray([self.models.index(arch)], np.int32)

  def decode(self, enc: Any) -> str:
    return self.models[to_tuple(self.check(enc))[0]]

  def signature(self, enc: Any) -> Hashable:
    return self.decode(enc)

  def build(self, signature: Hashable, num_classes: int) -> nn.Module:
    from jdanas.models.zoo import get_model
    return get_model(str(signature), num_classes)
