"""Regenerates the figures README.md and docs/ quote from whole runs, so no quoted figure outlives the code.

Each run is ``run.py`` as a user starts it, in a fresh process with a fresh workdir and a clean
environment (no inherited ``XLA_FLAGS`` or compilation cache: ``run.py`` sets its own CPU flags), and
its ``report.json`` is written to ``docs/data/<run>.json`` with where it came from (commit, whether the
tree had uncommitted changes, date, machine, command, wall time)::

  python bench/regenerate_docs.py                        # the main job: docs/data/main_job.json,
                                                         # README's figures block, docs/img/main_job_pareto.png
  python bench/regenerate_docs.py --runs akd_runlocal,oracle_kd_runlocal,dass_runlocal   # ~16, 9, 24 min here
  python bench/regenerate_docs.py --check                # README's block vs docs/data/main_job.json (no run)
  python bench/regenerate_docs.py --readme               # README's block rewritten from the JSON (no run)

The README's main-job figures sit between ``<!-- main-job:begin -->`` and ``<!-- main-job:end -->`` and are
rendered by :func:`main_job_figures` from ``docs/data/main_job.json`` only; tests/test_docs_figures.py checks
the README against the JSON (fast) and a fresh run against the JSON (slow), so a change of behaviour that moves
the main job's figures fails until this script is run again and its output committed.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA = REPO / "docs" / "data"
BEGIN, END = "<!-- main-job:begin -->", "<!-- main-job:end -->"

# name -> steps, each (run.py arguments, with {w}/{prev} = this step's / the previous step's workdir)
RUNS = {
    "main_job": [["--config", "configs/default.py"]],
    "akd_runlocal": [["--config", "configs/akd_cifar10.py:runlocal"]],
    "oracle_kd_runlocal": [["--config", "configs/oracle_kd_cifar.py:runlocal"]],
    "dass_runlocal": [["--config", "configs/dass_meta_train.py:runlocal"],
                      ["--config", "configs/dass_search.py:runlocal",
                       "--config.evaluator.predictor.path={prev}/predictor"]],
}


def clean_env() -> dict:
  """The environment a user's shell gives ``run.py``: this process's, less what a test or bench harness
  adds (XLA flags such as a forced host device count, a shared compilation cache)."""
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_COMPILATION_CACHE_DIR")}
  env["PYTHONPATH"] = str(REPO)
  return env


def git_state() -> dict:
  def git(*args):
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()
  return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def run_steps(name: str, root: pathlib.Path, timeout: float | None = None,
              keep: bool = False) -> tuple[list[dict], list[str], float]:
  """Runs ``RUNS[name]`` under ``root``; returns each step's report (``report.json``, or a ``meta_train`` job's
  ``meta_report.json``), the commands and the total wall time. ``keep``: a workdir already there is kept, so a
  finished step with the same config returns its report without computing (run.py's rule; another config is
  refused), e.g. to finish a two-step run whose second step failed."""
  reports, commands, prev, t0 = [], [], None, time.perf_counter()
  for i, step in enumerate(RUNS[name]):
    workdir = root / f"{name}_{i}"
    if not keep:
      shutil.rmtree(workdir, ignore_errors=True)
    args = [a.format(w=workdir, prev=prev) for a in step] + ["--workdir", str(workdir)]
    commands.append("python run.py " + " ".join(args))
    print(f"[regenerate] {commands[-1]}", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "run.py", *args], cwd=REPO, env=clean_env(), check=True, timeout=timeout)
    report = workdir / "report.json" if (workdir / "report.json").exists() else workdir / "meta_report.json"
    reports.append(json.loads(report.read_text()))
    prev = workdir
  return reports, commands, time.perf_counter() - t0


def fresh_main_job(root: pathlib.Path, timeout: float | None = None) -> dict:
  """The report.json of a fresh main-job run under ``root`` (the slow test's comparison)."""
  return run_steps("main_job", root, timeout)[0][0]


def _pct(v: float, digits: int = 1) -> str:
  return f"{100 * v:.{digits}f}"


def main_job_figures(report: dict) -> str:
  """The main job's figures as README states them: a function of the report's deterministic fields only
  (no timings), so a fresh run on the same code must give the same text. With ``final.seeds`` the paired
  seeds lead (one pair of runs is noise here); the exported run follows."""
  f, t, s = report["final"], report["teacher"], report["search"]
  text = f"the teacher ({t['name']}) reaches {_pct(t['test_accuracy'])} % test accuracy; the chosen student " \
         f"({f['params']:,} parameters) "
  seeds = f.get("seeds")
  if seeds:
    lo, hi = seeds["gain_interval"]
    text += (f"{_pct(seeds['kd_mean'])} ± {_pct(seeds['kd_se'])} % with KD against "
             f"{_pct(seeds['no_kd_mean'])} ± {_pct(seeds['no_kd_se'])} % trained alone (mean ± s.e., "
             f"{seeds['n']} paired seeds), a KD gain of "
             f"{100 * seeds['gain_mean']:+.1f} ± {_pct(seeds['gain_se'])} points "
             f"({100 * seeds['confidence']:.0f} % interval {100 * lo:+.1f} to {100 * hi:+.1f}; KD better in "
             f"{seeds['kd_wins']} of {seeds['n']}); the exported run {_pct(f['kd']['test_accuracy'])} % "
             f"(its no-KD twin {_pct(f['no_kd']['test_accuracy'])} %)")
  else:
    text += f"{_pct(f['kd']['test_accuracy'])} % with KD against {_pct(f['no_kd']['test_accuracy'])} % trained alone"
  programs = s.get("evaluator_programs", s.get("num_compilations"))  # the key's name in older reports
  text += f"; {s['evaluations']} students evaluated"
  if programs:
    text += f" with {programs} compiled training program{'s' if programs != 1 else ''}"
  return text + "."


def readme_block(doc: dict) -> str:
  """The README block of ``docs/data/main_job.json``: the figures, then where and when they were measured."""
  p = doc["provenance"]
  minutes, seconds = divmod(round(p["wall_s"]), 60)
  return (f"{BEGIN}\nBy `bench/regenerate_docs.py` ({p['date']}, commit {p['commit'][:7]}, "
          f"{p['machine']}; [docs/benchmarks.md](docs/benchmarks.md#the-main-job)): "
          f"{main_job_figures(doc['report'])} Wall time {minutes} min {seconds:02d} s (load average "
          f"{p['load_average'][0]:.1f}).\n{END}")


def readme_figures(readme: str) -> str:
  """The text between the README's markers."""
  m = re.search(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), readme, re.S)
  if m is None:
    raise ValueError(f"README.md has no {BEGIN} ... {END} block")
  return m.group(1)


def _machine() -> str:
  return f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores"


def regenerate(name: str, root: pathlib.Path, keep: bool = False) -> dict:
  state = git_state()
  reports, commands, wall = run_steps(name, root, keep=keep)
  doc = {"provenance": {**state, "date": datetime.date.today().isoformat(), "machine": _machine(),
                        "commands": commands, "wall_s": round(wall, 1),
                        "load_average": [round(x, 2) for x in os.getloadavg()]},
         **({"report": reports[0]} if len(reports) == 1 else {"reports": reports})}
  if keep:  # some steps may have been finished earlier (another commit, another wall time)
    doc["provenance"]["kept_workdirs"] = True
  DATA.mkdir(parents=True, exist_ok=True)
  (DATA / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
  if name == "main_job":
    shutil.copyfile(root / "main_job_0" / "pareto.png", REPO / "docs" / "img" / "main_job_pareto.png")
    write_readme(doc)
  print(json.dumps({"run": name, "wall_s": doc["provenance"]["wall_s"], "commit": state["commit"][:7],
                    "dirty": state["dirty"]}), flush=True)
  return doc


def write_readme(doc: dict) -> None:
  """Rewrites README.md's main-job block from ``doc`` (docs/data/main_job.json)."""
  readme = (REPO / "README.md").read_text()
  if BEGIN not in readme:
    raise SystemExit(f"README.md has no {BEGIN} ... {END} block to rewrite")
  new = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: readme_block(doc), readme, flags=re.S)
  (REPO / "README.md").write_text(new)


def check() -> int:
  doc = json.loads((DATA / "main_job.json").read_text())
  want = readme_block(doc)
  have = f"{BEGIN}\n{readme_figures((REPO / 'README.md').read_text())}\n{END}"
  if want != have:
    print(f"README.md's main-job block differs from docs/data/main_job.json:\n  README: {have}\n  JSON:   {want}")
    return 1
  print("README.md's main-job figures match docs/data/main_job.json")
  return 0


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--runs", default="main_job", help=f"comma-separated, of: {', '.join(RUNS)}")
  ap.add_argument("--root", default="", help="where the workdirs go (default: a temporary folder, removed)")
  ap.add_argument("--keep", action="store_true", help="keep the workdirs already under --root (a finished step with "
                  "the same config is not run again); their wall time is not counted")
  ap.add_argument("--check", action="store_true", help="only compare README.md with docs/data/main_job.json")
  ap.add_argument("--readme", action="store_true", help="only rewrite README.md's block from docs/data/main_job.json")
  args = ap.parse_args(argv)
  if args.check:
    return check()
  if args.readme:
    write_readme(json.loads((DATA / "main_job.json").read_text()))
    return check()
  names = [n for n in args.runs.split(",") if n]
  unknown = [n for n in names if n not in RUNS]
  if unknown:
    ap.error(f"--runs: unknown run(s) {', '.join(unknown)}; choose from {', '.join(RUNS)}")
  with tempfile.TemporaryDirectory(prefix="jdanas_regen_") as tmp:
    root = pathlib.Path(args.root) if args.root else pathlib.Path(tmp)
    for name in names:
      regenerate(name, root, keep=args.keep)
  return 0


if __name__ == "__main__":
  sys.exit(main())
