"""The config schema of a jdanas run, and its validation by building what the run uses.

A config is an ``ml_collections.ConfigDict`` with these sections. Every field's type, default, allowed
values and range are declared once in :mod:`jdanas.pipeline.sections` (read there, listed by
``--show_config`` and docs/configs.md); every shipped config starts from ``configs/common.py``'s base,
which holds each declared field at its default, and overrides what differs::

  job         "search" (default) or "meta_train" (DaSS's meta-training job, its own sections:
              jdanas.pipeline.meta_train); the jobs' registry is jdanas.pipeline.jobs
  seed        int
  data        name, path, test_path, data_dir, val_fraction, train_limit, test_limit, remap_labels
              (npz labels with gaps are refused unless remap_labels=True maps them onto 0..K-1),
              image_size (0 = as stored; else every image resized to that square as it is read),
              rgb (grey images repeated into 3 channels),
              classes (keep only these class ids, relabelled 0..k-1; empty = all)
  teacher     name, path, require_above_chance (default True: a teacher no better than the most
              frequent class stops the run), train (a recipe: steps, batch_size, optimizer,
              learning_rate, weight_decay, schedule, augment), ensemble (M >= 1 members of name
              trained with M seeds), paths (>= 2 saved teacher folders forming an ensemble);
              name "space": the search space's own full network (the DaSS teacher)
  space       name, kwargs
  searcher    name, dedup, kwargs
  evaluator   name (a key of jdanas.evaluators.EVALUATORS) and one subsection per evaluator, each declared
              by its evaluator's file (jdanas/evaluators/<name>.py):
                short_kd   a recipe (the short KD run that scores a proposal), plus distill (default
                           True; False: the same run with plain cross-entropy, no teacher)
                tabular    table, column: an NB201 table (nb201 spaces; scores = percent / 100) or
                           DisWOT's S1 table (s1_resnet spaces; column vanilla_top1 or kd_top1,
                           scores in percent top-1; jdanas.benchmarks.diswot_s1)
                zero_cost  proxy, batch_size, init, relation_tap, teacher_init, semantic_mismatch
                one_shot   a recipe (steps: shared-weight steps per round) + val_examples: ENAS-style
                           weight sharing on a masked space (jdanas.train.oneshot)
                predictor  path, adapt, chunk: DaSS's meta-trained predictor, adapted once to the
                           teacher (jdanas.evaluators.predictor)
              Only the subsection of ``evaluator.name`` is required; a config may carry the others
              so that ``--config.evaluator.name=...`` can switch between them.
              Optional ``reward``: latency_model ("measured" | "flops" | "params"; "" = off),
              target, alpha, beta, batch_size, repeats: the score becomes AKD's latency-aware
              reward of the short_kd / tabular / one_shot accuracy (:mod:`jdanas.evaluators.reward`; with
              one_shot and "params", KDAS's memory penalty).
  kd          loss, temperature, semantic_weight, relation_weight, relation_tap, oracle_aggregate
              (loss "oracle": the oracle KD loss over an ensemble teacher's correct members)
  constraint  max_params, max_flops, max_latency_ms (0 = no limit)
  search      rounds, top_k
  final       a recipe, plus baselines (architecture strings of the space), init ("random", or
              "remap": start from the teacher's remapped weights, DaSS) and seeds (paired KD / no-KD
              trainings of the chosen student for the gain's interval; 1 = the one comparison)
  compute     strategy, score_strategy, specialize, lowering, precision ("fp32" | "bf16"), mesh
              (pop, data), stall_timeout_s, pop_chunk: how the search's evaluator AND the final training run on
              this machine

:func:`build_plan` turns a config into a :class:`Plan`: it reads each section through its declaration,
checks the rules between fields with :func:`need`, and builds the space, the searcher (with a stand-in
budget of the same form), the recipes, the KD loss, the mesh and the evaluator settings with the same
code the run uses, so a config that validates is the config that runs. A library error that names its
argument (:class:`jdanas.errors.FieldError`) is mapped to the config field by that name, never by
parsing its message. Whatever
needs the data (the budget predicate, the evaluator, the trainers) is built by
:mod:`jdanas.pipeline.setup` from the plan; its errors are reported the same way. Every error is a
:class:`ConfigError` whose message is one line starting with ``config.<field>:``.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import pathlib
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jdanas.distill import KD_PRESETS, KDLoss
from jdanas.errors import FieldError
from jdanas.lowering import LOWERINGS
from jdanas.parallel import make_mesh
from jdanas.pipeline import sections as S
from jdanas.pipeline.schema import ConfigError, need
from jdanas.pipeline.sections import FINAL_INITS, JOBS, RECIPE_FIELDS, recipe_section
from jdanas.teachers import SPACE_TEACHER
from jdanas.searchers import Searcher, get_searcher, with_dedup
from jdanas.spaces import get_space
from jdanas.spaces.base import AbstractSearchSpace
from jdanas.train import Recipe

if TYPE_CHECKING:
  from jdanas.evaluators import EvaluatorSettings

SECTIONS = ("data", "teacher", "space", "searcher", "evaluator", "kd", "search", "final", "compute")
LIMITS = tuple(S.CONSTRAINT.fields)


class MissingInput(ConfigError):
  """An input file the config names (not its values) is absent, e.g. a DaSS predictor not meta-trained
  yet: a run stops on it, ``--show_config`` shows the plan without it (``build_plan(inputs_optional=True)``)."""


DEFAULT_STALL_TIMEOUT_S = S.COMPUTE.fields["stall_timeout_s"].default


@dataclasses.dataclass(frozen=True)
class Compute:
  """``config.compute``: how evaluation and final training run (read by both phases).

  Attributes:
    strategy: population-training strategy (:data:`jdanas.train.TRAIN_STRATEGIES`).
    score_strategy: zero-cost scoring strategy (``jdanas.scoring.SCORE_STRATEGIES``).
    specialize: ``True``, ``False`` or ``"auto"`` (see :mod:`jdanas.train.population`).
    lowering: a name of :data:`jdanas.lowering.LOWERINGS` (``"auto"``: chosen per backend), passed
      to the population trainer and the zero-cost scorer.
    mesh_shape: ``(pop, data)`` device counts of the ``('pop', 'data')`` mesh.
    precision: ``"fp32"`` or ``"bf16"`` (mixed precision of the population engine: bfloat16
      compute, float32 parameters, optimizer state, BatchNorm statistics and losses; see
      :mod:`jdanas.train.population`). The zero-cost scorer and the teacher's training stay float32.
    stall_timeout_s: seconds without progress (a teacher or final training step, a search round)
      after which the run fails loudly (:mod:`jdanas.pipeline.watchdog`); 0 = never.
    pop_chunk: students per call of a vmapped group's training program (a multiple of the mesh's
      ``pop`` axis; chunked populations in :mod:`jdanas.train.population`); 0 = a whole group per call.
  """
  strategy: str
  score_strategy: str
  specialize: bool | str
  lowering: str
  mesh_shape: tuple[int, int]
  precision: str = "fp32"
  stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S
  pop_chunk: int = 0

  def mesh(self) -> jax.sharding.Mesh | None:
    """The mesh, or None on a single device (the engines then use the default device)."""
    return make_mesh(*self.mesh_shape) if jax.device_count() > 1 else None


@dataclasses.dataclass(frozen=True)
class Plan:
  """Everything of a config that can be built without the data (see the module docstring).

  Attributes:
    space: the search space.
    searcher_name, searcher_kwargs, dedup: the searcher (built with the budget by
      :func:`jdanas.pipeline.setup.build_searcher`).
    evaluator: ``config.evaluator`` checked by its registered spec (:class:`jdanas.evaluators.EvaluatorSettings`:
      the name, the subsection's values, the recipe of an evaluator that trains, ``evaluator.reward``).
    loss: the KD loss of the short-KD evaluator and the final KD training.
    final, teacher_train: recipes (``teacher_train`` is None when the teacher is loaded from ``teacher.path``).
    limits: ``{"max_params": ..., "max_flops": ..., "max_latency_ms": ...}`` (0 = no limit).
    rounds, top_k: search rounds and the number of students of the final training.
    baselines: predefined students of ``final.baselines``.
    compute: :class:`Compute`.
    final_seeds: ``final.seeds``; above 1 the chosen student is trained that many more times with and
      without KD (paired seeds), so the report gives the KD gain with its standard error and interval.
  """
  space: AbstractSearchSpace
  searcher_name: str
  searcher_kwargs: dict
  dedup: bool
  evaluator: EvaluatorSettings
  loss: KDLoss
  final: Recipe
  teacher_train: Recipe | None
  limits: dict
  rounds: int
  top_k: int
  baselines: tuple[str, ...]
  compute: Compute
  final_init: str = "random"  # final.init: "remap" starts the final students from the teacher's remapped weights
  final_seeds: int = 1  # final.seeds: paired KD / no-KD trainings of the chosen student (> 1: the gain's interval)


def need_fields(section, field: str, allowed) -> None:
  """A config section holds only the ``allowed`` fields (an unknown one is one error naming them)."""
  unknown = sorted(set(section) - set(allowed))
  need(not unknown, field, f"unknown field(s) {unknown}; the fields are {', '.join(allowed)}")


def _is_int(v) -> bool:
  return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_num(v) -> bool:
  return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _scoring(module: str, name: str) -> Callable[[], Sequence]:
  """A choice tuple of ``jdanas.scoring.<module>``, imported only when asked (zero_cost configs, --show_config)."""
  def get():
    return getattr(importlib.import_module(f"jdanas.scoring{module}"), name)
  return get


# Fields whose value is one of a fixed set but that no declared section lists: ``compute.specialize``
# (checked by :func:`parse_specialize`, which also takes "true"/"false") and ``compute.score_strategy``
# (checked by the zero-cost evaluator, so that jdanas.scoring is imported only there).
EXTRA_CHOICES: dict[str, Callable[[], Sequence]] = {
    "compute.score_strategy": _scoring("", "SCORE_STRATEGIES"),
    "compute.specialize": lambda: ("auto", True, False),
}


class _Choices(Mapping):
  """``{field: allowed-values function}``, collected on each access (sections may be registered late)."""

  def _all(self) -> dict:
    from jdanas.evaluators import choices as evaluator_choices  # the evaluator registry's declared sections
    return {**S.choices(), **evaluator_choices(), **EXTRA_CHOICES}

  def __getitem__(self, field):
    return self._all()[field]

  def __iter__(self):
    return iter(self._all())

  def __len__(self):
    return len(self._all())


CHOICES: Mapping[str, Callable[[], Sequence]] = _Choices()


def choices(field: str) -> tuple:
  """The allowed values of ``config.<field>`` (a key of :data:`CHOICES`)."""
  return tuple(CHOICES[field]())


def _one_of(value, field: str) -> None:
  allowed = choices(field)
  need(value in allowed, field, f"{value!r} is not one of {', '.join(map(str, allowed))}")


# ---- building blocks (shared by validation and the run) -------------------------------------------
def _field_error(e: FieldError, where: str) -> ConfigError:
  """A library's :class:`FieldError` as the config error of ``config.<where>.<its field>``."""
  return ConfigError(f"config.{where}.{e.field}: {e.detail}")


def build_recipe(section, field: str, loss: KDLoss, extra: tuple[str, ...] = ()) -> Recipe:
  """The :class:`jdanas.train.Recipe` of a recipe section (:func:`~jdanas.pipeline.sections.recipe_section`,
  plus ``extra`` fields the caller reads), every value checked by the declaration first."""
  v = recipe_section(field, extra=extra).read(section)
  try:
    return Recipe(**{k: v[k] for k in RECIPE_FIELDS}, loss=loss)
  except FieldError as e:  # a rule of Recipe's own that the declaration does not state
    raise _field_error(e, field) from None


def build_loss(k) -> KDLoss:
  """The KD loss of ``config.kd``: a preset of :data:`jdanas.distill.KD_PRESETS` with the config's
  temperature and DisWOT distiller terms (0 = off)."""
  v = S.KD.read(k)
  base = KD_PRESETS[v["loss"]]
  if base.target == "oracle":
    for field in ("semantic_weight", "relation_weight"):
      need(not v[field], f"kd.{field}", "must be 0 with kd.loss='oracle' (the oracle loss has no feature terms)")
  try:
    return KDLoss(temperature=v["temperature"], hard_weight=base.hard_weight, soft_weight=base.soft_weight,
                  soft_form=base.soft_form, semantic_weight=v["semantic_weight"],
                  relation_weight=v["relation_weight"], relation_tap=str(v["relation_tap"]), target=base.target,
                  oracle_aggregate=str(v["oracle_aggregate"]), oracle_none_right=str(v["oracle_none_right"]))
  except ValueError as e:
    raise ConfigError(f"config.kd: {e}") from None


def parse_specialize(v) -> bool | str:
  """``compute.specialize`` as the trainer takes it (a command line gives strings)."""
  if isinstance(v, bool):
    return v
  S.COMPUTE.fields["specialize"].validate(v, "compute.specialize")
  return {"auto": "auto", "true": True, "false": False}[str(v).lower()]


def build_compute(c, space: AbstractSearchSpace) -> Compute:
  """:class:`Compute` of ``config.compute``; the mesh is built to check it against the devices."""
  v = S.COMPUTE.read(c)
  specialize = parse_specialize(v["specialize"])
  if specialize is True:
    need(space.can_specialize, "compute.specialize",
         f"space {space.name!r} has no specialised form (use 'auto' or False)")
  m = S.MESH.read(c.get("mesh", None))
  try:
    mesh = make_mesh(m["pop"], m["data"])
  except FieldError as e:  # its field is "mesh"
    raise _field_error(e, "compute") from None
  chunk = v["pop_chunk"]
  need(chunk >= 0 and chunk % mesh.shape["pop"] == 0, "compute.pop_chunk",
       f"must be 0 (a whole group per call) or a positive multiple of compute.mesh.pop ({mesh.shape['pop']}), "
       f"got {chunk!r}")
  return Compute(strategy=v["strategy"], score_strategy=v["score_strategy"], specialize=specialize,
                 lowering=v["lowering"], mesh_shape=(int(mesh.shape["pop"]), int(mesh.shape["data"])),
                 precision=v["precision"], stall_timeout_s=v["stall_timeout_s"], pop_chunk=chunk)


def _stand_in_budget(enc: jax.Array) -> jax.Array:
  """A budget of the real predicate's form, for validation (the real one needs the data)."""
  return jnp.ones((), bool)


def build_space(s) -> AbstractSearchSpace:
  v = S.SPACE.read(s)
  try:
    return get_space(v["name"], **dict(v["kwargs"]))
  except ValueError as e:
    raise ConfigError(f"config.space.kwargs: {e}") from None


def build_searcher(name: str, kwargs: dict, dedup: bool, space: AbstractSearchSpace,
                   feasible=None) -> Searcher:
  """The configured searcher with the budget ``feasible`` (see :func:`jdanas.searchers.get_searcher`),
  deduplicated (outermost) unless ``searcher.dedup`` is False."""
  try:
    searcher = get_searcher(name, space, feasible=feasible, **kwargs)
  except ValueError as e:
    raise ConfigError(f"config.searcher.kwargs: {e}") from None
  return with_dedup(searcher, space) if dedup else searcher


# ---- sections ----------------------------------------------------------------------------------
def _check_data(d) -> dict:
  """``config.data`` read, with the rules between its fields; returns its values."""
  v = S.DATA.read(d)
  if v["name"] == "npz":
    need(bool(v["path"]), "data.path", "is required when data.name='npz'")
    for field in ("path", "test_path"):
      if v[field]:
        path = pathlib.Path(v["data_dir"] or ".") / v[field]
        need(path.exists(), f"data.{field}", f"file {str(path)!r} does not exist")
  need(not v["remap_labels"] or v["name"] == "npz", "data.remap_labels", "is only used with data.name='npz'")
  return v


def teacher_size(t) -> int:
  """The number of networks (M) of ``config.teacher``: ``teacher.ensemble`` members of
  ``teacher.name`` trained with M seeds, the folders of ``teacher.paths``, or the saved teacher of
  ``teacher.path`` (a saved ensemble has M > 1); checked here, before compute."""
  v = S.TEACHER.read(t)
  m, paths, path = v["ensemble"], v["paths"], v["path"]
  if paths:
    need(not path, "teacher.paths", "give teacher.path or teacher.paths, not both")
    need(len(paths) >= 2, "teacher.paths", f"an ensemble needs >= 2 folders, got {len(paths)}")
    for p in paths:
      need(pathlib.Path(p, "teacher.json").exists(), "teacher.paths", f"no teacher.json in {p!r}")
  if paths or path:
    need(m == 1, "teacher.ensemble", "is for a trained ensemble of teacher.name; a loaded teacher's size is "
         "given by teacher.path/teacher.paths")
  if path:
    info = pathlib.Path(path, "teacher.json")
    need(info.exists(), "teacher.path", f"no teacher.json in {path!r}")
    try:
      return max(len(json.loads(info.read_text()).get("members", ())), 1)
    except (ValueError, AttributeError) as e:
      raise ConfigError(f"config.teacher.path: unreadable teacher.json in {path!r} ({e})") from None
  return len(paths) or m


def _teacher_recipe(t) -> Recipe | None:
  v = S.TEACHER.read(t)
  teacher_size(t)
  if v["path"] or v["paths"]:
    return None
  return build_recipe(t.get("train", None), "teacher.train", KD_PRESETS["ce"])


def _baselines(baselines: tuple, space: AbstractSearchSpace) -> tuple[str, ...]:
  need(len(set(baselines)) == len(baselines), "final.baselines", f"has duplicates: {list(baselines)}")
  for b in baselines:
    try:
      space.encode(b)
    except ValueError as e:
      raise ConfigError(f"config.final.baselines: {b!r} is not an architecture of space {space.name!r} ({e})") from None
  return tuple(baselines)


def job_of(config: ml_collections.ConfigDict) -> str:
  """``config.job`` (default ``"search"``; ``"meta_train"``: DaSS's meta-training job)."""
  return S.read(config, "")["job"]


def space_ref(s) -> dict:
  """``{"name", "kwargs"}`` of a ``config.space`` section as plain JSON values (tuples become lists)."""
  v = S.SPACE.read(s)
  kwargs = v["kwargs"]
  kwargs = kwargs.to_dict() if isinstance(kwargs, ml_collections.ConfigDict) else dict(kwargs)
  return json.loads(json.dumps({"name": v["name"], "kwargs": kwargs}))


def teacher_space_ref(config: ml_collections.ConfigDict) -> dict | None:
  """The space whose own full network the teacher is (``teacher.name='space'``, or a ``teacher.path``
  saved from such a run: its ``teacher.json`` records the space), else None."""
  t = S.TEACHER.read(config.teacher)
  if t["path"]:
    ref = json.loads(pathlib.Path(t["path"], "teacher.json").read_text()).get("meta", {}).get("space")
    return {"name": ref["name"], "kwargs": ref.get("kwargs", {})} if ref else None  # JSON already
  if t["paths"] or t["ensemble"] != 1 or t["name"] != SPACE_TEACHER:
    return None
  return space_ref(config.space)


def _need_space_teacher(config: ml_collections.ConfigDict, space: AbstractSearchSpace, what: str) -> None:
  """``what`` (the predictor evaluator, the remapped final init) reads the teacher's weights as the DaSS
  space's full network: the teacher must be exactly that network."""
  need(space.name == "dass_resnet", "space.name", f"{what} needs the DaSS space (dass_resnet), got {space.name!r}")
  t = S.TEACHER.read(config.teacher)
  field = "teacher.path" if t["path"] else "teacher.paths" if t["paths"] else "teacher.name"
  got = teacher_space_ref(config)
  need(got == space_ref(config.space), field,
       f"{what} needs the space's own full network as the teacher (teacher.name={SPACE_TEACHER!r}, or a teacher.path "
       f"saved from one with the same space.kwargs); got "
       + (f"the full network of {got}" if got else f"{t['path'] or list(t['paths']) or t['name']!r}"))


def build_plan(config: ml_collections.ConfigDict, *, inputs_optional: bool = False) -> Plan:
  """Validates ``config`` by building its data-independent objects; raises :class:`ConfigError`.
  ``inputs_optional`` (``--show_config``): an absent input file (:class:`MissingInput`) is no error."""
  for section in SECTIONS:
    need(section in config, section, "section is missing")
  need(S.read(config, "")["job"] == "search", "job",
       "build_plan validates a search; a 'meta_train' config is validated by "
       "jdanas.pipeline.meta_train.build_meta_plan")
  _check_data(config.data)
  teacher_train = _teacher_recipe(config.teacher)
  space = build_space(config.space)
  t = S.TEACHER.read(config.teacher)
  if t["name"] == SPACE_TEACHER and not (t["path"] or t["paths"]):
    need(hasattr(space, "teacher_encoding"), "teacher.name",
         f"{SPACE_TEACHER!r} (the search space's own full network) needs a space that has one (dass_resnet), "
         f"got {space.name!r}")
    need(t["ensemble"] == 1, "teacher.ensemble", f"teacher.name={SPACE_TEACHER!r} trains one network")
  f = S.FINAL.read(config.final)
  se = S.SEARCHER.read(config.searcher)
  searcher_kwargs, dedup = dict(se["kwargs"]), se["dedup"]
  limits = S.CONSTRAINT.read(config.get("constraint", None))
  build_searcher(se["name"], searcher_kwargs, dedup, space, _stand_in_budget if any(limits.values()) else None)
  loss = build_loss(config.kd)
  if teacher_size(config.teacher) > 1:  # an ensemble teacher gives logits, no feature taps
    need(not loss.uses_features, "kd.relation_weight",
         "DisWOT relation terms need a teacher's features; set kd.semantic_weight/relation_weight to 0 for an "
         "ensemble teacher")
  from jdanas import evaluators  # the registry (imported here: its files import this package's schema)
  evaluator = evaluators.settings(config, space, loss, inputs_optional=inputs_optional)
  final = build_recipe(config.final, "final", loss, extra=tuple(n for n in S.FINAL.fields if n not in RECIPE_FIELDS))
  if f["init"] == "remap":
    _need_space_teacher(config, space, "final.init='remap'")
  baselines = _baselines(f["baselines"], space)
  r = S.SEARCH.read(config.search)
  compute = build_compute(config.compute, space)
  data_n = compute.mesh_shape[1]
  for field, recipe in ((evaluator.field, evaluator.recipe), ("final", final)):
    if recipe is not None:
      need(recipe.batch_size % data_n == 0, f"{field}.batch_size",
           f"{recipe.batch_size} is not divisible by the mesh's data axis ({data_n})")
  return Plan(space=space, searcher_name=se["name"], searcher_kwargs=searcher_kwargs, dedup=dedup,
              evaluator=evaluator, loss=loss, final=final, teacher_train=teacher_train, limits=limits,
              rounds=r["rounds"], top_k=r["top_k"], baselines=baselines, compute=compute, final_init=f["init"],
              final_seeds=f["seeds"])


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises :class:`ConfigError` (one line, naming the field) on the first invalid value."""
  build_plan(config)


__all__ = ["CHOICES", "Compute", "ConfigError", "MissingInput", "choices", "FINAL_INITS", "JOBS", "job_of", "need_fields", "space_ref", "teacher_space_ref", "LOWERINGS", "Plan", "build_compute", "build_loss",
           "build_plan", "build_recipe", "build_searcher", "build_space", "parse_specialize",
           "teacher_size", "validate_config"]
