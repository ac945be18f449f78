"""Training recipes: optimiser, schedule, augmentation and loss of a (KD) training run."""
from __future__ import annotations

import dataclasses

import optax

from jdanas.distill.losses import KD_PRESETS, KDLoss
from jdanas.errors import FieldError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "constant")


@dataclasses.dataclass(frozen=True)
class Recipe:
  """How every student of a population is trained (hashable; closes over jitted code).

  Attributes:
    steps: optimisation steps per student.
    batch_size: examples per step (shared by all students; one teacher pass per batch).
    optimizer: ``sgd`` (PyTorch-style: weight decay added to the gradient, then momentum),
      ``adam`` (decay added to the gradient) or ``adamw`` (decoupled decay).
    learning_rate: peak learning rate.
    momentum / nesterov: SGD momentum.
    weight_decay: L2 coefficient on every parameter (PyTorch's convention).
    schedule: ``cosine`` (to 0 over ``steps``) or ``constant``, after ``warmup_steps`` of linear
      warm-up.
    augment: random crop with padding + horizontal flip on device.
    loss: the KD loss; ``KD_PRESETS["ce"]`` trains without a teacher.
    eval_batch_size: batch size of validation passes (the split is padded and masked).
  """
  steps: int = 200
  batch_size: int = 128
  optimizer: str = "sgd"
  learning_rate: float = 0.05
  momentum: float = 0.9
  nesterov: bool = True
  weight_decay: float = 5e-4
  schedule: str = "cosine"
  warmup_steps: int = 0
  augment: bool = True
  loss: KDLoss = KD_PRESETS["repdistiller"]
  eval_batch_size: int = 500

  def __post_init__(self):
    def need(ok: bool, field: str, msg: str):
      if not ok:
        raise FieldError(field, f"{msg}, got {getattr(self, field)!r}", owner="recipe")
    need(isinstance(self.steps, int) and self.steps > 0, "steps", "must be a positive int")
    need(isinstance(self.batch_size, int) and self.batch_size > 0, "batch_size", "must be a positive int")
    need(self.optimizer in OPTIMIZERS, "optimizer", f"must be one of {OPTIMIZERS}")
    need(self.learning_rate > 0, "learning_rate", "must be > 0")
    need(0 <= self.momentum < 1, "momentum", "must be in [0, 1)")
    need(self.weight_decay >= 0, "weight_decay", "must be >= 0")
    need(self.schedule in SCHEDULES, "schedule", f"must be one of {SCHEDULES}")
    need(isinstance(self.warmup_steps, int) and 0 <= self.warmup_steps < self.steps, "warmup_steps",
         "must be an int in [0, steps)")
    need(isinstance(self.loss, KDLoss), "loss", "must be a jdanas.distill.KDLoss")
    need(isinstance(self.eval_batch_size, int) and self.eval_batch_size > 0, "eval_batch_size",
         "must be a positive int")

  def learning_rate_schedule(self) -> optax.Schedule:
    decay_steps = self.steps - self.warmup_steps
    if self.schedule == "cosine":
      main = optax.cosine_decay_schedule(self.learning_rate, decay_steps)
    else:
      main = optax.constant_schedule(self.learning_rate)
    if self.warmup_steps == 0:
      return main
    warm = optax.linear_schedule(0.0, self.learning_rate, self.warmup_steps)
    return optax.join_schedules([warm, main], [self.warmup_steps])

  def make_optimizer(self) -> optax.GradientTransformation:
    lr = self.learning_rate_schedule()
    if self.optimizer == "sgd":
      return optax.chain(optax.add_decayed_weights(self.weight_decay),
                         optax.sgd(lr, momentum=self.momentum or None, nesterov=self.nesterov))
    if self.optimizer == "adam":
      return optax.chain(optax.add_decayed_weights(self.weight_decay), optax.adam(lr))
    return optax.adamw(lr, weight_decay=self.weight_decay)
