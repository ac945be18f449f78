"""The importable pipeline behind ``run.py``, in steps a notebook can call one by one::

  from jdanas import pipeline
  searched = pipeline.search(config, workdir)    # data, teacher, search (resumes from checkpoints)
  final = pipeline.train_final(searched)         # full KD of the top-K, no-KD comparison, export
  report = pipeline.report(searched, final)      # report.json / report.md / plots / summary

or all three with ``pipeline.run(config, workdir)``.

1. **Data** (``config.data``) and **teacher** (``config.teacher``: loaded from ``path`` or trained
   and cached in ``<workdir>/teacher``).
2. **Search** (``config.search.rounds`` rounds): the searcher proposes ``Q`` encodings, the evaluator
   (``config.evaluator.name`` with its subsection: ``short_kd``, a short KD run of the population
   engine; ``tabular``, a NAS-Bench-201 table; ``zero_cost``, a training-free proxy of
   :mod:`jdanas.scoring`, e.g. DisWOT) scores them, the searcher is told. Budgets
   (``config.constraint``) become a jittable predicate that the searcher receives as ``feasible``
   and checks for every proposal; a proposal still over budget is told as failed. Searcher state,
   ledger and top-K parameters are checkpointed every round; per-round metrics go to
   ``metrics.jsonl`` and TensorBoard. Keys and batches are functions of ``(seed, round, step)``, so
   a resumed run ends with the same ledger as an uninterrupted one.
3. **Final training** (:mod:`jdanas.pipeline.final`).
4. **Report and export**: ``report.json`` (with what the search score is: kind, units,
   higher-is-better), ``report.md``, plots, and the chosen student in ``<workdir>/export``
   (reload with :func:`jdanas.load_student`).

The config schema and its validation are in :mod:`jdanas.pipeline.config`; every value is
checked (by building the objects the run uses) before any compute.
"""
from __future__ import annotations

import pathlib
from typing import Any

import ml_collections

from jdanas.pipeline.config import ConfigError, Plan, build_plan, validate_config
from jdanas.pipeline.final import train_final
from jdanas.pipeline.search import SearchResult, search
from jdanas.pipeline.summary import report


def run(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict[str, Any]:
  """Runs (or resumes) the whole pipeline in ``workdir``; returns the report dict."""
  searched = search(config, workdir)
  return report(searched, train_final(searched))


__all__ = ["ConfigError", "Plan", "SearchResult", "build_plan", "report", "run", "search", "train_final",
           "validate_config"]
