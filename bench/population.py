"""Population-engine throughput: strategies ``loop / unroll / vmap / auto`` side by side.

Commands (from the repository root)::

  python bench/population.py                  # full: 3 spaces x P in {1,4,8,16} x 4 strategies
  python bench/population.py --quick          # smoke run, about 1-1.5 min on a 2-core CPU
  python bench/population.py --spaces nb201_masked --P 8
  python bench/population.py --no-constant-folding   # see the avg_pool note below
  python bench/population.py --train-edge switch   # masked NB201 with switch edges (a custom Lowering)
  python bench/population.py --spaces nb201_masked --P 8 32 --pop-chunk 8   # chunked vmapped groups

What it measures: for each space and population size ``P``, ``P`` DISTINCT random architectures
are trained with a KD step (RepDistiller loss 0.1 CE + 0.9 T^2 KL, T=4; Adam; batch 128 of
32x32x3 synthetic images, so no files are needed) by a :class:`PopulationTrainer` of each
strategy. The teacher is a random-init zoo ``resnet8`` (its single pass per batch is shared by
every student and every strategy, so its accuracy is irrelevant here). Settings:

* ``nb201_masked``: NB201 cells as data: one superset program serves any set of cells
  (``loop``/``unroll``/``vmap`` time that program); ``auto`` plans for the search schedule
  ``--schedule-steps`` (default 350, the short-KD schedule of ``configs/nb201_re.py``) and, on
  CPU, specialises: one program per cell that runs only the cell's ops (``specialized`` and
  ``compile_s`` in its line say so and what it costs);
* ``nb201``: one module per cell, so distinct cells have distinct signatures (``unroll`` puts
  all of them into ONE program; ``auto`` on CPU loops over the singletons);
* ``s1_resnet``: DisWOT S1 ResNets with distinct per-stage depths (distinct signatures too).

Timing protocol (the machine is shared, so the sides of a comparison are interleaved): for each
``(space, P)`` every strategy's trainer is called once (compiling and warming up), then
``--rounds`` rounds (full mode: 3, and at least ``8 // P``) call each trainer once more with
``--steps`` training steps (default 1: at P >= 4 one step already lasts seconds and the medians
agree within about 2 %; P=1 gets 8 rounds), in an order rotated every round (A B C D, B C D A,
...). ``examples_per_s`` is the median over rounds of the
engine's ``result.examples_per_s`` (``P * steps * batch / train_seconds``: training steps only,
after compilation; initialisation and validation are outside it). ``ratio_vs_loop`` divides it
by the loop strategy's median for the same ``(space, P)``; ``ratio_vs_loop_paired`` is the
median of the per-round ratios (robust to load that drifts between rounds). ``loop`` is always
run as the reference, even when ``--strategies`` leaves it out.

Compile time: the four trainers of a space share one program cache, and populations are nested
(the P=4 students are the first 4 of the P=8 ones), so a program is compiled once per space,
as in a search. A cache key fully determines its program (e.g. ``auto`` at P=1 runs the very
program ``loop`` compiled; ``auto`` on CPU with a same-signature group runs ``unroll``'s).
``compile_s`` is nevertheless the COLD cost of the population: the sum of the recorded compile
times of every program it uses (batch + teacher, init per signature, training step and
validation per group), whichever call compiled them; ``compile_new_s`` is what this call
actually compiled. ``num_programs`` counts the distinct training programs of the plan. The
persistent compilation cache is switched off.

On XLA:CPU, NB201 cells with ``avg_pool_3x3`` (its count excludes padding) make XLA
constant-fold a batch-sized ``reduce_window`` for several seconds per program, which dominates
the per-cell compile times; ``--no-constant-folding`` sets
``XLA_FLAGS=--xla_disable_hlo_passes=constant_folding`` (recorded as ``xla_flags``) to see
compile times without it. Step throughput was unaffected by the flag where measured.

Output: one JSON object per line on stdout, one line per ``(space, strategy, P)`` case, then
one ``summary`` line per space (ratios at P=8, or at the largest P measured below it); progress
goes to stderr. Model-size knobs of each space are recorded in ``space_kwargs``: the full-mode
defaults shrink the NB201 macro skeleton to 1 cell per stage and 4 channels (the masked form
uses the lowering's ``train_edge``, ``--train-edge``) and S1 widths to 8/16/32 (stem 8; depths {1,3,5,7}),
so the full grid stays within tens of minutes on 2 CPU cores; override them with
``--space-kwargs``. ``--pop-chunk k`` runs every vmapped group (``vmap``, and ``auto`` where it
vmaps) as chunks of ``k`` students through one compiled program (``PopulationTrainer(pop_chunk=k)``:
the device's working set is one chunk's; a P=1 group is padded to ``k``, and ``examples_per_s``
counts real students only). ``--quick`` runs the tiny masked NB201 space only, at P=2 with 1 step and
2 rounds (about 1-1.5 min; add ``--spaces nb201_masked s1_resnet`` for a tiny S1 space too,
about 40 s more).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time

SPACES = ("nb201_masked", "nb201", "s1_resnet")
STRATEGY_ORDER = ("loop", "unroll", "vmap", "auto")
FULL_KWARGS = {
    "nb201_masked": {"channels": 4, "num_cells": 1},
    "nb201": {"channels": 4, "num_cells": 1},
    "s1_resnet": {"widths": [8, 16, 32], "stem": 8},
}
QUICK_KWARGS = {
    "nb201_masked": {"channels": 4, "num_cells": 1},
    "nb201": {"channels": 4, "num_cells": 1},
    "s1_resnet": {"depth_choices": [1, 2], "widths": [4, 8, 16], "stem": 4},
}
SUMMARY_P = 8


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--quick", action="store_true",
                 help="smoke run: nb201_masked only (tiny), P=2, 1 step, 2 rounds")
  p.add_argument("--spaces", nargs="+", choices=SPACES, default=None, help="spaces to run")
  p.add_argument("--P", nargs="+", type=int, default=None, help="population sizes")
  p.add_argument("--strategies", nargs="+", choices=STRATEGY_ORDER, default=None,
                 help="strategies to run (loop is always added as the reference)")
  p.add_argument("--steps", type=int, default=None, help="training steps per timed call")
  p.add_argument("--schedule-steps", type=int, default=350,
                 help="the search schedule auto plans for (decides specialisation; 350 = nb201_re's short KD)")
  p.add_argument("--rounds", type=int, default=None,
                 help="timed rounds after the warm-up call (full mode: at least 8 // P)")
  p.add_argument("--batch-size", type=int, default=128)
  p.add_argument("--pop-chunk", type=int, default=None,
                 help="students per call of a vmapped group (PopulationTrainer(pop_chunk=...)); default: all")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--train-edge", choices=("weighted", "switch"), default=None,
                 help="masked NB201 edge of training programs (default: the backend's lowering)")
  p.add_argument("--space-kwargs", type=json.loads, default=None,
                 help='JSON overrides per space, e.g. \'{"nb201": {"channels": 16, "num_cells": 5}}\'')
  p.add_argument("--no-constant-folding", action="store_true",
                 help="append --xla_disable_hlo_passes=constant_folding to XLA_FLAGS")
  args = p.parse_args(argv)
  quick = args.quick
  args.spaces = tuple(args.spaces or (("nb201_masked",) if quick else SPACES))
  args.P = tuple(sorted(set(args.P or ((2,) if quick else (1, 4, 8, 16)))))
  chosen = set(args.strategies or STRATEGY_ORDER) | {"loop"}
  args.strategies = tuple(s for s in STRATEGY_ORDER if s in chosen)
  args.steps = args.steps or 1
  args.rounds = args.rounds or (2 if quick else 3)
  base = QUICK_KWARGS if quick else FULL_KWARGS
  args.kwargs = {s: dict(base[s], **(args.space_kwargs or {}).get(s, {})) for s in args.spaces}
  if min(args.P) < 1 or args.steps < 1 or args.rounds < 1 or args.batch_size < 1:
    p.error("--P, --steps, --rounds and --batch-size must be positive")
  return args


def log(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def emit(obj: dict) -> None:
  print(json.dumps(obj), flush=True)


def main(argv=None) -> None:
  args = parse_args(argv)
  if args.no_constant_folding:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_disable_hlo_passes=constant_folding").strip()
  from jdanas.lowering import configure_cpu_runtime
  configure_cpu_runtime()  # safe XLA:CPU flags, before jax starts (docs/lowering.md)
  # jax reads XLA_FLAGS when its backend starts: import only after the flag is set.
  import jax
  import jax.numpy as jnp
  import numpy as np

  # compile_s means a cold compile: never read programs from a persistent cache
  # (JAX_COMPILATION_CACHE_DIR, as run.py sets for pipeline runs).
  jax.config.update("jax_enable_compilation_cache", False)

  from jdanas.data import synthetic_dataset
  from jdanas.distill.losses import KD_PRESETS
  from jdanas.models.zoo import get_model
  from jdanas.spaces import get_space
  from jdanas.teachers import Teacher
  from jdanas import lowering as lowering_lib
  from jdanas.train import PopulationTrainer, Recipe
  from jdanas.train.population import TrainingPrograms

  t_start = time.perf_counter()
  backend = jax.default_backend()
  num_train = max(8 * args.batch_size, 1024)
  data = synthetic_dataset(image_size=32, num_classes=10, num_train=num_train, num_val=128,
                           num_test=16, seed=args.seed)
  t_module = get_model("resnet8", 10)
  t_vars = t_module.init(jax.random.key(args.seed + 1), jnp.zeros((1, 32, 32, 3)), None, train=False)
  teacher = Teacher(name="resnet8", module=t_module, variables=t_vars, num_classes=10,
                    input_shape=(32, 32, 3), meta={"init": "random"})
  recipe = Recipe(steps=args.steps, batch_size=args.batch_size, optimizer="adam", learning_rate=1e-3,
                  loss=KD_PRESETS["repdistiller"], eval_batch_size=128)
  common = {"backend": backend, "batch_size": args.batch_size, "steps": args.steps,
            "optimizer": "adam", "loss": "repdistiller", "teacher": "resnet8",
            "cpu_count": os.cpu_count(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "quick": args.quick, "pop_chunk": args.pop_chunk}
  log(f"[population] backend={backend} jax={jax.__version__} python={platform.python_version()} "
      f"load={os.getloadavg()} spaces={args.spaces} P={args.P} strategies={args.strategies} "
      f"steps={args.steps} rounds={args.rounds}")

  lowering = lowering_lib.resolve("auto")
  if args.train_edge is not None:
    lowering = dataclasses.replace(lowering, name=f"{lowering.name}_{args.train_edge}_edges",
                                   train_edge=args.train_edge)
  common["lowering"] = lowering.name
  summaries = []
  for space_name in args.spaces:
    kwargs = args.kwargs[space_name]
    space = get_space(space_name, **{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()})
    num_archs = int(np.prod(space.num_choices))
    if max(args.P) > num_archs:
      raise SystemExit(f"--P: {max(args.P)} distinct architectures requested but {space_name} "
                       f"with {kwargs} has only {num_archs}")
    rng = np.random.default_rng(args.seed)
    pool, seen = [], set()
    while len(pool) < max(args.P):  # distinct architectures; populations are nested prefixes
      enc = rng.integers(0, space.num_choices).astype(np.int32)
      if tuple(enc) not in seen:
        seen.add(tuple(enc))
        pool.append(enc)
    programs = TrainingPrograms()  # shared: each program compiles once, its compile time recorded
    # auto plans for the search schedule (--schedule-steps), even though each timed call runs
    # --steps steps; the other strategies are the masked/plain programs (never specialised).
    schedule = dataclasses.replace(recipe, steps=args.schedule_steps)
    special = {s: s == "auto" and PopulationTrainer(space, data, recipe=schedule, teacher=teacher,
                                                    lowering=lowering).specialize
               for s in args.strategies}
    trainers = {s: PopulationTrainer(space, data, recipe=recipe, teacher=teacher, strategy=s, lowering=lowering,
                                     specialize=special[s], programs=programs, pop_chunk=args.pop_chunk)
                for s in args.strategies}
    key = jax.random.key(args.seed)
    by_p = {}
    for P in args.P:
      encs = pool[:P]
      info = {}
      for s, tr in trainers.items():  # warm-up call: compiles (once per program) and runs once
        uses_before = dict(programs.uses)
        t0 = time.perf_counter()
        res = tr.train(key, encs)
        used = {k for k, n in programs.uses.items() if n > uses_before.get(k, 0)}
        wall = time.perf_counter() - t0
        info[s] = {"compile_new_s": res.compile_seconds,
                   "compile_s": sum(programs.compile_seconds[k] for k in used),
                   "num_programs": len({g.key for g in res.groups}), "num_groups": len(res.groups),
                   "warmup_examples_per_s": res.examples_per_s, "samples": []}
        log(f"[population] {space_name} P={P} {s}: warm-up {wall:.1f}s (compiled {res.compile_seconds:.1f}s, "
            f"{info[s]['num_programs']} step programs)")
      order = list(trainers)
      # A P=1 call is short: more rounds cost little (full mode only; --quick keeps 2).
      rounds = args.rounds if args.quick else max(args.rounds, 8 // P)
      for r in range(rounds):
        rot = order[r % len(order):] + order[:r % len(order)]
        for s in rot:
          res = trainers[s].train(key, encs)
          info[s]["samples"].append(res.examples_per_s)
        log(f"[population] {space_name} P={P} round {r + 1}/{rounds}: " +
            " ".join(f"{s}={info[s]['samples'][-1]:.0f}" for s in order) + " ex/s")
      loop_med = statistics.median(info["loop"]["samples"])
      ratios = {}
      for s in args.strategies:
        med = statistics.median(info[s]["samples"])
        paired = statistics.median(a / b for a, b in zip(info[s]["samples"], info["loop"]["samples"]))
        ratios[s] = med / loop_med
        emit({"space": space_name, "strategy": s, "P": P, "examples_per_s": round(med, 2),
              "compile_s": round(info[s]["compile_s"], 2), "ratio_vs_loop": round(ratios[s], 3), "rounds": rounds,
              "ratio_vs_loop_paired": round(paired, 3), "compile_new_s": round(info[s]["compile_new_s"], 2),
              "num_programs": info[s]["num_programs"], "num_groups": info[s]["num_groups"],
              "examples_per_s_samples": [round(x, 2) for x in info[s]["samples"]],
              "warmup_examples_per_s": round(info[s]["warmup_examples_per_s"], 2),
              "specialized": special[s], "schedule_steps": args.schedule_steps,
              "space_kwargs": kwargs, **common})
      by_p[P] = ratios
    at = SUMMARY_P if SUMMARY_P in by_p else max([p for p in by_p if p <= SUMMARY_P] or by_p)
    ratios = by_p[at]
    summaries.append({"summary": space_name, "space": space_name, "P": at,
                      "auto_ratio_vs_loop": round(ratios["auto"], 3) if "auto" in ratios else None,
                      "ratios_vs_loop": {s: round(v, 3) for s, v in ratios.items()},
                      "best_strategy": max(ratios, key=ratios.get), "space_kwargs": kwargs,
                      "backend": backend})
    del trainers, programs
  for line in summaries:
    emit(line)
  log(f"[population] done in {time.perf_counter() - t_start:.0f}s")


if __name__ == "__main__":
  main()
