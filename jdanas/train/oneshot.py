"""One-shot (weight-sharing) training: the shared weights of a masked supernet, ENAS's protocol that
KDAS searches with.

ENAS (Pham et al., "Efficient Neural Architecture Search via Parameter Sharing", ICML 2018)
trains ONE set of shared weights, a supernet over the space, on children sampled by the
controller, and alternates with controller updates whose reward is a child's validation accuracy
with the shared weights. KDAS (Kang, Mun & Han, AAAI 2020; docs/methods/oracle_kd.md) trains the
shared weights with the oracle KD loss. :class:`SharedWeights` is that supernet training:
:meth:`SharedWeights.train` takes steps on a list of children (step ``t`` on child ``t mod Q``, with
the recipe's loss, one teacher pass per batch) and :meth:`SharedWeights.score` scores children by
their accuracy with the shared weights on a fixed held-out set (the first ``val_examples`` of the
validation split). ``bn`` says which BatchNorm statistics a child is scored with: ``"running"`` (eval
mode: the running averages that every child updates in turn during the shared training) or ``"batch"``
(ENAS's: each held-out batch normalised with its own statistics, ``is_training=True`` in ENAS's
code, so a child is scored with statistics of its own activations; nothing is updated). The search evaluator around it is
:class:`jdanas.evaluators.one_shot.OneShotEvaluator` (the controller is an ordinary searcher,
``reinforce``).

The space must be a masked one (one signature for every architecture: ``kdas_masked``,
``nb201_masked``, ``s1_resnet_masked``); the child is the traced ``enc`` of the supernet. The
:attr:`SharedWeights.state` (shared parameters, BatchNorm statistics, optimiser state and the global
step, which is the position in the data stream: batch ``s`` is a pure function of the data key and
``s``) is what a checkpoint saves; restoring it resumes bit-identically. The learning-rate schedule
spans ``recipe.steps`` steps in total. It runs on the default device (no ``('pop', 'data')`` mesh:
there is one network to train).
"""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jdanas import lowering as lowering_lib
from jdanas.spaces.base import AbstractSearchSpace
from jdanas.train import batching
from jdanas.train.population import StudentState, _single_eval, _single_init, _single_step, batch_program, padded_split
from jdanas.train.recipe import Recipe

_SHARED_KEY = 0x5A7ED  # fold-in constant of the shared weights' and the data stream's keys
BN_MODES = ("running", "batch")  # the BatchNorm statistics a child is scored with (see the module docstring)


@flax.struct.dataclass
class OneShotState:
  """The shared weights (a :class:`StudentState`; its ``enc`` is the last child trained) and the
  global step (the data position)."""
  shared: StudentState
  step: jax.Array  # int32[]


def has_one_signature(space: AbstractSearchSpace) -> bool:
  """Whether every architecture of ``space`` shares one signature (a masked supernet)."""
  lo = np.zeros(space.num_decisions, np.int32)
  hi = np.asarray(space.num_choices, np.int32) - 1
  return space.signature(lo) == space.signature(hi)


class SharedWeights:
  """The shared weights of a masked supernet, trained on and scoring children (see the module docstring).

  Args:
    space: a masked space (one signature for every architecture).
    data: a :class:`jdanas.data.Dataset`.
    recipe: the shared weights' recipe; ``steps`` is the schedule's length (all the steps that
      :meth:`train` will take), ``batch_size`` the batch of every step, ``loss`` e.g. ``KD_PRESETS["oracle"]``.
    teacher: required when the loss has a soft term.
    seed: the shared weights' initialisation and the data stream derive from it.
    val_examples: size of the held-out scoring set (0: the whole validation split).
    lowering: a name of :data:`jdanas.lowering.LOWERINGS` or a Lowering.
    bn: ``"running"`` or ``"batch"`` (:data:`BN_MODES`): the BatchNorm statistics of child scoring.
  """

  def __init__(self, space: AbstractSearchSpace, data, *, recipe: Recipe, teacher=None, seed: int = 0,
               val_examples: int = 0, lowering: str | lowering_lib.Lowering = "auto", bn: str = "running"):
    if bn not in BN_MODES:
      raise ValueError(f"bn: {bn!r} is not one of {', '.join(BN_MODES)}")
    if not has_one_signature(space):
      raise ValueError(f"space: the one_shot evaluator needs a masked space (one supernet), got {space.name!r}")
    if recipe.loss.uses_teacher and teacher is None:
      raise ValueError("teacher: the recipe's loss has a soft (KD) term but no teacher was given")
    n = len(data.train.y)
    if n < recipe.batch_size:
      raise ValueError(f"recipe.batch_size: {recipe.batch_size} exceeds the {n} training examples")
    if val_examples < 0:
      raise ValueError(f"val_examples: must be >= 0 (0 = the whole validation split), got {val_examples}")
    self.space, self.recipe = space, recipe
    self.lowering = lowering_lib.resolve(lowering)
    zero = np.zeros(space.num_decisions, np.int32)
    module = lowering_lib.build(space, space.signature(zero), int(data.num_classes), self.lowering, "train")
    tx = recipe.make_optimizer()
    key = jax.random.fold_in(jax.random.key(seed), _SHARED_KEY)
    key_init, self._key_data, self._key_aug = jax.random.split(key, 3)
    image_shape = tuple(data.train.x.shape[1:])
    mean, std = tuple(float(m) for m in data.mean), tuple(float(s) for s in data.std)
    self._train_x, self._train_y = jnp.asarray(data.train.x), jnp.asarray(data.train.y, jnp.int32)
    self._teacher_vars = teacher.variables if teacher is not None else None
    val = data.val if not val_examples else _head(data.val, int(val_examples))
    self.bn = bn
    # With batch statistics a padded example would enter its batch's statistics: the last batch is filled
    # with repeated held-out examples instead of zeros (the mask still counts each example once).
    self._val = padded_split(val, recipe.eval_batch_size) if bn == "running" else _wrap_padded(val,
                                                                                                recipe.eval_batch_size)
    batch_fn = batch_program(recipe, teacher, n, mean, std, batching.default_pad(image_shape[0]))
    loss_fn = recipe.loss
    # Programs built here, counted as they are traced (a jit traces once per program it compiles; no
    # private JAX API): :meth:`new_programs` reports the ones built since it was last asked.
    self.trace_counts: dict[str, int] = {"init": 0, "step": 0, "score": 0}
    self._reported_traces = 0

    def step_fn(state: OneShotState, enc, train_x, train_y, teacher_vars, key_data, key_aug):
      self.trace_counts["step"] += 1
      x, y, t = batch_fn(train_x, train_y, teacher_vars, key_data, key_aug, state.step)
      shared = _single_step(module, tx, loss_fn, state.shared.replace(enc=enc), x, y, t)
      return OneShotState(shared=shared, step=state.step + 1)

    def score_fn(state: OneShotState, enc, vx, vy, vmask):
      self.trace_counts["score"] += 1
      if bn == "running":
        return _single_eval(module, state.shared.replace(enc=enc), vx, vy, vmask, mean, std)
      return _batch_stats_eval(module, state.shared, enc, vx, vy, vmask, mean, std)

    self._step = jax.jit(step_fn, donate_argnums=0)
    self._score = jax.jit(score_fn)
    key_rbg = jax.random.wrap_key_data(jax.random.bits(key_init, (4,), jnp.uint32), impl="rbg")

    def init_fn():
      self.trace_counts["init"] += 1
      return _single_init(module, tx, key_rbg, jnp.asarray(zero), jnp.float32(1.0),
                          jnp.zeros((1,) + image_shape, jnp.float32))

    shared = jax.jit(init_fn)()
    self.state = OneShotState(shared=shared, step=jnp.zeros((), jnp.int32))

  def children(self, encodings: np.ndarray) -> list:
    """``encodings`` (``int[Q, D]``) checked, as device arrays (a non-empty batch)."""
    encs = [jnp.asarray(self.space.check(e)) for e in np.asarray(encodings)]
    if not encs:
      raise ValueError("encodings: the batch is empty")
    return encs

  def train(self, encs: list, steps: int) -> None:
    """``steps`` shared-weight steps, step ``t`` on child ``encs[t mod len(encs)]``."""
    for t in range(steps):
      self.state = self._step(self.state, encs[t % len(encs)], self._train_x, self._train_y, self._teacher_vars,
                              self._key_data, self._key_aug)

  def score(self, encs: list) -> np.ndarray:
    """The held-out accuracy of each child with the current shared weights (trains nothing)."""
    # every child dispatched first, then one device->host transfer (not one blocking float() each)
    return np.asarray(jax.device_get([self._score(self.state, e, *self._val) for e in encs]), np.float32)

  def new_programs(self) -> int:
    """Programs traced (so compiled, or loaded from the persistent cache) since the last call."""
    total = sum(self.trace_counts.values())
    new, self._reported_traces = total - self._reported_traces, total
    return new

  def restore(self, state: Any) -> None:
    """Continues from a checkpointed :attr:`state`."""
    self.state = jax.tree.map(jnp.asarray, state)


def _batch_stats_eval(module, shared: StudentState, enc, vx, vy, vmask, mean, std):
  """Accuracy over ``[nb, eb, ...]`` held-out batches, each normalised by its own BatchNorm statistics
  (train mode; the updated running statistics are discarded); NaN if diverged or non-finite."""
  variables = {"params": shared.params, "batch_stats": shared.batch_stats}

  def body(carry, batch):
    correct, finite = carry
    x, y, m = batch
    out, _ = module.apply(variables, batching.normalize(x, mean, std), enc, train=True, mutable=["batch_stats"])
    logits = out["logits"]
    hit = (jnp.argmax(logits, -1) == y) & m
    return (correct + hit.sum(), finite & jnp.all(jnp.isfinite(logits))), None

  (correct, finite), _ = jax.lax.scan(body, (jnp.zeros((), jnp.int32), jnp.ones((), bool)), (vx, vy, vmask))
  acc = correct / jnp.maximum(vmask.sum(), 1)
  return jnp.where(finite & ~shared.diverged, acc, jnp.nan).astype(jnp.float32)


def _wrap_padded(split, eval_batch: int) -> tuple:
  """:func:`padded_split` whose padding repeats the split's first examples (masked out of the count)."""
  x, y = np.asarray(split.x), np.asarray(split.y, np.int32)
  n = len(y)
  if n == 0:
    raise ValueError("data.val: the validation split is empty")
  eb = min(eval_batch, n)
  nb = -(-n // eb)
  idx = np.arange(nb * eb) % n
  mask = (np.arange(nb * eb) < n).reshape(nb, eb)
  return tuple(jax.device_put(a) for a in (x[idx].reshape((nb, eb) + x.shape[1:]), y[idx].reshape(nb, eb), mask))


def _head(split, n: int):
  """The first ``n`` examples of a split."""
  return type(split)(x=split.x[:n], y=split.y[:n])


__all__ = ["BN_MODES", "OneShotState", "SharedWeights", "has_one_signature"]
