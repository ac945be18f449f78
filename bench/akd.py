"""AKD at reduced scale ("Search to Distill: Pearls are Everywhere but not the Eyes", Liu et al.,
CVPR 2020): the paper's claims measured on the shared CIFAR-10 files, JSON lines on stdout.

Commands (from the repository root)::

  nice -n 10 python bench/akd.py --part pilot --ce   # the pilot study, sized for a 2-core CPU (about 17 min)
  python bench/akd.py --part pilot --quick           # smoke run (tiny data, a few steps: accuracies at chance)

Wall time, load, accuracies and taus of the measured runs, and the sizing: docs/benchmarks.md (AKD's
pilot study); the command prepared for a GPU: docs/methods/akd.md.

``--part pilot`` -- "pearls are everywhere": does the best student depend on the teacher?

1. Teachers of different families from the zoo (default ``resnet8:800,vgg8_quarter:300``, ResNet-8 and
   VGG-8 at quarter width, of similar accuracy on the CPU data; ``NAME:STEPS`` sets a teacher's own CE
   steps, else ``--teacher-steps``; e.g. ``--teachers resnet20,vgg8,mobilenetv2_half`` for three) are trained
   with plain cross-entropy on ``cifar10_train_subset.npz`` (``--train-limit`` images after
   ``--val-size`` are held out for validation; 0 = all); their validation and test
   (``cifar10_test.npz``, ``--test-limit``) accuracies are reported. ``--teacher-dir DIR`` saves
   them under DIR (one folder per name, steps, image size and split) and loads them on later runs.
2. A fixed set of ``--students`` distinct students with similar size: a pool of ``--pool`` random
   architectures of ``--space`` is drawn with ``--seed``, and the first ones whose parameter count
   is within ``--tolerance`` of the pool's median are kept. ``--space nb201_masked`` (the default;
   ``--space-kwargs`` JSON over ``{"channels": 8, "num_cells": 1}``) computes every op of the cell
   with the architecture as an input, so one compiled program per loss (KD, CE) trains every
   student of every teacher and seed (``--strategy loop`` calls it once per student per step; on a
   GPU ``vmap`` stacks them); ``--space
   mobilenet`` (AKD's MnasNet-style space, ``--base-width``) compiles one program per student
   (about 70 s each on the 2-core CPU). Images are resized to ``--image-size`` (default 16; 0 =
   as stored, 32x32). In the NB201 cell the parameter count only says how many convolutions of
   each kind it holds, and at +-15 % around the median the students' true differences were far
   below the seed-to-seed noise of a short run (docs/benchmarks.md), so the CPU default is +-40 %
   (``--tolerance``; ``mobilenet`` keeps +-15 %): students of comparable size that differ more.
3. Every student is KD-trained from every teacher with the same recipe (RepDistiller's loss:
   0.1 CE + 0.9 T^2 KL, T=4) by the population engine, for each of ``--seeds`` seeds. A seed fixes
   the students' initial weights, batch order and augmentation, so within a seed the teacher is the
   only difference. With ``--ce`` the same students are also trained without a teacher (the
   "NAS + KD" search signal).
4. Each student's held-out (validation) accuracy is its ``ACC_KD``. Reported per teacher (and
   ``ce``): the ranking by the mean over seeds, the best student, the students' mean / min / max
   accuracy, and the seed-to-seed Kendall tau (the noise floor). For every pair: Kendall tau-b on
   the seed means, within each seed, and across seeds (teacher A's seed s vs teacher B's seed t,
   s != t: the same noise as the seed-to-seed tau, so the two compare like for like), and the
   paired difference cross-teacher minus seed-to-seed. Every tau has a 95 % percentile bootstrap
   interval (``bootstrap_tau``: students resampled with replacement, ``--resamples``, seeded with
   ``--seed``, numpy only); a difference whose interval lies below 0 says the teacher changes the
   ranking beyond seed noise, an interval around 0 says the data cannot tell.

JSON lines (``"part": "pilot"``): one ``"kind": "teacher"`` line per teacher, one ``"kind": "run"``
line per (teacher, seed) as soon as it is trained, one ``"kind": "student"`` line per student
(architecture, params, accuracy per teacher and seed), one ``"kind": "ranking"`` line per teacher,
one ``"kind": "tau"`` line per pair (each tau as ``{"tau", "ci95"}``) and a ``"kind": "summary"`` line. Progress and
timings go to stderr. Without the data files it prints one ``{"skipped": ...}`` line and exits 0.

``--part compare`` -- AKD vs NAS + KD at equal search budget and latency target
(``bench/akd_compare.py``, whose docstring has the design): ``--seeds`` search seeds per mode,
``--rounds``, ``--num-asks``, ``--space``, ``--workdir``.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import akd_compare  # noqa: E402  (bench/akd_compare.py, next to this file)

from jdanas.meta.study import tau_b  # noqa: E402  (vectorised tau-b: the bootstrap's resamples at once)

TRAIN_FILE = "cifar10_train_subset.npz"
TEST_FILE = "cifar10_test.npz"
# Sized on the 2-core CPU (docs/benchmarks.md): the masked NB201 cell trains every student with one
# compiled program, at 16x16, so 2 teachers + CE x 2 seeds x 16 students fit about 20 min there.
PILOT_FULL = dict(teachers="resnet8:800,vgg8_quarter:300", teacher_steps=400, teacher_batch_size=64,
                  student_steps=100, students=16, seeds=2, batch_size=64, base_width=0.25, pool=256,
                  train_limit=5000, val_size=3000, test_limit=2000, space="nb201_masked", image_size=16)
PILOT_QUICK = dict(teachers="resnet8,vgg8_quarter", teacher_steps=3, teacher_batch_size=16, student_steps=3,
                   students=3, seeds=2, batch_size=16, base_width=0.25, pool=32, train_limit=256, val_size=64,
                   test_limit=200, space="nb201_masked", image_size=16)
# Student space kwargs before --space-kwargs: small enough for the CPU (mobilenet's width is --base-width).
PILOT_SPACE_KWARGS = {"nb201_masked": dict(channels=8, num_cells=1), "mobilenet": {}}
# Students' size band around the pool's median (--tolerance): NB201 cells of similar size differ by
# less than a short run's seed noise, so its band is wider (module docstring).
PILOT_TOLERANCE = {"nb201_masked": 0.4, "mobilenet": 0.15}
BOOTSTRAP_RESAMPLES = 2000


def log(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def emit(record: dict) -> None:
  print(json.dumps(record), flush=True)


def r4(x) -> float | None:
  return None if x is None or not math.isfinite(float(x)) else round(float(x), 4)


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--part", choices=("pilot", "compare"), default="pilot", help="which study to run")
  p.add_argument("--quick", action="store_true", help="smoke run (tiny data, a few steps)")
  p.add_argument("--teachers", default=None,
                 help="comma-separated zoo names, each optionally NAME:STEPS to override --teacher-steps (pilot)")
  p.add_argument("--teacher-steps", type=int, default=None, help="CE training steps of each teacher")
  p.add_argument("--student-steps", type=int, default=None, help="KD training steps of each student")
  p.add_argument("--students", type=int, default=None, help="students of similar size (pilot)")
  p.add_argument("--seeds", type=int, default=None, help="training seeds per teacher (pilot); search seeds per mode (compare)")
  p.add_argument("--batch-size", type=int, default=None, help="students' batch size")
  p.add_argument("--teacher-batch-size", type=int, default=None,
                 help="teachers' batch size")
  p.add_argument("--base-width", type=float, default=None, help="mobilenet space width multiplier")
  p.add_argument("--pool", type=int, default=None, help="random architectures the students are picked from")
  p.add_argument("--tolerance", type=float, default=None,
                 help="students' params within +- this of the pool's median (default 0.4 nb201_masked, 0.15 mobilenet)")
  p.add_argument("--val-size", type=int, default=None, help="training images held out for ACC_KD")
  p.add_argument("--learning-rate", type=float, default=0.05, help="peak SGD learning rate of every run")
  p.add_argument("--strategy", choices=("loop", "unroll", "vmap", "auto"), default="loop",
                 help="population strategy (see jdanas.train.population)")
  p.add_argument("--max-unroll", type=int, default=4, help="students per program with --strategy unroll")
  p.add_argument("--resamples", type=int, default=BOOTSTRAP_RESAMPLES,
                 help="bootstrap resamples of the students for every tau's 95%% interval (pilot)")
  p.add_argument("--ce", action="store_true", help="also train the students without a teacher (pilot)")
  p.add_argument("--teacher-dir", default=None, help="save teachers here / load them from here")
  p.add_argument("--seed", type=int, default=0, help="data split, student pool and teacher seed")
  p.add_argument("--space-kwargs", default=None,
                 help="JSON object of student space kwargs (pilot; default nb201_masked: "
                      f"{json.dumps(PILOT_SPACE_KWARGS['nb201_masked'])}, mobilenet: base_width from --base-width)")
  p.add_argument("--image-size", type=int, default=None,
                 help="images resized to this square (pilot; default 16, 0 = as stored, 32x32)")
  p.add_argument("--train-limit", type=int, default=None,
                 help="training images used (pilot; after the val split; 0 = all 20,000 less --val-size)")
  p.add_argument("--test-limit", type=int, default=None,
                 help="test images of the teachers' test accuracy (pilot; 0 = all)")
  akd_compare.add_arguments(p, standalone=False)
  # --space is shared with --part compare (default mobilenet there); the pilot's default is its own.
  p.set_defaults(space=None)
  args = p.parse_args(argv)
  base = PILOT_QUICK if args.quick else PILOT_FULL
  for name, value in base.items():
    # --seeds and --space of --part compare keep their own defaults (bench/akd_compare.py), not the pilot's.
    if getattr(args, name, None) is None and not (name in ("seeds", "space") and args.part == "compare"):
      setattr(args, name, value)
  if args.space is None:
    args.space = "mobilenet" if args.part == "compare" else base["space"]
  for name in ("teacher_batch_size", "teacher_steps", "student_steps", "students", "seeds", "batch_size",
               "pool", "val_size", "max_unroll", "resamples"):
    if getattr(args, name) is not None and getattr(args, name) < 1:
      p.error(f"--{name.replace('_', '-')} must be positive")
  if args.part == "pilot" and args.seeds < 2:
    p.error("--seeds must be >= 2 (the seed-to-seed tau is the noise floor)")
  if args.tolerance is None:
    args.tolerance = PILOT_TOLERANCE.get(args.space, 0.15)
  if not 0 < args.tolerance < 1:
    p.error("--tolerance must be in (0, 1)")
  if args.image_size < 0:
    p.error("--image-size must be >= 0 (0 = as stored)")
  for name in ("train_limit", "test_limit"):  # 0: every image of the file
    if getattr(args, name) is not None and getattr(args, name) < 0:
      p.error(f"--{name.replace('_', '-')} must be >= 0 (0 = all)")
    setattr(args, name, getattr(args, name) or None)
  args.space_kwargs = space_kwargs(p, args)
  args.teacher_plan = teacher_plan(p, args)
  return args


def teacher_plan(p: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
  """``--teachers`` as ``{name: CE steps}``: ``NAME:STEPS`` sets one teacher's steps, so teachers of
  different cost can be trained to similar accuracy (the pilot compares rankings, not teachers)."""
  plan = {}
  for item in (t.strip() for t in args.teachers.split(",")):
    if not item:
      continue
    name, _, steps = item.partition(":")
    try:
      n = int(steps) if steps else args.teacher_steps
    except ValueError:
      n = 0
    if n < 1:
      p.error(f"--teachers: {item!r}: steps must be a positive integer")
    if name in plan:
      p.error(f"--teachers: {name!r} given twice")
    plan[name] = n
  if args.part == "pilot" and len(plan) < 2:
    p.error("--teachers: the pilot compares at least two teachers")
  return plan


def space_kwargs(p: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
  """The pilot's student space kwargs: the space's CPU-sized defaults, then ``--space-kwargs``."""
  kwargs = dict(PILOT_SPACE_KWARGS.get(args.space, {}))
  if args.space == "mobilenet":
    kwargs["base_width"] = args.base_width
  if args.space_kwargs is not None:
    try:
      extra = json.loads(args.space_kwargs)
    except json.JSONDecodeError as e:
      p.error(f"--space-kwargs: not JSON ({e})")
    if not isinstance(extra, dict):
      p.error(f"--space-kwargs: must be a JSON object, got {args.space_kwargs!r}")
    kwargs.update(extra)
  return kwargs


def pick_students(space, key, *, count: int, pool: int, tolerance: float, num_classes: int):
  """``count`` distinct architectures of ``space`` whose parameter counts are within
  ``tolerance`` of the median of ``pool`` random ones (in draw order), with their counts."""
  import jax
  import numpy as np

  from jdanas.costs import model_costs

  encs = [np.asarray(e) for e in jax.vmap(space.sample)(jax.random.split(key, pool))]
  params = [model_costs(space, e, num_classes=num_classes, flops=False).params for e in encs]
  target = float(np.median(params))
  chosen, seen = [], set()
  for e, n in zip(encs, params):
    if abs(n / target - 1) <= tolerance and tuple(e) not in seen:
      seen.add(tuple(e))
      chosen.append((e, n))
    if len(chosen) == count:
      break
  if len(chosen) < count:
    raise SystemExit(f"error: only {len(chosen)} of {pool} random architectures are within "
                     f"{tolerance:.0%} of the median size; raise --pool or --tolerance")
  return chosen, target


def get_teacher(key, name: str, data, recipe, teacher_dir: str | None, folder: str | None = None):
  """A zoo teacher trained with CE (or loaded from ``teacher_dir/<folder or name>``), and whether it was loaded."""
  from jdanas.teachers import load_teacher, save_teacher, train_teacher

  path = None if teacher_dir is None else os.path.join(teacher_dir, folder or name)
  if path is not None and os.path.exists(os.path.join(path, "teacher.json")):
    return load_teacher(path), True
  teacher = train_teacher(key, name, data, recipe=recipe)
  if path is not None:
    save_teacher(path, teacher)
  return teacher, False


def kendall(a, b) -> tuple[float, float]:
  from scipy.stats import kendalltau

  result = kendalltau(a, b)
  return float(result.statistic), float(result.pvalue)


def bootstrap_tau(x_pairs, y_pairs=(), *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                  level: float = 0.95) -> dict:
  """Percentile bootstrap over students of the mean Kendall tau-b of ``x_pairs`` (each ``(a, b)``:
  two scores of the same students, e.g. two teachers' accuracies) and, with ``y_pairs``, of the
  paired difference ``mean tau(x_pairs) - mean tau(y_pairs)``.

  Students are drawn with replacement (``resamples`` times, numpy's seeded generator) and every pair
  of one resample uses the same draw, so a difference keeps the pairing (e.g. cross-teacher tau vs
  the seed-to-seed tau of the same students). Resamples whose tau is undefined (a constant
  resample) are dropped and counted. Returns the point estimates on the original students, the
  ``level`` percentile intervals, and for a difference the fraction of resamples where it is <= 0
  (a one-sided bootstrap p-value for "x is above y")."""
  import numpy as np

  x_pairs = [(np.asarray(a, np.float64), np.asarray(b, np.float64)) for a, b in x_pairs]
  y_pairs = [(np.asarray(a, np.float64), np.asarray(b, np.float64)) for a, b in y_pairs]
  if not x_pairs:
    raise ValueError("bootstrap_tau needs at least one pair")
  n = len(x_pairs[0][0])
  if any(len(v) != n for pair in x_pairs + y_pairs for v in pair):
    raise ValueError("every score vector must hold the same students")
  if not 0 < level < 1:
    raise ValueError(f"level must be in (0, 1), got {level}")
  idx = np.random.default_rng(seed).integers(0, n, size=(int(resamples), n))

  def mean_tau(pairs, rows):
    return np.mean([tau_b(a[rows], b[rows]) for a, b in pairs], axis=0)

  lo_q, hi_q = 50 * (1 - level), 50 * (1 + level)

  def summary(point, draws):
    ok = draws[np.isfinite(draws)]
    lo, hi = (np.percentile(ok, [lo_q, hi_q]) if ok.size else (np.nan, np.nan))
    return {"tau": float(point), "lo": float(lo), "hi": float(hi), "resamples": int(ok.size)}

  everyone = np.arange(n)
  x_point, x_draws = mean_tau(x_pairs, everyone), mean_tau(x_pairs, idx)
  out = {"x": summary(x_point, x_draws), "level": level, "dropped": int(np.sum(~np.isfinite(x_draws)))}
  if y_pairs:
    y_point, y_draws = mean_tau(y_pairs, everyone), mean_tau(y_pairs, idx)
    diff = x_draws - y_draws
    ok = np.isfinite(diff)
    out["y"] = summary(y_point, y_draws)
    out["diff"] = summary(x_point - y_point, diff)
    out["p_diff_le_0"] = float(np.mean(diff[ok] <= 0)) if ok.any() else float("nan")
  return out


def tau_record(result: dict, key: str = "x") -> dict:
  """A bootstrap summary as JSON fields: the tau and its interval, rounded."""
  r = result[key]
  return {"tau": r4(r["tau"]), "ci95": [r4(r["lo"]), r4(r["hi"])]}


def pilot(args: argparse.Namespace) -> None:
  """The "pearls are everywhere" pilot study (see the module docstring)."""
  t_start = time.perf_counter()
  from jdanas.data import load_dataset, shared_data_dir

  data_dir = shared_data_dir()
  missing = [f for f in (TRAIN_FILE, TEST_FILE) if not (data_dir / f).exists()]
  if missing:
    emit({"bench": "akd", "part": "pilot", "skipped": f"CIFAR-10 files {missing} not found in {data_dir} "
                                                      f"(set JDANAS_DATA_DIR to the shared data folder)"})
    return

  import jax
  import numpy as np

  from jdanas.distill.losses import KD_PRESETS
  from jdanas.spaces import get_space
  from jdanas.teachers import evaluate
  from jdanas.train import PopulationTrainer, Recipe
  from jdanas.train.population import TrainingPrograms

  data = load_dataset("npz", data_dir=data_dir, path=TRAIN_FILE, test_path=TEST_FILE, val_size=args.val_size,
                      seed=args.seed, train_limit=args.train_limit, test_limit=args.test_limit,
                      image_size=args.image_size or None)
  teachers = list(args.teacher_plan)
  log(f"[akd pilot] backend={jax.default_backend()} train={len(data.train)} val={len(data.val)} "
      f"test={len(data.test)} image={data.image_shape[0]} teachers={teachers} students={args.students} "
      f"seeds={args.seeds} space={args.space} {args.space_kwargs}")

  def recipe(steps: int, loss, batch_size: int) -> Recipe:
    return Recipe(steps=steps, batch_size=batch_size, optimizer="sgd", learning_rate=args.learning_rate,
                  momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="cosine",
                  warmup_steps=max(1, steps // 20) if steps > 1 else 0, augment=True, loss=loss,
                  eval_batch_size=min(500, len(data.val)))

  root = jax.random.key(args.seed)
  space = get_space(args.space, **args.space_kwargs)
  chosen, target = pick_students(space, jax.random.fold_in(root, 1), count=args.students, pool=args.pool,
                                 tolerance=args.tolerance, num_classes=data.num_classes)
  encs = [e for e, _ in chosen]
  log(f"[akd pilot] {len(encs)} students, params {min(n for _, n in chosen)}-{max(n for _, n in chosen)} "
      f"(median of the pool {target:.0f})")

  loaded = {}
  models = {}
  teacher_test = {}
  for i, name in enumerate(teachers):
    t0 = time.perf_counter()
    # A saved teacher is reused only for the same image size, steps and data split.
    steps = args.teacher_plan[name]
    folder = (f"{name}_{data.image_shape[0]}px_{steps}steps_{len(data.train)}train_{len(data.val)}val"
              f"_seed{args.seed}")
    teacher, loaded[name] = get_teacher(jax.random.fold_in(root, 100 + i), name, data,
                                        recipe(steps, KD_PRESETS["ce"], args.teacher_batch_size),
                                        args.teacher_dir, folder)
    test_acc = evaluate(teacher.module, teacher.variables, data.test, data.mean, data.std)
    models[name] = teacher
    teacher_test[name] = test_acc
    emit({"bench": "akd", "part": "pilot", "kind": "teacher", "teacher": name, "loaded": loaded[name],
          "val_acc": r4(teacher.meta.get("val_accuracy", float("nan"))), "test_acc": r4(test_acc),
          "steps": teacher.meta.get("steps"), "seconds": round(time.perf_counter() - t0, 1)})

  runs = [(name, models[name]) for name in teachers] + ([("ce", None)] if args.ce else [])
  # One set of programs for all teachers: the KD step takes the teacher's logits as an input, so
  # every teacher shares it; each teacher (its module) gets its own batch program, and the CE
  # students (another recipe) their own step programs (TrainingPrograms keys carry both).
  programs = TrainingPrograms()
  acc = {}  # (run, seed) -> float[students]
  seconds = {"compile": 0.0, "train": 0.0}
  for seed in range(args.seeds):
    for name, teacher in runs:
      loss = KD_PRESETS["ce"] if teacher is None else KD_PRESETS["repdistiller"]
      trainer = PopulationTrainer(space, data, recipe=recipe(args.student_steps, loss, args.batch_size),
                                  teacher=teacher, strategy=args.strategy, max_unroll=args.max_unroll,
                                  programs=programs)
      result = trainer.train(jax.random.fold_in(root, 1000 + seed), encs, desc=f"{name} seed {seed}")
      acc[name, seed] = np.asarray(result.accuracy, np.float64)
      seconds["compile"] += result.compile_seconds
      seconds["train"] += result.train_seconds
      emit({"bench": "akd", "part": "pilot", "kind": "run", "teacher": name, "seed": seed,
            "val_acc": [r4(a) for a in acc[name, seed]], "compile_seconds": round(result.compile_seconds, 1),
            "train_seconds": round(result.train_seconds, 1), "compiled_programs": trainer.num_compilations})

  names = [name for name, _ in runs]
  for i, (e, n) in enumerate(chosen):
    emit({"bench": "akd", "part": "pilot", "kind": "student", "student": i, "arch": space.decode(e),
          "params": int(n),
          "val_acc": {name: [r4(acc[name, s][i]) for s in range(args.seeds)] for name in names}})

  mean = {name: np.mean([acc[name, s] for s in range(args.seeds)], axis=0) for name in names}
  seed_pairs = list(itertools.combinations(range(args.seeds), 2))
  boot = dict(resamples=args.resamples, seed=args.seed)
  seed_tau = {}
  for name in names:
    # The noise floor: the same students, teacher and recipe, another seed (initial weights, batches).
    floor = bootstrap_tau([(acc[name, a], acc[name, b]) for a, b in seed_pairs], **boot)
    seed_tau[name] = floor
    order = np.argsort(-mean[name], kind="stable")
    emit({"bench": "akd", "part": "pilot", "kind": "ranking", "teacher": name,
          "ranking": [int(i) for i in order], "best_student": int(order[0]),
          "mean_val_acc": [r4(a) for a in mean[name]], "student_acc_mean": r4(np.mean(mean[name])),
          "student_acc_min": r4(np.min(mean[name])), "student_acc_max": r4(np.max(mean[name])),
          "seed_to_seed_tau": tau_record(floor),
          "seed_to_seed_tau_pairs": [r4(tau_b(acc[name, a], acc[name, b])) for a, b in seed_pairs]})
  cross = {}
  for a, b in itertools.combinations(names, 2):
    same_seed = [(acc[a, s], acc[b, s]) for s in range(args.seeds)]
    # Another seed on each side: the same noise as the seed-to-seed tau, so the two compare like for like.
    other_seed = [(acc[a, s], acc[b, t]) for s in range(args.seeds) for t in range(args.seeds) if s != t]
    floor_pairs = [(acc[n, s], acc[n, t]) for n in (a, b) for s, t in seed_pairs]
    means = bootstrap_tau([(mean[a], mean[b])], **boot)
    same = bootstrap_tau(same_seed, **boot)
    paired = bootstrap_tau(other_seed, floor_pairs, **boot)
    cross[a, b] = paired
    emit({"bench": "akd", "part": "pilot", "kind": "tau", "teachers": [a, b],
          "tau_of_seed_means": tau_record(means), "p_value": r4(kendall(mean[a], mean[b])[1]),
          "tau_same_seed": tau_record(same), "tau_same_seed_per_seed": [r4(tau_b(x, y)) for x, y in same_seed],
          "tau_other_seed": tau_record(paired, "x"), "seed_to_seed_tau": tau_record(paired, "y"),
          "other_seed_minus_seed_to_seed": tau_record(paired, "diff"),
          "p_other_seed_ge_seed_to_seed": r4(1 - paired["p_diff_le_0"]),
          "resamples": args.resamples, "dropped_resamples": paired["dropped"]})
  kd = [(a, b) for a, b in cross if "ce" not in (a, b)]
  emit({"bench": "akd", "part": "pilot", "kind": "summary",
        "teachers": teachers, "with_ce": bool(args.ce), "students": len(encs), "seeds": args.seeds,
        "best_student": {name: int(np.argmax(mean[name])) for name in names},
        "teacher_test_acc": {name: r4(teacher_test[name]) for name in teachers},
        "student_acc_mean": {name: r4(np.mean(mean[name])) for name in names},
        "student_acc_min": {name: r4(np.min(mean[name])) for name in names},
        "cross_teacher_tau_other_seed": {"-".join(k): tau_record(cross[k], "x") for k in kd},
        "cross_teacher_minus_seed_to_seed": {"-".join(k): tau_record(cross[k], "diff") for k in kd},
        "seed_to_seed_tau": {name: tau_record(seed_tau[name]) for name in names},
        "space": args.space, "space_kwargs": args.space_kwargs, "image_size": int(data.image_shape[0]),
        "student_params_min": min(int(n) for _, n in chosen),
        "student_params_max": max(int(n) for _, n in chosen),
        "teacher_steps": args.teacher_plan, "student_steps": args.student_steps,
        "batch_size": args.batch_size, "teacher_batch_size": args.teacher_batch_size,
        "student_epochs": round(args.student_steps * args.batch_size / len(data.train), 2),
        "teacher_epochs": {t: round(n * args.teacher_batch_size / len(data.train), 2)
                           for t, n in args.teacher_plan.items()},
        "learning_rate": args.learning_rate, "strategy": args.strategy,
        "kd_loss": "repdistiller (0.1 CE + 0.9 T^2 KL, T=4)",
        "num_train": len(data.train), "num_val": len(data.val), "num_test": len(data.test),
        "compile_seconds": round(seconds["compile"], 1), "train_seconds": round(seconds["train"], 1),
        "seconds": round(time.perf_counter() - t_start, 1), "seed": args.seed, "quick": args.quick,
        "backend": jax.default_backend(), "cpu_count": os.cpu_count()})


PARTS = {"pilot": pilot, "compare": akd_compare.compare}


def main(argv=None) -> None:
  from jdanas.lowering import configure_cpu_runtime
  configure_cpu_runtime()  # safe XLA:CPU flags, before jax starts (docs/lowering.md)
  args = parse_args(argv)
  if args.part == "compare":
    akd_compare.use_compilation_cache()
  if args.part not in PARTS:
    raise SystemExit(f"error: --part {args.part} is not implemented yet (parts: {', '.join(PARTS)})")
  PARTS[args.part](args)


if __name__ == "__main__":
  main()
