"""Trust-region BO on synthetic functions: TuRBO on Ackley-20 / Levy-10, CASMOPOLITAN on LABS.

* ``ackley20``: Ackley on [-5, 10]^20 (the BoTorch TuRBO-1 tutorial's problem; minimum 0 at 0),
  optimised by ``turbo_box`` on [0, 1]^20 (preset ``paper``; q = ``--batch``).
* ``levy10``: Levy on [-10, 10]^10 (minimum 0 at 1), ``turbo_box``.
* ``labs30``: Low Autocorrelation Binary Sequences of length 30, a categorical (binary) problem of
  the kind CASMOPOLITAN targets: maximise the merit factor ``n^2 / (2 E)``, with
  ``E = sum_k (sum_i s_i s_{i+k})^2`` for ``s in {-1, 1}^n`` (best known for n = 30: 7.5). Optimised by
  ``casmopolitan`` on a 30-decision binary space (Hamming balls, transformed overlap kernel).

Each (function, seed) run is one jitted ``lax.scan`` over ask/tell rounds (compiled once per
function, reused across seeds). A uniform random search with the same budget runs alongside
(not printed as its own line; its best is the ``random_best`` key).

  OPENBLAS_NUM_THREADS=1 python bench/trbo_synthetic.py --function ackley20 --evals 200 --batch 4 --seeds 2
  OPENBLAS_NUM_THREADS=1 python bench/trbo_synthetic.py --function levy10 --evals 150 --batch 1 --seeds 2
  OPENBLAS_NUM_THREADS=1 python bench/trbo_synthetic.py --function labs30 --evals 200 --batch 1 --seeds 2
  python bench/trbo_synthetic.py --quick            # all three functions, small budgets

Prints one JSON line per (function, seed) with keys ``function, seed, evals, best,
seconds_per_iteration`` (plus ``random_best``, ``batch``, ``compile_seconds``); ``best`` is the
function value of the incumbent (minimised for Ackley/Levy, the merit factor, maximised, for LABS).
Best-so-far curves go to ``<plot-dir>/trbo_<function>.png``.

Measured (2 CPU cores shared with other jobs, load ~10; seeds 0 and 1; ``best`` / random search's
best with the same budget):

  command (OPENBLAS_NUM_THREADS=1)                                      seed 0            seed 1
  --function ackley20 --evals 200 --batch 4 --num-candidates 512         4.879 / 10.867    6.015 / 10.980
  --function levy10 --evals 150 --batch 1 --num-candidates 512           0.380 / 30.931    1.589 / 33.821
  --function labs30 --evals 200 --batch 1 (500 candidates)               3.061 / 2.406     2.761 / 3.913
  --quick --num-candidates 256 (ackley 100 evals q=4; levy, labs 60)     6.899 / 11.342, 10.822 / 30.931, 2.133 / 2.133

TuRBO clearly beats random search on Ackley-20 and Levy-10 (minimisation); on LABS-30 (maximise the
merit factor; best known 7.5) 200 evaluations of CASMOPOLITAN are not better than random search
(one seed each way). Seconds per iteration: 0.2-0.3 (Ackley, q=4, 512 candidates), 0.08 (Levy),
0.7-0.9 (LABS, 500 candidates x 30 binary decisions), all under that load.
"""
import argparse
import dataclasses
import json
import math
import os
import sys
import time
from typing import Any, Hashable

import jax
import jax.numpy as jnp
import numpy as np

from jdanas.lowering import configure_cpu_runtime
from jdanas.searchers import casmopolitan, turbo_box
from jdanas.spaces.base import AbstractSearchSpace


def ackley(x):
  """Ackley on the last axis (minimum 0 at the origin)."""
  d = x.shape[-1]
  a = -20.0 * jnp.exp(-0.2 * jnp.sqrt(jnp.sum(x * x, -1) / d))
  return a - jnp.exp(jnp.sum(jnp.cos(2 * jnp.pi * x), -1) / d) + 20.0 + math.e


def levy(x):
  """Levy on the last axis (minimum 0 at x = 1)."""
  w = 1.0 + (x - 1.0) / 4.0
  head = jnp.sin(jnp.pi * w[..., 0]) ** 2
  mid = jnp.sum((w[..., :-1] - 1) ** 2 * (1 + 10 * jnp.sin(jnp.pi * w[..., :-1] + 1) ** 2), -1)
  tail = (w[..., -1] - 1) ** 2 * (1 + jnp.sin(2 * jnp.pi * w[..., -1]) ** 2)
  return head + mid + tail


def labs_merit(bits):
  """Merit factor of ``int[..., n]`` 0/1 sequences (higher is better)."""
  s = 2.0 * bits.astype(jnp.float32) - 1.0
  n = s.shape[-1]
  energy = sum(jnp.sum(s[..., :n - k] * s[..., k:], -1) ** 2 for k in range(1, n))
  return n * n / (2.0 * energy)


@dataclasses.dataclass(frozen=True)
class BinarySpace(AbstractSearchSpace):
  """``n`` binary categorical decisions (a bench-only space: it has no network)."""
  n: int = 30
  name = "binary"

  @property
  def num_choices(self) -> tuple[int, ...]:
    return (2,) * self.n

  def encode(self, arch: str) -> np.ndarray:
    return np.asarray([int(c) for c in arch], np.int32)

  def decode(self, enc: Any) -> str:
    return "".join(str(int(v)) for v in np.asarray(enc))

  def signature(self, enc: Any) -> Hashable:
    return ()

  def build(self, signature: Hashable, num_classes: int):
    raise ValueError("binary: a benchmark space without networks")


# name -> (dimension, lower, upper, objective to minimise on the original domain)
BOXES = {"ackley20": (20, -5.0, 10.0, ackley), "levy10": (10, -10.0, 10.0, levy)}
FUNCTIONS = tuple(BOXES) + ("labs30",)


def make_problem(name: str, batch: int, evals: int, num_candidates: int | None):
  """``(searcher, score(proposals) -> higher-is-better float32[Q], value(score) -> reported, sample)``."""
  rounds = evals // batch
  if name in BOXES:
    dim, lo, hi, fn = BOXES[name]
    searcher = turbo_box(dim, num_asks=batch, capacity=rounds * batch, num_candidates=num_candidates)
    score = lambda x: -fn(lo + (hi - lo) * x)
    sample = lambda key: jax.random.uniform(key, (batch, dim))
    return searcher, score, (lambda s: -s), sample
  space = BinarySpace(30)
  searcher = casmopolitan(space, num_asks=batch, capacity=rounds * batch,
                          num_candidates=num_candidates or 500)
  sample = lambda key: jax.random.randint(key, (batch, 30), 0, 2)
  return searcher, labs_merit, (lambda s: s), sample


def main():
  configure_cpu_runtime()  # safe XLA:CPU flags, before jax starts (docs/lowering.md)
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--function", default=None, help=f"one of {', '.join(FUNCTIONS)} (default: all)")
  parser.add_argument("--evals", type=int, default=None, help="evaluations per run")
  parser.add_argument("--batch", type=int, default=None, help="q, proposals per round")
  parser.add_argument("--seeds", type=int, default=None, help="independent runs")
  parser.add_argument("--num-candidates", type=int, default=None, help="Thompson candidates per ask")
  parser.add_argument("--plot-dir", default="/tmp")
  parser.add_argument("--quick", action="store_true", help="60-100 evaluations, 1 seed")
  args = parser.parse_args()
  names = [args.function] if args.function else list(FUNCTIONS)
  for name in names:
    if name not in FUNCTIONS:
      raise ValueError(f"--function: unknown {name!r}; choose one of {', '.join(FUNCTIONS)}")
  seeds = args.seeds or (1 if args.quick else 2)
  for name in names:
    batch = args.batch or (4 if name == "ackley20" else 1)
    evals = args.evals or ((100 if name == "ackley20" else 60) if args.quick else 200)
    if evals < batch or evals % batch:
      raise ValueError(f"--evals ({evals}) must be a positive multiple of --batch ({batch})")
    searcher, score, value, sample = make_problem(name, batch, evals, args.num_candidates)
    rounds = evals // batch

    def run(key, searcher=searcher, score=score, sample=sample):
      key_init, key_loop = jax.random.split(key)

      def round_(carry, r):
        state, rand_best = carry
        key_ask, key_tell, key_rand = jax.random.split(jax.random.fold_in(key_loop, r), 3)
        props, state = searcher.ask(key_ask, state)
        state, metrics = searcher.tell(key_tell, state, props, score(props))
        rand_best = jnp.maximum(rand_best, jnp.max(score(sample(key_rand))))
        return (state, rand_best), (metrics["best_score"], rand_best)

      _, curves = jax.lax.scan(round_, (searcher.init(key_init), -jnp.inf), jnp.arange(rounds))
      return curves

    t0 = time.perf_counter()
    compiled = jax.jit(run).lower(jax.random.key(0)).compile()
    compile_s = time.perf_counter() - t0
    curves = []
    for seed in range(seeds):
      t1 = time.perf_counter()
      best, rand = jax.block_until_ready(compiled(jax.random.key(seed)))
      per_iter = (time.perf_counter() - t1) / rounds
      best, rand = np.asarray(value(best)), np.asarray(value(rand))
      curves.append((best, rand))
      print(json.dumps({"function": name, "seed": seed, "evals": evals, "best": round(float(best[-1]), 4),
                        "seconds_per_iteration": round(per_iter, 4), "random_best": round(float(rand[-1]), 4),
                        "batch": batch, "compile_seconds": round(compile_s, 1),
                        "backend": jax.default_backend()}), flush=True)
    plot(name, curves, batch, args.plot_dir)


def plot(name, curves, batch, plot_dir):
  """Best-so-far against evaluations, one line per seed (and the random-search baseline)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for seed, (best, rand) in enumerate(curves):
    evals = batch * (np.arange(len(best)) + 1)
    ax.plot(evals, best, color="C0", alpha=0.8, label="TR-BO" if seed == 0 else None)
    ax.plot(evals, rand, color="C1", alpha=0.6, ls="--", label="random" if seed == 0 else None)
  ax.set_xlabel("evaluations")
  ax.set_ylabel("merit factor (max)" if name == "labs30" else "best value (min)")
  ax.set_title(name)
  ax.legend()
  fig.tight_layout()
  os.makedirs(plot_dir, exist_ok=True)
  path = os.path.join(plot_dir, f"trbo_{name}.png")
  fig.savefig(path, dpi=100)
  plt.close(fig)
  print(f"saved {path}", file=sys.stderr)


if __name__ == "__main__":
  main()
