"""The population engine: train many candidate students against one teacher at once.

``PopulationTrainer(space, data, recipe=..., teacher=...)`` compiles and caches one training
program per *group* of students and trains any list of encodings of ``space``:

* students are grouped by ``space.signature(enc)`` (what fixes parameter shapes); everything
  else about an architecture is the traced ``enc`` argument of the module;
* every step draws ONE batch (deterministic from ``(key, step)``, augmented on device) and runs
  the teacher ONCE on it, outside any vmap or grad; every group consumes the same batch;
* strategies:

  - ``vmap``: members of a group (same signature) are stacked on a leading axis and the
    single-student step is vmapped. On XLA:CPU vmapped convolutions become grouped
    convolutions, which run slower than a loop (docs/lowering.md §3, ``bench/population.py``).
  - ``unroll``: one jitted program whose trace loops over members in Python; members may have
    different signatures. Fastest on XLA:CPU; compile time grows with the number of members.
  - ``loop``: one program per student (P = 1), called once per student per step.
  - ``auto``: ``loop`` for singletons (programs are then reused across search rounds) and the
    lowering's ``train_strategy`` for groups of >= 2 same-signature students (``unroll`` on
    CPU, ``vmap`` on GPU/TPU; :mod:`jdanas.lowering`).

* specialisation (``specialize=``): a masked space (architecture as a traced input, every op
  computed and weighted) can instead train each student with ``space.specialize(enc)``, the
  same variable layout with the architecture fixed at trace time, so only the selected ops run.
  Same initial parameters, same updates (bit-equal forward and gradients for NB201), one program
  per distinct architecture instead of one for all. ``"auto"`` specialises, with the ``auto``
  strategy, when the schedule's work (masked forward FLOPs x batch x steps) reaches the
  lowering's ``specialize_min_work`` (on CPU a specialised NB201 step runs only the selected ops, so
  one extra compilation pays for itself within a few steps of a 32x32 model, while for tiny inputs
  compilation dominates: docs/lowering.md §2, ``bench/probes/masked_edge.py``; on GPU/TPU the
  masked program stays, vmapped);
* how programs are lowered (convolutions, masked edges, the choices above) is one
  :class:`jdanas.lowering.Lowering` (``lowering=``, ``"auto"`` per backend);
* the number of compiled training programs equals the number of distinct
  ``(signature, strategy, P)`` groups and is exposed as ``num_compilations``; programs are cached
  across calls, so a search compiles each group once;
* a student whose loss or logits become non-finite gets a NaN accuracy; members never interact,
  so the others are bit-identical to a run without the divergence;
* with a ``mesh`` of axes ``('pop', 'data')``, batches (and teacher logits) are sharded over
  ``data`` and vmapped stacks over ``pop``; ``jit`` + ``NamedSharding`` only, no ``pmap``;
* chunked populations (``pop_chunk=k``, a multiple of the mesh's ``pop`` axis): a vmapped group of
  ``n >= k`` students runs as ``ceil(n / k)`` chunks of ``k`` students through ONE compiled step
  program (the last chunk padded by repeating its first member; a smaller group runs as one call
  padded to a multiple of ``pop``, as without chunking), so a population far larger than the devices
  trains with the device working set of ``k`` students (activations, gradients, optimizer
  temporaries: the compiled program's temporaries) while every chunk's state (parameters,
  optimizer state, BatchNorm statistics) stays resident on device, updated in place (donated). All
  chunks of a step consume the same batch and the same teacher outputs (one teacher pass per step);
  ``pop_chunk=None`` runs each vmapped group as one program over all of its members;
* no host round-trips inside a round: step indices are put on device before the step loop, the
  loop dispatches with ``jax.transfer_guard("disallow")`` (an implicit host<->device copy raises),
  states are donated to each step, and the accuracies and last losses of all students leave the
  device in ONE transfer at the end (:func:`fetch_scores`), with a validation curve (``eval_every``)
  the scores of every evaluation point too; the progress bar and callback see host-side step counters only;
* mixed precision (``precision="bf16"``, for accelerators): students and teacher compute in
  bfloat16 while parameters, optimizer state and BatchNorm statistics stay float32 and the KD
  softmax and losses run in float32 (mixed-precision training as in Micikevicius et al., "Mixed
  Precision Training", ICLR 2018; :func:`apply_in_precision` casts at the ``apply`` boundary, so
  no space or model needs a ``dtype`` argument).

Student ``i`` is initialised from ``fold_in(key_init, i)``; the same key gives the same result.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import math
import time
from typing import Any, Callable, Hashable, Sequence

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm.auto import tqdm

from jdanas import lowering as lowering_lib
from jdanas.costs import forward_flops
from jdanas.errors import FieldError
from jdanas.spaces.base import AbstractSearchSpace
from jdanas.train import batching
from jdanas.train.recipe import Recipe

TRAIN_STRATEGIES = ("auto", "vmap", "unroll", "loop")
PRECISIONS = ("fp32", "bf16")


def _to(dtype):
  return lambda a: (a.astype(dtype) if isinstance(a, (jax.Array, np.ndarray)) and jnp.issubdtype(a.dtype, jnp.floating)
                    else a)


def _bf16_calls(next_fun, args, kwargs, context):
  """Flax method interceptor: every module call takes and returns bfloat16 floating arrays (a
  BatchNorm, whose float32 statistics would otherwise promote its output, included)."""
  if context.method_name != "__call__":
    return next_fun(*args, **kwargs)
  cast = _to(jnp.bfloat16)
  return jax.tree.map(cast, next_fun(*jax.tree.map(cast, args), **jax.tree.map(cast, kwargs)))


def apply_in_precision(module, variables: dict, *args, precision: str = "fp32", **kwargs):
  """``module.apply(variables, *args, **kwargs)`` computed in ``precision``; floating outputs are
  float32 either way. ``"bf16"``: the parameters (not the BatchNorm statistics, which BatchNorm
  updates in float32) and the inputs are cast to bfloat16 and every module call computes in it."""
  if precision == "fp32":
    return module.apply(variables, *args, **kwargs)
  if precision != "bf16":
    raise FieldError("precision", f"{precision!r} is not one of {PRECISIONS}")
  variables = {k: jax.tree.map(_to(jnp.bfloat16), v) if k == "params" else v for k, v in variables.items()}
  with nn.intercept_methods(_bf16_calls):
    out = module.apply(variables, *jax.tree.map(_to(jnp.bfloat16), args), **kwargs)
  return jax.tree.map(_to(jnp.float32), out)


@functools.lru_cache(maxsize=64)
def masked_flops(space: AbstractSearchSpace, num_classes: int, input_shape: tuple[int, ...]) -> float:
  """Forward FLOPs per example of a masked space's superset module (:func:`jdanas.costs.forward_flops`:
  the lowered program, no compilation), the per-step cost that specialisation avoids."""
  module = space.build(space.signature(np.zeros(space.num_decisions, np.int32)), num_classes)
  x = jnp.zeros((1,) + tuple(input_shape), jnp.float32)
  e = jnp.zeros((space.num_decisions,), jnp.int32)
  abstract = jax.eval_shape(lambda: module.init(jax.random.key(0), x, e, train=False))
  flops = forward_flops(lambda v, x, e: module.apply(v, x, e, train=False)["logits"], abstract, x, e)
  return flops if math.isfinite(flops) else 0.0


def schedule_work(space: AbstractSearchSpace, *, steps: int, batch_size: int, num_classes: int,
                  input_shape: tuple[int, ...]) -> float:
  """``masked_flops x batch_size x steps``: the work that ``specialize="auto"`` compares with the
  lowering's ``specialize_min_work`` (module docstring)."""
  return masked_flops(space, int(num_classes), tuple(input_shape)) * batch_size * steps


@dataclasses.dataclass(frozen=True)
class Static:
  """Group signature of a student trained by ``space.specialize(encoding)``.

  ``signature`` is the masked signature (it fixes the variable layout and the init program),
  ``encoding`` the architecture baked into the compiled program.
  """
  signature: Hashable
  encoding: tuple[int, ...]


@flax.struct.dataclass
class StudentState:
  """Training state of one student (or a stack of students along axis 0)."""
  params: Any
  batch_stats: Any
  opt_state: Any
  enc: jax.Array        # int32[D]: the traced architecture (used by masked spaces)
  lr_scale: jax.Array   # float32[]: per-student learning-rate multiplier
  diverged: jax.Array   # bool[]: a non-finite loss was seen
  loss: jax.Array       # float32[]: loss of the last step


@dataclasses.dataclass(frozen=True)
class Group:
  """A set of students trained by one compiled program."""
  strategy: str
  signature: Hashable          # one signature (vmap/loop) or a tuple of them (unroll)
  members: tuple[int, ...]     # population indices; padding repeats the first member
  size: int                    # P of the program (members + padding)

  @property
  def key(self) -> tuple:
    return (self.strategy, self.signature, self.size)


@dataclasses.dataclass
class PopulationResult:
  """What :meth:`PopulationTrainer.train` returns.

  Attributes:
    accuracy: ``float32[P]`` validation accuracy in [0, 1]; NaN where training diverged.
    loss: ``float32[P]`` training loss of the last step.
    groups: the compiled groups that trained the population.
    num_compilations: training programs compiled by this call (0 when all were cached).
    compile_seconds: time spent compiling (training, batch and eval programs).
    train_seconds: wall time of the training steps (after compilation).
    examples_per_s: student-examples per second over ``train_seconds`` (``P * steps * B / t``).
    curve: ``float32[E, P]`` validation accuracy at each of ``curve_steps`` (rows in step order, the last row
      equal to ``accuracy``), or None when the call had ``eval_every == 0``.
    curve_steps: the steps after which ``curve``'s rows were measured (empty without a curve).
    best_accuracy: ``float32[P]`` the best validation accuracy over the curve (DaSS's official label is the
      best accuracy over epochs, not the last one); equal to ``accuracy`` without a curve, and NaN wherever
      ``accuracy`` is NaN (a diverged student is not rescued by an accuracy it had before diverging).
  """
  accuracy: np.ndarray
  loss: np.ndarray
  groups: list[Group]
  num_compilations: int
  compile_seconds: float
  train_seconds: float
  examples_per_s: float
  _states: dict = dataclasses.field(repr=False, default_factory=dict)
  curve: np.ndarray | None = None
  curve_steps: tuple[int, ...] = ()
  best_accuracy: np.ndarray | None = None

  def __post_init__(self):
    if self.best_accuracy is None:
      self.best_accuracy = self.accuracy

  def variables(self, i: int) -> dict:
    """Flax variables ``{'params', 'batch_stats'}`` of student ``i`` (on device)."""
    state = self._states[i]
    return {"params": state.params, "batch_stats": state.batch_stats}

  def state(self, i: int) -> StudentState:
    return self._states[i]


def _single_init(module, tx, key, enc, lr_scale, sample_x):
  variables = module.init(key, sample_x, enc, train=False)
  params = variables["params"]
  return StudentState(params=params, batch_stats=variables.get("batch_stats", {}),
                      opt_state=tx.init(params), enc=enc, lr_scale=lr_scale,
                      diverged=jnp.zeros((), bool), loss=jnp.zeros((), jnp.float32))


def _single_step(module, tx, loss_fn, state: StudentState, x, y, t_logits, precision: str = "fp32") -> StudentState:
  """One optimiser step. ``t_logits``: the teacher's logits, or ``loss_fn.teacher_targets(...)``
  (logits + feature tap) when the loss has DisWOT relation terms; ``None`` without a teacher.
  ``precision``: see :func:`apply_in_precision` (the loss and the update are float32 either way)."""
  def objective(params):
    out, mutated = apply_in_precision(module, {"params": params, "batch_stats": state.batch_stats}, x, state.enc,
                                      precision=precision, train=True, mutable=["batch_stats"])
    if getattr(loss_fn, "uses_features", False):
      loss = loss_fn.from_features(out, t_logits, y)
    else:
      loss = loss_fn(out["logits"], t_logits, y)
    return jnp.mean(loss), mutated.get("batch_stats", {})
  (loss, batch_stats), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = jax.tree.map(lambda p, u: p + state.lr_scale * u, state.params, updates)
  return state.replace(params=params, batch_stats=batch_stats, opt_state=opt_state,
                       diverged=state.diverged | ~jnp.isfinite(loss), loss=loss)


def _single_eval(module, state: StudentState, vx, vy, vmask, mean, std, precision: str = "fp32"):
  """Accuracy over padded validation batches ``[nb, eb, ...]``; NaN if diverged/non-finite."""
  variables = {"params": state.params, "batch_stats": state.batch_stats}

  def body(carry, batch):
    correct, finite = carry
    x, y, m = batch
    logits = apply_in_precision(module, variables, batching.normalize(x, mean, std), state.enc,
                                precision=precision, train=False)["logits"]
    hit = (jnp.argmax(logits, -1) == y) & m
    ok = jnp.all(jnp.isfinite(logits) | ~m[:, None])
    return (correct + hit.sum(), finite & ok), None

  (correct, finite), _ = jax.lax.scan(body, (jnp.zeros((), jnp.int32), jnp.ones((), bool)), (vx, vy, vmask))
  acc = correct / jnp.maximum(vmask.sum(), 1)
  return jnp.where(finite & ~state.diverged, acc, jnp.nan).astype(jnp.float32)


def fetch_scores(scores: jax.Array) -> np.ndarray:
  """The one device->host transfer of a :meth:`PopulationTrainer.train` call: every student's
  ``[accuracy, loss]`` in one array (explicit, so it passes any transfer guard)."""
  with jax.transfer_guard_device_to_host("allow"):
    return np.asarray(jax.device_get(scores))


def batch_program(recipe: Recipe, teacher, num_examples: int, mean, std, pad: int, on_trace=None,
                  precision: str = "fp32"):
  """``batch_fn(train_x, train_y, teacher_vars, key_data, key_aug, step) -> (x, y, teacher targets)``:
  batch ``step`` (deterministic from ``(key_data, step)``), augmented and normalised on device, and
  ONE teacher pass on it in ``precision`` (``None`` without a teacher). ``on_trace`` is called when it
  is traced."""
  uses_teacher = recipe.loss.uses_teacher

  def batch_fn(train_x, train_y, teacher_vars, key_data, key_aug, step):
    if on_trace is not None:
      on_trace()
    idx = batching.batch_indices(key_data, step, num_examples, recipe.batch_size)
    x, y = train_x[idx], train_y[idx]
    if recipe.augment:
      x = batching.augment(jax.random.fold_in(key_aug, step), x, pad)
    x = batching.normalize(x, mean, std)
    # One teacher pass per batch, shared by every student of every group (logits, plus the
    # feature tap of the DisWOT relation terms when they are on; the members of an ensemble).
    t = (recipe.loss.teacher_targets(apply_in_precision(teacher.module, teacher_vars, x, None,
                                                        precision=precision, train=False))
         if uses_teacher else None)
    return x, y, t

  return batch_fn


def _replicated_key(key: jax.Array, sharding) -> jax.Array:
  """``key`` placed on every device of ``sharding`` (replicated). A key already on this process's
  device cannot be ``device_put`` to devices of other processes (a multi-process mesh); there every
  process holds the same key (same seed, same folds), so its bits go through the host once."""
  if sharding is None:
    return key
  if sharding.is_fully_addressable:
    return jax.device_put(key, sharding)
  bits = jax.device_put(np.asarray(jax.random.key_data(key)), sharding)
  return jax.random.wrap_key_data(bits, impl=jax.random.key_impl(key))


def padded_split(split, eval_batch: int, sharding=None) -> tuple:
  """``(x [nb, eb, ...], y [nb, eb], mask [nb, eb])``: a split padded to whole eval batches."""
  x, y = np.asarray(split.x), np.asarray(split.y, np.int32)
  n = len(y)
  if n == 0:
    raise ValueError("data.val: the validation split is empty")
  eb = min(eval_batch, n)
  nb = math.ceil(n / eb)
  pad = nb * eb - n
  xp = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)]).reshape((nb, eb) + x.shape[1:])
  yp = np.concatenate([y, np.zeros(pad, np.int32)]).reshape(nb, eb)
  mask = (np.arange(nb * eb) < n).reshape(nb, eb)
  return tuple(jax.device_put(a, sharding) for a in (xp, yp, mask))


class TrainingPrograms:
  """The ahead-of-time compiled programs of population trainers, keyed by ``(kind, group key)``
  (kinds ``batch``, ``init``, ``step``, ``eval``). Each trainer makes its own unless given one;
  trainers of one space and dataset may share one (the benchmarks do, so that each program compiles
  once). ``compile_seconds[key]`` records each compilation, ``uses[key]`` how often a program was
  fetched (a call's programs are the keys whose count grew)."""

  def __init__(self):
    self.compiled: dict = {}
    self.compile_seconds: dict = {}
    self.uses: collections.Counter = collections.Counter()

  def get(self, key: tuple, build, args) -> tuple[Any, float]:
    """The compiled program of ``key`` (``build().lower(*args).compile()`` the first time) and the
    seconds this call spent compiling it."""
    self.uses[key] += 1
    if key in self.compiled:
      return self.compiled[key], 0.0
    t0 = time.perf_counter()
    self.compiled[key] = build().lower(*args).compile()
    self.compile_seconds[key] = time.perf_counter() - t0
    return self.compiled[key], self.compile_seconds[key]


class PopulationTrainer:
  """Trains populations of students of one space against one teacher (see module docstring).

  Args:
    space: the search space the encodings belong to.
    data: a :class:`jdanas.data.Dataset` (``train``/``val`` splits of uint8 NHWC images,
      ``num_classes``, ``mean``/``std``).
    recipe: the training recipe shared by all students.
    teacher: a :class:`jdanas.teachers.Teacher`, required when ``recipe.loss`` has a soft term.
    strategy: one of ``auto, vmap, unroll, loop``.
    mesh: optional ``jax.sharding.Mesh`` with axes ``('pop', 'data')``.
    max_unroll: most students in one unrolled program (bigger groups are split evenly).
    specialize: ``True``, ``False`` or ``"auto"``: train students of a masked space with their
      specialised module (see the module docstring); ``True`` needs a space with a specialised
      form (``space.specialize``).
    lowering: a name of :data:`jdanas.lowering.LOWERINGS` or a :class:`jdanas.lowering.Lowering`.
    programs: the :class:`TrainingPrograms` to compile into (default: the trainer's own).
    precision: ``"fp32"`` or ``"bf16"`` (mixed precision; module docstring).
    pop_chunk: most students per call of a vmapped group's program (a positive multiple of the
      mesh's ``pop`` axis; module docstring), or None: one call per group over all of its members.
  """

  def __init__(self, space: AbstractSearchSpace, data, *, recipe: Recipe, teacher=None,
               strategy: str = "auto", mesh: Mesh | None = None, max_unroll: int = 16,
               specialize: bool | str = "auto", lowering: str | lowering_lib.Lowering = "auto",
               programs: TrainingPrograms | None = None, precision: str = "fp32", pop_chunk: int | None = None):
    if strategy not in TRAIN_STRATEGIES:
      raise FieldError("strategy", f"{strategy!r} is not one of {TRAIN_STRATEGIES}")
    if not (isinstance(specialize, bool) or specialize == "auto"):
      raise FieldError("specialize", f"{specialize!r} is not one of True, False, 'auto'")
    if specialize is True and not space.can_specialize:
      raise FieldError("specialize", f"space {space.name!r} has no specialised form (space.specialize)")
    if precision not in PRECISIONS:
      raise FieldError("precision", f"{precision!r} is not one of {PRECISIONS}")
    self.precision = precision
    self.lowering = lowering_lib.resolve(lowering)
    if recipe.loss.uses_teacher and teacher is None:
      raise FieldError("teacher", "the recipe's loss has a soft (KD) term but no teacher was given")
    if max_unroll < 1:
      raise FieldError("max_unroll", f"must be >= 1, got {max_unroll}")
    n_train = len(data.train.y)
    if n_train < recipe.batch_size:
      raise FieldError("batch_size", f"{recipe.batch_size} exceeds the {n_train} training examples", owner="recipe")
    pop = 1 if mesh is None else mesh.shape.get("pop", 1)
    if pop_chunk is not None and (isinstance(pop_chunk, bool) or not isinstance(pop_chunk, (int, np.integer))
                                  or pop_chunk < 1 or pop_chunk % pop):
      raise FieldError("pop_chunk", f"must be a positive multiple of the mesh's 'pop' axis ({pop}) or None, "
                       f"got {pop_chunk!r}")
    self.pop_chunk = None if pop_chunk is None else int(pop_chunk)
    if mesh is not None:
      if tuple(mesh.axis_names) != ("pop", "data"):
        raise FieldError("mesh", f"axes must be ('pop', 'data'), got {mesh.axis_names}")
      if recipe.batch_size % mesh.shape["data"]:
        raise FieldError("batch_size", f"{recipe.batch_size} is not divisible by the mesh's "
                         f"'data' axis ({mesh.shape['data']})", owner="recipe")
    self.space, self.data, self.recipe, self.teacher = space, data, recipe, teacher
    self.strategy, self.mesh, self.max_unroll = strategy, mesh, max_unroll
    if specialize == "auto":
      specialize = strategy == "auto" and space.can_specialize and lowering_lib.specializes(
          self.lowering, schedule_work(space, steps=recipe.steps, batch_size=recipe.batch_size,
                                       num_classes=data.num_classes, input_shape=tuple(data.train.x.shape[1:])))
    self.specialize = bool(specialize)
    self.num_classes = int(data.num_classes)
    self.tx = recipe.make_optimizer()
    self.trace_counts: collections.Counter = collections.Counter()
    self.programs = TrainingPrograms() if programs is None else programs
    self._mean = tuple(float(m) for m in data.mean)
    self._std = tuple(float(s) for s in data.std)
    image_shape = tuple(data.train.x.shape[1:])
    self._pad = batching.default_pad(image_shape[0])
    self._sample_x = jnp.zeros((1,) + image_shape, jnp.float32)
    replicated = self._sharding(P())
    self._train_x = jax.device_put(np.asarray(data.train.x), replicated)
    self._train_y = jax.device_put(np.asarray(data.train.y, np.int32), replicated)
    self._val = self._padded_val(data.val, recipe.eval_batch_size, replicated)
    self._teacher_vars = jax.device_put(teacher.variables, replicated) if teacher is not None else None

  # ---- public -------------------------------------------------------------------------
  @property
  def num_compilations(self) -> int:
    """Training programs compiled so far into this trainer's :class:`TrainingPrograms` (one per
    distinct group key; shared programs count for every trainer that shares them)."""
    return sum(1 for k in self.programs.compiled if k[0] == "step")

  def plan(self, encodings: Sequence[Any]) -> list[Group]:
    """Splits a population into compiled groups (see the module docstring)."""
    signatures = [self.space.signature(e) for e in encodings]
    if self.specialize:
      signatures = [Static(sig, tuple(int(v) for v in np.asarray(e))) for sig, e in zip(signatures, encodings)]
    strategy = self.strategy
    multi = self.lowering.train_strategy
    by_sig: dict[Hashable, list[int]] = collections.defaultdict(list)
    for i, sig in enumerate(signatures):
      by_sig[sig].append(i)
    groups: list[Group] = []
    if strategy == "unroll":  # any architectures in one program, sorted for determinism
      order = sorted(range(len(signatures)), key=lambda i: (repr(signatures[i]), i))
      for chunk in self._chunks(order, self.max_unroll):
        members = tuple(chunk)
        groups.append(Group("unroll", tuple(signatures[i] for i in members), members, len(members)))
      return groups
    for sig, members in by_sig.items():
      if strategy == "loop" or (strategy == "auto" and len(members) == 1):
        groups.extend(Group("loop", sig, (i,), 1) for i in members)
      elif strategy == "vmap" or multi == "vmap":
        pop = self.mesh.shape["pop"] if self.mesh is not None else 1
        padded = math.ceil(len(members) / pop) * pop
        size = min(self.pop_chunk, padded) if self.pop_chunk else padded
        for start in range(0, len(members), size):  # chunks of one program (one chunk for a small group)
          chunk = tuple(members[start:start + size])
          groups.append(Group("vmap", sig, chunk + (chunk[0],) * (size - len(chunk)), size))
      else:
        for chunk in self._chunks(members, self.max_unroll):
          groups.append(Group("unroll", (sig,) * len(chunk), tuple(chunk), len(chunk)))
    return groups

  def train(self, key: jax.Array, encodings: Sequence[Any], *, lr_scale: Sequence[float] | None = None,
            init_variables: Sequence[Any] | None = None, progress: bool | Callable[[int], None] = False,
            desc: str = "train", eval_every: int = 0) -> PopulationResult:
    """Trains every encoding (from scratch unless ``init_variables`` says otherwise) and returns
    validation accuracies.

    Args:
      key: PRNG key; split into init, data-order and augmentation keys.
      encodings: ``P`` encodings of ``self.space`` (validated before any compute).
      lr_scale: optional ``P`` per-student learning-rate multipliers (default 1).
      init_variables: optional ``P`` entries, each None (random init) or the student's starting
        ``{"params", "batch_stats"}`` (e.g. remapped from a teacher, :func:`jdanas.meta.remap`), with
        exactly the shapes of the student's own init; its optimiser state starts fresh.
      progress: show a tqdm bar over steps; a callable is also called with each step number
        before the step (the pipeline's no-progress watchdog).
      desc: the bar's label.
      eval_every: when > 0, every student is also evaluated on the validation split after steps
        ``eval_every, 2 * eval_every, ...`` and after the last step (once), by the group's eval program (the
        one the final evaluation compiles anyway), and the result carries ``curve``, ``curve_steps`` and
        ``best_accuracy``; the scores of all points stay on device until the one transfer at the end, and
        ``train_seconds`` then includes the evaluations. ``0`` (default): only the final evaluation.
    """
    steps_total = self.recipe.steps
    if isinstance(eval_every, bool) or not isinstance(eval_every, (int, np.integer)) or not (
        0 <= eval_every <= steps_total):
      raise ValueError(f"eval_every: need an int in 0..{steps_total} (the recipe's steps), got {eval_every!r}")
    eval_every = int(eval_every)
    encs = [self.space.check(e) for e in encodings]
    n = len(encs)
    if n == 0:
      raise ValueError("encodings: the population is empty")
    scales = np.ones(n, np.float32) if lr_scale is None else np.asarray(lr_scale, np.float32)
    if scales.shape != (n,):
      raise ValueError(f"lr_scale: expected {n} values, got shape {scales.shape}")
    if init_variables is not None and len(init_variables) != n:
      raise ValueError(f"init_variables: expected {n} entries (None for a random init), got {len(init_variables)}")
    key_init, key_data, key_aug = jax.random.split(key, 3)
    groups = self.plan(encs)
    compiled_before = self.num_compilations
    compile_s = 0.0
    # Step indices go to the device before the loop (an index passed as a Python int would be an
    # implicit host->device copy per step), and so do the data keys (on a mesh they would otherwise
    # be copied to its devices at every step).
    step_ids = jax.device_put(list(np.arange(self.recipe.steps, dtype=np.int32)), self._sharding(P()))
    key_data, key_aug = (_replicated_key(k, self._sharding(P())) for k in (key_data, key_aug))
    batch_fn, dt = self._get("batch", (), lambda: self._build_batch_fn(),
                             self._batch_args(key_data, key_aug, step_ids[0]))
    compile_s += dt
    states, steps = [], []
    for g in groups:
      members = []
      for i in g.members:
        sig = self.space.signature(encs[i])
        args = (jax.random.fold_in(key_init, i), jnp.asarray(encs[i]), jnp.float32(scales[i]))
        init_fn, dt = self._get("init", (sig,), lambda sig=sig: self._build_init_fn(sig), args)
        compile_s += dt
        state = init_fn(*args)
        if init_variables is not None and init_variables[i] is not None:
          state = self._start_from(state, init_variables[i], i)
        members.append(state)
      states.append(self._assemble(g, members))
    x, y, t = batch_fn(*self._batch_args(key_data, key_aug, step_ids[0]))
    for gi, g in enumerate(groups):
      step_fn, dt = self._get("step", g.key, lambda g=g: self._build_step_fn(g), (states[gi], x, y, t))
      compile_s += dt
      steps.append(step_fn)
    evals = []  # with a curve: the group's eval programs, compiled before the loop (the same ones as below)
    if eval_every:
      for gi, g in enumerate(groups):
        eval_fn, dt = self._get("eval", g.key, lambda g=g: self._build_eval_fn(g), (states[gi],) + self._val)
        compile_s += dt
        evals.append(eval_fn)
    curve_steps = tuple(range(eval_every, steps_total + 1, eval_every)) if eval_every else ()
    if eval_every and curve_steps[-1] != steps_total:
      curve_steps += (steps_total,)
    at_point = set(curve_steps)
    curve_scores = []  # per eval point: the groups' float32[2, size] scores, on device
    t_start = time.perf_counter()
    for step in tqdm(range(self.recipe.steps), desc=desc, disable=not progress, leave=False):
      if callable(progress):
        progress(step)
      with jax.transfer_guard("disallow"):  # the loop only dispatches: no implicit copies
        x, y, t = batch_fn(*self._batch_args(key_data, key_aug, step_ids[step]))
        for gi in range(len(groups)):  # every group and chunk consumes the same batch and teacher outputs
          states[gi] = steps[gi](states[gi], x, y, t)
        if step + 1 in at_point:  # read before the next step donates the states
          curve_scores.append([evals[gi](states[gi], *self._val) for gi in range(len(groups))])
    jax.block_until_ready(states)
    train_s = time.perf_counter() - t_start
    scores, rows, offset = [], {}, 0  # rows[i]: student i's column in the concatenated scores
    per_student: dict[int, StudentState] = {}
    for gi, g in enumerate(groups):
      if eval_every:  # the last curve point is the final evaluation
        scores.append(curve_scores[-1][gi])
      else:
        eval_fn, dt = self._get("eval", g.key, lambda g=g: self._build_eval_fn(g), (states[gi],) + self._val)
        compile_s += dt
        with jax.transfer_guard("disallow"):
          scores.append(eval_fn(states[gi], *self._val))
      members = self._member_states(g, states[gi])
      for j, i in enumerate(g.members):
        if i not in per_student:  # padding repeats a member already stored
          rows[i] = offset + j
          per_student[i] = members[j]
      offset += g.size
    order = [rows[i] for i in range(n)]
    curve = best = None
    if eval_every:  # every point's scores leave the device in one transfer: float32[E, 2, total]
      host_curve = fetch_scores(jnp.stack([s[0] if len(s) == 1 else jnp.concatenate(s, axis=1)
                                           for s in curve_scores]))
      host = host_curve[-1]
      curve = host_curve[:, 0, order].astype(np.float32)
    else:
      host = fetch_scores(scores[0] if len(scores) == 1 else jnp.concatenate(scores, axis=1))
    acc, loss = host[0, order].astype(np.float32), host[1, order].astype(np.float32)
    if curve is not None:
      # the last row is ``acc``: where it is finite the max is too; a NaN (diverged) student stays NaN
      best = np.where(np.isfinite(acc), np.max(np.where(np.isfinite(curve), curve, -np.inf), axis=0),
                      np.nan).astype(np.float32)
    return PopulationResult(
        accuracy=acc, loss=loss, groups=groups,
        num_compilations=self.num_compilations - compiled_before, compile_seconds=compile_s,
        train_seconds=train_s,
        examples_per_s=n * self.recipe.steps * self.recipe.batch_size / max(train_s, 1e-9),
        _states=per_student, curve=curve, curve_steps=curve_steps,
        best_accuracy=acc if best is None else best)

  def _start_from(self, state: StudentState, variables: Any, i: int) -> StudentState:
    """``state`` with the given starting variables (same structure and shapes) and a fresh optimiser."""
    given = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
    own = {"params": state.params, "batch_stats": state.batch_stats}
    if jax.tree.structure(given) != jax.tree.structure(own) or any(
        np.shape(a) != np.shape(b) for a, b in zip(jax.tree.leaves(given), jax.tree.leaves(own))):
      raise ValueError(f"init_variables[{i}]: the structure or shapes differ from the student's own variables")
    # copies: the step donates the state's buffers, and the caller's variables must survive it
    params = jax.tree.map(lambda a, b: jnp.array(a, b.dtype, copy=True), given["params"], own["params"])
    batch_stats = jax.tree.map(lambda a, b: jnp.array(a, b.dtype, copy=True), given["batch_stats"],
                               own["batch_stats"])
    started = state.replace(params=params, batch_stats=batch_stats, opt_state=self.tx.init(params))
    # on the devices (and sharding) of the state it replaces: a mesh's step loop allows no implicit copies
    return jax.device_put(started, jax.tree.map(lambda a: a.sharding, state))

  # ---- program construction --------------------------------------------------------------
  def _get(self, kind: str, gkey: tuple, build, args):
    """AOT-compiles (once per ``(kind, group key, context)``) and returns ``(compiled, seconds spent)``.

    Trainers may share ``programs``, so the key carries everything a program closes over: the space,
    recipe (loss, optimiser), lowering, classes, normalisation and image shape; the batch program also
    the teacher's module, the training-set size and the padding. Arrays (teacher variables, data,
    states) are arguments, so e.g. trainers of two teachers share their step programs but not their
    batch programs."""
    precision = () if self.precision == "fp32" else (self.precision,)
    context = (self.space, self.recipe, self.lowering, self.num_classes, self._mean, self._std,
               tuple(self._sample_x.shape))
    if kind == "batch":
      context += (None if self.teacher is None else self.teacher.module, len(self.data.train.y), self._pad)
    return self.programs.get((kind,) + tuple(gkey) + precision + (context,), build, args)

  def _sharding(self, spec: P):
    return None if self.mesh is None else NamedSharding(self.mesh, spec)

  def _jit(self, fn, out_spec: P | None, donate: bool = False):
    kwargs = {"donate_argnums": 0} if donate else {}
    if self.mesh is not None and out_spec is not None:
      kwargs["out_shardings"] = NamedSharding(self.mesh, out_spec)
    return jax.jit(fn, **kwargs)

  def _state_spec(self, g: Group) -> P:
    return P("pop") if g.strategy == "vmap" else P()

  def _batch_args(self, key_data, key_aug, step):
    return (self._train_x, self._train_y, self._teacher_vars, key_data, key_aug, jnp.asarray(step, jnp.int32))

  def _build_batch_fn(self):
    counted = lambda: self.trace_counts.update([("batch",)])  # noqa: E731
    batch_fn = batch_program(self.recipe, self.teacher, len(self.data.train.y), self._mean, self._std, self._pad,
                             on_trace=counted, precision=self.precision)
    # Batches and teacher logits are split over the mesh's 'data' axis.
    return self._jit(batch_fn, P("data"))

  def _modules(self, g: Group) -> list:
    sigs = g.signature if g.strategy == "unroll" else (g.signature,)
    return [lowering_lib.specialize(self.space, np.asarray(s.encoding, np.int32), self.num_classes, self.lowering,
                                    "train")
            if isinstance(s, Static) else lowering_lib.build(self.space, s, self.num_classes, self.lowering, "train")
            for s in sigs]

  def _build_init_fn(self, signature: Hashable):
    """Single-student init, one program per signature, shared by every strategy.

    Parameters are drawn with an RBG key derived from the student's threefry key: XLA:CPU
    compiles one threefry kernel per parameter tensor, which made the init program's compile
    several times longer (docs/benchmarks.md, "Population engine"), while RBG is one
    RngBitGenerator op per tensor. Members of every strategy are
    initialised by this same program, so all strategies start from identical parameters.
    """
    module = lowering_lib.build(self.space, signature, self.num_classes, self.lowering, "train")
    tx, sample_x = self.tx, self._sample_x

    def init_fn(key, enc, scale):
      self.trace_counts[("init", signature)] += 1
      key_rbg = jax.random.wrap_key_data(jax.random.bits(key, (4,), jnp.uint32), impl="rbg")
      return _single_init(module, tx, key_rbg, enc, scale, sample_x)

    return self._jit(init_fn, P())

  def _assemble(self, g: Group, members: list[StudentState]):
    """Per-student states -> the layout of the group's program (list, stack or single)."""
    if g.strategy == "unroll":
      return members
    if g.strategy == "loop":
      return members[0]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *members)
    return stacked if self.mesh is None else jax.device_put(stacked, NamedSharding(self.mesh, P("pop")))

  def _build_step_fn(self, g: Group):
    modules, tx, loss_fn, precision = self._modules(g), self.tx, self.recipe.loss, self.precision

    def step_fn(states, x, y, t):
      self.trace_counts[("step",) + g.key] += 1
      if g.strategy == "unroll":
        return [_single_step(m, tx, loss_fn, s, x, y, t, precision) for m, s in zip(modules, states)]
      one = lambda s: _single_step(modules[0], tx, loss_fn, s, x, y, t, precision)
      return jax.vmap(one)(states) if g.strategy == "vmap" else one(states)

    return self._jit(step_fn, self._state_spec(g), donate=True)

  def _build_eval_fn(self, g: Group):
    modules, mean, std, precision = self._modules(g), self._mean, self._std, self.precision

    def eval_fn(states, vx, vy, vmask):
      """``float32[2, size]``: the members' validation accuracy and last training loss."""
      self.trace_counts[("eval",) + g.key] += 1
      one = lambda m, s: jnp.stack([_single_eval(m, s, vx, vy, vmask, mean, std, precision),  # noqa: E731
                                    s.loss.astype(jnp.float32)])
      if g.strategy == "unroll":
        return jnp.stack([one(m, s) for m, s in zip(modules, states)], axis=1)
      return jax.vmap(functools.partial(one, modules[0]), out_axes=1)(states) if g.strategy == "vmap" else \
          one(modules[0], states)[:, None]

    return self._jit(eval_fn, P())  # replicated: every process can read the scores

  # ---- helpers ------------------------------------------------------------------------------
  @staticmethod
  def _chunks(items: Sequence[int], max_size: int) -> list[list[int]]:
    """Splits into ceil(n / max_size) chunks of (nearly) equal size."""
    items = list(items)
    k = math.ceil(len(items) / max_size)
    size = math.ceil(len(items) / k)
    return [items[i:i + size] for i in range(0, len(items), size)]

  def _padded_val(self, split, eval_batch: int, sharding):
    return padded_split(split, eval_batch, sharding)

  @staticmethod
  def _member_states(g: Group, states) -> list[StudentState]:
    if g.strategy == "unroll":
      return list(states)
    if g.strategy == "vmap":
      return [jax.tree.map(lambda a, j=j: a[j], states) for j in range(g.size)]
    return [states]


def train_population(key: jax.Array, space: AbstractSearchSpace, encodings: Sequence[Any], data, *,
                     recipe: Recipe, teacher=None, strategy: str = "auto", mesh: Mesh | None = None,
                     lr_scale: Sequence[float] | None = None, progress: bool = False,
                     lowering: str | lowering_lib.Lowering = "auto") -> PopulationResult:
  """One-shot convenience wrapper: ``PopulationTrainer(...).train(key, encodings)``.

  Use a :class:`PopulationTrainer` directly to reuse compiled programs across calls (a search).
  """
  trainer = PopulationTrainer(space, data, recipe=recipe, teacher=teacher, strategy=strategy, mesh=mesh,
                              lowering=lowering)
  return trainer.train(key, encodings, lr_scale=lr_scale, progress=progress)
