"""Searchers: a registry of name -> factory ``(space, *, feasible=None, **kwargs) -> Searcher``,
plus wrappers.

Every searcher follows the pure ``init / ask / tell`` contract of :mod:`jdanas.searchers.base`;
wrappers (:func:`with_dedup`, :func:`with_constraint`) compose with any of them. Every factory
takes a budget the same way, as ``feasible`` (a jittable ``int32[D] -> bool[]`` predicate, e.g.
from :func:`cost_predicate`): ``diswot_evolution`` checks it for every child it draws, the others
wrap themselves in :func:`with_constraint` (:func:`constrained`).
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

from jdanas.searchers.base import (Archive, Searcher, archive_add, archive_best, archive_contains,
                                   archive_init, best_index, tell_metrics)
from jdanas.searchers.budgets import cost_predicate
from jdanas.searchers.controller import ControllerState, Policy, controller_policy, ppo, reinforce
from jdanas.searchers.diswot_evolution import DisWOTEvolutionState, diswot_evolution
from jdanas.searchers.evolution import EvolutionState, regularized_evolution
from jdanas.searchers.random_search import RandomSearchState, random_search
from jdanas.searchers.trust_region import TRBOState, casmopolitan, turbo, turbo_box
from jdanas.searchers.wrappers import (ConstraintState, DedupState, Predicate, constrained, duplicates,
                                       enumerate_encodings, mixed_radix_index, table_predicate,
                                       with_constraint, with_dedup)
from jdanas.spaces.base import AbstractSearchSpace

SEARCHERS: dict[str, Callable[..., Searcher]] = {
    "random": random_search,
    "regularized_evolution": regularized_evolution,
    "diswot_evolution": diswot_evolution,
    "turbo": turbo,
    "casmopolitan": casmopolitan,
    "reinforce": reinforce,
    "ppo": ppo,
}


def get_searcher(name: str, space: AbstractSearchSpace, *, feasible: Predicate | None = None,
                 **kwargs: Any) -> Searcher:
  """Builds a registered searcher with the budget predicate ``feasible`` (None = no budget);
  unknown names or keywords raise a one-line ``ValueError``."""
  if name not in SEARCHERS:
    raise ValueError(f"searcher: unknown name {name!r}; choose one of {', '.join(sorted(SEARCHERS))}")
  factory = SEARCHERS[name]
  try:
    inspect.signature(factory).bind(space, feasible=feasible, **kwargs)
  except TypeError as e:
    raise ValueError(f"searcher {name!r}: bad arguments {kwargs}: {e}") from None
  return factory(space, feasible=feasible, **kwargs)


__all__ = ["Archive", "ConstraintState", "ControllerState", "DedupState", "DisWOTEvolutionState",
           "EvolutionState", "Policy", "RandomSearchState", "SEARCHERS", "Searcher", "TRBOState",
           "archive_add", "archive_best", "archive_contains", "archive_init", "best_index", "casmopolitan",
           "constrained", "controller_policy", "cost_predicate", "diswot_evolution", "duplicates",
           "enumerate_encodings", "get_searcher", "mixed_radix_index", "ppo", "random_search",
           "regularized_evolution", "reinforce", "table_predicate", "tell_metrics", "turbo", "turbo_box",
           "with_constraint", "with_dedup"]
