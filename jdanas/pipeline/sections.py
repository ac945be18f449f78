"""Every config section of a jdanas run, declared once (:mod:`jdanas.pipeline.schema`).

A field's type, default, allowed values and range are written here and nowhere else: the pipeline
reads a section with ``<SECTION>.read(config.<section>)`` (values with the defaults filled in, the
first bad value one ``config.<section>.<field>: ...`` line), ``configs/common.py`` builds the base
config every shipped config starts from out of these defaults (:func:`base_config`), the resume check
treats a field absent from an old workdir's config as its default (:func:`defaults`), and
``--show_config`` and docs/configs.md list them (:func:`describe`). Rules between fields (a path that
must exist, a batch that must divide the mesh) stay in the code that knows why
(:mod:`jdanas.pipeline.config`).

:data:`SCHEMA` lists the sections; a component with its own sections (the evaluators) appends them
with :func:`register`, and :data:`jdanas.pipeline.config.CHOICES` and the listings follow.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Mapping, Sequence

from jdanas.pipeline.schema import REQUIRED, Field, Section, is_int
from jdanas.train.recipe import Recipe

# ---- choice tuples, imported lazily where the registry is heavy ------------------------------------


def _lazy(module: str, name: str) -> Callable[[], Sequence]:
  def get():
    return getattr(importlib.import_module(module), name)
  return get


def _teacher_names() -> tuple:
  from jdanas.models.zoo import MODELS
  from jdanas.teachers import SPACE_TEACHER
  return (*sorted(MODELS), SPACE_TEACHER)


def _sorted(module: str, name: str) -> Callable[[], Sequence]:
  return lambda: sorted(_lazy(module, name)())


def _kd_losses() -> list:
  from jdanas.distill import KD_PRESETS
  return [n for n, loss in KD_PRESETS.items() if loss.uses_teacher]


def _jobs() -> tuple:
  from jdanas.pipeline.jobs import JOBS as registry
  return tuple(registry)


JOBS = _jobs  # config.job's choices: the job registry (jdanas.pipeline.jobs)
FINAL_INITS = ("random", "remap")  # final.init: from scratch, or remapped from the teacher (DaSS)

# ---- checks of one value ---------------------------------------------------------------------------


def _mapping(v) -> str | None:
  return None if hasattr(v, "keys") else "must be a dict of keyword arguments"


def _class_ids(v) -> str | None:
  ok = all(is_int(c) and c >= 0 for c in v) and len(set(v)) == len(v) and len(v) != 1
  return None if ok else "must be a list of >= 2 distinct class ids (empty = every class)"


def _folders(v) -> str | None:
  return None if all(isinstance(p, str) and p for p in v) else "must be a list of teacher folders"


def _tap(v) -> str | None:
  from jdanas.distill import TAPS, is_tap
  return None if is_tap(v) else f"{v!r} is not one of {', '.join(TAPS)} or stageI (I >= 1)"


def _specialize(v) -> str | None:
  return None if str(v).lower() in ("auto", "true", "false") else "must be True, False or 'auto'"


def _mesh_axis(v) -> str | None:
  return None if v >= 1 or v == -1 else "must be a positive int or -1 (the remaining devices)"


def _architectures(v) -> str | None:
  return None if all(isinstance(b, str) and b for b in v) else "must be a list of architecture strings"


# ---- the sections ----------------------------------------------------------------------------------
TOP = Section("", {
    "job": Field("str", "search", choices=_jobs,
                 doc="'search' (a search run) or 'meta_train' (DaSS's meta-training, jdanas.pipeline.meta_train)"),
    "seed": Field("int", 0, doc="the run's seed (data split, initialisations, searcher)"),
}, doc="top-level fields")

DATA = Section("data", {
    "name": Field("str", "digits", nonempty=True, note="'digits', 'npz' or a TFDS name", doc="the dataset"),
    "path": Field("str", "", doc="data.name='npz': the training file (x uint8 [N, H, W, C], y int [N])"),
    "test_path": Field("str", "", doc="data.name='npz': the test file (optional)"),
    "data_dir": Field("str", "", doc="base folder of path/test_path, or TFDS's data_dir"),
    "val_fraction": Field("number", 0.1, lo=0, hi=1, lo_open=True, hi_open=True,
                          doc="share of the training pool held out for validation"),
    "train_limit": Field("int", 0, lo=0, note="0 = all", doc="training-pool examples used"),
    "test_limit": Field("int", 0, lo=0, note="0 = all", doc="test examples used"),
    "remap_labels": Field("bool", False, doc="npz labels with gaps mapped onto 0..K-1"),
    "image_size": Field("int", 0, lo=0, note="0 = as stored", doc="every image resized to this square"),
    "rgb": Field("bool", False, doc="grey images repeated into 3 channels"),
    "classes": Field("list", (), check=_class_ids, doc="keep only these class ids, relabelled 0..k-1"),
}, doc="the dataset and its split")

TEACHER = Section("teacher", {
    "name": Field("str", "resnet20", choices=_teacher_names,
                  doc="a zoo model trained on the fly; 'space': the search space's own full network (DaSS)"),
    "path": Field("str", "", doc="a saved teacher folder (teacher.json) instead of training one"),
    "paths": Field("list", (), check=_folders, doc=">= 2 saved teacher folders forming an ensemble"),
    "ensemble": Field("int", 1, lo=1, note="1 = a single network", doc="members of teacher.name trained with M seeds"),
    "require_above_chance": Field("bool", True, doc="a teacher no better than the most frequent class stops the run"),
}, extra=("train",), doc="the teacher")

SPACE = Section("space", {
    "name": Field("str", "nb201_masked", choices=_sorted("jdanas.spaces", "SPACES"), doc="the search space"),
    "kwargs": Field("any", {}, check=_mapping, doc="the space's keyword arguments"),
}, doc="the search space")

SEARCHER = Section("searcher", {
    "name": Field("str", "regularized_evolution", choices=_sorted("jdanas.searchers", "SEARCHERS"), doc="the searcher"),
    "dedup": Field("bool", True, doc="never propose an architecture twice"),
    "kwargs": Field("any", {}, check=_mapping, doc="the searcher's keyword arguments (num_asks, ...)"),
}, doc="the searcher")

KD = Section("kd", {
    "loss": Field("str", "repdistiller", choices=_kd_losses, doc="a KD preset of jdanas.distill.KD_PRESETS"),
    "temperature": Field("number", 4.0, lo=0, lo_open=True, doc="softmax temperature"),
    "semantic_weight": Field("number", 0.0, lo=0, note="0 = off", doc="DisWOT's semantic term"),
    "relation_weight": Field("number", 0.0, lo=0, note="0 = off", doc="DisWOT's relation term"),
    "relation_tap": Field("str", "pre_pool", check=_tap, doc="the feature the relation term compares"),
    "oracle_aggregate": Field("str", "logits", choices=_lazy("jdanas.distill", "ORACLE_AGGREGATES"),
                              doc="kd.loss='oracle': how the correct members are combined"),
    "oracle_none_right": Field("str", "ce", choices=_lazy("jdanas.distill", "ORACLE_NONE_RIGHT"),
                               doc="kd.loss='oracle': examples no member gets right: 'ce' (the paper) or "
                                   "'average' (averaged-ensemble KD, a jdanas variant)"),
}, doc="the KD loss of the short-KD evaluator and the final training")

CONSTRAINT = Section("constraint", {
    "max_params": Field("number", 0, lo=0, note="0 = no limit", doc="parameter budget"),
    "max_flops": Field("number", 0.0, lo=0, note="0 = no limit", doc="FLOPs budget"),
    "max_latency_ms": Field("number", 0.0, lo=0, note="0 = no limit", doc="latency budget (ms)"),
}, doc="budgets every proposal must meet")

SEARCH = Section("search", {
    "rounds": Field("int", 6, lo=1, doc="search rounds"),
    "top_k": Field("int", 2, lo=1, doc="students of the final training"),
}, doc="the search loop")

_RECIPE_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Recipe)}
RECIPE_FIELDS = ("steps", "batch_size", "optimizer", "learning_rate", "weight_decay", "schedule", "augment",
                 "eval_batch_size")


def recipe_section(name: str, extra: tuple[str, ...] = (), fields: Mapping[str, Field] | None = None,
                   doc: str = "a training recipe") -> Section:
  """The section of a training recipe (:class:`jdanas.train.Recipe`'s configurable fields, defaults
  Recipe's own) named ``name``, plus ``extra`` names another reader checks (e.g. ``("distill",)``) and
  ``fields`` declared by its owner (e.g. final's ``seeds``)."""
  d = _RECIPE_DEFAULTS
  return Section(name, {
      "steps": Field("int", d["steps"], lo=1, doc="optimisation steps"),
      "batch_size": Field("int", d["batch_size"], lo=1, doc="examples per step"),
      "optimizer": Field("str", d["optimizer"], choices=_lazy("jdanas.train.recipe", "OPTIMIZERS"), doc="optimizer"),
      "learning_rate": Field("number", d["learning_rate"], lo=0, lo_open=True, doc="peak learning rate"),
      "weight_decay": Field("number", d["weight_decay"], lo=0, doc="L2 coefficient"),
      "schedule": Field("str", d["schedule"], choices=_lazy("jdanas.train.recipe", "SCHEDULES"),
                        doc="learning-rate schedule"),
      "augment": Field("bool", d["augment"], doc="random crop and horizontal flip"),
      "eval_batch_size": Field("int", d["eval_batch_size"], lo=1, doc="batch size of validation passes"),
      **(fields or {}),
  }, extra=extra, doc=doc)


TEACHER_TRAIN = recipe_section("teacher.train", doc="the teacher's training (when it is trained)")

FINAL = recipe_section("final", fields={
    "baselines": Field("list", (), check=_architectures, doc="predefined students (architecture strings of the space)"),
    "init": Field("str", "random", choices=lambda: FINAL_INITS,
                  doc="'random', or 'remap': start from the teacher's remapped weights (DaSS)"),
    "seeds": Field("int", 1, lo=1, doc="paired KD / no-KD trainings of the chosen student (> 1: the gain's interval)"),
}, doc="the final KD training of the top students")

COMPUTE = Section("compute", {
    "strategy": Field("str", "auto", choices=_lazy("jdanas.train", "TRAIN_STRATEGIES"), doc="population-training strategy"),
    "score_strategy": Field("str", "auto", doc="zero-cost scoring strategy (jdanas.scoring.SCORE_STRATEGIES)"),
    "specialize": Field("any", "auto", check=_specialize, doc="specialised programs per student (True/False/'auto')"),
    "lowering": Field("str", "auto", choices=_lazy("jdanas.lowering", "LOWERINGS"), doc="the lowering of the engines"),
    "precision": Field("str", "fp32", choices=_lazy("jdanas.train.population", "PRECISIONS"),
                       doc="'fp32', or 'bf16' mixed precision of the population engine"),
    "stall_timeout_s": Field("number", 1800.0, lo=0, note="0 = no watchdog",
                             doc="seconds without progress before the run fails loudly"),
    "pop_chunk": Field("int", 0, doc="students per call of a vmapped group (a multiple of mesh.pop; 0 = a group)"),
}, extra=("mesh",), doc="how the evaluator and the final training run on this machine")

MESH = Section("compute.mesh", {
    "pop": Field("int", 1, check=_mesh_axis, doc="devices along the population axis (-1 = the rest)"),
    "data": Field("int", -1, check=_mesh_axis, doc="devices along the data axis (-1 = the rest)"),
}, doc="the ('pop', 'data') device mesh")

# ---- the sections of DaSS's meta-training job (config.job='meta_train', jdanas.pipeline.meta_train) ----


def _meta_targets() -> tuple:
  from jdanas.meta.predictor import TARGETS
  return tuple(TARGETS)


TASKS = Section("tasks", {
    "num_tasks": Field("int", 16, lo=1, doc="meta-training tasks"),
    "val_tasks": Field("int", 2, lo=1, doc="meta-validation tasks (pick the kept state by Spearman)"),
    "classes_per_task": Field("int", 10, lo=2, doc="classes of a task"),
    "num_students": Field("int", 50, lo=2, doc="students of a task, remapped from its teacher and KD-trained"),
    "num_noise": Field("int", 8, lo=1, doc="noise images of the students' embedding"),
    "noise_seed": Field("int", 0, doc="seed of the noise images"),
    "eval_every": Field("int", 0, lo=0, doc="evaluate the students every this many steps (0: only at the end)"),
    "label": Field("str", "best", choices=("best", "final"),
                   doc="a student's label: best validation accuracy over the evaluations (official) or the last"),
    "repeats": Field("int", 1, lo=1, doc="train each task's students this many times (>= 2: label reliability)"),
}, extra=("teacher", "student"), doc="DaSS's meta-training tasks (teacher and student: recipes)")
PREDICTOR = Section("predictor", {
    "hidden_channels": Field("int", 128, lo=1, doc="the predictor's hidden channels"),
    "out_channels": Field("int", 256, lo=1, doc="the predictor's output channels"),
    "h_dim": Field("int", 64, lo=1, doc="the predictor's embedding size"),
    "use_maps": Field("bool", True, doc="embed the students' feature maps"),
}, doc="DaSS's predictor")
META = Section("meta", {
    "target": Field("str", "percent", choices=_meta_targets, doc="what the predictor learns to predict"),
    "alpha_init": Field("number", 0.005, lo=0, lo_open=True, doc="Meta-SGD's initial per-parameter step"),
    "learning_rate": Field("number", 5e-4, lo=0, lo_open=True, doc="the meta learning rate"),
    "first_order": Field("bool", False, doc="first-order Meta-SGD"),
    "episodes": Field("int", 2000, lo=1, doc="meta-training episodes"),
    "num_queries": Field("int", 20, lo=1, doc="query students a task per episode (<= tasks.num_students)"),
    "eval_every": Field("int", 50, lo=1, doc="episodes between meta-validations"),
}, doc="Meta-SGD")
TASK_TEACHER = recipe_section("tasks.teacher", doc="each task's teacher training")
TASK_STUDENT = recipe_section("tasks.student", doc="each task's students' KD training")

# Every declared section: a search's in the order build_plan reads them, then the meta-training job's;
# the evaluator's sections are appended by their owner (:func:`register`).
SCHEMA: list[Section] = [TOP, DATA, TEACHER, TEACHER_TRAIN, SPACE, SEARCHER, KD, CONSTRAINT, SEARCH, FINAL, COMPUTE,
                         MESH, TASKS, TASK_TEACHER, TASK_STUDENT, PREDICTOR, META]
# The sections of each job's config (configs/common.py's base; a subsection follows its parent).
JOB_SECTIONS = {
    "search": ("", "data", "teacher", "teacher.train", "space", "searcher", "kd", "constraint", "search", "final",
               "compute", "compute.mesh"),
    "meta_train": ("", "data", "space", "tasks", "tasks.teacher", "tasks.student", "predictor", "meta", "compute",
                   "compute.mesh"),
}


def register(*sections: Section) -> None:
  """Adds sections (e.g. an evaluator's) to :data:`SCHEMA`: their choices, defaults and listings follow."""
  known = {s.name for s in SCHEMA}
  SCHEMA.extend(s for s in sections if s.name not in known)


def section(name: str) -> Section:
  """The declared section ``name`` (e.g. ``"compute.mesh"``)."""
  for s in SCHEMA:
    if s.name == name:
      return s
  raise KeyError(name)


def read(config, name: str) -> dict[str, Any]:
  """``config.<name>`` read through its declaration (``""``: the top-level fields)."""
  node = config
  for part in filter(None, name.split(".")):
    node = node.get(part, None) if node is not None else None
  if name == "":
    return TOP.read({k: config[k] for k in TOP.fields if k in config})
  return section(name).read(node)


def defaults(sections: Sequence[Section] | None = None) -> dict[str, Any]:
  """``{"<section>.<field>": default}`` of every declared field with a default."""
  return {s.path(n): f.default for s in (sections or SCHEMA) for n, f in s.fields.items()
          if f.default is not REQUIRED}


def choices() -> dict[str, Callable[[], tuple]]:
  """``{"<section>.<field>": allowed-values function}`` of every declared field with a fixed set."""
  out = {}
  for s in SCHEMA:
    out.update({s.path(n): f.allowed for n, f in s.fields.items() if f.choices is not None})
  return out


def describe() -> list[tuple[str, Any, str, str]]:
  """``(field, default, requirement, doc)`` of every declared field (``--show_config``, docs/configs.md)."""
  rows = []
  for s in SCHEMA:
    rows += [(s.path(n), d, r, doc) for (_, d, r, doc), n in zip(s.describe(), s.fields)]
  return rows


def base_sections(names: Sequence[str]) -> dict[str, Any]:
  """The declared defaults of the sections ``names`` as nested dicts (the base of configs/common.py);
  a subsection (``teacher.train``, ``compute.mesh``) goes inside its parent."""
  out: dict[str, Any] = {}
  for name in names:
    sec = section(name)
    node = out
    for part in filter(None, name.split(".")):
      node = node.setdefault(part, {})
    node.update({n: (dict(f.default) if isinstance(f.default, dict) else f.default) for n, f in sec.fields.items()})
  return out


def _show(v) -> str:
  if isinstance(v, str):
    return f"`{v!r}`" if v else '`""`'
  return f"`{v!r}`"


def markdown() -> str:
  """The field reference of docs/configs.md, one table row per declared field (tests/test_configs.py
  checks the page holds it; print it with ``python -c "from jdanas.pipeline.sections import markdown;
  print(markdown())"``)."""
  from jdanas.pipeline.schema import REQUIRED
  rows = ["| field | default | allowed | what |", "| --- | --- | --- | --- |"]
  for field, default, requirement, doc in describe():
    rows.append(f"| `{field}` | {'required' if default is REQUIRED else _show(default)} | {requirement} | {doc} |")
  return "\n".join(rows)


__all__ = ["COMPUTE", "CONSTRAINT", "DATA", "FINAL", "FINAL_INITS", "JOBS", "JOB_SECTIONS", "KD", "MESH", "META",
           "PREDICTOR", "TASKS", "TASK_STUDENT", "TASK_TEACHER", "RECIPE_FIELDS", "SCHEMA",
           "SEARCH", "SEARCHER", "SPACE", "TEACHER", "TEACHER_TRAIN", "TOP", "base_sections", "choices", "defaults",
           "describe", "markdown", "read", "recipe_section", "register", "section"]
