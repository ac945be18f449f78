"""The importable pipeline behind ``run.py`` (usable from notebooks): ``run(config, workdir)``.

1. **Data** (``config.data``) and **teacher** (``config.teacher``: loaded from ``path`` or trained
   and cached in ``<workdir>/teacher``).
2. **Search** (``config.search.rounds`` rounds): round ``r`` uses ``fold_in(key_loop, r)`` split
   into ask / evaluate / tell keys; the searcher proposes ``Q`` encodings, the evaluator scores
   them (``short_kd``: the population engine; ``tabular``: a table; ``zero_cost``: a
   training-free proxy of :mod:`jdanas.scoring`, e.g. DisWOT), the searcher is told.
   Budgets (``config.constraint``: ``max_params``, ``max_flops``, ``max_latency_ms``; 0 = none)
   become a jittable predicate (:func:`jdanas.searchers.cost_predicate`) that the searcher checks
   for every proposal (redrawing violators); a proposal still over budget is told as failed. After
   every round the searcher state, the evaluation ledger and the top-K students' parameters are
   checkpointed with orbax (``<workdir>/checkpoints``); per-round metrics go to
   ``metrics.jsonl`` and TensorBoard event files (``<workdir>/tb``). A run in a workdir that has a
   checkpoint resumes from it; a corrupt latest checkpoint falls back to the previous good one.
   Because keys and batches are functions of ``(seed, round, step)``, a resumed run ends with the
   same ledger as an uninterrupted one.
3. **Final training**: the best ``top_k`` distinct architectures are KD-trained with the full
   schedule (``config.final``); the one with the best *validation* accuracy is chosen (the test
   split is only reported), and it is also trained without KD for comparison. The predefined
   students of ``config.final.baselines`` (architecture strings of the space, e.g. zoo aliases of
   the ``trade`` space) are KD-trained with the same recipe and reported side by side.
4. **Report and export**: ``report.json``, ``report.md``, plots, and the chosen student in
   ``<workdir>/export`` (reload with :func:`jdanas.load_student`).

Every config value is checked by :func:`validate_config` before any compute.
"""
from __future__ import annotations

import inspect
import json
import pathlib
import sys
import time
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from tqdm.auto import tqdm

from jdanas import costs
from jdanas.data import load_dataset
from jdanas.distill import KD_PRESETS, TAPS, KDLoss, is_tap
from jdanas.evaluators import EVALUATORS, ShortKDEvaluator, TabularEvaluator
from jdanas.models.zoo import MODELS
from jdanas.parallel import make_mesh
from jdanas.searchers import SEARCHERS, cost_predicate, get_searcher, with_constraint, with_dedup
from jdanas.spaces import SPACES, get_space
from jdanas.teachers import Teacher, evaluate, load_teacher, save_teacher, train_teacher
from jdanas.train import STRATEGIES, PopulationTrainer, Recipe
from jdanas.train.recipe import OPTIMIZERS, SCHEDULES


class ConfigError(ValueError):
  """A config value is invalid; the message is one line naming the field."""


# "zero_cost" lives in jdanas.scoring, imported only when a config names it.
EVALUATOR_NAMES = tuple(sorted({*EVALUATORS, "zero_cost"}))


def log(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


# ---- validation -----------------------------------------------------------------------------
def _need(ok: bool, field: str, msg: str) -> None:
  if not ok:
    raise ConfigError(f"config.{field}: {msg}")


def _is_int(v) -> bool:
  return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_num(v) -> bool:
  return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _check_recipe(c, field: str) -> None:
  _need(_is_int(c.steps) and c.steps > 0, f"{field}.steps", f"must be a positive int, got {c.steps!r}")
  _need(_is_int(c.batch_size) and c.batch_size > 0, f"{field}.batch_size",
        f"must be a positive int, got {c.batch_size!r}")
  _need(c.optimizer in OPTIMIZERS, f"{field}.optimizer", f"{c.optimizer!r} is not one of {OPTIMIZERS}")
  _need(_is_num(c.learning_rate) and c.learning_rate > 0, f"{field}.learning_rate",
        f"must be > 0, got {c.learning_rate!r}")
  _need(c.schedule in SCHEDULES, f"{field}.schedule", f"{c.schedule!r} is not one of {SCHEDULES}")
  _need(_is_num(c.weight_decay) and c.weight_decay >= 0, f"{field}.weight_decay",
        f"must be >= 0, got {c.weight_decay!r}")


def _mesh_shape(m) -> tuple[int, int]:
  n = jax.device_count()
  pop, data = m.pop, m.data
  _need(_is_int(pop) and _is_int(data) and (pop == -1 or pop >= 1) and (data == -1 or data >= 1)
        and not (pop == -1 and data == -1), "mesh", f"pop/data must be ints >= 1 or one of them -1, got {pop!r}/{data!r}")
  pop_n = n // data if pop == -1 else pop
  data_n = n // pop_n if data == -1 else data
  _need(pop_n * data_n == n, "mesh", f"pop x data = {pop_n} x {data_n} does not match the {n} devices")
  return pop_n, data_n


def _check_zero_cost(ev, data) -> None:
  """``evaluator.*`` fields of the ``zero_cost`` evaluator (needs the jdanas.scoring package)."""
  try:
    from jdanas import scoring
    from jdanas.scoring.distances import SEMANTIC_MISMATCH
    from jdanas.scoring.population import TEACHER_INITS
  except ImportError as e:
    raise ConfigError(f"config.evaluator.name: 'zero_cost' needs the jdanas.scoring package ({e})") from None
  proxy = ev.get("proxy", "")
  _need(proxy in scoring.PROXIES, "evaluator.proxy", f"{proxy!r} is not one of {', '.join(scoring.PROXIES)}")
  bs = ev.get("batch_size", 64)
  _need(_is_int(bs) and bs > 0, "evaluator.batch_size", f"must be a positive int, got {bs!r}")
  limit = data.get("train_limit") or 0
  _need(not limit or bs <= limit * (1 - data.val_fraction), "evaluator.batch_size",
        f"{bs} exceeds the training split (train_limit {limit}, val_fraction {data.val_fraction})")
  init = ev.get("init", "gaussian")
  _need(init in scoring.INITS, "evaluator.init", f"{init!r} is not one of {', '.join(scoring.INITS)}")
  tap = ev.get("relation_tap", "pre_pool")
  _need(is_tap(tap), "evaluator.relation_tap", f"{tap!r} is not one of {', '.join(TAPS)} or stageI (I >= 1)")
  ti = ev.get("teacher_init", "random")
  _need(ti in TEACHER_INITS, "evaluator.teacher_init", f"{ti!r} is not one of {', '.join(TEACHER_INITS)}")
  sm = ev.get("semantic_mismatch", "class_gram")
  _need(sm in SEMANTIC_MISMATCH, "evaluator.semantic_mismatch", f"{sm!r} is not one of {', '.join(SEMANTIC_MISMATCH)}")
  st = ev.get("score_strategy", "auto")
  _need(st in scoring.STRATEGIES, "evaluator.score_strategy", f"{st!r} is not one of {', '.join(scoring.STRATEGIES)}")


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises :class:`ConfigError` (one line, naming the field) on the first invalid value."""
  for section in ("data", "teacher", "space", "searcher", "evaluator", "short_kd", "kd", "search", "final"):
    _need(section in config, section, "section is missing")
  _need(_is_int(config.get("seed", None)), "seed", f"must be an int, got {config.get('seed', None)!r}")
  d = config.data
  _need(isinstance(d.name, str) and d.name, "data.name", "must be a dataset name ('digits', 'npz' or a TFDS name)")
  if d.name == "npz":
    _need(bool(d.get("path")), "data.path", "is required when data.name='npz'")
    for field in ("path", "test_path"):
      if d.get(field):
        path = pathlib.Path(d.get("data_dir") or ".") / d[field]
        _need(path.exists(), f"data.{field}", f"file {str(path)!r} does not exist")
  _need(isinstance(d.val_fraction, float) and 0 < d.val_fraction < 1, "data.val_fraction",
        f"must be a float in (0, 1), got {d.val_fraction!r}")
  t = config.teacher
  if t.get("path"):
    _need(pathlib.Path(t.path, "teacher.json").exists(), "teacher.path", f"no teacher.json in {t.path!r}")
  else:
    _need(t.name in MODELS, "teacher.name", f"{t.name!r} is not one of {', '.join(sorted(MODELS))}")
    _check_recipe(t.train, "teacher.train")
  s = config.space
  _need(s.name in SPACES, "space.name", f"{s.name!r} is not one of {', '.join(sorted(SPACES))}")
  try:
    space = get_space(s.name, **dict(s.get("kwargs", {})))
  except ValueError as e:
    raise ConfigError(f"config.space.kwargs: {e}") from None
  se = config.searcher
  _need(se.name in SEARCHERS, "searcher.name", f"{se.name!r} is not one of {', '.join(sorted(SEARCHERS))}")
  try:
    get_searcher(se.name, space, **dict(se.get("kwargs", {})))
  except ValueError as e:
    raise ConfigError(f"config.searcher.kwargs: {e}") from None
  ev = config.evaluator
  _need(ev.name in EVALUATOR_NAMES, "evaluator.name", f"{ev.name!r} is not one of {', '.join(EVALUATOR_NAMES)}")
  _need(ev.strategy in STRATEGIES, "evaluator.strategy", f"{ev.strategy!r} is not one of {STRATEGIES}")
  spec = ev.get("specialize", "auto")
  _need(isinstance(spec, bool) or str(spec).lower() in ("auto", "true", "false"), "evaluator.specialize",
        f"must be True, False or 'auto', got {spec!r}")
  if _specialize(config) is True:
    _need(space.can_specialize, "evaluator.specialize",
          f"space {s.name!r} has no specialised form (use 'auto' or False)")
  if ev.name == "tabular":
    _need(s.name in ("nb201", "nb201_masked"), "evaluator.name", "'tabular' needs an nb201 space")
    _need(bool(ev.get("table")) and pathlib.Path(ev.table).exists(), "evaluator.table",
          f"NB201 table file {ev.get('table')!r} does not exist")
  if ev.name == "zero_cost":
    _check_zero_cost(ev, config.data)
  _check_recipe(config.short_kd, "short_kd")
  _check_recipe(config.final, "final")
  baselines = config.final.get("baselines", None)
  if baselines is not None:
    _need(isinstance(baselines, (list, tuple)) and all(isinstance(b, str) and b for b in baselines),
          "final.baselines", f"must be a list of architecture strings of space {s.name!r}, got {baselines!r}")
    _need(len(set(baselines)) == len(baselines), "final.baselines", f"has duplicates: {list(baselines)}")
    for b in baselines:
      try:
        space.encode(b)
      except ValueError as e:
        raise ConfigError(f"config.final.baselines: {b!r} is not an architecture of space {s.name!r} ({e})") from None
  k = config.kd
  _need(k.loss in KD_PRESETS and KD_PRESETS[k.loss].uses_teacher, "kd.loss",
        f"{k.loss!r} is not a KD preset; choose one of {', '.join(n for n, l in KD_PRESETS.items() if l.uses_teacher)}")
  _need(_is_num(k.temperature) and k.temperature > 0, "kd.temperature", f"must be > 0, got {k.temperature!r}")
  for field in ("semantic_weight", "relation_weight"):  # DisWOT as a distiller (0 = off)
    v = k.get(field, 0.0)
    _need(_is_num(v) and v >= 0 and np.isfinite(v), f"kd.{field}", f"must be a number >= 0 (0 = off), got {v!r}")
  tap = k.get("relation_tap", "pre_pool")
  _need(is_tap(tap), "kd.relation_tap", f"{tap!r} is not one of {', '.join(TAPS)} or stageI (I >= 1)")
  r = config.search
  _need(_is_int(r.rounds) and r.rounds > 0, "search.rounds", f"must be a positive int, got {r.rounds!r}")
  _need(_is_int(r.top_k) and r.top_k > 0, "search.top_k", f"must be a positive int, got {r.top_k!r}")
  c = config.get("constraint", None)
  if c is not None:
    for field in ("max_params", "max_flops", "max_latency_ms"):
      v = c.get(field, 0)
      _need(_is_num(v) and v >= 0, f"constraint.{field}", f"must be >= 0 (0 = no limit), got {v!r}")
  if "mesh" in config:
    _, data_n = _mesh_shape(config.mesh)
    for field in ("short_kd", "final"):
      bs = config[field].batch_size
      _need(bs % data_n == 0, f"{field}.batch_size", f"{bs} is not divisible by the mesh's data axis ({data_n})")


# ---- building blocks ------------------------------------------------------------------------
def _specialize(config) -> bool | str:
  """``evaluator.specialize`` as the trainer takes it (a command line gives strings)."""
  v = config.evaluator.get("specialize", "auto")
  return v if isinstance(v, bool) else {"auto": "auto", "true": True, "false": False}[str(v).lower()]


def _recipe(c, loss: KDLoss) -> Recipe:
  return Recipe(steps=int(c.steps), batch_size=int(c.batch_size), optimizer=c.optimizer,
                learning_rate=float(c.learning_rate), weight_decay=float(c.weight_decay),
                schedule=c.schedule, augment=bool(c.get("augment", True)), loss=loss,
                eval_batch_size=int(c.get("eval_batch_size", 500)))


def _kd_loss(config) -> KDLoss:
  base = KD_PRESETS[config.kd.loss]
  k = config.kd
  return KDLoss(temperature=float(k.temperature), hard_weight=base.hard_weight,
                soft_weight=base.soft_weight, soft_form=base.soft_form,
                semantic_weight=float(k.get("semantic_weight", 0.0)),
                relation_weight=float(k.get("relation_weight", 0.0)),
                relation_tap=str(k.get("relation_tap", "pre_pool")))


def load_data(config):
  d = config.data
  return load_dataset(d.name, data_dir=d.get("data_dir") or None, path=d.get("path") or None,
                      test_path=d.get("test_path") or None, val_fraction=d.val_fraction, seed=config.seed,
                      train_limit=d.get("train_limit") or None, test_limit=d.get("test_limit") or None)


def get_teacher(config, data, workdir: pathlib.Path, key: jax.Array) -> Teacher:
  """Loads ``config.teacher.path``, or the teacher cached in the workdir, or trains one."""
  t = config.teacher
  if t.get("path"):
    teacher = load_teacher(t.path)
  elif (workdir / "teacher" / "teacher.json").exists():
    teacher = load_teacher(workdir / "teacher")
    log(f"[teacher] loaded cached {teacher.name} from {workdir / 'teacher'}")
  else:
    log(f"[teacher] training {t.name} for {t.train.steps} steps")
    teacher = train_teacher(key, t.name, data, recipe=_recipe(t.train, KD_PRESETS["ce"]), progress=True)
    save_teacher(workdir / "teacher", teacher)
  if teacher.num_classes != data.num_classes or tuple(teacher.input_shape) != tuple(data.image_shape):
    raise ConfigError(f"config.teacher: teacher {teacher.name} expects {teacher.num_classes} classes of "
                      f"{teacher.input_shape}, the data has {data.num_classes} of {data.image_shape}")
  return teacher


class _Checkpoints:
  """Searcher state + ledger + top-K params, one orbax step per completed round."""

  def __init__(self, directory: pathlib.Path, abstract_state):
    options = ocp.CheckpointManagerOptions(max_to_keep=3, enable_async_checkpointing=False)
    self.manager = ocp.CheckpointManager(directory.absolute(), options=options)
    self.abstract_state = abstract_state

  def save(self, round_done: int, state, ledger: list, top: list[dict]) -> None:
    """``top``: best-first list of ``{"arch", "score", "variables"}`` (short-KD students)."""
    meta = {"round": round_done, "ledger": ledger, "top": [{"arch": t["arch"], "score": t["score"]} for t in top]}
    params = {f"top{i}": t["variables"] for i, t in enumerate(top)} or {"empty": np.zeros(())}
    self.manager.save(round_done, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), ledger=ocp.args.JsonSave(meta), top=ocp.args.PyTreeSave(params)))
    self.manager.wait_until_finished()

  def restore_latest(self):
    """``(round_done, state, ledger, top)`` of the newest readable checkpoint, or ``None``."""
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        r = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(self.abstract_state), ledger=ocp.args.JsonRestore(),
            top=ocp.args.PyTreeRestore()))
      except Exception as e:  # a truncated/corrupt step: fall back to the previous one
        log(f"[resume] checkpoint of round {step} is unreadable ({type(e).__name__}); trying the previous one")
        continue
      meta = r["ledger"]
      top = [dict(t, variables=r["top"][f"top{i}"]) for i, t in enumerate(meta["top"])]
      return int(meta["round"]), r["state"], list(meta["ledger"]), top
    return None

  def close(self):
    self.manager.close()


def _budget(config, space, data):
  """The jittable budget predicate of ``config.constraint`` (None without limits)."""
  c = config.get("constraint", None) or {}
  limits = {f: float(c.get(f, 0) or 0) for f in ("max_params", "max_flops", "max_latency_ms")}
  if not any(limits.values()):
    return None
  try:
    return cost_predicate(space, num_classes=data.num_classes, input_shape=tuple(data.image_shape), **limits)
  except ValueError as e:
    raise ConfigError(f"config.constraint.{e}") from None


def build_searcher(config, space, feasible=None):
  """The configured searcher; budgets (``feasible``) go to a searcher that checks them for every
  child itself (a ``feasible`` argument, e.g. ``diswot_evolution``), else through
  :func:`with_constraint`; deduplication outermost."""
  name, kwargs = config.searcher.name, dict(config.searcher.get("kwargs", {}))
  if feasible is not None and "feasible" in inspect.signature(SEARCHERS[name]).parameters:
    searcher = get_searcher(name, space, feasible=feasible, **kwargs)
  else:
    searcher = get_searcher(name, space, **kwargs)
    if feasible is not None:
      searcher = with_constraint(searcher, feasible)
  if config.searcher.get("dedup", True):
    searcher = with_dedup(searcher, space)
  return searcher


def scoring_batch(config, data) -> tuple[np.ndarray, np.ndarray]:
  """The fixed batch a ``zero_cost`` evaluator scores on: ``evaluator.batch_size`` training
  examples drawn without replacement with ``config.seed``, normalised (float32 NHWC) and labels."""
  n = int(config.evaluator.get("batch_size", 64))
  idx = np.sort(np.random.default_rng(config.seed).choice(len(data.train.y), n, replace=False))
  x = np.asarray(data.train.x[idx], np.float32) / 255.0
  x = (x - np.asarray(data.mean, np.float32)) / np.asarray(data.std, np.float32)
  return x.astype(np.float32), np.asarray(data.train.y[idx], np.int32)


def build_evaluator(config, space, data, teacher, loss, mesh=None):
  """The configured evaluator (``short_kd``, ``tabular`` or ``zero_cost``)."""
  ev = config.evaluator
  if ev.name == "tabular":
    from jdanas.benchmarks.nb201 import NB201Table
    return TabularEvaluator(NB201Table(ev.table), ev.get("column", "cifar10_valid_acc"))
  if ev.name == "zero_cost":
    from jdanas.scoring import ZeroCostEvaluator  # optional package: imported only here
    x, y = scoring_batch(config, data)
    try:
      return ZeroCostEvaluator(space, teacher, x, y, ev.proxy, num_classes=data.num_classes, seed=int(config.seed),
                               init=ev.get("init", "gaussian"), relation_tap=ev.get("relation_tap", "pre_pool"),
                               teacher_init=ev.get("teacher_init", "random"),
                               semantic_mismatch=ev.get("semantic_mismatch", "class_gram"),
                               strategy=ev.get("score_strategy", "auto"))
    except ValueError as e:
      raise ConfigError(f"config.evaluator: {e}") from None
  trainer = PopulationTrainer(space, data, recipe=_recipe(config.short_kd, loss), teacher=teacher,
                              strategy=ev.strategy, mesh=mesh, specialize=_specialize(config))
  return ShortKDEvaluator(trainer)


def _top_archs(ledger: list, k: int) -> list[dict]:
  """The ``k`` best distinct architectures of the ledger by score (failed ones excluded)."""
  best: dict[str, dict] = {}
  for row in ledger:
    if row["score"] is None:
      continue
    if row["arch"] not in best or row["score"] > best[row["arch"]]["score"]:
      best[row["arch"]] = row
  return sorted(best.values(), key=lambda r: (-r["score"], r["index"]))[:k]


# ---- the pipeline ---------------------------------------------------------------------------
def run(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict[str, Any]:
  """Runs (or resumes) the whole pipeline in ``workdir``; returns the report dict."""
  validate_config(config)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  t_start = time.perf_counter()
  root = jax.random.key(config.seed)
  key_teacher, key_search, key_final = jax.random.split(root, 3)
  key_init, key_loop = jax.random.split(key_search)

  data = load_data(config)
  log(f"[data] {config.data.name}: train {len(data.train)}, val {len(data.val)}, "
      f"test {len(data.test) if data.test is not None else 0}, {data.num_classes} classes, {data.image_shape}")
  teacher = get_teacher(config, data, workdir, key_teacher)
  teacher_val = evaluate(teacher.module, teacher.variables, data.val, data.mean, data.std)
  teacher_test = (evaluate(teacher.module, teacher.variables, data.test, data.mean, data.std)
                  if data.test is not None else None)
  log(f"[teacher] {teacher.name}: val accuracy {teacher_val:.4f}")

  space = get_space(config.space.name, **dict(config.space.get("kwargs", {})))
  budget = _budget(config, space, data)
  searcher = build_searcher(config, space, budget)
  feasible_batch = jax.jit(jax.vmap(budget)) if budget is not None else None
  mesh = make_mesh(*_mesh_shape(config.mesh)) if "mesh" in config and jax.device_count() > 1 else None
  loss = _kd_loss(config)
  evaluator = build_evaluator(config, space, data, teacher, loss, mesh)

  ask, tell = jax.jit(searcher.ask), jax.jit(searcher.tell)
  state = jax.jit(searcher.init)(key_init)
  ckpt = _Checkpoints(workdir / "checkpoints", jax.eval_shape(lambda: state))
  restored = ckpt.restore_latest()
  start_round, ledger, top = 0, [], []
  if restored is not None:
    start_round, state, ledger, top = restored
    log(f"[resume] continuing after round {start_round} ({len(ledger)} evaluations in the ledger)")
  metrics_path = workdir / "metrics.jsonl"
  kept = [l for l in metrics_path.read_text().splitlines() if json.loads(l)["round"] < start_round] \
      if metrics_path.exists() else []
  metrics_path.write_text("".join(l + "\n" for l in kept))
  from tensorboardX import SummaryWriter
  writer = SummaryWriter(str(workdir / "tb"))

  rounds = int(config.search.rounds)
  search_seconds = ledger[-1]["wall_time"] if ledger else 0.0
  compilations = 0
  bar = tqdm(range(start_round, rounds), desc="search", initial=start_round, total=rounds, file=sys.stderr)
  for r in bar:
    t_round = time.perf_counter()
    key_ask, key_eval, key_tell = jax.random.split(jax.random.fold_in(key_loop, r), 3)
    encs, state = ask(key_ask, state)
    encs = np.asarray(jax.device_get(encs))
    # The searcher proposes within the budget; a proposal it could not repair is scored NaN.
    feasible = (np.asarray(jax.device_get(feasible_batch(encs))) if feasible_batch is not None
                else np.ones(len(encs), bool))
    scores = np.full(len(encs), np.nan, np.float32)
    variables = [None] * len(encs)
    if feasible.any():
      ev = evaluator(key_eval, encs[feasible])
      scores[feasible] = ev.scores
      compilations += ev.num_compilations
      if ev.variables is not None:
        for j, i in enumerate(np.nonzero(feasible)[0]):
          variables[i] = ev.variables[j]
    # Infeasible proposals are told as failed (NaN): they can never become the incumbent.
    state, metrics = tell(key_tell, state, encs, scores)
    search_seconds += time.perf_counter() - t_round
    for i, e in enumerate(encs):
      c = costs.model_costs(space, e, num_classes=data.num_classes, input_shape=data.image_shape)
      ledger.append({"round": r, "index": len(ledger), "arch": space.decode(e), "encoding": [int(v) for v in e],
                     "score": None if not np.isfinite(scores[i]) else float(scores[i]),
                     "feasible": bool(feasible[i]), "params": c.params, "flops": c.flops,
                     "seed": int(config.seed), "wall_time": search_seconds})
      if variables[i] is not None and np.isfinite(scores[i]) and all(t["arch"] != ledger[-1]["arch"] for t in top):
        top.append({"arch": ledger[-1]["arch"], "score": float(scores[i]), "variables": variables[i]})
    top = sorted(top, key=lambda t: -t["score"])[:int(config.search.top_k)]
    ckpt.save(r + 1, state, ledger, top)
    best = max((row["score"] for row in ledger if row["score"] is not None), default=float("nan"))
    row = {"round": r, "evaluations": len(ledger), "best_score": best,
           "round_best": float(np.nanmax(scores)) if np.isfinite(scores).any() else None,
           "failed": int((~np.isfinite(scores)).sum()), "seconds": search_seconds,
           **{k: float(np.asarray(v)) for k, v in metrics.items()}}
    with metrics_path.open("a") as f:
      f.write(json.dumps(row) + "\n")
    writer.add_scalar("search/best_score", best, r)
    writer.add_scalar("search/round_best", row["round_best"] or float("nan"), r)
    bar.set_postfix(best=f"{best:.4f}")
  writer.close()
  ckpt.close()

  report = _final_phase(config, workdir, data, space, teacher, loss, mesh, ledger, key_final)
  report.update({
      "dataset": config.data.name, "space": space.name, "searcher": config.searcher.name,
      "evaluator": config.evaluator.name,
      "teacher": {"name": teacher.name, "val_accuracy": teacher_val, "test_accuracy": teacher_test},
      "search": {"evaluations": len(ledger), "rounds": rounds, "seconds": search_seconds,
                 "num_compilations": compilations, "resumed_from_round": start_round},
      "seconds": time.perf_counter() - t_start,
  })
  from jdanas import report as report_lib
  (workdir / "ledger.json").write_text(json.dumps(ledger, indent=1))
  report["ledger_file"] = "ledger.json"
  report_lib.plot_search(ledger, workdir / "search.png")
  report_lib.plot_pareto(ledger, workdir / "pareto.png", highlight=report["final"]["arch"])
  report["plots"] = {"search": "search.png", "pareto": "pareto.png"}
  report_lib.write_report(workdir, report)
  _print_summary(report, workdir)
  return report


def _final_phase(config, workdir, data, space, teacher, loss, mesh, ledger, key) -> dict:
  """Full-schedule KD of the top-K, choice by validation accuracy, vanilla comparison, export."""
  from jdanas.export import export_student
  top = _top_archs(ledger, int(config.search.top_k))
  if not top:
    raise RuntimeError("search: every evaluation failed (NaN); nothing to train (lower the learning rate?)")
  encs = [np.asarray(r["encoding"], np.int32) for r in top]
  log(f"[final] KD-training the top {len(encs)} students for {config.final.steps} steps")
  kd_trainer = PopulationTrainer(space, data, recipe=_recipe(config.final, loss), teacher=teacher,
                                 strategy=config.evaluator.strategy, mesh=mesh,
                                 specialize=_specialize(config))
  kd = kd_trainer.train(jax.random.fold_in(key, 0), encs, progress=True, desc="final KD")
  finite = np.where(np.isfinite(kd.accuracy), kd.accuracy, -np.inf)
  chosen = int(np.argmax(finite))
  enc = encs[chosen]
  module = space.build(space.signature(enc), data.num_classes)

  def test_acc(variables):
    if data.test is None:
      return None
    return evaluate(module, variables, data.test, data.mean, data.std, enc=np.asarray(enc))

  log(f"[final] training the chosen student {space.decode(enc)} without KD for comparison")
  vanilla_trainer = PopulationTrainer(space, data, recipe=_recipe(config.final, KD_PRESETS["ce"]),
                                      strategy=config.evaluator.strategy, mesh=mesh,
                                 specialize=_specialize(config))
  vanilla = vanilla_trainer.train(jax.random.fold_in(key, 0), [enc], progress=True, desc="final vanilla")
  kd_vars = jax.device_get(kd.variables(chosen))
  c = costs.model_costs(space, enc, num_classes=data.num_classes, input_shape=data.image_shape)
  export_dir = export_student(workdir / "export", space=space, space_kwargs=dict(config.space.get("kwargs", {})),
                              space_name=config.space.name, encoding=enc, variables=kd_vars,
                              num_classes=data.num_classes, input_shape=data.image_shape, mean=data.mean,
                              std=data.std, meta={"params": c.params, "flops": c.flops,
                                                  "val_accuracy": float(kd.accuracy[chosen])})
  top_rows = []
  for i, r in enumerate(top):
    top_rows.append({"arch": r["arch"], "search_score": r["score"], "params": r["params"], "flops": r["flops"],
                     "latency_ms": costs.latency_ms(space, encs[i], num_classes=data.num_classes,
                                                    input_shape=data.image_shape),
                     "val_accuracy": None if not np.isfinite(kd.accuracy[i]) else float(kd.accuracy[i])})
  top_rows.sort(key=lambda r: -1.0 if r["val_accuracy"] is None else -r["val_accuracy"])
  baselines = _train_baselines(config, data, space, kd_trainer, key)
  return {
      "top": top_rows,
      "baselines": baselines,
      "final": {"arch": space.decode(enc), "params": c.params, "flops": c.flops, "steps": int(config.final.steps),
                "kd": {"val_accuracy": float(kd.accuracy[chosen]), "test_accuracy": test_acc(kd_vars)},
                "no_kd": {"val_accuracy": float(vanilla.accuracy[0]),
                          "test_accuracy": test_acc(jax.device_get(vanilla.variables(0)))},
                "num_compilations": kd.num_compilations + vanilla.num_compilations},
      "export": str(export_dir.relative_to(workdir.absolute()) if export_dir.is_absolute() else export_dir),
  }


def _train_baselines(config, data, space, kd_trainer: PopulationTrainer, key: jax.Array) -> list[dict]:
  """KD-trains ``config.final.baselines`` (predefined students) with the chosen student's trainer,
  i.e. the same recipe, teacher and batches; one report row per baseline."""
  names = list(config.final.get("baselines", None) or [])
  if not names:
    return []
  encs = [space.encode(b) for b in names]
  log(f"[final] KD-training {len(names)} baseline students with the same recipe: {', '.join(names)}")
  result = kd_trainer.train(jax.random.fold_in(key, 1), encs, progress=True, desc="final KD baselines")
  limit = config.get("constraint", {}).get("max_params", 0)
  rows = []
  for i, (name, enc) in enumerate(zip(names, encs)):
    c = costs.model_costs(space, enc, num_classes=data.num_classes, input_shape=data.image_shape)
    variables = jax.device_get(result.variables(i))
    val = float(result.accuracy[i]) if np.isfinite(result.accuracy[i]) else None
    test = None
    if data.test is not None and val is not None:
      module = space.build(space.signature(enc), data.num_classes)
      test = evaluate(module, variables, data.test, data.mean, data.std, enc=np.asarray(enc))
    if limit and c.params > limit:
      log(f"[final] baseline {name} has {c.params} params, over the budget {limit}")
    rows.append({"name": name, "arch": space.decode(enc), "params": c.params, "flops": c.flops,
                 "kd": {"val_accuracy": val, "test_accuracy": test}})
  return rows


def _print_summary(report: dict, workdir: pathlib.Path) -> None:
  f, t = report["final"], report["teacher"]
  fmt = lambda v: "n/a" if v is None else f"{v:.4f}"
  print(f"teacher {t['name']}: val {fmt(t['val_accuracy'])}, test {fmt(t['test_accuracy'])}")
  print(f"search: {report['search']['evaluations']} evaluations in {report['search']['seconds']:.1f} s "
        f"({report['search']['num_compilations']} compiled programs)")
  print(f"{'val_acc':>8} {'params':>9} {'MFLOPs':>8} {'ms@b1':>7}  arch (top after final KD)")
  for r in report["top"]:
    print(f"{fmt(r['val_accuracy']):>8} {r['params']:>9d} {r['flops'] / 1e6:>8.2f} {r['latency_ms']:>7.2f}  {r['arch']}")
  print(f"chosen {f['arch']}: KD test {fmt(f['kd']['test_accuracy'])} vs no-KD test {fmt(f['no_kd']['test_accuracy'])}")
  for b in report.get("baselines") or []:
    print(f"baseline {b['name']} ({b['params']} params): KD val {fmt(b['kd']['val_accuracy'])}, "
          f"test {fmt(b['kd']['test_accuracy'])}")
  print(f"report: {workdir / 'report.md'}; exported student: {workdir / report['export']} "
        f"({report['seconds']:.1f} s total)")
