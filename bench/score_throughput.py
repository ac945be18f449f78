"""Scoring throughput on NB201 cells: one program for all cells vs one compiled program per cell.

Commands (from the repository root)::

  python bench/score_throughput.py --quick      # C=4, N=1, 16x16 inputs, 12 cells, 2 proxies; < 3 min
  python bench/score_throughput.py              # C=16, N=5, 32x32, batch 64, 1000 cells, every proxy
  python bench/score_throughput.py --cells 200 --per-cell 10 --proxies diswot,synflow,snip
  python bench/score_throughput.py --proxies snip,gradnorm --by-group   # one timing for both

For each proxy (initialisation as in its paper, :data:`jdanas.scoring.PROXY_INFO`), in the same
process and from cold caches (``jax.clear_caches()`` and the scoring program caches):

* batched: :func:`jdanas.scoring.score_population` on the masked NB201 space (all cells share
  one compiled program per proxy group); time includes compilation, weight initialisation,
  the teacher pass and the transfer of results;
* per cell: the same call on the per-cell ``nb201`` space, where every cell is its own
  signature and gets its own compiled program, on the first ``--per-cell`` cells; the rate is
  measured on that subset and applied to all cells (``per_cell_extrapolated`` says so).

``archs_per_s_* = cells / seconds``; ``ratio = batched / per_cell``. The per-cell call is then
repeated with its programs cached: ``per_cell_run_s`` is that call's time per cell (weights,
run and transfer; no compilation), and ``ratio_bound = (per-cell seconds per cell) /
per_cell_run_s`` is the ratio a batched program would reach if it spent per cell what a cached
call of the cell's own program spends, compiling for free. Where it is near or below 10, reaching
10x needs a batched program that scores a cell faster than the cell's own compiled program.
Batch of 64 Gaussian
images (throughput does not depend on pixel values), random ResNet teacher (``--teacher``) for
the teacher-based proxies. Output: one JSON line per proxy with keys ``proxy,
archs_per_s_batched, archs_per_s_per_cell, ratio`` and the measurement details; progress on
stderr. ``--by-group`` times proxies that share one compiled program (same group and
initialisation, e.g. ``snip`` and ``gradnorm``, or DisWOT and the KD-based proxies) in one call
each way, as a search that uses them together would, and prints that timing on each of their
lines (``scored_with`` lists the proxies of the call).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

FULL = dict(cells=1000, per_cell=20, channels=16, num_cells=5, image_size=32, batch=64, teacher="resnet56",
            proxies="all")
QUICK = dict(cells=12, per_cell=2, channels=4, num_cells=1, image_size=16, batch=64, teacher="resnet8",
             proxies="diswot,synflow")


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--quick", action="store_true", help="tiny network, few cells, two proxies")
  for name, typ in (("cells", int), ("per_cell", int), ("channels", int), ("num_cells", int),
                    ("image_size", int), ("batch", int), ("teacher", str), ("proxies", str)):
    p.add_argument("--" + name.replace("_", "-"), type=typ, default=None)
  p.add_argument("--strategy", default="auto", help="score_population strategy for the batched side")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--by-group", action="store_true", help="one timing per set of proxies sharing a program")
  args = p.parse_args(argv)
  base = QUICK if args.quick else FULL
  for k, v in base.items():
    if getattr(args, k) is None:
      setattr(args, k, v)
  if args.per_cell < 1 or args.cells < args.per_cell:
    p.error("need 1 <= --per-cell <= --cells")
  return args


def log(msg):
  print(msg, file=sys.stderr, flush=True)


def distinct_cells(rng, n: int):
  """``int32[n, 6]``: ``n`` distinct NB201 cells drawn uniformly (the encoding's base-5 digits)."""
  import numpy as np
  codes = rng.choice(5 ** 6, size=n, replace=False)
  return np.stack([(codes // 5 ** (5 - i)) % 5 for i in range(6)], axis=1).astype(np.int32)


def main(argv=None):
  from jdanas.lowering import configure_cpu_runtime
  configure_cpu_runtime()  # safe XLA:CPU flags, before jax starts (docs/lowering.md)
  args = parse_args(argv)
  import jax
  # Synchronous CPU dispatch: multi-minute calls hung with asynchronous dispatch on XLA:CPU (see
  # bench/trbo_nb201.py).
  jax.config.update("jax_cpu_enable_async_dispatch", False)
  import numpy as np

  from jdanas.scoring import PROXIES, PROXY_INFO, clear_caches, random_teacher, score_population
  from jdanas.spaces import get_space

  proxies = [p for p in PROXIES if p not in ("params", "flops")] if args.proxies == "all" else \
      [s for s in args.proxies.split(",") if s]
  for p in proxies:
    if p not in PROXIES:
      raise SystemExit(f"error: --proxies: unknown proxy {p!r}")
  masked = get_space("nb201_masked", channels=args.channels, num_cells=args.num_cells)
  per_cell = get_space("nb201", channels=args.channels, num_cells=args.num_cells)
  rng = np.random.default_rng(args.seed)
  encs = distinct_cells(rng, args.cells)
  shape = (args.image_size, args.image_size, 3)
  x = rng.standard_normal((args.batch,) + shape).astype(np.float32)
  y = rng.integers(0, 10, args.batch).astype(np.int32)
  teacher = random_teacher(args.teacher, 10, shape)
  key = jax.random.key(args.seed)
  calls: dict[tuple, list[str]] = {}
  for proxy in proxies:
    info = PROXY_INFO[proxy]
    calls.setdefault((info.group, info.paper_init) if args.by_group else (proxy,), []).append(proxy)
  for names in calls.values():
    label = "+".join(names)
    kwargs = dict(proxies=tuple(names), num_classes=10, teacher=teacher, init=PROXY_INFO[names[0]].paper_init)
    clear_caches()
    t0 = time.perf_counter()
    score_population(key, masked, encs, x, y, strategy=args.strategy, **kwargs)
    t_batched = time.perf_counter() - t0
    log(f"{label}: batched {args.cells} cells in {t_batched:.1f} s")
    clear_caches()
    t0 = time.perf_counter()
    score_population(key, per_cell, encs[:args.per_cell], x, y, strategy="map", **kwargs)
    t_cell = time.perf_counter() - t0
    log(f"{label}: per-cell {args.per_cell} cells in {t_cell:.1f} s")
    t0 = time.perf_counter()
    score_population(key, per_cell, encs[:args.per_cell], x, y, strategy="map", **kwargs)
    run_cell = (time.perf_counter() - t0) / args.per_cell
    log(f"{label}: per-cell run (programs cached) {run_cell:.3f} s per cell")
    rate_b, rate_c = args.cells / t_batched, args.per_cell / t_cell
    for proxy in names:
      print(json.dumps({"proxy": proxy, "archs_per_s_batched": round(rate_b, 4),
                        "archs_per_s_per_cell": round(rate_c, 4), "ratio": round(rate_b / rate_c, 2),
                        "scored_with": names, "cells_batched": args.cells, "cells_per_cell": args.per_cell,
                        "per_cell_extrapolated": args.per_cell < args.cells, "seconds_batched": round(t_batched, 2),
                        "seconds_per_cell": round(t_cell, 2), "per_cell_run_s": round(run_cell, 4),
                        "ratio_bound": round(t_cell / args.per_cell / run_cell, 2), "channels": args.channels,
                        "num_cells": args.num_cells, "image_size": args.image_size, "batch": args.batch,
                        "backend": jax.default_backend()}), flush=True)

if __name__ == "__main__":
  main()
