"""Oracle KD vs averaged-ensemble KD vs no KD for one backbone student, on CIFAR-10.

Kang, Mun & Han, "Towards Oracle Knowledge Distillation with Neural Architecture Search" (AAAI
2020), at a reduced scale (docs/methods/oracle_kd.md):

  python bench/oracle_kd.py [--quick] [--members 3 --member resnet8 --student resnet8 --seeds 2]

1. trains an ensemble of M zoo ResNets (member ``i`` from ``fold_in(key, i)``, plain CE) on the
   shared CIFAR-10 subset (``JDANAS_DATA_DIR``) and reports its oracle statistics on the TRAINING
   set (each member's accuracy, the averaged ensemble's, the oracle's, the fractions every / no
   member gets right; Kang et al. Table 5) and its test accuracy;
2. trains the backbone student (a zoo ResNet) with three losses and otherwise identical runs (same
   recipe, steps, batches and initial weights; the S seeds are S students of one population,
   student ``s`` initialised from ``fold_in(key_init, s)``, in one program): (a) ``ce`` (no KD),
   (b) ``repdistiller`` against the averaged ensemble (0.1 CE + 0.9 T^2 KL, T = 4; the "IE"
   teacher), (c) ``oracle`` (L_OD, same weights and T, the mean logits of the correct members);
3. reports test accuracy mean and spread (max - min, and the per-seed values) per row.

Output: JSON lines on stdout: one ``{"row": "ensemble", ...}``, one per student row, and a last
``{"summary": ...}`` line with the oracle-minus-KD and KD-minus-CE gaps of the means. Progress goes to
stderr. If the data files are absent it prints ``{"skipped": "<reason>"}`` and exits 0. The
searched KDAS student is not a row: a search does not fit this bench's budget on the 2-core CPU
(``configs/oracle_kd_cifar.py:runlocal`` runs one).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

TRAIN_FILE = "cifar10_train_subset.npz"
TEST_FILE = "cifar10_test.npz"
FULL = dict(train_limit=5000, val_size=500, test_limit=2000, member_steps=300, student_steps=300, batch_size=64)
QUICK = dict(train_limit=256, val_size=64, test_limit=200, member_steps=4, student_steps=4, batch_size=32)
ROWS = (("ce", "ce", False), ("kd_average", "repdistiller", True), ("oracle", "oracle", True))


def log(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--quick", action="store_true", help="smoke run: 256 images, 4 steps (numbers meaningless)")
  p.add_argument("--members", type=int, default=3)
  p.add_argument("--member", default="resnet8", help="zoo model of every ensemble member")
  p.add_argument("--student", default="resnet8", help="zoo model of the backbone student")
  p.add_argument("--seeds", type=int, default=2)
  p.add_argument("--member-steps", type=int, default=None)
  p.add_argument("--student-steps", type=int, default=None)
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args(argv)
  if args.members < 2 or args.seeds < 2:
    p.error("--members and --seeds must be >= 2")
  cfg = dict(QUICK if args.quick else FULL)
  for name in ("member_steps", "student_steps"):
    if getattr(args, name) is not None:
      cfg[name] = getattr(args, name)

  from jdanas.data import load_dataset, shared_data_dir
  data_dir = shared_data_dir()
  missing = [f for f in (TRAIN_FILE, TEST_FILE) if not (data_dir / f).exists()]
  if missing:
    print(json.dumps({"skipped": f"CIFAR-10 files {missing} not found in {data_dir} (set JDANAS_DATA_DIR)"}))
    return

  import jax

  from jdanas.distill import KD_PRESETS
  from jdanas.lowering import resolve
  from jdanas.spaces import get_space
  from jdanas.teachers import ensemble_report, evaluate, train_ensemble
  from jdanas.train import PopulationTrainer, Recipe

  t_start = time.perf_counter()
  data = load_dataset("npz", data_dir=data_dir, path=TRAIN_FILE, test_path=TEST_FILE, val_size=cfg["val_size"],
                      seed=args.seed, train_limit=cfg["train_limit"], test_limit=cfg["test_limit"])
  common = dict(backend=jax.default_backend(), num_train=len(data.train), num_test=len(data.test),
                batch_size=cfg["batch_size"], quick=args.quick)

  def recipe(steps: int, loss: str) -> Recipe:
    return Recipe(steps=steps, batch_size=cfg["batch_size"], learning_rate=0.05, weight_decay=5e-4,
                  warmup_steps=max(1, steps // 20), augment=True, loss=KD_PRESETS[loss],
                  eval_batch_size=min(500, len(data.val)))

  key_teacher, key_student = jax.random.split(jax.random.key(args.seed))
  t0 = time.perf_counter()
  teacher = train_ensemble(key_teacher, [args.member] * args.members, data,
                           recipe=recipe(cfg["member_steps"], "ce"), stack=resolve("auto").ensemble == "vmap")
  teacher_s = time.perf_counter() - t0
  stats = ensemble_report(teacher, data.train, data.mean, data.std)
  test_stats = ensemble_report(teacher, data.test, data.mean, data.std)
  r4 = lambda x: round(float(x), 4)  # noqa: E731
  print(json.dumps({"row": "ensemble", "model": f"{args.members}x{args.member}", "steps": cfg["member_steps"],
                    "train_members": [r4(a) for a in stats["members"]], "train_average": r4(stats["average"]),
                    "train_oracle": r4(stats["oracle"]), "train_all_right": r4(stats["all_right"]),
                    "train_none_right": r4(stats["none_right"]),
                    "test_members": [r4(a) for a in test_stats["members"]], "test_average": r4(test_stats["average"]),
                    "test_oracle": r4(test_stats["oracle"]), "seconds": round(teacher_s, 1), **common}), flush=True)

  space = get_space("zoo", models=(args.student,))
  enc = space.encode(args.student)
  module = space.build(space.signature(enc), data.num_classes)
  means = {}
  for row, loss, with_teacher in ROWS:
    t0 = time.perf_counter()
    trainer = PopulationTrainer(space, data, recipe=recipe(cfg["student_steps"], loss),
                                teacher=teacher if with_teacher else None)
    result = trainer.train(key_student, [enc] * args.seeds, desc=f"{args.student} {row}")
    tests = [evaluate(module, result.variables(s), data.test, data.mean, data.std) for s in range(args.seeds)]
    means[row] = float(np.mean(tests))
    print(json.dumps({"row": row, "student": args.student, "loss": loss, "steps": cfg["student_steps"],
                      "seeds": args.seeds, "test_mean": r4(means[row]), "test_spread": r4(max(tests) - min(tests)),
                      "test_per_seed": [r4(a) for a in tests], "val_per_seed": [r4(a) for a in result.accuracy],
                      "num_compilations": result.num_compilations, "seconds": round(time.perf_counter() - t0, 1),
                      **common}), flush=True)
  print(json.dumps({"summary": {"oracle_minus_kd": r4(means["oracle"] - means["kd_average"]),
                                "kd_minus_ce": r4(means["kd_average"] - means["ce"]),
                                "oracle_minus_ce": r4(means["oracle"] - means["ce"])},
                    "seconds": round(time.perf_counter() - t_start, 1)}), flush=True)


if __name__ == "__main__":
  main()
