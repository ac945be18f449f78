"""Test setup: 4 simulated CPU devices (sharding tests), the process setup of run.py
(:func:`jdanas.runtime.configure`: the safe XLA:CPU runtime flags, inherited by the tests' subprocesses,
and a persistent compilation cache shared by the session's processes through
``$JAX_COMPILATION_CACHE_DIR``: resume tests compile the same programs again), XLA optimisations off
(compile time dominates tiny test programs), and shared fixtures."""
import os
import tempfile

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):  # kept beside flags set outside
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="jdanas_test_jax_cache_"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

from jdanas import runtime  # noqa: E402

runtime.configure()  # before jax starts its backend

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_disable_most_optimizations", True)

from jdanas.data import shared_data_dir, synthetic_dataset  # noqa: E402


@pytest.fixture
def key():
  return jax.random.key(0)


@pytest.fixture(scope="session")
def tiny_data():
  return synthetic_dataset(num_train=128, num_val=40, num_classes=4, image_size=8)


@pytest.fixture(scope="session")
def data_dir():
  return shared_data_dir()


def require_file(path):
  """Skips the calling test, with the reason, when a shared-data file is absent."""
  if not os.path.exists(path):
    pytest.skip(f"shared data file {path} not found (set JDANAS_DATA_DIR to the shared/data folder)")
  return path


def concrete_variables(shapes, seed: int = 0):
  """Host-side values for abstract variables (N(0, 0.1^2) weights, unit BN scale/var, zero mean).

  Compiling ``init`` costs seconds per model on CPU (one RNG program per parameter); tests that
  check forward passes draw values for ``jax.eval_shape(module.init, ...)`` shapes instead.
  """
  rng = np.random.default_rng(seed)

  def value(path, leaf):
    if path[-1].key in ("scale", "var"):
      return jnp.ones(leaf.shape, leaf.dtype)
    if path[-1].key == "mean":
      return jnp.zeros(leaf.shape, leaf.dtype)
    return jnp.asarray(0.1 * rng.standard_normal(leaf.shape), leaf.dtype)

  return jax.tree_util.tree_map_with_path(value, shapes)


def load_script(relpath: str, name: str):
  """A script of the repository (``run.py``, ``bench/<x>.py``) as module ``name``, so a test calls its functions
  and ``main(argv)`` without a subprocess."""
  import importlib.util
  import pathlib
  path = pathlib.Path(__file__).resolve().parents[1] / relpath
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_run_cli():
  """``run.py`` as a module, so a test calls its ``main(argv)`` without a subprocess."""
  return load_script("run.py", "jdanas_run_cli")


def smoke_config(**changes):
  """``configs/default.py:smoke`` (tiny teacher, S1 space with 8 tiny students, 3 rounds of 2)
  with dotted-field overrides, e.g. ``smoke_config(**{"search.rounds": 1})``; a value of another type than
  the base config's field is set anyway (bad-input tests: a config built in Python can hold anything)."""
  from configs import default
  c = default.get_config("smoke")
  for field, value in changes.items():
    node = c
    *parents, leaf = field.split(".")
    for p in parents:
      node = node[p]
    with node.ignore_type():
      node[leaf] = value
  return c


TIMING_COLUMNS = ("search_seconds", "round_seconds")  # the ledger's wall times (jdanas.report)


def ledger_rows(workdir):
  """``<workdir>/ledger.json`` without the timing columns (what resumed and uninterrupted runs share)."""
  import json
  import pathlib
  rows = json.loads((pathlib.Path(workdir) / "ledger.json").read_text())
  return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]


def sigkill_after_first_round(cmd, workdir, *, cwd, env, timeout: float = 240) -> None:
  """Runs ``cmd`` and SIGKILLs it as soon as the checkpoint of round 1 exists in ``workdir``."""
  import pathlib
  import signal
  import subprocess
  import time
  proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  deadline = time.time() + timeout
  while not (pathlib.Path(workdir) / "checkpoints" / "1").exists():
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    assert time.time() < deadline, "no checkpoint written in time"
    time.sleep(0.2)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (pathlib.Path(workdir) / "report.json").exists()
