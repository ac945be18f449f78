"""DaSS's meta-training job (``config.job = "meta_train"``): from a source dataset to a saved predictor.

Lee, An, Kim & Hwang, "Meta-prediction Model for Distillation-Aware NAS on Unseen Datasets", ICLR 2023;
docs/methods/dass.md. The job runs through the same ``run.py`` entry point as a search:

1. **Data** (``config.data``; ``data.classes`` restricts the source to the classes meta-training may
   see, e.g. CIFAR-10 classes 0-6 so that 7-9 stay unseen for the search).
2. **Tasks** (``config.tasks``): ``num_tasks + val_tasks`` class subsets of ``classes_per_task`` classes
   (:func:`jdanas.meta.class_subsets` with ``config.seed``); per task a teacher (the space's full network)
   and ``num_students`` students remapped from it and KD-trained with the DaSS recipe
   (:func:`jdanas.meta.build_meta_dataset`, in ``<workdir>/meta_dataset``; an interrupted job resumes at the
   first task not on disk).
3. **Meta-training** (``config.predictor``, ``config.meta``): Meta-SGD on the first ``num_tasks`` tasks, the
   last ``val_tasks`` pick the kept state by Spearman (:func:`jdanas.meta.meta_train`).
4. **Output**: the predictor in ``<workdir>/predictor`` (:func:`jdanas.meta.save_predictor`, with the
   embedding settings a ``predictor`` evaluator needs) and ``<workdir>/meta_report.json`` (per-task teacher
   accuracy and build time, meta-validation Spearman history, stage wall times). A workdir that holds the
   finished job of the same config returns its report; one that holds a job of another config is refused
   before compute (:mod:`jdanas.pipeline.resume`; the config is echoed to ``<workdir>/config.json``).

Every field is checked before compute (:func:`prepare_meta`); errors are one ``config.<field>: ...`` line.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from jdanas.distill import KD_PRESETS
from jdanas.errors import FieldError
from jdanas.pipeline import sections as S
from jdanas.pipeline.config import (Compute, ConfigError, build_compute, build_recipe, build_space, job_of, need,
                                    space_ref)
from jdanas.pipeline.sections import META, PREDICTOR, TASKS
from jdanas.pipeline.setup import log

META_SECTIONS = ("data", "space", "tasks", "predictor", "meta", "compute")
REPORT = "meta_report.json"


@dataclasses.dataclass(frozen=True)
class MetaPlan:
  """Everything of a ``meta_train`` config that can be built without the data."""
  space: Any
  recipe: Any  # jdanas.meta.TaskRecipe
  num_tasks: int
  val_tasks: int
  classes_per_task: int
  model: Any  # jdanas.meta.DassPredictor
  meta: Any  # jdanas.meta.MetaConfig
  episodes: int
  num_queries: int
  eval_every: int
  compute: Compute


def build_meta_plan(config: ml_collections.ConfigDict) -> MetaPlan:
  """Validates a ``config.job='meta_train'`` config; raises :class:`ConfigError` naming the field."""
  from jdanas import meta
  need(job_of(config) == "meta_train", "job", "build_meta_plan validates config.job='meta_train'")
  for section in META_SECTIONS:
    need(section in config, section, "section is missing")
  S.read(config, "")  # job, seed
  from jdanas.pipeline.config import _check_data
  _check_data(config.data)
  space = build_space(config.space)
  need(space.name == "dass_resnet", "space.name", f"meta-training builds DaSS tasks: needs dass_resnet, got "
       f"{space.name!r}")
  t = TASKS.read(config.tasks)
  teacher = build_recipe(config.tasks.get("teacher", None), "tasks.teacher", KD_PRESETS["ce"])
  student = build_recipe(config.tasks.get("student", None), "tasks.student", KD_PRESETS["dass"])
  need(t["eval_every"] <= student.steps, "tasks.eval_every",
       f"{t['eval_every']} exceeds the students' {student.steps} steps (tasks.student.steps)")
  compute = build_compute(config.compute, space)
  recipe = meta.TaskRecipe(teacher=teacher, student=student, num_students=t["num_students"],
                           num_noise=t["num_noise"], noise_seed=t["noise_seed"], strategy=compute.strategy,
                           eval_every=t["eval_every"], label=t["label"], repeats=t["repeats"])
  p = PREDICTOR.read(config.predictor)
  m = META.read(config.meta)
  need(m["num_queries"] <= t["num_students"], "meta.num_queries",
       f"{m['num_queries']} exceeds the {t['num_students']} students of a task (tasks.num_students)")
  config_meta = meta.MetaConfig(alpha_init=m["alpha_init"], learning_rate=m["learning_rate"],
                                first_order=m["first_order"], target=m["target"])
  return MetaPlan(space=space, recipe=recipe, num_tasks=t["num_tasks"], val_tasks=t["val_tasks"],
                  classes_per_task=t["classes_per_task"], model=meta.DassPredictor(**p), meta=config_meta,
                  episodes=m["episodes"], num_queries=m["num_queries"], eval_every=m["eval_every"], compute=compute)


def task_classes(config: ml_collections.ConfigDict, plan: MetaPlan, data) -> list[tuple[int, ...]]:
  """The class subsets of the tasks (labels of ``data``, i.e. positions in ``data.classes`` when given)."""
  from jdanas.meta import class_subsets
  return class_subsets(data.num_classes, plan.num_tasks + plan.val_tasks, plan.classes_per_task, seed=int(config.seed))


def prepare_meta(config: ml_collections.ConfigDict, workdir=None, *, data_optional: bool = False):
  """Every check of a ``meta_train`` job before compute: the plan, the workdir, the data, the task
  sizes against the data (classes, batch sizes); returns a :class:`jdanas.pipeline.Checked`.
  ``data_optional`` (``--show_config``): data that cannot be loaded skips the checks that need it."""
  from jdanas.pipeline.check import Checked, check_workdir, load_data_optional
  from jdanas.pipeline.resume import check_resume
  plan = build_meta_plan(config)
  # every process would build every task: the task builder has no multi-process layout (yet)
  need(jax.process_count() == 1, "job", f"'meta_train' runs in one process; this run has {jax.process_count()} "
       "(start it without --num_processes, then search with the predictor on as many as you like)")
  if workdir is not None:
    check_workdir(workdir)
    check_resume(config, workdir, REPORT)  # a workdir holding a job of another config is refused
  data, data_error = load_data_optional(config, data_optional)
  for field, r in (("tasks.teacher", plan.recipe.teacher), ("tasks.student", plan.recipe.student)):
    need(np.isfinite(r.learning_rate), f"{field}.learning_rate", f"must be finite, got {r.learning_rate!r}")
  if data is not None:
    need(plan.classes_per_task <= data.num_classes, "tasks.classes_per_task",
         f"{plan.classes_per_task} exceeds the {data.num_classes} classes of the data (data.classes)")
    smallest = min(int(np.isin(data.train.y, c).sum()) for c in task_classes(config, plan, data))
    for field, r in (("tasks.teacher", plan.recipe.teacher), ("tasks.student", plan.recipe.student)):
      need(r.batch_size <= smallest, f"{field}.batch_size",
           f"{r.batch_size} is larger than the smallest task's training split ({smallest} examples)")
  try:
    from jdanas.meta.tasks import distinct_students
    distinct_students(jax.random.key(0), plan.space, plan.recipe.num_students, max_draws=8)
  except FieldError as e:  # its field is tasks.num_students
    raise ConfigError(f"config.tasks.{e.field}: {e.detail}") from None
  return Checked(plan=plan, data=data, budget=None, data_error=data_error)


def describe_meta(config: ml_collections.ConfigDict, checked) -> str:
  """The ``--show_config`` plan lines of a ``meta_train`` job."""
  plan, data = checked.plan, checked.data
  r = plan.recipe
  n = plan.num_tasks + plan.val_tasks
  return "\n".join([
      "# plan (config.job='meta_train')",
      f"  data: not available ({checked.data_error})" if data is None else
      f"  data: {config.data.name}, train {len(data.train)}, val {len(data.val)}, {data.num_classes} classes",
      f"  tasks: {n} class subsets of {plan.classes_per_task} ({plan.num_tasks} meta-train, {plan.val_tasks} "
      f"meta-validation): " + ("not available (drawn from the data's classes)" if data is None
                               else f"{task_classes(config, plan, data)}"),
      f"  per task: the {config.space.name} full network trained {r.teacher.steps} steps, {r.num_students} "
      f"students remapped from it and KD-trained {r.student.steps} steps (alpha-KD), {r.num_noise} noise images",
      f"  meta-training: {plan.episodes} episodes of Meta-SGD ({plan.num_queries} queries a task, target "
      f"{plan.meta.target}), meta-validation every {plan.eval_every}",
      "  output: <workdir>/meta_dataset, <workdir>/predictor, <workdir>/meta_report.json"])


def run_meta_train(config: ml_collections.ConfigDict, workdir, checked=None, watchdog=None) -> dict:
  """Runs (or resumes) the job in ``workdir``; returns the report (see the module docstring). ``watchdog``:
  the progress points' receiver (default: none; ``run.py`` passes its :class:`~jdanas.pipeline.watchdog.Watchdog`)."""
  import contextlib
  from jdanas import meta
  from jdanas.parallel import is_main_process
  from jdanas.pipeline.summary import config_dict
  from jdanas.pipeline.watchdog import Progress
  from jdanas.runtime import check_cpu_runtime
  checked = checked or prepare_meta(config, workdir)
  plan, data = checked.plan, checked.data
  workdir = pathlib.Path(workdir)
  from jdanas.pipeline import finished_report
  done = finished_report(config, workdir, REPORT)
  if done is not None:
    log(f"[done] {workdir} already holds the finished meta-training of this config ({REPORT})")
    print_meta_summary(done, workdir)
    return done
  workdir.mkdir(parents=True, exist_ok=True)
  # the config the tasks on disk are built with: a rerun with another config is refused (prepare_meta)
  from jdanas.pipeline.resume import CONFIG_ECHO, check_resume, describe_changes, record_changes
  changes = check_resume(config, workdir, REPORT)
  if changes:
    log(f"[resume] config changes allowed (they cannot change the result): {describe_changes(changes)}")
  history = changes
  if is_main_process():
    history = record_changes(workdir, changes)
    (workdir / CONFIG_ECHO).write_text(config.to_json_best_effort(indent=1, sort_keys=True) + "\n")
  started = time.perf_counter()
  key_tasks, key_meta = jax.random.split(jax.random.key(config.seed))
  subsets = task_classes(config, plan, data)
  source = list(S.DATA.read(config.data)["classes"]) or list(range(data.num_classes))
  check_cpu_runtime()
  with contextlib.nullcontext(watchdog or Progress()) as watchdog:
    log(f"[tasks] building {len(subsets)} tasks in {workdir / 'meta_dataset'}")
    t0 = time.perf_counter()
    try:
      manifest = meta.build_meta_dataset(
          key_tasks, plan.space, data, subsets, workdir / "meta_dataset", plan.recipe,
          progress=watchdog.ticker("task build"),
          on_task=lambda i, e: log(f"[tasks] task {i}: classes {[source[c] for c in e['classes']]}, teacher "
                                   f"{e['teacher_accuracy']:.1f}%, {e['num_students']} students, {e['seconds']:.0f} s"))
    except FloatingPointError as e:  # a task teacher diverged: its recipe is the config's
      raise ConfigError(f"config.tasks.teacher: {e}") from None
    build_seconds = time.perf_counter() - t0
    tasks = meta.load_meta_dataset(workdir / "meta_dataset")
    train, val = meta.stack_tasks(tasks[:plan.num_tasks]), tasks[plan.num_tasks:]
    need(int(train.labels.shape[1]) >= plan.num_queries, "meta.num_queries",
         f"{plan.num_queries} exceeds the {int(train.labels.shape[1])} students with a finite label in every task")

    def progress(episode, loss, rho):
      watchdog.beat(f"meta-training episode {episode}")
      log(f"[meta] episode {episode}: loss {loss:.4f}, meta-val Spearman {rho:.3f}")

    log(f"[meta] Meta-SGD for {plan.episodes} episodes on {plan.num_tasks} tasks")
    t0 = time.perf_counter()
    state, history = meta.meta_train(key_meta, plan.model, plan.meta, train, val, episodes=plan.episodes,
                                     num_queries=plan.num_queries, eval_every=plan.eval_every, progress=progress)
    meta_seconds = time.perf_counter() - t0
  entries = [manifest["tasks"][str(i)] for i in range(len(subsets))]
  report = {
      "job": "meta_train", "dataset": config.data.name, "space": config.space.name,
      "tasks": [{"split": "meta_train" if i < plan.num_tasks else "meta_val",
                 "classes": [source[c] for c in e["classes"]], "teacher_accuracy": e["teacher_accuracy"],
                 "num_students": e["num_students"], "num_failed": e["num_failed"], "seconds": e["seconds"],
                 "label_mean": float(np.mean(np.asarray(t.labels))), "label_min": float(np.min(np.asarray(t.labels))),
                 "label_max": float(np.max(np.asarray(t.labels))),
                 # tasks.repeats >= 2: how well two trainings of the same students agree (split-half Spearman)
                 **({"reliability": e["reliability"]} if "reliability" in e else {})}
                for i, (e, t) in enumerate(zip(entries, tasks))],
      "meta_train": {**history, "best_val_spearman": max(history["val_spearman"])},
      "stages": {"task_build_seconds": build_seconds, "meta_train_seconds": meta_seconds},
      "predictor": "predictor", "seconds": time.perf_counter() - started, "config": config_dict(config),
      "resume_config_changes": history}
  if is_main_process():
    meta.save_predictor(workdir / "predictor", plan.model, plan.meta, state, meta={
        "space": space_ref(config.space), "num_noise": plan.recipe.num_noise, "noise_seed": plan.recipe.noise_seed,
        "remap": plan.recipe.remap, "map_shape": list(tasks[0].teacher_map.shape),
        "arch_dim": int(tasks[0].arch.shape[-1]), "source": config.data.name, "classes": sorted(
            {c for task in report["tasks"] for c in task["classes"]}),
        "best_val_spearman": report["meta_train"]["best_val_spearman"]})
    (workdir / REPORT).write_text(json.dumps(report, indent=1))
    print_meta_summary(report, workdir)
  return report


def print_meta_summary(report: dict, workdir: pathlib.Path) -> None:
  """A few console lines: per-task teachers, the meta-validation Spearman, the predictor's folder."""
  for i, t in enumerate(report["tasks"]):
    print(f"task {i} ({t['split']}): classes {t['classes']}, teacher {t['teacher_accuracy']:.1f}%, students "
          f"{t['label_min']:.1f}-{t['label_max']:.1f}% (mean {t['label_mean']:.1f}), {t['seconds']:.0f} s"
          + (f", label reliability (split-half Spearman) {t['reliability']['spearman']:.2f}" if "reliability" in t
             else ""))
  m, s = report["meta_train"], report["stages"]
  print(f"meta-validation Spearman by episode: "
        + ", ".join(f"{e}: {r:.3f}" for e, r in zip(m["episode"], m["val_spearman"]))
        + f"; best {m['best_val_spearman']:.3f}")
  print(f"task build {s['task_build_seconds']:.0f} s, meta-training {s['meta_train_seconds']:.0f} s; predictor: "
        f"{workdir / report['predictor']} ({report['seconds']:.0f} s total)")


__all__ = ["META_SECTIONS", "MetaPlan", "build_meta_plan", "describe_meta", "prepare_meta", "print_meta_summary",
           "run_meta_train", "task_classes"]
