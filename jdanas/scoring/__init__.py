"""Training-free scoring: DisWOT, KD-based and classical zero-cost proxies, batched over candidates.

* :func:`score_population` -- scores ``P`` architectures of any space on one batch; all masked
  NB201 cells share one compiled program per proxy group.
* :data:`PROXIES` / :data:`PROXY_INFO` -- proxy names, references, signs (higher = better) and
  initialisations; the table is in :mod:`jdanas.scoring.proxies`.
* :class:`ZeroCostEvaluator` -- a proxy as a search evaluator (``evaluator(key, encodings)``).

The distances behind DisWOT and the KD-based proxies are the distillation losses of
:mod:`jdanas.distill` (``semantic_distance``, ``sp_loss``, ``soft_kd_loss``, ...), averaged over
the batch.
"""
from jdanas.scoring.evaluator import ZeroCostEvaluator, random_teacher
from jdanas.scoring.init import INITS, gaussian_variables, torch_variables
from jdanas.scoring.population import SCORE_STRATEGIES, ProgramCache, clear_caches, score_population
from jdanas.scoring.proxies import PROXIES, PROXY_INFO

__all__ = ["INITS", "PROXIES", "PROXY_INFO", "ProgramCache", "SCORE_STRATEGIES", "ZeroCostEvaluator", "clear_caches",
           "gaussian_variables", "random_teacher", "score_population", "torch_variables"]
