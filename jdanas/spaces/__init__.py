"""Search spaces: a registry of name -> factory (keyword arguments -> space)."""
from __future__ import annotations

import functools
from typing import Any, Callable

from jdanas.spaces.base import AbstractSearchSpace
from jdanas.spaces.dass import DassSpace
from jdanas.spaces.kdas import KDASSpace
from jdanas.spaces.mobilenet import MobileNetSpace
from jdanas.spaces.nb201 import NB201Space
from jdanas.spaces.resnet_depth import ResNetDepthSpace
from jdanas.spaces.trade import TradeSpace
from jdanas.spaces.zoo import ZooSpace

SPACES: dict[str, Callable[..., AbstractSearchSpace]] = {
    "nb201": NB201Space,
    "nb201_masked": functools.partial(NB201Space, masked=True),
    "s1_resnet": ResNetDepthSpace,
    "s1_resnet_masked": functools.partial(ResNetDepthSpace, masked=True),
    "zoo": ZooSpace,
    "mobilenet": MobileNetSpace,
    "trade": TradeSpace,
    "dass_resnet": DassSpace,
    "kdas": KDASSpace,
    "kdas_masked": functools.partial(KDASSpace, masked=True),
}


def get_space(name: str, **kwargs: Any) -> AbstractSearchSpace:
  """Builds a registered space; unknown names raise a one-line error listing the choices."""
  if name not in SPACES:
    raise ValueError(f"space: unknown name {name!r}; choose one of {', '.join(sorted(SPACES))}")
  try:
    return SPACES[name](**kwargs)
  except TypeError as e:
    raise ValueError(f"space {name!r}: bad arguments {kwargs}: {e}") from None


__all__ = ["AbstractSearchSpace", "DassSpace", "KDASSpace", "NB201Space", "ResNetDepthSpace", "SPACES", "TradeSpace",
           "ZooSpace", "get_space"]
