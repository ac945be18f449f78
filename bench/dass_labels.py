"""Can DaSS labels teach? One task's students trained twice: how much do their labels agree across seeds?

Before a meta-dataset is built (bench/dass.py), its labels must separate the students by more than the training
noise, or no predictor can learn them (issue 31: "labels that agree across seeds: measure these first"). This
bench trains one task's teacher (the DaSS space's full network, cross-entropy), then the same ``--students``
distinct students remapped from it (``copy_paste_first``) and KD-trained with the DaSS loss, twice (keys
``fold_in(key, 100)`` and ``fold_in(key, 101)``), with ``--init scratch`` also from a random init, evaluating every
``--eval-every`` steps. JSON lines: ``data``, ``teacher``, one ``run`` line per (init, seed) and one
``reliability`` line per (init, label form): the split-half Spearman / Kendall of the two runs
(:func:`jdanas.meta.tasks.split_half_reliability`), the labels' spread and standard deviation, the mean absolute
difference between the two runs and the Spearman of the labels with the students' parameter counts. Label forms:
``final`` (the last evaluation), ``best`` (DaSS's official form: the best evaluation), ``last3`` (the mean of the
last three evaluations).

  XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" JDANAS_DATA_DIR=../shared/data \\
      python bench/dass_labels.py --multipliers 0.5,0.625,0.75,0.875,1.0 --classes 0,3,5 --student-steps 150 \\
      --eval-every 150 --batch 64 --teacher-steps 300 --val-size 1500 --train-limit 12000   # 2026-12-07 pilot
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np


def emit(**row):
  print(json.dumps(row), flush=True)


def floats(text: str) -> tuple[float, ...]:
  return tuple(float(v) for v in text.split(","))


def ints(text: str) -> tuple[int, ...]:
  return tuple(int(v) for v in text.split(","))


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--widths", type=ints, default=(8, 16, 32, 64), help="the teacher's stage widths")
  ap.add_argument("--max-depth", type=int, default=3)
  ap.add_argument("--multipliers", type=floats, default=(0.25, 0.5, 0.75, 1.0))
  ap.add_argument("--image-size", type=int, default=16)
  ap.add_argument("--classes", type=ints, default=(0, 3, 5), help="the task's CIFAR-10 classes")
  ap.add_argument("--students", type=int, default=32)
  ap.add_argument("--teacher-steps", type=int, default=600)
  ap.add_argument("--student-steps", type=int, default=100)
  ap.add_argument("--eval-every", type=int, default=20)
  ap.add_argument("--batch", type=int, default=32)
  ap.add_argument("--lr", type=float, default=0.02, help="the students' learning rate")
  ap.add_argument("--teacher-lr", type=float, default=0.02)
  ap.add_argument("--val-size", type=int, default=3000, help="validation images of the 10-class pool")
  ap.add_argument("--train-limit", type=int, default=0, help="training images of the 10-class pool (0: all)")
  ap.add_argument("--init", choices=("remap", "scratch", "both"), default="remap")
  args = ap.parse_args(argv)
  if not 1 <= args.eval_every <= args.student_steps:
    print(f"error: --eval-every: need 1..{args.student_steps}, got {args.eval_every}", file=sys.stderr)
    return 2
  if args.students < 3:
    print(f"error: --students: need >= 3, got {args.students}", file=sys.stderr)
    return 2
  try:
    from jdanas.spaces import DassSpace
    space = DassSpace(stage_widths=args.widths, max_depth=args.max_depth, multipliers=args.multipliers,
                      image_size=args.image_size)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  import jax
  from scipy.stats import spearmanr

  from jdanas import costs
  from jdanas.data import load_dataset, shared_data_dir
  from jdanas.distill.losses import KD_PRESETS
  from jdanas.meta import tasks as T
  from jdanas.teachers import Teacher, train_architecture
  from jdanas.train.population import PopulationTrainer
  from jdanas.train.recipe import Recipe

  data_dir = shared_data_dir()
  if not (data_dir / "cifar10_train_subset.npz").exists():
    emit(skipped=f"cifar10_train_subset.npz missing in {data_dir} (set JDANAS_DATA_DIR)")
    return 0
  data = load_dataset("npz", data_dir=data_dir, path="cifar10_train_subset.npz", val_size=args.val_size,
                      train_limit=args.train_limit or None, image_size=args.image_size)
  data = T.subset(data, args.classes)
  k = len(args.classes)
  emit(data={"classes": list(args.classes), "train": int(len(data.train.y)), "val": int(len(data.val.y)),
             "image_size": args.image_size}, space=dataclasses.asdict(space))
  key = jax.random.key(0)
  t0 = time.perf_counter()
  t_vars, t_meta = train_architecture(key, space, space.teacher_encoding, "of the task", data,
                                      Recipe(steps=args.teacher_steps, batch_size=args.batch,
                                             learning_rate=args.teacher_lr, loss=KD_PRESETS["ce"]), False)
  emit(teacher={"val_accuracy": float(t_meta["val_accuracy"]), "seconds": round(time.perf_counter() - t0, 1)})
  teacher = Teacher(name="dass_teacher", module=space.teacher(k), variables=t_vars, num_classes=k,
                    input_shape=data.image_shape)
  encs = T.distinct_students(key, space, args.students)
  params = np.array([costs.model_costs(space, e, num_classes=k, input_shape=data.image_shape).params for e in encs])
  trainer = PopulationTrainer(dataclasses.replace(space, masked=True), data, teacher=teacher, strategy="loop",
                              recipe=Recipe(steps=args.student_steps, batch_size=args.batch, learning_rate=args.lr,
                                            loss=KD_PRESETS["dass"]))
  for init in (("remap", "scratch") if args.init == "both" else (args.init,)):
    labels = {"final": [], "best": [], "last3": []}
    for seed in range(2):
      t0 = time.perf_counter()
      r = trainer.train(jax.random.fold_in(key, 100 + seed), list(encs),
                        init_variables=[t_vars] * len(encs) if init == "remap" else None, eval_every=args.eval_every)
      labels["final"].append(100 * r.accuracy)
      labels["best"].append(100 * r.best_accuracy)
      labels["last3"].append(100 * r.curve[-3:].mean(axis=0))
      emit(run={"init": init, "seed": seed, "seconds": round(time.perf_counter() - t0, 1),
                "mean": round(float(100 * r.accuracy.mean()), 2), "min": round(float(100 * r.accuracy.min()), 2),
                "max": round(float(100 * r.accuracy.max()), 2), "curve_steps": list(r.curve_steps),
                "curve_mean": [round(float(v), 2) for v in 100 * r.curve.mean(axis=1)]})
    for form, (a, b) in labels.items():
      rel = T.split_half_reliability(a, b)
      emit(reliability={"init": init, "label": form, **{m: round(float(v), 4) for m, v in rel.items()},
                        "spread": round(float(np.ptp(a)), 2), "sd": round(float(np.std(a)), 2),
                        "mean_absdiff": round(float(np.mean(np.abs(a - b))), 2),
                        "spearman_params": round(float(spearmanr(params, (a + b) / 2).statistic), 4)})
  return 0


if __name__ == "__main__":
  sys.exit(main())
