"""DaSS search on an unseen task: teacher -> meta-trained predictor, adapted once -> top-k of a pool -> KD from a remapped init.

Lee, An, Kim & Hwang, "Meta-prediction Model for Distillation-Aware NAS on Unseen Datasets", ICLR 2023;
docs/methods/dass.md. Needs a predictor from ``configs/dass_meta_train.py`` (same variant, hence the
same space): ``--config.evaluator.predictor.path=<meta workdir>/predictor`` (a missing folder is one
``error:`` line before compute).

Pipeline: the teacher is the DaSS space's full network (``teacher.name='space'``) trained on the new
task (or ``teacher.path``: a folder saved by such a run) -> the ``predictor`` evaluator adapts the
predictor ONCE on the teacher (its architecture, functional embedding and validation accuracy) and
predicts the KD accuracy of every proposal from its remapped functional embedding -> ``random`` proposes
one pool of ``num_asks`` distinct students in one round, so the final phase trains DaSS's top-k of the
pool -> the top ``search.top_k`` are KD-trained (``kd.loss='dass'``: alpha-KD, alpha = 0.5, T = 6) from the
teacher's remapped weights (``final.init='remap'``), the best by validation accuracy is exported.

Run:       python run.py --config configs/dass_search.py:runlocal --workdir /tmp/dass_search \\
             --config.evaluator.predictor.path=/tmp/dass_meta/predictor
Variants:  (none)     accelerator-sized, the paper's space at 32x32; ``dataset=<name>`` picks the unseen
                      task among DATASETS (TFDS names: cifar10 by default; caltech_birds2011, cars196,
                      dtd, quickdraw_bitmap are the paper's kind of unseen dataset); every image is
                      resized to the space's input size as it is read (``data.image_size``, bilinear)
                      and grey images become RGB (``data.rgb``), since the predictor's embeddings are
                      those of 32x32 RGB inputs.
           runlocal   CPU-sized, the shared npz CIFAR-10 restricted to classes 7-9 (never seen by
                      dass_meta_train.py:runlocal), a pool of 64 students, top 2 KD-trained 300 steps.
           smoke      tiny sizes for the tests.
Measured (wall time, the chosen student with and without KD): docs/methods/dass.md.
"""
from configs import common
from configs import dass_meta_train as meta_config

UNSEEN_CLASSES = (7, 8, 9)  # runlocal: CIFAR-10 classes the runlocal meta-training never saw
DATASETS = ("cifar10", "caltech_birds2011", "cars196", "dtd", "quickdraw_bitmap")


def get_config(arg: str | None = None):
  """``arg``: None / ``"dataset=<name>"`` (full), ``"runlocal"`` or ``"smoke"``."""
  o = common.parse_variant(arg, "configs/dass_search.py", ("runlocal", "smoke"), {"dataset": DATASETS}, exclusive=True)
  if o["dataset"] and (o["runlocal"] or o["smoke"]):
    raise ValueError("configs/dass_search.py: dataset=<name> is a variant of the full config (the CPU variants use "
                     "the shared CIFAR-10 npz)")
  c = common.override(
      common.base(),
      data=dict(name=o["dataset"] or "cifar10", image_size=meta_config.FULL_SPACE["image_size"], rgb=True),
      teacher=dict(name="space", train=common.recipe(4000, 128, 0.1, 3e-5)),
      space=dict(name="dass_resnet", kwargs=dict(meta_config.FULL_SPACE)),
      searcher=dict(name="random", kwargs=dict(num_asks=1000, capacity=2048)),
      evaluator=dict(name="predictor", predictor=dict(path="", adapt=True, chunk=32)),
      kd=dict(loss="dass", temperature=6.0),
      search=dict(rounds=1, top_k=5),
      final=dict(common.recipe(8000, 128, 0.05, 3e-5), init="remap"))
  if o["runlocal"]:
    meta_config.shared_npz(c, UNSEEN_CLASSES, train_limit=6000)
    c.space.kwargs = dict(meta_config.RUNLOCAL_SPACE)
    c.teacher.train.update(steps=300, batch_size=32)
    c.searcher.kwargs.update(num_asks=64, capacity=128)
    c.search.top_k = 2
    c.final.update(steps=300, batch_size=32)
    c.compute.strategy = "loop"
  elif o["smoke"]:
    meta_config.shared_npz(c, UNSEEN_CLASSES[:2], train_limit=700, test_limit=200)
    c.space.kwargs = dict(meta_config.SMOKE_SPACE)
    c.teacher.train.update(steps=4, batch_size=16)
    c.teacher.require_above_chance = False  # 4 steps: the pipeline, not the teacher, is under test
    c.searcher.kwargs.update(num_asks=6, capacity=16)
    c.search.top_k = 2
    c.final.update(steps=2, batch_size=16)
    c.compute.strategy = "loop"
  return c
