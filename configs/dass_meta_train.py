"""DaSS meta-training (config.job='meta_train'): class-subset tasks -> teachers and KD-trained students -> Meta-SGD -> predictor.

Lee, An, Kim & Hwang, "Meta-prediction Model for Distillation-Aware NAS on Unseen Datasets", ICLR 2023;
docs/methods/dass.md. The job (:mod:`jdanas.pipeline.meta_train`) splits the source classes
(``data.classes``) into tasks, trains each task's teacher (the DaSS space's full network) and
``tasks.num_students`` students remapped from it and KD-trained with the DaSS recipe (alpha-KD,
alpha = 0.5, T = 6), meta-trains the predictor with one-step teacher adaptation (Meta-SGD), and writes
``<workdir>/predictor`` (read by ``configs/dass_search.py``'s ``predictor`` evaluator) and
``<workdir>/meta_report.json``. Resumable: finished tasks stay in ``<workdir>/meta_dataset``.

Run:       python run.py --config configs/dass_meta_train.py:runlocal --workdir /tmp/dass_meta
Variants:  (none)     accelerator-sized: CIFAR-100 from TFDS, 16 + 2 tasks of 10 classes, the paper's
                      space at 32x32 (widths 32-256, depth 1-5, multipliers 0.5-1.0 step 1/16), 50
                      students a task, the official predictor sizes, 2,000 episodes.
           runlocal   CPU-sized, on the shared npz CIFAR-10 (``$JDANAS_DATA_DIR``): classes 0-6 only
                      (7-9 stay unseen for dass_search.py:runlocal), 4 + 1 tasks of 3 classes, a
                      reduced space (widths 8/16/16/32, depth 1-2, multipliers 0.5/0.75/1.0), 8 students
                      a task.
           smoke      tiny sizes for the tests (seconds of training; results meaningless).
Measured (wall time, meta-validation Spearman): docs/methods/dass.md.
"""
from configs import common

# The runlocal space, shared with configs/dass_search.py (the predictor is tied to its space).
RUNLOCAL_SPACE = dict(stage_widths=(8, 16, 16, 32), max_depth=2, multipliers=(0.5, 0.75, 1.0), image_size=32)
SMOKE_SPACE = dict(stage_widths=(4, 8, 8, 8), max_depth=2, multipliers=(0.5, 1.0), image_size=32)
FULL_SPACE = dict(image_size=32)  # the paper's space; 64 in the paper (Tiny-ImageNet), 32 for CIFAR-sized data
SEEN_CLASSES = (0, 1, 2, 3, 4, 5, 6)  # runlocal: CIFAR-10 classes meta-training may see


def _recipe(steps, batch_size, learning_rate=0.05):
  return common.recipe(steps, batch_size, learning_rate, 3e-5)


# The CPU-sized variants: what each changes in the full config.
SMALL = {
    "runlocal": dict(data=dict(train_limit=6000), space=RUNLOCAL_SPACE,
                     tasks=dict(num_tasks=4, val_tasks=1, classes_per_task=3, num_students=8, num_noise=4,
                                teacher=_recipe(150, 32, 0.1), student=_recipe(60, 32)),
                     predictor=dict(hidden_channels=32, out_channels=64, h_dim=32),
                     meta=dict(learning_rate=1e-3, episodes=200, num_queries=6, eval_every=20)),
    "smoke": dict(data=dict(train_limit=700, test_limit=200), space=SMOKE_SPACE,
                  tasks=dict(num_tasks=2, val_tasks=1, classes_per_task=2, num_students=3, num_noise=1,
                             teacher=_recipe(4, 16, 0.1), student=_recipe(2, 16)),
                  predictor=dict(hidden_channels=4, out_channels=8, h_dim=8),
                  meta=dict(learning_rate=1e-3, episodes=4, num_queries=2, eval_every=2)),
}


def shared_npz(c, classes, train_limit, test_limit=1000):
  """The shared npz CIFAR-10 files (``$JDANAS_DATA_DIR``, else ../shared/data) restricted to ``classes``."""
  c.data.update(name="npz", path="cifar10_train_subset.npz", test_path="cifar10_test.npz",
                data_dir=common.shared_data_dir(), train_limit=train_limit, test_limit=test_limit,
                classes=tuple(classes))


def get_config(arg: str | None = None):
  """``arg``: None (full), ``"runlocal"`` or ``"smoke"``."""
  v = common.variant(arg, "configs/dass_meta_train.py", tuple(SMALL))
  c = common.override(
      common.base("meta_train"),
      data=dict(name="cifar100"),
      space=dict(name="dass_resnet", kwargs=dict(FULL_SPACE)),
      tasks=dict(num_tasks=16, val_tasks=2, classes_per_task=10, num_students=50, num_noise=8, noise_seed=0,
                 teacher=_recipe(4000, 128, 0.1), student=_recipe(1000, 128)),
      predictor=dict(hidden_channels=128, out_channels=256, h_dim=64, use_maps=True),
      meta=dict(target="relative", alpha_init=0.005, learning_rate=5e-4, first_order=False, episodes=2000,
                num_queries=20, eval_every=50))
  if v is not None:
    size = SMALL[v]
    shared_npz(c, SEEN_CLASSES, **size["data"])
    c.space.kwargs = dict(size["space"])
    common.override(c, tasks=size["tasks"], predictor=size["predictor"], meta=size["meta"])
    # one student after another in one compiled program: unrolling copies of the teacher-sized masked
    # network into one XLA:CPU program compiles for many minutes (bench/dass.py)
    c.compute.strategy = "loop"
  return c
