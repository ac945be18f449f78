"""The main job's figures in README.md come from docs/data/main_job.json, and a fresh run reproduces them
(bench/regenerate_docs.py writes both; see its docstring)."""
import importlib.util
import json
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("regenerate_docs", REPO / "bench" / "regenerate_docs.py")
regenerate_docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(regenerate_docs)


def _recorded() -> dict:
  return json.loads((REPO / "docs" / "data" / "main_job.json").read_text())


def test_readme_quotes_the_recorded_main_job():
  doc = _recorded()
  assert doc["provenance"]["commit"] and doc["provenance"]["commands"] == [
      "python run.py --config configs/default.py --workdir " + doc["provenance"]["commands"][0].split()[-1]]
  readme = (REPO / "README.md").read_text()
  assert regenerate_docs.readme_figures(readme) == regenerate_docs.readme_block(doc).split("\n")[1]
  assert regenerate_docs.check() == 0


def test_figures_text_follows_the_report():
  report = _recorded()["report"]
  text = regenerate_docs.main_job_figures(report)
  assert f"the exported run {100 * report['final']['kd']['test_accuracy']:.1f} %" in text
  assert f"({report['final']['params']:,} parameters)" in text
  seeds = report["final"]["seeds"]  # the default job states its gain over paired seeds
  assert f"{100 * seeds['kd_mean']:.1f} ± {100 * seeds['kd_se']:.1f} % with KD" in text
  assert f"KD better in {seeds['kd_wins']} of {seeds['n']}" in text
  changed = json.loads(json.dumps(report))
  changed["final"]["no_kd"]["test_accuracy"] -= 0.01
  assert regenerate_docs.main_job_figures(changed) != text
  del changed["final"]["seeds"]
  assert "% trained alone;" in regenerate_docs.main_job_figures(changed)


@pytest.mark.slow  # the whole main job, as a user runs it (~2.5 min on 2 cores)
def test_a_fresh_main_job_gives_the_recorded_figures(tmp_path):
  fresh = regenerate_docs.fresh_main_job(tmp_path, timeout=1500)
  recorded = _recorded()["report"]
  assert fresh["final"]["arch"] == recorded["final"]["arch"]
  assert regenerate_docs.main_job_figures(fresh) == regenerate_docs.main_job_figures(recorded), (
      "the main job's figures moved: run `python bench/regenerate_docs.py` and commit docs/data and README.md")
