"""Everything a run can check before any compute (teacher training, search), and the plan a
config describes (``run.py --show_config``).

:func:`prepare` validates the config (:func:`~jdanas.pipeline.config.build_plan`), the workdir
(writable directory, or creatable), loads the data (its errors name ``config.data.<field>``) and
checks what needs the data: finite positive learning rates, batch sizes against the training
split, one trial build of the space, and a budget (``config.constraint``) that at least one
architecture of the space meets. A workdir that holds a run of another config is refused
(:func:`jdanas.pipeline.resume.check_resume`). Every failure is one :class:`ConfigError` line; nothing is
written to the workdir.

``--show_config`` calls it with ``data_optional=True``: showing the fields and the plan must not need
the data (a TFDS dataset not prepared on this machine, a file on another host), so a data error is
kept as :attr:`Checked.data_error` and the checks that need the data are skipped; so is an input file
the config names that does not exist yet (:class:`~jdanas.pipeline.config.MissingInput`, e.g. the
DaSS predictor a ``meta_train`` job writes), kept as :attr:`Checked.missing_input`. A real run never
passes it, so it still stops at the one ``config.data...`` line before compute.
"""
from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import tempfile
from typing import Any

import jax
import ml_collections
import numpy as np

from jdanas import costs
from jdanas.pipeline import sections as S
from jdanas.pipeline.jobs import get_job
from jdanas.pipeline.config import CHOICES, ConfigError, MissingInput, Plan, build_plan, choices, need
from jdanas.pipeline.resume import check_resume
from jdanas.pipeline.setup import build_budget, load_data

FEASIBILITY_SAMPLES = 4096  # a larger space is checked on this many random architectures + the cheapest


@dataclasses.dataclass(frozen=True)
class Checked:
  """What :func:`prepare` built: the plan, the dataset and the budget predicate (None: no limit).

  ``data`` is None (and ``budget`` unchecked, None) only under ``prepare(..., data_optional=True)``
  when the data could not be loaded; ``data_error`` is then the one-line reason. ``missing_input``:
  the one-line reason an input file is absent (only under ``data_optional=True``), else None."""
  plan: Plan
  data: Any
  budget: Any
  data_error: str | None = None
  missing_input: str | None = None


def check_workdir(workdir: str | os.PathLike) -> pathlib.Path:
  """``workdir`` as a path, if it is (or can be created as) a writable directory; creates nothing."""
  path = pathlib.Path(workdir).absolute()
  if path.exists():
    if not path.is_dir():
      raise ConfigError(f"--workdir: {str(path)!r} is a file, not a directory")
    if not _writable(path):
      raise ConfigError(f"--workdir: {str(path)!r} is not writable")
    return path
  parent = path.parent
  while not parent.exists():
    parent = parent.parent
  if not parent.is_dir():
    raise ConfigError(f"--workdir: {str(path)!r} lies under the file {str(parent)!r}")
  if not _writable(parent):
    raise ConfigError(f"--workdir: cannot create {str(path)!r} ({str(parent)!r} is not writable)")
  return path


def _writable(directory: pathlib.Path) -> bool:
  """Whether a file can be created in ``directory`` (tried: permission bits do not bind root)."""
  try:
    with tempfile.TemporaryFile(dir=directory):
      return True
  except OSError:
    return False


def _recipes(config, plan: Plan):
  out = [("final", plan.final), (plan.evaluator.field, plan.evaluator.recipe), ("teacher.train", plan.teacher_train)]
  return [(f, r) for f, r in out if r is not None]


def check_recipes(config, plan: Plan, data) -> None:
  """Finite learning rates and weight decays, batch sizes no larger than the training split (not
  checked when ``data`` is None: the data could not be loaded for ``--show_config``)."""
  for field, r in _recipes(config, plan):
    need(math.isfinite(r.learning_rate), f"{field}.learning_rate", f"must be finite, got {r.learning_rate!r}")
    need(math.isfinite(r.weight_decay), f"{field}.weight_decay", f"must be finite, got {r.weight_decay!r}")
  if data is None:
    return
  n = len(data.train)
  for field, r in _recipes(config, plan):
    need(r.batch_size <= n, f"{field}.batch_size",
         f"{r.batch_size} is larger than the training split ({n} examples)")
  from jdanas.evaluators import get_spec
  spec = get_spec(plan.evaluator.name)
  if spec.check_data is not None:  # e.g. the zero_cost scoring batch against the training split
    spec.check_data(plan.evaluator, data)


def check_space(plan: Plan, data) -> None:
  """One trial build of the space (the all-zeros architecture, shapes only)."""
  enc = np.zeros(plan.space.num_decisions, np.int32)
  try:
    costs.model_costs(plan.space, enc, num_classes=data.num_classes, input_shape=data.image_shape, flops=False)
  except Exception as e:  # any failure of the user's space keywords, before compute
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ConfigError(f"config.space.kwargs: a trial build of {plan.space.name} failed "
                      f"({type(e).__name__}: {msg})") from None


def _candidates(plan: Plan, data) -> np.ndarray:
  """Every architecture of a small space; else random ones plus the per-decision cheapest
  (by parameters; the cheapest architecture when parameters are additive per decision)."""
  space = plan.space
  n = [int(c) for c in space.num_choices]
  if math.prod(n) <= FEASIBILITY_SAMPLES:
    return np.stack(np.unravel_index(np.arange(math.prod(n)), n), axis=-1).astype(np.int32)
  rng = np.random.default_rng(0)
  samples = rng.integers(0, np.asarray(n), size=(FEASIBILITY_SAMPLES, len(n))).astype(np.int32)
  params = lambda e: costs.model_costs(space, e, num_classes=data.num_classes, input_shape=data.image_shape,
                                       flops=False).params
  cheapest = np.zeros(len(n), np.int32)
  base = params(cheapest)
  for i, ni in enumerate(n):
    deltas = []
    for v in range(ni):
      e = np.zeros(len(n), np.int32)
      e[i] = v
      deltas.append(params(e) - base)
    cheapest[i] = int(np.argmin(deltas))
  return np.concatenate([cheapest[None], samples])


def check_budget(plan: Plan, data, budget) -> None:
  """Refuses a budget that no architecture meets (checked on :func:`_candidates`)."""
  if budget is None:
    return
  encs = _candidates(plan, data)
  ok = np.asarray(jax.device_get(jax.jit(jax.vmap(budget))(encs)))
  if ok.any():
    return
  field = next(f for f in ("max_params", "max_flops", "max_latency_ms") if plan.limits[f])
  smallest = min(costs.model_costs(plan.space, e, num_classes=data.num_classes, input_shape=data.image_shape,
                                   flops=False).params for e in encs[:64])
  exhaustive = len(encs) == math.prod(int(c) for c in plan.space.num_choices)
  raise ConfigError(f"config.constraint.{field}: no architecture of space {plan.space.name!r} meets the budget "
                    f"({'all' if exhaustive else 'the cheapest and'} {len(encs)} architectures checked; the "
                    f"smallest has {smallest} params) {dict((k, v) for k, v in plan.limits.items() if v)}")


def load_data_optional(config: ml_collections.ConfigDict, data_optional: bool):
  """``(data, None)``, or ``(None, reason)`` when ``data_optional`` and the data cannot be loaded."""
  try:
    return load_data(config), None
  except ConfigError as e:
    if not data_optional:
      raise
    return None, str(e)


def prepare(config: ml_collections.ConfigDict, workdir: str | os.PathLike | None = None, *,
            data_optional: bool = False) -> Checked:
  """Every check that needs no compute (see the module docstring); raises :class:`ConfigError`. A
  ``config.job='meta_train'`` config is checked by :func:`jdanas.pipeline.meta_train.prepare_meta`.
  ``data_optional``: a data error does not raise; it skips what needs the data (``--show_config``)."""
  return get_job(config).fn("prepare")(config, workdir, data_optional=data_optional)


def prepare_search(config: ml_collections.ConfigDict, workdir: str | os.PathLike | None = None, *,
                   data_optional: bool = False) -> Checked:
  """:func:`prepare` of the ``search`` job."""
  missing = None
  try:
    plan = build_plan(config)
  except MissingInput as e:
    if not data_optional:
      raise
    plan, missing = build_plan(config, inputs_optional=True), str(e)
  if workdir is not None:
    check_workdir(workdir)
    check_resume(config, workdir)  # a workdir holding a run of another config is refused
  data, data_error = load_data_optional(config, data_optional)
  check_recipes(config, plan, data)
  if data is None:
    return Checked(plan=plan, data=None, budget=None, data_error=data_error, missing_input=missing)
  check_space(plan, data)
  budget = build_budget(plan, data)
  check_budget(plan, data, budget)
  return Checked(plan=plan, data=data, budget=budget, missing_input=missing)


def _field_lines(config: ml_collections.ConfigDict) -> list[str]:
  """``  field: type = value`` for every field of ``config`` (``kwargs`` sections as one dict)."""
  lines = []

  def walk(node, prefix):
    for k in sorted(node.keys()):
      v = node[k]
      if isinstance(v, ml_collections.ConfigDict) and k != "kwargs":
        walk(v, f"{prefix}{k}.")
      else:
        v = v.to_dict() if isinstance(v, ml_collections.ConfigDict) else v
        lines.append(f"  {prefix}{k}: {type(v).__name__} = {v!r}")

  walk(config, "")
  return lines


CHOICE_NOTES = {  # what a choice line alone would not say
    "teacher.name": " ('space': the search space's own full network; or teacher.path: a saved teacher folder)",
    "*.optimizer": " (every recipe: teacher.train, evaluator.short_kd, evaluator.one_shot, final, tasks.*)",
    "compute.score_strategy": " (the zero_cost evaluator's scoring)",
}


def allowed_values(config: ml_collections.ConfigDict) -> list[str]:
  """``--show_config``'s "allowed values": every field of :data:`~jdanas.pipeline.config.CHOICES`
  (the declaration validation reads, so none is missing) whose section the config has."""
  lines = ["# allowed values",
           "  data.name: digits, npz (data.path), or a prepared TFDS dataset name (data.data_dir)"]
  for field in CHOICES:
    if field.startswith("*") or field.split(".")[0] in config or field == "job":
      try:
        values = ", ".join(map(str, choices(field)))
      except ImportError as e:  # e.g. jdanas.scoring's own dependencies
        values = f"(not listed: {e})"
      lines.append(f"  {field}: {values}{CHOICE_NOTES.get(field, '')}")
  if "constraint" in config:
    lines.append("  constraint.*: >= 0 (0 = no limit)")
  return lines


def describe(config: ml_collections.ConfigDict, checked: Checked | None = None) -> str:
  """The resolved config (every field with its type) and the plan, for ``run.py --show_config``; what
  needs data that could not be loaded says ``not available`` (see :func:`prepare`'s ``data_optional``)."""
  checked = checked or prepare(config, data_optional=True)
  lines = ["# config (field: type = value; override any with --config.<field>=<value>)"]
  lines += _field_lines(config) + allowed_values(config)
  return "\n".join(lines + [get_job(config).fn("describe")(config, checked)])


def describe_search(config: ml_collections.ConfigDict, checked: Checked) -> str:
  """The ``--show_config`` plan lines of a ``search`` job."""
  from jdanas.evaluators import get_spec
  from jdanas.evaluators.reward import summary as reward_summary
  plan, data = checked.plan, checked.data
  lines = []
  size = math.prod(int(c) for c in plan.space.num_choices)
  t = S.TEACHER.read(config.teacher)
  m = t["ensemble"]
  teacher = (f"loaded from {t['path'] or ', '.join(t['paths'])}" if plan.teacher_train is None
             else f"{t['name']} trained for {plan.teacher_train.steps} steps"
             + (f", an ensemble of {m} seeds" if m > 1 else ""))
  evaluations = "rounds x proposals per round (see searcher.kwargs)"
  asks = dict(plan.searcher_kwargs).get("num_asks", None)
  if asks:
    evaluations = f"{plan.rounds * int(asks)} ({plan.rounds} rounds x {asks})"
  programs = ("one per distinct architecture" if plan.compute.specialize is True
              else "one shared masked program (more if compute.specialize specialises)"
              if plan.space.can_specialize else "one per distinct network shape")
  if data is None:
    data_line = f"  data: not available ({checked.data_error})"
  else:
    data_line = (f"  data: {config.data.name}, train {len(data.train)}, val {len(data.val)}, "
                 f"{data.num_classes} classes of {data.image_shape}")
  budget = dict((k, v) for k, v in plan.limits.items() if v)
  lines += ["# plan",
            data_line,
            f"  teacher: {teacher}",
            f"  space: {config.space.name} ({size} architectures)",
            f"  searcher: {plan.searcher_name}; evaluator: {plan.evaluator.name}"
            + get_spec(plan.evaluator.name).summary(plan.evaluator) + f"; evaluations: {evaluations}",
            *([f"  evaluator input: not available ({checked.missing_input})"] if checked.missing_input else []),
            "  score: " + reward_summary(plan.evaluator.reward),
            f"  budget: {budget or 'none'}" + (" (not checked: the data is not available)" if budget and data is None
                                                else ""),
            f"  final: top {plan.top_k} KD-trained for {plan.final.steps} steps, the chosen one also without KD"
            + (f", then {plan.final_seeds} more times with and without KD on paired seeds (the gain's interval)"
               if plan.final_seeds > 1 else "")
            + (f"; baselines {', '.join(plan.baselines)}" if plan.baselines else ""),
            f"  compiled training programs (estimate): {programs}"]
  return "\n".join(lines)


__all__ = ["Checked", "allowed_values", "check_budget", "check_recipes", "check_space", "check_workdir", "describe",
           "load_data_optional", "prepare"]
