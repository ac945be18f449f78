"""DisWOT S1 benchmark: rank correlation of DisWOT and the zero-cost proxies with the KD and vanilla
CIFAR-100 accuracies of the 64 S1 students (CIFAR ResNets with 1/3/5/7 blocks per stage).

Commands (from the repository root)::

  python bench/proxy_s1.py --quick        # 8 students, DisWOT + its KD-based siblings + params; < 3 min
  python bench/proxy_s1.py                # all 64 students, every proxy
  python bench/proxy_s1.py --per-student --proxies diswot,kd   # one compiled program per student

Protocol: students of ``s1_resnet`` named as in ``diswot_s1_cifar100_vanilla_vs_kd.csv`` (e.g.
``557``; ground truth ``kd_top1`` = KD from a ResNet-110 teacher, ``vanilla_top1`` = trained
alone); a randomly initialised ResNet-110 teacher (100 classes), DisWOT's protocol; one batch
of the first ``--batch`` (64) CIFAR-100 training images of ``cifar100_train_subset.npz``
(bit-exact pixels), normalised with the CIFAR-100 mean/std; Gaussian init (DisWOT) for DisWOT,
the KD-based proxies and Zen, PyTorch's for GraSP and GradNorm, Flax defaults for the others (``--init``
overrides). Students are scored in the masked S1 space (``s1_resnet_masked``: depths are a
traced input, one compiled program per proxy group for all 64; scores equal the per-student
modules', tested);
``--per-student`` uses ``s1_resnet`` instead, where every student is its own signature and gets
its own program per proxy group. DisWOT and the six KD-based proxies share one forward pass
(one program).

Output: one JSON line per (proxy, target) with keys ``proxy, target, spearman, kendall`` and
``students``; an extra line with ``proxy = "vanilla_top1"`` (target ``kd_top1``) is the
reference: how well vanilla accuracy itself ranks the KD accuracies (Spearman 0.957 on all 64).
If the data files are absent it prints ``{"skipped": "<reason>"}`` and exits 0.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time

QUICK_PROXIES = "diswot,diswot_semantic,diswot_relation,kd,fitnet,at,sp,rkd,pkt,params"
QUICK_STUDENTS = ("111", "333", "557", "777", "135", "731", "515", "353")


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--quick", action="store_true", help="8 students")
  p.add_argument("--proxies", default=None, help="comma-separated names, or 'all' (default; --quick: DisWOT, "
                 "its KD-based siblings and params)")
  p.add_argument("--per-student", action="store_true", help="one compiled program per student (s1_resnet)")
  p.add_argument("--teacher", default="resnet110")
  p.add_argument("--init", default=None, choices=("gaussian", "flax", "torch"))
  p.add_argument("--relation-tap", default="pre_pool")
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args(argv)
  if args.proxies is None:
    args.proxies = QUICK_PROXIES if args.quick else "all"
  return args


def log(msg):
  print(msg, file=sys.stderr, flush=True)


def main(argv=None):
  from jdanas.lowering import configure_cpu_runtime
  configure_cpu_runtime()  # safe XLA:CPU flags, before jax starts (docs/lowering.md)
  args = parse_args(argv)
  t_start = time.perf_counter()
  from jdanas.data import shared_data_dir
  data_dir = str(shared_data_dir())
  gt_file = os.path.join(data_dir, "diswot_s1_cifar100_vanilla_vs_kd.csv")
  x_file = os.path.join(data_dir, "cifar100_train_subset.npz")
  missing = [f for f in (gt_file, x_file) if not os.path.exists(f)]
  if missing:
    print(json.dumps({"skipped": f"missing {', '.join(missing)} (set JDANAS_DATA_DIR)"}))
    return
  import jax
  import numpy as np
  from scipy import stats
  # Synchronous CPU dispatch: multi-minute calls hung with asynchronous dispatch on XLA:CPU (see
  # bench/trbo_nb201.py).
  jax.config.update("jax_cpu_enable_async_dispatch", False)

  from jdanas.scoring import PROXIES, random_teacher, score_population
  from jdanas.scoring.proxies import init_groups
  from jdanas.spaces import get_space

  proxies = list(PROXIES) if args.proxies == "all" else [s for s in args.proxies.split(",") if s]
  for p in proxies:
    if p not in PROXIES:
      raise SystemExit(f"error: --proxies: unknown proxy {p!r}")
  with open(gt_file, newline="") as f:
    rows = list(csv.DictReader(f))
  if args.quick:
    rows = [r for r in rows if r["struct"] in QUICK_STUDENTS]
  names = [r["struct"] for r in rows]
  kd = np.asarray([float(r["kd_top1"]) for r in rows])
  vanilla = np.asarray([float(r["vanilla_top1"]) for r in rows])
  space = get_space("s1_resnet" if args.per_student else "s1_resnet_masked")
  encs = np.stack([space.encode(n) for n in names])
  d = np.load(x_file)
  x = d["x"][:args.batch].astype(np.float32) / 255.0
  x = ((x - np.asarray((0.5071, 0.4867, 0.4408), np.float32)) / np.asarray((0.2675, 0.2565, 0.2761), np.float32))
  y = d["y"][:args.batch].astype(np.int32)
  teacher = random_teacher(args.teacher, 100, tuple(x.shape[1:]))
  key = jax.random.key(args.seed)

  scores, timings = {}, {}
  for init, group in init_groups(proxies, args.init).items():
    log(f"{len(names)} students, init {init}: {', '.join(group)}")
    t0 = time.perf_counter()
    scores.update(score_population(key, space, encs, x.astype(np.float32), y, proxies=group, num_classes=100,
                                   teacher=teacher, init=init, relation_tap=args.relation_tap))
    timings[init] = round(time.perf_counter() - t0, 1)
    log(f"  {timings[init]} s")

  def emit(proxy, score, target_name, target):
    ok = ~np.isnan(score)
    rho = stats.spearmanr(score[ok], target[ok]).statistic
    tau = stats.kendalltau(score[ok], target[ok]).statistic
    print(json.dumps({"proxy": proxy, "target": target_name, "spearman": round(float(rho), 4),
                      "kendall": round(float(tau), 4), "students": int(ok.sum())}), flush=True)

  for p in proxies:
    for target_name, target in (("kd_top1", kd), ("vanilla_top1", vanilla)):
      emit(p, scores[p].astype(np.float64), target_name, target)
  emit("vanilla_top1", vanilla, "kd_top1", kd)
  best = {p: names[int(np.nanargmax(scores[p]))] for p in proxies}
  print(json.dumps({"seconds": round(time.perf_counter() - t_start, 1), "seconds_by_init": timings,
                    "students": len(names), "space": "s1_resnet" if args.per_student else "s1_resnet_masked",
                    "teacher": args.teacher, "relation_tap": args.relation_tap,
                    "top_student_by_proxy": best, "best_kd_student": names[int(np.argmax(kd))]}), flush=True)


if __name__ == "__main__":
  main()
