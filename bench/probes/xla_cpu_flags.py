"""XLA:CPU's own runtime options for the population engine, side by side with a PyTorch loop (issue 22 §4).

Commands (from the repository root; torch is the optional ``bench`` extra)::

  python bench/probes/xla_cpu_flags.py                          # C=4, N=1, 4 students, 8 steps, 5 rounds
  python bench/probes/xla_cpu_flags.py --channels 16 --num-cells 5 --steps 2 --rounds 3 --settings default onednn
  python bench/probes/xla_cpu_flags.py --list                   # the settings and their XLA_FLAGS

Each setting of :data:`SETTINGS` is one worker process started with its own ``XLA_FLAGS`` (XLA reads
them once, when the backend starts; the library's safe flag, ``jdanas.lowering.CPU_SAFE_FLAGS``, is
appended by ``configure_cpu_runtime`` as in every run), plus one worker for the PyTorch loop. The
students, teacher, KD step, Adam and batch are those of ``bench/vs_pytorch.py`` (its
:func:`build_sides`). Every worker first builds its side and, for jdanas, compiles (warm-up call,
``compile_s``; the workers start together, so compile times include their contention); then the
controller runs ``--rounds`` rounds, and in each round asks every worker in turn, in a rotated
order, for one timed training pass while the others wait idle: on a shared machine each round's
samples see the same background load, and the per-round ratios (``vs_pytorch``, ``vs_default``)
are the fair comparison.

Settings (the flags that ``strings`` finds in jaxlib 0.10.2's ``libjax_common.so`` and that change
how XLA:CPU runs a program, not what it computes): ``default`` (XLA's defaults + the safe flag),
``eigen_single`` (``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1``, the flags
the project's shared-machine runs use), ``onednn`` (``--xla_cpu_use_onednn=true``), ``onednn_fusion``
(oneDNN fusions of dots, elementwise ops and reductions), ``xnnpack`` (``--xla_cpu_use_xnnpack=true``),
``xnn_fusion`` (XNNPACK fusions of dots, elementwise ops and reductions). Not measured: the YNNPACK
fusions (off by the safe flag: they crash or hang this jaxlib, docs/lowering.md),
``--xla_cpu_use_thunk_runtime=false`` (jaxlib 0.10.2: "no longer supported", ignored) and the
fast-math flags (they change results).

Output: one JSON line per side (median examples/s, samples, compile seconds, flags), then one
``{"ratio": ...}`` line per jdanas setting (its examples/s over PyTorch's), with the load before and
after in the first and last lines. A setting whose worker dies before it is ready (XLA refusing to
compile the program under its flags) gets one ``{"side", "failed": true, "returncode"}`` line and
the others go on.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
SETTINGS = {
    "default": "",
    "eigen_single": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    "onednn": "--xla_cpu_use_onednn=true",
    "onednn_fusion": "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_fusion_type=dot,eltwise,reduce",
    "xnnpack": "--xla_cpu_use_xnnpack=true",
    "xnn_fusion": "--xla_cpu_experimental_xnn_fusion_type=dot,eltwise,reduce",
}


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
  p.add_argument("--channels", type=int, default=4)
  p.add_argument("--num-cells", type=int, default=1)
  p.add_argument("--students", type=int, default=4)
  p.add_argument("--steps", type=int, default=8)
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--batch", type=int, default=128)
  p.add_argument("--list", action="store_true", help="print the settings and exit")
  p.add_argument("--worker", help=argparse.SUPPRESS)  # child mode: 'pytorch' or a setting
  return p.parse_args(argv)


def _side_args(args) -> list[str]:
  return ["--channels", str(args.channels), "--num-cells", str(args.num_cells), "--students", str(args.students),
          "--steps", str(args.steps), "--batch", str(args.batch), "--rounds", "1"]


def worker(args) -> None:
  """Builds one side, reports ``ready``, then runs one timed pass per ``go`` line on stdin."""
  sys.path.insert(0, str(REPO / "bench"))
  import vs_pytorch
  side = "pytorch" if args.worker == "pytorch" else "jdanas"
  sides = vs_pytorch.build_sides(vs_pytorch.parse_args(_side_args(args)))
  ready = {"ready": True}
  if side == "jdanas":
    result, wall = sides["warmup"]()
    ready.update(compile_s=round(result.compile_seconds, 2), warmup_call_s=round(wall, 2))
    import jax
    ready.update(jax=jax.__version__)
  else:
    sides["pytorch"]()  # first-call allocations
    import torch
    ready.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
  print(json.dumps(ready), flush=True)
  for line in sys.stdin:
    if line.strip() != "go":
      break
    print(json.dumps({"seconds": sides[side]()}), flush=True)


def _load() -> float:
  return round(os.getloadavg()[0], 2)


def main(argv=None) -> None:
  args = parse_args(argv)
  if args.list:
    for name, flags in SETTINGS.items():
      print(json.dumps({"setting": name, "xla_flags": flags}))
    return
  if args.worker:
    worker(args)
    return
  names = list(args.settings) + ["pytorch"]
  print(json.dumps({"load_before": _load(), "settings": {n: SETTINGS[n] for n in args.settings}}), flush=True)
  procs, ready, flags = {}, {}, {}
  for name in names:  # workers build and compile at the same time (compile_s includes that contention)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env["XLA_FLAGS"] = flags[name] = " ".join(f for f in (env.get("XLA_FLAGS", ""), SETTINGS.get(name, "")) if f)
    procs[name] = subprocess.Popen([sys.executable, __file__, "--worker", name, *_side_args(args)], cwd=REPO,
                                   env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
  failed = {}
  for name in names:
    line = procs[name].stdout.readline()
    if not line:  # e.g. XLA refuses to compile the program under these flags (its message is on stderr)
      failed[name] = procs[name].wait()
      print(json.dumps({"side": name, "xla_flags": SETTINGS.get(name), "failed": True,
                        "returncode": failed[name]}), flush=True)
      continue
    ready[name] = json.loads(line)
    print(f"[xla_cpu_flags] {name} ready: {ready[name]}", file=sys.stderr, flush=True)
  if "pytorch" in failed:
    raise SystemExit("the PyTorch worker failed")
  names = [n for n in names if n not in failed]
  work = args.students * args.steps * args.batch
  samples = {n: [] for n in names}
  for r in range(args.rounds):
    order = names[r % len(names):] + names[:r % len(names)]
    for name in order:
      procs[name].stdin.write("go\n")
      procs[name].stdin.flush()
      samples[name].append(work / json.loads(procs[name].stdout.readline())["seconds"])
    print(f"[xla_cpu_flags] round {r + 1}/{args.rounds}: "
          + ", ".join(f"{n} {samples[n][-1]:.0f}" for n in names) + " examples/s", file=sys.stderr, flush=True)
  for p in procs.values():
    p.stdin.close()
    p.wait()
  common = {"channels": args.channels, "num_cells": args.num_cells, "students": args.students, "steps": args.steps,
            "batch": args.batch, "rounds": args.rounds, "cpu_count": os.cpu_count()}
  for name in names:
    print(json.dumps({"side": name, "xla_flags": SETTINGS.get(name), "examples_per_s":
                      round(statistics.median(samples[name]), 2), "samples": [round(v, 1) for v in samples[name]],
                      **{k: v for k, v in ready[name].items() if k != "ready"}, **common}), flush=True)
  for name in names[:-1]:
    paired = [a / b for a, b in zip(samples[name], samples["pytorch"])]
    vs_default = ([a / b for a, b in zip(samples[name], samples["default"])] if "default" in samples else None)
    print(json.dumps({"ratio": name, "vs_pytorch": round(statistics.median(paired), 3),
                      "vs_default": None if vs_default is None else round(statistics.median(vs_default), 3),
                      "meaning": "median over rounds of (setting examples/s / other examples/s), same round"}),
          flush=True)
  print(json.dumps({"load_after": _load()}), flush=True)


if __name__ == "__main__":
  main()
