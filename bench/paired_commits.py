"""A job's wall time at two commits, measured side by side: runs alternate (A B B A A B ...) in fresh processes.

Each run is ``run.py`` as a user starts it (a fresh process, a fresh workdir, a clean environment: no inherited
``XLA_FLAGS`` or compilation cache; :func:`regenerate_docs.clean_env`) from a throw-away ``git worktree`` of the
commit, so the two commits see the same machine state in turn and a drift of the machine's load falls on both.
One JSON line per run (commit, order, wall seconds, the report's search / final seconds and the chosen student's
figures, which must agree when the change is a refactor), then a summary line with the mean wall time of each
commit, their ratio and the standard error of the paired differences::

  python bench/paired_commits.py --before 99f978f --after HEAD --pairs 2      # the default job: ~3 min a run here
  python bench/paired_commits.py --before A --after B --config configs/default.py:smoke --pairs 3
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from regenerate_docs import clean_env  # noqa: E402  (the environment a user's shell gives run.py)


def _git(*args: str, cwd: pathlib.Path = REPO) -> str:
  return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def one_run(tree: pathlib.Path, config: str, workdir: pathlib.Path, timeout: float) -> dict:
  """``run.py --config <config>`` in ``tree`` (its own ``jdanas`` first on the path); wall time and report figures."""
  env = clean_env()
  env["PYTHONPATH"] = str(tree)
  t0 = time.perf_counter()
  subprocess.run([sys.executable, "run.py", "--config", config, "--workdir", str(workdir)], cwd=tree, env=env,
                 check=True, timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  wall = time.perf_counter() - t0
  report = json.loads((workdir / "report.json").read_text())
  final = report.get("final", {})
  return {"wall_s": round(wall, 2), "search_s": round(report["search"].get("search_seconds", float("nan")), 2),
          "arch": final.get("arch"), "kd_test_acc": (final.get("kd") or {}).get("test_accuracy")}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--before", required=True, help="the commit measured first in each pair (a git ref)")
  p.add_argument("--after", required=True, help="the commit compared with it (a git ref)")
  p.add_argument("--config", default="configs/default.py", help="run.py's --config (default: the main job)")
  p.add_argument("--pairs", type=int, default=2, help="runs of each commit (alternating ABBA ...)")
  p.add_argument("--timeout", type=float, default=1800, help="seconds one run may take")
  args = p.parse_args(argv)
  if args.pairs < 1:
    p.error("--pairs: must be >= 1")
  commits = {"before": _git("rev-parse", args.before), "after": _git("rev-parse", args.after)}
  walls = {"before": [], "after": []}
  with tempfile.TemporaryDirectory(prefix="jdanas_paired_") as root:
    root = pathlib.Path(root)
    trees = {}
    for side, commit in commits.items():
      trees[side] = root / side
      _git("worktree", "add", "--detach", str(trees[side]), commit)
    try:
      order = [("before", "after") if i % 2 == 0 else ("after", "before") for i in range(args.pairs)]
      for i, pair in enumerate(order):
        for side in pair:
          r = one_run(trees[side], args.config, root / f"w_{side}_{i}", args.timeout)
          walls[side].append(r["wall_s"])
          print(json.dumps({"bench": "paired_commits", "side": side, "commit": commits[side][:10], "pair": i,
                            "config": args.config, **r}), flush=True)
    finally:
      for tree in trees.values():
        _git("worktree", "remove", "--force", str(tree))
  diffs = [a - b for a, b in zip(walls["after"], walls["before"])]
  mean = lambda v: sum(v) / len(v)
  se = (math.sqrt(sum((d - mean(diffs)) ** 2 for d in diffs) / (len(diffs) - 1) / len(diffs))
        if len(diffs) > 1 else float("nan"))
  print(json.dumps({"bench": "paired_commits", "summary": True, "config": args.config, "pairs": args.pairs,
                    "before": commits["before"][:10], "after": commits["after"][:10],
                    "before_wall_s": round(mean(walls["before"]), 1), "after_wall_s": round(mean(walls["after"]), 1),
                    "ratio_after_over_before": round(mean(walls["after"]) / mean(walls["before"]), 3),
                    "diff_s": round(mean(diffs), 1), "diff_se_s": round(se, 1) if math.isfinite(se) else None,
                    "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
                    "load_1min_at_end": round(os.getloadavg()[0], 2)}),
        flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
