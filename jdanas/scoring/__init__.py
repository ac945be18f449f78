"""Training-free scoring: DisWOT, KD-based and classical zero-cost proxies, batched over candidates.

* :func:`score_population` -- scores ``P`` architectures of any space on one batch; all masked
  NB201 cells share one compiled program per proxy group.
* :data:`PROXIES` / :data:`PROXY_INFO` -- proxy names, references, signs (higher = better) and
  initialisations; the table is in :mod:`jdanas.scoring.proxies`.
* :func:`random_teacher` -- a zoo teacher without trained weights (DisWOT scores against one).

The search evaluator of a proxy is :class:`jdanas.evaluators.zero_cost.ZeroCostEvaluator`.

The distances behind DisWOT and the KD-based proxies are the distillation losses of
:mod:`jdanas.distill` (``semantic_distance``, ``sp_loss``, ``soft_kd_loss``, ...), averaged over
the batch.
"""
from jdanas.scoring.init import INITS, gaussian_variables, torch_variables
from jdanas.scoring.population import SCORE_STRATEGIES, ProgramCache, clear_caches, score_population
from jdanas.scoring.proxies import PROXIES, PROXY_INFO
from jdanas.scoring.teacher import random_teacher

__all__ = ["INITS", "PROXIES", "PROXY_INFO", "ProgramCache", "SCORE_STRATEGIES", "clear_caches",
           "gaussian_variables", "random_teacher", "score_population", "torch_variables"]
