"""The importable pipeline behind ``run.py``, in steps a notebook can call one by one::

  from jdanas import pipeline
  searched = pipeline.search(config, workdir)    # data, teacher, search (resumes from checkpoints)
  final = pipeline.train_final(searched)         # full KD of the top-K, no-KD comparison, export
  report = pipeline.report(searched, final)      # report.json / report.md / plots / summary

or all three with ``pipeline.run(config, workdir)``. A ``config.job='meta_train'`` config runs DaSS's
meta-training job instead (:mod:`jdanas.pipeline.meta_train`: tasks, Meta-SGD, a saved predictor that a
search's ``predictor`` evaluator reads).

1. **Data** (``config.data``) and **teacher** (``config.teacher``: loaded from ``path`` or trained
   and cached in ``<workdir>/teacher``).
2. **Search** (``config.search.rounds`` rounds): the searcher proposes ``Q`` encodings, the evaluator
   (``config.evaluator.name`` with its subsection: ``short_kd``, a short KD run of the population
   engine; ``tabular``, a NAS-Bench-201 table; ``zero_cost``, a training-free proxy of
   :mod:`jdanas.scoring`, e.g. DisWOT; ``one_shot``, shared supernet weights trained on each round's
   proposals, :mod:`jdanas.train.oneshot`, checkpointed with the searcher) scores them, the
   searcher is told. Budgets
   (``config.constraint``) become a jittable predicate that the searcher receives as ``feasible``
   and checks for every proposal; a proposal still over budget is told as failed. Searcher state
   and ledger are checkpointed every round; per-round metrics go to
   ``metrics.jsonl`` and TensorBoard. Keys and batches are functions of ``(seed, round, step)``, so
   a resumed run ends with the same ledger as an uninterrupted one.
3. **Final training** (:mod:`jdanas.pipeline.final`).
4. **Report and export**: ``report.json`` (with what the search score is: kind, units,
   higher-is-better), ``report.md``, plots, and the chosen student in ``<workdir>/export``
   (reload with :func:`jdanas.load_student`).

The config schema and its validation are in :mod:`jdanas.pipeline.config`; every value is
checked (by building the objects the run uses) before any compute, and so are the workdir, the
data and the feasibility of budgets and recipes (:func:`prepare`, :mod:`jdanas.pipeline.check`).
"""
from __future__ import annotations

import importlib.util
import json
import pathlib
import sys
from typing import Any

import ml_collections

from jdanas.parallel import is_main_process
from jdanas.pipeline.check import Checked, check_workdir, describe, prepare
from jdanas.pipeline.config import ConfigError, Plan, build_plan, validate_config
from jdanas.pipeline.jobs import JOBS, get_job
from jdanas.pipeline.final import train_final
from jdanas.pipeline.resume import RESUME_HARMLESS, check_resume, config_differences, describe_changes
from jdanas.pipeline.results import SearchResult
from jdanas.pipeline.search import search
from jdanas.pipeline.setup import log
from jdanas.pipeline.summary import config_dict, print_summary, report
from jdanas.pipeline.watchdog import EXIT_STALLED, Progress, Watchdog


def finished_report(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
                    name: str = "report.json") -> dict | None:
  """The report ``name`` of ``workdir`` if it is the finished run of this very config, else None (fields
  of :data:`jdanas.pipeline.resume.RESUME_HARMLESS`, which cannot change a result, may differ)."""
  path = pathlib.Path(workdir) / name
  if not path.is_file():
    return None
  try:
    done = json.loads(path.read_text())
  except ValueError:
    return None
  if not isinstance(done, dict) or not isinstance(done.get("config"), dict):
    return None
  changes = config_differences(done["config"], config_dict(config))
  return done if all(field in RESUME_HARMLESS for field, _, _ in changes) else None


def load_config(spec: str | pathlib.Path) -> ml_collections.ConfigDict:
  """The config that ``run.py --config <spec>`` runs, for a notebook or a script: ``spec`` is a config
  file's path with an optional ``:variant`` (``"configs/akd_cifar10.py:runlocal"``), relative to the
  working directory or absolute. The file's ``get_config(variant)`` is called as run.py calls it.

  The shipped configs import ``configs.common``: the folder that holds the file's ``configs/`` folder (the
  repository, where run.py sits) is put on ``sys.path`` while the file loads, so a notebook whose working
  directory is ``notebooks/`` loads them too. A missing file is one ``FileNotFoundError`` naming it."""
  text = str(spec)
  path_text, _, variant = text.partition(":") if not pathlib.Path(text).is_file() else (text, "", "")
  path = pathlib.Path(path_text).expanduser().resolve()
  if not path.is_file():
    raise FileNotFoundError(f"config file {path_text!r} not found (looked at {path})")
  root = str(path.parent.parent)
  added = root not in sys.path
  if added:
    sys.path.insert(0, root)
  try:
    module_spec = importlib.util.spec_from_file_location(f"_jdanas_config_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
      raise ValueError(f"config file {path_text!r} defines no get_config()")
    return module.get_config(variant) if variant else module.get_config()
  finally:
    if added:
      sys.path.remove(root)


def run(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
        checked: Checked | None = None, watchdog: Progress | None = None) -> dict[str, Any]:
  """Runs (or resumes) the whole pipeline in ``workdir``; returns the report dict. A workdir that
  already holds the finished run of ``config`` is recognised: its report is returned, nothing is
  recomputed. ``checked``: the result of :func:`prepare` when the caller already ran it.

  Touches nothing outside ``workdir`` and the log: no environment variable, no faulthandler timer, no
  exit. ``watchdog``: the progress points' receiver (default: none); ``run.py`` passes a
  :class:`Watchdog` of ``compute.stall_timeout_s``, which ends a stalled process with exit status 3.
  A program that owns its process applies the XLA:CPU runtime settings first
  (:func:`jdanas.runtime.configure`); without them on CPU :func:`search` warns.
  """
  checked = checked or prepare(config, workdir)
  return get_job(config).fn("run")(config, workdir, checked, watchdog=watchdog)  # the job registry (pipeline.jobs)


def run_search(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, checked: Checked,
               watchdog: Progress | None = None) -> dict[str, Any]:
  """:func:`run` of the ``search`` job (``checked``: from :func:`prepare`; ``watchdog`` as in :func:`run`)."""
  done = finished_report(config, workdir)
  if done is not None:
    log(f"[done] {workdir} already holds the finished run of this config (report.json); nothing to do "
        f"(use a new --workdir for another config)")
    changes = check_resume(config, workdir)
    if changes:
      log(f"[resume] config changes allowed (they cannot change the result): {describe_changes(changes)}")
    if is_main_process():
      print_summary(done, pathlib.Path(workdir))
    return done
  watchdog = watchdog or Progress()
  searched = search(config, workdir, checked, watchdog=watchdog)
  final = train_final(searched, watchdog=watchdog)
  watchdog.beat("report")
  return report(searched, final)


__all__ = ["EXIT_STALLED", "JOBS", "Checked", "ConfigError", "Plan", "Progress", "SearchResult", "Watchdog",
           "build_plan", "check_workdir", "describe", "finished_report", "load_config", "prepare", "report", "run", "search",
           "train_final", "validate_config"]
