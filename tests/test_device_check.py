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
    assert studies[name]["command"].startswith("python bench/") and study["budget_s"] > 0
