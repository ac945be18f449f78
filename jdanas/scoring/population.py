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
  per-candidate weights become grouped convolutions, measured 3-30x slower on CPU).
* ``"vmap"``: ``jax.lax.map(..., batch_size=chunk_size)``, i.e. vmap over chunks of candidates
  (accelerators).
* ``"auto"``: ``"map"`` on CPU, ``"vmap"`` elsewhere.

The teacher runs once per call (outside the candidate map) on the same batch, in train mode with
its variables re-initialised by the same rule (``teacher_init="random"``, DisWOT's protocol) or
with its trained variables (``teacher_init="trained"``).
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jdanas import costs, distill
from jdanas.scoring.init import INITS, abstract_variables, count_params, init_variables
from jdanas.scoring.proxies import GROUP_FNS, PROXIES, PROXY_INFO, Context, _apply, finalize, paper_init
from jdanas.spaces.base import AbstractSearchSpace, to_tuple
from jdanas.spaces.nb201 import NB201Space

STRATEGIES = ("auto", "map", "vmap")
TEACHER_INITS = ("random", "trained")
_TEACHER_KEY = 0x7EAC  # fold-in constant: the teacher's weights differ from the students'
_NOISE_KEY = 0x2E4  # Zen's Gaussian inputs


def resolve_strategy(strategy: str) -> str:
  if strategy not in STRATEGIES:
    raise ValueError(f"strategy: {strategy!r} is not one of {STRATEGIES}")
  if strategy == "auto":
    return "map" if jax.default_backend() == "cpu" else "vmap"
  return strategy


def _init(key, module: nn.Module, init: str, input_shape: tuple[int, ...], enc):
  return jax.device_put(init_variables(key, module, input_shape, enc, init))


@functools.lru_cache(maxsize=16)
def _teacher_program(module: nn.Module, relation_tap: str):
  def fn(variables, x, y):
    feats = _apply(module, variables, x, None, train=True)
    return {"fc_grad": distill.classifier_gradient(feats["pooled"], feats["logits"], y),
            "relation": distill.tap_feature(feats, relation_tap), "logits": feats["logits"], "pooled": feats["pooled"],
            "pre_pool": feats["pre_pool"], "stages": tuple(feats["stages"])}
  return jax.jit(fn)


TRACE_COUNTS: dict[tuple, int] = {}


@functools.lru_cache(maxsize=1024)
def _group_program(group: str, module: nn.Module, space: AbstractSearchSpace, names: tuple[str, ...],
                   relation_tap: str, semantic_mismatch: str, strategy: str, chunk_size: int):
  ctx = Context(module=module, space=space, names=names, relation_tap=relation_tap,
                semantic_mismatch=semantic_mismatch)
  fn_one = GROUP_FNS[group]
  tag = (group, id(module), names, strategy)

  def program(variables, encs, x, y, teacher, noise):
    TRACE_COUNTS[tag] = TRACE_COUNTS.get(tag, 0) + 1
    one = lambda enc: fn_one(ctx, variables, enc, x, y, teacher, noise)  # noqa: E731
    if strategy == "vmap" and chunk_size > 1:
      return jax.lax.map(one, encs, batch_size=min(chunk_size, encs.shape[0]))
    return jax.lax.map(one, encs)
  return jax.jit(program)


# groups that differentiate through the network's convolutions (parameters or input)
DERIVATIVE_GROUPS = frozenset({"grad", "grasp", "fisher", "jacob_cov", "synflow"})


def _run_module(space: AbstractSearchSpace, module: nn.Module, signature, group: str, strategy: str,
                num_classes: int):
  """The module a group's program runs (same variables as ``module``):

  * under ``"map"``, the masked NB201 network with ``edge_impl="switch"``, which evaluates only
    each candidate's selected op (the candidate's encoding is a scalar inside ``lax.map``);
    measured 4.4x faster than the weighted sum of all ops for the gradient proxies at C=8 on
    XLA:CPU. Activation tapes (NASWOT, Zen) see into the branches (each branch returns its
    contributions); Fisher's per-channel terms come from gates (inputs), which work inside
    branches;
  * for groups that differentiate through convolutions (:data:`DERIVATIVE_GROUPS`) on CPU, the
    networks of spaces with a ``branch_convs`` field (NB201 and S1 ResNets, masked and per
    candidate) with ``branch_convs=True``: inside a loop (``lax.map``, which every group program
    is) XLA:CPU computes a convolution's derivatives ~40x slower than at top level, and its
    second-order kernels dominated GraSP's run time; ``branch_conv`` writes them as forward
    convolutions (``bench/branch_conv.py`` ``loop``, ``bench/branch_convs.py``)."""
  changes = {}
  if (strategy == "map" and isinstance(space, NB201Space) and space.masked
      and space.edge_impl == "weighted"):
    changes["edge_impl"] = "switch"
  if (group in DERIVATIVE_GROUPS and jax.default_backend() == "cpu" and hasattr(space, "branch_convs")
      and not space.branch_convs):
    changes["branch_convs"] = True
  return dataclasses.replace(space, **changes).build(signature, num_classes) if changes else module


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
  strategy = resolve_strategy(strategy)
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


def score_population(key: jax.Array, space: AbstractSearchSpace, encodings: Any, images: Any, labels: Any, *,
                     proxies: Sequence[str] | str, num_classes: int, teacher=None, init: str | None = None,
                     relation_tap: str = "pre_pool", strategy: str = "auto", chunk_size: int = 32,
                     teacher_init: str = "random", semantic_mismatch: str = "class_gram",
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
    info: optional dict filled with ``semantic_form`` (per candidate), ``num_programs`` (distinct
      programs run) and ``seconds``.
  Returns:
    ``{proxy: float64[P]}`` (float64: SynFlow of deep cells exceeds the float32 range); NaN where
    a score failed (NaN or +inf); ``-inf`` is kept as the
    worst possible score.
  """
  t0 = time.perf_counter()
  proxies, init, strategy, x_np, y_np, encodings = _check_inputs(
      space, encodings, images, labels, proxies, num_classes, teacher, init, relation_tap, strategy,
      teacher_init, semantic_mismatch)
  input_shape = tuple(x_np.shape[1:])
  groups: dict[Any, list[int]] = {}
  for i, enc in enumerate(encodings):
    groups.setdefault(space.signature(enc), []).append(i)
  modules = {sig: space.build(sig, num_classes) for sig in groups}

  needs_teacher = any(PROXY_INFO[p].needs_teacher for p in proxies)
  semantic = {"diswot", "diswot_semantic"} & set(proxies)
  forms = {}
  if needs_teacher:  # shape checks before any compute
    xs = jax.ShapeDtypeStruct((2,) + input_shape, jnp.float32)
    t_abs = jax.eval_shape(lambda v, xx: teacher.module.apply(v, xx, None, train=False),
                           abstract_variables(teacher.module, input_shape, None), xs)
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

  x, y = jnp.asarray(x_np), jnp.asarray(y_np)
  p_total = len(encodings)
  out = {p: np.full(p_total, np.nan, np.float64) for p in proxies}
  key_students = key
  teacher_out = None
  if needs_teacher:
    if teacher_init == "random":
      t_vars = _init(jax.random.fold_in(key, _TEACHER_KEY), teacher.module, init, input_shape, None)
    else:
      t_vars = teacher.variables
    teacher_out = _teacher_program(teacher.module, relation_tap)(t_vars, x, y)
  noise = None
  if "zen" in proxies:
    k1, k2 = jax.random.split(jax.random.fold_in(key, _NOISE_KEY))
    noise = (jax.random.normal(k1, x.shape), jax.random.normal(k2, x.shape))

  device_groups = sorted({PROXY_INFO[p].group for p in proxies} - {"host"})
  programs = set()
  for sig, idx in groups.items():
    module = modules[sig]
    encs = jnp.asarray(encodings[idx])
    variables = None
    for group in device_groups:
      names = tuple(p for p in proxies if PROXY_INFO[p].group == group)
      if variables is None:
        variables = _init(key_students, module, init, input_shape, encodings[idx[0]])
      prog = _group_program(group, _run_module(space, module, sig, group, strategy, num_classes), space, names,
                            relation_tap, semantic_mismatch, strategy, chunk_size)
      programs.add((group, sig))
      if group == "synflow":
        with jax.enable_x64(True):
          res = prog(variables, encs, x, y, teacher_out, noise)
          res = jax.device_get(res)
      else:
        res = jax.device_get(prog(variables, encs, x, y, teacher_out, noise))
      for name in names:
        out[name][idx] = finalize(name, res[name])
  if "params" in proxies:
    for sig, idx in groups.items():
      for i in idx:
        out["params"][i] = count_params(space, modules[sig], encodings[i], input_shape)
  if "flops" in proxies:
    for i, enc in enumerate(encodings):
      out["flops"][i] = costs.model_costs(space, enc, num_classes=num_classes, input_shape=input_shape).flops
  if info is not None:
    info["semantic_form"] = [forms.get(space.signature(e)) for e in encodings]
    info["num_programs"] = len(programs)
    info["seconds"] = time.perf_counter() - t0
  # NaN or +inf = failed; -inf is a legitimate worst score (e.g. Zen of a cell whose output does
  # not depend on its input).
  return {p: np.where(np.isnan(v) | (v == np.inf), np.nan, v) for p, v in out.items()}


def unique_signatures(space: AbstractSearchSpace, encodings: Any) -> int:
  return len({space.signature(to_tuple(e)) for e in np.asarray(encodings)})
