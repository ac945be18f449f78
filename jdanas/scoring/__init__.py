"""Training-free scoring: DisWOT, KD-based and classical zero-cost proxies, batched over candidates.

* :func:`score_population` -- scores ``P`` architectures of any space on one batch; all masked
  NB201 cells share one compiled program per proxy group.
* :data:`PROXIES` / :data:`PROXY_INFO` -- proxy names, references and signs (higher = better);
  the table is in :mod:`jdanas.scoring.proxies`.
* :func:`semantic_loss` / :func:`relation_loss` -- DisWOT's two distances on plain arrays (also
  usable as training losses), :func:`classifier_gradient`.
* :class:`ZeroCostEvaluator` -- a proxy as a search evaluator (``evaluator(key, encodings)``).
"""
from jdanas.scoring.distances import (at_distance, classifier_gradient, fitnet_distance, kd_distance,
                                      pkt_distance, relation_loss, rkd_distance, semantic_form, semantic_loss)
from jdanas.scoring.evaluator import ZeroCostEvaluator, random_teacher
from jdanas.scoring.init import INITS, gaussian_variables, torch_variables
from jdanas.scoring.population import STRATEGIES, ProgramCache, clear_caches, score_population
from jdanas.scoring.proxies import PROXIES, PROXY_INFO

__all__ = ["INITS", "PROXIES", "PROXY_INFO", "ProgramCache", "STRATEGIES", "ZeroCostEvaluator", "at_distance",
           "classifier_gradient", "clear_caches", "fitnet_distance", "gaussian_variables", "kd_distance", "pkt_distance",
           "random_teacher", "relation_loss", "rkd_distance", "score_population", "semantic_form",
           "semantic_loss", "torch_variables"]
