"""Compile time of per-cell NB201 programs whose cell has a node fed only by 'none' edges.

Commands (from the repository root)::

  python bench/none_node_compile.py --quick   # C=4, N=1, 16x16, batch 16; < 2 min
  python bench/none_node_compile.py           # C=16, N=5, 32x32, batch 64 (the NB201 skeleton)

Such a node is zero. If it is a constant zeros array, XLA:CPU constant-folds every op downstream
of it inside the cell while compiling (12-13 s per batch-sized average pool in XLA's warnings
during this script's full run). The
library builds it as ``0 * x`` (:class:`jdanas.spaces.nb201.Cell`), which XLA does not fold. This
script scores the same cells with per-cell programs both ways, side by side from cold caches:
``zeros`` swaps in the earlier cell body (``jnp.zeros_like`` accumulators), ``mul`` is the
library's. Output: one JSON line per (proxy, cell) with ``seconds_zeros``, ``seconds_mul`` (one
``score_population`` call: compilation and one run), ``ratio`` and ``same_score``.
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
  args = parse_args(argv)
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import numpy as np
  jax.config.update("jax_cpu_enable_async_dispatch", False)

  from jdanas.scoring import PROXY_INFO, score_population
  from jdanas.spaces import get_space, nb201
  from score_throughput import clear_caches

  class ZerosCell(nb201.Cell):
    """The earlier cell body: node accumulators start from a constant zeros array."""

    @nn.compact
    def __call__(self, x, enc, train: bool):
      nodes = [x]
      for j in (1, 2, 3):
        acc = jnp.zeros_like(x)
        for i in range(j):
          e = nb201.EDGES.index((j, i))
          op = None if self.ops is None else self.ops[e]
          if op == "none":
            continue
          edge = nb201.Edge(self.features, op, self.edge_impl, None, self.affine, self.branch_convs,
                            name=f"edge{j}{i}")
          acc = acc + edge(nodes[i], None, train)
        nodes.append(acc)
      return nodes[3]

  space = get_space("nb201", channels=args.channels, num_cells=args.num_cells)
  rng = np.random.default_rng(0)
  shape = (args.image_size, args.image_size, 3)
  x = rng.standard_normal((args.batch,) + shape).astype(np.float32)
  y = rng.integers(0, 10, args.batch).astype(np.int32)
  library_cell = nb201.Cell
  try:
    for proxy in [s for s in args.proxies.split(",") if s]:
      for cell in CELLS:
        enc = space.encode(cell)[None]
        res = {}
        for variant in ("zeros", "mul"):
          nb201.Cell = ZerosCell if variant == "zeros" else library_cell  # read when the network is traced
          clear_caches()
          t0 = time.perf_counter()
          score = score_population(jax.random.key(0), space, enc, x, y, proxies=proxy, num_classes=10,
                                   init=PROXY_INFO[proxy].paper_init)[proxy][0]
          res[variant] = (time.perf_counter() - t0, score)
          print(f"{proxy} {variant} {cell}: {res[variant][0]:.1f} s", file=sys.stderr, flush=True)
        print(json.dumps({"proxy": proxy, "cell": cell, "seconds_zeros": round(res["zeros"][0], 2),
                          "seconds_mul": round(res["mul"][0], 2), "ratio": round(res["zeros"][0] / res["mul"][0], 2),
                          "same_score": bool(np.isclose(res["zeros"][1], res["mul"][1], rtol=1e-5)),
                          "channels": args.channels, "num_cells": args.num_cells, "image_size": args.image_size,
                          "batch": args.batch, "backend": jax.default_backend()}), flush=True)
  finally:
    nb201.Cell = library_cell


if __name__ == "__main__":
  main()
