"""The library does not own the process: ``jdanas.pipeline`` writes no environment variable, arms no
faulthandler timer, starts no watchdog thread and never ends the process; process setup is the opt-in
:mod:`jdanas.runtime` (run.py, the tests, the benches, the notebooks)."""
import faulthandler
import os
import pathlib
import subprocess
import sys
import textwrap
import threading

import jax
import pytest

from conftest import smoke_config
from jdanas import lowering, runtime

REPO = pathlib.Path(__file__).resolve().parents[1]
YNN = "--xla_cpu_experimental_ynn_fusion_type"


def test_importing_the_pipeline_writes_no_environment_variable():
  code = textwrap.dedent("""
      import os
      before = dict(os.environ)
      import jdanas.pipeline, jdanas.runtime
      assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())
      print("ok")
  """)
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "NPROC")}
  out = subprocess.run([sys.executable, "-c", code], env=dict(env, PYTHONPATH=str(REPO)), capture_output=True,
                       text=True, timeout=300, cwd=REPO)
  assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.slow  # a one-round smoke run: ~50 s on the loaded 2-core CPU, compile-bound
def test_pipeline_run_leaves_the_process_alone(tmp_path, monkeypatch):
  """A whole (tiny) run: the environment is unchanged, and no faulthandler timer, exit or watchdog
  thread is ever armed, whatever ``compute.stall_timeout_s`` says (run.py arms its own)."""
  from jdanas import pipeline
  armed = []
  monkeypatch.setattr(faulthandler, "dump_traceback_later", lambda *a, **k: armed.append(("faulthandler", a)))
  monkeypatch.setattr(os, "_exit", lambda code: armed.append(("os._exit", code)))
  started = threading.Thread.start

  def start(thread):
    armed.append(("thread", thread.name))
    return started(thread)

  monkeypatch.setattr(threading.Thread, "start", start)
  # Third-party packages the run imports write their own defaults at import (tensorboardX: CRC32C_SW_MODE;
  # scikit-learn: KMP_*); imported first, they are not the run's writes.
  import sklearn  # noqa: F401
  import tensorboardX.crc32c  # noqa: F401
  before = dict(os.environ)
  config = smoke_config(**{"search.rounds": 1, "compute.stall_timeout_s": 600.0})
  report = pipeline.run(config, tmp_path / "w")
  assert dict(os.environ) == before
  assert report["search"]["evaluations"] == 2
  assert not [a for a in armed if a[0] != "thread" or "watchdog" in a[1]], armed


def test_configure_writes_the_runtime_settings_and_the_cache(tmp_path, monkeypatch):
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  monkeypatch.delenv("NPROC", raising=False)
  monkeypatch.delenv(lowering.SAFE_ENV, raising=False)
  monkeypatch.delenv(runtime.CACHE_ENV, raising=False)
  monkeypatch.delenv(runtime.MIN_COMPILE_TIME_ENV, raising=False)
  previous = jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs
  try:
    assert runtime.configure(tmp_path / "cache", min_compile_time_s=2.0)
    assert os.environ["XLA_FLAGS"] == f"{YNN}=" and os.environ["NPROC"] == "1"
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "cache")
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 2.0
    monkeypatch.setenv(runtime.CACHE_ENV, str(tmp_path / "shared"))  # JAX's own variable wins
    assert runtime.use_compilation_cache(tmp_path / "mine") == str(tmp_path / "shared")
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "shared")
  finally:
    jax.config.update("jax_compilation_cache_dir", previous[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", previous[1])


def test_the_library_warns_on_cpu_without_the_runtime_settings(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
  monkeypatch.delenv(lowering.SAFE_ENV, raising=False)
  with pytest.warns(RuntimeWarning, match=f"jax runs on CPU without {YNN}= "):
    assert runtime.check_cpu_runtime()
  assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=4"  # only checked, never written
  monkeypatch.setenv("XLA_FLAGS", f"{YNN}=")
  assert runtime.check_cpu_runtime() is None
  monkeypatch.setenv(lowering.SAFE_ENV, "0")
  monkeypatch.delenv("XLA_FLAGS")
  assert runtime.check_cpu_runtime() is None


def test_no_private_jax_api_in_the_library():
  hits = [f"{p.relative_to(REPO)}:{i + 1}" for p in (REPO / "jdanas").rglob("*.py")
          for i, line in enumerate(p.read_text().splitlines()) if "jax._src" in line or "_cache_size" in line]
  assert hits == []
