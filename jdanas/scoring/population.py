"""Batched training-free scoring of many candidate architectures.

:func:`score_population` groups candidates by ``space.signature``; for each group it initialises
ONE variable tree from ``key`` (every candidate sees the same weights for every shared parameter
path: a candidate's score depends only on ``(key, architecture, batch)``, not on its position or
on the other candidates), and runs one compiled program per proxy *group*
(:data:`jdanas.scoring.proxies.GROUPS`) that maps the per-candidate score over the group's
encodings. All masked NB201 cells form one group, so each proxy group compiles once for any
number of cells.

Strategies for the candidate axis:

* ``"map"``: ``jax.lax.map`` (a sequential loop inside one program). On XLA:CPU this is the fast
  choice: vmapping makes every op batched over candidates (and vmapped convolutions over
  per-candidate weights become grouped convolutions, much slower on CPU: docs/lowering.md §3).
* ``"vmap"``: ``jax.lax.map(..., batch_size=chunk_size)``, i.e. vmap over chunks of candidates
  (accelerators).
* ``"auto"``: the lowering's ``score_strategy`` (``"map"`` on CPU, ``"vmap"`` elsewhere).

How each program is lowered is one :class:`jdanas.lowering.Lowering` (``lowering=``): under
``"cpu"``, programs that differentiate through the network (:data:`DERIVATIVE_GROUPS`) compute
every convolution by its forward-only form (XLA:CPU differentiates convolutions inside
``lax.map`` far more slowly: docs/lowering.md §1), and ``"map"`` programs of the masked NB201 space run switch edges
(only each candidate's ops). Compiled programs live in a :class:`ProgramCache`.

The teacher runs once per call (outside the candidate map) on the same batch, in train mode with
its variables re-initialised by the same rule (``teacher_init="random"``, DisWOT's protocol) or
with its trained variables (``teacher_init="trained"``).
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, Hashable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jdanas import costs, distill
from jdanas import lowering as lowering_lib
from jdanas.scoring import init as init_lib
from jdanas.scoring.init import INITS, abstract_variables, count_params, init_variables
from jdanas.scoring.proxies import GROUP_FNS, PROXIES, PROXY_INFO, Context, _apply, finalize, paper_init
from jdanas.spaces.base import AbstractSearchSpace

SCORE_STRATEGIES = ("auto", "map", "vmap")
TEACHER_INITS = ("random", "trained")
_TEACHER_KEY = 0x7EAC  # fold-in constant: the teacher's weights differ from the students'
_NOISE_KEY = 0x2E4  # Zen's Gaussian inputs
# groups that differentiate through the network's convolutions (parameters or input)
DERIVATIVE_GROUPS = frozenset({"grad", "grasp", "fisher", "jacob_cov", "synflow"})


def resolve_strategy(strategy: str, lowering: str | lowering_lib.Lowering = "auto") -> str:
  if strategy not in SCORE_STRATEGIES:
    raise ValueError(f"strategy: {strategy!r} is not one of {SCORE_STRATEGIES}")
  return lowering_lib.resolve(lowering).score_strategy if strategy == "auto" else strategy


def _init(key, module: nn.Module, init: str, input_shape: tuple[int, ...], enc):
  return jax.device_put(init_variables(key, module, input_shape, enc, init))


def _shapes(args) -> tuple:
  leaves, treedef = jax.tree_util.tree_flatten(args)
  return treedef, tuple((tuple(a.shape), str(a.dtype)) for a in leaves)


class ProgramCache:
  """Jitted scoring programs, one per proxy group, network, settings and argument shapes; each
  compiles at its first call. ``num_compilations`` counts the programs this cache created,
  ``num_traces`` the traces JAX made of them (equal unless a program was retraced); ``clear()``
  empties it. :class:`jdanas.evaluators.zero_cost.ZeroCostEvaluator` owns one; :func:`score_population` uses a
  shared default unless given one."""

  def __init__(self):
    self._programs: dict = {}
    self.num_compilations = 0
    self.num_traces = 0

  def __len__(self) -> int:
    return len(self._programs)

  def get(self, key: Hashable, build: Callable[[], Callable], args: tuple):
    """The jitted program for ``key`` and the shapes of ``args`` (built and counted once)."""
    key = (key, _shapes(args))
    if key not in self._programs:
      fn = build()

      def traced(*a):
        self.num_traces += 1  # once per program unless JAX retraces it
        return fn(*a)
      self._programs[key] = jax.jit(traced)
      self.num_compilations += 1
    return self._programs[key]

  def clear(self):
    self._programs.clear()


DEFAULT_PROGRAMS = ProgramCache()


def clear_caches():
  """Empties every cache of compiled scoring programs and initial variables that this package
  keeps (the default :class:`ProgramCache`, teacher programs, initialisation programs) and JAX's
  own, so that the next call compiles from scratch (cold-start benchmarks)."""
  jax.clear_caches()
  DEFAULT_PROGRAMS.clear()
  _teacher_program.cache_clear()
  init_lib.clear_caches()


@functools.lru_cache(maxsize=16)
def _teacher_program(module: nn.Module, relation_tap: str):
  def fn(variables, x, y):
    feats = _apply(module, variables, x, None, train=True)
    return {"fc_grad": distill.classifier_gradient(feats["pooled"], feats["logits"], y),
            "relation": distill.tap_feature(feats, relation_tap), "logits": feats["logits"], "pooled": feats["pooled"],
            "pre_pool": feats["pre_pool"], "stages": tuple(feats["stages"])}
  return jax.jit(fn)


def _group_program(group: str, module: nn.Module, space: AbstractSearchSpace, names: tuple[str, ...],
                   relation_tap: str, semantic_mismatch: str, strategy: str, chunk_size: int):
  """``program(variables, encs, x, y, teacher, noise) -> {proxy: [P, ...]}``: the group's score of
  every encoding of one signature, mapped by ``strategy``."""
  ctx = Context(module=module, space=space, names=names, relation_tap=relation_tap,
                semantic_mismatch=semantic_mismatch)
  fn_one = GROUP_FNS[group]

  def program(variables, encs, x, y, teacher, noise):
    one = lambda enc: fn_one(ctx, variables, enc, x, y, teacher, noise)  # noqa: E731
    if strategy == "vmap" and chunk_size > 1:
      return jax.lax.map(one, encs, batch_size=min(chunk_size, encs.shape[0]))
    return jax.lax.map(one, encs)
  return program


def _run_module(space: AbstractSearchSpace, signature, group: str, strategy: str, num_classes: int,
                lowering: lowering_lib.Lowering) -> nn.Module:
  """The network a group's program runs (same variables as ``space.build(signature)``), lowered
  for a scoring program (:mod:`jdanas.lowering`): forward-only convolutions where the group
  differentiates through the network, and the lowering's masked edge under ``"map"`` (a scalar
  op index per candidate: the switch then runs only the candidate's ops; Fisher's per-channel
  terms come from gates, and activation tapes see into the branches)."""
  purpose = "score_derivatives" if group in DERIVATIVE_GROUPS else "score"
  if strategy != "map":  # a batched op index would run every branch of a switch
    lowering = dataclasses.replace(lowering, score_edge="weighted")
  return lowering_lib.build(space, signature, num_classes, lowering, purpose)


def _check_inputs(space, encodings, images, labels, proxies, num_classes, teacher, init, relation_tap,
                  strategy, teacher_init, semantic_mismatch):
  if isinstance(proxies, str):
    proxies = (proxies,)
  proxies = tuple(proxies)
  if not proxies:
    raise ValueError("proxies: give at least one proxy name")
  for p in proxies:
    if p not in PROXY_INFO:
      raise ValueError(f"proxies: unknown proxy {p!r}; choose from {', '.join(PROXIES)}")
  if init is None:
    init = paper_init(proxies)
  if init not in INITS:
    raise ValueError(f"init: {init!r} is not one of {INITS}")
  if teacher_init not in TEACHER_INITS:
    raise ValueError(f"teacher_init: {teacher_init!r} is not one of {TEACHER_INITS}")
  if semantic_mismatch not in distill.SEMANTIC_MISMATCH:
    raise ValueError(f"semantic_mismatch: {semantic_mismatch!r} is not one of {distill.SEMANTIC_MISMATCH}")
  distill.check_tap(relation_tap)
  needs = [p for p in proxies if PROXY_INFO[p].needs_teacher]
  if needs and teacher is None:
    raise ValueError(f"teacher: proxies {', '.join(needs)} compare against a teacher; pass teacher=")
  if needs and teacher.num_classes != num_classes:
    raise ValueError(f"num_classes: {num_classes} differs from the teacher's {teacher.num_classes}")
  images = np.asarray(images)
  labels = np.asarray(labels)
  if images.ndim != 4 or not np.issubdtype(images.dtype, np.floating):
    raise ValueError(f"images: need float [N, H, W, C] (normalised), got {images.dtype} {images.shape}")
  if labels.shape != (images.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"labels: need int [{images.shape[0]}], got {labels.dtype} {labels.shape}")
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f"labels: values must be in 0..{num_classes - 1}")
  encodings = np.asarray(encodings)
  if encodings.ndim != 2 or encodings.shape[0] == 0:
    raise ValueError(f"encodings: need int [P, {space.num_decisions}] with P >= 1, got shape {encodings.shape}")
  encodings = np.stack([space.check(e) for e in encodings])
  return proxies, init, strategy, images.astype(np.float32), labels.astype(np.int32), encodings


def _semantic_forms(space, teacher, modules: dict, groups: dict, encodings, proxies, input_shape,
                    semantic_mismatch) -> dict:
  """Shape checks of the teacher-student proxies before any compute; the DisWOT semantic form
  (:func:`jdanas.distill.semantic_distance`) per signature."""
  semantic = {"diswot", "diswot_semantic"} & set(proxies)
  xs = jax.ShapeDtypeStruct((2,) + input_shape, jnp.float32)
  t_abs = jax.eval_shape(lambda v, xx: teacher.module.apply(v, xx, None, train=False),
                         abstract_variables(teacher.module, input_shape, None), xs)
  forms = {}
  for sig, module in modules.items():
    enc0 = jnp.asarray(encodings[groups[sig][0]])
    s_abs = jax.eval_shape(lambda v, xx, m=module, e=enc0: m.apply(v, xx, e, train=False),
                           abstract_variables(module, input_shape, (space.num_decisions,)), xs)
    c_t, c_s = t_abs["pooled"].shape[-1], s_abs["pooled"].shape[-1]
    if semantic:
      forms[sig] = distill.semantic_form(c_s, c_t, semantic_mismatch)
    if "fitnet" in proxies and c_t != c_s:
      raise ValueError(f"proxies: 'fitnet' needs equal pooled widths (teacher {c_t}, student {c_s} "
                       f"for {space.decode(encodings[groups[sig][0]])})")
  return forms


def _teacher_outputs(key, teacher, teacher_init: str, init: str, relation_tap: str, x, y):
  """The teacher's features on the batch (once per call, outside the candidate map)."""
  if teacher_init == "random":
    t_vars = _init(jax.random.fold_in(key, _TEACHER_KEY), teacher.module, init, tuple(x.shape[1:]), None)
  else:
    t_vars = teacher.variables
  return _teacher_program(teacher.module, relation_tap)(t_vars, x, y)


def _zen_noise(key, x):
  k1, k2 = jax.random.split(jax.random.fold_in(key, _NOISE_KEY))
  return jax.random.normal(k1, x.shape), jax.random.normal(k2, x.shape)


@dataclasses.dataclass(frozen=True)
class _Run:
  """The settings of one :func:`score_population` call that every group program shares."""
  space: AbstractSearchSpace
  proxies: tuple[str, ...]
  num_classes: int
  relation_tap: str
  semantic_mismatch: str
  strategy: str
  chunk_size: int
  lowering: lowering_lib.Lowering
  programs: ProgramCache


def _score_signature(run: _Run, sig, encs, variables, batch: tuple, out: dict, idx) -> set:
  """Runs every device proxy group on the candidates ``idx`` of one signature, writing ``out``;
  returns the ``(group, signature)`` programs run."""
  device_groups = sorted({PROXY_INFO[p].group for p in run.proxies} - {"host"})
  for group in device_groups:
    names = tuple(p for p in run.proxies if PROXY_INFO[p].group == group)
    module = _run_module(run.space, sig, group, run.strategy, run.num_classes, run.lowering)
    args = (variables, encs) + batch
    key = (group, module, run.space, names, run.relation_tap, run.semantic_mismatch, run.strategy, run.chunk_size)
    build = functools.partial(_group_program, group, module, run.space, names, run.relation_tap,
                              run.semantic_mismatch, run.strategy, run.chunk_size)
    x64 = group == "synflow"  # float64: SynFlow of deep cells exceeds the float32 range
    prog = run.programs.get(key, build, args)
    with jax.enable_x64(x64):
      res = jax.device_get(prog(*args))
    for name in names:
      out[name][idx] = finalize(name, res[name])
  return {(g, sig) for g in device_groups}


def _host_scores(space, proxies, groups: dict, modules: dict, encodings, num_classes, input_shape, out: dict):
  """``params`` and ``flops`` (host side, from the exact architecture)."""
  if "params" in proxies:
    for sig, idx in groups.items():
      for i in idx:
        out["params"][i] = count_params(space, modules[sig], encodings[i], input_shape)
  if "flops" in proxies:
    for i, enc in enumerate(encodings):
      out["flops"][i] = costs.model_costs(space, enc, num_classes=num_classes, input_shape=input_shape).flops


def score_population(key: jax.Array, space: AbstractSearchSpace, encodings: Any, images: Any, labels: Any, *,
                     proxies: Sequence[str] | str, num_classes: int, teacher=None, init: str | None = None,
                     relation_tap: str = "pre_pool", strategy: str = "auto", chunk_size: int = 32,
                     teacher_init: str = "random", semantic_mismatch: str = "class_gram",
                     lowering: str | lowering_lib.Lowering = "auto", programs: ProgramCache | None = None,
                     info: dict | None = None) -> dict[str, np.ndarray]:
  """Training-free scores of ``P`` architectures on one batch (higher = predicted better).

  Args:
    key: PRNG key; fixes every weight (students and teacher) and Zen's noise.
    space: any jdanas search space.
    encodings: ``int[P, D]``.
    images: ``float32[N, H, W, C]``, already normalised.
    labels: ``int[N]``.
    proxies: names from :data:`jdanas.scoring.PROXIES`.
    num_classes: classifier width of the students.
    teacher: a :class:`jdanas.teachers.Teacher` (needed by ``diswot*``, ``kd``, ``fitnet``, ``at``,
      ``sp``, ``rkd``, ``pkt``).
    init: ``"gaussian"`` (DisWOT's rule: conv/linear N(0, 1), zero bias, BN 1/0), ``"flax"`` (the
      modules' initialisers) or ``"torch"`` (PyTorch's defaults); None (default): the proxies'
      paper initialisation (``PROXY_INFO[p].paper_init``; they must agree, see
      :func:`jdanas.scoring.proxies.init_groups`).
    relation_tap: feature tap of DisWOT's relation term: ``pre_pool`` (default; DisWOT README and
      ImageNet search), ``pooled`` (DisWOT's NB201 correlation script), ``logits`` or ``stageI``.
    strategy: ``"auto"``, ``"map"`` or ``"vmap"`` (module docstring).
    chunk_size: candidates per vmapped chunk (``"vmap"`` only).
    teacher_init: ``"random"`` (re-initialise the teacher by ``init``; DisWOT) or ``"trained"``.
    semantic_mismatch: DisWOT semantic term when teacher and student classifier widths differ
      (:func:`jdanas.distill.semantic_distance`): ``"class_gram"``, ``"drop"`` or ``"error"``.
    lowering: a name of :data:`jdanas.lowering.LOWERINGS` or a :class:`jdanas.lowering.Lowering`.
    programs: the :class:`ProgramCache` to compile into (default: one shared by every call).
    info: optional dict filled with ``semantic_form`` (per candidate), ``num_programs`` (distinct
      programs run), ``num_compilations`` (programs compiled by this call) and ``seconds``.
  Returns:
    ``{proxy: float64[P]}`` (float64: SynFlow of deep cells exceeds the float32 range); NaN where
    a score failed (NaN or +inf); ``-inf`` is kept as the worst possible score.
  """
  t0 = time.perf_counter()
  proxies, init, strategy, x_np, y_np, encodings = _check_inputs(
      space, encodings, images, labels, proxies, num_classes, teacher, init, relation_tap, strategy,
      teacher_init, semantic_mismatch)
  lowering = lowering_lib.resolve(lowering)
  strategy = resolve_strategy(strategy, lowering)
  programs = DEFAULT_PROGRAMS if programs is None else programs
  compiled_before = programs.num_compilations
  input_shape = tuple(x_np.shape[1:])
  groups: dict[Any, list[int]] = {}
  for i, enc in enumerate(encodings):
    groups.setdefault(space.signature(enc), []).append(i)
  modules = {sig: space.build(sig, num_classes) for sig in groups}
  needs_teacher = any(PROXY_INFO[p].needs_teacher for p in proxies)
  forms = (_semantic_forms(space, teacher, modules, groups, encodings, proxies, input_shape, semantic_mismatch)
           if needs_teacher else {})

  x, y = jnp.asarray(x_np), jnp.asarray(y_np)
  teacher_out = _teacher_outputs(key, teacher, teacher_init, init, relation_tap, x, y) if needs_teacher else None
  noise = _zen_noise(key, x) if "zen" in proxies else None
  out = {p: np.full(len(encodings), np.nan, np.float64) for p in proxies}
  run = _Run(space, proxies, num_classes, relation_tap, semantic_mismatch, strategy, chunk_size, lowering, programs)
  programs_run = set()
  if any(PROXY_INFO[p].group != "host" for p in proxies):
    for sig, idx in groups.items():
      variables = _init(key, modules[sig], init, input_shape, encodings[idx[0]])
      programs_run |= _score_signature(run, sig, jnp.asarray(encodings[idx]), variables, (x, y, teacher_out, noise),
                                       out, idx)
  _host_scores(space, proxies, groups, modules, encodings, num_classes, input_shape, out)
  if info is not None:
    info["semantic_form"] = [forms.get(space.signature(e)) for e in encodings]
    info["num_programs"] = len(programs_run)
    info["num_compilations"] = programs.num_compilations - compiled_before
    info["seconds"] = time.perf_counter() - t0
  # NaN or +inf = failed; -inf is a legitimate worst score (e.g. Zen of a cell whose output does
  # not depend on its input).
  return {p: np.where(np.isnan(v) | (v == np.inf), np.nan, v) for p, v in out.items()}
