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

from conftest import ledger_rows, load_run_cli, sigkill_after_first_round
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
  ckpt = Checkpoints(tmp_path / "checkpoints", jax.eval_shape(lambda: state))
  ckpt.save(1, state, ledger)
  ckpt.save(2, state, ledger)
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
  ckpt.save(1, state, ledger)
  ckpt.save(2, state, ledger[:0])
  ckpt.close()
  ckpt = Checkpoints(tmp_path / "checkpoints", jax.eval_shape(lambda: state))
  round_done, restored, restored_ledger = ckpt.restore_latest()
  ckpt.close()
  assert round_done == 2 and restored_ledger == []
  np.testing.assert_array_equal(restored["population"], state["population"])


def test_a_checkpoint_with_the_former_top_k_weights_still_restores(tmp_path):
  """Checkpoints written while the search kept its top-K short-KD weights (a ``top`` item) resume."""
  import orbax.checkpoint as ocp
  state = {"population": jnp.arange(6, dtype=jnp.int32)}
  ledger = [{"round": 0, "index": 0, "arch": "a", "score": 0.5}]
  manager = ocp.CheckpointManager((tmp_path / "checkpoints").absolute(),
                                  options=ocp.CheckpointManagerOptions(enable_async_checkpointing=False))
  manager.save(1, args=ocp.args.Composite(
      state=ocp.args.StandardSave(jax.device_get(state)),
      ledger=ocp.args.JsonSave({"round": 1, "ledger": ledger, "top": [{"arch": "a", "score": 0.5}]}),
      top=ocp.args.PyTreeSave({"top0": {"w": np.ones((2, 2), np.float32)}})))
  manager.wait_until_finished()
  manager.close()
  ckpt = Checkpoints(tmp_path / "checkpoints", jax.eval_shape(lambda: state))
  round_done, restored, restored_ledger = ckpt.restore_latest()
  ckpt.close()
  assert round_done == 1 and restored_ledger == ledger
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
  ckpt.save(1, state, [])
  ckpt.close()
  ckpt = Checkpoints(tmp_path / "checkpoints", jax.eval_shape(lambda: state))
  _, restored, _ = ckpt.restore_latest()
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


# ---- a workdir holding a run of another config (jdanas.pipeline.resume) --------------------------------------
run_cli = load_run_cli()
SMOKE = "configs/default.py:smoke"


def _recorded_workdir(path: pathlib.Path, config, finished: bool) -> pathlib.Path:
  """A workdir as a run of ``config`` leaves it: config.json, a checkpoint, and report.json when finished."""
  from jdanas.pipeline.resume import config_json
  path.mkdir(parents=True)
  (path / "config.json").write_text(config.to_json_best_effort(indent=1, sort_keys=True) + "\n")
  (path / "checkpoints" / "1").mkdir(parents=True)
  (path / "checkpoints" / "1" / "state").write_bytes(b"round 1")
  if finished:
    (path / "report.json").write_text(json.dumps({"config": config_json(config), "final": {"arch": "222"}}))
  return path


def _snapshot(path: pathlib.Path) -> dict:
  return {str(f.relative_to(path)): (f.read_bytes(), f.stat().st_mtime_ns) for f in sorted(path.rglob("*"))
          if f.is_file()}


def test_check_resume_allows_only_changes_that_cannot_change_the_result(tmp_path):
  from conftest import smoke_config
  from jdanas.pipeline import ConfigError
  from jdanas.pipeline.resume import RESUME_HARMLESS, check_resume
  assert list(RESUME_HARMLESS) == ["compute.stall_timeout_s"]
  assert check_resume(smoke_config(), tmp_path / "fresh") == []  # nothing recorded: nothing to compare
  interrupted = _recorded_workdir(tmp_path / "interrupted", smoke_config(), finished=False)
  finished = _recorded_workdir(tmp_path / "finished", smoke_config(), finished=True)
  for workdir in (interrupted, finished):
    assert check_resume(smoke_config(), workdir) == []
    assert check_resume(smoke_config(**{"compute.stall_timeout_s": 60.0}), workdir) == [
        {"field": "compute.stall_timeout_s", "was": 1800.0, "now": 60.0}]
  # more rounds continue an unfinished search (same keys per round, no searcher knows the number of rounds)
  assert check_resume(smoke_config(**{"search.rounds": 5}), interrupted) == [
      {"field": "search.rounds", "was": 3, "now": 5}]
  refused = [
      (interrupted, {"search.rounds": 2}, "config.search.rounds was 3, now 2 (fewer rounds"),
      (finished, {"search.rounds": 5}, "config.search.rounds was 3, now 5 (the run in it is finished"),
      (interrupted, {"seed": 1}, "config.seed was 0, now 1 (use a new --workdir"),
      (interrupted, {"compute.lowering": "xla"}, 'config.compute.lowering was "auto", now "xla"'),
      (finished, {"final.steps": 7}, "config.final.steps was 2, now 7"),
      # the first differing field in sorted order (data < seed), whatever the order of the overrides
      (interrupted, {"seed": 1, "data.val_fraction": 0.2}, "config.data.val_fraction was 0.1, now 0.2"),
  ]
  for workdir, change, message in refused:
    with pytest.raises(ConfigError) as e:
      check_resume(smoke_config(**change), workdir)
    line = str(e.value)
    assert line.startswith(f"--workdir: {str(workdir.absolute())!r} holds a run of another config: "), line
    assert message in line and "\n" not in line, line
  # the one_shot evaluator's schedule spans all rounds: more rounds would change the earlier ones
  one_shot = {"evaluator.name": "one_shot"}
  _recorded_workdir(tmp_path / "one_shot", smoke_config(**one_shot), finished=False)
  with pytest.raises(ConfigError, match="config.search.rounds was 3, now 4 .the one_shot evaluator's schedule"):
    check_resume(smoke_config(**one_shot, **{"search.rounds": 4}), tmp_path / "one_shot")


def test_a_finished_report_stands_for_harmless_changes_only(tmp_path):
  from conftest import smoke_config
  from jdanas.pipeline import finished_report
  workdir = _recorded_workdir(tmp_path / "w", smoke_config(), finished=True)
  assert finished_report(smoke_config(), workdir)["final"] == {"arch": "222"}
  assert finished_report(smoke_config(**{"compute.stall_timeout_s": 5.0}), workdir) is not None
  assert finished_report(smoke_config(**{"seed": 2}), workdir) is None


@pytest.mark.parametrize("finished, flag, names", [
    (True, "--config.search.rounds=2", "config.search.rounds was 3, now 2"),
    (True, "--config.seed=1", "config.seed was 0, now 1"),
    (False, "--config.seed=1", "config.seed was 0, now 1"),
    (False, "--config.teacher.train.steps=5", "config.teacher.train.steps was 3, now 5"),
], ids=["finished_rounds", "finished_seed", "interrupted_seed", "interrupted_teacher"])
def test_run_py_refuses_another_config_before_compute(tmp_path, capsys, monkeypatch, finished, flag, names):
  """``error: --workdir: ...``, exit 2, and the workdir untouched (no file written, none rewritten)."""
  import jdanas.pipeline as pipeline
  import jdanas.pipeline.check as check
  import jdanas.pipeline.setup as setup
  from configs import default

  def forbidden(*args, **kwargs):
    raise AssertionError("compute started on a workdir of another config")

  monkeypatch.setattr(setup, "train_teacher", forbidden)
  monkeypatch.setattr(check, "load_data", forbidden)  # the first step after the workdir's checks
  monkeypatch.setattr(pipeline, "search", forbidden)
  monkeypatch.chdir(REPO)
  workdir = _recorded_workdir(tmp_path / "run", default.get_config("smoke"), finished=finished)
  before = _snapshot(workdir)
  status = run_cli.main(["run.py", "--config", SMOKE, "--workdir", str(workdir), flag])
  err = capsys.readouterr().err
  lines = [l for l in err.splitlines() if l.strip()]
  assert status == 2 and len(lines) == 1, err
  assert lines[0].startswith(f"error: --workdir: {str(workdir)!r} holds a run of another config: "), lines[0]
  assert names in lines[0]
  assert _snapshot(workdir) == before


def test_meta_train_job_refuses_another_config_before_compute(tmp_path, capsys, monkeypatch):
  from configs import dass_meta_train
  import jdanas.pipeline.check as check

  def forbidden(*args, **kwargs):
    raise AssertionError("data loaded for a workdir of another config")

  monkeypatch.setattr(check, "load_data", forbidden)  # what prepare_meta's load_data_optional calls
  monkeypatch.chdir(REPO)
  workdir = _recorded_workdir(tmp_path / "meta", dass_meta_train.get_config(), finished=False)
  before = _snapshot(workdir)
  status = run_cli.main(["run.py", "--config", "configs/dass_meta_train.py", "--workdir", str(workdir),
                         "--config.tasks.num_students=60"])
  err = capsys.readouterr().err
  assert status == 2 and err.startswith("error: --workdir: ") and "config.tasks.num_students was" in err, err
  assert _snapshot(workdir) == before


@pytest.mark.slow  # two short searches of the smoke config and one final phase
def test_resume_with_allowed_changes_then_the_finished_workdir_refuses_others(tmp_path, capsys, monkeypatch):
  """An interrupted smoke search (1 round) resumed with more rounds and another stall timeout: allowed,
  logged and listed in report.json; the first evaluation of each process says it compiles; the finished
  workdir then refuses another seed (untouched) and returns its report for a harmless change."""
  import jdanas.pipeline as pipeline
  from conftest import smoke_config
  workdir = tmp_path / "run"
  first = pipeline.search(smoke_config(**{"search.rounds": 1}), workdir)  # "interrupted" after round 1
  err = capsys.readouterr().err
  assert "[search] compiling the evaluator's program(s) (one per distinct network shape: " in err, err
  assert first.stats["evaluator_programs"] > 0 and first.stats["search_seconds"] > 0
  assert first.stats["search_seconds"] >= sum(first.stats["round_seconds"])
  report = pipeline.run(smoke_config(**{"search.rounds": 2, "compute.stall_timeout_s": 600.0}), workdir)
  err = capsys.readouterr().err
  changes = [{"field": "compute.stall_timeout_s", "was": 1800.0, "now": 600.0},
             {"field": "search.rounds", "was": 1, "now": 2}]
  assert ("[resume] config changes allowed (they cannot change the result): config.compute.stall_timeout_s "
          "1800.0 -> 600.0, config.search.rounds 1 -> 2") in err, err
  assert "[search] compiling the evaluator's program(s)" in err  # a new process compiles (or loads) again
  saved = json.loads((workdir / "report.json").read_text())
  assert saved["search"]["resume_config_changes"] == changes == report["search"]["resume_config_changes"]
  assert saved["search"]["resumed_from_round"] == 1 and saved["search"]["rounds"] == 2
  ledger = json.loads((workdir / "ledger.json").read_text())
  assert [r["round"] for r in ledger] == [0, 0, 1, 1]
  # cumulative over the resume: round 1's search_seconds adds its own time to round 0's
  assert ledger[2]["search_seconds"] >= ledger[0]["search_seconds"] + ledger[2]["round_seconds"]
  assert saved["search"]["search_seconds"] >= ledger[-1]["search_seconds"]
  assert "Search wall time (compilation included)" in (workdir / "report.md").read_text()

  # the finished workdir: another seed is refused before compute, nothing written
  monkeypatch.chdir(REPO)
  before = _snapshot(workdir)
  status = run_cli.main(["run.py", "--config", SMOKE, "--workdir", str(workdir), "--config.search.rounds=2",
                         "--config.compute.stall_timeout_s=600", "--config.seed=1"])
  err = capsys.readouterr().err
  assert status == 2 and err.startswith(f"error: --workdir: {str(workdir)!r} holds a run of another config: "
                                        "config.seed was 0, now 1"), err
  assert _snapshot(workdir) == before

  def forbidden(*args, **kwargs):
    raise AssertionError("a finished run was computed again")

  monkeypatch.setattr(pipeline, "search", forbidden)
  again = pipeline.run(smoke_config(**{"search.rounds": 2, "compute.stall_timeout_s": 900.0}), workdir)
  assert again["final"] == saved["final"]
  assert "config.compute.stall_timeout_s 600.0 -> 900.0" in capsys.readouterr().err
  assert _snapshot(workdir) == before


def test_a_workdir_of_a_config_written_before_its_defaults_were_spelled_out_still_resumes(tmp_path):
  """A config.json recorded before a field was written by the config (configs/common.py's base now spells
  out every declared default) resolves to the same values: absent == the declared default is no change;
  absent vs another value still is."""
  from configs.default import get_config
  from jdanas.pipeline.resume import ABSENT, check_resume, config_differences, config_json
  config = get_config("smoke")
  old = config_json(config)
  for section, field in (("teacher", "paths"), ("teacher", "ensemble"), ("final", "eval_batch_size"),
                         ("compute", "pop_chunk"), ("kd", "semantic_weight"), ("data", "classes"),
                         ("kd", "oracle_none_right")):
    del old[section][field]
  del old["evaluator"]["one_shot"]["bn"]  # an evaluator's declared field (jdanas.evaluators' sections)
  (tmp_path / "config.json").write_text(json.dumps(old))
  assert check_resume(config, tmp_path) == []
  config.final.eval_batch_size = 100
  assert config_differences(old, config_json(config)) == [("final.eval_batch_size", ABSENT, 100)]
  with pytest.raises(Exception, match="config.final.eval_batch_size was absent, now 100"):
    check_resume(config, tmp_path)
