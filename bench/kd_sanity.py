"""KD sanity check on CIFAR-10: does a ResNet-56 teacher help a ResNet-20 student?

Commands (from the repository root)::

  python bench/kd_sanity.py            # full: roughly 20-30 min on a quiet 2-core CPU
  python bench/kd_sanity.py --quick    # smoke run, < 2 min (accuracies near chance)
  python bench/kd_sanity.py --teacher-steps 1400 --student-steps 1000   # a longer schedule

What it measures: on the shared CIFAR-10 files (``cifar10_train_subset.npz``: 20,000 training
images, 2,000 held out for validation; ``cifar10_test.npz``: the 10,000 test images) it

1. trains a ResNet-56 teacher with plain cross-entropy (:func:`jdanas.teachers.train_teacher`);
2. trains ResNet-20 twice with the population engine on the zoo space, same recipe, steps, seed,
   initial weights and batch order: with KD (RepDistiller preset: 0.1 CE + 0.9 T^2 KL, T=4,
   against the frozen teacher) and without (``KD_PRESETS["ce"]``), so the loss is the only
   difference;
3. reports TEST accuracy (:func:`jdanas.teachers.evaluate` on ``data.test``) of all three, plus
   their validation accuracies.

Recipe: RepDistiller's batch 64 and lr 0.05 (SGD, Nesterov momentum 0.9, weight decay 5e-4,
crop + flip augmentation), cosine to 0 after a 5 % linear warm-up. The full schedule (700 teacher
steps = 2.5 epochs, 500 student steps = 1.8 epochs) is sized from measured step times on a
2-core CPU (ResNet-56 about 1.2-1.9 s per batch of 64, ResNet-20 about 0.3-0.5 s, plus a
teacher forward pass for the KD student), far from the papers' 240 epochs, so absolute
accuracies are low; the check is the sign and size of ``kd_gain`` = KD - vanilla test accuracy.
With a weak (short-schedule) teacher a small or even negative gain is possible; the numbers are
reported as measured.

Output: one JSON line on stdout with ``teacher_acc, student_kd_acc, student_vanilla_acc,
seconds`` (test accuracies in [0, 1], total wall seconds) and the schedule (steps, epochs, batch
size, split sizes) and per-phase times; progress goes to stderr. If the data files are absent
it prints one line ``{"skipped": "<reason>"}`` and exits 0.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

TRAIN_FILE = "cifar10_train_subset.npz"
TEST_FILE = "cifar10_test.npz"
FULL = {"teacher_steps": 700, "student_steps": 500, "batch_size": 64, "train_limit": None,
        "val_size": 2000, "test_limit": None}
QUICK = {"teacher_steps": 8, "student_steps": 8, "batch_size": 32, "train_limit": 256,
         "val_size": 100, "test_limit": 200}


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--quick", action="store_true",
                 help="smoke run: 256 training images, 8 steps each, batch 32, 200 test images")
  p.add_argument("--teacher-steps", type=int, default=None, help="ResNet-56 training steps")
  p.add_argument("--student-steps", type=int, default=None, help="ResNet-20 training steps (both students)")
  p.add_argument("--batch-size", type=int, default=None, help="batch size of every run")
  p.add_argument("--learning-rate", type=float, default=0.05, help="peak SGD learning rate of every run")
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args(argv)
  base = QUICK if args.quick else FULL
  for name in ("teacher_steps", "student_steps", "batch_size"):
    if getattr(args, name) is None:
      setattr(args, name, base[name])
    if getattr(args, name) < 1:
      p.error(f"--{name.replace('_', '-')} must be positive")
  args.train_limit, args.val_size, args.test_limit = base["train_limit"], base["val_size"], base["test_limit"]
  return args


def log(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def main(argv=None) -> None:
  from jdanas.lowering import configure_cpu_runtime
  configure_cpu_runtime()  # safe XLA:CPU flags, before jax starts (docs/lowering.md)
  args = parse_args(argv)
  t_start = time.perf_counter()

  from jdanas.data import load_dataset, shared_data_dir

  data_dir = shared_data_dir()
  missing = [f for f in (TRAIN_FILE, TEST_FILE) if not (data_dir / f).exists()]
  if missing:
    print(json.dumps({"skipped": f"CIFAR-10 files {missing} not found in {data_dir} "
                                 f"(set JDANAS_DATA_DIR to the shared data folder)"}), flush=True)
    return

  import jax

  from jdanas.distill.losses import KD_PRESETS
  from jdanas.spaces import get_space
  from jdanas.teachers import evaluate, train_teacher
  from jdanas.train import PopulationTrainer, Recipe

  data = load_dataset("npz", data_dir=data_dir, path=TRAIN_FILE, test_path=TEST_FILE,
                      val_size=args.val_size, seed=args.seed, train_limit=args.train_limit,
                      test_limit=args.test_limit)
  n_train, n_val, n_test = len(data.train), len(data.val), len(data.test)
  log(f"[kd_sanity] backend={jax.default_backend()} train={n_train} val={n_val} test={n_test} "
      f"teacher_steps={args.teacher_steps} student_steps={args.student_steps} batch={args.batch_size}")

  def recipe(steps: int, loss) -> Recipe:
    return Recipe(steps=steps, batch_size=args.batch_size, optimizer="sgd", learning_rate=args.learning_rate,
                  momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="cosine",
                  warmup_steps=max(1, steps // 20) if steps > 1 else 0, augment=True, loss=loss,
                  eval_batch_size=min(500, n_val))

  key_teacher, key_student = jax.random.split(jax.random.key(args.seed))
  t0 = time.perf_counter()
  teacher = train_teacher(key_teacher, "resnet56", data, recipe=recipe(args.teacher_steps, KD_PRESETS["ce"]))
  teacher_s = time.perf_counter() - t0
  teacher_acc = evaluate(teacher.module, teacher.variables, data.test, data.mean, data.std)
  log(f"[kd_sanity] teacher resnet56: val {teacher.meta['val_accuracy']:.4f} test {teacher_acc:.4f} "
      f"({teacher_s:.0f}s, of which training steps {teacher.meta['train_seconds']:.0f}s)")

  space = get_space("zoo", models=("resnet20",))
  enc = space.encode("resnet20")
  module = space.build(space.signature(enc), data.num_classes)
  students = {}
  for name, loss, with_teacher in (("kd", KD_PRESETS["repdistiller"], True), ("vanilla", KD_PRESETS["ce"], False)):
    t0 = time.perf_counter()
    trainer = PopulationTrainer(space, data, recipe=recipe(args.student_steps, loss),
                                teacher=teacher if with_teacher else None, strategy="loop")
    result = trainer.train(key_student, [enc], desc=f"resnet20 {name}")
    wall = time.perf_counter() - t0
    test_acc = evaluate(module, result.variables(0), data.test, data.mean, data.std)
    students[name] = {"val": float(result.accuracy[0]), "test": test_acc, "seconds": wall,
                      "train_seconds": result.train_seconds}
    log(f"[kd_sanity] student resnet20 {name}: val {result.accuracy[0]:.4f} test {test_acc:.4f} "
        f"({wall:.0f}s, of which training steps {result.train_seconds:.0f}s)")

  def r4(x):
    return None if x is None or not math.isfinite(x) else round(float(x), 4)

  print(json.dumps({
      "teacher_acc": r4(teacher_acc), "student_kd_acc": r4(students["kd"]["test"]),
      "student_vanilla_acc": r4(students["vanilla"]["test"]),
      "seconds": round(time.perf_counter() - t_start, 1),
      "kd_gain": r4(students["kd"]["test"] - students["vanilla"]["test"]),
      "teacher_val_acc": r4(teacher.meta["val_accuracy"]), "student_kd_val_acc": r4(students["kd"]["val"]),
      "student_vanilla_val_acc": r4(students["vanilla"]["val"]),
      "teacher": "resnet56", "student": "resnet20", "kd_loss": "repdistiller (0.1 CE + 0.9 T^2 KL, T=4)",
      "teacher_steps": args.teacher_steps, "student_steps": args.student_steps, "batch_size": args.batch_size,
      "teacher_epochs": round(args.teacher_steps * args.batch_size / n_train, 2),
      "student_epochs": round(args.student_steps * args.batch_size / n_train, 2),
      "learning_rate": args.learning_rate, "num_train": n_train, "num_val": n_val, "num_test": n_test,
      "teacher_seconds": round(teacher_s, 1), "student_kd_seconds": round(students["kd"]["seconds"], 1),
      "student_vanilla_seconds": round(students["vanilla"]["seconds"], 1),
      "teacher_train_seconds": round(teacher.meta["train_seconds"], 1),
      "student_kd_train_seconds": round(students["kd"]["train_seconds"], 1),
      "student_vanilla_train_seconds": round(students["vanilla"]["train_seconds"], 1),
      "seed": args.seed, "backend": jax.default_backend(), "cpu_count": os.cpu_count(), "quick": args.quick,
  }), flush=True)


if __name__ == "__main__":
  main()
