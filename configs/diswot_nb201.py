"""DisWOT on NAS-Bench-201 cells on CIFAR-100: score -> search -> KD-train the winner.

* Score: the training-free DisWOT proxy (``evaluator.name="zero_cost"``, ``evaluator.zero_cost.proxy="diswot"``,
  :mod:`jdanas.scoring`) between a Gaussian-initialised teacher (``teacher_init="random"``: the
  trained teacher's architecture, ResNet-56 as in DisWOT's NB201 CIFAR-100 runs, re-initialised)
  and each cell's network on one fixed batch of ``evaluator.zero_cost.batch_size`` training images. The
  masked NB201 space scores every cell with one compiled program.
* Search: ``diswot_evolution`` (population 36, tournament 8 as DisWOT's NB201 REA; mutate 1-2
  edges; the worst is dropped) for 125 rounds of 8 = 1,000 proxy evaluations (DisWOT's budget),
  deduplicated. DisWOT's REA caps FLOPs at 100 M but checks only its initial population (the
  searched DisWOT cell itself has about 125 M MACs); NB201 FLOPs are not additive per edge (dead
  edges are removed by XLA), so jdanas budgets params here, checked for every child:
  ``max_params=1_000_000`` at C=16, N=5 and 100 classes keeps cells with at most 3 of 6 edges
  ``nor_conv_3x3`` (0.08 M + 0.24 M per 3x3 edge), DisWOT's cell (0.86 M) included.
* Final: the top 3 by score are KD-trained from the trained teacher (RepDistiller loss, T=4,
  240 epochs of batch 64, cosine decay; see docs/methods/diswot.md) and the best by validation accuracy is
  exported, with a no-KD comparison. Variant ``distiller`` adds the DisWOT distiller terms
  (SP weight 3000, ICKD weight 1 on ``pre_pool``; see configs/diswot_s1.py).

Full run (CIFAR-100 through TFDS; ``tfds build cifar100 --data_dir DIR --file_format array_record``)::

  python run.py --config configs/diswot_nb201.py --workdir /tmp/diswot_nb201 --config.data.data_dir=DIR

Sized for an accelerator; not run here (2-core CPU machines), so no result is claimed.

``:runlocal``: CPU-sized, on the shared CIFAR-100 npz subsets (``JDANAS_DATA_DIR`` or
``../shared/data``): NB201 C=8 with one cell per stage (budget ``max_params=62_000``: at most 3
``nor_conv_3x3`` edges), teacher ResNet-8 (60 steps of 32), 3 rounds of 8 scored on 32 images,
final 60 steps of 32 for the top 2::

  python run.py --config configs/diswot_nb201.py:runlocal --workdir /tmp/diswot_nb201_local

With 437 training images of 100 classes accuracies are near chance: the variant checks the
pipeline, it does not reproduce DisWOT. Measured wall times: docs/benchmarks.md, "DisWOT configs".
"""
from configs import common


def get_config(arg: str | None = None):
  """``arg``: comma-separated variants, ``runlocal`` (CPU-sized) and/or ``distiller``."""
  variants = common.parse_variant(arg, "configs/diswot_nb201.py", ("runlocal", "distiller"))
  c = common.override(
      common.base(),
      data=dict(name="cifar100"),
      teacher=dict(name="resnet56", train=common.recipe(187_500, 64, 0.05, 5e-4)),
      space=dict(name="nb201_masked", kwargs=dict(channels=16, num_cells=5)),
      searcher=dict(name="diswot_evolution",
                    kwargs=dict(num_asks=8, population_size=36, tournament_size=8, max_mutations=2)),
      # zero_cost scores every proposal; short_kd (--config.evaluator.name=short_kd) is the trained check.
      evaluator=dict(name="zero_cost",
                     zero_cost=dict(proxy="diswot", batch_size=64, init="gaussian", relation_tap="pre_pool",
                                    teacher_init="random", semantic_mismatch="class_gram"),
                     short_kd=common.recipe(780, 64, 0.05, 5e-4)),
      constraint=dict(max_params=1_000_000),
      search=dict(rounds=125, top_k=3),
      final=common.recipe(187_500, 64, 0.05, 5e-4))
  if variants["distiller"]:
    c.kd.update(semantic_weight=1.0, relation_weight=3000.0)
  if variants["runlocal"]:
    # 437 images of 100 classes: the teacher ends near chance; this variant checks the wiring only.
    c.teacher.require_above_chance = False
    c.data.update(name="npz", data_dir=common.shared_data_dir(), path="cifar100_train_subset.npz",
                  test_path="cifar100_test_subset.npz")
    c.teacher.name = "resnet8"
    c.teacher.train.update(steps=60, batch_size=32)
    c.space.kwargs = dict(channels=8, num_cells=1)
    c.searcher.kwargs.update(population_size=8, tournament_size=3)
    c.constraint.max_params = 62_000
    c.evaluator.zero_cost.batch_size = 32
    c.evaluator.short_kd.update(steps=5, batch_size=32)
    c.compute.update(strategy="loop", specialize="false")  # masked: one P=1 program for all
    c.search.update(rounds=3, top_k=2)
    c.final.update(steps=60, batch_size=32)
  return c
