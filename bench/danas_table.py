"""Distillation-aware scoring on DisWOT's measured S1 table: does a search scored by KD accuracy pick
students that distil better than one scored by the accuracy trained alone (AKD's claim, "NAS + KD"
as the baseline)?

The table (``shared/data/diswot_s1_cifar100_vanilla_vs_kd.csv``, :mod:`jdanas.benchmarks.diswot_s1`)
holds DisWOT's 64 S1 ResNets (per-stage depths in {1, 3, 5, 7}, widths 16/32/64) with measured
CIFAR-100 top-1 trained alone (``vanilla_top1``) and with KD from the same teacher (``kd_top1``).
For every registered searcher (:data:`jdanas.searchers.SEARCHERS`, settings in ``SETTINGS``) and
every budget of 8, 16 and 32 UNIQUE students, each run searches the 64 students scored by one
objective, and the student it picks (the best-scored of the first ``budget`` distinct students it
proposed, ties to the earliest; proposals in ask order, so a batch can be cut inside a round) is
reported by its KD accuracy:

* ``accuracy``: scored by ``kd_top1`` (AKD) vs by ``vanilla_top1`` (NAS, then KD the pick);
* ``reward``: AKD's soft latency-aware form with the parameter count as the latency model,
  ``ACC x (params / T) ** w`` (:func:`jdanas.rewards.reward`, ``alpha = beta = w = -0.07`` as in
  MnasNet / AKD, ``T`` = the median parameter count of the 64 students at 100 classes), with
  ``ACC = kd_top1`` vs ``vanilla_top1``; reported: the pick's ``kd_top1``, its parameters and its
  KD reward (``kd_top1 x (params / T) ** w``, the objective AKD maximises).

The two arms of a pair use the same run keys (run ``r`` is ``fold_in(key(seed), r)``), so their
difference is paired: ``diff_*`` is the per-run difference (KD-scored minus vanilla-scored pick) with
its mean and standard error. Every searcher is wrapped in :func:`jdanas.searchers.with_dedup`; a run
makes up to ``queries`` proposals (the searcher's whole loop is one jitted ``lax.scan``, the runs
are vmapped, and one compiled program per searcher serves all four objectives, the score table
being an argument); a run that proposes fewer than ``budget`` distinct students in ``queries``
proposals picks among those it has (``runs_short`` counts them). Mean +- standard error over runs.

  nice -n 5 python bench/danas_table.py          # 100 runs per searcher, 16 of TuRBO and CASMOPOLITAN
  nice -n 5 python bench/danas_table.py --quick  # 8 runs, budgets 8 and 16, the 3 searchers that compile fast
  python bench/danas_table.py --searchers random,ppo --runs 200

Each searcher's runs use keys ``fold_in(key(seed), r)`` whichever searchers run with it, so a run
split over several ``--searchers`` invocations prints the same lines. Measured 2026-12-07 on the
shared 2-core CPU: the full run took about 11 min of CPU time (about 30 min wall clock under load 4-13);
the GP searchers cost by far the most per run, and compiling each controller takes about 30-50 s
of wall clock. ``--quick`` (random and both evolutions) takes about 30 s of CPU
time, most of it startup and the 64 parameter counts; pass ``--searchers`` to run others with it.

Prints JSON lines: one ``{"oracle": ...}`` line (the space's best ``kd_top1``: 557's; the ``kd_top1``
of the best vanilla student: 777's; the same for the rewards), then one line per searcher x budget
x objective with ``kd_scored`` / ``vanilla_scored`` (``kd_top1_mean``, ``kd_top1_se``, and for the
reward ``params_mean``, ``kd_reward_mean``...), ``diff_kd_top1_mean`` / ``_se``, ``frac_kd_better``,
``frac_vanilla_better``, per arm ``frac_oracle`` (picks that are the objective's best student) and
``runs_short``, then ``runs``, ``queries``, ``settings``. Timings go to stderr. Without the table the script prints
``{"skipped": ...}`` and exits 0. The measured table is in docs/methods/akd.md.
"""
import argparse
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jdanas import costs
from jdanas.benchmarks.diswot_s1 import FILE, DisWOTS1Table
from jdanas.data import shared_data_dir
from jdanas.lowering import configure_cpu_runtime
from jdanas.rewards import reward
from jdanas.searchers import enumerate_encodings, get_searcher, mixed_radix_index, with_dedup
from jdanas.spaces import get_space

BUDGETS = (8, 16, 32)
W = -0.07  # AKD's soft form (MnasNet): alpha = beta = -0.07
GP_RUNS = {"turbo": 16, "casmopolitan": 16}  # runs of the GP searchers, slow per run (--gp-runs)
QUICK = ("random", "regularized_evolution", "diswot_evolution")  # --quick: the searchers that compile in seconds
# label -> (registry name, keywords, proposals per run). One proposal per ask (a sequential search)
# except where a searcher's own batch is its point; sizes scaled to a 64-student space and budgets
# of 8-32: evolution populations of 6 (the first 6 proposals are random), controllers with the better
# settings of bench/search_nb201_table.py, trust regions spanning the 3 decisions (CASMOPOLITAN as in
# bench/trbo_nb201.py: global overlap_sum GP, shrink after 5 failures).
SETTINGS = {
    "random": ("random", dict(num_asks=1, capacity=64), 48),
    "regularized_evolution": ("regularized_evolution",
                              dict(num_asks=1, population_size=6, tournament_size=3, capacity=64), 64),
    "diswot_evolution": ("diswot_evolution",
                         dict(num_asks=1, population_size=6, tournament_size=3, max_mutations=2, capacity=64), 64),
    "turbo": ("turbo", dict(num_asks=1, n_init=6, capacity=40, num_candidates=64), 40),
    "casmopolitan": ("casmopolitan", dict(num_asks=1, n_init=6, capacity=40, radius_init=3, failure_tolerance=5,
                                          num_candidates=64, fit_steps=10, learning_rate=0.1,
                                          global_model=True, categorical_kernel="overlap_sum"), 40),
    "reinforce": ("reinforce", dict(num_asks=1, learning_rate=3e-3, capacity=64), 64),
    "ppo": ("ppo", dict(num_asks=1, capacity=64), 64),
}


def proposals_fn(searcher, index, queries: int):
  """``(key, scores float32[M]) -> int32[queries]``: the rows (mixed-radix indices) a run proposes,
  in ask order, when every proposal is scored by ``scores[index(enc)]``."""

  def run(key, scores):
    key_init, key_loop = jax.random.split(key)

    def round_(state, r):
      key_ask, key_tell = jax.random.split(jax.random.fold_in(key_loop, r))
      encs, state = searcher.ask(key_ask, state)
      rows = jax.vmap(index)(encs)
      state, _ = searcher.tell(key_tell, state, encs, scores[rows])
      return state, rows

    state0 = searcher.init(key_init)
    q = jax.eval_shape(lambda s: searcher.ask(key_loop, s)[0], state0).shape[0]
    _, rows = jax.lax.scan(round_, state0, jnp.arange(-(-queries // q)))
    return rows.reshape(-1)[:queries]

  return run


def picks(rows: np.ndarray, objective: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray]:
  """Per run: the row picked (the best ``objective`` among the first ``budget`` distinct rows
  proposed, ties to the earliest) and whether the run reached ``budget`` distinct rows."""
  out, reached = np.empty(len(rows), np.int64), np.empty(len(rows), bool)
  for r, seq in enumerate(rows):
    _, first = np.unique(seq, return_index=True)
    distinct = seq[np.sort(first)][:budget]  # in order of first proposal
    reached[r] = len(distinct) >= budget
    out[r] = distinct[int(np.argmax(objective[distinct]))]  # argmax: the earliest among ties
  return out, reached


def mean_se(x: np.ndarray) -> tuple[float, float]:
  x = np.asarray(x, np.float64)
  return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def main():
  configure_cpu_runtime()  # safe XLA:CPU flags, before jax starts (docs/lowering.md)
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true",
                      help=f"8 runs, budgets 8 and 16, searchers {', '.join(QUICK)} (unless --searchers)")
  parser.add_argument("--runs", type=int, default=None, help="runs per searcher (default 100)")
  parser.add_argument("--gp-runs", type=int, default=None,
                      help=f"runs of turbo / casmopolitan (default: {GP_RUNS}, or --runs if smaller)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--searchers", default=None, help="comma-separated subset of SETTINGS (default: all)")
  parser.add_argument("--table", default=None, help=f"the CSV (default: {FILE} in the shared data folder)")
  args = parser.parse_args()
  # Synchronous CPU dispatch, as bench/trbo_nb201.py: long calls hung with asynchronous dispatch.
  jax.config.update("jax_cpu_enable_async_dispatch", False)
  runs = args.runs or (8 if args.quick else 100)
  gp_runs = args.gp_runs
  budgets = BUDGETS[:2] if args.quick else BUDGETS
  labels = args.searchers.split(",") if args.searchers else list(QUICK if args.quick else SETTINGS)
  for label in labels:
    if label not in SETTINGS:
      raise SystemExit(f"error: --searchers: unknown {label!r}; choose from {', '.join(SETTINGS)}")

  path = args.table or shared_data_dir() / FILE
  try:
    table = DisWOTS1Table(path)
  except ValueError as e:
    print(json.dumps({"bench": "danas_table", "skipped": str(e)}))
    return
  t0 = time.perf_counter()
  space = get_space("s1_resnet")
  encs = enumerate_encodings(space.num_choices)  # row i = the student of mixed-radix index i
  names = [space.decode(e) for e in encs]
  kd, vanilla = table.values("kd_top1"), table.values("vanilla_top1")
  params = np.asarray([costs.model_costs(space, e, num_classes=100, flops=False).params for e in encs], np.float64)
  target = float(np.median(params))

  def soft(acc):
    return reward(acc, params, target=target, alpha=W, beta=W).astype(np.float64)

  kd_reward = soft(kd)
  objectives = {"kd": kd, "vanilla": vanilla, "kd_x_params": kd_reward, "vanilla_x_params": soft(vanilla)}
  print(f"table and params of {len(encs)} students in {time.perf_counter() - t0:.1f}s", file=sys.stderr)

  def best(v):
    return int(np.argmax(v))

  oracle = {
      "best_kd": {"arch": names[best(kd)], "kd_top1": kd[best(kd)]},
      "best_vanilla": {"arch": names[best(vanilla)], "kd_top1": kd[best(vanilla)],
                       "vanilla_top1": vanilla[best(vanilla)]},
      "reward": {"target_params": target, "w": W,
                 "best_kd_reward": {"arch": names[best(kd_reward)], "kd_top1": kd[best(kd_reward)],
                                    "params": params[best(kd_reward)], "kd_reward": kd_reward[best(kd_reward)]},
                 "best_vanilla_reward": {"arch": names[best(objectives["vanilla_x_params"])],
                                         "kd_top1": kd[best(objectives["vanilla_x_params"])],
                                         "params": params[best(objectives["vanilla_x_params"])],
                                         "kd_reward": kd_reward[best(objectives["vanilla_x_params"])]}},
      "mean_kd_top1": float(kd.mean()), "students": len(encs), "table": str(path)}
  print(json.dumps({"bench": "danas_table", "oracle": oracle}), flush=True)

  index = mixed_radix_index(space.num_choices)
  root = jax.random.key(args.seed)
  tables = {k: jnp.asarray(v, jnp.float32) for k, v in objectives.items()}
  for label in labels:
    name, kwargs, queries = SETTINGS[label]
    n = (gp_runs or min(GP_RUNS[name], runs)) if name in GP_RUNS else runs
    keys = jax.vmap(lambda r: jax.random.fold_in(root, r))(jnp.arange(n))
    searcher = with_dedup(get_searcher(name, space, **kwargs), space, capacity=64)
    run_all = jax.jit(jax.vmap(proposals_fn(searcher, index, queries), in_axes=(0, None)))
    t1 = time.perf_counter()
    compiled = run_all.lower(keys, tables["kd"]).compile()
    t2 = time.perf_counter()
    rows = {k: np.asarray(jax.block_until_ready(compiled(keys, v))) for k, v in tables.items()}
    t3 = time.perf_counter()
    print(f"{label}: compile {t2 - t1:.1f}s, 4 objectives x {n} runs x {queries} proposals {t3 - t2:.1f}s",
          file=sys.stderr)
    for budget in budgets:
      for objective, (a, b) in (("accuracy", ("kd", "vanilla")), ("reward", ("kd_x_params", "vanilla_x_params"))):
        arms = {}
        for arm, key in (("kd_scored", a), ("vanilla_scored", b)):
          pick, reached = picks(rows[key], objectives[key], budget)
          m, se = mean_se(kd[pick])
          arms[arm] = {"kd_top1_mean": round(m, 3), "kd_top1_se": round(se, 3),
                       "frac_oracle": round(float(np.mean(pick == best(objectives[key]))), 3),
                       "runs_short": int((~reached).sum()), "_pick": pick}
          if objective == "reward":
            pm, pse = mean_se(params[pick])
            rm, rse = mean_se(kd_reward[pick])
            arms[arm].update(params_mean=round(pm), params_se=round(pse), kd_reward_mean=round(rm, 3),
                             kd_reward_se=round(rse, 3))
        pa, pb = arms["kd_scored"].pop("_pick"), arms["vanilla_scored"].pop("_pick")
        diff = kd[pa] - kd[pb]
        dm, dse = mean_se(diff)
        record = {"bench": "danas_table", "searcher": name, "setting": label, "budget": budget,
                  "objective": objective, **arms, "diff_kd_top1_mean": round(dm, 3), "diff_kd_top1_se": round(dse, 3),
                  "frac_kd_better": round(float(np.mean(diff > 0)), 3),
                  "frac_vanilla_better": round(float(np.mean(diff < 0)), 3),
                  "runs": n, "queries": queries, "settings": kwargs, "seed": args.seed,
                  "seconds": round(t3 - t1, 1), "backend": jax.default_backend()}
        if objective == "reward":
          rd = kd_reward[pa] - kd_reward[pb]
          record.update(diff_kd_reward_mean=round(float(rd.mean()), 3),
                        diff_kd_reward_se=round(mean_se(rd)[1], 3), target_params=target, w=W)
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
  main()
