"""End to end: the run.py pipeline on the embedded digits with a tiny config; bad configs."""
import json
import pathlib
import subprocess
import sys

import pytest

from configs import default
from jdanas.experiment import ConfigError, run, validate_config


def tiny_config():
  c = default.get_config()
  c.teacher.name = "resnet8"
  c.teacher.train.steps = 3
  c.teacher.train.batch_size = 32
  c.space.name = "s1_resnet"
  c.space.kwargs = dict(depth_choices=(1,), widths=(4, 8, 8), stem=4)
  c.population.size = 2
  c.student.steps = 2
  c.student.batch_size = 32
  return c


def test_pipeline_runs_and_caches_teacher(tmp_path, capsys):
  config = tiny_config()
  report = run(config, tmp_path)
  assert (tmp_path / "teacher" / "teacher.json").exists()
  saved = json.loads((tmp_path / "population.json").read_text())
  assert saved["students"] == report["students"]
  assert len(report["students"]) == 1  # the space has a single architecture: no duplicates
  assert report["students"][0]["arch"] == "111"
  assert report["students"][0]["params"] > 0 and report["students"][0]["flops"] > 0
  again = run(config, tmp_path)  # cached teacher, same seed: same result
  assert again["teacher"] == report["teacher"]
  assert again["students"] == report["students"]


@pytest.mark.parametrize("field, value, match", [
    ("mesh.pop", 3, "config.mesh"),
    ("data.name", "", "config.data.name"),
    ("data.val_fraction", 1.5, "config.data.val_fraction"),
    ("teacher.name", "resnet9000", "config.teacher.name"),
    ("teacher.path", "/nonexistent", "config.teacher.path"),
    ("teacher.train.steps", 0, "config.teacher.train.steps"),
    ("teacher.train.optimizer", "lbfgs", "config.teacher.train.optimizer"),
    ("space.name", "darts", "config.space.name"),
    ("population.size", 0, "config.population.size"),
    ("population.strategy", "pmap", "config.population.strategy"),
    ("student.loss", "fitnet", "config.student.loss"),
    ("student.temperature", -1.0, "config.student.temperature"),
    ("student.learning_rate", 0.0, "config.student.learning_rate"),
    ("student.schedule", "step", "config.student.schedule"),
    ("student.batch_size", -4, "config.student.batch_size"),
])
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


def test_bad_space_kwargs_and_npz_path():
  c = default.get_config()
  c.space.kwargs = dict(channels=16, num_cells=1, edge_impl="magic")
  with pytest.raises(ConfigError, match="config.space.kwargs"):
    validate_config(c)
  c = default.get_config()
  c.data.name = "npz"
  c.data.path = "/nonexistent/file.npz"
  with pytest.raises(ConfigError, match="config.data.path"):
    validate_config(c)


def test_run_py_exits_2_with_one_line_error(tmp_path):
  proc = subprocess.run([sys.executable, "run.py", "--config", "configs/default.py", "--workdir", str(tmp_path),
                         "--config.population.strategy=pmap"], capture_output=True, text=True, timeout=120,
                        cwd=pathlib.Path(__file__).resolve().parents[1])
  assert proc.returncode == 2
  assert "config.population.strategy" in proc.stderr
  assert "Traceback" not in proc.stderr
