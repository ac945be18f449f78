"""End to end: the run.py pipeline on the embedded digits with a tiny config; resume; bad configs."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from configs import default
from conftest import ledger_rows, sigkill_after_first_round, smoke_config as tiny_config
from jdanas import load_student
from jdanas import pipeline
from jdanas.pipeline import ConfigError, run, validate_config

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("full")
  searched = pipeline.search(tiny_config(), workdir)  # the steps a notebook calls one by one
  return workdir, pipeline.report(searched, pipeline.train_final(searched))


def test_pipeline_writes_report_plots_and_reloadable_export(uninterrupted):
  workdir, report = uninterrupted
  for name in ("report.json", "report.md", "search.png", "pareto.png", "metrics.jsonl", "ledger.json"):
    assert (workdir / name).exists(), name
  assert list((workdir / "tb").iterdir()), "TensorBoard event file"
  assert report["search"]["evaluations"] == 6
  ledger = ledger_rows(workdir)
  assert [r["index"] for r in ledger] == list(range(6))
  assert len({r["arch"] for r in ledger}) == 6  # deduplicated proposals
  student = load_student(workdir / report["export"])
  assert student.arch == report["final"]["arch"]
  saved = json.loads((workdir / "report.json").read_text())
  assert saved["final"]["arch"] == report["final"]["arch"]
  assert len(saved["top"]) == 2
  assert all(r["latency_ms"] > 0 and r["params"] > 0 and r["flops"] > 0 for r in saved["top"])
  rows = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["round"] for r in rows] == [0, 1, 2]
  # What the search score is, in the ledger, report.json and report.md.
  assert {r["score_kind"] for r in ledger} == {"val_accuracy"}
  assert saved["search"]["score"] == {"kind": "val_accuracy", "units": "fraction in [0, 1]", "higher_is_better": True,
                                      "label": "val_accuracy (fraction in [0, 1], higher is better)"}
  assert "| Search score | val_accuracy (fraction in [0, 1], higher is better) |" in (workdir / "report.md").read_text()
  assert all(0 <= r["search_score"] <= 1 for r in saved["top"])



def test_a_finished_workdir_redraws_from_its_json_alone(uninterrupted, tmp_path):
  """``python -m jdanas.report``'s render() on a real run's report.json + ledger.json (copied, nothing else):
  the same report.md the run wrote, both plots, the final-choice panel."""
  import shutil
  from jdanas import report as report_lib
  workdir, _ = uninterrupted
  copy = tmp_path / "copy"
  copy.mkdir()
  for name in ("report.json", "ledger.json"):
    shutil.copy(workdir / name, copy / name)
  paths = report_lib.render(copy)
  assert paths["markdown"].read_text() == (workdir / "report.md").read_text()
  for key in ("search", "pareto"):
    assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  saved = json.loads((copy / "report.json").read_text())
  fig = report_lib.pareto_figure(json.loads((copy / "ledger.json").read_text()), saved["final"]["arch"],
                                 report=saved)
  assert len(fig.axes) == 2 and "Chosen by final KD validation accuracy" in fig.axes[1].get_title()

def test_a_finished_workdir_is_recognised(uninterrupted, monkeypatch, capsys):
  workdir, report = uninterrupted

  def forbidden(*args, **kwargs):
    raise AssertionError("a finished run was computed again")

  monkeypatch.setattr(pipeline, "search", forbidden)
  again = run(tiny_config(), workdir)
  out = capsys.readouterr()
  assert "already holds the finished run of this config" in out.err
  assert "evaluator program" in out.out
  assert again["final"] == json.loads((workdir / "report.json").read_text())["final"]
  assert again["space"] == "s1_resnet" and again["config"]["space"]["name"] == "s1_resnet"
  assert json.loads((workdir / "config.json").read_text())["search"]["rounds"] == 3


def test_a_bad_config_fails_before_any_work(tmp_path):
  with pytest.raises(ConfigError, match="^config.compute.lowering: "):
    pipeline.search(tiny_config(**{"compute.lowering": "tpu"}), tmp_path / "run")
  assert not (tmp_path / "run").exists()


@pytest.mark.slow  # ~18 s
def test_resume_after_interruption_gives_identical_ledger(uninterrupted, tmp_path):
  full_dir, full = uninterrupted
  # "interrupted" after 2 of 3 rounds: a search of 2 rounds, continued to 3 (more rounds on an unfinished
  # search are an allowed config change: the ledger equals the uninterrupted 3-round one)
  pipeline.search(tiny_config(**{"search.rounds": 2}), tmp_path)
  resumed = run(tiny_config(), tmp_path)
  assert resumed["search"]["resumed_from_round"] == 2
  assert resumed["search"]["resume_config_changes"] == [{"field": "search.rounds", "was": 2, "now": 3}]
  assert ledger_rows(tmp_path) == ledger_rows(full_dir)
  assert resumed["final"] == full["final"]


@pytest.mark.slow  # ~18 s
def test_corrupt_latest_checkpoint_falls_back(uninterrupted, tmp_path, capsys):
  full_dir, _ = uninterrupted
  pipeline.search(tiny_config(**{"search.rounds": 2}), tmp_path)
  for f in (tmp_path / "checkpoints" / "2").rglob("*"):
    if f.is_file():
      f.write_bytes(b"truncated")
  run(tiny_config(), tmp_path)
  assert "checkpoint of round 2 is unreadable" in capsys.readouterr().err
  assert ledger_rows(tmp_path) == ledger_rows(full_dir)


def _cli(workdir, *extra):
  return [sys.executable, "run.py", "--config", "configs/default.py:smoke", "--workdir", str(workdir), *extra]


@pytest.mark.slow  # ~21 s; the pipeline's resume is also exercised by tests/test_resume.py (slow)
def test_sigkill_mid_run_then_resume(uninterrupted, tmp_path):
  full_dir, _ = uninterrupted
  env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS="1", PYTHONUNBUFFERED="1")
  sigkill_after_first_round(_cli(tmp_path), tmp_path, cwd=REPO, env=env)
  done = subprocess.run(_cli(tmp_path), cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "[resume] continuing after round" in done.stderr
  ledger = ledger_rows(tmp_path)
  assert [r["index"] for r in ledger] == list(range(len(ledger)))  # no duplicate, no gap
  assert ledger == ledger_rows(full_dir)


BAD = [
    ("data.name", "", "config.data.name"),
    ("data.val_fraction", 1.5, "config.data.val_fraction"),
    ("teacher.name", "resnet9000", "config.teacher.name"),
    ("teacher.path", "/nonexistent", "config.teacher.path"),
    ("teacher.train.steps", 0, "config.teacher.train.steps"),
    ("teacher.train.optimizer", "lbfgs", "config.teacher.train.optimizer"),
    ("space.name", "darts", "config.space.name"),
    ("searcher.name", "bohb", "config.searcher.name"),
    ("evaluator.name", "oracle", "config.evaluator.name"),
    ("compute.strategy", "pmap", "config.compute.strategy"),
    ("compute.specialize", "yes", "config.compute.specialize: must be True, False or 'auto'"),
    ("compute.lowering", "gpu", "config.compute.lowering: 'gpu' is not one of auto, xla, cpu"),
    ("kd.loss", "ce", "config.kd.loss"),
    ("kd.loss", "fitnet", "config.kd.loss"),
    ("kd.temperature", -1.0, "config.kd.temperature"),
    ("evaluator.short_kd.learning_rate", 0.0, "config.evaluator.short_kd.learning_rate"),
    ("evaluator.short_kd.schedule", "step", "config.evaluator.short_kd.schedule"),
    ("evaluator.short_kd.batch_size", -4, "config.evaluator.short_kd.batch_size"),
    ("final.steps", 0, "config.final.steps"),
    ("final.weight_decay", -1.0, "config.final.weight_decay"),
    ("search.rounds", 0, "config.search.rounds"),
    ("search.top_k", 0, "config.search.top_k"),
    ("constraint.max_params", -5, "config.constraint.max_params"),
    ("compute.mesh.pop", 3, "config.compute.mesh"),
]


@pytest.mark.parametrize("field, value, match", BAD)
def test_bad_configs_name_the_field(field, value, match):
  c = default.get_config()
  node = c
  *parents, leaf = field.split(".")
  for p in parents:
    node = node[p]
  node[leaf] = value
  with pytest.raises(ConfigError, match=match) as err:
    validate_config(c)
  assert "\n" not in str(err.value)


def test_bad_nested_values():
  cases = [
      ({"space": {"kwargs": dict(channels=16, num_cells=1, edge_impl="magic")}}, "config.space.kwargs"),
      ({"searcher": {"kwargs": dict(num_asks=0)}}, "config.searcher.kwargs"),
      ({"data": {"name": "npz", "path": "/nonexistent/file.npz"}}, "config.data.path"),
      ({"evaluator": {"name": "tabular"}, "evaluator.tabular": {"table": "/nonexistent.csv"}},
       "config.evaluator.tabular.table: NB201 table file '/nonexistent.csv' does not exist"),
      ({"evaluator": {"name": "zero_cost"}}, "config.evaluator.zero_cost: section is missing"),
      ({"evaluator.short_kd": {"momentum": 0.5}}, r"config.evaluator.short_kd: unknown field\(s\) \['momentum'\]"),
  ]
  for change, match in cases:
    c = default.get_config()
    for section, values in change.items():
      node = c
      for p in section.split("."):
        node = node[p]
      for k, v in values.items():
        node[k] = v
    with pytest.raises(ConfigError, match=match):
      validate_config(c)


def test_run_py_exits_2_with_one_line_error(tmp_path):
  proc = subprocess.run([sys.executable, "run.py", "--config", "configs/default.py", "--workdir", str(tmp_path),
                         "--config.compute.strategy=pmap"], capture_output=True, text=True, timeout=120, cwd=REPO)
  assert proc.returncode == 2
  assert "config.compute.strategy" in proc.stderr
  assert "Traceback" not in proc.stderr
