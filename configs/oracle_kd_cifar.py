"""Oracle-KD NAS on CIFAR: an ensemble teacher, a KDAS search with the oracle KD loss, final training
of the found student with the same loss, report and export.

Kang, Mun & Han, "Towards Oracle Knowledge Distillation with Neural Architecture Search" (AAAI
2020); the reading of what the paper leaves open is described in docs/methods/oracle_kd.md.

Pipeline:

1. Teacher: an ensemble of M ResNet-32 (``teacher.ensemble = 3``, member ``i`` trained from
   ``fold_in(seed, i)``); its members' accuracies and oracle statistics (all right / none right)
   go to ``report.json`` under ``teacher.ensemble``.
2. Search: the KDAS supernet (``kdas_masked``: the ResNet-32 backbone plus one add-on layer per
   stage, 7 ops and two connection bits each) with the ENAS protocol: the ``reinforce`` controller
   proposes children, the ``one_shot`` evaluator trains the shared weights on them with the oracle
   KD loss (``kd.loss = "oracle"``, L_OD) and scores them with the shared weights on held-out data.
   A memory budget is either a constraint (``constraint.max_params``) or a penalty
   (``evaluator.reward`` with ``latency_model = "params"``: the score becomes the one-shot
   accuracy x min(1, T / params), the hard form of AKD's reward; off by default). With
   ``evaluator.reward.alpha > 0`` the budget is a size target (a child under T loses reward too:
   the best child near T); searching with several targets T gives the accuracy-vs-size curve
   (``bench/oracle_kd.py --part search --alpha 1``; docs/methods/oracle_kd.md).
3. Final: the best ``top_k`` children (by their score with the final shared weights: ENAS's derive step,
   ``evaluator.one_shot.derive = 100``; 0 in the variants) are trained from scratch with L_OD; the best by validation
   accuracy is exported and also trained without KD. The backbone (all add-ons identity, i.e. the
   plain ResNet-32) is trained with the same L_OD recipe (``final.baselines``), so the report lists
   the student, the ensemble and the backbone with their params.

Data: CIFAR-100 through TFDS by name (prepare it once: ``tfds build cifar100 --data_dir DIR
--file_format array_record``, then ``--config.data.data_dir=DIR``):

  python run.py --config configs/oracle_kd_cifar.py --workdir /tmp/oracle_kd --config.data.data_dir=DIR

Variants:

* full (no option): sized for an accelerator; not run here (2-core CPU machines), no result claimed.
* ``runlocal``: CPU-sized, on the shared CIFAR-10 npz (``JDANAS_DATA_DIR``, default ../shared/data):
  5,000 training images, 3 x ResNet-8 members (300 steps each), the search backbone of
  ``bench/oracle_kd.py`` (ResNet-8 with two blocks in stage 3) with one add-on after stage 3 (28
  architectures), 4 rounds of 4 children with 30 shared-weight steps each, 300-step final training
  of the best child (with and without L_OD) and of the backbone::

    timeout 1800 python run.py --config configs/oracle_kd_cifar.py:runlocal --workdir /tmp/oracle_kd_local

  Measured (wall time, the chosen student, the backbone and the ensemble): docs/methods/oracle_kd.md
  and docs/benchmarks.md, "Oracle KD on a small backbone".
* ``gpu``: the full variant's data, networks and space (CIFAR-100, 3 x ResNet-32 members, the ResNet-32
  backbone with an add-on after every stage) with schedules cut to about ten minutes of one GPU: members
  5,000 steps, 30 rounds of 10 children x 100 shared-weight steps, derive 100, top 3 trained 5,000 steps. Not
  run yet (no result claimed): its command, on the CIFAR-10 files a lent machine can receive, is
  ``oracle_kd_gpu`` in ``bench/device_check.py --plan``.
* ``smoke``: tiny nets and schedules on the embedded digits (seconds; for tests; results meaningless).
"""
import os

from configs import common

VARIANTS = ("runlocal", "gpu", "smoke")


def backbone_arch(num_addons: int) -> str:
  """The KDAS architecture whose add-ons are all identity without extra connections: the plain
  backbone network."""
  return "|".join(["identity:00"] * num_addons)


def get_config(arg: str | None = None):
  """``arg``: nothing (CIFAR-100 via TFDS, accelerator-sized), ``"runlocal"``, ``"gpu"`` or ``"smoke"``."""
  v = common.variant(arg, "configs/oracle_kd_cifar.py", VARIANTS)
  positions = (1, 2, 3)
  c = common.override(
      common.base(),
      data=dict(name="cifar100"),
      teacher=dict(name="resnet32", ensemble=3, train=common.recipe(64_000, 128, 0.1, 5e-4)),
      space=dict(name="kdas_masked", kwargs=dict(backbone="resnet32", positions=positions)),
      searcher=dict(name="reinforce", dedup=False, kwargs=dict(num_asks=10)),
      # derive = 100: ENAS's derive step (docs/configs.md): 100 children sampled from the final controller plus the
      # ledger's distinct children, all scored with the final shared weights; the top_k by that score are trained.
      # At most one held-out scoring per ledger row + 100, no training step: less than the search's own scoring.
      evaluator=dict(name="one_shot", one_shot=dict(common.recipe(400, 128, 0.05, 1e-4), val_examples=5000,
                                                    bn="running", derive=100),
                     # The memory budget: a penalty (off here) or a constraint (0 = none). The penalty is AKD's
                     # reward on the params model: accuracy x (params / T)^w, hard form alpha = 0, beta = -1
                     # (accuracy x min(1, T / params)); e.g. --config.evaluator.reward.latency_model=params
                     # --config.evaluator.reward.target=2e5. One target per point of the accuracy-vs-size curve;
                     # add --config.evaluator.reward.alpha=1 to make T a size target (an upper bound alone may
                     # never bind: one-shot weights rank parameter-free add-ons first at small scale).
                     reward=dict(latency_model="", target=0.0, alpha=0.0, beta=-1.0)),
      # L_OD: RepDistiller's weights (0.1 CE + 0.9 T^2 KL) at T = 4; the paper gives neither.
      kd=dict(loss="oracle"),
      search=dict(rounds=150, top_k=3),
      final=dict(common.recipe(64_000, 128, 0.1, 5e-4), baselines=[backbone_arch(len(positions))]))
  if v == "runlocal":
    c.data.update(name="npz", data_dir=os.environ.get("JDANAS_DATA_DIR", "../shared/data"),
                  path="cifar10_train_subset.npz", test_path="cifar10_test.npz", train_limit=5000, test_limit=2000)
    c.teacher.name = "resnet8"
    c.teacher.train.update(steps=300, batch_size=64)
    positions = (3,)  # ResNet-8 with two blocks in stage 3 (bench/oracle_kd.py's search backbone)
    c.space.kwargs = dict(backbone="resnet8", depths=(1, 1, 2), positions=positions)
    c.searcher.kwargs = dict(num_asks=4)
    c.evaluator.one_shot.update(steps=30, batch_size=64, val_examples=500, derive=0)
    c.search.update(rounds=4, top_k=1)
    common.override(c, final=dict(steps=300, batch_size=64, baselines=[backbone_arch(len(positions))]))
  elif v == "gpu":
    c.teacher.train.update(steps=5000)
    c.evaluator.one_shot.update(steps=100)
    c.search.update(rounds=30)
    c.final.update(steps=5000)
  elif v == "smoke":
    c.data.name = "digits"
    c.teacher.update(name="resnet8", ensemble=2)
    c.teacher.train.update(steps=3, batch_size=32, augment=False)
    positions = (1, 3)
    c.space.kwargs = dict(backbone="resnet8", depths=(2, 1, 2), widths=(4, 4, 8), stem=4, positions=positions)
    c.searcher.kwargs = dict(num_asks=2)
    c.evaluator.one_shot.update(steps=3, batch_size=32, augment=False, val_examples=0, derive=0)
    c.search.update(rounds=2, top_k=1)
    common.override(c, final=dict(steps=2, batch_size=32, augment=False, baselines=[backbone_arch(len(positions))]))
  return c
