"""bench/device_check.py: the one-command device measurement runs end to end (tiny sizes on CPU)
and writes JSON lines for every section, with a closing line per section."""
import contextlib
import io
import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))


@pytest.mark.slow
def test_device_check_quick_writes_json_lines_for_each_section():
  env = dict(os.environ, PYTHONPATH=str(REPO))
  env.pop("XLA_FLAGS", None)  # one device, as on a CI runner
  proc = subprocess.run([sys.executable, "bench/device_check.py", "--quick", "--tiny"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=3600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  lines = [json.loads(l) for l in proc.stdout.splitlines()]
  assert lines[0]["machine"] and lines[0]["backend"] == "cpu"
  closing = {l["section"]: l for l in lines if "timed_out" in l}
  assert set(closing) == {"population_nb201", "population_s1", "scoring", "default_run", "vs_pytorch"}
  assert not any(c["timed_out"] for c in closing.values())
  rows = [l for l in lines[1:] if "timed_out" not in l]
  assert {(r["strategy"], r["P"]) for r in rows if r["section"] == "population_nb201" and "strategy" in r} == {
      ("loop", 1), ("loop", 2), ("auto", 1), ("auto", 2)}
  assert all(r["examples_per_s"] > 0 for r in rows if "examples_per_s" in r)
  assert any(r["section"] == "scoring" and r["proxy"] == "synflow" for r in rows)
  (run,) = [r for r in rows if r["section"] == "default_run"]
  assert run["returncode"] == 0 and run["wall_s"] > 0 and run["evaluations"] == 2


def test_the_plan_lists_every_section_and_study_with_a_runnable_script():
  """``--plan`` prints what a lent accelerator runs (nothing is run): every section and every full-size study,
  each study's script present in the repository."""
  import device_check
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    assert device_check.main(["--plan"]) == 0
  lines = [json.loads(line) for line in out.getvalue().splitlines()]
  assert [l["section"] for l in lines if "section" in l] == list(device_check.SECTIONS)
  studies = {l["study"]: l for l in lines if "study" in l}
  assert set(studies) == set(device_check.STUDIES) and studies
  for name, study in device_check.STUDIES.items():
    assert (REPO / study["argv"][0]).is_file(), name
    assert studies[name]["command"].startswith(("python bench/", "python run.py")) and study["budget_s"] > 0


def test_pack_data_writes_what_each_study_reads_for_the_device_carry(tmp_path, monkeypatch):
  """``--pack-data``: the files a study declares, x and y only, cut to the rows it reads; the plan says how to carry
  them and the study's command reads them through JDANAS_DATA_DIR."""
  import numpy as np

  import device_check
  src = tmp_path / "shared"
  src.mkdir()
  rng = np.random.default_rng(0)
  for name, n in (("cifar10_train_subset.npz", 30), ("cifar10_test.npz", 2500)):
    np.savez(src / name, x=rng.integers(0, 255, (n, 4, 4, 3), dtype=np.uint8), y=np.arange(n) % 10,
             class_names=np.array(["a"] * 10))
  monkeypatch.setenv("JDANAS_DATA_DIR", str(src))
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    assert device_check.main(["--pack-data", str(tmp_path / "packed"), "--studies", "oracle_kd_losses"]) == 0
  lines = [json.loads(line) for line in out.getvalue().splitlines()]
  assert {l["packed"]: l["rows"] for l in lines if "packed" in l} == {"cifar10_train_subset.npz": 30,
                                                                      "cifar10_test.npz": 2000}
  with np.load(tmp_path / "packed" / "cifar10_test.npz") as d, np.load(src / "cifar10_test.npz") as full:
    assert sorted(d.keys()) == ["x", "y"] and (d["x"] == full["x"][:2000]).all() and (d["y"] == full["y"][:2000]).all()
  (tmp_path / "shared" / "cifar10_test.npz").unlink()
  with pytest.raises(SystemExit, match="cifar10_test.npz"):
    device_check.main(["--pack-data", str(tmp_path / "again"), "--studies", "oracle_kd_losses"])
  plan = io.StringIO()
  with contextlib.redirect_stdout(plan):
    device_check.main(["--plan"])
  for line in map(json.loads, plan.getvalue().splitlines()):
    if "study" in line and line["data"]:
      assert line["device"]["carry"] == [device_check.DEVICE_DATA]
      assert line["device"]["command"].startswith(f"JDANAS_DATA_DIR={device_check.DEVICE_DATA} ")


def test_a_pipeline_study_reports_its_run_and_copies_the_report_to_out(tmp_path, monkeypatch):
  """A study that runs run.py (``"workdir": True``) gets a workdir; its report's summary is one JSON line and
  report.json / report.md go to $OUT (what the device tool returns)."""
  import device_check
  assert any(s.get("workdir") for s in device_check.STUDIES.values())
  work = tmp_path / "run"
  work.mkdir()
  (work / "report.json").write_text(json.dumps({"teacher": {"name": "ensemble"}, "final": {"test_accuracy": 0.5},
                                                "top": [{"arch": "a"}], "search": {"evaluations": 3, "ledger": [1]}}))
  (work / "report.md").write_text("# report\n")
  monkeypatch.setenv("OUT", str(tmp_path / "out"))
  (tmp_path / "out").mkdir()
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    device_check._study_report("oracle_kd_gpu", work)
    device_check._study_report("missing", tmp_path / "nothing")
  first, second = map(json.loads, out.getvalue().splitlines())
  assert first["report"]["final"] == {"test_accuracy": 0.5} and first["search"] == {"evaluations": 3}
  assert second["report"] is None
  assert (tmp_path / "out" / "oracle_kd_gpu_report.json").is_file()
  assert (tmp_path / "out" / "oracle_kd_gpu_report.md").read_text() == "# report\n"
