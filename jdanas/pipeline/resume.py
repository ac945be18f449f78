"""Resuming a workdir: the config of the run it holds must be the config of the rerun.

A workdir keeps what its run computed (the teacher, checkpoints, the report). Rerunning it with another
config would mix results of two configs (e.g. a cached teacher of another recipe, a 6-round ledger
reported as a 3-round search) and overwrite ``report.json``. :func:`check_resume` compares the new config
with the one the workdir recorded (``config.json``, written when compute starts; else the finished
report's ``config``) before any compute (it runs in :func:`jdanas.pipeline.prepare`), and refuses any
difference in a field that can change the result with one ``--workdir: ...`` line naming the first
differing field (fields in sorted order, as ``--show_config`` lists them).

Allowed differences, recorded (a ``[resume] config changes allowed: ...`` line and
``report.json``'s ``search.resume_config_changes``): the fields of :data:`RESUME_HARMLESS`, and more
``search.rounds`` on an unfinished search (:func:`more_rounds_problem` says when that is refused).
"""
from __future__ import annotations

import json
import os
import pathlib

import ml_collections

from jdanas.pipeline.config import ConfigError

CONFIG_ECHO = "config.json"  # the config of the run, written when its compute starts
CHANGES = "resume_config_changes.json"  # the allowed changes of every resume so far, oldest first

# The ONE list of fields a resumed (or finished) workdir may change, with why each cannot change a
# number of the result. Everything else counts as a change, conservatively: compute.strategy,
# score_strategy, specialize, lowering, precision, mesh and pop_chunk pick other programs (another
# batching, sharding or op set), whose floating-point results may differ in the last bits and then
# change which student the search keeps.
RESUME_HARMLESS = {
    "compute.stall_timeout_s": "the watchdog's patience: it only decides when a stalled run is stopped",
}
ABSENT = object()


def _json(v) -> str:
  text = "absent" if v is ABSENT else json.dumps(v, sort_keys=True)
  return text if len(text) <= 80 else text[:77] + "..."


def _declared_defaults() -> dict:
  """``{"<section>.<field>": default}`` of the declared sections (the pipeline's and every registered evaluator's),
  as JSON values (tuples become lists)."""
  from jdanas.evaluators import EVALUATORS
  from jdanas.evaluators.reward import SECTION as REWARD
  from jdanas.pipeline.sections import defaults
  evaluator_sections = [spec.section for spec in EVALUATORS.values()] + [REWARD]
  return json.loads(json.dumps({**defaults(), **defaults(evaluator_sections)}, default=list))


def config_differences(old: dict, new: dict, prefix: str = "",
                       defaults: dict | None = None) -> list[tuple[str, object, object]]:
  """``(field, old value, new value)`` of every leaf where ``old`` and ``new`` differ, fields in sorted
  order (depth first); a field present in one only has :data:`ABSENT` on the other side, unless its value
  there is the field's declared default (:mod:`jdanas.pipeline.sections`): a config written before the
  field was spelled out (or before it existed) resolves to the same value, so it is no difference."""
  defaults = _declared_defaults() if defaults is None else defaults
  out = []
  for k in sorted(set(old) | set(new)):
    a, b = old.get(k, ABSENT), new.get(k, ABSENT)
    if a is ABSENT and isinstance(b, dict) or b is ABSENT and isinstance(a, dict):
      a, b = ({} if a is ABSENT else a), ({} if b is ABSENT else b)
    if isinstance(a, dict) and isinstance(b, dict):
      out += config_differences(a, b, f"{prefix}{k}.", defaults)
      continue
    field = f"{prefix}{k}"
    if (a is ABSENT or b is ABSENT) and field in defaults and (b if a is ABSENT else a) == defaults[field]:
      continue
    if a != b or type(a) is not type(b) and not {type(a), type(b)} <= {int, float}:
      out.append((field, a, b))
  return out


def recorded_config(workdir: str | os.PathLike, report_name: str = "report.json") -> dict | None:
  """The config the run in ``workdir`` recorded (``config.json``, else ``report_name``'s ``config``), or None."""
  workdir = pathlib.Path(workdir)
  for path, pick in ((workdir / CONFIG_ECHO, lambda d: d), (workdir / report_name, lambda d: d.get("config"))):
    if path.is_file():
      try:
        found = pick(json.loads(path.read_text()))
      except (ValueError, AttributeError):
        continue
      if isinstance(found, dict):
        return found
  return None


def more_rounds_problem(old: dict, new: dict, finished: bool) -> str | None:
  """Why more ``search.rounds`` than the recorded run cannot continue it, or None when it can.

  Round ``r`` draws its keys from ``fold_in(key, r)`` and no searcher is told the number of rounds, so
  a search continued to more rounds proposes and scores exactly what an uninterrupted search of that
  many rounds does (tests/test_experiment.py checks the ledgers are equal). Refused: after the run
  finished (its report stands for the recorded rounds), and with the ``one_shot`` evaluator, whose
  shared weights' learning-rate schedule spans all rounds (:func:`jdanas.pipeline.setup.build_evaluator`).
  """
  if finished:
    return "the run in it is finished; more rounds continue an unfinished search only"
  if (new.get("evaluator") or {}).get("name") == "one_shot":
    return "the one_shot evaluator's schedule spans all rounds, so more rounds change the earlier ones"
  return None


def config_json(config: ml_collections.ConfigDict) -> dict:
  """The config as plain JSON values (what ``config.json`` and ``report.json`` record)."""
  return json.loads(config.to_json_best_effort(sort_keys=True))


def check_resume(config: ml_collections.ConfigDict, workdir: str | os.PathLike | None,
                 report_name: str = "report.json") -> list[dict]:
  """Refuses (:class:`ConfigError`, ``--workdir: ...``) a config that differs from the one ``workdir``
  recorded in a field that can change the result; returns the allowed changes as
  ``[{"field", "was", "now"}]`` (empty for a fresh workdir or the same config). Reads files only;
  ``report_name``: the report whose presence means the run finished."""
  if workdir is None:
    return []
  new = config_json(config)
  old = recorded_config(workdir, report_name)
  if old is None:
    return []
  finished = (pathlib.Path(workdir) / report_name).is_file()
  allowed = []
  for field, was, now in config_differences(old, new):
    why = None
    if field in RESUME_HARMLESS:
      allowed.append({"field": field, "was": was, "now": now})
      continue
    if field == "search.rounds" and isinstance(was, int) and isinstance(now, int):
      if now > was:
        why = more_rounds_problem(old, new, finished)
        if why is None:
          allowed.append({"field": field, "was": was, "now": now})
          continue
      else:
        why = "fewer rounds than the run in it was made with"
    path = str(pathlib.Path(workdir).absolute())
    raise ConfigError(f"--workdir: {path!r} holds a run of another config: config.{field} was {_json(was)}, now "
                      f"{_json(now)} ({why + '; ' if why else ''}use a new --workdir, or the same config)")
  return allowed


def describe_changes(changes: list[dict]) -> str:
  """``field was -> now`` of each allowed change, for the ``[resume]`` log line."""
  return ", ".join(f"config.{c['field']} {_json(c['was'])} -> {_json(c['now'])}" for c in changes)


def record_changes(workdir: str | os.PathLike, changes: list[dict]) -> list[dict]:
  """Appends this resume's allowed ``changes`` to ``<workdir>/resume_config_changes.json`` (when there
  are any; call it where the run writes its files) and returns every resume's changes so far."""
  path = pathlib.Path(workdir) / CHANGES
  history = []
  if path.is_file():
    try:
      history = list(json.loads(path.read_text()))
    except ValueError:
      history = []
  if changes:
    history += changes
    path.write_text(json.dumps(history, indent=1) + "\n")
  return history


__all__ = ["CHANGES", "CONFIG_ECHO", "RESUME_HARMLESS", "check_resume", "config_differences", "config_json",
           "describe_changes", "more_rounds_problem", "record_changes", "recorded_config"]
