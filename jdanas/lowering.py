"""How jdanas lowers its programs on a backend: the one place for XLA:CPU workarounds.

A :class:`Lowering` is a small frozen (hashable) value chosen once per backend by
:func:`resolve` (``"auto"``: ``"cpu"`` on XLA:CPU, ``"xla"`` on GPU/TPU). Program builders (the
population trainer, the scoring programs) take one and ask it how to build each program; model
code never sees it. Every choice below changes how a program runs, never what it computes (the
equivalence tests in ``tests/test_models.py``, ``test_scoring.py`` and ``test_population.py``).

Fields, and why ``"cpu"`` chooses what it does (the measurements, with commands and dates, are in
``docs/lowering.md``, section by section):

* ``conv``: the convolution of programs that differentiate inside a loop or a conditional:
  ``"xla"`` (``lax.conv_general_dilated`` and XLA's derivatives) or ``"forward_only"``
  (:func:`jdanas.models.layers.forward_only_conv`, every derivative of any order written as a
  forward convolution; same values). Inside ``lax.map`` (every scoring program) or ``lax.switch``
  XLA:CPU computes a convolution's derivatives more than an order of magnitude slower than at top
  level, while forward convolutions keep their speed there (docs/lowering.md §1,
  ``bench/probes/forward_only_conv.py``, ``bench/probes/forward_only_convs.py``). Top-level
  training steps keep XLA's convolution. Every convolution of every registered space has a
  forward-only form (ungrouped and grouped odd square 'SAME' convolutions, strided ones as the
  stride-1 convolution subsampled, and stride = kernel 'VALID' patch embeddings as a matrix
  product); any other convolution in a forward-only program is refused with an error naming it,
  never silently run the slow way.
* ``train_edge`` / ``score_edge``: the masked NB201 edge: ``"weighted"`` (every op, weighted by
  the exact one-hot of the op index) or ``"switch"`` (``nn.switch``: only the chosen op runs when
  the index is a scalar). Scoring on CPU maps candidates one by one (scalar index), so the switch
  runs only each candidate's ops; training keeps ``"weighted"`` because the population strategies
  were measured with it (docs/lowering.md §2, ``bench/probes/masked_edge.py``).
* ``train_strategy``: what ``PopulationTrainer(strategy="auto")`` does with >= 2 students of one
  signature: ``"unroll"`` (one program looping over members in its trace) on CPU, where vmapped
  convolutions become grouped convolutions that run slower than the loop (docs/lowering.md §3,
  ``bench/population.py``); ``"vmap"`` on accelerators. Singletons always run as ``"loop"``.
* ``score_strategy``: ``score_population(strategy="auto")``: ``"map"`` (``lax.map``, one
  candidate at a time) on CPU, ``"vmap"`` (vmapped chunks) on accelerators; vmapping over
  per-candidate weights makes grouped convolutions, slower on CPU (docs/lowering.md §3).
* ``specialize_min_work``: ``PopulationTrainer(specialize="auto")`` trains each student of a
  masked space with its specialised module (``space.specialize``, one program per architecture)
  when the schedule's work (masked forward FLOPs per example x batch x steps) reaches it: on CPU
  the threshold is twice the measured break-even of one extra compilation against the per-step
  saving (docs/lowering.md §2). ``inf`` (never) on accelerators, where the masked program is
  vmapped.
* ``zero_node``: an NB201 node whose inputs are all ``none`` (and a specialised ``none`` edge):
  ``"times_zero"`` (``0 * x``) or ``"constant"`` (``zeros_like(x)``). XLA constant-folds the ops
  downstream of constant zeros while compiling, which multiplies the compile time of such cells
  (docs/lowering.md §4, ``bench/probes/none_node_compile.py``, which measures the ``"constant"``
  form); both lowerings use ``"times_zero"``.
* ``ensemble``: the forward of an ensemble teacher's members of one architecture
  (:func:`jdanas.teachers.ensemble_teacher`): ``"vmap"`` (the members' variables stacked and the
  forward vmapped: one program) or ``"loop"`` (one forward per member in the program's trace).
  Same values either way (``tests/test_ensemble.py``). On CPU the loop: vmapped convolutions
  become grouped convolutions, several times slower (docs/benchmarks.md, "Ensemble teacher",
  ``bench/probes/ensemble_teacher.py``); ``"vmap"`` on accelerators.

Spaces opt in through one method, ``space.lowered(lowering, purpose)`` (``purpose`` in
:data:`PURPOSES`), which returns the space configured for the program; :func:`build` and
:func:`specialize` then wrap the module in :class:`ForwardOnlyConvs` when the program's
convolutions are forward-only. See ``docs/lowering.md`` for the user-facing notes.

Runtime settings: :func:`configure_cpu_runtime` adds the ``XLA_FLAGS`` (:func:`cpu_runtime_flags`)
and the environment (``NPROC=1``: a one-thread intra-op pool) that avoid a crash and the XLA:CPU
wedge (a program whose run never finishes, every thread idle: batched LAPACK kernels waiting on
the pool they run on; ``docs/lowering.md``, "Hangs on XLA:CPU") to the user's own, before the
backend starts; a program that owns its process applies them through :func:`jdanas.runtime.configure`
(the library never writes the environment).
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Hashable

import flax.linen as nn
import jax
import numpy as np

from jdanas.models import layers

LOWERINGS = ("auto", "xla", "cpu")
CONVS = ("xla", "forward_only")
MASKED_EDGES = ("weighted", "switch")
ZERO_NODES = ("times_zero", "constant")
ENSEMBLES = ("vmap", "loop")
# "train": top-level training steps; "score": scoring programs without derivatives through the
# network (activation and teacher proxies); "score_derivatives": scoring programs that
# differentiate through it (gradient proxies). Every scoring program is a loop over candidates.
PURPOSES = ("train", "score", "score_derivatives")


@dataclasses.dataclass(frozen=True)
class Lowering:
  """How programs are lowered on one backend (see the module docstring for each field). Fields
  default to the ``"xla"`` choices; a variant of a preset is ``dataclasses.replace(resolve("cpu"),
  name=..., field=...)`` (the benchmarks' way to time one choice against another)."""
  name: str
  conv: str = "xla"
  train_edge: str = "weighted"
  score_edge: str = "weighted"
  train_strategy: str = "vmap"
  score_strategy: str = "vmap"
  specialize_min_work: float = math.inf
  zero_node: str = "times_zero"
  ensemble: str = "vmap"

  def __post_init__(self):
    for field, value, allowed in (("conv", self.conv, CONVS), ("train_edge", self.train_edge, MASKED_EDGES),
                                  ("score_edge", self.score_edge, MASKED_EDGES),
                                  ("train_strategy", self.train_strategy, ("unroll", "vmap")),
                                  ("score_strategy", self.score_strategy, ("map", "vmap")),
                                  ("zero_node", self.zero_node, ZERO_NODES),
                                  ("ensemble", self.ensemble, ENSEMBLES)):
      if value not in allowed:
        raise ValueError(f"Lowering.{field}: {value!r} is not one of {allowed}")

  def masked_edge(self, purpose: str) -> str:
    """The masked NB201 edge of a program for ``purpose``."""
    return self.train_edge if _check_purpose(purpose) == "train" else self.score_edge

  def program_conv(self, purpose: str) -> str:
    """The convolution of a program for ``purpose``: forward-only where it is differentiated
    inside a loop (scoring) or a conditional (switch edges), if this lowering says so."""
    inside = (purpose == "score_derivatives"
              or (_check_purpose(purpose) == "train" and self.train_edge == "switch"))
    return self.conv if inside else "xla"


def _check_purpose(purpose: str) -> str:
  if purpose not in PURPOSES:
    raise ValueError(f"purpose: {purpose!r} is not one of {PURPOSES}")
  return purpose


_PRESETS = {
    "xla": Lowering("xla"),
    "cpu": Lowering("cpu", conv="forward_only", score_edge="switch", train_strategy="unroll", score_strategy="map",
                    specialize_min_work=5e10, ensemble="loop"),
}


def on_cpu() -> bool:
  """Whether jax computes on XLA:CPU (the backend the runtime settings of :func:`configure_cpu_runtime` are for)."""
  return jax.default_backend() == "cpu"


def resolve(lowering: str | Lowering = "auto", backend: str | None = None) -> Lowering:
  """A :class:`Lowering` from a name in :data:`LOWERINGS` (``"auto"``: ``"cpu"`` on the
  ``cpu`` backend, ``"xla"`` elsewhere; ``backend`` defaults to ``jax.default_backend()``) or
  a :class:`Lowering` (returned as is)."""
  if isinstance(lowering, Lowering):
    return lowering
  if lowering not in LOWERINGS:
    raise ValueError(f"lowering: {lowering!r} is not one of {LOWERINGS} (or a jdanas.lowering.Lowering)")
  if lowering == "auto":
    lowering = "cpu" if (backend or jax.default_backend()) == "cpu" else "xla"
  return _PRESETS[lowering]


# ---- forward-only convolutions by interception -------------------------------------------------

def _forward_only_fn(m: nn.Conv, x):
  """The forward-only form of ``nn.Conv`` module ``m`` on input ``x``, or a ValueError naming it."""
  k = tuple(np.broadcast_to(np.asarray(m.kernel_size), (2,)).tolist())
  s = (1, 1) if m.strides is None else tuple(np.broadcast_to(np.asarray(m.strides), (2,)).tolist())
  unit = lambda v: v is None or all(int(a) == 1 for a in np.atleast_1d(v))  # noqa: E731
  pad = m.padding if isinstance(m.padding, str) else tuple(tuple(int(a) for a in p) for p in m.padding)
  plain = x.ndim == 4 and unit(m.input_dilation) and unit(m.kernel_dilation) and m.mask is None
  groups = int(m.feature_group_count)
  if plain and k[0] == k[1] and k[0] % 2 == 1 and s[0] == s[1] and (
      pad == layers._pad(k[0]) or (pad == "SAME" and s == (1, 1))):
    return lambda x, w: layers.forward_only_conv_general_dilated(x, w, s, layers._pad(k[0]),
                                                                 feature_group_count=groups)
  if plain and k[0] == k[1] and s == k and pad == "VALID" and groups == 1:
    return layers.patch_conv
  raise ValueError(
      f"lowering: convolution {'/'.join(m.path) or m.name} (kernel {k}, strides {s}, padding {m.padding}, "
      f"{groups} groups) has no forward-only form, and XLA:CPU differentiates it ~40x slower inside a scoring "
      "loop; pass lowering='xla' to accept XLA's convolution derivatives")


def _forward_only_interceptor(next_fun, args, kwargs, context):
  m = context.module
  if context.method_name != "__call__" or not isinstance(m, nn.Conv) or kwargs:
    return next_fun(*args, **kwargs)
  (x,) = args
  fn = _forward_only_fn(m, x)
  kernel_size = tuple(np.broadcast_to(np.asarray(m.kernel_size), (2,)).tolist())
  kernel = m.param("kernel", m.kernel_init, kernel_size + (x.shape[-1] // m.feature_group_count, m.features),
                   m.param_dtype)
  bias = m.param("bias", m.bias_init, (m.features,), m.param_dtype) if m.use_bias else None
  x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=m.dtype)
  y = fn(x, kernel)
  return y if bias is None else y + bias


class ForwardOnlyConvs(nn.Module):
  """``module`` with every ``nn.Conv`` computed by its forward-only form (same variables and
  values; the wrapper shares the module's scope, so parameter and module paths are unchanged).
  Interception happens inside the wrapper, below any recorder the caller installs."""
  module: nn.Module

  def setup(self):
    nn.share_scope(self, self.module)

  def __call__(self, *args, **kwargs):
    with nn.intercept_methods(_forward_only_interceptor):
      return self.module(*args, **kwargs)


def _wrap(module: nn.Module, lowering: Lowering, purpose: str) -> nn.Module:
  return ForwardOnlyConvs(module) if lowering.program_conv(purpose) == "forward_only" else module


def build(space, signature: Hashable, num_classes: int, lowering: Lowering, purpose: str) -> nn.Module:
  """``space.build`` for a program with ``purpose`` under ``lowering``."""
  return _wrap(space.lowered(lowering, purpose).build(signature, num_classes), lowering, purpose)


def specialize(space, enc: Any, num_classes: int, lowering: Lowering, purpose: str) -> nn.Module | None:
  """``space.specialize`` (the module fixed to one architecture) under ``lowering``, or None."""
  module = space.lowered(lowering, purpose).specialize(enc, num_classes)
  return None if module is None else _wrap(module, lowering, purpose)


def specializes(lowering: Lowering, work: float) -> bool:
  """``specialize="auto"``: whether a schedule of ``work`` (masked forward FLOPs per example x
  batch x steps) is trained with specialised programs under ``lowering``."""
  return work >= lowering.specialize_min_work


# ---- XLA:CPU runtime flags ----------------------------------------------------------------------

SAFE_ENV = "JDANAS_XLA_SAFE"  # "0": add no runtime flags (the escape hatch)
# Flag -> value. An empty ynn fusion type list turns XLA:CPU's YNNPACK fusions off: jaxlib 0.10.2's
# YNNPACK path crashes on a known program here (docs/lowering.md, "Hangs on XLA:CPU").
CPU_SAFE_FLAGS = {"--xla_cpu_experimental_ynn_fusion_type": ""}
# Environment variable -> value, read by XLA:CPU when its client starts, like XLA_FLAGS. NPROC sizes
# the intra-op thread pool. jaxlib's batched LAPACK kernels (Cholesky, triangular solve, ...) split
# a batch into chunks on that pool and block until they are done, also when they run on one of the
# pool's own workers: once every worker waits so, the chunks never run and the program never ends
# (the hang of bench/trbo_nb201.py; bench/probes/lapack_pool_deadlock.py). With one worker the
# kernels run their batch inline, so the wait cannot happen.
CPU_SAFE_ENV = {"NPROC": "1"}


def _missing(user_flags: str) -> list[str]:
  """The safe flags (``--name=value``) that ``user_flags`` does not set to any value."""
  named = {f.split("=", 1)[0] for f in user_flags.split()}
  return [f"{flag}={value}" for flag, value in CPU_SAFE_FLAGS.items() if flag not in named]


def _missing_env(env) -> dict[str, str]:
  """The safe environment variables (:data:`CPU_SAFE_ENV`) that ``env`` does not set."""
  return {name: value for name, value in CPU_SAFE_ENV.items() if name not in env}


def cpu_runtime_flags(user_flags: str | None = None) -> str:
  """``XLA_FLAGS`` with the safe XLA:CPU runtime flags (:data:`CPU_SAFE_FLAGS`) added after
  ``user_flags`` (default: the environment's ``XLA_FLAGS``); a flag the user sets, to any
  value, is kept as the user set it, never overridden. XLA:CPU's other options (oneDNN, XNNPACK,
  single-threaded Eigen) were measured on the population engine and none was faster, so none is
  added (``bench/probes/xla_cpu_flags.py``; docs/scaling.md)."""
  user = (os.environ.get("XLA_FLAGS", "") if user_flags is None else user_flags).strip()
  return " ".join([user] * bool(user) + _missing(user))


def cpu_runtime_missing(env=None) -> list[str]:
  """The safe settings (``flag=value`` of :data:`CPU_SAFE_FLAGS` in ``XLA_FLAGS``, ``NAME=value`` of
  :data:`CPU_SAFE_ENV`) that ``env`` (default ``os.environ``) does not set, to any value."""
  env = os.environ if env is None else env
  return _missing(env.get("XLA_FLAGS", "")) + [f"{name}={value}" for name, value in _missing_env(env).items()]


def configure_cpu_runtime(env=None) -> bool:
  """Sets ``env["XLA_FLAGS"]`` (default ``os.environ``) to :func:`cpu_runtime_flags` and the
  variables of :data:`CPU_SAFE_ENV` the user has not set (``NPROC=1``: a one-thread intra-op
  pool) unless ``JDANAS_XLA_SAFE=0``; never overrides a value the user set. Returns whether the
  settings are in ``env``. Process setup, not library work: XLA reads both only when jax starts its
  backend, so a program that owns its process calls it first (through :func:`jdanas.runtime.configure`:
  ``run.py``, the tests, the benches, the notebooks); jax has no public query for whether that has
  happened, so a later call cannot tell whether it took effect."""
  env = os.environ if env is None else env
  if env.get(SAFE_ENV, "1").strip() == "0":
    return False
  current = env.get("XLA_FLAGS", "")
  if _missing(current):
    env["XLA_FLAGS"] = cpu_runtime_flags(current)
  env.update(_missing_env(env))
  return True
