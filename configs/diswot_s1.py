"""DisWOT on its S1 space (64 CIFAR ResNets, per-stage depths in {1,3,5,7}) on CIFAR-100:
score -> search -> KD-train the winner.

* Score: the training-free DisWOT proxy (``evaluator.name="zero_cost"``, ``evaluator.zero_cost.proxy="diswot"``,
  :mod:`jdanas.scoring`): a Gaussian-initialised teacher (``teacher_init="random"``, the trained
  teacher's architecture re-initialised, as DisWOT scores) and each student on one fixed batch of
  ``evaluator.zero_cost.batch_size`` training images; relation term on ``pre_pool``.
* Search: ``diswot_evolution`` (keep the best, mutate 1-2 stage depths of a tournament winner),
  deduplicated, with a parameter budget checked for every child: ``max_params=650_000`` excludes
  the deepest students (``777`` 667 k, ``577`` 658 k at 100 classes; DisWOT's best KD student
  ``557`` has 621 k). Space: ``s1_resnet_masked`` (depths as a traced input; one compiled
  program for all 64 students).
* Final: the top 3 by score are KD-trained (RepDistiller loss 0.1 CE + 0.9 T^2 KL, T=4) from the
  trained teacher (ResNet-110 as in DisWOT's S1 experiments), the best by validation accuracy is
  exported and also trained without KD.
* Variant ``distiller`` ("DisWOT as a distiller", docs/methods/diswot.md): adds the SP relation loss
  (weight 3000, RepDistiller's SP beta used by DisWOT's scripts) and the ICKD semantic loss
  (weight 1; not recoverable from DisWOT's code, a free choice) on ``pre_pool`` to the KD loss.

Full run (CIFAR-100 through TFDS; prepare it once with ``tfds build cifar100 --data_dir DIR
--file_format array_record``)::

  python run.py --config configs/diswot_s1.py --workdir /tmp/diswot_s1 --config.data.data_dir=DIR

It is sized for an accelerator and has not been run here (2-core CPU machines), so no result is
claimed. The final schedule is 240 epochs of batch 64 (Tian, Krishnan & Isola, "Contrastive Representation Distillation",
ICLR 2020: RepDistiller's CIFAR recipe) with a
cosine instead of a step decay.

``:runlocal``: CPU-sized, on the shared CIFAR-100 npz subsets (486 training images, 916 test
images; ``JDANAS_DATA_DIR`` or ``../shared/data``): teacher ResNet-8 (60 steps of 32), full-width
S1 students, 3 rounds of 8 scored on 32 images, final 60 steps of 32 for the top 2::

  python run.py --config configs/diswot_s1.py:runlocal --workdir /tmp/diswot_s1_local

Variant ``table`` (with or without ``runlocal``): every proposal is scored by DisWOT's *measured*
CIFAR-100 top-1 (``evaluator.name="tabular"``, :mod:`jdanas.benchmarks.diswot_s1`; percent top-1;
``--config.evaluator.tabular.column=vanilla_top1`` scores by the accuracy trained alone, i.e. NAS
then KD) instead of the proxy; 4 rounds of 8 distinct students. Only the search reads the table: the
teacher and the final KD training run as configured. ``bench/danas_table.py`` benchmarks every
searcher on the table without training anything::

  python run.py --config configs/diswot_s1.py:runlocal,table --workdir /tmp/diswot_s1_table

With only 437 training images of 100 classes every accuracy is near chance: the variant checks
the pipeline, it does not reproduce DisWOT. Measured wall times: docs/benchmarks.md, "DisWOT configs".
"""
from configs import common


def get_config(arg: str | None = None):
  """``arg``: comma-separated variants, ``runlocal`` (CPU-sized), ``distiller`` and/or ``table``."""
  variants = common.parse_variant(arg, "configs/diswot_s1.py", ("runlocal", "distiller", "table"))
  c = common.override(
      common.base(),
      data=dict(name="cifar100"),
      teacher=dict(name="resnet110", train=common.recipe(187_500, 64, 0.05, 5e-4)),
      space=dict(name="s1_resnet_masked", kwargs=dict()),
      searcher=dict(name="diswot_evolution",
                    kwargs=dict(num_asks=8, population_size=16, tournament_size=4, max_mutations=2)),
      # zero_cost scores every proposal; short_kd (--config.evaluator.name=short_kd) is the trained check.
      evaluator=dict(name="zero_cost",
                     zero_cost=dict(proxy="diswot", batch_size=64, init="gaussian", relation_tap="pre_pool",
                                    teacher_init="random", semantic_mismatch="class_gram"),
                     short_kd=common.recipe(780, 64, 0.05, 5e-4),
                     # DisWOT's measured ground truth (kd_top1 or vanilla_top1, percent): variant ``table``
                     tabular=dict(table=common.shared_data_dir() + "/diswot_s1_cifar100_vanilla_vs_kd.csv",
                                  column="kd_top1")),
      constraint=dict(max_params=650_000),
      search=dict(rounds=8, top_k=3),
      final=common.recipe(187_500, 64, 0.05, 5e-4))
  if variants["table"]:  # scores from DisWOT's measured table; 4 rounds of 8 = half of the 64 students
    c.evaluator.name = "tabular"
    c.search.rounds = 4
  if variants["distiller"]:
    c.kd.update(semantic_weight=1.0, relation_weight=3000.0)
  if variants["runlocal"]:
    # 437 images of 100 classes: the teacher ends near chance; this variant checks the wiring only.
    c.teacher.require_above_chance = False
    c.data.update(name="npz", data_dir=common.shared_data_dir(), path="cifar100_train_subset.npz",
                  test_path="cifar100_test_subset.npz")
    c.teacher.name = "resnet8"
    c.teacher.train.update(steps=60, batch_size=32)
    c.evaluator.zero_cost.batch_size = 32
    c.evaluator.short_kd.update(steps=5, batch_size=32)
    c.compute.update(strategy="loop", specialize="false")  # masked: one P=1 program for all
    c.search.update(rounds=3, top_k=2)
    c.final.update(steps=60, batch_size=32)
  return c
