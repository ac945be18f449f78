"""The importable pipeline behind ``run.py`` (usable from notebooks).

``run(config, workdir)``: data -> teacher (trained or loaded; cached in ``<workdir>/teacher``) ->
a population of students sampled from the search space, KD-trained together by the population
engine -> ``<workdir>/population.json`` (one record per student: architecture, validation
accuracy, params, FLOPs, loss) and a summary on stdout.

Every config value is validated by :func:`validate_config` before any compute; an error names the
field and the allowed values.
"""
from __future__ import annotations

import json
import pathlib
import sys
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from jdanas import costs
from jdanas.data import load_dataset
from jdanas.distill import KD_PRESETS, KDLoss
from jdanas.models.zoo import MODELS
from jdanas.parallel import make_mesh
from jdanas.spaces import SPACES, get_space
from jdanas.teachers import Teacher, evaluate, load_teacher, save_teacher, train_teacher
from jdanas.train import STRATEGIES, PopulationTrainer, Recipe
from jdanas.train.recipe import OPTIMIZERS, SCHEDULES


class ConfigError(ValueError):
  """A config value is invalid; the message is one line naming the field."""


def _need(ok: bool, field: str, msg: str) -> None:
  if not ok:
    raise ConfigError(f"config.{field}: {msg}")


def _is_int(v) -> bool:
  return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_recipe(c, field: str) -> None:
  _need(_is_int(c.steps) and c.steps > 0, f"{field}.steps", f"must be a positive int, got {c.steps!r}")
  _need(_is_int(c.batch_size) and c.batch_size > 0, f"{field}.batch_size",
        f"must be a positive int, got {c.batch_size!r}")
  _need(c.optimizer in OPTIMIZERS, f"{field}.optimizer", f"{c.optimizer!r} is not one of {OPTIMIZERS}")
  _need(isinstance(c.learning_rate, (int, float)) and c.learning_rate > 0, f"{field}.learning_rate",
        f"must be > 0, got {c.learning_rate!r}")
  _need(c.schedule in SCHEDULES, f"{field}.schedule", f"{c.schedule!r} is not one of {SCHEDULES}")
  _need(isinstance(c.weight_decay, (int, float)) and c.weight_decay >= 0, f"{field}.weight_decay",
        f"must be >= 0, got {c.weight_decay!r}")


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises :class:`ConfigError` (one line, naming the field) on the first invalid value."""
  for section in ("data", "teacher", "space", "population", "student"):
    _need(section in config, section, "section is missing")
  _need(_is_int(config.get("seed", None)), "seed", f"must be an int, got {config.get('seed', None)!r}")
  d = config.data
  _need(isinstance(d.name, str) and d.name, "data.name", "must be a dataset name ('digits', 'npz' or a TFDS name)")
  if d.name == "npz":
    _need(bool(d.get("path")), "data.path", "is required when data.name='npz'")
    path = pathlib.Path(d.get("data_dir") or ".") / d.path
    _need(path.exists(), "data.path", f"file {str(path)!r} does not exist")
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
    get_space(s.name, **dict(s.get("kwargs", {})))
  except ValueError as e:
    raise ConfigError(f"config.space.kwargs: {e}") from None
  p = config.population
  _need(_is_int(p.size) and p.size > 0, "population.size", f"must be a positive int, got {p.size!r}")
  _need(p.strategy in STRATEGIES, "population.strategy", f"{p.strategy!r} is not one of {STRATEGIES}")
  st = config.student
  _check_recipe(st, "student")
  _need(st.loss in KD_PRESETS, "student.loss", f"{st.loss!r} is not one of {', '.join(sorted(KD_PRESETS))}")
  _need(isinstance(st.temperature, (int, float)) and st.temperature > 0, "student.temperature",
        f"must be > 0, got {st.temperature!r}")
  m = config.get("mesh", ml_collections.ConfigDict({"pop": 1, "data": -1}))
  n = jax.device_count()
  pop, data = m.pop, m.data
  _need(_is_int(pop) and _is_int(data) and (pop == -1 or pop >= 1) and (data == -1 or data >= 1),
        "mesh", f"pop/data must be ints >= 1 or -1, got {pop!r}/{data!r}")
  pop_n = n // data if pop == -1 else pop
  data_n = n // pop_n if data == -1 else data
  _need(pop_n * data_n == n, "mesh", f"pop x data = {pop_n} x {data_n} does not match the {n} devices")
  _need(st.batch_size % data_n == 0, "student.batch_size",
        f"{st.batch_size} is not divisible by the mesh's data axis ({data_n})")


def _recipe(c, loss: KDLoss) -> Recipe:
  return Recipe(steps=int(c.steps), batch_size=int(c.batch_size), optimizer=c.optimizer,
                learning_rate=float(c.learning_rate), weight_decay=float(c.weight_decay),
                schedule=c.schedule, augment=bool(c.get("augment", True)), loss=loss,
                eval_batch_size=int(c.get("eval_batch_size", 500)))


def log(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


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


def run(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict[str, Any]:
  """Runs the pipeline; returns (and writes to ``workdir/population.json``) the results."""
  validate_config(config)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  t_start = time.perf_counter()
  root = jax.random.key(config.seed)
  key_teacher, key_sample, key_train = jax.random.split(root, 3)

  d = config.data
  data = load_dataset(d.name, data_dir=d.get("data_dir") or None, path=d.get("path") or None,
                      val_fraction=d.val_fraction, seed=config.seed,
                      train_limit=d.get("train_limit") or None)
  log(f"[data] {d.name}: train {len(data.train)}, val {len(data.val)}, "
      f"test {len(data.test) if data.test is not None else 0}, {data.num_classes} classes, {data.image_shape}")

  teacher = get_teacher(config, data, workdir, key_teacher)
  teacher_val = evaluate(teacher.module, teacher.variables, data.val, data.mean, data.std)
  log(f"[teacher] {teacher.name}: val accuracy {teacher_val:.4f}")

  space = get_space(config.space.name, **dict(config.space.get("kwargs", {})))
  encodings = _sample_distinct(space, key_sample, config.population.size)
  st = config.student
  base = KD_PRESETS[st.loss]
  loss = KDLoss(temperature=float(st.temperature), hard_weight=base.hard_weight,
                soft_weight=base.soft_weight, soft_form=base.soft_form)
  mesh = make_mesh(config.mesh.pop, config.mesh.data) if "mesh" in config and jax.device_count() > 1 else None
  trainer = PopulationTrainer(space, data, recipe=_recipe(st, loss), teacher=teacher if loss.uses_teacher else None,
                              strategy=config.population.strategy, mesh=mesh)
  log(f"[students] KD-training {len(encodings)} students of space {space.name} "
      f"({config.population.strategy} strategy, {st.steps} steps)")
  result = trainer.train(key_train, encodings, progress=True, desc="students")

  records = []
  for i, enc in enumerate(encodings):
    c = costs.model_costs(space, enc, num_classes=data.num_classes, input_shape=data.image_shape)
    records.append({"arch": space.decode(enc), "encoding": [int(v) for v in enc],
                    "val_accuracy": None if np.isnan(result.accuracy[i]) else float(result.accuracy[i]),
                    "final_loss": float(result.loss[i]), "params": c.params, "flops": c.flops})
  report = {
      "teacher": {"name": teacher.name, "val_accuracy": teacher_val},
      "space": space.name, "students": records,
      "engine": {"groups": [list(map(str, g.key)) for g in result.groups],
                 "num_compilations": result.num_compilations, "compile_seconds": result.compile_seconds,
                 "train_seconds": result.train_seconds, "examples_per_s": result.examples_per_s},
      "seconds": time.perf_counter() - t_start,
  }
  (workdir / "population.json").write_text(json.dumps(report, indent=2))
  ranked = sorted(records, key=lambda r: -1 if r["val_accuracy"] is None else r["val_accuracy"], reverse=True)
  print(f"teacher {teacher.name}: val acc {teacher_val:.4f}")
  print(f"{'val_acc':>8} {'params':>9} {'MFLOPs':>8}  arch")
  for r in ranked:
    acc = "nan" if r["val_accuracy"] is None else f"{r['val_accuracy']:.4f}"
    print(f"{acc:>8} {r['params']:>9d} {r['flops'] / 1e6:>8.2f}  {r['arch']}")
  print(f"{len(records)} students, {result.num_compilations} compiled programs, "
        f"{report['seconds']:.1f} s total; results in {workdir / 'population.json'}")
  return report


def _sample_distinct(space, key: jax.Array, n: int) -> list[np.ndarray]:
  """``n`` distinct random encodings (fewer if the space is smaller), drawn from ``fold_in(key, i)``."""
  seen, out, i = set(), [], 0
  while len(out) < n and i < 100 * n:
    enc = np.asarray(space.sample(jax.random.fold_in(key, i)))
    i += 1
    if tuple(enc) not in seen:
      seen.add(tuple(enc))
      out.append(enc)
  return out
