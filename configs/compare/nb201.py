"""One teacher, many methods, one table: the common-space comparison on NAS-Bench-201 cells (CIFAR-10).

Every arm searches the same masked NB201 cell space (C=8, one cell per stage: every cell in ONE compiled
program, ``compute.specialize=False``) on the same data (the shared CIFAR-10 npz files, resized to 16x16: 5,000
training images, 2,000 validation images (10 % of the pool), 2,000 test images), for the same teacher (ResNet-20,
1,000 steps, trained once in
``<workdir>/teacher`` and loaded by every arm), under the same parameter budget (``constraint.max_params`` =
40,000: about 60 % of random cells fit) and the same number of scored candidates (``rounds x num_asks``).
Arms (:data:`jdanas.benchmarks.compare.ARMS`): random, regularized_evolution, trade (CASMOPOLITAN), akd (PPO)
and teacher_agnostic score candidates by a short run (40 steps of 64; with KD from the teacher except
teacher_agnostic), diswot by its training-free score, best_by_params by size alone. Every arm's pick is then
trained with the ``final`` recipe (200 steps of 64, RepDistiller KD at T=4) and without KD, ``final.seeds``
seeds, all picks of a seed in one population.

  python bench/compare_methods.py --workdir /tmp/compare                       # this config (CPU, <= 45 min)
  python bench/compare_methods.py --quick --workdir /tmp/compare_quick         # :quick, minutes

Variants: none (the CPU study), ``quick`` (tiny sizes: checks the harness, results meaningless), ``gpu`` (one
accelerator, ``bench/device_check.py``'s study ``compare_gpu``: NB201 at full width (C=16, 5 cells a stage) on
32x32 images, all 18,000 training images of the shared subset, a 6,000-step teacher, 200-step short runs and 64
scored candidates per arm, a 2,000-step final recipe; sizes are a first guess that the first lent accelerator's
timings set). The CPU study's
sizes come from measured stage times (docs/compare.md, "Harness timings"): 16x16 images and a 200-step final recipe
keep the estimated total under 45 minutes on the loaded 2-core CPU.
"""
import ml_collections

from configs import common

ARMS = ("random", "regularized_evolution", "diswot", "trade", "akd", "teacher_agnostic", "best_by_params")


def searcher_kwargs(num_asks: int, evaluations: int) -> dict:
  """The kwargs of every searcher an arm uses, for ``num_asks`` proposals a round and ``evaluations`` in all."""
  return {
      "random": dict(num_asks=num_asks),
      "regularized_evolution": dict(num_asks=num_asks, population_size=max(2, evaluations // 2),
                                    tournament_size=max(2, evaluations // 6)),
      "diswot_evolution": dict(num_asks=num_asks, population_size=max(2, evaluations // 2),
                               tournament_size=max(2, evaluations // 6), max_mutations=2),
      # bench/trbo_nb201.py's NB201 settings, with the initial design one round
      "casmopolitan": dict(num_asks=num_asks, n_init=num_asks, radius_init=3, failure_tolerance=10,
                           num_candidates=128, fit_steps=10, learning_rate=0.1, global_model=True,
                           categorical_kernel="overlap_sum"),
      "ppo": dict(num_asks=num_asks),
  }


def get_config(arg: str | None = None):
  """``arg``: None for the CPU study, ``"quick"`` for the tiny one (tests, the notebook), ``"gpu"`` for one
  accelerator."""
  v = common.variant(arg, "configs/compare/nb201.py", ("quick", "gpu"))
  quick = v == "quick"
  base = common.override(
      common.base(),
      data=dict(name="npz", data_dir=common.shared_data_dir(), path="cifar10_train_subset.npz",
                test_path="cifar10_test.npz", train_limit=5000, test_limit=2000, image_size=16),
      teacher=dict(name="resnet20", train=common.recipe(1000, 64, 0.1, 5e-4)),
      space=dict(name="nb201_masked", kwargs=dict(channels=8, num_cells=1)),
      evaluator=dict(name="short_kd", short_kd=common.recipe(40, 64, 0.1, 5e-4),
                     zero_cost=dict(proxy="diswot", batch_size=64, init="gaussian", relation_tap="pre_pool",
                                    teacher_init="random", semantic_mismatch="class_gram")),
      constraint=dict(max_params=40_000),
      search=dict(rounds=4, top_k=1),
      compute=dict(specialize="false"))  # one masked program for every cell
  rounds, num_asks, final_steps, final_batch, seeds = 4, 4, 200, 64, 3
  if quick:
    base.data.update(train_limit=600, test_limit=300)
    base.teacher.train.update(steps=20, batch_size=32)
    base.evaluator.short_kd.update(steps=4, batch_size=32)
    base.evaluator.zero_cost.batch_size = 16
    rounds, num_asks, final_steps, final_batch, seeds = 2, 2, 10, 32, 3
    base.teacher.require_above_chance = False  # 20 steps: the harness is checked, not the teacher
  if v == "gpu":
    base.data.update(train_limit=0, image_size=0)  # 32x32, every training image of the subset
    base.teacher.train.update(steps=6000, batch_size=128)
    base.space.kwargs = dict(channels=16, num_cells=5)
    base.evaluator.short_kd.update(steps=200, batch_size=128)
    base.constraint.max_params = 800_000
    base.compute.pop_chunk = 8  # bench/device_check.py's POP_CHUNK: full-size masked cells, batch 128
    rounds, num_asks, final_steps, final_batch, seeds = 4, 16, 2000, 128, 3
  base.search.rounds = rounds
  # The arm's own final phase (pipeline.run's, top_k=1): a short check of the pick, the short run's recipe; the
  # comparison's final stage is the harness's (``final`` below).
  base.final = dict(base.evaluator.short_kd.to_dict(), baselines=(), init="random", seeds=1)
  return ml_collections.ConfigDict(dict(
      name="nb201" + (f"_{v}" if v else ""),
      base=base,
      num_asks=num_asks,
      rounds=rounds,
      searchers=searcher_kwargs(num_asks, rounds * num_asks),
      arms=ARMS,
      final=dict(common.recipe(final_steps, final_batch, 0.1, 5e-4), seeds=seeds)))
