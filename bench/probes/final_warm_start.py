"""Does the final phase gain from starting at the search's short-KD weights? The question behind dropping
them from the checkpoints (jdanas/pipeline/checkpoints.py; docs/benchmarks.md, "Final training from the
search's weights").

Runs the default job's search in ``--workdir`` (or resumes it), then KD-trains its top-K students with the
final recipe ``--seeds`` times in three arms: from scratch (``final.steps``), from the short-KD weights of
the search (``final.steps`` more), and from scratch for ``final.steps + evaluator.short_kd.steps`` (the
same number of training steps as the warm arm). The short-KD weights are those the search computes
for each top-K student: its evaluator trains them again here with the search's own key and round.
Prints one JSON line per arm with the per-seed validation and test accuracies and their means::

  python bench/probes/final_warm_start.py --workdir /tmp/jdanas_warm --seeds 4
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--workdir", default="/tmp/jdanas_warm_start")
  p.add_argument("--seeds", type=int, default=4)
  args = p.parse_args(argv)
  sys.path.insert(0, str(REPO))
  from jdanas import runtime
  runtime.configure()  # before jax starts (docs/lowering.md)
  import jax
  import numpy as np

  from configs import default
  from jdanas import pipeline
  from jdanas.pipeline.final import _test_accuracy, top_archs
  from jdanas.pipeline.setup import build_evaluator, trainer

  s = pipeline.search(default.get_config(), args.workdir)
  rows = top_archs(s.ledger, s.plan.top_k)
  encs = [np.asarray(r["encoding"], np.int32) for r in rows]
  # The short-KD weights of each top student, as its search round computed them (same key, same batch of proposals).
  evaluator = build_evaluator(s.plan, s.data, s.teacher, int(s.config.seed), s.mesh, s.teacher_accuracy["val_accuracy"])
  key_loop = jax.random.split(jax.random.split(jax.random.key(s.config.seed), 3)[1])[1]
  warm = []
  for r in rows:
    round_encs = np.asarray([row["encoding"] for row in s.ledger if row["round"] == r["round"]], np.int32)
    key_eval = jax.random.split(jax.random.fold_in(key_loop, r["round"]), 3)[1]
    result = evaluator.trainer.train(key_eval, list(round_encs))
    i = [row["index"] for row in s.ledger if row["round"] == r["round"]].index(r["index"])
    assert abs(float(result.accuracy[i]) - r["score"]) < 1e-6, "the search's short-KD run is not reproduced"
    warm.append(jax.device_get(result.variables(i)))
  steps = int(s.plan.final.steps) + int(s.config.evaluator.short_kd.steps)
  arms = {"scratch": (s.plan.final, None), "warm": (s.plan.final, warm),
          f"scratch_{steps}_steps": (dataclasses.replace(s.plan.final, steps=steps), None)}
  for arm, (recipe, init) in arms.items():
    kd = trainer(s.plan, s.data, recipe, s.teacher, s.mesh)
    val, test = [], []
    for seed in range(args.seeds):
      res = kd.train(jax.random.fold_in(s.key_final, 100 + seed), encs, init_variables=init)
      val.append([float(a) for a in res.accuracy])
      test.append([_test_accuracy(s, e, jax.device_get(res.variables(i))) for i, e in enumerate(encs)])
    print(json.dumps({"arm": arm, "steps": recipe.steps, "archs": [r["arch"] for r in rows], "val": val, "test": test,
                      "val_mean": np.mean(val, 0).round(4).tolist(), "test_mean": np.mean(test, 0).round(4).tolist()}),
          flush=True)


if __name__ == "__main__":
  main()
