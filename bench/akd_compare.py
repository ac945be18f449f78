"""AKD vs NAS + KD at equal search budget and latency target (``python bench/akd.py --part compare``).

AKD (Liu et al., "Search to Distill", CVPR 2020) claims that searching with the accuracy after a
short KD run from the teacher (the KD reward) finds students that distil better than searching
with the accuracy after a plain cross-entropy run ("NAS + KD") and distilling the result. Both
searches here are ``configs/akd_cifar10.py:runlocal`` (PPO over the ``mobilenet`` space, reward
``ACC x (FLOPs/T)^-0.07``) and its ``:nas_kd`` variant, shrunk to this machine: the same teacher
(trained once, with the split of seed 0: for other seeds it has seen part of their validation
split, equally for both modes; never the test split), the same seeds (so the same data split and
the same first asks), the same number of rounds and proposals, the same latency target; only the
short run's loss differs. The best
student of each search (by reward) is then KD-trained with the same final recipe and its TEST
accuracy is reported.

Spaces (``--space``): ``mobilenet`` (AKD's MnasNet-style space, ``base_width=0.25``) compiles a
training program per proposal: on the loaded 2-core CPU one proposal took minutes, too slow for
several seeds. ``nb201_masked`` (the NAS-Bench-201 cell at C=8, one cell per stage, trained as ONE
masked program shared by every proposal: ``compute.specialize=False``) keeps the same pipeline,
controller and reward and fits. The latency target is the median FLOPs of 16 random
architectures of the space (seed 0), the same for both modes.

Commands::

  python bench/akd.py --part compare --space nb201_masked     # 3 seeds x 2 modes, 26.5 min (loaded CPU)
  python bench/akd.py --part compare --quick                  # smoke sizes

Output: one JSON line per search (``mode``, ``seed``, the chosen ``arch``, its short-run
``search_accuracy``, ``latency`` (FLOPs) and ``reward``, ``final_kd_val_accuracy``,
``final_kd_test_accuracy``, ``seconds``) and one summary line per mode (mean, standard deviation,
min and max of the final KD test accuracy over seeds) plus the paired AKD - NAS+KD differences.
"""
from __future__ import annotations

import json
import pathlib
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Sized for ~20-30 min on a loaded 2-core CPU (each proposal compiles its own training program).
FULL = dict(seeds=3, rounds=2, num_asks=3, train_limit=5000, test_limit=2000, teacher_steps=400,
            short_steps=30, final_steps=200)
QUICK = dict(seeds=2, rounds=1, num_asks=2, train_limit=600, test_limit=300, teacher_steps=20,
             short_steps=4, final_steps=10)
SPACES = {"mobilenet": dict(base_width=0.25), "nb201_masked": dict(channels=8, num_cells=1)}
# The masked space compiles one program for every proposal but computes every op of the cell:
# on the 2-core CPU shared with other jobs (load 13-20) a round of 4 students x 40 steps took
# about 170 s, so this budget (6 proposals, 20-step short runs, 100-step final KD) keeps the
# 3 seeds x 2 modes near 30 min.
NB201_FULL = dict(rounds=2, num_asks=3, short_steps=20, final_steps=100)
# Every search of a mode compiles the same programs: a persistent cache shares them across searches.
CACHE_DIR = "jdanas_akd_compare_jax_cache"


def _config(mode: str, seed: int, size: dict, teacher_dir: pathlib.Path, data_dir: pathlib.Path):
  from configs import akd_cifar10
  c = akd_cifar10.get_config("runlocal" + (",nas_kd" if mode == "nas_kd" else ""))
  c.seed = seed
  c.data.update(data_dir=str(data_dir), train_limit=size["train_limit"], test_limit=size["test_limit"])
  c.teacher.path = str(teacher_dir)
  c.space = dict(name=size["space"], kwargs=dict(SPACES[size["space"]]))
  if size["space"] == "nb201_masked":
    c.compute = dict(c.compute.to_dict(), specialize=False)  # every proposal trains with one compiled program
  c.evaluator.reward.target = size["target"]
  c.searcher.kwargs.num_asks = size["num_asks"]
  c.evaluator.short_kd.steps = size["short_steps"]
  c.search.update(rounds=size["rounds"], top_k=1)
  c.final.steps = size["final_steps"]
  return c


def _target(space_name: str) -> float:
  """The median FLOPs of 16 random architectures of the space (seed 0) at 32x32, 10 classes."""
  import numpy as np
  from jdanas import costs
  from jdanas.spaces import get_space
  space = get_space(space_name, **SPACES[space_name])
  rng = np.random.default_rng(0)
  encs = [rng.integers(0, np.asarray(space.num_choices)).astype(np.int32) for _ in range(16)]
  return float(np.median([costs.model_costs(space, e, num_classes=10).flops for e in encs]))


def _teacher(size: dict, workdir: pathlib.Path, data_dir: pathlib.Path) -> pathlib.Path:
  """Trains the runlocal teacher once (cached in ``workdir/teacher``)."""
  from jdanas.pipeline import prepare
  from jdanas.pipeline.setup import get_teacher
  import jax
  teacher_dir = workdir / "teacher"
  if not (teacher_dir / "teacher.json").exists():
    c = _config("akd", 0, size, teacher_dir, data_dir)
    c.teacher.path = ""
    c.teacher.train.steps = size["teacher_steps"]
    checked = prepare(c, workdir)
    get_teacher(c, checked.plan, checked.data, workdir, jax.random.key(0))  # trains and saves <workdir>/teacher
  return teacher_dir


def _one(mode: str, seed: int, size: dict, teacher_dir: pathlib.Path, workdir: pathlib.Path,
         data_dir: pathlib.Path) -> dict:
  import jax
  import numpy as np
  from jdanas import pipeline
  from jdanas.pipeline.final import top_archs
  from jdanas.pipeline.setup import trainer
  from jdanas.teachers import evaluate

  t0 = time.perf_counter()
  s = pipeline.search(_config(mode, seed, size, teacher_dir, data_dir), workdir / f"{mode}_seed{seed}")
  (best,) = top_archs(s.ledger, 1)
  enc = np.asarray(best["encoding"], np.int32)
  kd = trainer(s.plan, s.data, s.plan.final, s.teacher, s.mesh).train(jax.random.fold_in(s.key_final, 0), [enc])
  module = s.plan.space.build(s.plan.space.signature(enc), s.data.num_classes)
  test = evaluate(module, jax.device_get(kd.variables(0)), s.data.test, s.data.mean, s.data.std, enc=enc)
  return {"bench": "akd_compare", "mode": mode, "seed": seed, "arch": best["arch"],
          "search_accuracy": best["accuracy"], "latency": best["latency"], "reward": best["reward"],
          "score_kind": s.score_kind.kind, "evaluations": len(s.ledger),
          "final_kd_val_accuracy": float(kd.accuracy[0]), "final_kd_test_accuracy": float(test),
          "teacher_test_accuracy": s.teacher_accuracy["test_accuracy"], "seconds": time.perf_counter() - t0}


def use_compilation_cache() -> None:
  """JAX's persistent compilation cache in ``$TMPDIR/<CACHE_DIR>`` unless
  ``$JAX_COMPILATION_CACHE_DIR`` names one (call before jax compiles anything)."""
  import tempfile
  from jdanas.runtime import use_compilation_cache as use
  use(pathlib.Path(tempfile.gettempdir()) / CACHE_DIR)


def _spread(values: list[float]) -> dict:
  return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
          "min": min(values), "max": max(values), "n": len(values)}


def compare(args) -> None:
  """AKD (KD reward) vs NAS + KD (CE reward) over ``seeds`` search seeds; JSON lines on stdout."""
  from jdanas.data import shared_data_dir
  size = dict(QUICK if args.quick else FULL, space=args.space)
  if args.space == "nb201_masked" and not args.quick:
    size.update(NB201_FULL)
  for field in ("seeds", "rounds", "num_asks"):
    if getattr(args, field, None):
      size[field] = int(getattr(args, field))
  data_dir = shared_data_dir()
  if not (data_dir / "cifar10_train_subset.npz").exists():
    print(json.dumps({"bench": "akd_compare", "skipped": f"no cifar10_train_subset.npz in {data_dir}"}))
    return
  workdir = pathlib.Path(args.workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  t0 = time.perf_counter()
  size["target"] = _target(args.space)
  teacher_dir = _teacher(size, workdir, data_dir)
  rows = {"akd": [], "nas_kd": []}
  for seed in range(size["seeds"]):
    for mode in ("akd", "nas_kd"):
      row = {**_one(mode, seed, size, teacher_dir, workdir, data_dir), "size": size}
      rows[mode].append(row)
      print(json.dumps(row), flush=True)
  acc = {m: [r["final_kd_test_accuracy"] for r in rs] for m, rs in rows.items()}
  for mode in rows:
    print(json.dumps({"bench": "akd_compare", "summary": mode, "final_kd_test_accuracy": _spread(acc[mode]),
                      "size": size}), flush=True)
  diffs = [a - b for a, b in zip(acc["akd"], acc["nas_kd"])]
  same = sum(a["arch"] == b["arch"] for a, b in zip(rows["akd"], rows["nas_kd"]))
  print(json.dumps({"bench": "akd_compare", "summary": "akd_minus_nas_kd", "paired_by_seed": diffs,
                    "diff": _spread(diffs), "akd_wins": sum(d > 0 for d in diffs), "same_arch_chosen": same,
                    "seconds": time.perf_counter() - t0, "size": size}), flush=True)


def add_arguments(p, standalone: bool = True) -> None:
  """The compare part's options; ``bench/akd.py`` (``standalone=False``) has ``--quick`` and
  ``--seeds`` already."""
  if standalone:
    p.add_argument("--quick", action="store_true", help="smoke sizes: 2 seeds, 1 round of 2, 600 images, a few steps")
    p.add_argument("--seeds", type=int, default=None, help="search seeds per mode (default 3; --quick 2)")
  p.add_argument("--rounds", type=int, default=None, help="search rounds (default 2, nb201_masked 3; --quick 1)")
  p.add_argument("--num-asks", dest="num_asks", type=int, default=None, help="proposals per round (default 3, nb201_masked 4)")
  p.add_argument("--space", choices=sorted(SPACES), default="mobilenet",
                 help="student space (nb201_masked: one shared program, fits a CPU; see the docstring)")
  p.add_argument("--workdir", default="/tmp/jdanas_akd_compare", help="run folders and the cached teacher")


if __name__ == "__main__":
  import argparse
  from jdanas.lowering import configure_cpu_runtime
  configure_cpu_runtime()  # safe XLA:CPU flags, before jax starts (docs/lowering.md)
  use_compilation_cache()
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  add_arguments(parser)
  compare(parser.parse_args())
