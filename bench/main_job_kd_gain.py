"""How large is the main job's KD gain, and how does it depend on the final schedule? (configs/default.py)

Takes a finished main-job workdir (its teacher, data and chosen student), trains the chosen student ``--n``
times with KD and ``--n`` times without under each final-schedule variant, and prints one JSON line per
variant: test accuracy with and without KD (mean), the paired gain with its standard error and t interval,
and in how many pairs KD won (:func:`jdanas.pipeline.final.paired_gain`). The ``--n`` students of an arm are
ONE population (initialisations ``fold_in(key_init, i)``, one batch order shared by all of them and by both
arms), so the spread is over initial weights only; ``final.seeds`` in the pipeline varies both.

  python run.py --config configs/default.py --workdir /tmp/jdanas_default --config.final.steps=150
  python bench/main_job_kd_gain.py --workdir /tmp/jdanas_default --variants T2_75,T2_150,T4_150,T2_300

Variant ``T<temperature>_<steps>``: the config's final recipe with that KD temperature and step count.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import re
import sys

from jdanas.lowering import configure_cpu_runtime

configure_cpu_runtime()

import jax  # noqa: E402
import ml_collections  # noqa: E402

from jdanas import pipeline  # noqa: E402
from jdanas.pipeline.final import _test_accuracy, paired_gain  # noqa: E402
from jdanas.pipeline.setup import trainer, vanilla_recipe  # noqa: E402


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--workdir", required=True, help="a finished run of configs/default.py")
  ap.add_argument("--variants", default="T2_75,T2_150,T4_150,T2_300")
  ap.add_argument("--n", type=int, default=8, help="initialisations per arm")
  ap.add_argument("--seed", type=int, default=123)
  args = ap.parse_args(argv)
  variants = []
  for v in args.variants.split(","):
    m = re.fullmatch(r"T([0-9.]+)_([0-9]+)", v)
    if m is None:
      ap.error(f"--variants: {v!r} is not T<temperature>_<steps>")
    variants.append((v, float(m.group(1)), int(m.group(2))))
  workdir = pathlib.Path(args.workdir)
  if not (workdir / "report.json").exists():
    ap.error(f"--workdir: {workdir} holds no finished run (no report.json)")
  report = json.loads((workdir / "report.json").read_text())
  # the workdir's own config (a finished run: the cached teacher and ledger, nothing trained)
  s = pipeline.search(ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text())), workdir)
  enc = s.plan.space.encode(report["final"]["arch"])
  for name, temperature, steps in variants:
    recipe = dataclasses.replace(s.plan.final, steps=steps,
                                 loss=dataclasses.replace(s.plan.final.loss, temperature=temperature))
    acc = {}
    for arm, r, teacher in (("kd", recipe, s.teacher), ("no_kd", vanilla_recipe(recipe), None)):
      result = trainer(s.plan, s.data, r, teacher, s.mesh).train(jax.random.PRNGKey(args.seed), [enc] * args.n)
      acc[arm] = [_test_accuracy(s, enc, jax.device_get(result.variables(i))) for i in range(args.n)]
    g = paired_gain(acc["kd"], acc["no_kd"])
    print(json.dumps({"variant": name, "temperature": temperature, "steps": steps, "arch": report["final"]["arch"],
                      **{k: g[k] for k in ("n", "kd_mean", "no_kd_mean", "gain_mean", "gain_se", "gain_interval",
                                           "kd_wins")}}), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
