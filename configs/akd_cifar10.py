"""AKD on CIFAR-10: a PPO controller over the MnasNet-style ``mobilenet`` space, rewarded with the
short-KD accuracy from the teacher times a latency term, then the final KD of the best students.

Liu, Jia, Tan, Vemulapalli, Zhu, Green & Wang, "Search to Distill: Pearls are Everywhere but not the
Eyes" (CVPR 2020, https://arxiv.org/abs/1911.09074); the reward is MnasNet's (Tan et al., CVPR
2019): ``R(m) = ACC_KD(m) x (LAT(m)/T)^w``, ``w = alpha`` if ``LAT <= T`` else ``beta``, soft form
``alpha = beta = -0.07`` (docs/methods/akd.md; :mod:`jdanas.rewards`).

Data: CIFAR-10 through TFDS by name, or the shared npz files::

  python run.py --config configs/akd_cifar10.py:runlocal --workdir /tmp/akd \\
    --config.data.data_dir=../shared/data

(``:runlocal`` already names ``cifar10_train_subset.npz`` / ``cifar10_test.npz`` in ``data_dir``, by
default ``$JDANAS_DATA_DIR`` or ``../shared/data`` next to the repository.)

Pipeline: teacher (ResNet-56 trained on the fly, or ``--config.teacher.path``) -> ``ppo`` controller
(:mod:`jdanas.searchers.controller`) proposing ``num_asks`` students a round -> each scored by the
reward of ``evaluator.reward`` (latency model ``measured``: :func:`jdanas.costs.latency_ms` on the
run's device, cached per architecture; or ``flops`` / ``params``) around the ``short_kd`` evaluator
-> the best ``top_k`` KD-trained with the full schedule -> report (ACC_KD, latency and reward of each
top student; Pareto plot against latency) and export.

Options (comma-separated: ``get_config("runlocal,nas_kd")``):

* ``runlocal``: CPU-sized: the shared npz files (5,000 training images), ResNet-8 teacher (400
  steps), ``base_width=0.25``, 2 rounds of 2 students, 30-step short KD, 300-step final KD of the
  best. Latency model ``flops`` (deterministic: a loaded shared CPU makes measured latencies
  noisy, see docs/methods/akd.md), target 4.2 MFLOPs (about the median of random architectures of
  that space). Every MnasNet-style student is its own network (its signature fixes every layer's
  shape, so only students that build the same network share programs) and compiles its own
  training, evaluation and FLOPs programs: about 110 s a student on the loaded 2-core CPU, nearly
  all of it compiling, which is why the search is so small.
* ``nas_kd``: AKD's "NAS + KD" baseline: the same search with the short run trained with plain
  cross-entropy (``evaluator.short_kd.distill=False``) in the reward; everything else (budget,
  latency target, final KD from the teacher) is equal.
* ``searcher=<name>``: another searcher of the registry (``reinforce``, ``random``, ...).
* ``latency=<model>``: ``measured``, ``flops`` or ``params`` (the target is then scaled to that unit
  by :data:`TARGETS`).

Measured end to end (wall time, the chosen student with and without KD): docs/methods/akd.md and
docs/benchmarks.md, "AKD, Oracle-KD NAS and DaSS at reduced scale".
"""
from configs import common

# Latency targets per model: the full variant (base_width 0.5) and runlocal (base_width 0.25), each
# about the median of 12 random architectures of that space at 32x32 (measured: see akd.md).
TARGETS = {
    "full": {"measured": 8.0, "flops": 12.6e6, "params": 630_000},
    "runlocal": {"measured": 4.0, "flops": 4.2e6, "params": 220_000},
}
SEARCHER_KWARGS = {
    "ppo": dict(num_asks=8),
    "reinforce": dict(num_asks=8),
    "random": dict(num_asks=8),
    "regularized_evolution": dict(num_asks=8, population_size=16, tournament_size=4),
}
RUNLOCAL_ASKS = 2
OPTIONS = ("runlocal", "nas_kd", "searcher=<name>", "latency=<measured|flops|params>")


def get_config(arg: str | None = None):
  """``arg``: comma-separated options (see the module docstring)."""
  o = common.parse_variant(arg, "configs/akd_cifar10.py", ("runlocal", "nas_kd"),
                           {"searcher": tuple(SEARCHER_KWARGS), "latency": tuple(TARGETS["full"])})
  searcher = o["searcher"] or "ppo"
  size = "runlocal" if o["runlocal"] else "full"
  latency = o["latency"] or ("flops" if o["runlocal"] else "measured")
  c = common.override(
      common.base(),
      data=dict(name="cifar10"),
      teacher=dict(name="resnet56", train=common.recipe(20_000, 128, 0.1, 5e-4)),
      space=dict(name="mobilenet", kwargs=dict(base_width=0.5)),
      searcher=dict(name=searcher, kwargs=dict(SEARCHER_KWARGS[searcher])),
      # ACC_KD: a short KD run of each proposal (AKD's proxy task); distill=False is "NAS + KD".
      evaluator=dict(name="short_kd", short_kd=dict(common.recipe(350, 128, 0.05, 5e-4), distill=not o["nas_kd"]),
                     reward=dict(latency_model=latency, target=TARGETS[size][latency], alpha=-0.07,
                                 beta=-0.07, batch_size=1, repeats=20)),
      search=dict(rounds=50, top_k=3),
      final=common.recipe(10_500, 128, 0.05, 5e-4))
  if o["runlocal"]:
    c.data.update(name="npz", path="cifar10_train_subset.npz", test_path="cifar10_test.npz",
                  data_dir=common.shared_data_dir(), train_limit=5000, test_limit=2000)
    c.teacher.name = "resnet8"
    c.teacher.train.update(steps=400, batch_size=64)
    c.space.kwargs = dict(base_width=0.25)
    c.searcher.kwargs["num_asks"] = RUNLOCAL_ASKS
    c.evaluator.short_kd.update(steps=30, batch_size=64)
    c.search.update(rounds=2, top_k=1)
    c.final.update(steps=300, batch_size=64)
  return c
