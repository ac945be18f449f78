"""TRADE on CIFAR-10: the searched multi-family student vs predefined students of the same params
budget, all KD-trained with the identical final recipe (same teacher, steps, batches).

Commands (from the repository root)::

  python bench/trade_cifar10.py --quick     # smoke run, a few minutes on a 2-core CPU
  python bench/trade_cifar10.py             # configs/trade_cifar10.py:runlocal, ~15 min per seed
  python bench/trade_cifar10.py --seeds 3 --searcher casmopolitan

What it runs: for each seed, the whole pipeline of ``configs/trade_cifar10.py`` (``:runlocal``
sizing; ``--quick`` shrinks it further) on the shared CIFAR-10 files (``cifar10_train_subset.npz``,
``cifar10_test.npz`` in ``$JDANAS_DATA_DIR``, default ``../shared/data``): a ResNet teacher, a
search over the ``trade`` space under ``constraint.max_params`` (searcher ``--searcher``; the
default is ``casmopolitan`` when that searcher is registered, else ``regularized_evolution``),
final KD of the best student, and the same final KD of the predefined students of
``final.baselines``. The seed changes the data split, the teacher, the search and every
initialisation.

Output: JSON lines on stdout, one per trained student and seed::

  {"seed", "role": "trade" | "baseline", "name", "arch", "params", "budget", "val_acc", "test_acc",
   "final_steps"}

then one summary line per seed (``trade_test_acc``, ``best_baseline`` and its ``test_acc``,
``gain_vs_best_baseline`` and ``gain_vs_mean_baseline`` in test-accuracy points, teacher accuracy,
evaluations, wall seconds) and, with several seeds, one ``{"aggregate": ...}`` line with the mean
and standard deviation of the gains. Progress goes to stderr. Without the data files it prints one
``{"skipped": "<reason>"}`` line and exits 0. The chosen student is picked on the validation split;
the test split is only reported.

Measured (2-core CPU shared with four other agents' jobs, load average about 10):
``python bench/trade_cifar10.py --quick``: 5 min 30 s cold, 3 min 9 s on a second run (the
persistent compilation cache in ``$TMPDIR/jdanas_jax_cache`` was warm; identical numbers); the search (3 evaluations) picked
``wrn(depth=10,widen=1)``, which is also one of the quick baselines: the two final KD runs of
that architecture differ only in their initialisation and gave 20.2 % vs 21.7 % test, so at this
size differences of ~2 points are noise. The full mode is ``configs/trade_cifar10.py:runlocal``
(its docstring has a measured run).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TRAIN_FILE = "cifar10_train_subset.npz"
TEST_FILE = "cifar10_test.npz"
QUICK_KNOBS = (
    ("resnet", (("blocks", (1, 2)), ("width", (0.5, 1.0)))),
    ("wrn", (("depth", (10,)), ("widen", (1,)))),
    ("convmixer", (("depth", (2, 4)), ("dim", (32, 64)), ("patch", (2, 4)), ("kernel", (5,)))),
)


def log(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--quick", action="store_true",
                 help="smoke run: 1,000 training images, 3 families, 1 round of 3, 40-step final KD")
  p.add_argument("--seeds", type=int, default=1, help="independent repetitions (seeds 0..n-1)")
  p.add_argument("--searcher", default=None, help="searcher name (default: casmopolitan if registered)")
  p.add_argument("--workdir", default=None, help="where the runs are written (default: a temp folder)")
  args = p.parse_args(argv)
  if args.seeds < 1:
    p.error(f"--seeds must be >= 1, got {args.seeds}")
  return args


def make_config(quick: bool, searcher: str, seed: int, data_dir: pathlib.Path):
  from configs import trade_cifar10
  c = trade_cifar10.get_config(f"runlocal,searcher={searcher}")
  c.seed = seed
  c.data.update(name="npz", data_dir=str(data_dir), path=TRAIN_FILE, test_path=TEST_FILE)
  if quick:
    c.data.update(train_limit=1000, test_limit=1000)
    c.teacher.name = "resnet8"
    c.teacher.train.update(steps=60, batch_size=32)
    c.space.kwargs = dict(families=tuple(f for f, _ in QUICK_KNOBS), knobs=QUICK_KNOBS)
    c.searcher.kwargs.update(num_asks=3)
    if searcher == "regularized_evolution":
      c.searcher.kwargs.update(population_size=3, tournament_size=2)
    if searcher == "casmopolitan":
      c.searcher.kwargs.update(n_init=3)
    c.constraint.max_params = 80_000
    c.evaluator.short_kd.update(steps=10, batch_size=32)
    c.search.update(rounds=1, top_k=1)
    c.final.update(steps=40, batch_size=32, baselines=["resnet8", "wrn(depth=10,widen=1)"])
  return c


def main(argv=None) -> None:
  from jdanas import runtime
  runtime.configure(pathlib.Path(tempfile.gettempdir()) / "jdanas_jax_cache")  # before jax starts (docs/lowering.md)
  args = parse_args(argv)
  from jdanas.data import shared_data_dir
  data_dir = shared_data_dir()
  missing = [f for f in (TRAIN_FILE, TEST_FILE) if not (data_dir / f).exists()]
  if missing:
    print(json.dumps({"skipped": f"CIFAR-10 files {missing} not found in {data_dir} (set JDANAS_DATA_DIR)"}))
    return
  from jdanas.pipeline import run
  from jdanas.searchers import SEARCHERS
  searcher = args.searcher or ("casmopolitan" if "casmopolitan" in SEARCHERS else "regularized_evolution")
  root = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="jdanas_trade_bench_"))
  gains_best, gains_mean = [], []
  for seed in range(args.seeds):
    config = make_config(args.quick, searcher, seed, data_dir)
    workdir = root / f"seed{seed}"
    log(f"[bench] seed {seed}: {searcher}, budget {config.constraint.max_params} params, workdir {workdir}")
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # run() prints a human summary; stdout is JSON only
      report = run(config, workdir)
    seconds = time.perf_counter() - t0
    budget = int(config.constraint.max_params)
    f = report["final"]
    rows = [{"role": "trade", "name": "trade", "arch": f["arch"], "params": f["params"],
             "val_acc": f["kd"]["val_accuracy"], "test_acc": f["kd"]["test_accuracy"]}]
    rows += [{"role": "baseline", "name": b["name"], "arch": b["arch"], "params": b["params"],
              "val_acc": b["kd"]["val_accuracy"], "test_acc": b["kd"]["test_accuracy"]}
             for b in report["baselines"]]
    for r in rows:
      print(json.dumps({"seed": seed, **r, "budget": budget, "final_steps": int(config.final.steps),
                        "searcher": searcher, "quick": args.quick}), flush=True)
    base = [r for r in rows[1:] if r["test_acc"] is not None]
    best = max(base, key=lambda r: r["test_acc"]) if base else None
    trade_acc = rows[0]["test_acc"]
    gain_best = None if best is None or trade_acc is None else 100 * (trade_acc - best["test_acc"])
    gain_mean = (None if not base or trade_acc is None
                 else 100 * (trade_acc - sum(r["test_acc"] for r in base) / len(base)))
    if gain_best is not None:
      gains_best.append(gain_best)
      gains_mean.append(gain_mean)
    print(json.dumps({
        "summary": True, "seed": seed, "searcher": searcher, "quick": args.quick, "budget": budget,
        "trade_arch": f["arch"], "trade_params": f["params"], "trade_test_acc": trade_acc,
        "trade_no_kd_test_acc": f["no_kd"]["test_accuracy"],
        "best_baseline": None if best is None else best["name"],
        "best_baseline_test_acc": None if best is None else best["test_acc"],
        "gain_vs_best_baseline_pp": gain_best, "gain_vs_mean_baseline_pp": gain_mean,
        "teacher": report["teacher"]["name"], "teacher_test_acc": report["teacher"]["test_accuracy"],
        "evaluations": report["search"]["evaluations"], "train_images": len_or_none(config),
        "seconds": round(seconds, 1)}), flush=True)
  if len(gains_best) > 1:
    import numpy as np
    print(json.dumps({"aggregate": True, "seeds": len(gains_best), "searcher": searcher,
                      "gain_vs_best_baseline_pp_mean": float(np.mean(gains_best)),
                      "gain_vs_best_baseline_pp_std": float(np.std(gains_best, ddof=1)),
                      "gain_vs_mean_baseline_pp_mean": float(np.mean(gains_mean)),
                      "gain_vs_mean_baseline_pp_std": float(np.std(gains_mean, ddof=1))}), flush=True)


def len_or_none(config) -> int | None:
  """The training-image limit of the run (None = the whole file)."""
  return int(config.data.train_limit) or None


if __name__ == "__main__":
  main()
