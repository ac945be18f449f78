"""The config schema of a jdanas run, and its validation by building what the run uses.

A config is an ``ml_collections.ConfigDict`` with these sections (``configs/default.py`` is the
reference; every shipped config has the same shape)::

  job         "search" (default) or "meta_train" (DaSS's meta-training job, its own sections:
              jdanas.pipeline.meta_train)
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
  evaluator   name ("short_kd" | "tabular" | "zero_cost" | "one_shot") and one subsection per evaluator:
                short_kd   a recipe (the short KD run that scores a proposal), plus distill (default
                           True; False: the same run with plain cross-entropy, no teacher)
                tabular    table, column: an NB201 table (nb201 spaces; scores = percent / 100) or
                           DisWOT's S1 table (s1_resnet spaces; column vanilla_top1 or kd_top1,
                           scores in percent top-1; jdanas.benchmarks.diswot_s1)
                zero_cost  proxy, batch_size, init, relation_tap, teacher_init, semantic_mismatch
                one_shot   a recipe (steps: shared-weight steps per round) + val_examples: ENAS-style
                           weight sharing on a masked space (jdanas.train.oneshot)
                predictor  path, adapt, chunk: DaSS's meta-trained predictor, adapted once to the
                           teacher (jdanas.evaluators.PredictorEvaluator)
              Only the subsection of ``evaluator.name`` is required; a config may carry the others
              so that ``--config.evaluator.name=...`` can switch between them.
              Optional ``reward``: latency_model ("measured" | "flops" | "params"; "" = off),
              target, alpha, beta, batch_size, repeats: the score becomes AKD's latency-aware
              reward of the short_kd / tabular / one_shot accuracy (:mod:`jdanas.rewards`; with
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

:func:`build_plan` turns a config into a :class:`Plan`: the space, the searcher (with a stand-in
budget of the same form), the recipes, the KD loss, the mesh and the evaluator settings are built
by the same code the run uses, so a config that validates is the config that runs. Whatever
needs the data (the budget predicate, the evaluator, the trainers) is built by
:mod:`jdanas.pipeline.setup` from the plan; its errors are reported the same way. Every error is a
:class:`ConfigError` whose message is one line starting with ``config.<field>:``.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import pathlib
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jdanas.distill import KD_PRESETS, ORACLE_AGGREGATES, SEMANTIC_MISMATCH, TAPS, KDLoss, is_tap
from jdanas.lowering import LOWERINGS
from jdanas.models.zoo import MODELS
from jdanas.parallel import make_mesh
from jdanas.teachers import SPACE_TEACHER
from jdanas.searchers import SEARCHERS, Searcher, get_searcher, with_dedup
from jdanas.spaces import SPACES, get_space
from jdanas.spaces.base import AbstractSearchSpace
from jdanas.train import TRAIN_STRATEGIES, Recipe
from jdanas.train.population import PRECISIONS
from jdanas.train.recipe import OPTIMIZERS, SCHEDULES

SECTIONS = ("data", "teacher", "space", "searcher", "evaluator", "kd", "search", "final", "compute")
EVALUATOR_NAMES = ("short_kd", "tabular", "zero_cost", "one_shot", "predictor")
JOBS = ("search", "meta_train")  # config.job: a search run, or DaSS's meta-training (jdanas.pipeline.meta_train)
FINAL_INITS = ("random", "remap")  # final.init: from scratch, or remapped from the teacher (DaSS)
LIMITS = ("max_params", "max_flops", "max_latency_ms")


class ConfigError(ValueError):
  """A config value is invalid; the message is one line naming the field."""


class MissingInput(ConfigError):
  """An input file the config names (not its values) is absent, e.g. a DaSS predictor not meta-trained
  yet: a run stops on it, ``--show_config`` shows the plan without it (``build_plan(inputs_optional=True)``)."""


DEFAULT_STALL_TIMEOUT_S = 1800.0


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
    evaluator: ``evaluator.name``.
    evaluator_kwargs: the ``tabular`` / ``zero_cost`` subsection as keyword arguments (empty for
      ``short_kd``, whose recipe is ``short_kd``).
    short_kd_distill: False when the short-KD evaluator trains with plain cross-entropy.
    reward: ``evaluator.reward`` as keyword arguments (``latency_model``, ``target``, ``alpha``,
      ``beta``, ``batch_size``, ``repeats``), or None without a reward.
    loss: the KD loss of the short-KD evaluator and the final KD training.
    short_kd, final, teacher_train: recipes (``short_kd`` is None unless the evaluator is
      ``short_kd``; ``teacher_train`` is None when the teacher is loaded from ``teacher.path``).
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
  evaluator: str
  evaluator_kwargs: dict
  short_kd_distill: bool
  reward: dict | None
  loss: KDLoss
  short_kd: Recipe | None
  final: Recipe
  teacher_train: Recipe | None
  limits: dict
  rounds: int
  top_k: int
  baselines: tuple[str, ...]
  compute: Compute
  one_shot: Recipe | None = None  # evaluator.one_shot's recipe (steps: shared-weight steps per round)
  final_init: str = "random"  # final.init: "remap" starts the final students from the teacher's remapped weights
  final_seeds: int = 1  # final.seeds: paired KD / no-KD trainings of the chosen student (> 1: the gain's interval)


def need(ok: bool, field: str, msg: str) -> None:
  """Raises ``ConfigError("config.<field>: <msg>")`` unless ``ok``."""
  if not ok:
    raise ConfigError(f"config.{field}: {msg}")


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


def _meta_targets() -> Sequence:
  from jdanas.meta.predictor import TARGETS
  return TARGETS


def _latency_models() -> Sequence:
  from jdanas.rewards import LATENCY_MODELS
  return LATENCY_MODELS


# Every config field whose value is one of a fixed set: the ONE declaration that validation
# (:func:`_one_of`, which looks the field up here) and ``--show_config``'s "allowed values" read, so
# the listing cannot miss a validated field. ``*.optimizer``/``*.schedule`` (any recipe section) are
# checked by :class:`jdanas.train.Recipe` against the same tuples; ``compute.specialize`` by
# :func:`parse_specialize`, which also takes the strings "true"/"false".
CHOICES: dict[str, Callable[[], Sequence]] = {
    "job": lambda: JOBS,
    "teacher.name": lambda: (*sorted(MODELS), SPACE_TEACHER),
    "space.name": lambda: sorted(SPACES),
    "searcher.name": lambda: sorted(SEARCHERS),
    "evaluator.name": lambda: EVALUATOR_NAMES,
    "evaluator.zero_cost.proxy": _scoring("", "PROXIES"),
    "evaluator.zero_cost.init": _scoring("", "INITS"),
    "evaluator.zero_cost.teacher_init": _scoring(".population", "TEACHER_INITS"),
    "evaluator.zero_cost.semantic_mismatch": lambda: SEMANTIC_MISMATCH,
    "evaluator.reward.latency_model": _latency_models,
    "kd.loss": lambda: [n for n, l in KD_PRESETS.items() if l.uses_teacher],
    "kd.oracle_aggregate": lambda: ORACLE_AGGREGATES,
    "final.init": lambda: FINAL_INITS,
    "*.optimizer": lambda: OPTIMIZERS,
    "*.schedule": lambda: SCHEDULES,
    "compute.strategy": lambda: TRAIN_STRATEGIES,
    "compute.score_strategy": _scoring("", "SCORE_STRATEGIES"),
    "compute.lowering": lambda: LOWERINGS,
    "compute.precision": lambda: PRECISIONS,
    "compute.specialize": lambda: ("auto", True, False),
    "meta.target": _meta_targets,
}


def choices(field: str) -> tuple:
  """The allowed values of ``config.<field>`` (a key of :data:`CHOICES`)."""
  return tuple(CHOICES[field]())


def _one_of(value, field: str) -> None:
  allowed = choices(field)
  need(value in allowed, field, f"{value!r} is not one of {', '.join(map(str, allowed))}")


# ---- building blocks (shared by validation and the run) -------------------------------------------
RECIPE_FIELDS = ("steps", "batch_size", "optimizer", "learning_rate", "weight_decay", "schedule", "augment",
                 "eval_batch_size")


def build_recipe(section, field: str, loss: KDLoss, extra: tuple[str, ...] = ()) -> Recipe:
  """The :class:`jdanas.train.Recipe` of a recipe section (``RECIPE_FIELDS``, plus ``extra`` fields
  the caller reads); ``Recipe``'s own checks name the field."""
  unknown = sorted(set(section) - set(RECIPE_FIELDS) - set(extra))
  need(not unknown, field, f"unknown field(s) {unknown}; a recipe has {', '.join(RECIPE_FIELDS + extra)}")
  try:
    return Recipe(steps=section.steps, batch_size=section.batch_size, optimizer=section.optimizer,
                  learning_rate=section.learning_rate, weight_decay=section.weight_decay,
                  schedule=section.schedule, augment=bool(section.get("augment", True)), loss=loss,
                  eval_batch_size=section.get("eval_batch_size", 500))
  except (ValueError, TypeError) as e:
    msg = str(e)
    raise ConfigError(f"config.{field}.{msg[len('recipe.'):]}" if msg.startswith("recipe.")
                      else f"config.{field}: {msg}") from None


def build_loss(k) -> KDLoss:
  """The KD loss of ``config.kd``: a preset of :data:`jdanas.distill.KD_PRESETS` with the config's
  temperature and DisWOT distiller terms (0 = off)."""
  kd_names = choices("kd.loss")
  need(k.loss in kd_names, "kd.loss", f"{k.loss!r} is not a KD preset; choose one of {', '.join(kd_names)}")
  need(_is_num(k.temperature) and k.temperature > 0, "kd.temperature", f"must be > 0, got {k.temperature!r}")
  for field in ("semantic_weight", "relation_weight"):
    v = k.get(field, 0.0)
    need(_is_num(v) and v >= 0 and np.isfinite(v), f"kd.{field}", f"must be a number >= 0 (0 = off), got {v!r}")
  tap = k.get("relation_tap", "pre_pool")
  need(is_tap(tap), "kd.relation_tap", f"{tap!r} is not one of {', '.join(TAPS)} or stageI (I >= 1)")
  base = KD_PRESETS[k.loss]
  aggregate = k.get("oracle_aggregate", "logits")
  _one_of(aggregate, "kd.oracle_aggregate")
  if base.target == "oracle":
    for field in ("semantic_weight", "relation_weight"):
      need(not k.get(field, 0.0), f"kd.{field}",
           "must be 0 with kd.loss='oracle' (the oracle loss has no feature terms)")
  try:
    return KDLoss(temperature=float(k.temperature), hard_weight=base.hard_weight, soft_weight=base.soft_weight,
                  soft_form=base.soft_form, semantic_weight=float(k.get("semantic_weight", 0.0)),
                  relation_weight=float(k.get("relation_weight", 0.0)), relation_tap=str(tap), target=base.target,
                  oracle_aggregate=str(aggregate))
  except ValueError as e:
    raise ConfigError(f"config.kd: {e}") from None


def parse_specialize(v) -> bool | str:
  """``compute.specialize`` as the trainer takes it (a command line gives strings)."""
  if isinstance(v, bool):
    return v
  s = str(v).lower()
  need(s in ("auto", "true", "false"), "compute.specialize", f"must be True, False or 'auto', got {v!r}")
  return {"auto": "auto", "true": True, "false": False}[s]


def build_compute(c, space: AbstractSearchSpace) -> Compute:
  """:class:`Compute` of ``config.compute``; the mesh is built to check it against the devices."""
  _one_of(c.strategy, "compute.strategy")
  score_strategy = c.get("score_strategy", "auto")
  lowering = c.get("lowering", "auto")
  _one_of(lowering, "compute.lowering")
  specialize = parse_specialize(c.get("specialize", "auto"))
  precision = c.get("precision", "fp32")
  _one_of(precision, "compute.precision")
  if specialize is True:
    need(space.can_specialize, "compute.specialize",
         f"space {space.name!r} has no specialised form (use 'auto' or False)")
  stall = c.get("stall_timeout_s", DEFAULT_STALL_TIMEOUT_S)
  need(_is_num(stall) and np.isfinite(stall) and stall >= 0, "compute.stall_timeout_s",
       f"must be a finite number of seconds >= 0 (0 = no watchdog), got {stall!r}")
  m = c.mesh
  need(_is_int(m.pop) and _is_int(m.data), "compute.mesh", f"pop/data must be ints, got {m.pop!r}/{m.data!r}")
  try:
    mesh = make_mesh(int(m.pop), int(m.data))
  except ValueError as e:
    raise ConfigError(f"config.compute.{e}") from None
  chunk = c.get("pop_chunk", 0)
  need(_is_int(chunk) and chunk >= 0 and chunk % mesh.shape["pop"] == 0, "compute.pop_chunk",
       f"must be 0 (a whole group per call) or a positive multiple of compute.mesh.pop ({mesh.shape['pop']}), "
       f"got {chunk!r}")
  return Compute(strategy=c.strategy, score_strategy=score_strategy, specialize=specialize, lowering=lowering,
                 mesh_shape=(int(mesh.shape["pop"]), int(mesh.shape["data"])), precision=precision,
                 stall_timeout_s=float(stall), pop_chunk=int(chunk))


def _stand_in_budget(enc: jax.Array) -> jax.Array:
  """A budget of the real predicate's form, for validation (the real one needs the data)."""
  return jnp.ones((), bool)


def build_space(s) -> AbstractSearchSpace:
  _one_of(s.name, "space.name")
  try:
    return get_space(s.name, **dict(s.get("kwargs", {})))
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
def _check_data(d) -> None:
  need(isinstance(d.name, str) and bool(d.name), "data.name", "must be a dataset name ('digits', 'npz' or a TFDS name)")
  if d.name == "npz":
    need(bool(d.get("path")), "data.path", "is required when data.name='npz'")
    for field in ("path", "test_path"):
      if d.get(field):
        path = pathlib.Path(d.get("data_dir") or ".") / d[field]
        need(path.exists(), f"data.{field}", f"file {str(path)!r} does not exist")
  need(isinstance(d.get("remap_labels", False), bool), "data.remap_labels",
       f"must be True or False, got {d.get('remap_labels')!r}")
  need(not d.get("remap_labels", False) or d.name == "npz", "data.remap_labels", "is only used with data.name='npz'")
  need(isinstance(d.val_fraction, float) and 0 < d.val_fraction < 1, "data.val_fraction",
       f"must be a float in (0, 1), got {d.val_fraction!r}")
  size = d.get("image_size", 0)
  need(_is_int(size) and size >= 0, "data.image_size", f"must be an int >= 0 (0 = as stored), got {size!r}")
  need(isinstance(d.get("rgb", False), bool), "data.rgb", f"must be True or False, got {d.get('rgb')!r}")
  classes = d.get("classes", ()) or ()
  need(isinstance(classes, (list, tuple)) and all(_is_int(c) and c >= 0 for c in classes)
       and len(set(classes)) == len(classes) and len(classes) != 1, "data.classes",
       f"must be a list of >= 2 distinct class ids (empty = every class), got {classes!r}")


def teacher_size(t) -> int:
  """The number of networks (M) of ``config.teacher``: ``teacher.ensemble`` members of
  ``teacher.name`` trained with M seeds, the folders of ``teacher.paths``, or the saved teacher of
  ``teacher.path`` (a saved ensemble has M > 1); checked here, before compute."""
  m = t.get("ensemble", 1)
  need(_is_int(m) and m >= 1, "teacher.ensemble", f"must be an int >= 1 (1 = a single network), got {m!r}")
  paths = t.get("paths", None) or ()
  need(isinstance(paths, (list, tuple)) and all(isinstance(p, str) and p for p in paths), "teacher.paths",
       f"must be a list of teacher folders, got {paths!r}")
  if paths:
    need(not t.get("path"), "teacher.paths", "give teacher.path or teacher.paths, not both")
    need(len(paths) >= 2, "teacher.paths", f"an ensemble needs >= 2 folders, got {len(paths)}")
    for p in paths:
      need(pathlib.Path(p, "teacher.json").exists(), "teacher.paths", f"no teacher.json in {p!r}")
  if paths or t.get("path"):
    need(m == 1, "teacher.ensemble", "is for a trained ensemble of teacher.name; a loaded teacher's size is "
         "given by teacher.path/teacher.paths")
  if t.get("path"):
    info = pathlib.Path(t.path, "teacher.json")
    need(info.exists(), "teacher.path", f"no teacher.json in {t.path!r}")
    try:
      return max(len(json.loads(info.read_text()).get("members", ())), 1)
    except (ValueError, AttributeError) as e:
      raise ConfigError(f"config.teacher.path: unreadable teacher.json in {t.path!r} ({e})") from None
  return len(paths) or int(m)


def _teacher_recipe(t) -> Recipe | None:
  need(isinstance(t.get("require_above_chance", True), bool), "teacher.require_above_chance",
       f"must be True or False, got {t.get('require_above_chance')!r}")
  teacher_size(t)
  if t.get("path") or t.get("paths"):
    return None
  _one_of(t.name, "teacher.name")
  return build_recipe(t.train, "teacher.train", KD_PRESETS["ce"])


def _zero_cost_kwargs(z, data) -> dict:
  """``evaluator.zero_cost`` checked against :mod:`jdanas.scoring` (imported only when named)."""
  try:
    importlib.import_module("jdanas.scoring.population")  # its choices are read through CHOICES
  except ImportError as e:
    raise ConfigError(f"config.evaluator.name: 'zero_cost' needs the jdanas.scoring package ({e})") from None
  kw = dict(proxy=z.get("proxy", ""), batch_size=z.get("batch_size", 64),
            init=z.get("init") or None,  # None / "": each proxy's paper initialisation (scoring.PROXY_INFO)
            relation_tap=z.get("relation_tap", "pre_pool"), teacher_init=z.get("teacher_init", "random"),
            semantic_mismatch=z.get("semantic_mismatch", "class_gram"))
  need_fields(z, "evaluator.zero_cost", kw)
  _one_of(kw["proxy"], "evaluator.zero_cost.proxy")
  bs = kw["batch_size"]
  need(_is_int(bs) and bs > 0, "evaluator.zero_cost.batch_size", f"must be a positive int, got {bs!r}")
  limit = data.get("train_limit") or 0
  need(not limit or bs <= limit * (1 - data.val_fraction), "evaluator.zero_cost.batch_size",
       f"{bs} exceeds the training split (train_limit {limit}, val_fraction {data.val_fraction})")
  if kw["init"] is not None:
    _one_of(kw["init"], "evaluator.zero_cost.init")
  need(is_tap(kw["relation_tap"]), "evaluator.zero_cost.relation_tap",
       f"{kw['relation_tap']!r} is not one of {', '.join(TAPS)} or stageI (I >= 1)")
  _one_of(kw["teacher_init"], "evaluator.zero_cost.teacher_init")
  _one_of(kw["semantic_mismatch"], "evaluator.zero_cost.semantic_mismatch")
  return kw


def _evaluator_kwargs(config, space: AbstractSearchSpace, loss: KDLoss, inputs_optional: bool = False) -> dict:
  ev = config.evaluator
  _one_of(ev.name, "evaluator.name")
  need(ev.name in ev, f"evaluator.{ev.name}", f"section is missing (needed by evaluator.name={ev.name!r})")
  sub = ev[ev.name]
  if ev.name == "short_kd":  # the recipe is built by build_plan
    return {}
  if ev.name == "one_shot":  # the recipe is built by build_plan
    from jdanas.train.oneshot import has_one_signature
    need(has_one_signature(space), "space.name", f"the one_shot evaluator shares one supernet's weights: it needs a "
         f"masked space (kdas_masked, nb201_masked, s1_resnet_masked), got {space.name!r}")
    v = sub.get("val_examples", 0)
    need(_is_int(v) and v >= 0, "evaluator.one_shot.val_examples", f"must be an int >= 0 (0 = the whole "
         f"validation split), got {v!r}")
    return {"val_examples": int(v)}
  if ev.name == "predictor":
    return _predictor_kwargs(config, space, inputs_optional)
  if ev.name == "zero_cost":
    kw = _zero_cost_kwargs(sub, config.data)
    _one_of(config.compute.get("score_strategy", "auto"), "compute.score_strategy")
    return kw
  kind = TABULAR_SPACES.get(space.name)
  need(kind is not None, "evaluator.name", "'tabular' needs an nb201 space (an NB201 table) or an s1_resnet space "
       f"(DisWOT's S1 table), got {space.name!r}")
  need(bool(sub.get("table")) and pathlib.Path(sub.table).exists(), "evaluator.tabular.table",
       f"{kind} table file {sub.get('table')!r} does not exist")
  kw = {"table": sub.table, "column": sub.get("column", TABULAR_DEFAULT_COLUMN[kind])}
  need_fields(sub, "evaluator.tabular", kw)
  build_tabular(**kw, space=space)
  return kw


REWARD_FIELDS = ("latency_model", "target", "alpha", "beta", "batch_size", "repeats")
REWARD_EVALUATORS = ("short_kd", "tabular", "one_shot")  # the evaluators whose score is an accuracy


def _reward_kwargs(ev) -> dict | None:
  """``evaluator.reward`` checked (None when absent or ``latency_model`` is empty)."""
  sub = ev.get("reward", None)
  if sub is None or not sub.get("latency_model", ""):
    return None
  need_fields(sub, "evaluator.reward", REWARD_FIELDS)
  need(ev.name in REWARD_EVALUATORS, "evaluator.reward",
       f"needs an accuracy evaluator (evaluator.name {', '.join(map(repr, REWARD_EVALUATORS))}), not {ev.name!r}")
  kw = dict(latency_model=sub.latency_model, target=sub.get("target", 0.0), alpha=sub.get("alpha", -0.07),
            beta=sub.get("beta", -0.07), batch_size=sub.get("batch_size", 1), repeats=sub.get("repeats", 20))
  _one_of(kw["latency_model"], "evaluator.reward.latency_model")
  t = kw["target"]
  need(_is_num(t) and np.isfinite(t) and t > 0, "evaluator.reward.target",
       f"must be a number > 0 in the latency model's unit (ms, FLOPs or parameters), got {t!r}")
  v = kw["alpha"]
  need(_is_num(v) and np.isfinite(v), "evaluator.reward.alpha",
       f"must be a finite number (soft form -0.07, hard form 0, > 0 a size target), got {v!r}")
  v = kw["beta"]
  need(_is_num(v) and np.isfinite(v) and v <= 0, "evaluator.reward.beta",
       f"must be a number <= 0 (soft form alpha=beta=-0.07, hard form alpha=0, beta=-1), got {v!r}")
  for field in ("batch_size", "repeats"):
    v = kw[field]
    need(_is_int(v) and v > 0, f"evaluator.reward.{field}", f"must be a positive int, got {v!r}")
  return {k: (float(v) if k in ("target", "alpha", "beta") else v) for k, v in kw.items()}


# the table of the ``tabular`` evaluator by space, and its default column
TABULAR_SPACES = {"nb201": "NB201", "nb201_masked": "NB201", "s1_resnet": "DisWOT S1", "s1_resnet_masked": "DisWOT S1"}
TABULAR_DEFAULT_COLUMN = {"NB201": "cifar10_valid_acc", "DisWOT S1": "kd_top1"}


def build_tabular(table: str, column: str, space: AbstractSearchSpace | None = None):
  """The ``tabular`` evaluator: the NB201 table file for an nb201 space (or no space), DisWOT's S1
  table (:mod:`jdanas.benchmarks.diswot_s1`, checked against the space) for an s1_resnet space."""
  from jdanas.evaluators import TabularEvaluator
  try:
    if space is not None and TABULAR_SPACES.get(space.name) == "DisWOT S1":
      from jdanas.benchmarks.diswot_s1 import DisWOTS1Table
      return TabularEvaluator(DisWOTS1Table(table, space), column)
    from jdanas.benchmarks.nb201 import NB201Table
    return TabularEvaluator(NB201Table(table), column)
  except ValueError as e:
    msg = str(e)
    if msg.startswith(("evaluator.tabular.", "space.")):  # the field is named (DisWOT's S1 table)
      raise ConfigError(f"config.{msg}") from None
    raise ConfigError(f"config.evaluator.tabular.{msg[len('evaluator.'):]}" if msg.startswith("evaluator.")
                      else f"config.evaluator.tabular: {msg}") from None


def _baselines(f, space: AbstractSearchSpace) -> tuple[str, ...]:
  baselines = f.get("baselines", None)
  if baselines is None:
    return ()
  need(isinstance(baselines, (list, tuple)) and all(isinstance(b, str) and b for b in baselines),
       "final.baselines", f"must be a list of architecture strings of space {space.name!r}, got {baselines!r}")
  need(len(set(baselines)) == len(baselines), "final.baselines", f"has duplicates: {list(baselines)}")
  for b in baselines:
    try:
      space.encode(b)
    except ValueError as e:
      raise ConfigError(f"config.final.baselines: {b!r} is not an architecture of space {space.name!r} ({e})") from None
  return tuple(baselines)


def _limits(c) -> dict:
  limits = {}
  for field in LIMITS:
    v = (c or {}).get(field, 0)
    need(_is_num(v) and v >= 0, f"constraint.{field}", f"must be >= 0 (0 = no limit), got {v!r}")
    limits[field] = float(v or 0)
  return limits


def job_of(config: ml_collections.ConfigDict) -> str:
  """``config.job`` (default ``"search"``; ``"meta_train"``: DaSS's meta-training job)."""
  job = config.get("job", "search")
  _one_of(job, "job")
  return job


def space_ref(s) -> dict:
  """``{"name", "kwargs"}`` of a ``config.space`` section as plain JSON values (tuples become lists)."""
  kwargs = s.get("kwargs", {}) or {}
  kwargs = kwargs.to_dict() if isinstance(kwargs, ml_collections.ConfigDict) else dict(kwargs)
  return json.loads(json.dumps({"name": s.name, "kwargs": kwargs}))


def teacher_space_ref(config: ml_collections.ConfigDict) -> dict | None:
  """The space whose own full network the teacher is (``teacher.name='space'``, or a ``teacher.path``
  saved from such a run: its ``teacher.json`` records the space), else None."""
  t = config.teacher
  if t.get("path"):
    ref = json.loads(pathlib.Path(t.path, "teacher.json").read_text()).get("meta", {}).get("space")
    return {"name": ref["name"], "kwargs": ref.get("kwargs", {})} if ref else None  # JSON already
  if t.get("paths") or t.get("ensemble", 1) != 1 or t.name != SPACE_TEACHER:
    return None
  return space_ref(config.space)


def _need_space_teacher(config: ml_collections.ConfigDict, space: AbstractSearchSpace, what: str) -> None:
  """``what`` (the predictor evaluator, the remapped final init) reads the teacher's weights as the DaSS
  space's full network: the teacher must be exactly that network."""
  need(space.name == "dass_resnet", "space.name", f"{what} needs the DaSS space (dass_resnet), got {space.name!r}")
  t = config.teacher
  field = "teacher.path" if t.get("path") else "teacher.paths" if t.get("paths") else "teacher.name"
  got = teacher_space_ref(config)
  need(got == space_ref(config.space), field,
       f"{what} needs the space's own full network as the teacher (teacher.name={SPACE_TEACHER!r}, or a teacher.path "
       f"saved from one with the same space.kwargs); got "
       + (f"the full network of {got}" if got else f"{t.get('path') or list(t.get('paths') or ()) or t.name!r}"))


def _predictor_kwargs(config, space: AbstractSearchSpace, inputs_optional: bool = False) -> dict:
  """``evaluator.predictor``: a meta-trained DaSS predictor folder that matches the run's space
  (``inputs_optional``: an absent one raises no :class:`MissingInput`; its other fields are checked)."""
  sub = config.evaluator.predictor
  kw = dict(path=sub.get("path", ""), adapt=sub.get("adapt", True), chunk=sub.get("chunk", 32))
  need_fields(sub, "evaluator.predictor", kw)
  _need_space_teacher(config, space, "the predictor evaluator")
  _check_predictor_options(kw)
  path = kw["path"]
  need(isinstance(path, str), "evaluator.predictor.path", f"must be a folder path (str), got {path!r}")
  info = pathlib.Path(path, "predictor.json")
  missing = ("required: the predictor folder of a config.job='meta_train' run (<its workdir>/predictor)" if not path
             else None if info.is_file() else
             f"no predictor.json in {path!r} (the predictor folder of a config.job='meta_train' run is <its "
             "workdir>/predictor)")
  if missing is not None:
    if inputs_optional:
      return kw
    raise MissingInput(f"config.evaluator.predictor.path: {missing}")
  try:
    meta = json.loads(info.read_text()).get("meta", {})
  except (ValueError, AttributeError) as e:
    raise ConfigError(f"config.evaluator.predictor.path: unreadable predictor.json in {path!r} ({e})") from None
  for field in ("space", "num_noise", "noise_seed", "map_shape"):
    need(field in meta, "evaluator.predictor.path", f"{str(info)!r} has no meta.{field} (not written by a "
         "config.job='meta_train' run)")
  need(meta["space"] == space_ref(config.space), "evaluator.predictor.path",
       f"the predictor in {path!r} was meta-trained on space {meta['space']}, the run's space is "
       f"{space_ref(config.space)}")
  return kw


def _check_predictor_options(kw: dict) -> None:
  need(isinstance(kw["adapt"], bool), "evaluator.predictor.adapt", f"must be True or False, got {kw['adapt']!r}")
  need(_is_int(kw["chunk"]) and kw["chunk"] > 0, "evaluator.predictor.chunk",
       f"must be a positive int (students embedded at a time), got {kw['chunk']!r}")


def build_plan(config: ml_collections.ConfigDict, *, inputs_optional: bool = False) -> Plan:
  """Validates ``config`` by building its data-independent objects; raises :class:`ConfigError`.
  ``inputs_optional`` (``--show_config``): an absent input file (:class:`MissingInput`) is no error."""
  for section in SECTIONS:
    need(section in config, section, "section is missing")
  need(_is_int(config.get("seed", None)), "seed", f"must be an int, got {config.get('seed', None)!r}")
  need(job_of(config) == "search", "job", "build_plan validates a search; a 'meta_train' config is validated by "
       "jdanas.pipeline.meta_train.build_meta_plan")
  _check_data(config.data)
  teacher_train = _teacher_recipe(config.teacher)
  space = build_space(config.space)
  t = config.teacher
  if t.name == SPACE_TEACHER and not (t.get("path") or t.get("paths")):
    need(hasattr(space, "teacher_encoding"), "teacher.name",
         f"{SPACE_TEACHER!r} (the search space's own full network) needs a space that has one (dass_resnet), "
         f"got {space.name!r}")
    need(t.get("ensemble", 1) == 1, "teacher.ensemble", f"teacher.name={SPACE_TEACHER!r} trains one network")
  final_init = config.final.get("init", "random")
  _one_of(final_init, "final.init")
  se = config.searcher
  _one_of(se.name, "searcher.name")
  searcher_kwargs, dedup = dict(se.get("kwargs", {})), bool(se.get("dedup", True))
  limits = _limits(config.get("constraint", None))
  build_searcher(se.name, searcher_kwargs, dedup, space, _stand_in_budget if any(limits.values()) else None)
  loss = build_loss(config.kd)
  if teacher_size(config.teacher) > 1:  # an ensemble teacher gives logits, no feature taps
    need(config.evaluator.name != "zero_cost", "evaluator.name",
         "zero_cost proxies compare features with ONE teacher; an ensemble teacher needs short_kd, one_shot or tabular")
    need(not loss.uses_features, "kd.relation_weight",
         "DisWOT relation terms need a teacher's features; set kd.semantic_weight/relation_weight to 0 for an "
         "ensemble teacher")
  evaluator_kwargs = _evaluator_kwargs(config, space, loss, inputs_optional)
  short_kd = (build_recipe(config.evaluator.short_kd, "evaluator.short_kd", loss, extra=("distill",))
              if config.evaluator.name == "short_kd" else None)
  distill = config.evaluator.short_kd.get("distill", True) if short_kd is not None else True
  need(isinstance(distill, bool), "evaluator.short_kd.distill", f"must be True or False, got {distill!r}")
  reward = _reward_kwargs(config.evaluator)
  one_shot = (build_recipe(config.evaluator.one_shot, "evaluator.one_shot", loss, extra=("val_examples",))
              if config.evaluator.name == "one_shot" else None)
  final = build_recipe(config.final, "final", loss, extra=("baselines", "init", "seeds"))
  final_seeds = config.final.get("seeds", 1)
  need(_is_int(final_seeds) and final_seeds > 0, "final.seeds", f"must be a positive int, got {final_seeds!r}")
  if final_init == "remap":
    _need_space_teacher(config, space, "final.init='remap'")
  baselines = _baselines(config.final, space)
  r = config.search
  need(_is_int(r.rounds) and r.rounds > 0, "search.rounds", f"must be a positive int, got {r.rounds!r}")
  need(_is_int(r.top_k) and r.top_k > 0, "search.top_k", f"must be a positive int, got {r.top_k!r}")
  compute = build_compute(config.compute, space)
  data_n = compute.mesh_shape[1]
  for field, recipe in (("evaluator.short_kd", short_kd), ("evaluator.one_shot", one_shot), ("final", final)):
    if recipe is not None:
      need(recipe.batch_size % data_n == 0, f"{field}.batch_size",
           f"{recipe.batch_size} is not divisible by the mesh's data axis ({data_n})")
  return Plan(space=space, searcher_name=se.name, searcher_kwargs=searcher_kwargs, dedup=dedup,
              evaluator=config.evaluator.name, evaluator_kwargs=evaluator_kwargs, short_kd_distill=distill,
              reward=reward, loss=loss,
              short_kd=short_kd, final=final, teacher_train=teacher_train, limits=limits,
              rounds=int(r.rounds), top_k=int(r.top_k), baselines=baselines, compute=compute, one_shot=one_shot,
              final_init=final_init, final_seeds=int(final_seeds))


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises :class:`ConfigError` (one line, naming the field) on the first invalid value."""
  build_plan(config)


__all__ = ["CHOICES", "Compute", "ConfigError", "MissingInput", "choices", "EVALUATOR_NAMES", "FINAL_INITS", "JOBS", "job_of", "need_fields", "space_ref", "teacher_space_ref", "LOWERINGS", "Plan", "REWARD_FIELDS", "build_compute", "build_loss",
           "build_plan", "build_recipe", "build_searcher", "build_space", "build_tabular", "parse_specialize",
           "teacher_size", "validate_config"]
