"""Zero-cost proxies: definitions, signs, references, and the per-candidate programs.

Every score is oriented so that **higher = predicted better** (a distance d is reported as -d).
The distances are the batch means of the per-example distillation losses of
:mod:`jdanas.distill` (one definition for training and scoring).

| name | definition (per candidate, one batch) | reference |
| --- | --- | --- |
| ``diswot`` | ``-(M_s + M_r)``: semantic + relation distance to the teacher | Dong et al., CVPR 2023 |
| ``diswot_semantic`` | ``-M_s``: ICKD distance of classifier gradients (``semantic_distance``) | DisWOT; Liu et al., ICCV 2021 |
| ``diswot_relation`` | ``-M_r``: SP distance on ``relation_tap`` (batch mean of ``sp_loss``) | DisWOT; Tung & Mori, ICCV 2019 |
| ``naswot`` | ``log|det K|``, ``K = sum_relu (c c^T + (1-c)(1-c)^T)`` of binary ReLU codes | Mellor et al., ICML 2021 |
| ``synflow`` | ``sum |theta| * dR/d|theta|``, ``R`` = sum of logits on an all-ones input, BN off, float64 | Tanaka et al., NeurIPS 2020 |
| ``snip`` | ``sum |theta * dL/dtheta|`` (cross-entropy L) | Lee et al., ICLR 2019 |
| ``grasp`` | ``sum -theta * (H g)``, ``g = dL/dtheta`` | Wang et al., ICLR 2020 |
| ``gradnorm`` | ``sum_layers ||dL/dW||_2`` | Abdelfattah et al., ICLR 2021 |
| ``fisher`` | per channel ``0.5 mean_n (sum_hw a * dL/da)^2`` of conv/linear outputs, expanded to the weight shape, summed | Turner et al., ICLR 2020 |
| ``jacob_cov`` | ``-sum(log(v + k) + 1/(v + k))``, ``v`` = eigenvalues of the corrcoef of input Jacobians, k=1e-5 | Mellor et al. 2020 (v1) |
| ``zen`` | ``log E||f(x) - f(x + 0.01 e)||_1 + sum_BN log sqrt(mean var)``, Gaussian ``x``, pre-pool ``f`` | Lin et al., ICCV 2021 |
| ``params`` | number of parameters of the architecture | |
| ``flops`` | XLA FLOPs of the architecture's batch-1 forward (:mod:`jdanas.costs`) | |
| ``kd`` | ``-T^2 KL(p_t || p_s)``, T=4, teacher = target | Hinton et al. 2015; DisWOT §KD proxies |
| ``fitnet`` | ``-MSE`` of pooled features (equal widths required) | Romero et al., ICLR 2015 |
| ``at`` | ``-`` attention-transfer distance of the stage outputs | Zagoruyko & Komodakis, ICLR 2017 |
| ``sp`` | ``-`` SP distance of the pre-pool maps | Tung & Mori, ICCV 2019 |
| ``rkd`` | ``-`` RKD distance + angle loss of pooled features | Park et al., CVPR 2019 |
| ``pkt`` | ``-`` PKT loss of pooled features | Passalis & Tefas, ECCV 2018 |

Gradient proxies follow the zero-cost-proxy code of Abdelfattah et al. (ICLR 2021,
https://github.com/SamsungLabs/zero-cost-nas): conv and linear kernels only, batch-mean
cross-entropy, BN in train mode (batch statistics); GraSP with T=1, Fisher with the per-channel
value repeated over the weight's fan-in (as their ``reshape_elements`` does). GradNorm is the sum
over conv / linear layers of the Frobenius norm of the kernel gradient, as theirs; it runs with
PyTorch's default initialisation, which their NB201 script used: under Flax's (LeCun normal, 3x
the variance) the stem's term, which ranks accuracy worse than the cells' terms, takes a larger
share of the sum and the rank correlation with accuracy drops (docs/methods/zero_cost.md,
"GradNorm"). Their NB201 cells
carry conv biases before a parameter-free BN (``NB201Space(cell_affine=False)``): invisible to
every kernel gradient under train-mode BN, but part of Fisher's activations. SynFlow removes BN
(here: scale 1, bias 0, statistics mean 0 / variance 1 in eval mode, i.e. the identity up to
``1/sqrt(1 + 1e-5)``) and runs in float64, as the reference does: in float32 deep NB201 cells
overflow. Zen uses the batch variance of each BN's input (Zen-NAS reads the running variance) and
keeps residual links.

In the masked NB201 form, every per-layer contribution (kernels, ReLU codes, conv outputs, BN
variances) is multiplied by :func:`jdanas.scoring.init.path_weight`, so unselected ops never
count; scores equal the per-cell module's (tested).

Proxies that share a forward or backward pass form one *group* and one compiled program; groups
are kept small so that each program compiles quickly on CPU.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jdanas import distill
from jdanas.models import layers
from jdanas.scoring.init import path_names, path_weight
from jdanas.spaces.base import AbstractSearchSpace


@dataclasses.dataclass(frozen=True)
class ProxyInfo:
  name: str
  group: str  # proxies of one group share one compiled program
  needs_teacher: bool
  reference: str
  # The one source of the default initialisation (``score_population(init=None)``): the rule the
  # proxy's paper / reference code used (:mod:`jdanas.scoring.init`): DisWOT's Gaussian rule for
  # DisWOT, the KD-based proxies and Zen; PyTorch's defaults for GraSP and GradNorm, whose rank
  # correlations depend on it (docs/methods/zero_cost.md); Flax's otherwise. None: the score does
  # not depend on the weights.
  paper_init: str | None


_TABLE = (
    ProxyInfo("diswot", "teacher", True, "Dong et al., DisWOT, CVPR 2023", "gaussian"),
    ProxyInfo("diswot_semantic", "teacher", True, "Dong et al., DisWOT, CVPR 2023 (ICKD term)", "gaussian"),
    ProxyInfo("diswot_relation", "teacher", True, "Dong et al., DisWOT, CVPR 2023 (SP term)", "gaussian"),
    ProxyInfo("naswot", "naswot", False, "Mellor et al., NAS without training, ICML 2021", "flax"),
    ProxyInfo("synflow", "synflow", False, "Tanaka et al., SynFlow, NeurIPS 2020", "flax"),
    ProxyInfo("snip", "grad", False, "Lee et al., SNIP, ICLR 2019", "flax"),
    ProxyInfo("grasp", "grasp", False, "Wang et al., GraSP, ICLR 2020", "torch"),
    ProxyInfo("gradnorm", "grad", False, "Abdelfattah et al., Zero-cost proxies, ICLR 2021", "torch"),
    ProxyInfo("fisher", "fisher", False, "Turner et al., BlockSwap, ICLR 2020", "flax"),
    ProxyInfo("jacob_cov", "jacob_cov", False, "Mellor et al., NAS without training v1, 2020", "flax"),
    ProxyInfo("zen", "zen", False, "Lin et al., Zen-NAS, ICCV 2021", "gaussian"),
    ProxyInfo("params", "host", False, "parameter count", None),
    ProxyInfo("flops", "host", False, "XLA cost-analysis FLOPs", None),
    ProxyInfo("kd", "teacher", True, "Hinton et al. 2015 (DisWOT KD-based proxy)", "gaussian"),
    ProxyInfo("fitnet", "teacher", True, "Romero et al., FitNets, ICLR 2015", "gaussian"),
    ProxyInfo("at", "teacher", True, "Zagoruyko & Komodakis, AT, ICLR 2017", "gaussian"),
    ProxyInfo("sp", "teacher", True, "Tung & Mori, SP, ICCV 2019", "gaussian"),
    ProxyInfo("rkd", "teacher", True, "Park et al., RKD, CVPR 2019", "gaussian"),
    ProxyInfo("pkt", "teacher", True, "Passalis & Tefas, PKT, ECCV 2018", "gaussian"),
)
PROXY_INFO: dict[str, ProxyInfo] = {p.name: p for p in _TABLE}
PROXIES: tuple[str, ...] = tuple(PROXY_INFO)
GROUPS: tuple[str, ...] = ("teacher", "grad", "grasp", "fisher", "synflow", "naswot", "jacob_cov", "zen")


def init_groups(proxies: Sequence[str], init: str | None = None) -> dict[str | None, tuple[str, ...]]:
  """``{initialisation: proxies}``: the calls of :func:`jdanas.scoring.score_population` that score
  ``proxies`` each with its paper's initialisation (``PROXY_INFO[p].paper_init``), or all with
  ``init`` when given. Weight-independent proxies (``params``, ``flops``) join the first call."""
  if init is not None:
    return {init: tuple(proxies)}
  groups: dict[str | None, list[str]] = {}
  for p in proxies:
    groups.setdefault(PROXY_INFO[p].paper_init, []).append(p)
  free = groups.pop(None, [])
  if not groups:
    return {None: tuple(free)}
  first = next(iter(groups))
  groups[first] = free + groups[first]
  return {k: tuple(v) for k, v in groups.items()}


def paper_init(proxies: Sequence[str]) -> str:
  """The initialisation that every proxy of ``proxies`` is defined with (``PROXY_INFO[p].paper_init``;
  Flax's for weight-independent proxies alone); a one-line ``ValueError`` if they differ."""
  inits = {PROXY_INFO[p].paper_init for p in proxies} - {None}
  if len(inits) > 1:
    by = "; ".join(f"{i}: {', '.join(ps)}" for i, ps in init_groups(proxies).items())
    raise ValueError(f"init: the proxies' papers use different initialisations ({by}); pass init= or score "
                     "them in separate calls (jdanas.scoring.proxies.init_groups)")
  return inits.pop() if inits else "flax"
KD_TEMPERATURE = 4.0
ZEN_MIXUP = 1e-2
JACOB_K = 1e-5


# ---- recording taps inside a forward pass ----------------------------------------------------

class _Tape:
  """Sums per-layer contributions of activation outputs (``relu(path, y)``: every
  :class:`jdanas.models.layers.Activation`, ReLU and GELU alike) and BatchNorm inputs
  (``bn(path, x)``) during a forward pass, through Flax's method interception; ``zero`` fixes the
  structure of a contribution. ``path`` is the module that applies the activation.

  Inside a ``lax.switch`` (:class:`jdanas.models.layers.Switching`, e.g. the masked NB201 switch
  edges), each branch sums its own contributions and returns them as a branch output, so the tape
  sees the selected op's activations and the switch form, which runs only that op, can be recorded.
  """

  def __init__(self, zero, relu: Callable | None = None, bn: Callable | None = None):
    self.zero, self.on_relu, self.on_bn = zero, relu, bn
    self.sinks = [zero]

  @property
  def total(self):
    return self.sinks[0]

  def _add(self, contribution):
    self.sinks[-1] = jax.tree_util.tree_map(lambda a, c: a + c.astype(a.dtype), self.sinks[-1], contribution)

  def interceptor(self, next_fun, args, kwargs, context):
    m = context.module
    if context.method_name == "switch" and isinstance(m, layers.Switching):
      return self._switch(m, *args, **kwargs)
    out = next_fun(*args, **kwargs)
    if context.method_name != "__call__":
      return out
    if self.on_bn is not None and isinstance(m, nn.BatchNorm):
      self._add(self.on_bn(m.path, args[0]))
    if self.on_relu is not None and isinstance(m, layers.Activation):
      self._add(self.on_relu(m.path[:-1], out))
    return out

  def _switch(self, module, index, branches, *operands):
    def recorded(branch):
      def run(m, *ops):
        self.sinks.append(self.zero)
        try:
          out = branch(m, *ops)
        finally:
          inside = self.sinks.pop()
        return out, inside
      return run
    out, inside = nn.switch(index, [recorded(b) for b in branches], module, *operands)
    self._add(inside)
    return out

  def active(self):
    return nn.intercept_methods(self.interceptor)


def _apply(module, variables, x, enc, *, train: bool, tape: _Tape | None = None):
  """Forward pass; train mode uses batch statistics (updates discarded)."""
  ctx = tape.active() if tape is not None else contextlib.nullcontext()
  with ctx:
    if train:
      feats, _ = module.apply(variables, x, enc, train=True, mutable=["batch_stats"])
    else:
      feats = module.apply(variables, x, enc, train=False)
  return feats


def _ce(logits, labels):
  logp = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))


def _kernels(tree) -> list[tuple[tuple[str, ...], jax.Array]]:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return [(path_names(p), v) for p, v in leaves if path_names(p)[-1] == "kernel"]


# ---- per-candidate score functions -----------------------------------------------------------
# Each takes (ctx, variables, enc) and returns {proxy name: value}. ``ctx`` holds the closed-over
# static configuration and the batch.

@dataclasses.dataclass(frozen=True)
class Context:
  module: nn.Module
  space: AbstractSearchSpace | None
  names: tuple[str, ...]
  relation_tap: str = "pre_pool"
  semantic_mismatch: str = "class_gram"


def _teacher_group(ctx: Context, v, enc, x, y, teacher: dict, noise) -> dict:
  del noise
  feats = _apply(ctx.module, v, x, enc, train=True)
  out = {}
  if {"diswot", "diswot_semantic", "diswot_relation"} & set(ctx.names):
    g_s = distill.classifier_gradient(feats["pooled"], feats["logits"], y)
    m_s = distill.semantic_distance(g_s, teacher["fc_grad"], mismatch=ctx.semantic_mismatch)
    m_r = jnp.mean(distill.sp_loss(distill.tap_feature(feats, ctx.relation_tap), teacher["relation"]))
    out.update(diswot=-(m_s + m_r), diswot_semantic=-m_s, diswot_relation=-m_r)
  if "kd" in ctx.names:
    out["kd"] = -jnp.mean(distill.soft_kd_loss(feats["logits"], teacher["logits"], temperature=KD_TEMPERATURE))
  if "fitnet" in ctx.names:
    out["fitnet"] = -jnp.mean(distill.fitnet_loss(feats["pooled"], teacher["pooled"]))
  if "at" in ctx.names:
    out["at"] = -jnp.mean(distill.at_loss(feats["stages"], teacher["stages"]))
  if "sp" in ctx.names:
    out["sp"] = -jnp.mean(distill.sp_loss(feats["pre_pool"], teacher["pre_pool"]))
  if "rkd" in ctx.names:
    out["rkd"] = -jnp.mean(distill.rkd_loss(feats["pooled"], teacher["pooled"]))
  if "pkt" in ctx.names:
    out["pkt"] = -jnp.mean(distill.pkt_loss(feats["pooled"], teacher["pooled"]))
  return out


def _ce_loss_fn(ctx: Context, v, enc, x, y):
  def loss(params):
    feats = _apply(ctx.module, {**v, "params": params}, x, enc, train=True)
    return _ce(feats["logits"], y)
  return loss


def _grad_group(ctx: Context, v, enc, x, y, teacher, noise) -> dict:
  del teacher, noise
  grads = jax.grad(_ce_loss_fn(ctx, v, enc, x, y))(v["params"])
  snip, gnorm = 0.0, 0.0
  for (names, theta), (_, g) in zip(_kernels(v["params"]), _kernels(grads)):
    w = path_weight(ctx.space, names, enc)
    snip = snip + w * jnp.sum(jnp.abs(theta * g))
    gnorm = gnorm + w * jnp.sqrt(jnp.sum(g * g))
  return {"snip": jnp.asarray(snip), "gradnorm": jnp.asarray(gnorm)}


def _grasp_group(ctx: Context, v, enc, x, y, teacher, noise) -> dict:
  del teacher, noise
  loss = _ce_loss_fn(ctx, v, enc, x, y)
  params = v["params"]
  # g and H g from one linearisation of the gradient: H is symmetric, so the VJP of
  # ``grad(loss)`` at ``g`` is ``H g`` (reverse over reverse: the switch edges' convolutions have
  # custom VJPs, no JVP rule). The gradient is not computed a second time.
  g, hvp = jax.vjp(jax.grad(loss), params)
  tangent = jax.tree_util.tree_map_with_path(
      lambda p, a: a if path_names(p)[-1] == "kernel" else jnp.zeros_like(a), g)
  (hg,) = hvp(tangent)
  total = 0.0
  for (names, theta), (_, h) in zip(_kernels(params), _kernels(hg)):
    total = total + path_weight(ctx.space, names, enc) * jnp.sum(-theta * h)
  return {"grasp": jnp.asarray(total)}


class _Gates:
  """Multiplies every conv / linear output by a gate ``s[n, c]`` (ones) keyed by module path.

  ``dL/ds[n, c] = sum_hw a * dL/da`` is Fisher's per-sample, per-channel term. Unlike an
  activation tape, gates are inputs: they work inside ``lax.switch`` branches (the switch edges
  of the masked NB201 form), where a recorded activation could not leave its branch. With
  ``gates=None`` the interceptor only records each layer's output shape and fan-in (static).
  """

  def __init__(self, gates=None):
    self.gates = gates
    self.meta: dict[tuple[str, ...], tuple[tuple[int, ...], int]] = {}

  def interceptor(self, next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    m = context.module
    if context.method_name != "__call__" or not isinstance(m, (nn.Conv, nn.Dense)):
      return out
    if self.gates is None:
      if m.path in self.meta:
        raise ValueError(f"proxies: 'fisher' needs each conv/linear layer called once; {'/'.join(m.path)} "
                         "is called twice")
      self.meta[m.path] = ((out.shape[0], out.shape[-1]), int(np.prod(m.get_variable("params", "kernel").shape[:-1])))
      return out
    g = self.gates[m.path]
    return out * g.reshape(g.shape[:1] + (1,) * (out.ndim - 2) + g.shape[-1:]).astype(out.dtype)


def _fisher_group(ctx: Context, v, enc, x, y, teacher, noise) -> dict:
  del teacher, noise
  record = _Gates()

  def loss(tape):
    with nn.intercept_methods(tape.interceptor):
      feats = _apply(ctx.module, v, x, enc, train=True)
    return _ce(feats["logits"], y)

  jax.eval_shape(lambda: loss(record))  # static: every layer's gate shape and fan-in
  ones = {path: jnp.ones(shape, x.dtype) for path, (shape, _) in record.meta.items()}
  grads = jax.grad(lambda gates: loss(_Gates(gates)))(ones)
  total = 0.0
  for path, (_, fan_in) in record.meta.items():
    del_k = 0.5 * jnp.mean(grads[path] ** 2, axis=0)
    total = total + path_weight(ctx.space, path, enc) * fan_in * jnp.sum(del_k)
  return {"fisher": jnp.asarray(total)}


def _synflow_variables(tree, in_bn: bool = False):
  """|params| in float64, with every BatchNorm made the identity (scale 1, bias 0, mean 0, var 1)."""
  if isinstance(tree, dict) or hasattr(tree, "items"):
    bn = "scale" in tree
    return {k: _synflow_variables(val, bn) for k, val in tree.items()}
  if in_bn:
    return jnp.zeros(tree.shape, jnp.float64)  # BN bias
  return jnp.abs(tree).astype(jnp.float64)


def _synflow_group(ctx: Context, v, enc, x, y, teacher, noise) -> dict:
  del y, teacher, noise
  params = _synflow_variables(v["params"])
  params = jax.tree_util.tree_map_with_path(
      lambda p, a: jnp.ones_like(a) if path_names(p)[-1] == "scale" else a, params)
  stats = jax.tree_util.tree_map_with_path(
      lambda p, a: jnp.full(a.shape, 1.0 if path_names(p)[-1] == "var" else 0.0, jnp.float64),
      v.get("batch_stats", {}))
  ones = jnp.ones((1,) + x.shape[1:], jnp.float64)

  def r(p):
    return jnp.sum(_apply(ctx.module, {"params": p, "batch_stats": stats}, ones, enc, train=False)["logits"])
  grads = jax.grad(r)(params)
  total = 0.0
  for (names, theta), (_, g) in zip(_kernels(params), _kernels(grads)):
    total = total + path_weight(ctx.space, names, enc) * jnp.sum(theta * g)
  return {"synflow": jnp.asarray(total)}


def _naswot_group(ctx: Context, v, enc, x, y, teacher, noise) -> dict:
  del y, teacher, noise
  n = x.shape[0]

  def kernel(path, a):
    c = (a.reshape(n, -1) > 0).astype(jnp.float32)
    return path_weight(ctx.space, path, enc) * (c @ c.T + (1.0 - c) @ (1.0 - c).T)

  tape = _Tape(jnp.zeros((n, n), jnp.float32), relu=kernel)
  _apply(ctx.module, v, x, enc, train=True, tape=tape)
  return {"naswot": tape.total}  # finalised on the host: slogdet


def _jacob_group(ctx: Context, v, enc, x, y, teacher, noise) -> dict:
  del y, teacher, noise
  jac = jax.grad(lambda xx: jnp.sum(_apply(ctx.module, v, xx, enc, train=True)["logits"]))(x)
  j = jac.reshape(x.shape[0], -1)
  j = j - jnp.mean(j, axis=1, keepdims=True)
  j = j / jnp.maximum(jnp.sqrt(jnp.sum(j * j, axis=1, keepdims=True)), 1e-30)
  return {"jacob_cov": j @ j.T}  # correlation matrix; finalised on the host: eigenvalues


def _zen_group(ctx: Context, v, enc, x, y, teacher, noise) -> dict:
  del y, teacher
  x0, eps = noise

  def log_std(path, a):  # log sqrt of the mean batch variance of a BN's input
    var = jnp.var(a, axis=tuple(range(a.ndim - 1)))
    return path_weight(ctx.space, path, enc) * jnp.log(jnp.sqrt(jnp.mean(var)))

  tape = _Tape(jnp.zeros((), jnp.float32), bn=log_std)
  f0 = _apply(ctx.module, v, x0, enc, train=True, tape=tape)["pre_pool"]
  f1 = _apply(ctx.module, v, x0 + ZEN_MIXUP * eps, enc, train=True)["pre_pool"]
  nas = jnp.mean(jnp.sum(jnp.abs(f0 - f1), axis=tuple(range(1, f0.ndim))))
  return {"zen": jnp.log(nas) + tape.total}


GROUP_FNS: dict[str, Callable[..., dict]] = {
    "teacher": _teacher_group, "grad": _grad_group, "grasp": _grasp_group, "fisher": _fisher_group,
    "synflow": _synflow_group, "naswot": _naswot_group, "jacob_cov": _jacob_group, "zen": _zen_group,
}


def finalize(name: str, value: np.ndarray) -> np.ndarray:
  """Host-side last step (float64) for proxies whose programs return matrices."""
  value = np.asarray(value, np.float64)
  if name == "naswot":
    return np.asarray([np.linalg.slogdet(k)[1] for k in value])
  if name == "jacob_cov":
    out = []
    for c in value:
      if not np.all(np.isfinite(c)):
        out.append(np.nan)
        continue
      ev = np.linalg.eigvalsh((c + c.T) / 2.0)
      out.append(-np.sum(np.log(ev + JACOB_K) + 1.0 / (ev + JACOB_K)))
    return np.asarray(out)
  return value
