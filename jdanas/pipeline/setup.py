"""What a run builds from its :class:`~jdanas.pipeline.config.Plan` once the data is loaded:
the dataset, the teacher, the budget predicate, the searcher, the trainers and the evaluator.
Errors that a config value causes are :class:`~jdanas.pipeline.config.ConfigError` lines."""
from __future__ import annotations

import dataclasses
import pathlib
import sys

import jax
import ml_collections

from jdanas.distill import KD_PRESETS
from jdanas.evaluators.base import BuildContext, Evaluator
from jdanas.parallel import barrier, is_main_process
from jdanas.errors import FieldError
from jdanas.pipeline import sections as S
from jdanas.pipeline.config import ConfigError, Plan, build_searcher, need, space_ref
from jdanas.searchers import Searcher, cost_predicate
from jdanas.lowering import resolve
from jdanas.teachers import (SPACE_TEACHER, Teacher, ensemble_teacher, load_teacher, save_teacher, train_ensemble,
                             train_space_teacher, train_teacher)
from jdanas.train import PopulationTrainer, Recipe


def log(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def load_data(config: ml_collections.ConfigDict):
  """The :class:`jdanas.data.Dataset` of ``config.data`` (split with ``config.seed``); the loader's
  errors become :class:`ConfigError` lines naming ``config.data.<field>``."""
  from jdanas.data import load_dataset
  d = S.DATA.read(config.data)
  try:
    data = load_dataset(d["name"], data_dir=d["data_dir"] or None, path=d["path"] or None,
                        test_path=d["test_path"] or None, val_fraction=d["val_fraction"], seed=config.seed,
                        train_limit=d["train_limit"] or None, test_limit=d["test_limit"] or None,
                        remap_labels=d["remap_labels"], image_size=d["image_size"] or None, rgb=d["rgb"])
  except FieldError as e:  # the loader names its argument, which is the config field (val_size: of val_fraction)
    detail = (e.detail.strip().splitlines() or [""])[0]
    raise ConfigError(f"config.data.{e.field}: {detail}" if e.field in d or e.field == "val_size"
                      else f"config.data: {e.field}: {detail}") from None
  except ValueError as e:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ConfigError(f"config.data: {msg}") from None
  except OSError as e:  # unreadable file, TFDS I/O
    raise ConfigError(f"config.data: {type(e).__name__}: {e}") from None
  classes = list(d["classes"])
  if not classes:
    return data
  from jdanas.meta.tasks import subset
  need(max(classes) < data.num_classes, "data.classes",
       f"class {max(classes)} is not below the dataset's {data.num_classes} classes")
  try:
    return subset(data, classes)
  except ValueError as e:
    raise ConfigError(f"config.data.classes: {e}") from None


def get_teacher(config: ml_collections.ConfigDict, plan: Plan, data, workdir: pathlib.Path,
                key: jax.Array, progress=True) -> Teacher:
  """Loads ``config.teacher.path`` (or the ensemble of ``config.teacher.paths``), or the teacher
  cached in ``<workdir>/teacher``, or trains one (``teacher.ensemble`` > 1: that many members from
  M seeds) with ``plan.teacher_train`` (and caches it; in a multi-process run every process trains the
  same teacher and process 0 caches it; ``progress`` as in :meth:`PopulationTrainer.train`). Ensemble
  members of one architecture run stacked or one by one as the lowering says
  (:attr:`jdanas.lowering.Lowering.ensemble`). A training whose loss is non-finite stops the run
  (``config.teacher.train``), whatever ``require_above_chance`` says."""
  t = ml_collections.ConfigDict(S.TEACHER.read(config.teacher))
  stack = resolve(plan.compute.lowering).ensemble == "vmap"
  m = t.ensemble
  barrier("jdanas: teacher")  # no process looks for the cache while process 0 may be writing it
  if t.path:
    teacher = load_teacher(t.path, stack=stack)
  elif t.paths:
    teacher = ensemble_teacher([load_teacher(p) for p in t.paths], stack=stack)
  elif (workdir / "teacher" / "teacher.json").exists():
    teacher = load_teacher(workdir / "teacher", stack=stack)
    if teacher.size != m:
      raise ConfigError(f"config.teacher.ensemble: {m}, but the teacher cached in {workdir / 'teacher'} has "
                        f"{teacher.size} network(s); use a fresh --workdir")
    log(f"[teacher] loaded cached {teacher.name} from {workdir / 'teacher'}")
  elif m > 1:
    log(f"[teacher] training an ensemble of {m} x {t.name} for {plan.teacher_train.steps} steps each")
    try:
      teacher = train_ensemble(key, [t.name] * m, data, recipe=plan.teacher_train, stack=stack, progress=progress)
    except FloatingPointError as e:
      raise ConfigError(f"config.teacher.train: {e}") from None
    if is_main_process():
      save_teacher(workdir / "teacher", teacher)
  else:
    log(f"[teacher] training {t.name} for {plan.teacher_train.steps} steps")
    try:
      if t.name == SPACE_TEACHER:  # the search space's own full network (the DaSS teacher)
        teacher = train_space_teacher(key, space_ref(config.space), data,
                                      recipe=plan.teacher_train, progress=progress)
      else:
        teacher = train_teacher(key, t.name, data, recipe=plan.teacher_train, progress=progress)
    except FloatingPointError as e:
      raise ConfigError(f"config.teacher.train: {e}") from None
    if is_main_process():
      save_teacher(workdir / "teacher", teacher)
  if teacher.num_classes != data.num_classes or tuple(teacher.input_shape) != tuple(data.image_shape):
    raise ConfigError(f"config.teacher: teacher {teacher.name} expects {teacher.num_classes} classes of "
                      f"{teacher.input_shape}, the data has {data.num_classes} of {data.image_shape}")
  return teacher


def build_budget(plan: Plan, data):
  """The jittable budget predicate of ``config.constraint`` (None without limits)."""
  if not any(plan.limits.values()):
    return None
  try:
    return cost_predicate(plan.space, num_classes=data.num_classes, input_shape=tuple(data.image_shape),
                          **plan.limits)
  except FieldError as e:  # its field is the limit's name
    raise ConfigError(f"config.constraint.{e.field}: {e.detail}") from None


def plan_searcher(plan: Plan, feasible=None) -> Searcher:
  """The searcher of ``plan`` with the budget ``feasible`` (from :func:`build_budget`)."""
  return build_searcher(plan.searcher_name, plan.searcher_kwargs, plan.dedup, plan.space, feasible)


def trainer(plan: Plan, data, recipe: Recipe, teacher: Teacher | None, mesh=None, *,
            field: str = "final") -> PopulationTrainer:
  """A population trainer with ``config.compute``'s strategy and specialisation; ``field`` names
  the recipe's config section in errors (e.g. a batch larger than the training split)."""
  try:
    return PopulationTrainer(plan.space, data, recipe=recipe, teacher=teacher, strategy=plan.compute.strategy,
                             mesh=mesh, specialize=plan.compute.specialize, lowering=plan.compute.lowering,
                             precision=plan.compute.precision, pop_chunk=plan.compute.pop_chunk or None)
  except FieldError as e:  # the trainer names its argument: a recipe's field, or one of config.compute
    if e.owner == "recipe":
      raise ConfigError(f"config.{field}.{e.field}: {e.detail}") from None
    if e.field in S.COMPUTE.fields or e.field in S.COMPUTE.extra:
      raise ConfigError(f"config.compute.{e.field}: {e.detail}") from None
    raise ConfigError(f"config.{field}: {e}") from None
  except ValueError as e:
    raise ConfigError(f"config.{field}: {e}") from None


def vanilla_recipe(recipe: Recipe) -> Recipe:
  """``recipe`` with the plain cross-entropy loss (the no-KD comparison)."""
  return dataclasses.replace(recipe, loss=KD_PRESETS["ce"])


def build_evaluator(plan: Plan, data, teacher: Teacher, seed: int, mesh=None,
                    teacher_val: float | None = None) -> Evaluator:
  """The configured evaluator, built by its registered spec (:mod:`jdanas.evaluators`) and wrapped into the
  latency-aware reward of ``evaluator.reward`` when the config has one. ``teacher_val``: the teacher's
  validation accuracy when the caller has it (the predictor's adaptation label; evaluated otherwise)."""
  from jdanas import evaluators
  return evaluators.build(BuildContext(plan=plan, data=data, teacher=teacher, seed=int(seed), mesh=mesh,
                                       teacher_val=teacher_val))


__all__ = ["build_budget", "build_evaluator", "get_teacher", "load_data", "log", "plan_searcher", "trainer",
           "vanilla_recipe"]
