"""The device check: ONE command that measures what a lent accelerator is good for (issue 22 §3).

Commands (from the repository root)::

  python bench/device_check.py                 # on a GPU/TPU: <= 8 min, JSON lines on stdout
  python bench/device_check.py --quick         # any machine (CI runs it on CPU): tiny sizes
  python bench/device_check.py --sections scoring default_run --budget-s 300
  python bench/device_check.py --plan                   # the sections and the full-size studies, not run
  python bench/device_check.py --studies oracle_kd_losses   # a study of the plan (STUDIES) at full size
  python bench/device_check.py --pack-data .devdata --studies oracle_kd_losses   # its data, for the device's carry

Sections (each runs in its own subprocess under a time limit, so one slow section cannot take the
others' time; its JSON lines are passed through with ``"section"`` added, then one line
``{"section": ..., "seconds", "timed_out", "returncode", "peak_bytes_in_use"}``):

* ``population_nb201``: :mod:`bench.population` strategies ``loop / unroll / vmap / auto`` on
  full-size masked NB201 cells (C=16, N=5 cells per stage, 32x32x3, batch 128, KD step, Adam) at
  P in {1, 8, 32, 128}: ``examples_per_s`` and ``compile_s`` per (strategy, P); vmapped groups run
  as chunks of :data:`POP_CHUNK` students through one compiled program (``--pop-chunk``; the
  teacher once per batch for every chunk), so P=128 needs one chunk's activation memory;
* ``population_s1``: the same for DisWOT S1 ResNets (widths 16/32/64, stem 16, depths {1,3,5,7}:
  64 architectures, so P stops at 64);
* ``scoring``: :mod:`bench.score_throughput` for DisWOT and SynFlow on 1,000 full-size cells
  (batched masked program vs one program per cell);
* ``default_run``: the wall time of ``python run.py --config configs/default.py`` (``--quick``:
  its ``smoke`` variant with one round) in a temporary workdir;
* ``vs_pytorch``: :mod:`bench.vs_pytorch` when torch is importable (skipped with a line saying so
  otherwise).

Peak device memory is ``jax.devices()[0].memory_stats()["peak_bytes_in_use"]`` of the section's
process, where the backend reports it (GPU/TPU; None on CPU). The first line describes the machine
(backend, device kind, device count, jax version). Budgets (seconds, full mode): population_nb201
140, population_s1 60, scoring 60, default_run 130, vs_pytorch 80 (470 s in all); ``--budget-s``
scales them (``--quick`` multiplies them by 4: CPUs are slower). A section that runs out of time is
killed; the lines it printed are kept (a population bench prints each P when all its strategies are
done, so a timed-out section still reports the smaller P). Exit status: 1 when a section failed,
or (full mode) ran out of time; with ``--quick`` a timeout alone (a slow machine) is not a failure.
Measured with ``--quick --tiny`` on the shared 2-core development CPU (load ~15): 233 s for
population_nb201, 158 s for scoring, 76 s for population_s1, 127 s for default_run. Results of a lent GPU go to docs/benchmarks.md with the card's name.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
SECTIONS = ("population_nb201", "population_s1", "scoring", "default_run", "vs_pytorch")
BUDGET_S = {"population_nb201": 140, "population_s1": 60, "scoring": 60, "default_run": 130, "vs_pytorch": 80}
NB201_FULL = {"channels": 16, "num_cells": 5}
# Students per call of a vmapped group (PopulationTrainer(pop_chunk=...)): P = 32 and 128 masked
# full-size NB201 students at batch 128 do not fit one accelerator's memory in one vmapped program
# (every op of every edge keeps its activations), so the populations run as chunks of this many.
POP_CHUNK = 8
S1_FULL = {"widths": [16, 32, 64], "stem": 16, "depth_choices": [1, 3, 5, 7]}

# The lent machine reaches nothing outside it and receives the working tree plus carried folders (64 MiB in all), not
# ../shared: ``--pack-data`` writes the files the chosen studies read (``"data"``: file -> rows the study reads, None =
# all) to this ignored folder, compressed, x and y only; the study then runs with JDANAS_DATA_DIR pointing there.
# The CIFAR-10 studies' files pack to 59.7 MB (the 20,000-image subset 54.3 MB, 2,000 test images 5.4 MB), which with
# the ~2.6 MB tree fits the carry; the full test set would not.
DEVICE_DATA = ".devdata"

# The plan: the full-size run of each study that is sized down on the development CPU, ready for the first lent
# accelerator (``--studies NAME``; ``--plan`` prints them). Each runs as its own process under its time limit, its
# JSON lines passed through with ``"study"`` added, and goes to docs/benchmarks.md with the card's name.
STUDIES = {
    # Issue 30 §1 at full resolution: CIFAR-10 32x32, the shared 20,000-image subset, ResNet-32 members (the
    # paper's member size) at two fit levels, a ResNet-8 student for 4,000 steps, 4 paired seeds. The CPU run
    # (docs/methods/oracle_kd.md, "The loss study") is the same script at 16x16, 2,000 images.
    "oracle_kd_losses": {
        "argv": ["bench/oracle_kd.py", "--part", "losses", "--member", "resnet32", "--student", "resnet8",
                 "--members", "3", "--seeds", "4", "--train-limit", "20000", "--student-steps", "4000",
                 "--fit-steps", "2000,8000"],
        "budget_s": 540,
        "data": {"cifar10_train_subset.npz": None, "cifar10_test.npz": 2000},
        "what": "CE / averaged KD / L_OD / L_OD with the averaged fallback at two member-fit levels"},
    # Issue 30 §2 at full resolution: one-shot scores (both BatchNorm modes) vs the same KDAS children trained alone
    # with L_OD, on a ResNet-20 backbone with an add-on after every stage (a uniform sample of 32 children), members
    # that fit. The CPU run is the same script at 16x16, 2,000 images, ResNet-8 backbones. Sizes are a first guess
    # for one GPU: the first lent accelerator's timings set them.
    "oracle_kd_fidelity": {
        "argv": ["bench/oracle_kd.py", "--part", "fidelity", "--member", "resnet32", "--members", "3",
                 "--member-steps", "6000", "--train-limit", "20000", "--student-steps", "2000", "--seeds", "2",
                 "--rounds", "50", "--steps-per-round", "40", "--search-backbone", "resnet20", "--search-depths",
                 "3,3,3", "--search-positions", "1,2,3", "--children", "32"],
        "budget_s": 540,
        "data": {"cifar10_train_subset.npz": None, "cifar10_test.npz": 2000},
        "what": "Kendall tau of one-shot child scores (running / batch BatchNorm) vs stand-alone L_OD accuracy"},
    # Issue 29 §3 at full size: AKD's pilot (does the best student depend on the teacher?) with full-size NB201
    # cells at 32x32, every training image, two teacher families, 24 students, 3 seeds. Step counts are a first guess.
    "akd_pilot": {
        "argv": ["bench/akd.py", "--part", "pilot", "--ce", "--space", "nb201_masked", "--space-kwargs",
                 json.dumps({"channels": 16, "num_cells": 5}), "--image-size", "0", "--train-limit", "0",
                 "--val-size", "5000", "--test-limit", "2000", "--teachers", "resnet20:6000,vgg8:4000",
                 "--teacher-batch-size", "128", "--student-steps", "3000", "--batch-size", "128", "--students", "24",
                 "--seeds", "3", "--strategy", "vmap"],
        "budget_s": 540,
        "data": {"cifar10_train_subset.npz": None, "cifar10_test.npz": 2000},
        "what": "Kendall tau between the KD rankings of two teachers, with bootstrap intervals and the seed noise"},
    # Issue 31 at accelerator size: DaSS's meta-dataset (8 meta-train, 2 meta-val, 3 held-out tasks of unseen classes;
    # teachers of two architectures; 50 students a task vmapped in one program, labels the best over evaluations,
    # val/held-out students trained twice for their reliability) at 32x32, then the predictor study with its
    # learnability check: `--size gpu` of bench/dass.py, whose schedule is a first guess for one GPU.
    "dass_study": {
        "argv": ["bench/dass.py", "--size", "gpu", "--workdir", "/tmp/jdanas_dass_gpu"],
        "budget_s": 540,
        "data": {"cifar10_train_subset.npz": None, "cifar10_test.npz": 2000},
        "what": "DaSS vs params/FLOPs/SynFlow/DisWOT/plain predictor on held-out tasks, learnability, label reliability"},
    # Issue 33 at accelerator size: the seven common-space arms (configs/compare/nb201.py:gpu: full-width NB201 cells
    # at 32x32, a 6,000-step ResNet-20 teacher, 64 scored candidates an arm) and the same final KD recipe for every
    # pick, 3 seeds. Each finished arm prints its line, so a run cut by the budget still reports the arms it finished.
    "compare_gpu": {
        "argv": ["bench/compare_methods.py", "--config", "configs/compare/nb201.py:gpu", "--workdir",
                 "/tmp/jdanas_compare_gpu"],
        "budget_s": 540,
        "data": {"cifar10_train_subset.npz": None, "cifar10_test.npz": 2000},
        "what": "final KD accuracy of each arm's pick (mean +- s.e.), search evaluations and wall time, one table"},
    # Issue 30 §3: the Oracle-KD pipeline end to end at the paper's networks (configs/oracle_kd_cifar.py:gpu: 3 x
    # ResNet-32 members, the ResNet-32 KDAS backbone with three add-ons, derive step) on the CIFAR-10 files a lent
    # machine can receive (the variant's CIFAR-100 comes from TFDS, which an offline machine cannot download).
    "oracle_kd_gpu": {
        "argv": ["run.py", "--config", "configs/oracle_kd_cifar.py:gpu", "--config.data.name=npz",
                 f"--config.data.data_dir={DEVICE_DATA}", "--config.data.path=cifar10_train_subset.npz",
                 "--config.data.test_path=cifar10_test.npz", "--config.evaluator.one_shot.val_examples=2000"],
        "workdir": True,
        "budget_s": 540,
        "data": {"cifar10_train_subset.npz": None, "cifar10_test.npz": 2000},
        "what": "ensemble teacher, KDAS one-shot search with L_OD and the derive step, final L_OD training, report"},
}


def section_argv(section: str, quick: bool, tiny: bool) -> list[str] | None:
  """The arguments of the bench module a section runs (None: the section runs its own code)."""
  if section == "population_nb201":
    if quick:  # P=2 in chunks of 1: the chunked path through one program (vmap; not in --tiny)
      return ["--quick", "--spaces", "nb201_masked", "--P", "1", "2", "--rounds", "1", "--pop-chunk", "1"] + (
          ["--strategies", "loop", "auto"] if tiny else [])
    return ["--spaces", "nb201_masked", "--P", "1", "8", "32", "128", "--rounds", "2", "--pop-chunk", str(POP_CHUNK),
            "--space-kwargs", json.dumps({"nb201_masked": NB201_FULL})]
  if section == "population_s1":
    if quick:
      return ["--quick", "--spaces", "s1_resnet", "--P", "1", "2", "--rounds", "1", "--pop-chunk", "1"] + (
          ["--strategies", "loop"] if tiny else [])
    return ["--spaces", "s1_resnet", "--P", "1", "8", "32", "64", "--rounds", "2", "--pop-chunk", str(POP_CHUNK),
            "--space-kwargs", json.dumps({"s1_resnet": S1_FULL})]
  if section == "scoring":
    if quick:
      return ["--quick", "--cells", "2" if tiny else "6", "--per-cell", "1"] + (
          ["--proxies", "synflow"] if tiny else [])
    return ["--cells", "1000", "--per-cell", "20", "--proxies", "diswot,synflow"]
  if section == "vs_pytorch":
    return (["--quick"] + (["--students", "2", "--steps", "1", "--rounds", "1"] if tiny else [])) if quick else \
        ["--rounds", "3"]
  return None


def pack_data(names, out_dir: pathlib.Path, data_dir: pathlib.Path) -> list[dict]:
  """Writes the data files the studies ``names`` read to ``out_dir``: ``x`` and ``y`` of each (np.savez_compressed),
  cut to the first ``rows`` rows where the study reads no more (a test split read with ``test_limit``; any subset
  of that size serves the study as well). One dict per file: name, rows, megabytes."""
  import numpy as np
  rows: dict[str, int | None] = {}
  for name in names:
    for file, n in STUDIES[name].get("data", {}).items():
      rows[file] = None if (file in rows and rows[file] is None) or n is None else max(rows.get(file) or 0, n)
  missing = [f for f in rows if not (data_dir / f).is_file()]
  if missing:
    raise SystemExit(f"--pack-data: {missing} not found in {data_dir} (set JDANAS_DATA_DIR)")
  out_dir.mkdir(parents=True, exist_ok=True)
  written = []
  for file, n in rows.items():
    with np.load(data_dir / file) as d:
      x, y = d["x"][:n], d["y"][:n]
    np.savez_compressed(out_dir / file, x=x, y=y)
    written.append({"packed": file, "rows": int(len(y)), "megabytes": round((out_dir / file).stat().st_size / 2**20, 1)})
  return written


def _study_report(name: str, workdir: pathlib.Path) -> None:
  """One JSON line with the pipeline report's teacher, search summary and top students (``report.json`` of
  ``workdir``), and its report.json / report.md copied to ``$OUT`` when that is set (the device tool returns
  what is there)."""
  report = workdir / "report.json"
  if not report.is_file():
    print(json.dumps({"study": name, "report": None, "workdir": str(workdir)}), flush=True)
    return
  r = json.loads(report.read_text())
  print(json.dumps({"study": name, "report": {k: r.get(k) for k in ("teacher", "final", "top", "baselines", "seconds")},
                    "search": {k: v for k, v in (r.get("search") or {}).items() if not isinstance(v, list)}}), flush=True)
  out = os.environ.get("OUT")
  if out:
    for f in ("report.json", "report.md"):
      if (workdir / f).is_file():
        (pathlib.Path(out) / f"{name}_{f}").write_bytes((workdir / f).read_bytes())


def _peak_bytes():
  import jax
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get("peak_bytes_in_use")


def run_section(section: str, quick: bool, tiny: bool) -> None:
  """Runs one section in this process (the child of :func:`main`); JSON lines on stdout."""
  sys.path.insert(0, str(REPO / "bench"))
  if section == "vs_pytorch":
    try:
      import torch  # noqa: F401
    except ImportError:
      print(json.dumps({"skipped": "torch is not installed (pip install -e '.[bench]')"}), flush=True)
      return
  argv = section_argv(section, quick, tiny)
  if section.startswith("population"):
    import population
    population.main(argv)
  elif section == "scoring":
    import score_throughput
    score_throughput.main(argv)
  elif section == "vs_pytorch":
    import vs_pytorch
    vs_pytorch.main(argv)
  elif section == "default_run":
    config = "configs/default.py:smoke" if quick else "configs/default.py"
    extra = ["--config.search.rounds=1", "--config.search.top_k=1"] if quick else []
    with tempfile.TemporaryDirectory(prefix="jdanas_device_check_") as workdir:
      env = dict(os.environ, PYTHONPATH=str(REPO), JAX_COMPILATION_CACHE_DIR=str(pathlib.Path(workdir) / "cache"))
      t0 = time.perf_counter()
      proc = subprocess.run([sys.executable, "run.py", "--config", config, "--workdir", str(pathlib.Path(workdir) / "run"),
                             *extra], cwd=REPO, env=env, capture_output=True, text=True)
      wall = time.perf_counter() - t0
      report = pathlib.Path(workdir) / "run" / "report.json"
      out = json.loads(report.read_text()) if report.exists() else {}
      print(json.dumps({"config": config, "overrides": extra, "wall_s": round(wall, 2), "returncode": proc.returncode,
                        "search_seconds": out.get("search", {}).get("search_seconds"),
                        "evaluations": out.get("search", {}).get("evaluations"),
                        "evaluator_programs": out.get("search", {}).get("evaluator_programs"),
                        "error": proc.stderr.strip().splitlines()[-1] if proc.returncode else None}), flush=True)
  else:
    raise SystemExit(f"unknown section {section!r}")
  print(json.dumps({"peak_bytes_in_use": _peak_bytes()}), flush=True)


def _machine() -> dict:
  import jax
  d = jax.devices()[0]
  return {"machine": True, "backend": jax.default_backend(), "device_kind": d.device_kind,
          "device_count": jax.device_count(), "jax": jax.__version__, "cpu_count": os.cpu_count(),
          "load": os.getloadavg()}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--quick", action="store_true", help="tiny sizes: finishes on a CPU")
  p.add_argument("--tiny", action="store_true", help="with --quick: even smaller (the test suite's run)")
  p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
  p.add_argument("--budget-s", type=float, default=sum(BUDGET_S.values()),
                 help="total seconds; each section gets its share of the default budgets")
  p.add_argument("--studies", nargs="+", choices=sorted(STUDIES),
                 help="run these full-size studies of the plan (instead of the sections)")
  p.add_argument("--plan", action="store_true", help="print the sections and the studies (commands, limits); run nothing")
  p.add_argument("--pack-data", metavar="DIR", nargs="?", const=DEVICE_DATA,
                 help=f"write the data files of --studies (default: every study) to DIR (default {DEVICE_DATA}, "
                      "ignored by git) for the device tool's carry; run nothing")
  p.add_argument("--section", choices=SECTIONS, help=argparse.SUPPRESS)  # child mode
  args = p.parse_args(argv)
  if args.tiny and not args.quick:
    p.error("--tiny needs --quick")
  if args.section:
    run_section(args.section, args.quick, args.tiny)
    return 0
  if args.pack_data:
    from jdanas.data import shared_data_dir
    out = pathlib.Path(args.pack_data)
    written = pack_data(args.studies or list(STUDIES), out if out.is_absolute() else REPO / out, shared_data_dir())
    for line in written:
      print(json.dumps(line))
    print(json.dumps({"packed_megabytes": round(sum(w["megabytes"] for w in written), 1), "folder": args.pack_data}))
    return 0
  scale = args.budget_s / sum(BUDGET_S.values())
  children = []  # (key, name, command, limit in seconds)
  workdirs = {}  # study -> the workdir of a pipeline study (its report is copied to $OUT, or printed)
  if args.studies:
    for name in args.studies:
      argv = list(STUDIES[name]["argv"])
      if STUDIES[name].get("workdir"):
        workdirs[name] = pathlib.Path(tempfile.mkdtemp(prefix=f"jdanas_{name}_")) / "run"
        argv += ["--workdir", str(workdirs[name])]
      children.append(("study", name, [sys.executable, *argv], STUDIES[name]["budget_s"] * scale))
  else:
    for section in args.sections:
      limit = BUDGET_S[section] * scale * (4 if args.quick else 1)  # CPUs are slower than the budgets assume
      children.append(("section", section, [sys.executable, str(pathlib.Path(__file__).resolve()), "--section",
                                            section] + (["--quick"] if args.quick else []) + (
                                                ["--tiny"] if args.tiny else []), limit))
  if args.plan:
    for name in SECTIONS:
      print(json.dumps({"section": name, "budget_s": BUDGET_S[name], "argv": section_argv(name, False, False)}))
    for name, study in STUDIES.items():
      print(json.dumps({"study": name, "budget_s": study["budget_s"], "command": "python " + " ".join(study["argv"]),
                        "what": study["what"], "data": study.get("data", {}),
                        "device": {"here": f"python bench/device_check.py --pack-data {DEVICE_DATA} --studies {name}",
                                   "carry": [DEVICE_DATA],
                                   "command": f"JDANAS_DATA_DIR={DEVICE_DATA} python bench/device_check.py "
                                              f"--studies {name}"}}))
    return 0
  print(json.dumps(_machine()), flush=True)
  failed = 0
  for key, name, cmd, limit in children:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    peak, timed_out = None, False
    try:
      out, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
      proc.kill()
      out, _ = proc.communicate()
      timed_out = True
    for line in out.splitlines():
      try:
        obj = json.loads(line)
      except ValueError:
        continue
      if set(obj) == {"peak_bytes_in_use"}:
        peak = obj["peak_bytes_in_use"]
        continue
      print(json.dumps({key: name, **obj}), flush=True)
    if name in workdirs:  # a pipeline run prints no JSON lines: its report, and report.json to $OUT if set
      _study_report(name, workdirs[name])
    failed += int((timed_out and not args.quick) or (not timed_out and proc.returncode != 0))
    print(json.dumps({key: name, "seconds": round(time.perf_counter() - t0, 1), "timed_out": timed_out,
                      "limit_s": round(limit), "returncode": proc.returncode, "peak_bytes_in_use": peak}), flush=True)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
