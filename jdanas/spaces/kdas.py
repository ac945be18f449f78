"""KDAS: add-on operations on a backbone student (Kang, Mun & Han, "Towards Oracle Knowledge
Distillation with Neural Architecture Search", AAAI 2020; docs/methods/oracle_kd.md).

The backbone is a CIFAR ResNet of the zoo (ResNet-32 by default: stem, three stages of basic
blocks; :mod:`jdanas.models.resnet`, same parameter names ``stage{s}_block{b}``). ``L`` add-on
layers sit at configurable positions: ``positions[l]`` is the (1-based) stage at whose end add-on
``l`` is inserted, after the stage's blocks and the add-ons before it, before the next stage
(default ``(1, 2, 3)``: one per stage). An add-on keeps the stage's width and resolution.

Each add-on takes one op of :data:`OPS` and two binary connection decisions (``7^L x 2^(2L)``
architectures, the paper's count). The paper does not say what the connections are; jdanas
reads them as follows (a documented choice). Let ``h[-1]`` be the last layer's output in the
stage so far (the last block or the previous add-on) and ``h[-2]`` the layer before it (the
stage's second-to-last block or add-on, same shape: a positioned stage needs >= 2 blocks):

* ``input`` (bit 1): the add-on reads ``a = h[-1] + input * h[-2]`` (a skip connection from the
  layer before the previous one);
* ``residual`` (bit 2): its output is ``op(a) + residual * a`` (an identity shortcut around the op).

Ops (all stride 1, ``C`` channels): ``identity``; ``conv3x3``/``conv5x5``: ReLU -> Conv -> BN;
``sepconv3x3``/``sepconv5x5``: ReLU -> depthwise Conv(k) -> pointwise Conv 1x1 -> BN (ENAS's
separable convolution, Pham et al., ICML 2018); ``maxpool3x3``; ``avgpool3x3`` (padding
excluded from the count, as NAS-Bench-201's); each pool is followed by BatchNorm without scale and
bias (no parameters), as DARTS's pooling ops (Liu et al., ICLR 2019), see :class:`PoolBN`.

Encoding: ``int32[3L]``, per add-on ``(op index, input, residual)``. Architecture strings are
the add-ons joined by ``|``, each ``op:IR`` with the two bits, e.g.
``conv3x3:01|identity:00|sepconv5x5:11``.

Two forms share the encoding and the parameter names (``addon{l}/conv3x3/...``):

* ``kdas`` (``masked=False``): one module per architecture with only the chosen ops (the final
  student; its params/FLOPs are the architecture's costs).
* ``kdas_masked`` (``masked=True``): one supernet whose choices are the traced ``enc`` input:
  every op of an add-on runs and is weighted by the exact one-hot of its index, the bits
  multiply (``0 * h`` or ``1 * h``), so outputs equal the exact module's with the shared
  weights (weight sharing across children, ENAS-style) and all architectures run in ONE
  compiled program (signature ``()``). :meth:`KDASSpace.specialize` fixes the choices at trace
  time in the masked variable layout; :meth:`KDASSpace.cost_module` is the exact module.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Hashable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jdanas.models import layers
from jdanas.models.resnet import BasicBlock, CifarResNet
from jdanas.models.zoo import MODELS, get_model
from jdanas.spaces.base import AbstractSearchSpace, to_tuple
from jdanas.spaces.nb201 import ReLUConvBN

OPS = ("identity", "conv3x3", "conv5x5", "sepconv3x3", "sepconv5x5", "maxpool3x3", "avgpool3x3")
_PARAM_OPS = {"conv3x3": 3, "conv5x5": 5, "sepconv3x3": 3, "sepconv5x5": 5}
_POOL_OPS = ("maxpool3x3", "avgpool3x3")
_VAR_OPS = tuple(_PARAM_OPS) + _POOL_OPS  # the ops with variables (BatchNorm statistics at least)


class SepConv(nn.Module):
  """ReLU -> depthwise Conv(k) -> pointwise Conv 1x1 -> BN (ENAS's separable convolution)."""
  features: int
  kernel: int

  @nn.compact
  def __call__(self, x, train: bool):
    x = layers.conv(self.features, self.kernel, groups=self.features, name="depthwise")(layers.relu(x))
    x = layers.conv(self.features, 1, name="pointwise")(x)
    return layers.batch_norm(train, "bn")(x)


class PoolBN(nn.Module):
  """A 3x3 stride-1 pool followed by BatchNorm without scale and bias (no parameters): DARTS's
  pooling op (Liu, Simonyan & Yang, "DARTS: Differentiable Architecture Search", ICLR 2019). Without
  it a max-pool add-on before the classifier inflates the features at init, the first steps drive
  the last ReLUs dead and the network stays at chance (docs/methods/oracle_kd.md, "A child that did
  not learn"; the diagnosis's figures: docs/benchmarks.md, "A child that did not learn (KDAS)")."""
  kind: str

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.max_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1))) if self.kind == "maxpool3x3" else \
        layers.avg_pool_3x3_exclude_pad(x)
    return layers.batch_norm(train, "bn", affine=False)(x)


class AddOn(nn.Module):
  """One add-on op. ``op`` fixed (exact form: only that op exists) or None (masked layout: every
  op's variables exist), then ``static_op`` (the op fixed at trace time) or the traced
  ``op_index`` (every op runs, weighted by the exact one-hot of the index)."""
  features: int
  op: str | None = None
  static_op: str | None = None

  def setup(self):
    for name, k in _PARAM_OPS.items():
      if self.op in (None, name):
        conv = SepConv(self.features, k) if name.startswith("sep") else ReLUConvBN(self.features, k)
        setattr(self, name, conv)
    for name in _POOL_OPS:
      if self.op in (None, name):
        setattr(self, name, PoolBN(name))

  def __call__(self, a, op_index, train: bool):
    branches = [lambda a: a,
                lambda a: self.conv3x3(a, train),
                lambda a: self.conv5x5(a, train),
                lambda a: self.sepconv3x3(a, train),
                lambda a: self.sepconv5x5(a, train),
                lambda a: self.maxpool3x3(a, train),
                lambda a: self.avgpool3x3(a, train)]
    op = self.op or self.static_op
    if self.op is None and self.is_initializing():
      for k, branch in enumerate(branches):  # the masked layout: every op's variables
        if OPS[k] in _VAR_OPS and OPS[k] != op:
          branch(a)
    if op is not None:
      return branches[OPS.index(op)](a)
    w = jax.nn.one_hot(op_index, len(OPS), dtype=a.dtype)
    out = w[0] * branches[0](a)
    for k in range(1, len(OPS)):
      out = out + w[k] * branches[k](a)
    return out


class KDASNetwork(nn.Module):
  """A CIFAR ResNet backbone with add-ons (see the module docstring). ``arch``: the encoding fixed
  at trace time (exact form, or the masked layout when ``masked``); None: masked, traced ``enc``."""
  depths: tuple[int, ...] = (5, 5, 5)
  widths: tuple[int, ...] = (16, 32, 64)
  stem: int = 16
  positions: tuple[int, ...] = (1, 2, 3)
  num_classes: int = 10
  arch: tuple[int, ...] | None = None
  masked: bool = False

  @nn.compact
  def __call__(self, x, enc=None, *, train: bool = False) -> layers.Features:
    if self.arch is None and enc is None:
      raise ValueError("the masked KDAS network needs the encoding `enc`")
    choices = self.arch if self.arch is not None else jnp.asarray(enc, jnp.int32)
    x = layers.conv(self.stem, 3, name="stem_conv")(x)
    x = layers.relu(layers.batch_norm(train, "stem_bn")(x))
    stages = []
    for s, (depth, width) in enumerate(zip(self.depths, self.widths)):
      h = []
      for b in range(depth):
        x = BasicBlock(width, 2 if (s > 0 and b == 0) else 1, name=f"stage{s + 1}_block{b}")(x, train)
        h.append(x)
      for l, pos in enumerate(self.positions):
        if pos != s + 1:
          continue
        op, use_input, residual = (choices[3 * l + i] for i in range(3))
        if self.arch is None:  # traced: exact 0/1 multipliers
          a = h[-1] + use_input.astype(x.dtype) * h[-2]
          y = AddOn(width, name=f"addon{l}")(a, op, train)
          x = y + residual.astype(x.dtype) * a
        else:
          a = h[-1] + h[-2] if use_input else h[-1]
          name = OPS[op]
          y = AddOn(width, None if self.masked else name, name if self.masked else None, name=f"addon{l}")(
              a, None, train)
          x = y + a if residual else y
        h.append(x)
      stages.append(x)
    return layers.features_dict(stages, x, layers.classifier(self.num_classes))


def _backbone(name: str) -> CifarResNet:
  module = get_model(name, 10) if name in MODELS else None
  if not isinstance(module, CifarResNet):
    names = sorted(n for n in MODELS if isinstance(get_model(n, 10), CifarResNet))
    raise ValueError(f"kdas.backbone: {name!r} is not a CIFAR ResNet of the zoo; choose one of {', '.join(names)}")
  return module


@dataclasses.dataclass(frozen=True)
class KDASSpace(AbstractSearchSpace):
  """KDAS add-ons on a backbone (see the module docstring).

  Args:
    backbone: a CIFAR ResNet of the zoo (``resnet32`` default; ``resnet20``, ``resnet56``, ...).
    positions: the stage (1-based, non-decreasing) of each add-on; ``L = len(positions)``.
    depths, widths, stem: when given, replace the backbone's (small networks for tests).
    masked: the weight-sharing supernet form (``kdas_masked``).
  """
  backbone: str = "resnet32"
  positions: tuple[int, ...] = (1, 2, 3)
  depths: tuple[int, ...] | None = None
  widths: tuple[int, ...] | None = None
  stem: int | None = None
  masked: bool = False
  name = "kdas"

  def __post_init__(self):
    base = _backbone(self.backbone)
    for field, value in (("depths", base.depths), ("widths", base.widths), ("stem", base.stem)):
      if getattr(self, field) is None:
        object.__setattr__(self, field, tuple(value) if field != "stem" else int(value))
    for field in ("positions", "depths", "widths"):
      object.__setattr__(self, field, tuple(int(v) for v in getattr(self, field)))
    p, n = self.positions, len(self.widths)
    if len(self.depths) != n:
      raise ValueError(f"kdas.depths: {len(self.depths)} stages but {n} widths")
    if not p or any(not 1 <= v <= n for v in p) or list(p) != sorted(p):
      raise ValueError(f"kdas.positions: need >= 1 non-decreasing stages in 1..{n}, got {p!r}")
    short = sorted({v for v in p if self.depths[v - 1] < 2})
    if short:
      raise ValueError(f"kdas.positions: stage(s) {short} have < 2 blocks (an add-on reads the last two layers "
                       f"of its stage); depths {self.depths}")

  @property
  def num_layers(self) -> int:
    return len(self.positions)

  @property
  def num_choices(self) -> tuple[int, ...]:
    return (len(OPS), 2, 2) * self.num_layers

  def encode(self, arch: str) -> np.ndarray:
    parts = str(arch).strip().split("|")
    if len(parts) != self.num_layers:
      raise ValueError(f"{self.name}: need {self.num_layers} add-ons 'op:IR' joined by '|', got {arch!r}")
    out = []
    for part in parts:
      op, _, bits = part.partition(":")
      if op not in OPS or len(bits) != 2 or any(b not in "01" for b in bits):
        raise ValueError(f"{self.name}: bad add-on {part!r} (op:IR with op in {', '.join(OPS)}, bits 0/1)")
      out += [OPS.index(op), int(bits[0]), int(bits[1])]
    return np.asarray(out, np.int32)

  def decode(self, enc: Any) -> str:
    e = to_tuple(self.check(enc))
    return "|".join(f"{OPS[e[3 * l]]}:{e[3 * l + 1]}{e[3 * l + 2]}" for l in range(self.num_layers))

  def signature(self, enc: Any) -> Hashable:
    return () if self.masked else to_tuple(enc)

  def _network(self, num_classes: int, arch, masked: bool) -> KDASNetwork:
    return KDASNetwork(depths=tuple(self.depths), widths=tuple(self.widths), stem=int(self.stem),
                       positions=self.positions, num_classes=num_classes, arch=arch, masked=masked)

  def build(self, signature: Hashable, num_classes: int) -> nn.Module:
    return self._network(num_classes, None, True) if self.masked else self._network(
        num_classes, tuple(signature), False)

  def specialize(self, enc: Any, num_classes: int) -> nn.Module | None:
    return self._network(num_classes, to_tuple(enc), True) if self.masked else None

  def cost_module(self, enc: Any, num_classes: int) -> nn.Module:
    return self._network(num_classes, to_tuple(enc), False)
