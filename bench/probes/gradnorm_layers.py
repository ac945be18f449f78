"""GradNorm per layer group on NAS-Bench-201: where the sum comes from under each initialisation.

Command (from the repository root; about 5 minutes per init for 200 cells on 2 CPU cores)::

  python bench/probes/gradnorm_layers.py --cells-n 200 --seed 1 --inits torch,flax

For ``--cells-n`` seeded NB201 cells (C=16, N=5, the first 64 CIFAR-10 training images of
``bench/proxy_correlation.py``) it computes each conv / linear kernel's gradient norm
(GradNorm's per-layer terms, Abdelfattah et al., ICLR 2021) and prints, per initialisation, one
JSON line per layer group (``stem``, ``stage1``, ``reduction1``, ..., ``classifier``) with the
group's share of the GradNorm sum and the Spearman rho of the group's sum with the NB201 CIFAR-10
(``cifar10_valid_split_test_acc``) accuracy, then a line with the rho of the whole sum for both
targets of ``proxy_correlation.py`` and, with two inits, the per-cell Spearman rho between them.
If the data files are absent it prints ``{"skipped": "<reason>"}`` and exits 0.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

GROUPS = ("stem", "stage1", "reduction1", "stage2", "reduction2", "stage3", "classifier")


def main(argv=None):
  from jdanas.lowering import configure_cpu_runtime
  configure_cpu_runtime()  # safe XLA:CPU flags, before jax starts (docs/lowering.md)
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--cells-n", type=int, default=200)
  p.add_argument("--seed", type=int, default=1)
  p.add_argument("--inits", default="torch,flax")
  args = p.parse_args(argv)
  from jdanas.data import shared_data_dir
  data_dir = str(shared_data_dir())
  if not all(os.path.exists(os.path.join(data_dir, f)) for f in ("nb201_accuracy.csv", "cifar10_train_subset.npz")):
    print(json.dumps({"skipped": f"NB201 table or CIFAR-10 subset missing in {data_dir} (set JDANAS_DATA_DIR)"}))
    return
  import jax
  import jax.numpy as jnp
  import numpy as np
  from scipy import stats
  jax.config.update("jax_cpu_enable_async_dispatch", False)
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/, for proxy_correlation
  from proxy_correlation import TARGETS, load_batch

  from jdanas import lowering
  from jdanas.benchmarks.nb201 import NB201Table
  from jdanas.scoring import proxies
  from jdanas.scoring.init import init_variables, path_weight
  from jdanas.spaces import get_space

  table = NB201Table(os.path.join(data_dir, "nb201_accuracy.csv"))
  space = get_space("nb201_masked", channels=16, num_cells=5)
  encs = table.encodings[np.random.default_rng(args.seed).choice(len(table), size=args.cells_n, replace=False)]
  targets = {d: table.lookup(col, encs) for d, col in TARGETS.items()}
  x, y = (jnp.asarray(a) for a in load_batch(data_dir, "cifar10", 64))
  module = space.build((), 10)
  # the network GradNorm's scoring program runs on this backend (jdanas.lowering)
  run = lowering.build(space, (), 10, lowering.resolve("auto"), "score_derivatives")
  ctx = proxies.Context(module=run, space=space, names=("gradnorm",))
  totals = {}
  for init in [s for s in args.inits.split(",") if s]:
    t0 = time.perf_counter()
    v = jax.device_put(init_variables(jax.random.key(0), module, (32, 32, 3), encs[0], init))
    names = ["/".join(path) for path, _ in proxies._kernels(v["params"])]

    def terms(v, enc, x, y):
      g = jax.grad(proxies._ce_loss_fn(ctx, v, enc, x, y))(v["params"])
      return jnp.stack([path_weight(space, path, enc) * jnp.sqrt(jnp.sum(k * k)) for path, k in proxies._kernels(g)])

    program = jax.jit(lambda v, e, x, y: jax.lax.map(lambda enc: terms(v, enc, x, y), e))  # inputs, not constants
    per_layer = np.asarray(program(v, jnp.asarray(encs), x, y), np.float64)
    total = per_layer.sum(1)
    totals[init] = total
    for group in GROUPS:
      cols = [i for i, n in enumerate(names) if n.startswith(group)]
      s = per_layer[:, cols].sum(1)
      print(json.dumps({"init": init, "group": group, "layers": len(cols),
                        "share": round(float(s.mean() / total.mean()), 4),
                        "spearman_cifar10": round(float(stats.spearmanr(s, targets["cifar10"]).statistic), 4)}))
    print(json.dumps({"init": init, "cells": len(encs), "zero_scores": int(np.sum(total == 0)),
                      **{f"spearman_{d}": round(float(stats.spearmanr(total, t).statistic), 4)
                         for d, t in targets.items()},
                      "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
  if len(totals) == 2:
    a, b = totals.values()
    print(json.dumps({"per_cell_spearman_between_inits": round(float(stats.spearmanr(a, b).statistic), 4)}))


if __name__ == "__main__":
  main()
