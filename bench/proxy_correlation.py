"""Rank correlation of every training-free proxy with NAS-Bench-201 accuracies (CIFAR-10 / CIFAR-100).

Commands (from the repository root)::

  python bench/proxy_correlation.py --quick     # 12 cells, C=4, N=1, 3 proxies; < 3 min
  python bench/proxy_correlation.py             # 1000 seeded cells, NB201 skeleton C=16, N=5, all proxies
  python bench/proxy_correlation.py --cells-n 200 --channels 8 --num-cells 1 --out scores.csv
  python bench/proxy_correlation.py --cells cells.csv --out scores.csv   # cells from a CSV column arch_str
  python bench/proxy_correlation.py --proxies grasp --chunk 25 --out scores.csv   # resumable
  python bench/proxy_correlation.py --proxies fisher --init torch --reference-cells --out ref.csv

Protocol: ``--cells-n`` cells drawn without replacement (seeded) from the 15,625 NB201 cells (or
the ``arch_str`` column of ``--cells``); one batch of 64 images per dataset: the first 64 of
``cifar10_train_subset.npz`` (``x_exact_head_batch1``, bit-exact pixels) and of
``cifar100_train_subset.npz``, normalised with the usual CIFAR means/stds; students with 10 /
100 classes; a randomly initialised ResNet-56 teacher (``--teacher``) for DisWOT and the
KD-based proxies. Each proxy uses the initialisation of its paper (``PROXY_INFO[p].paper_init``:
Gaussian for DisWOT, KD-based and Zen, PyTorch's for GraSP and GradNorm, Flax defaults otherwise;
``--init`` overrides). Targets (columns of ``nb201_accuracy.csv``): ``cifar10_valid_split_test_acc``
(CIFAR-10) and ``cifar100_test_acc`` (CIFAR-100). Spearman and Kendall from ``scipy.stats``; cells with a NaN
score are dropped for that proxy (``cells`` counts the rest). ``--reference-cells`` builds the
cells as the zero-cost-proxy reference code does (conv bias, BN without scale and bias:
``cell_affine=False`` of :class:`jdanas.spaces.NB201Space`).

Published Spearman rho on NB201 (Abdelfattah et al., ICLR 2021, CIFAR-10 / CIFAR-100, the full
skeleton with default init): SynFlow 0.74/0.76, Jacob-cov 0.73/0.70, SNIP 0.60/0.64, GradNorm
0.59/0.64, GraSP 0.51/0.55, Fisher 0.36/0.39; NASWOT about 0.80; params about 0.75.

Output: one JSON line per (proxy, dataset) with keys ``proxy, dataset, cells, spearman,
kendall`` (plus the network config); a final line with timings. ``--out FILE`` writes the
per-cell scores: ``arch_str`` then one column per proxy and dataset (``proxy@cifar10``). If the
data files are absent it prints ``{"skipped": "<reason>"}`` and exits 0.

Long runs: ``--chunk K`` (with ``--out``) scores K cells per call and rewrites ``--out`` after
every chunk (atomically); started again with the same arguments it keeps the columns already in
the file and goes on from the first cell not yet scored (an empty field), so a killed run loses at
most one chunk. Scores do not depend on the chunking: every candidate's weights come from the
same key and shared parameter paths. Columns of other proxies already in ``--out`` are kept.
``FILE.json`` beside ``--out`` records how each column was scored (initialisation, cells,
network); a run that would extend a column scored another way stops with a one-line error.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time

FULL = dict(cells_n=1000, channels=16, num_cells=5, proxies="all", teacher="resnet56")
QUICK = dict(cells_n=12, channels=4, num_cells=1, proxies="diswot,synflow,params", teacher="resnet8")
TARGETS = {"cifar10": "cifar10_valid_split_test_acc", "cifar100": "cifar100_test_acc"}
STATS = {"cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
         "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))}


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--quick", action="store_true", help="12 cells of a tiny network, 3 proxies")
  p.add_argument("--cells-n", type=int, default=None, help="number of random cells")
  p.add_argument("--cells", default=None, help="CSV with an arch_str column (overrides --cells-n)")
  p.add_argument("--out", default=None, help="per-cell scores CSV")
  p.add_argument("--channels", type=int, default=None)
  p.add_argument("--num-cells", type=int, default=None)
  p.add_argument("--proxies", default=None, help="comma-separated names, or 'all'")
  p.add_argument("--teacher", default=None)
  p.add_argument("--init", default=None, choices=("gaussian", "flax", "torch"), help="one init for every proxy")
  p.add_argument("--reference-cells", action="store_true",
                 help="cells as in the zero-cost reference code: conv bias, BN without affine (cell_affine=False)")
  p.add_argument("--datasets", default="cifar10,cifar100")
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--chunk", type=int, default=None, help="cells per call; resumable with --out")
  args = p.parse_args(argv)
  if args.chunk is not None and (args.chunk < 1 or not args.out):
    p.error("--chunk needs a positive size and --out")
  base = QUICK if args.quick else FULL
  for k, v in base.items():
    if getattr(args, k) is None:
      setattr(args, k, v)
  return args


def log(msg):
  print(msg, file=sys.stderr, flush=True)


def load_batch(data_dir, dataset, n):
  import numpy as np
  if dataset == "cifar10":
    d = np.load(os.path.join(data_dir, "cifar10_train_subset.npz"))
    x, y = d["x_exact_head_batch1"][:n], d["y"][:n]
  else:
    d = np.load(os.path.join(data_dir, "cifar100_train_subset.npz"))
    x, y = d["x"][:n], d["y"][:n]
  mean, std = STATS[dataset]
  x = (x.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
  return x.astype(np.float32), y.astype(np.int32)


def read_scores(path, archs):
  """Columns of an earlier (possibly partial) ``--out`` file for the same cells, and for each
  column the number of leading cells scored (an empty field = not scored yet)."""
  import numpy as np
  if not os.path.exists(path):
    return {}, {}
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  if [r["arch_str"] for r in rows] != archs:
    raise SystemExit(f"error: --out: {path} holds other cells than this run's; remove it or pass the same "
                     "--cells / --cells-n / --seed")
  columns, scored = {}, {}
  for name in rows[0]:
    if name != "arch_str":
      vals = [r[name] for r in rows]
      scored[name] = next((i for i, v in enumerate(vals) if v == ""), len(vals))
      columns[name] = np.asarray([float(v) if v != "" else np.nan for v in vals])
  return columns, scored


def write_scores(path, archs, columns, scored):
  """Writes the per-cell CSV atomically; cells from ``scored[column]`` on are written empty."""
  tmp = path + ".tmp"
  with open(tmp, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["arch_str"] + list(columns))
    for i, a in enumerate(archs):
      w.writerow([a] + [repr(float(columns[c][i])) if i < scored[c] else "" for c in columns])
  os.replace(tmp, path)


def read_settings(path):
  """The record ``path + ".json"`` of how each column of ``--out`` was scored ({} if absent)."""
  if not os.path.exists(path + ".json"):
    return {}
  with open(path + ".json") as f:
    return json.load(f)


def check_settings(meta, path, names, scored, setting):
  """Refuses to extend a partly scored column of ``--out`` under other settings than its own;
  records ``setting`` for ``names`` in ``meta``."""
  meta_path = path + ".json"
  for name in names:
    if scored.get(name, 0) > 0:
      if name not in meta:
        raise SystemExit(f"error: --out: column {name} of {path} has {scored[name]} scored cells and no record of "
                         f"their settings in {meta_path}; remove the column or pass another --out")
      diff = {k: (meta[name].get(k), v) for k, v in setting.items() if meta[name].get(k) != v}
      if diff:
        raise SystemExit(f"error: --out: column {name} of {path} was scored with other settings "
                         f"(recorded, now): {diff}")
    meta[name] = setting


def write_settings(path, meta):
  tmp = path + ".json.tmp"
  with open(tmp, "w") as f:
    json.dump(meta, f, indent=1, sort_keys=True)
  os.replace(tmp, path + ".json")


def main(argv=None):
  from jdanas.lowering import configure_cpu_runtime
  configure_cpu_runtime()  # safe XLA:CPU flags, before jax starts (docs/lowering.md)
  args = parse_args(argv)
  t_start = time.perf_counter()
  from jdanas.data import shared_data_dir
  data_dir = str(shared_data_dir())
  need = ["nb201_accuracy.csv", "cifar10_train_subset.npz", "cifar100_train_subset.npz"]
  missing = [f for f in need if not os.path.exists(os.path.join(data_dir, f))]
  if missing:
    print(json.dumps({"skipped": f"missing {', '.join(missing)} in {data_dir} (set JDANAS_DATA_DIR)"}))
    return
  import jax
  import numpy as np
  from scipy import stats
  # Synchronous CPU dispatch: multi-minute calls hung with asynchronous dispatch on XLA:CPU (see
  # bench/trbo_nb201.py).
  jax.config.update("jax_cpu_enable_async_dispatch", False)

  from jdanas.benchmarks.nb201 import NB201Table
  from jdanas.scoring import PROXIES, random_teacher, score_population
  from jdanas.scoring.proxies import init_groups
  from jdanas.spaces import get_space

  proxies = list(PROXIES) if args.proxies == "all" else [s for s in args.proxies.split(",") if s]
  for p in proxies:
    if p not in PROXIES:
      raise SystemExit(f"error: --proxies: unknown proxy {p!r}")
  datasets = [d for d in args.datasets.split(",") if d]
  for d in datasets:
    if d not in TARGETS:
      raise SystemExit(f"error: --datasets: {d!r} is not one of {', '.join(TARGETS)}")
  table = NB201Table(os.path.join(data_dir, "nb201_accuracy.csv"))
  space = get_space("nb201_masked", channels=args.channels, num_cells=args.num_cells,
                    cell_affine=not args.reference_cells)
  if args.cells:
    with open(args.cells, newline="") as f:
      archs = [r["arch_str"] for r in csv.DictReader(f)]
    encs = np.stack([space.encode(a) for a in archs])
  else:
    rows = np.random.default_rng(args.seed).choice(len(table), size=args.cells_n, replace=False)
    encs = table.encodings[rows]
  archs = [space.decode(e) for e in encs]
  columns, scored = read_scores(args.out, archs) if args.chunk else ({}, {})
  meta = read_settings(args.out) if args.chunk else {}
  log(f"{len(encs)} cells, C={args.channels}, N={args.num_cells}, proxies: {', '.join(proxies)}")

  key = jax.random.key(args.seed)
  timings = {}
  for dataset in datasets:
    x, y = load_batch(data_dir, dataset, args.batch)
    num_classes = 10 if dataset == "cifar10" else 100
    teacher = random_teacher(args.teacher, num_classes, tuple(x.shape[1:]))
    target = table.lookup(TARGETS[dataset], encs)
    # one call per init: proxies sharing a forward pass share one program; lines are printed as
    # soon as each call returns
    for init, group in init_groups(proxies, args.init).items():
      t0 = time.perf_counter()
      names = [f"{proxy}@{dataset}" for proxy in group]
      for name in names:
        columns.setdefault(name, np.full(len(encs), np.nan))
        scored.setdefault(name, 0)
      if args.out:
        setting = dict(init=init, cell_affine=not args.reference_cells, channels=args.channels,
                       num_cells=args.num_cells, batch=args.batch, seed=args.seed, teacher=args.teacher)
        check_settings(meta, args.out, names, scored, setting)
      done = min(scored[name] for name in names)
      step = args.chunk or len(encs)
      for start in range(done, len(encs), step):
        idx = np.minimum(np.arange(start, start + step), len(encs) - 1)  # fixed shape: one program
        scores = score_population(key, space, encs[idx], x, y, proxies=group, num_classes=num_classes,
                                  teacher=teacher, init=init)
        n = min(step, len(encs) - start)
        for proxy, name in zip(group, names):
          columns[name][start:start + n] = scores[proxy][:n]
          scored[name] = start + n
        if args.chunk:
          write_scores(args.out, archs, columns, scored)
          write_settings(args.out, meta)
          log(f"{dataset} init {init}: {start + n}/{len(encs)} cells, {time.perf_counter() - t0:.0f} s")
      timings[f"{init}@{dataset}"] = round(time.perf_counter() - t0, 2)
      log(f"{dataset} init {init}: {', '.join(group)} in {timings[f'{init}@{dataset}']} s")
      for proxy, name in zip(group, names):
        score = columns[name]
        ok = ~np.isnan(score)
        rho = stats.spearmanr(score[ok], target[ok]).statistic if ok.sum() > 2 else float("nan")
        tau = stats.kendalltau(score[ok], target[ok]).statistic if ok.sum() > 2 else float("nan")
        print(json.dumps({"proxy": proxy, "dataset": dataset, "cells": int(ok.sum()),
                          "spearman": round(float(rho), 4), "kendall": round(float(tau), 4), "init": init,
                          "channels": args.channels, "num_cells": args.num_cells, "batch": args.batch,
                          "cell_affine": not args.reference_cells}), flush=True)
  if args.out:
    write_scores(args.out, archs, columns, scored)
    write_settings(args.out, meta)
  print(json.dumps({"seconds": round(time.perf_counter() - t_start, 1), "cells": len(encs),
                    "seconds_by_init_and_dataset": timings}), flush=True)


if __name__ == "__main__":
  main()
