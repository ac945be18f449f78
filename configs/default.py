"""Default: a complete distillation-aware search, offline, on CPU, on embedded data.

Data: scikit-learn's handwritten digits (1,797 8x8 grey images shipped inside the package; no
network), 10% of the training pool held out for validation. No augmentation: its random horizontal
flip turns digits into other shapes (with it the teacher reached only 94.4 % test). Teacher: CIFAR
ResNet-20 trained on the fly (300 steps; cached in the workdir). Students: the masked NAS-Bench-201
cell space at width C=2 (one cell per stage, 1-6 k parameters), tiny on purpose so that the teacher
is clearly stronger than the students; at C=8 the students trained alone match the teacher on this
easy data. Search: regularized evolution (with deduplication), every proposal scored by a short KD
run (RepDistiller's loss 0.1 CE + 0.9 T^2 KL at T=2, which helped these small students more than
T=4) of the population engine; all cells share ONE compiled program. Then the top 2 are KD-trained
for 75 steps, the best by validation accuracy is also trained without KD, and report, plots and the
exported student are written. The final schedule is short on purpose: KD's gain shrinks as the students
train longer on this easy data (8 initialisations of one chosen cell sharing a batch order, test
accuracy, KD minus no-KD: +7.2 +- 1.7 points at 75 steps, +2.4 +- 0.7 at 150, +0.6 +- 0.3 at 300;
docs/benchmarks.md#the-main-job).
``final.seeds=8`` then trains the chosen cell 8 more times with and without KD on paired seeds, so the
report states the gain with its standard error and interval instead of one pair of runs.

Run:      python run.py --config configs/default.py --workdir /tmp/jdanas_default
Resume:   the same command after an interruption (checkpoints every round).
Smoke:    python run.py --config configs/default.py:smoke --workdir /tmp/jdanas_smoke  (seconds; tiny
          nets and schedules, for tests and quick checks of an installation; results meaningless)
Measured: README.md's main-job block, written by bench/regenerate_docs.py (docs/data/main_job.json).
"""
from configs import common


def get_config(arg: str | None = None):
  """``arg``: None for the default run, ``"smoke"`` for the tiny variant used by tests."""
  smoke = common.variant(arg, "configs/default.py", ("smoke",)) == "smoke"
  # Your own data: --config.data.name=npz --config.data.path=train.npz [--config.data.test_path=test.npz]
  # (keys x: uint8 [N, H, W, C], y: int [N]; labels 0..K-1, or set remap_labels=True for sparse labels).
  # Your own teacher: --config.teacher.path=<folder with teacher.json> (saved by jdanas.teachers.save_teacher).
  c = common.override(
      common.base(),
      teacher=dict(name="resnet20", train=common.recipe(300, 64, 0.1, 5e-4, augment=False)),
      space=dict(name="nb201_masked", kwargs=dict(channels=2, num_cells=1)),
      searcher=dict(name="regularized_evolution", kwargs=dict(num_asks=4, population_size=8, tournament_size=3)),
      # Every proposal is scored by a short KD run; ``tabular`` (an NB201 table, or DisWOT's S1 table with
      # column kd_top1 / vanilla_top1 on an s1_resnet space) is the alternative for benchmarking searchers
      # (--config.evaluator.name=tabular --config.evaluator.tabular.table=...).
      evaluator=dict(name="short_kd", short_kd=common.recipe(60, 64, 0.1, 5e-4, augment=False),
                     tabular=dict(table="", column="cifar10_valid_acc"),
                     # ENAS-style weight sharing on a masked space (steps: shared-weight steps per round)
                     one_shot=dict(common.recipe(20, 64, 0.05, 1e-4, augment=False), val_examples=0, bn="running",
                                   derive=0)),
      kd=dict(loss="repdistiller", temperature=2.0),
      final=dict(common.recipe(75, 64, 0.1, 5e-4, augment=False), seeds=8))
  # compute (the declared defaults): specialize 'auto' trains each cell with a program specialised to it on
  # CPU when the schedule is long enough (see jdanas.train.population); False keeps ONE masked program.
  # precision "bf16" trains students in bfloat16 (float32 parameters and losses), for GPUs/TPUs.
  # pop_chunk: students per call of a vmapped group (a multiple of mesh.pop; 0 = the whole group).
  if smoke:
    c.teacher.name = "resnet8"
    c.teacher.train.update(steps=3, batch_size=32)
    c.space = dict(name="s1_resnet", kwargs=dict(depth_choices=(1, 2), widths=(4, 8, 8), stem=4))
    c.searcher.kwargs.update(num_asks=2, population_size=2, tournament_size=2)
    c.evaluator.short_kd.update(steps=2, batch_size=32)
    c.search.update(rounds=3, top_k=2)
    c.final.update(steps=2, batch_size=32, seeds=1)
  return c
