"""TRADE on CIFAR-10: trust-region BO over several architecture families under a params budget,
short-KD fitness from a ResNet-56 teacher, final KD of the best against predefined students.

Kim, Myeong & Yun, "Revisiting Architecture-aware Knowledge Distillation: Smaller Models and Faster
Search" (ICML 2022 HAET workshop, https://arxiv.org/abs/2206.13130); the space and the BO follow
the reconstruction described in docs/methods/trade.md.

Data: CIFAR-10 through TFDS by name (prepare it once: ``tfds build cifar10 --data_dir DIR
--file_format array_record``, then ``--config.data.data_dir=DIR``), or local npz files:

  python run.py --config configs/trade_cifar10.py --workdir /tmp/trade \\
    --config.data.name=npz --config.data.data_dir=../shared/data \\
    --config.data.path=cifar10_train_subset.npz --config.data.test_path=cifar10_test.npz

Space: ``trade`` (ResNet, WRN, MobileNetV2, ShuffleNetV2, VGG-BN, ViT, ConvMixer with their knobs;
:mod:`jdanas.spaces.trade`). Budget: ``constraint.max_params`` = 700,000 (WRN-16-2 and MobileNetV2
x0.5 size), enforced as a searcher constraint (a params table of every architecture, so the
searcher only proposes students within budget). Searcher: CASMOPOLITAN (``casmopolitan``:
Hamming ball on the family, TuRBO box on the ordinal knobs), 8 proposals a round, fitness =
validation accuracy after a 1-epoch KD run (RepDistiller loss, T=4). The best 3 are KD-trained for
30 epochs; the best by validation accuracy is exported and compared with the predefined students of
``final.baselines`` (ResNet-20, ResNet-32, WRN-16-2, MobileNetV2 x0.5), KD-trained with the same
recipe and reported side by side in ``report.json`` / ``report.md``.

Variants (``get_config("runlocal")``, ``get_config("runlocal,searcher=regularized_evolution")``;
the searcher option picks that searcher with kwargs that fit it):

* full: sized for an accelerator; not run here (2-core CPU machines, no GPU), so no result is
  claimed.
* ``runlocal``: CPU-sized: 5,000 training images, ResNet-20 teacher (400 steps), the seven families
  with small knob grids (24 architectures), budget 300,000 params, 2 rounds of 4, 40-step short KD,
  300-step final KD of the best, baselines ResNet-20, WRN-16-1 and a small MobileNetV2.

Measured (wall times, the chosen student against the baselines, with and without KD): docs/benchmarks.md,
"TRADE at reduced scale".
"""
from configs import common

SEARCHER_KWARGS = {
    "casmopolitan": dict(num_asks=8, n_init=16),
    "regularized_evolution": dict(num_asks=8, population_size=16, tournament_size=4),
    "random": dict(num_asks=8),
}
RUNLOCAL_SEARCHER_KWARGS = {
    "casmopolitan": dict(num_asks=4, n_init=4, num_candidates=64, fit_steps=20),
    "regularized_evolution": dict(num_asks=4, population_size=4, tournament_size=2),
    "random": dict(num_asks=4),
}
# Small grids for the CPU variant (every family present; 24 architectures).
RUNLOCAL_KNOBS = (
    ("resnet", (("blocks", (1, 2, 3)), ("width", (0.5, 1.0)))),
    ("wrn", (("depth", (10, 16)), ("widen", (1,)))),
    ("mobilenetv2", (("width", (0.25, 0.5)), ("depth", (0.5,)), ("expansion", (3, 6)))),
    ("shufflenetv2", (("width", (0.5,)),)),
    ("vgg", (("config", (8,)), ("width", (0.25,)))),
    ("vit", (("patch", (4,)), ("dim", (64,)), ("depth", (4,)), ("heads", (2, 4)), ("mlp", (2,)))),
    ("convmixer", (("depth", (4, 8)), ("dim", (64, 128)), ("patch", (2, 4)), ("kernel", (5,)))),
)


def get_config(arg: str | None = None):
  """``arg``: comma-separated options ``runlocal`` and ``searcher=<name>`` (default casmopolitan)."""
  o = common.parse_variant(arg, "configs/trade_cifar10.py", ("runlocal",), {"searcher": tuple(SEARCHER_KWARGS)})
  searcher = o["searcher"] or "casmopolitan"
  c = common.override(
      common.base(),
      data=dict(name="cifar10"),
      teacher=dict(name="resnet56", train=common.recipe(20_000, 128, 0.1, 5e-4)),
      space=dict(name="trade", kwargs=dict()),
      searcher=dict(name=searcher, kwargs=dict(SEARCHER_KWARGS[searcher])),
      evaluator=dict(name="short_kd", short_kd=common.recipe(350, 128, 0.05, 5e-4)),
      constraint=dict(max_params=700_000),
      search=dict(rounds=30, top_k=3),
      final=dict(common.recipe(10_500, 128, 0.05, 5e-4),
                 baselines=["resnet20", "resnet32", "wrn_16_2", "mobilenetv2_half"]))
  if o["runlocal"]:
    c.data.update(train_limit=5000, test_limit=2000)
    c.teacher.name = "resnet20"
    c.teacher.train.update(steps=400, batch_size=64)
    c.space.kwargs = dict(knobs=RUNLOCAL_KNOBS)
    c.searcher.kwargs = dict(RUNLOCAL_SEARCHER_KWARGS[searcher])
    c.constraint.max_params = 300_000
    c.evaluator.short_kd.update(steps=40, batch_size=64)
    c.search.update(rounds=2, top_k=1)
    common.override(c, final=dict(steps=300, batch_size=64,
                                  baselines=["resnet20", "wrn_16_1", "mobilenetv2(width=0.25,depth=0.5,expansion=3)"]))
  return c
