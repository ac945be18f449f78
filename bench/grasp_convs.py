"""GraSP on NB201 cells: XLA's own convolution derivatives vs ``branch_convs`` (every convolution a
:func:`jdanas.models.layers.branch_conv`, whose derivatives of any order are forward convolutions).

Commands (from the repository root)::

  python bench/grasp_convs.py --quick     # C=4, N=1, 16x16, 4 masked + 2 per-cell cells; < 2 min
  python bench/grasp_convs.py             # C=16, N=5, 32x32, batch 64, 4 masked + 2 per-cell cells

GraSP is the one second-order proxy: ``-theta . (H g)``. On XLA:CPU, the second derivatives of a
convolution that XLA writes itself (kernel gradients of kernel gradients) dominated a
``jax.profiler`` trace of the batched GraSP program, so :func:`jdanas.scoring.score_population` builds NB201 networks with
``branch_convs=True`` for GraSP on CPU. This script times both, side by side in one process from
cold caches, for both forms:

* ``masked``: the masked NB201 space, all cells in one program (the batched path);
* ``per_cell``: the per-cell ``nb201`` space, one program per cell.

Each side is called twice on the same cells: ``seconds_first`` includes compilation,
``seconds_run`` is the second (cached) call. Output: one JSON line per (form, convs) with
``run_s_per_cell`` and, on the ``branch`` lines, ``speedup_first`` / ``speedup_run`` (xla / branch)
and ``max_rel_diff`` of the scores (the two are the same function up to float rounding).
Batch of 64 Gaussian images, PyTorch initialisation (GraSP's default).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

FULL = dict(masked=4, per_cell=2, channels=16, num_cells=5, image_size=32, batch=64)
QUICK = dict(masked=4, per_cell=2, channels=4, num_cells=1, image_size=16, batch=16)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--quick", action="store_true", help="tiny network, few cells")
  for name in ("masked", "per_cell", "channels", "num_cells", "image_size", "batch"):
    p.add_argument("--" + name.replace("_", "-"), type=int, default=None)
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args(argv)
  for k, v in (QUICK if args.quick else FULL).items():
    if getattr(args, k) is None:
      setattr(args, k, v)
  if args.masked < 1 or args.per_cell < 1:
    p.error("need --masked >= 1 and --per-cell >= 1")
  return args


def main(argv=None):
  args = parse_args(argv)
  import jax
  jax.config.update("jax_cpu_enable_async_dispatch", False)
  import numpy as np

  from jdanas.scoring import population, score_population
  from jdanas.spaces import get_space
  from score_throughput import clear_caches

  rng = np.random.default_rng(args.seed)
  cells = max(args.masked, args.per_cell)
  codes = rng.choice(5 ** 6, size=cells, replace=False)
  encs = np.stack([(codes // 5 ** (5 - i)) % 5 for i in range(6)], axis=1).astype(np.int32)
  shape = (args.image_size, args.image_size, 3)
  x = rng.standard_normal((args.batch,) + shape).astype(np.float32)
  y = rng.integers(0, 10, args.batch).astype(np.int32)
  key = jax.random.key(args.seed)
  second_order = population.SECOND_ORDER_GROUPS
  try:
    for form, space_name, n in (("masked", "nb201_masked", args.masked), ("per_cell", "nb201", args.per_cell)):
      space = get_space(space_name, channels=args.channels, num_cells=args.num_cells)
      results = {}
      for convs in ("xla", "branch"):
        # "xla": no group counts as second order, so GraSP runs on the modules' own convolutions
        population.SECOND_ORDER_GROUPS = second_order if convs == "branch" else frozenset()
        clear_caches()
        call = lambda: score_population(key, space, encs[:n], x, y, proxies="grasp", num_classes=10,  # noqa: E731
                                        init="torch", strategy="map")["grasp"]
        t0 = time.perf_counter()
        scores = call()
        t1 = time.perf_counter()
        call()
        t2 = time.perf_counter()
        results[convs] = (scores, t1 - t0, t2 - t1)
        print(f"{form} {convs}: {n} cells, first call {t1 - t0:.1f} s, second {t2 - t1:.1f} s", file=sys.stderr,
              flush=True)
        line = {"form": form, "convs": convs, "cells": n, "seconds_first": round(t1 - t0, 2),
                "seconds_run": round(t2 - t1, 2), "run_s_per_cell": round((t2 - t1) / n, 3),
                "channels": args.channels, "num_cells": args.num_cells, "image_size": args.image_size,
                "batch": args.batch, "backend": jax.default_backend()}
        if convs == "branch":
          ref, t_first, t_run = results["xla"]
          line.update(speedup_first=round(t_first / (t1 - t0), 2), speedup_run=round(t_run / (t2 - t1), 2),
                      max_rel_diff=float(np.max(np.abs(scores - ref) / np.maximum(np.abs(ref), 1e-30))))
        print(json.dumps(line), flush=True)
  finally:
    population.SECOND_ORDER_GROUPS = second_order


if __name__ == "__main__":
  main()
