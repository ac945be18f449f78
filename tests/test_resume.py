"""Resume rough edges: unreadable checkpoints are moved aside and written again; a teacher worse
than no KD is flagged in the report; a controller searcher (AKD's PPO) with the latency-aware
reward resumes after SIGKILL with the identical ledger. (A finished workdir and SIGKILL with
regularized evolution: tests/test_experiment.py; a teacher at chance: tests/test_run_errors.py.)"""
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ledger_rows, sigkill_after_first_round
from jdanas.pipeline.checkpoints import Checkpoints
from jdanas.pipeline.final import teacher_warnings
from jdanas.report import write_report
from jdanas.searchers import SEARCHERS
from jdanas.spaces import get_space

REPO = pathlib.Path(__file__).resolve().parents[1]
CONTROLLER = "ppo"
# The smoke run (digits, S1 space, 3 rounds of 2) with the PPO controller and AKD's reward (FLOPs
# latency model: deterministic, so an uninterrupted run and a resumed one must agree exactly).
AKD_SMOKE = f"""
from configs import default


def get_config():
  c = default.get_config("smoke")
  c.searcher = dict(name="{CONTROLLER}", dedup=True, kwargs=dict(num_asks=2))
  c.evaluator.reward = dict(latency_model="flops", target=1e5, alpha=-0.07, beta=-0.07, batch_size=1, repeats=5)
  return c
"""


def _corrupt(step_dir: pathlib.Path) -> None:
  for f in step_dir.rglob("*"):
    if f.is_file():
      f.write_bytes(b"truncated")


def test_all_checkpoints_unreadable_start_from_scratch_and_checkpoint_again(tmp_path, capsys):
  state = {"population": jnp.arange(6, dtype=jnp.int32), "scores": jnp.ones(3)}
  ledger = [{"round": 0, "index": 0, "arch": "a", "score": 0.5}]
  top = [{"arch": "a", "score": 0.5, "variables": {"w": np.ones((2, 2), np.float32)}}]
  ckpt = Checkpoints(tmp_path / "checkpoints", jax.eval_shape(lambda: state))
  ckpt.save(1, state, ledger, top)
  ckpt.save(2, state, ledger, top)
  ckpt.close()
  for step in ("1", "2"):
    _corrupt(tmp_path / "checkpoints" / step)
  ckpt = Checkpoints(tmp_path / "checkpoints", jax.eval_shape(lambda: state))
  assert ckpt.restore_latest() is None
  err = capsys.readouterr().err
  assert "checkpoint of round 2 is unreadable" in err and "checkpoint of round 1 is unreadable" in err
  assert "starting from scratch" in err
  # Kept for inspection, out of orbax's way: the rerun checkpoints rounds 1 and 2 again.
  assert sorted(p.name for p in (tmp_path / "checkpoints.unreadable").iterdir()) == ["1", "2"]
  ckpt.save(1, state, ledger, top)
  ckpt.save(2, state, ledger[:0], [])
  ckpt.close()
  ckpt = Checkpoints(tmp_path / "checkpoints", jax.eval_shape(lambda: state))
  round_done, restored, restored_ledger, restored_top = ckpt.restore_latest()
  ckpt.close()
  assert round_done == 2 and restored_ledger == [] and restored_top == []
  np.testing.assert_array_equal(restored["population"], state["population"])


def test_teacher_worse_than_no_kd_is_warned_in_the_report(tmp_path):
  assert teacher_warnings("resnet8", 0.9, 0.8) == []
  (w,) = teacher_warnings("resnet8", 0.5, 0.8)
  assert "less accurate than the chosen student trained without KD" in w
  write_report(tmp_path, {"space": "nb201_masked", "warnings": [w]})
  md = (tmp_path / "report.md").read_text()
  assert "## Warnings" in md and w in md
  assert json.loads((tmp_path / "report.json").read_text())["warnings"] == [w]


def test_controller_state_round_trips_through_the_checkpoint(tmp_path):
  space = get_space("s1_resnet", depth_choices=(1, 2), widths=(4, 8, 8), stem=4)
  searcher = SEARCHERS[CONTROLLER](space, num_asks=2)
  state = searcher.init(jax.random.key(0))
  encs, state = searcher.ask(jax.random.key(1), state)
  state, _ = searcher.tell(jax.random.key(2), state, encs, jnp.asarray([0.3, 0.5]))
  ckpt = Checkpoints(tmp_path / "checkpoints", jax.eval_shape(lambda: state))
  ckpt.save(1, state, [], [])
  ckpt.close()
  ckpt = Checkpoints(tmp_path / "checkpoints", jax.eval_shape(lambda: state))
  _, restored, _, _ = ckpt.restore_latest()
  ckpt.close()
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # The restored state asks exactly what the live one asks.
  np.testing.assert_array_equal(searcher.ask(jax.random.key(3), restored)[0], searcher.ask(jax.random.key(3), state)[0])


@pytest.mark.slow
def test_controller_with_reward_sigkill_then_resume_gives_the_identical_ledger(tmp_path):
  config = tmp_path / "akd_smoke.py"
  config.write_text(AKD_SMOKE)
  env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS="1", PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
  cli = lambda workdir: [sys.executable, "run.py", "--config", str(config), "--workdir", str(workdir)]
  full = subprocess.run(cli(tmp_path / "full"), cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert full.returncode == 0, full.stderr[-2000:]
  work = tmp_path / "killed"
  sigkill_after_first_round(cli(work), work, cwd=REPO, env=env, timeout=400)
  done = subprocess.run(cli(work), cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "[resume] continuing after round" in done.stderr
  ledger = ledger_rows(work)
  assert [r["index"] for r in ledger] == list(range(len(ledger))) and len(ledger) == 6
  assert all(r["reward"] == r["score"] and r["latency"] == r["flops"] for r in ledger)
  assert ledger == ledger_rows(tmp_path / "full")
