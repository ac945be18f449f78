"""Multi-process runs (docs/scaling.md): the launch flags and variables, the cross-process checksum,
and (slow) a real 2-process search on localhost (loopback coordinator, gloo CPU collectives) that
matches the single-process run, fails loudly when a process dies and resumes after a restart."""
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax.numpy as jnp
import numpy as np
import pytest

from jdanas import parallel

REPO = pathlib.Path(__file__).resolve().parents[1]


# ---- launch flags / variables -------------------------------------------------------------------
def test_no_coordinator_is_a_single_process_run():
  assert parallel.launch_spec(env={}) is None
  assert parallel.launch_spec(num_processes="1", env={}) is None


def test_flags_fall_back_to_the_environment():
  env = {"JDANAS_COORDINATOR": "10.0.0.1:1234", "JDANAS_NUM_PROCESSES": "4", "JDANAS_PROCESS_ID": "3",
         "JDANAS_HEARTBEAT_TIMEOUT": "30"}
  assert parallel.launch_spec(env=env) == parallel.Launch("10.0.0.1:1234", 4, 3, 30)
  # a flag wins over its variable
  assert parallel.launch_spec(process_id=0, env=env) == parallel.Launch("10.0.0.1:1234", 4, 0, 30)
  assert parallel.launch_spec("auto", env={}) == parallel.Launch("auto", None, None, 100)


@pytest.mark.parametrize("kwargs, names", [
    (dict(num_processes=2, process_id=0), "--num_processes (JDANAS_NUM_PROCESSES): given without --coordinator"),
    (dict(coordinator="10.0.0.1", num_processes=2, process_id=0), "--coordinator (JDANAS_COORDINATOR): "),
    (dict(coordinator="h:99999", num_processes=2, process_id=0), "--coordinator (JDANAS_COORDINATOR): "),
    (dict(coordinator="h:1234", process_id=0), "--num_processes (JDANAS_NUM_PROCESSES): required"),
    (dict(coordinator="h:1234", num_processes=2), "--process_id (JDANAS_PROCESS_ID): required"),
    (dict(coordinator="h:1234", num_processes="two", process_id=0), "--num_processes (JDANAS_NUM_PROCESSES): must be an int"),
    (dict(coordinator="h:1234", num_processes=0, process_id=0), "--num_processes (JDANAS_NUM_PROCESSES): must be >= 1"),
    (dict(coordinator="h:1234", num_processes=2, process_id=2), "--process_id (JDANAS_PROCESS_ID): 2 is not below"),
    (dict(coordinator="h:1234", num_processes=2, process_id=-1), "--process_id (JDANAS_PROCESS_ID): must be >= 0"),
    (dict(coordinator="auto", num_processes=2), "--num_processes (JDANAS_NUM_PROCESSES): not used with"),
    (dict(coordinator="h:1234", num_processes=2, process_id=0, heartbeat_timeout=0), "--heartbeat_timeout"),
])
def test_bad_launch_names_the_flag(kwargs, names):
  with pytest.raises(ValueError) as e:
    parallel.launch_spec(env={}, **kwargs)
  assert str(e.value).startswith(names) and "\n" not in str(e.value)


# ---- checksum ------------------------------------------------------------------------------------
def test_checksum_sees_values_dtypes_and_structure():
  tree = {"a": jnp.arange(4, dtype=jnp.int32), "b": np.ones(3, np.float32)}
  c = parallel.tree_checksum(tree)
  assert c == parallel.tree_checksum({"a": np.arange(4, dtype=np.int32), "b": np.ones(3, np.float32)})
  assert c != parallel.tree_checksum({"a": jnp.arange(4, dtype=jnp.int32).at[3].set(5), "b": tree["b"]})
  assert c != parallel.tree_checksum({"a": jnp.arange(4, dtype=jnp.uint32), "b": tree["b"]})
  assert c != parallel.tree_checksum({"a": tree["a"], "c": tree["b"]})
  assert 0 <= c < 2 ** 63
  assert parallel.check_same_across_processes(tree, "the state") == c  # one process: nothing to compare


# ---- a real 2-process run --------------------------------------------------------------------------
ARGS = ["--config", "configs/default.py:smoke", "--config.search.rounds=3", "--config.search.top_k=1"]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(devices: int) -> dict:
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_DISABLE_MOST_OPTIMIZATIONS="1")
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  return env


def _launch(workdir: pathlib.Path, port: int, tag: str) -> list[subprocess.Popen]:
  procs = []
  for i in range(2):
    log = open(workdir.parent / f"{tag}.{i}.log", "w")
    procs.append(subprocess.Popen(
        [sys.executable, "run.py", *ARGS, "--workdir", str(workdir), f"--coordinator=127.0.0.1:{port}",
         "--num_processes=2", f"--process_id={i}", "--heartbeat_timeout=10"],
        cwd=REPO, env=_env(1), stdout=log, stderr=subprocess.STDOUT))
  return procs


def _wait(procs, timeout: float) -> list[int]:
  deadline = time.monotonic() + timeout
  codes = []
  for p in procs:
    try:
      codes.append(p.wait(timeout=max(deadline - time.monotonic(), 1)))
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      raise AssertionError("a process of the multi-process run hung") from None
  return codes


def _ledger(workdir: pathlib.Path) -> list[dict]:
  return [{k: v for k, v in row.items() if k not in ("search_seconds", "round_seconds")}
          for row in json.loads((workdir / "ledger.json").read_text())]


@pytest.mark.slow
def test_two_processes_match_one_and_resume_after_a_process_dies(tmp_path):
  """The 2-process ledger equals the single-process ledger on the same ('pop', 'data') = (1, 2)
  mesh (there one process simulates the two devices): every number is bit-equal, because each
  cross-device sum has two operands, and a + b == b + a. (On a 1-device mesh the batch sums run in
  another order and scores may differ in the last bits.)"""
  ref = tmp_path / "single"
  proc = subprocess.run([sys.executable, "run.py", *ARGS, "--workdir", str(ref)], cwd=REPO, env=_env(2),
                        capture_output=True, text=True, timeout=1200)
  assert proc.returncode == 0, proc.stderr[-3000:]

  multi = tmp_path / "multi"
  procs = _launch(multi, _free_port(), "first")
  deadline = time.monotonic() + 1200
  while not (multi / "checkpoints" / "1").exists():  # round 1 checkpointed: kill process 1
    assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "the run ended before round 1"
    time.sleep(0.2)
  procs[1].send_signal(signal.SIGKILL)
  t_kill = time.monotonic()
  codes = _wait(procs, timeout=180)
  assert codes[1] == -signal.SIGKILL
  assert codes[0] != 0, "process 0 went on without process 1"
  log0 = (tmp_path / "first.0.log").read_text()
  assert "heartbeat" in log0 or "distributed service detected fatal errors" in log0 or "Gloo" in log0, log0[-2000:]
  print(f"process 0 stopped {time.monotonic() - t_kill:.1f} s after process 1 was killed")
  assert not (multi / "report.json").exists()

  procs = _launch(multi, _free_port(), "second")
  assert _wait(procs, timeout=1200) == [0, 0], (tmp_path / "second.0.log").read_text()[-3000:]
  assert "[resume] continuing after round" in (tmp_path / "second.0.log").read_text()
  assert _ledger(multi) == _ledger(ref)
  a, b = (json.loads((w / "report.json").read_text()) for w in (ref, multi))
  assert a["final"] == b["final"]
  assert [(r["arch"], r["val_accuracy"]) for r in a["top"]] == [(r["arch"], r["val_accuracy"]) for r in b["top"]]
  assert (multi / "export").is_dir()
  # process 0 alone wrote the files: one metrics row per round
  assert [json.loads(l)["round"] for l in (multi / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2]
