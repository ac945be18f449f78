"""XLA:CPU deadlock: batched LAPACK custom calls re-enter the intra-op pool they run on.

Standalone (jax + numpy only), ready to report upstream. jaxlib's CPU LAPACK kernels
(``lapack_spotrf_ffi``, ``lapack_strsm_ffi``, ...) split a large enough batch into chunks with
``ParallelBatchMap``: each chunk is ``Schedule``d on the FFI thread pool (XLA:CPU's intra-op
Eigen pool) and the kernel then blocks in ``absl::BlockingCounter::Wait``. The kernel itself runs
on a worker of that same pool whenever the thunk executor runs it there (a thunk that follows
a parallel kernel, or two independent thunks run concurrently). When every worker of the pool
is inside such a wait, the chunks they queued can never run: every thread idles, the caller sits
in ``BlockUntilReady`` forever. Two workers (a 2-core machine) need only two concurrent batched
solves.

Each call below runs ``--steps`` iterations of a loop whose body holds ``--branches``
independent batched Cholesky factorisations and triangular solves (a vmapped GP fit's shape).

    python bench/probes/lapack_pool_deadlock.py            # hangs within seconds on 2 cores
    NPROC=1 python bench/probes/lapack_pool_deadlock.py    # a 1-thread intra-op pool: runs through

Prints ``ok <seconds>`` when the program finishes; a hang prints nothing more (run it under
``timeout``). Seen with jax/jaxlib 0.10.2 (CPU, x86-64 Linux, 2 cores, Python 3.11): 7 of 10 fresh
processes hung (all threads idle; gdb: both ``tf_XLAEigen`` workers in ``jax::ParallelBatchMap`` ->
``absl::BlockingCounter::Wait`` under ``lapack_spotrf_ffi``), 0 of 20 with ``NPROC=1``.
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp


def program(batch=20, n=96, branches=4, steps=200):
  """``(jitted function, inputs)``: ``steps`` iterations of a loop whose body holds ``branches``
  independent batched (``batch`` matrices of ``n x n``) Cholesky factorisations and solves."""
  def solve(a, b):
    chol = jnp.linalg.cholesky(a)
    return jax.scipy.linalg.cho_solve((chol, True), b)

  def run(mats, rhs):
    def body(i, carry):
      outs = [jax.vmap(solve)(mats[k] + 1e-3 * i * jnp.eye(n), carry[k]) for k in range(branches)]
      return jnp.stack([o / (1.0 + jnp.abs(o).max()) for o in outs])
    return jax.lax.fori_loop(0, steps, body, rhs)

  x = jax.random.normal(jax.random.PRNGKey(0), (branches, batch, n, n))
  mats = x @ jnp.swapaxes(x, -1, -2) + n * jnp.eye(n)
  return jax.jit(run), (mats, jnp.ones((branches, batch, n)))


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--batch", type=int, default=20, help="matrices per batched call")
  p.add_argument("--n", type=int, default=96, help="matrix size")
  p.add_argument("--branches", type=int, default=4, help="independent batched solves per step")
  p.add_argument("--steps", type=int, default=200, help="loop iterations per call")
  p.add_argument("--calls", type=int, default=5)
  args = p.parse_args()
  f, inputs = program(args.batch, args.n, args.branches, args.steps)
  jax.block_until_ready(f(*inputs))
  t0 = time.perf_counter()
  for _ in range(args.calls):
    jax.block_until_ready(f(*inputs))
  print(f"ok {time.perf_counter() - t0:.2f} jax {jax.__version__}", flush=True)


if __name__ == "__main__":
  main()
