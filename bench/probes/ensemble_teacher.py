"""How to run an ensemble teacher's members of one architecture: stacked (vmap) vs a loop.

The teacher pass of one training batch (eval mode, M members of one CIFAR ResNet, batch of
32x32x3), median ms per pass over interleaved repetitions, both programs compiled in this run:

  python bench/probes/ensemble_teacher.py [--quick] [--model resnet32 --members 3 --batch 64]

Prints one JSON line per implementation with keys ``impl, model, members, batch, ms_per_pass,
ratio_vs_loop, compile_s`` and a last line ``{"choice": ...}`` (the faster one on this backend,
which ``jdanas.lowering.Lowering.ensemble`` should name). Random weights: the forward's cost does
not depend on their values.
"""
import argparse
import json
import time

import jax
import numpy as np

from jdanas.models import get_model
from jdanas.teachers import EnsembleModule


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--model", default="resnet32")
  parser.add_argument("--members", type=int, default=3)
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--classes", type=int, default=100)
  args = parser.parse_args()
  reps = 3 if args.quick else 10
  module = get_model(args.model, args.classes)
  x = jax.random.normal(jax.random.key(0), (args.batch, 32, 32, 3))
  init = jax.jit(lambda k: module.init(k, x[:1], None, train=False))
  variables = tuple(init(jax.random.key(i)) for i in range(args.members))
  programs, compile_s = {}, {}
  for impl in ("loop", "vmap"):
    ens = EnsembleModule((module,) * args.members, stack=impl == "vmap")
    t0 = time.perf_counter()
    programs[impl] = jax.jit(lambda v, x, ens=ens: ens.apply(v, x)["members"]).lower(variables, x).compile()
    compile_s[impl] = time.perf_counter() - t0
    programs[impl](variables, x).block_until_ready()
  outs = {impl: np.asarray(p(variables, x)) for impl, p in programs.items()}
  np.testing.assert_allclose(outs["vmap"], outs["loop"], rtol=1e-4, atol=1e-4)
  times = {impl: [] for impl in programs}
  for _ in range(reps):
    for impl, p in programs.items():
      t0 = time.perf_counter()
      p(variables, x).block_until_ready()
      times[impl].append(time.perf_counter() - t0)
  ms = {impl: 1000 * float(np.median(t)) for impl, t in times.items()}
  for impl in programs:
    print(json.dumps({"impl": impl, "model": args.model, "members": args.members, "batch": args.batch,
                      "backend": jax.default_backend(), "ms_per_pass": round(ms[impl], 2),
                      "ratio_vs_loop": round(ms[impl] / ms["loop"], 3), "compile_s": round(compile_s[impl], 2)}))
  print(json.dumps({"choice": min(ms, key=ms.get)}))


if __name__ == "__main__":
  main()
