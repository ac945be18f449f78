"""One teacher, many methods, one table: every arm's search in one common space, every pick trained the same way.

  python bench/compare_methods.py --workdir /tmp/compare                    # configs/compare/nb201.py (CPU study)
  python bench/compare_methods.py --quick --workdir /tmp/compare_quick      # its :quick variant (minutes)
  python bench/compare_methods.py --workdir /tmp/compare --arms random,diswot --seeds 5

Stages (docs/compare.md): (1) the teacher is trained once (``<workdir>/teacher``, the pipeline's own teacher
training) and every arm loads it; (2) each arm (:data:`jdanas.benchmarks.compare.ARMS`) runs the pipeline
(:func:`jdanas.pipeline.run`) in ``<workdir>/arms/<arm>/`` (an interrupted arm resumes by the pipeline's own
checkpoints), and its record is cached in ``<workdir>/arms/<arm>.json``; (3) the final stage trains every arm's
pick with the study's ONE final recipe, with KD and without, per seed one population of all picks, cached in
``<workdir>/final/seed<j>-<population>.json``. A rerun skips every cached piece (written atomically), so a killed
comparison continues where it stopped and adding an arm runs only that arm's search (and the final populations,
which then hold one more pick).

Output: JSON lines on stdout and in ``<workdir>/compare.jsonl``: ``teacher`` (its test accuracy), one ``arm`` line
per search (pick, params, FLOPs, evaluations, search wall time, compiled programs, ``cached``), one ``final`` line
per (arm, seed), one ``row`` line per arm (the table row: test accuracy mean and s.e. with and without KD, the paired
gain) and one ``stage`` line (seconds per stage); the markdown table goes to ``<workdir>/table.md`` and the plot
(accuracy against search wall time) to ``<workdir>/compare.png``. A bad ``--arms``/``--seeds``/config is one
``error: ...`` line (exit 2) before any compute; without the shared CIFAR-10 files one ``skipped`` line (exit 0).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_CONFIG = "configs/compare/nb201.py"


class Lines:
  """The JSON lines of this run: printed as they come and rewritten (atomically) to ``path`` after each."""

  def __init__(self, path: pathlib.Path):
    self.path, self.lines = path, []

  def emit(self, line: dict) -> None:
    import os
    import tempfile
    line = {"bench": "compare_methods", **line}
    self.lines.append(line)
    print(json.dumps(line), flush=True)
    self.path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".compare.jsonl.")
    with os.fdopen(fd, "w") as f:
      f.write("".join(json.dumps(x) + "\n" for x in self.lines))
    os.replace(tmp, self.path)


def load_study(spec: str):
  """The study config of ``spec`` (``path[:variant]``, relative to the repository or absolute)."""
  from jdanas.pipeline import load_config
  path, _, variant = spec.partition(":")
  p = pathlib.Path(path)
  if not p.is_absolute() and not p.exists():
    p = REPO / p
  return load_config(f"{p}:{variant}" if variant else str(p))


def _arm_record(arm: str, report: dict, seconds: float) -> dict:
  from jdanas.benchmarks.compare import ARMS
  s, f = report["search"], report["final"]
  top = report["top"][0] if report.get("top") else {}
  return {"kind": "arm", "arm": arm, "method": ARMS[arm].method, "searcher": report["searcher"],
          "evaluator": report["evaluator"], "score_kind": s["score"]["kind"], "arch": f["arch"],
          "params": int(f["params"]), "flops": float(f["flops"]), "search_score": top.get("search_score"),
          "evaluations": int(s["evaluations"]), "search_seconds": float(s["search_seconds"]),
          "evaluator_programs": int(s.get("evaluator_programs", 0)), "xla_compilations": s.get("xla_compilations"),
          "cache_loads": s.get("cache_loads"), "seconds": seconds}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", default=DEFAULT_CONFIG, help="a study config, path[:variant] (configs/compare/)")
  parser.add_argument("--quick", action="store_true", help="the config's :quick variant (tiny; minutes)")
  parser.add_argument("--workdir", default="/tmp/jdanas_compare", help="arms, final stage, teacher, results")
  parser.add_argument("--seeds", type=int, default=None, help="final-stage seeds (default: the config's final.seeds)")
  parser.add_argument("--arms", default=None, help="comma-separated arms (default: the config's arms)")
  args = parser.parse_args(argv)
  from jdanas.lowering import configure_cpu_runtime
  configure_cpu_runtime()  # safe XLA:CPU flags, before jax starts (docs/lowering.md)
  from jdanas.pipeline.config import ConfigError
  try:
    return run(args)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


def run(args) -> int:
  from jdanas import pipeline
  from jdanas.benchmarks import compare
  from jdanas.pipeline.config import ConfigError, build_plan
  t_start = time.perf_counter()
  spec = args.config + (":quick" if args.quick and ":" not in args.config else "")
  try:
    study = load_study(spec)
  except (FileNotFoundError, ValueError) as e:
    raise ConfigError(f"--config: {e}") from None
  arms = compare.check_arms(args.arms.split(",") if args.arms is not None else list(study.arms),
                            "--arms" if args.arms is not None else "config.arms")
  seeds = int(study.final.seeds if args.seeds is None else args.seeds)
  if seeds < 1:
    raise ConfigError(f"--seeds: must be >= 1, got {seeds}")
  workdir = pathlib.Path(args.workdir).absolute()
  pipeline.check_workdir(workdir)
  data_dir = pathlib.Path(study.base.data.data_dir)
  if study.base.data.name == "npz" and not (data_dir / study.base.data.path).exists():
    print(json.dumps({"bench": "compare_methods", "skipped": f"no {study.base.data.path} in {data_dir}"}))
    return 0
  teacher_dir = workdir / "teacher"
  configs = {a: compare.arm_config(study, a, teacher_dir) for a in arms if compare.ARMS[a].searcher is not None}
  for a, c in configs.items():  # every arm's config is valid before anything is computed
    if not (teacher_dir / "teacher.json").exists():  # not trained yet: checked as the base's teacher
      c = c.copy_and_resolve_references()
      c.teacher.path = ""
    try:
      build_plan(c)
    except ConfigError as e:
      raise ConfigError(f"arm {a}: {e}") from None
  from jdanas.pipeline.config import build_recipe, build_loss
  final_recipe = build_recipe(study.final, "final", build_loss(study.base.kd), extra=("seeds",))
  workdir.mkdir(parents=True, exist_ok=True)
  from jdanas.runtime import use_compilation_cache
  use_compilation_cache(workdir / "jax_cache")  # every arm compiles the same masked programs: compiled once
  lines = Lines(workdir / "compare.jsonl")
  stages: dict = {"arms": {}, "final": {}}

  import jax
  from jdanas.pipeline.setup import get_teacher
  from jdanas.teachers import evaluate, load_teacher
  t0 = time.perf_counter()
  checked = pipeline.prepare(study.base, workdir)  # the data, the budget, the recipes
  data = checked.data
  if not (teacher_dir / "teacher.json").exists():
    key_teacher = jax.random.split(jax.random.key(study.base.seed), 3)[0]  # the pipeline's teacher key
    get_teacher(study.base, checked.plan, data, workdir, key_teacher)  # trains and saves <workdir>/teacher
  teacher = load_teacher(teacher_dir)
  teacher_test = evaluate(teacher.module, teacher.variables, data.test, data.mean, data.std)
  lines.emit({"kind": "teacher", "name": teacher.name, "test_accuracy": float(teacher_test),
              "study": study.name})
  stages["teacher"] = time.perf_counter() - t0

  records = []
  for arm in arms:
    t0 = time.perf_counter()
    cache = workdir / "arms" / f"{arm}.json"
    want = configs[arm].to_dict() if arm in configs else {"best_by_params": True, "base": study.base.to_dict(),
                                                           "evaluations": study.rounds * study.num_asks}
    done = compare.read_cached(cache, want)
    if done is not None:
      record = {**done["record"], "cached": True}
    else:
      if arm in configs:
        t_arm = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # the pipeline's summary: stdout holds only JSON lines
          report = pipeline.run(configs[arm], workdir / "arms" / arm)
        record = _arm_record(arm, report, time.perf_counter() - t_arm)
      else:
        t_arm = time.perf_counter()
        pick = compare.best_by_params(checked.plan.space, n=study.rounds * study.num_asks,
                                      max_params=checked.plan.limits["max_params"], num_classes=data.num_classes,
                                      input_shape=data.image_shape, seed=int(study.base.seed))
        seconds = time.perf_counter() - t_arm
        record = {"kind": "arm", "arm": arm, "method": compare.ARMS[arm].method, "searcher": None,
                  "evaluator": None, "score_kind": "params", "arch": pick["arch"], "params": pick["params"],
                  "flops": pick["flops"], "search_score": pick["params"], "evaluations": pick["evaluations"],
                  "search_seconds": seconds, "evaluator_programs": 0, "xla_compilations": 0, "cache_loads": 0,
                  "seconds": seconds}
      compare.write_json(cache, {"config": want, "record": record})
      record = {**record, "cached": False}
    records.append(record)
    lines.emit(record)
    stages["arms"][arm] = time.perf_counter() - t0

  picks = {r["arm"]: r["arch"] for r in records}
  population = sorted(set(picks.values()))
  pid = compare.population_id(population)
  stage = None
  finals = []
  for j in range(seeds):
    t0 = time.perf_counter()
    cache = workdir / "final" / f"seed{j}-{pid}.json"
    want = {"recipe": study.final.to_dict(), "archs": population, "seed": j}
    done = compare.read_cached(cache, want)
    if done is not None:
      result, cached = done["result"], True
    else:
      if stage is None:
        stage = compare.FinalStage(checked.plan.space, data, teacher, final_recipe)
      result, cached = stage.train(j, population), False
      compare.write_json(cache, {"config": want, "result": result})
    for arm, arch in picks.items():
      r = result["results"][arch]
      line = {"kind": "final", "arm": arm, "seed": j, "arch": arch,
              "kd_test_accuracy": r["kd"]["test_accuracy"], "no_kd_test_accuracy": r["no_kd"]["test_accuracy"],
              "kd_val_accuracy": r["kd"]["val_accuracy"], "no_kd_val_accuracy": r["no_kd"]["val_accuracy"],
              "population": len(population), "programs": result["programs"], "cached": cached}
      finals.append(line)
      lines.emit(line)
    stages["final"][f"seed{j}"] = time.perf_counter() - t0

  rows = compare.aggregate(records, finals)
  for row in rows:
    lines.emit(row)
  table = compare.render_table(rows)
  (workdir / "table.md").write_text(
      f"{table}\n\nTeacher {teacher.name}: {100 * teacher_test:.2f} % test. Study {study.name}, {seeds} seeds.\n")
  compare.plot(rows, workdir / "compare.png", teacher=float(teacher_test))
  stages["total"] = time.perf_counter() - t_start
  lines.emit({"kind": "stage", "seconds": stages, "study": study.name, "arms": arms, "seeds": seeds})
  print(table, file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
