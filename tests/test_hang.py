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
  assert lowering.configure_cpu_runtime(env)  # idempotent
  assert env["XLA_FLAGS"] == f"--xla_cpu_multi_thread_eigen=false {YNN}="


def test_escape_hatch_leaves_xla_flags_alone():
  env = {lowering.SAFE_ENV: "0", "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}
  assert not lowering.configure_cpu_runtime(env)
  assert env["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=false"
  env = {lowering.SAFE_ENV: "0"}
  assert not lowering.configure_cpu_runtime(env)
  assert "XLA_FLAGS" not in env


def test_the_test_session_runs_with_the_safe_flags():
  if os.environ.get(lowering.SAFE_ENV) == "0":
    pytest.skip(f"{lowering.SAFE_ENV}=0")
  assert f"{YNN}=" in os.environ["XLA_FLAGS"].split()


def test_too_late_warns_and_changes_nothing(monkeypatch):
  jax.devices()  # the backend has started
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
  monkeypatch.delenv(lowering.SAFE_ENV, raising=False)
  with pytest.warns(RuntimeWarning, match="jax started without --xla_cpu_experimental_ynn_fusion_type="):
    assert not lowering.configure_cpu_runtime()
  assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=4"


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


@pytest.mark.slow
def test_a_stalled_teacher_step_stops_the_pipeline(tmp_path):
  """The config field reaches the pipeline's watchdog and the teacher's steps are progress points:
  a teacher step that never returns ends the run with status 3 and a message naming the phase."""
  out = _run(f"""
      import sys, time
      sys.path.insert(0, "tests")
      import jdanas.pipeline as pipeline
      import jdanas.pipeline.setup as setup
      from conftest import smoke_config

      def stalled_teacher(key, name, data, *, recipe, progress):
        progress(0)
        progress(1)
        time.sleep(100)

      setup.train_teacher = stalled_teacher
      pipeline.run(smoke_config(**{{"compute.stall_timeout_s": 3}}), {str(tmp_path / "run")!r})
  """, timeout=300)
  assert out.returncode == EXIT_STALLED, out.stderr
  line = next(l for l in out.stderr.splitlines() if l.startswith("error:"))
  assert "no progress for " in line and "in teacher training step 1 " in line, out.stderr
  assert "stalled_teacher" in out.stderr
