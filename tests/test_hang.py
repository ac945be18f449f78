"""Never hang: the safe XLA:CPU runtime flags (merged with the user's, with an escape hatch) and the
no-progress watchdog (a stalled run exits non-zero with a message naming the phase and the Python
stacks). See docs/lowering.md, "Hangs on XLA:CPU"."""
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import pytest

from jdanas import lowering
from jdanas.pipeline.watchdog import EXIT_STALLED, Watchdog

REPO = pathlib.Path(__file__).resolve().parents[1]
YNN = "--xla_cpu_experimental_ynn_fusion_type"


def test_safe_flags_are_added_after_the_users_own():
  assert lowering.cpu_runtime_flags("") == f"{YNN}="
  assert lowering.cpu_runtime_flags("--xla_force_host_platform_device_count=4") == (
      f"--xla_force_host_platform_device_count=4 {YNN}=")


def test_a_flag_the_user_sets_is_never_overridden():
  mine = f"{YNN}=reduce --xla_cpu_multi_thread_eigen=false"
  assert lowering.cpu_runtime_flags(mine) == mine


def test_configure_sets_the_flags_and_keeps_the_users():
  env = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}
  assert lowering.configure_cpu_runtime(env)
  assert env["XLA_FLAGS"] == f"--xla_cpu_multi_thread_eigen=false {YNN}="
  assert env["NPROC"] == "1"  # a one-thread intra-op pool: batched LAPACK kernels run inline
  assert lowering.configure_cpu_runtime(env)  # idempotent
  assert env == {"XLA_FLAGS": f"--xla_cpu_multi_thread_eigen=false {YNN}=", "NPROC": "1"}


def test_configure_keeps_the_users_own_pool_size():
  env = {"NPROC": "8", "XLA_FLAGS": f"{YNN}="}
  assert lowering.configure_cpu_runtime(env)
  assert env == {"NPROC": "8", "XLA_FLAGS": f"{YNN}="}


def test_escape_hatch_leaves_xla_flags_alone():
  env = {lowering.SAFE_ENV: "0", "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}
  assert not lowering.configure_cpu_runtime(env)
  assert env["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=false"
  env = {lowering.SAFE_ENV: "0"}
  assert not lowering.configure_cpu_runtime(env)
  assert "XLA_FLAGS" not in env and "NPROC" not in env


def test_the_test_session_runs_with_the_safe_flags():
  if os.environ.get(lowering.SAFE_ENV) == "0":
    pytest.skip(f"{lowering.SAFE_ENV}=0")
  assert f"{YNN}=" in os.environ["XLA_FLAGS"].split()
  assert "NPROC" in os.environ


@pytest.mark.slow
def test_the_flags_remove_ynn_fusions_from_a_program():
  """What the flag does, seen in a fresh process's compiled program (a reduction XLA:CPU hands to
  YNNPACK by default on this jaxlib)."""
  code = textwrap.dedent("""
      import jax, jax.numpy as jnp
      f = jax.jit(lambda a, b: jnp.sum(a[:, None, :] * b[None, :, :], -1))  # the GP kernel's form
      x = jnp.ones((128, 6), jnp.float32)
      print("ynn_fusions", f.lower(x, x).compile().as_text().count('"__ynn_fusion"'))
  """)

  def count(flags):
    env = dict(os.environ, XLA_FLAGS=flags, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])

  if count("") == 0:
    pytest.skip("this jaxlib makes no YNNPACK fusions for the reduction")
  assert count(lowering.cpu_runtime_flags("")) == 0


def _intra_op_threads(env) -> int:
  """XLA:CPU's intra-op pool size (its ``tf_XLAEigen`` threads) in a fresh process with ``env``."""
  code = textwrap.dedent("""
      import pathlib, jax, jax.numpy as jnp
      jnp.ones(3).block_until_ready()
      tasks = pathlib.Path("/proc/self/task").iterdir()
      print(sum(t.joinpath("comm").read_text().strip() == "tf_XLAEigen" for t in tasks))
  """)
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr
  return int(out.stdout.split()[-1])


@pytest.mark.skipif(not pathlib.Path("/proc/self/task").is_dir() or os.cpu_count() < 2, reason="needs Linux, 2+ cores")
def test_the_safe_runtime_runs_xla_cpu_with_one_intra_op_thread():
  """What ``NPROC=1`` does, seen in fresh processes: one intra-op worker instead of one per core,
  so no batched LAPACK kernel can wait on a pool whose every worker waits too
  (bench/probes/lapack_pool_deadlock.py; docs/lowering.md, 'Hangs on XLA:CPU')."""
  base = {k: v for k, v in os.environ.items() if k not in ("NPROC", "XLA_FLAGS")}
  safe = dict(base)
  assert lowering.configure_cpu_runtime(safe)
  assert _intra_op_threads(safe) == 1
  assert _intra_op_threads(base) > 1  # the default this guards against: one worker per core


@pytest.mark.slow
def test_the_lapack_pool_probe_finishes_under_the_safe_runtime():
  """The standalone reproducer wedges most fresh 2-core processes without the safe settings (10
  in 10 in bench/probes/xla_cpu_hang.py's measurement); with them it always finishes."""
  env = {k: v for k, v in os.environ.items() if k not in ("NPROC", "XLA_FLAGS")}
  assert lowering.configure_cpu_runtime(env)
  for _ in range(2):
    out = subprocess.run([sys.executable, "bench/probes/lapack_pool_deadlock.py", "--steps", "100", "--calls", "3"],
                         env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0 and out.stdout.startswith("ok "), out.stderr


def _run(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=str(REPO))
  return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                        timeout=timeout, cwd=REPO)


# The watchdog module alone (no jax import: the subprocess starts in a second).
IMPORT_WATCHDOG = """
      import importlib.util
      spec = importlib.util.spec_from_file_location("watchdog", "jdanas/pipeline/watchdog.py")
      watchdog = importlib.util.module_from_spec(spec)
      spec.loader.exec_module(watchdog)
      Watchdog = watchdog.Watchdog
"""


def test_watchdog_ends_a_stalled_run_with_phase_and_stacks():
  out = _run(f"""
      import time
      {IMPORT_WATCHDOG}

      def stalled_step():
        time.sleep(100)  # a step that never returns (an XLA:CPU wedge parks in a C++ wait like this)

      with Watchdog(1.0) as w:
        for r in range(3):
          w.beat(f"search round {{r}}")
        stalled_step()
      print("not reached")
  """)
  assert out.returncode == EXIT_STALLED, out.stderr
  first = out.stderr.splitlines()[0]
  assert first.startswith("error: compute.stall_timeout_s: no progress for "), out.stderr
  assert "in search round 2 " in first
  assert "stalled_step" in out.stderr and "Thread" in out.stderr  # the Python stacks of all threads
  assert "not reached" not in out.stdout


def test_watchdog_backstop_fires_when_the_stalled_call_holds_the_gil():
  """A C call that never releases the GIL starves the watchdog thread; faulthandler's C-level
  timer (1.5x the timeout + 5 s) still dumps the stacks and exits."""
  out = _run(f"""
      import ctypes
      {IMPORT_WATCHDOG}

      with Watchdog(0.5) as w:
        w.beat("final KD step 0")
        ctypes.PyDLL(None).sleep(100)  # PyDLL keeps the GIL during the call
  """)
  assert out.returncode != 0
  assert "Timeout" in out.stderr and "<string>" in out.stderr, out.stderr


def test_watchdog_stays_quiet_while_progress_comes_and_stops_on_exit():
  out = _run(f"""
      import time
      {IMPORT_WATCHDOG}

      with Watchdog(1.0) as w:
        tick = w.ticker("teacher training")
        for step in range(12):
          tick(step)
          time.sleep(0.2)
      time.sleep(2.5)  # after the context: no watchdog, no backstop
      with Watchdog(0) as off:
        off.beat("anything")
        time.sleep(1.5)
      print("finished")
  """)
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == "finished"


def test_watchdog_rejects_a_negative_timeout():
  with pytest.raises(ValueError, match="timeout_s"):
    Watchdog(-1)
  with pytest.raises(ValueError, match="idle_s"):
    Watchdog(0, idle_s=-1)


# A jitted program that blocks inside XLA forever, using no CPU: the shape of the XLA:CPU wedge
# (the host in BlockUntilReady, every worker in a futex wait), made on purpose with a host
# callback that waits on an event nobody sets.
BLOCKED_PROGRAM = """
      import threading
      import jax, jax.numpy as jnp
      never = threading.Event()

      def wait_forever(x):
        never.wait()
        return x

      def blocked(x):
        return jax.pure_callback(wait_forever, jax.ShapeDtypeStruct(x.shape, x.dtype), x, vmap_method="sequential")
"""


def test_idle_watchdog_ends_a_wedged_xla_call_with_one_error_line():
  out = _run(f"""
      {IMPORT_WATCHDOG}
      {BLOCKED_PROGRAM}
      with Watchdog(0, idle_s=2.0, idle_name="--idle-timeout") as w:
        w.beat("casmopolitan: runs 1-20")
        jax.jit(blocked)(jnp.ones(3)).block_until_ready()
      print("not reached")
  """)
  assert out.returncode == EXIT_STALLED, out.stderr
  first = out.stderr.splitlines()[0]
  assert first.startswith("error: --idle-timeout: the process used almost no CPU"), out.stderr
  assert "in casmopolitan: runs 1-20 " in first and "XLA:CPU is wedged" in first
  assert "wait_forever" in out.stderr  # the Python stacks of all threads
  assert "not reached" not in out.stdout


def test_idle_watchdog_stays_quiet_while_the_process_computes():
  out = _run(f"""
      import time
      {IMPORT_WATCHDOG}
      with Watchdog(0, idle_s=1.0) as w:
        end = time.monotonic() + 4.0
        while time.monotonic() < end:  # busy: uses CPU the whole time
          sum(range(1000))
      print("finished")
  """)
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == "finished"


@pytest.mark.slow
def test_trbo_bench_ends_a_wedged_search_with_one_error_line():
  """bench/trbo_nb201.py arms the idle watchdog: its search program made to block (the table
  search replaced by one that waits in a host callback) ends the process with status 3 and one
  error line naming the phase, instead of hanging."""
  from conftest import require_file
  from jdanas.data import shared_data_dir
  require_file(shared_data_dir() / "nb201_accuracy.csv")
  out = _run(f"""
      import sys
      sys.path.insert(0, "bench")
      sys.argv = ["trbo_nb201.py", "--runs", "2", "--queries", "12", "--searchers", "random", "--idle-timeout", "3"]
      import trbo_nb201
      {BLOCKED_PROGRAM}
      trbo_nb201.table_search = lambda searcher, key, valid, test, index, queries: (
          blocked(valid[:queries]), blocked(test[:queries]))
      trbo_nb201.main()
      print("not reached")
  """, timeout=300)
  assert out.returncode == EXIT_STALLED, out.stderr
  errors = [l for l in out.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and errors[0].startswith("error: --idle-timeout: "), out.stderr
  assert "in random: runs 1-2 " in errors[0]
  assert "not reached" not in out.stdout


@pytest.mark.slow
def test_a_stalled_teacher_step_stops_the_pipeline(tmp_path):
  """The config field reaches run.py's watchdog (the library arms none: tests/test_runtime.py) and the
  teacher's steps are progress points: a teacher step that never returns ends the run with status 3
  and a message naming the phase."""
  out = _run(f"""
      import sys, time
      sys.path.insert(0, "tests")
      import jdanas.pipeline.setup as setup
      import run

      def stalled_teacher(key, name, data, *, recipe, progress):
        progress(0)
        progress(1)
        time.sleep(100)

      setup.train_teacher = stalled_teacher
      sys.exit(run.main(["run.py", "--config", "configs/default.py:smoke", "--workdir", {str(tmp_path / "run")!r},
                         "--config.compute.stall_timeout_s=3"]))
  """, timeout=300)
  assert out.returncode == EXIT_STALLED, out.stderr
  line = next(l for l in out.stderr.splitlines() if l.startswith("error:"))
  assert "no progress for " in line and "in teacher training step 1 " in line, out.stderr
  assert "stalled_teacher" in out.stderr
