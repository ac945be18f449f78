"""AKD at reduced scale ("Search to Distill: Pearls are Everywhere but not the Eyes", Liu et al.,
CVPR 2020): the paper's claims measured on the shared CIFAR-10 files, JSON lines on stdout.

Commands (from the repository root)::

  python bench/akd.py --part pilot            # the pilot study (34 min on a 2-core CPU shared with other jobs)
  python bench/akd.py --part pilot --quick    # smoke run (accuracies at chance; compile-bound)

Measured 2026-12-05 on a 2-core CPU running about 12 other jobs: the default pilot took 2,055 s,
of which 945 s compiled the 12 students' programs (once, reused by every teacher and seed) and
373 s trained them; ``--quick`` took about 14 min there, almost all compilation. With these
defaults (20 steps of batch 32 per student, 0.03 epochs) the students stay near chance (8-14 %
validation accuracy), so their rankings are mostly noise: raise ``--student-steps`` (e.g. 500)
where the machine allows.

``--part pilot`` -- "pearls are everywhere": does the best student depend on the teacher?

1. Teachers of different families from the zoo (default ``resnet8`` and ``vgg8``; e.g.
   ``--teachers resnet20,vgg8,mobilenetv2_half`` for three) are trained once with plain
   cross-entropy (the same short recipe) on ``cifar10_train_subset.npz`` (20,000 images;
   ``--val-size`` held out for validation); their validation and test (``cifar10_test.npz``)
   accuracies are reported. ``--teacher-dir DIR`` saves them there and loads them on later runs
   (trained again if absent).
2. A fixed set of students from the ``mobilenet`` (MnasNet-style) space with similar size: a
   pool of random architectures is drawn with ``--seed``, and the first ``--students`` distinct
   ones whose parameter count is within ``--tolerance`` (default +-15 %) of the pool's median
   are kept.
3. Every student is KD-trained from every teacher with the same recipe (RepDistiller's loss:
   0.1 CE + 0.9 T^2 KL, T=4) by the population engine (``--strategy``; programs are compiled
   once and reused for every teacher and seed), for each of ``--seeds`` seeds. The default is
   ``loop``, one program per student: these students differ in every shape, and on XLA:CPU one
   ``unroll`` program of 3 of them compiled in 582 s where a single student's took about 70 s
   (2-core CPU shared with other jobs). A seed fixes the students' initial weights, batch order
   and augmentation, so within a seed the teacher is the only difference. With ``--ce`` the same
   students are also trained without a teacher (the "NAS + KD" search signal).
4. Each student's held-out (validation) accuracy is its ``ACC_KD``. Reported per teacher: the
   ranking (by the mean over seeds) and the best student; Kendall tau (``scipy.stats.kendalltau``)
   between the rankings of every pair of teachers, within each seed and on the seed means; and
   the seed-to-seed tau of each teacher, the noise floor: a cross-teacher tau well below the
   seed-to-seed tau says the teacher changes the ranking, similar values say the differences
   are noise.

JSON lines (``"part": "pilot"``): one ``"kind": "teacher"`` line per teacher, one ``"kind": "run"``
line per (teacher, seed) as soon as it is trained, one ``"kind": "student"`` line per student
(architecture, params, accuracy per teacher and seed), one ``"kind": "ranking"`` line per teacher,
one ``"kind": "tau"`` line per teacher pair and a ``"kind": "summary"`` line. Progress and
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

TRAIN_FILE = "cifar10_train_subset.npz"
TEST_FILE = "cifar10_test.npz"
PILOT_FULL = dict(teachers="resnet8,vgg8", teacher_steps=100, teacher_batch_size=64, student_steps=20,
                  students=12, seeds=2, batch_size=32, base_width=0.25, pool=256, train_limit=None,
                  val_size=500, test_limit=None)
PILOT_QUICK = dict(teachers="resnet8,vgg8", teacher_steps=3, teacher_batch_size=16, student_steps=3,
                   students=3, seeds=2, batch_size=16, base_width=0.25, pool=32, train_limit=256, val_size=64,
                   test_limit=200)


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
  p.add_argument("--teachers", default=None, help="comma-separated zoo names (pilot)")
  p.add_argument("--teacher-steps", type=int, default=None, help="CE training steps of each teacher")
  p.add_argument("--student-steps", type=int, default=None, help="KD training steps of each student")
  p.add_argument("--students", type=int, default=None, help="students of similar size (pilot)")
  p.add_argument("--seeds", type=int, default=None, help="training seeds per teacher (pilot); search seeds per mode (compare)")
  p.add_argument("--batch-size", type=int, default=None, help="students' batch size")
  p.add_argument("--teacher-batch-size", type=int, default=None,
                 help="teachers' batch size")
  p.add_argument("--base-width", type=float, default=None, help="mobilenet space width multiplier")
  p.add_argument("--pool", type=int, default=None, help="random architectures the students are picked from")
  p.add_argument("--tolerance", type=float, default=0.15, help="students' params within +- this of the median")
  p.add_argument("--val-size", type=int, default=None, help="training images held out for ACC_KD")
  p.add_argument("--learning-rate", type=float, default=0.05, help="peak SGD learning rate of every run")
  p.add_argument("--strategy", choices=("loop", "unroll", "vmap", "auto"), default="loop",
                 help="population strategy (see jdanas.train.population)")
  p.add_argument("--max-unroll", type=int, default=4, help="students per program with --strategy unroll")
  p.add_argument("--ce", action="store_true", help="also train the students without a teacher (pilot)")
  p.add_argument("--teacher-dir", default=None, help="save teachers here / load them from here")
  p.add_argument("--seed", type=int, default=0, help="data split, student pool and teacher seed")
  akd_compare.add_arguments(p, standalone=False)
  args = p.parse_args(argv)
  base = PILOT_QUICK if args.quick else PILOT_FULL
  for name, value in base.items():
    # --seeds of --part compare keeps its own default (bench/akd_compare.py), not the pilot's.
    if getattr(args, name, None) is None and not (name == "seeds" and args.part == "compare"):
      setattr(args, name, value)
  for name in ("teacher_batch_size", "teacher_steps", "student_steps", "students", "seeds", "batch_size",
               "pool", "val_size", "max_unroll"):
    if getattr(args, name) is not None and getattr(args, name) < 1:
      p.error(f"--{name.replace('_', '-')} must be positive")
  if args.part == "pilot" and args.seeds < 2:
    p.error("--seeds must be >= 2 (the seed-to-seed tau is the noise floor)")
  if not 0 < args.tolerance < 1:
    p.error("--tolerance must be in (0, 1)")
  return args


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


def get_teacher(key, name: str, data, recipe, teacher_dir: str | None):
  """A zoo teacher trained with CE (or loaded from ``teacher_dir/<name>``), and whether it was loaded."""
  from jdanas.teachers import load_teacher, save_teacher, train_teacher

  path = None if teacher_dir is None else os.path.join(teacher_dir, name)
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
                      seed=args.seed, train_limit=args.train_limit, test_limit=args.test_limit)
  teachers = [t.strip() for t in args.teachers.split(",") if t.strip()]
  log(f"[akd pilot] backend={jax.default_backend()} train={len(data.train)} val={len(data.val)} "
      f"test={len(data.test)} teachers={teachers} students={args.students} seeds={args.seeds}")

  def recipe(steps: int, loss, batch_size: int) -> Recipe:
    return Recipe(steps=steps, batch_size=batch_size, optimizer="sgd", learning_rate=args.learning_rate,
                  momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="cosine",
                  warmup_steps=max(1, steps // 20) if steps > 1 else 0, augment=True, loss=loss,
                  eval_batch_size=min(500, len(data.val)))

  root = jax.random.key(args.seed)
  space = get_space("mobilenet", base_width=args.base_width)
  chosen, target = pick_students(space, jax.random.fold_in(root, 1), count=args.students, pool=args.pool,
                                 tolerance=args.tolerance, num_classes=data.num_classes)
  encs = [e for e, _ in chosen]
  log(f"[akd pilot] {len(encs)} students, params {min(n for _, n in chosen)}-{max(n for _, n in chosen)} "
      f"(median of the pool {target:.0f})")

  loaded = {}
  models = {}
  for i, name in enumerate(teachers):
    t0 = time.perf_counter()
    teacher, loaded[name] = get_teacher(jax.random.fold_in(root, 100 + i), name, data,
                                        recipe(args.teacher_steps, KD_PRESETS["ce"], args.teacher_batch_size),
                                        args.teacher_dir)
    test_acc = evaluate(teacher.module, teacher.variables, data.test, data.mean, data.std)
    models[name] = teacher
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
            "train_seconds": round(result.train_seconds, 1)})

  names = [name for name, _ in runs]
  for i, (e, n) in enumerate(chosen):
    emit({"bench": "akd", "part": "pilot", "kind": "student", "student": i, "arch": space.decode(e),
          "params": int(n),
          "val_acc": {name: [r4(acc[name, s][i]) for s in range(args.seeds)] for name in names}})

  mean = {name: np.mean([acc[name, s] for s in range(args.seeds)], axis=0) for name in names}
  seed_tau = {}
  for name in names:
    pairs = [kendall(acc[name, a], acc[name, b])[0] for a, b in itertools.combinations(range(args.seeds), 2)]
    seed_tau[name] = float(np.mean(pairs))
    order = np.argsort(-mean[name], kind="stable")
    emit({"bench": "akd", "part": "pilot", "kind": "ranking", "teacher": name,
          "ranking": [int(i) for i in order], "best_student": int(order[0]),
          "mean_val_acc": [r4(a) for a in mean[name]], "seed_to_seed_tau": r4(seed_tau[name]),
          "seed_to_seed_tau_pairs": [r4(t) for t in pairs]})
  cross = []
  for a, b in itertools.combinations(names, 2):
    per_seed = [kendall(acc[a, s], acc[b, s])[0] for s in range(args.seeds)]
    tau, p = kendall(mean[a], mean[b])
    cross.append((a, b, tau, float(np.mean(per_seed))))
    emit({"bench": "akd", "part": "pilot", "kind": "tau", "teachers": [a, b], "tau_of_seed_means": r4(tau),
          "p_value": r4(p), "tau_same_seed": [r4(t) for t in per_seed],
          "tau_same_seed_mean": r4(np.mean(per_seed))})
  kd = [c for c in cross if "ce" not in c[:2]]
  emit({"bench": "akd", "part": "pilot", "kind": "summary",
        "teachers": teachers, "with_ce": bool(args.ce), "students": len(encs), "seeds": args.seeds,
        "best_student": {name: int(np.argmax(mean[name])) for name in names},
        "mean_cross_teacher_tau_same_seed": r4(np.mean([c[3] for c in kd])) if kd else None,
        "mean_cross_teacher_tau_of_seed_means": r4(np.mean([c[2] for c in kd])) if kd else None,
        "mean_seed_to_seed_tau": r4(np.mean([seed_tau[t] for t in teachers])),
        "student_params_min": min(int(n) for _, n in chosen),
        "student_params_max": max(int(n) for _, n in chosen),
        "base_width": args.base_width, "teacher_steps": args.teacher_steps, "student_steps": args.student_steps,
        "batch_size": args.batch_size, "teacher_batch_size": args.teacher_batch_size,
        "student_epochs": round(args.student_steps * args.batch_size / len(data.train), 2),
        "teacher_epochs": round(args.teacher_steps * args.teacher_batch_size / len(data.train), 2),
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
