"""Reproducer for the XLA:CPU wedge: run a trigger program N times in fresh processes under a watchdog.

  python bench/probes/xla_cpu_hang.py --trigger trbo --runs 20 --queries 60 --repeats 6 \
      --flags "" --flags "--xla_cpu_experimental_ynn_fusion_type="
  python bench/probes/xla_cpu_hang.py --trigger ynn_rank8 --repeats 4 --flags ""
  python bench/probes/xla_cpu_hang.py --trigger lapack_pool --runs 20 --queries 200 --calls 5 --repeats 10 \
      --window 10 --min-cpu 0.3 --stacks /tmp/stacks --flags=--xla_cpu_experimental_ynn_fusion_type= --flags default

Each repetition is a fresh ``python bench/probes/xla_cpu_hang.py --child ...`` process with ``XLA_FLAGS``
set to one ``--flags`` value exactly, after any leading ``NAME=value`` words, which become the
child's environment (``""``: none; ``"NPROC=1"``: that variable and no flags; ``default``: jdanas'
safe settings, :data:`jdanas.lowering.CPU_SAFE_ENV` and :func:`jdanas.lowering.cpu_runtime_flags`);
``JDANAS_XLA_SAFE=0`` in the child so nothing is added, and ``NPROC`` only when the condition sets it.
The parent samples the child's CPU time (all threads) every ``--window`` seconds: a child that
used less than ``--min-cpu`` seconds of CPU in the last window is counted as HUNG (a wedge
parks every thread in a futex wait; a slow computation keeps using CPU) and killed; a child
still running after ``--timeout`` seconds is counted as a timeout (it ran that long without
hanging: a way to bound each process of a long trigger); a non-zero exit as failed.
Conditions alternate (A B A B ...), so load drifting on a shared machine hits all of them.

Triggers (the child compiles once, then calls the program ``--calls`` times, blocking on each):

* ``lapack_pool``: ``bench/probes/lapack_pool_deadlock.py`` (the cause of the wedge, shrunk):
  ``--queries`` loop steps of 4 independent batched Cholesky solves, ``--runs`` matrices each.
  On 2 cores it wedges within seconds in most processes unless ``NPROC=1``.
* ``trbo``: what hung in ``bench/trbo_nb201.py --runs 20``: CASMOPOLITAN (a GP and a trust
  region: while loops nested in a ``lax.scan`` over queries) on the NB201 table, vmapped over
  ``--runs`` runs (a synthetic table when ``nb201_accuracy.csv`` is absent). Its optimised HLO
  holds ~23 ``__ynn_fusion`` (YNNPACK) reductions inside the nested loops, and LAPACK calls.
* ``ynn_rank8``: the rank-8 broadcast-multiply-reduce of jax-ml/jax#39257 (jaxlib 0.10.2's
  ``__ynn_fusion`` crashes or hangs on it on some x86-64 CPUs); a control for the ynn path.
* ``kd_train``: a short KD training of ``--runs`` S1 students for ``--queries`` steps (the cost of
  the flags on the search's evaluator; its ``compile_s`` is 0 and ``run_s`` includes compiling).
* ``nested_while``: a small GP-like program (kernel matrix reductions, Cholesky solve) in a
  ``fori_loop`` inside a ``lax.scan``, vmapped over ``--runs``: the trbo structure shrunk.

Prints one JSON line per condition: ``trigger, flags, runs, hung, timeouts, failed, ok,
median_seconds`` (wall time of the finished children, process start and compile included),
``median_compile_s`` / ``median_run_s`` and ``median_compile_cpu_s`` / ``median_run_cpu_s``
(the children's own wall and CPU seconds, all threads: on a loaded machine CPU seconds are the
steadier measure of what the flags cost), ``hung_after_cpu_s`` (CPU
seconds each hung child had used) and ``exposure_cpu_s`` (CPU seconds of all children, as last
sampled: hangs per CPU second compare conditions whose children were cut at ``--timeout``).
``--child`` prints the child's own JSON line.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))  # bench/probes
BENCH = os.path.dirname(HERE)
ROOT = os.path.dirname(BENCH)


def _trbo_program(runs, queries):
  import jax
  import jax.numpy as jnp
  import numpy as np
  sys.path.insert(0, BENCH)
  from trbo_nb201 import TRBO_SETTINGS
  from jdanas.benchmarks.nb201 import NB201Table, table_search
  from jdanas.data import shared_data_dir
  from jdanas.searchers import enumerate_encodings, get_searcher, mixed_radix_index
  from jdanas.spaces import get_space
  space = get_space("nb201")
  path = shared_data_dir() / "nb201_accuracy.csv"
  if path.exists():
    table, encs = NB201Table(path), enumerate_encodings(space.num_choices)
    valid, test = table.lookup("cifar10_valid_acc", encs), table.lookup("cifar10_test_acc", encs)
  else:
    valid = np.random.default_rng(0).uniform(80, 92, int(np.prod(space.num_choices)))
    test = valid + 2
  valid, test = jnp.asarray(valid, jnp.float32), jnp.asarray(test, jnp.float32)
  index = mixed_radix_index(space.num_choices)
  searcher = get_searcher("casmopolitan", space, num_asks=1, capacity=queries, **TRBO_SETTINGS)
  fn = jax.jit(jax.vmap(lambda k: table_search(searcher, k, valid, test, index, queries)))
  keys = jax.vmap(lambda r: jax.random.fold_in(jax.random.key(0), r))(jnp.arange(runs))
  return fn, (keys,)


def _ynn_rank8_program(runs, queries):
  import jax
  import jax.numpy as jnp

  def f(obs, a):
    lik = jnp.sum(obs[..., None, None, None, None, None] * a, axis=2)
    return jnp.log(jnp.maximum(lik, 2.220446049250313e-16))
  return jax.jit(f), (jnp.ones((10, 4, 6), jnp.float32), jnp.ones((10, 4, 6, 9, 9, 9, 9, 9), jnp.float32))


def _nested_while_program(runs, queries):
  import jax
  import jax.numpy as jnp
  n, d = queries, 6

  def one(key):
    x = jax.random.randint(key, (n, d), 0, 5)

    def kernel(ls, a, b):  # overlap kernel: reductions XLA:CPU lowers to __ynn_fusion
      return jnp.exp(jnp.sum(ls * (a[:, None, :] == b[None, :, :]), -1) / d)

    def query(ls, q):
      mask = (jnp.arange(n) < q + 2).astype(jnp.float32)
      y = jnp.sin(jnp.sum(x, -1).astype(jnp.float32)) * mask

      def fit(_, ls):
        def nll(ls):
          k = kernel(ls, x, x) * mask[:, None] * mask[None, :] + jnp.eye(n)
          c = jnp.linalg.cholesky(k)
          alpha = jax.scipy.linalg.cho_solve((c, True), y)
          return 0.5 * y @ alpha + jnp.sum(jnp.log(jnp.diag(c)))
        return ls - 0.1 * jax.grad(nll)(ls)
      ls = jax.lax.fori_loop(0, 10, fit, ls)
      return ls, jnp.sum(kernel(ls, x[:8], x))
    return jax.lax.scan(query, jnp.ones(d), jnp.arange(n - 2))[1]

  keys = jax.vmap(lambda r: jax.random.fold_in(jax.random.key(0), r))(jax.numpy.arange(runs))
  return jax.jit(jax.vmap(one)), (keys,)


def _kd_train_program(runs, queries):
  """A short KD training (the search's short-KD evaluator): ``runs`` distinct S1 students, ``queries``
  steps, batch 64 of 32x32x3 synthetic images, a random-init resnet8 teacher. Returns a callable
  whose call trains them all (compiling on the first call)."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jdanas.data import synthetic_dataset
  from jdanas.distill.losses import KD_PRESETS
  from jdanas.models.zoo import get_model
  from jdanas.spaces import get_space
  from jdanas.teachers import Teacher
  from jdanas.train import PopulationTrainer, Recipe
  data = synthetic_dataset(image_size=32, num_classes=10, num_train=1024, num_val=128, num_test=16, seed=0)
  module = get_model("resnet8", 10)
  variables = module.init(jax.random.key(1), jnp.zeros((1, 32, 32, 3)), None, train=False)
  teacher = Teacher(name="resnet8", module=module, variables=variables, num_classes=10, input_shape=(32, 32, 3),
                    meta={"init": "random"})
  space = get_space("s1_resnet", widths=(8, 16, 32), stem=8)
  encs = [np.asarray(e, np.int32) for e in np.random.default_rng(0).integers(0, space.num_choices, (runs, 3))]
  recipe = Recipe(steps=queries, batch_size=64, optimizer="adam", learning_rate=1e-3,
                  loss=KD_PRESETS["repdistiller"], eval_batch_size=128)
  trainer = PopulationTrainer(space, data, recipe=recipe, teacher=teacher)
  return _Eager(lambda: trainer.train(jax.random.key(0), encs).accuracy), ()


class _Eager:
  """A trigger that is a host loop of its own programs (compiled on the first call): ``lower``
  and ``compile`` return it unchanged, so the child times the first call as the run."""

  def __init__(self, fn):
    self.fn = fn

  def lower(self, *args):
    return self

  def compile(self):
    return self

  def __call__(self, *args):
    return self.fn()


def _lapack_pool_program(runs, queries):
  """``bench/probes/lapack_pool_deadlock.py``'s program: ``queries`` loop steps of 4 independent
  batched (``runs`` matrices of 96 x 96) Cholesky solves."""
  sys.path.insert(0, HERE)
  from lapack_pool_deadlock import program
  return program(batch=runs, n=96, branches=4, steps=queries)


TRIGGERS = {"lapack_pool": _lapack_pool_program, "trbo": _trbo_program, "ynn_rank8": _ynn_rank8_program,
            "nested_while": _nested_while_program, "kd_train": _kd_train_program}


def child(args):
  import jax
  jax.config.update("jax_cpu_enable_async_dispatch", args.async_dispatch)
  t0, c0 = time.perf_counter(), time.process_time()
  fn, inputs = TRIGGERS[args.trigger](args.runs, args.queries)
  compiled = fn.lower(*inputs).compile()
  t1, c1 = time.perf_counter(), time.process_time()
  for i in range(args.calls):
    jax.block_until_ready(compiled(*inputs))
    print(f"call {i + 1}/{args.calls} {time.perf_counter() - t1:.1f}s", file=sys.stderr, flush=True)
  print(json.dumps({"child": args.trigger, "compile_s": round(t1 - t0, 2),
                    "run_s": round(time.perf_counter() - t1, 2), "compile_cpu_s": round(c1 - c0, 2),
                    "run_cpu_s": round(time.process_time() - c1, 2), "xla_flags": os.environ.get("XLA_FLAGS", ""),
                    "nproc": os.environ.get("NPROC")}))


def _cpu(proc):
  t = proc.cpu_times()
  return t.user + t.system


def native_stacks(pid, path):
  """Writes ``gdb``'s backtrace of every thread of ``pid`` to ``path`` (the XLA worker threads a
  Python stack dump cannot show); quietly nothing when gdb is absent or cannot attach."""
  try:
    out = subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt"], capture_output=True,
                         text=True, timeout=120)
    with open(path, "w") as f:
      f.write(out.stdout + out.stderr)
  except (OSError, subprocess.SubprocessError):
    pass


def watch(cmd, env, timeout, window, min_cpu, max_cpu=float("inf"), stacks=None):
  """``(status, seconds, cpu_seconds, stdout)``; status in ok / hung / timeout / failed. ``max_cpu``:
  CPU seconds after which a running child counts as a timeout (it ran that long without hanging);
  ``stacks``: a path for the native stacks of a hung child (:func:`native_stacks`)."""
  t0 = time.monotonic()
  proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
  ps = psutil.Process(proc.pid)
  last_cpu, last_t, cpu = 0.0, t0, 0.0
  while True:
    try:
      proc.wait(timeout=min(5.0, window))
      out = proc.stdout.read()
      return ("ok" if proc.returncode == 0 else f"failed rc={proc.returncode}"), time.monotonic() - t0, cpu, out
    except subprocess.TimeoutExpired:
      pass
    now = time.monotonic()
    try:
      cpu = _cpu(ps)
    except psutil.NoSuchProcess:
      continue
    status = None
    if now - last_t >= window:
      if cpu - last_cpu < min_cpu:
        status = "hung"
      last_cpu, last_t = cpu, now
    if status is None and (now - t0 > timeout or cpu > max_cpu):
      status = "timeout"
    if status == "hung" and stacks:
      native_stacks(proc.pid, stacks)
    if status:
      proc.kill()
      proc.wait()
      return status, now - t0, cpu, ""


def _median(rows, field):
  return round(statistics.median(r[field] for r in rows), 2) if rows else None


def condition_env(condition):
  """The child's environment for one condition: leading ``NAME=value`` words (upper-case names,
  e.g. ``NPROC=1``) are environment variables, the rest is ``XLA_FLAGS``."""
  words = condition.split()
  env = {}
  while words and "=" in words[0] and words[0].split("=", 1)[0].isupper() and not words[0].startswith("-"):
    name, value = words.pop(0).split("=", 1)
    env[name] = value
  return {**env, "XLA_FLAGS": " ".join(words)}


def parent(args):
  sys.path.insert(0, ROOT)
  from jdanas.lowering import CPU_SAFE_ENV, cpu_runtime_flags
  safe = " ".join([f"{k}={v}" for k, v in CPU_SAFE_ENV.items()] + [cpu_runtime_flags("")])
  conditions = [safe if f == "default" else f for f in (args.flags or [""])]
  results = {c: [] for c in conditions}
  timings = {c: [] for c in conditions}
  base = [sys.executable, os.path.abspath(__file__), "--child", "--trigger", args.trigger, "--runs", str(args.runs),
          "--queries", str(args.queries), "--calls", str(args.calls)]
  base += ["--async-dispatch"] if args.async_dispatch else []
  for rep in range(args.repeats):
    for flags in conditions:
      env = {k: v for k, v in os.environ.items() if k not in ("NPROC", "XLA_FLAGS")}
      env.update(condition_env(flags), JDANAS_XLA_SAFE="0", PYTHONPATH=ROOT)
      stacks = os.path.join(args.stacks, f"hung_{os.getpid()}_{rep}_{conditions.index(flags)}.txt") \
          if args.stacks else None
      status, seconds, cpu, out = watch(base, env, args.timeout, args.window, args.min_cpu, args.max_cpu, stacks)
      results[flags].append((status, seconds, cpu))
      if status == "ok":
        timings[flags].append(json.loads(out.strip().splitlines()[-1]))
      print(f"rep {rep} flags={flags!r}: {status} after {seconds:.1f}s wall, {cpu:.1f}s CPU", file=sys.stderr,
            flush=True)
  for flags, rs in results.items():
    ok = [s for st, s, _ in rs if st == "ok"]
    print(json.dumps({"trigger": args.trigger, "flags": flags, "runs": len(rs),
                      "hung": sum(st == "hung" for st, _, _ in rs),
                      "timeouts": sum(st == "timeout" for st, _, _ in rs),
                      "failed": sum(st.startswith("failed") for st, _, _ in rs), "ok": len(ok),
                      "median_seconds": round(statistics.median(ok), 1) if ok else None,
                      "median_compile_s": _median(timings[flags], "compile_s"),
                      "median_run_s": _median(timings[flags], "run_s"),
                      "median_compile_cpu_s": _median(timings[flags], "compile_cpu_s"),
                      "median_run_cpu_s": _median(timings[flags], "run_cpu_s"),
                      "hung_after_cpu_s": [round(c, 1) for st, _, c in rs if st == "hung"],
                      "exposure_cpu_s": round(sum(c for _, _, c in rs), 1),
                      "program": {"runs": args.runs, "queries": args.queries, "calls": args.calls,
                                  "async_dispatch": args.async_dispatch},
                      "watchdog": {"window_s": args.window, "min_cpu_s": args.min_cpu, "timeout_s": args.timeout,
                                   "max_cpu_s": args.max_cpu},
                      "cpu_count": os.cpu_count()}), flush=True)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--trigger", choices=sorted(TRIGGERS), default="trbo")
  p.add_argument("--flags", action="append", help="one condition: an XLA_FLAGS value, optionally after "
                 "NAME=value environment words ('NPROC=1 --xla_...'); repeatable; '' = none, 'default' = "
                 "jdanas' safe settings (jdanas.lowering.CPU_SAFE_ENV and cpu_runtime_flags)")
  p.add_argument("--repeats", type=int, default=5, help="fresh processes per condition")
  p.add_argument("--runs", type=int, default=20, help="vmapped runs (trbo, nested_while)")
  p.add_argument("--queries", type=int, default=60, help="queries per run (trbo, nested_while)")
  p.add_argument("--calls", type=int, default=1, help="calls of the compiled program per process")
  p.add_argument("--async-dispatch", action="store_true", help="asynchronous CPU dispatch (off, as in the benches)")
  p.add_argument("--window", type=float, default=60.0, help="watchdog window, seconds")
  p.add_argument("--min-cpu", type=float, default=0.5, help="CPU seconds a live process uses per window")
  p.add_argument("--timeout", type=float, default=900.0, help="wall seconds per process")
  p.add_argument("--max-cpu", type=float, default=float("inf"),
                 help="CPU seconds per process (a timeout after that; on a loaded machine a steadier cut than wall)")
  p.add_argument("--stacks", help="a folder for gdb's native stacks of each hung child")
  p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  args = p.parse_args()
  child(args) if args.child else parent(args)


if __name__ == "__main__":
  main()
