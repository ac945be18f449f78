"""How to implement the masked NB201 edge on this backend: weighted sum vs switch vs per-cell.

One KD-free training step of a single NB201 student (default C=16, one cell per stage, batch 64
of 32x32x3), median ms per step, the programs timed interleaved in one run:

  python bench/probes/masked_edge.py [--quick] [--channels 16 --num-cells 1 --batch 64]

Prints one JSON line per implementation with keys ``impl, ms_per_step, ratio_vs_per_cell,
compile_s`` (``compile_s``: lowering + compiling the step, timed cold in this process).
``per_cell`` builds only the chosen ops (one program per cell); ``weighted`` and ``switch`` are
the masked form (one program for every cell) built for training by a
:class:`jdanas.lowering.Lowering` with ``train_edge="weighted"`` or ``"switch"`` (the switch with
forward-only convolutions, ``conv="forward_only"``: XLA:CPU differentiates a convolution inside a
conditional ~30x slower otherwise); ``static`` is
the masked variable layout with the cell fixed at trace time (``space.specialize``, one
program per cell), which the population engine uses when it specialises (``specialize=``).
"""
import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from jdanas import lowering as lowering_lib
from jdanas.distill import KD_PRESETS
from jdanas.spaces import get_space
from jdanas.train import Recipe
from jdanas.train.population import _single_init, _single_step

CELL = "|nor_conv_1x1~0|+|none~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_1x1~1|none~2|"


def main():
  lowering_lib.configure_cpu_runtime()  # safe XLA:CPU flags, before jax starts (docs/lowering.md)
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--cell", default=CELL)
  parser.add_argument("--channels", type=int, default=16)
  parser.add_argument("--num-cells", type=int, default=1)
  parser.add_argument("--batch", type=int, default=64)
  args = parser.parse_args()
  reps, steps = (2, 2) if args.quick else (5, 5)
  recipe = Recipe(steps=10, batch_size=args.batch, loss=KD_PRESETS["ce"])
  tx = recipe.make_optimizer()
  x = jax.random.normal(jax.random.key(0), (args.batch, 32, 32, 3))
  y = jnp.zeros(args.batch, jnp.int32)
  size = dict(channels=args.channels, num_cells=args.num_cells)
  programs, compile_s = {}, {}
  for impl in ("per_cell", "static", "weighted", "switch"):
    space = get_space("nb201", **size) if impl == "per_cell" else get_space("nb201_masked", **size)
    enc = jnp.asarray(space.encode(args.cell))
    lowering = lowering_lib.Lowering(f"{impl}_edges", conv="forward_only",
                                     train_edge="switch" if impl == "switch" else "weighted")
    module = lowering_lib.build(space, space.signature(np.asarray(enc)), 10, lowering, "train")
    state = jax.jit(lambda k, m=module: _single_init(m, tx, k, enc, 1.0, x[:1]))(jax.random.key(0))
    if impl == "static":
      module = space.specialize(np.asarray(enc), 10)
    t0 = time.perf_counter()
    step = jax.jit(lambda s, m=module: _single_step(m, tx, recipe.loss, s, x, y, None)).lower(state).compile()
    compile_s[impl] = time.perf_counter() - t0
    state = jax.block_until_ready(step(state))
    programs[impl] = [step, state]
  times = {k: [] for k in programs}
  for _ in range(reps):  # interleaved: A B C A B C ...
    for impl, prog in programs.items():
      t0 = time.perf_counter()
      for _ in range(steps):
        prog[1] = prog[0](prog[1])
      jax.block_until_ready(prog[1])
      times[impl].append((time.perf_counter() - t0) / steps)
  base = float(np.median(times["per_cell"]))
  for impl, ts in times.items():
    med = float(np.median(ts))
    print(json.dumps({"impl": impl, "ms_per_step": round(med * 1e3, 1), "ratio_vs_per_cell": round(med / base, 2),
                      "compile_s": round(compile_s[impl], 2), **size, "batch": args.batch, "backend": jax.default_backend(), "cell": args.cell}))


if __name__ == "__main__":
  main()
