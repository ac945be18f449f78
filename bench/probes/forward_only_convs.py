"""Derivative proxies on NB201 cells: XLA's own convolution derivatives vs forward-only
convolutions (:func:`jdanas.models.layers.forward_only_conv`, whose derivatives of any order are
forward convolutions).

Commands (from the repository root)::

  python bench/probes/forward_only_convs.py --quick                # GraSP, C=4, N=1, 16x16; < 2 min
  python bench/probes/forward_only_convs.py                        # GraSP, C=16, N=5, 32x32, batch 64
  python bench/probes/forward_only_convs.py --proxies snip,fisher,jacob_cov,synflow
  python bench/probes/forward_only_convs.py --quick --space mobilenet --proxies snip   # any registered space

Every program of :func:`jdanas.scoring.score_population` is a loop over candidates (``lax.map``),
and inside a loop XLA:CPU computes a convolution's derivatives ~40x slower than at top level
(``bench/probes/forward_only_conv.py``, ``loop``); GraSP's second derivatives (kernel gradients of
kernel gradients) dominated a ``jax.profiler`` trace of the batched GraSP program. So the
``"cpu"`` lowering (:mod:`jdanas.lowering`, ``conv="forward_only"``) computes every convolution
of the groups that differentiate through the network
(:data:`jdanas.scoring.population.DERIVATIVE_GROUPS`) by its forward-only form. This script times both, side by side in one process from cold caches, for both forms:

* ``masked``: the masked NB201 space, all cells in one program (the batched path);
* ``per_cell``: the per-cell ``nb201`` space, one program per cell;
* with ``--space NAME`` (another registered space, ``--space-kwargs`` JSON), ``--per-cell``
  distinct random architectures of that space instead (form ``NAME``), each its own program.

Each side is called twice on the same cells: ``seconds_first`` includes compilation,
``seconds_run`` is the second (cached) call. Output: one JSON line per (proxy, form, convs) with
``run_s_per_cell`` and, on the ``forward_only`` lines, ``speedup_first`` / ``speedup_run``
(xla / forward_only)
and ``max_rel_diff`` of the scores (the two are the same function up to float rounding).
Batch of 64 Gaussian images, each proxy with its paper's initialisation
(:data:`jdanas.scoring.PROXY_INFO`).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
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
  p.add_argument("--proxies", default="grasp", help="comma-separated derivative proxies, each timed alone")
  p.add_argument("--space", default="nb201", help="nb201 (masked and per-cell forms) or another registered space")
  p.add_argument("--space-kwargs", type=json.loads, default={}, help="JSON keyword arguments of --space")
  args = p.parse_args(argv)
  for k, v in (QUICK if args.quick else FULL).items():
    if getattr(args, k) is None:
      setattr(args, k, v)
  if args.masked < 1 or args.per_cell < 1:
    p.error("need --masked >= 1 and --per-cell >= 1")
  return args


def main(argv=None):
  from jdanas.lowering import configure_cpu_runtime
  configure_cpu_runtime()  # safe XLA:CPU flags, before jax starts (docs/lowering.md)
  args = parse_args(argv)
  import jax
  jax.config.update("jax_cpu_enable_async_dispatch", False)
  import numpy as np

  import dataclasses

  from jdanas import lowering as lowering_lib
  from jdanas.scoring import PROXY_INFO, clear_caches, population, score_population
  from jdanas.spaces import get_space
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/, for score_throughput
  from score_throughput import distinct_cells

  rng = np.random.default_rng(args.seed)
  if args.space == "nb201":
    size = dict(channels=args.channels, num_cells=args.num_cells)
    forms = (("masked", "nb201_masked", args.masked), ("per_cell", "nb201", args.per_cell))
    encs = distinct_cells(rng, max(args.masked, args.per_cell))
  else:
    size = {k: tuple(v) if isinstance(v, list) else v for k, v in args.space_kwargs.items()}
    forms = ((args.space, args.space, args.per_cell),)
    other = get_space(args.space, **size)
    found = {}
    for k in range(1000 * args.per_cell):
      enc = np.asarray(other.sample(jax.random.key(args.seed * 100003 + k)))
      found.setdefault(other.decode(enc), enc)
      if len(found) == args.per_cell:
        break
    encs = np.stack(list(found.values()))
  shape = (args.image_size, args.image_size, 3)
  x = rng.standard_normal((args.batch,) + shape).astype(np.float32)
  y = rng.integers(0, 10, args.batch).astype(np.int32)
  key = jax.random.key(args.seed)
  proxies = [p for p in args.proxies.split(",") if p]
  for proxy in proxies:
    if proxy not in PROXY_INFO or PROXY_INFO[proxy].group not in population.DERIVATIVE_GROUPS:
      raise SystemExit(f"error: --proxies: {proxy!r} is not a derivative proxy "
                       f"({', '.join(p for p, i in PROXY_INFO.items() if i.group in population.DERIVATIVE_GROUPS)})")
  cpu = lowering_lib.resolve("cpu")
  lowerings = {"xla": dataclasses.replace(cpu, name="cpu_xla_convs", conv="xla"), "forward_only": cpu}
  for proxy, (form, space_name, n) in itertools.product(proxies, forms):
    space = get_space(space_name, **size)
    results = {}
    for convs, lowering in lowerings.items():
      clear_caches()
      call = lambda: score_population(key, space, encs[:n], x, y, proxies=proxy, num_classes=10,  # noqa: E731
                                      init=PROXY_INFO[proxy].paper_init, strategy="map", lowering=lowering)[proxy]
      t0 = time.perf_counter()
      scores = call()
      t1 = time.perf_counter()
      call()
      t2 = time.perf_counter()
      results[convs] = (scores, t1 - t0, t2 - t1)
      print(f"{proxy} {form} {convs}: {n} cells, first call {t1 - t0:.1f} s, second {t2 - t1:.1f} s", file=sys.stderr,
            flush=True)
      line = {"proxy": proxy, "form": form, "convs": convs, "cells": n, "seconds_first": round(t1 - t0, 2),
              "seconds_run": round(t2 - t1, 2), "run_s_per_cell": round((t2 - t1) / n, 3),
              **size, "image_size": args.image_size, "batch": args.batch, "backend": jax.default_backend()}
      if convs == "forward_only":
        ref, t_first, t_run = results["xla"]
        line.update(speedup_first=round(t_first / (t1 - t0), 2), speedup_run=round(t_run / (t2 - t1), 2),
                    max_rel_diff=float(np.max(np.abs(scores - ref) / np.maximum(np.abs(ref), 1e-30))))
      print(json.dumps(line), flush=True)

if __name__ == "__main__":
  main()
