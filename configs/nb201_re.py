"""NAS-Bench-201 cells on CIFAR-10: regularized evolution with short-KD fitness from a ResNet-56 teacher.

Data: CIFAR-10 through TFDS by name (prepare it once: ``tfds build cifar10 --data_dir DIR
--file_format array_record``, then ``--config.data.data_dir=DIR``), or local npz files:

  python run.py --config configs/nb201_re.py --workdir /tmp/nb201_re \\
    --config.data.name=npz --config.data.data_dir=../shared/data \\
    --config.data.path=cifar10_train_subset.npz --config.data.test_path=cifar10_test.npz

Space: the full NB201 skeleton (C=16, N=5), masked form (every cell in one compiled program).
Searcher: regularized evolution (population 32, tournament 8, 8 proposals a round, deduplicated),
fitness = validation accuracy after a 1-epoch KD run (RepDistiller loss, T=4); the top 3 are then
KD-trained for 30 epochs and the best by validation accuracy is exported.

Hardware/runtime: the full variant is sized for an accelerator; it has not been run here (the
project's machines are 2-core CPUs without a GPU), so no result is claimed for it.

``:runlocal`` is a CPU-sized variant (C=8, one cell per stage, 5,000 training images, 3 rounds of
4, short schedules); measured end to end (command above with ``configs/nb201_re.py:runlocal``):
docs/benchmarks.md, "NB201 on CIFAR-10".
"""
from configs import common


def get_config(arg: str | None = None):
  """``arg``: None for the full run, ``"runlocal"`` for the CPU-sized variant."""
  runlocal = common.variant(arg, "configs/nb201_re.py", ("runlocal",)) == "runlocal"
  # compute: the declared defaults (specialize 'auto' trains each cell with a program specialised to it on
  # CPU when the schedule is long enough, see jdanas.train.population; False keeps ONE masked program).
  c = common.override(
      common.base(),
      data=dict(name="cifar10"),
      teacher=dict(name="resnet56", train=common.recipe(20_000, 128, 0.1, 5e-4)),
      space=dict(name="nb201_masked", kwargs=dict(channels=16, num_cells=5)),
      searcher=dict(name="regularized_evolution", kwargs=dict(num_asks=8, population_size=32, tournament_size=8)),
      evaluator=dict(name="short_kd", short_kd=common.recipe(350, 128, 0.1, 5e-4),
                     tabular=dict(table="", column="cifar10_valid_acc")),
      search=dict(rounds=50, top_k=3),
      final=common.recipe(10_500, 128, 0.1, 5e-4))
  if runlocal:
    c.data.update(train_limit=5000, test_limit=2000)
    c.teacher.name = "resnet20"
    c.teacher.train.update(steps=400, batch_size=64)
    c.space.kwargs = dict(channels=8, num_cells=1)
    c.searcher.kwargs.update(num_asks=4, population_size=8, tournament_size=3)
    c.evaluator.short_kd.update(steps=40, batch_size=64)
    c.search.update(rounds=3, top_k=2)
    c.final.update(steps=300, batch_size=64)
  return c
