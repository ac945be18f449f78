"""Compile time of per-cell NB201 programs whose cell has a node fed only by 'none' edges.

Commands (from the repository root)::

  python bench/probes/none_node_compile.py --quick   # C=4, N=1, 16x16, batch 16; < 2 min
  python bench/probes/none_node_compile.py           # C=16, N=5, 32x32, batch 64 (the NB201 skeleton)

Such a node is zero. If it is a constant zeros array, XLA:CPU constant-folds every op downstream
of it inside the cell while compiling (12-13 s per batch-sized average pool in XLA's warnings
during this script's full run). The library builds it as ``0 * x`` (the lowering's
``zero_node="times_zero"``, :mod:`jdanas.lowering`), which XLA does not fold. This script scores
the same cells with per-cell programs both ways, side by side from cold caches: ``zeros`` is a
:class:`jdanas.lowering.Lowering` with ``zero_node="constant"`` (``jnp.zeros_like``), ``mul`` the
default lowering. Output: one JSON line per (proxy, cell) with ``seconds_zeros``, ``seconds_mul``
(one ``score_population`` call: compilation and one run), ``ratio`` and ``same_score``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

CELLS = ("|none~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|",
         "|nor_conv_3x3~0|+|none~0|none~1|+|avg_pool_3x3~0|avg_pool_3x3~1|nor_conv_3x3~2|")
FULL = dict(channels=16, num_cells=5, image_size=32, batch=64)
QUICK = dict(channels=4, num_cells=1, image_size=16, batch=16)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--quick", action="store_true", help="tiny network")
  for name in FULL:
    p.add_argument("--" + name.replace("_", "-"), type=int, default=None)
  p.add_argument("--proxies", default="snip,grasp")
  args = p.parse_args(argv)
  for k, v in (QUICK if args.quick else FULL).items():
    if getattr(args, k) is None:
      setattr(args, k, v)
  return args


def main(argv=None):
  from jdanas.lowering import configure_cpu_runtime
  configure_cpu_runtime()  # safe XLA:CPU flags, before jax starts (docs/lowering.md)
  args = parse_args(argv)
  import dataclasses

  import jax
  import numpy as np
  jax.config.update("jax_cpu_enable_async_dispatch", False)

  from jdanas import lowering as lowering_lib
  from jdanas.scoring import PROXY_INFO, clear_caches, score_population
  from jdanas.spaces import get_space

  default = lowering_lib.resolve("auto")
  lowerings = {"zeros": dataclasses.replace(default, name=default.name + "_constant_zero", zero_node="constant"),
               "mul": default}
  space = get_space("nb201", channels=args.channels, num_cells=args.num_cells)
  rng = np.random.default_rng(0)
  shape = (args.image_size, args.image_size, 3)
  x = rng.standard_normal((args.batch,) + shape).astype(np.float32)
  y = rng.integers(0, 10, args.batch).astype(np.int32)
  for proxy in [s for s in args.proxies.split(",") if s]:
    for cell in CELLS:
      enc = space.encode(cell)[None]
      res = {}
      for variant, lowering in lowerings.items():
        clear_caches()
        t0 = time.perf_counter()
        score = score_population(jax.random.key(0), space, enc, x, y, proxies=proxy, num_classes=10,
                                 init=PROXY_INFO[proxy].paper_init, lowering=lowering)[proxy][0]
        res[variant] = (time.perf_counter() - t0, score)
        print(f"{proxy} {variant} {cell}: {res[variant][0]:.1f} s", file=sys.stderr, flush=True)
      print(json.dumps({"proxy": proxy, "cell": cell, "seconds_zeros": round(res["zeros"][0], 2),
                        "seconds_mul": round(res["mul"][0], 2), "ratio": round(res["zeros"][0] / res["mul"][0], 2),
                        "same_score": bool(np.isclose(res["zeros"][1], res["mul"][1], rtol=1e-5)),
                        "channels": args.channels, "num_cells": args.num_cells, "image_size": args.image_size,
                        "batch": args.batch, "backend": jax.default_backend()}), flush=True)

if __name__ == "__main__":
  main()
