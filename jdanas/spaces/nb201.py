"""NAS-Bench-201 cell space (Dong & Yang, ICLR 2020, https://arxiv.org/abs/2001.00326).

A cell is a DAG over 4 nodes with one edge per pair ``i < j`` (6 edges); node ``j`` is the sum
of ``op(i->j)(node i)`` and the cell output is node 3. Each edge picks one of
``none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3`` (5^6 = 15,625 cells).
``nor_conv_kxk`` is ReLU -> Conv(k, no bias) -> BN; the pool excludes padding from its count.
``cell_affine=False`` builds the cells' ops as the zero-cost-proxy reference code does
(Abdelfattah et al., ICLR 2021, https://github.com/SamsungLabs/zero-cost-nas, NB201 model with
``affine=False``): Conv(k, with bias) -> BN without scale and bias; stem, reductions and the
head are unchanged. Trained NB201 networks use ``cell_affine=True`` (the default).

Macro skeleton (C=16, N=5): stem Conv3x3+BN -> N cells @C -> residual reduction (C->2C)
-> N cells @2C -> residual reduction (2C->4C) -> N cells @4C -> BN+ReLU -> GAP -> Linear.

Encoding: ``int32[6]``, the op index of each edge in arch-string order
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` i.e. edges (1<-0), (2<-0), (2<-1), (3<-0), (3<-1), (3<-2).

Two forms share the encoding and parameter names:

* ``masked=False``: one module per cell (only the chosen ops exist); signature = the cell.
* ``masked=True``: one superset module whose per-edge op choice is the traced ``enc`` input, so
  any set of cells runs in ONE compiled program (signature ``()``). Unselected ops are weighted
  by an exact 0, so outputs and gradients equal the per-cell module's, at the price of computing
  every op (the superset's FLOPs); parameter counts and FLOPs always come from the per-cell
  module (:meth:`NB201Space.cost_module`).

The official NB201 index (the order of the benchmark files) is not a formula of the cell; use
:class:`jdanas.benchmarks.nb201.NB201Table` to map between indices, strings and accuracies.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Hashable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jdanas.lowering import MASKED_EDGES, ZERO_NODES
from jdanas.models import layers
from jdanas.spaces.base import AbstractSearchSpace, to_tuple

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # (to, from), arch-string order
_NODE_RE = re.compile(r"^\|(.+)\|$")


class ReLUConvBN(nn.Module):
  features: int
  kernel: int
  stride: int = 1
  affine: bool = True  # False: conv with bias, BN without scale / bias (see module docstring)

  @nn.compact
  def __call__(self, x, train: bool):
    x = layers.conv(self.features, self.kernel, self.stride, name="conv", use_bias=not self.affine)(layers.relu(x))
    return layers.batch_norm(train, "bn", affine=self.affine)(x)


class ReductionBlock(nn.Module):
  """NB201's ResNetBasicblock with stride 2: two ReLUConvBN 3x3 + (AvgPool 2 -> Conv1x1) shortcut."""
  features: int

  @nn.compact
  def __call__(self, x, train: bool):
    y = ReLUConvBN(self.features, 3, 2, name="conv_a")(x, train)
    y = ReLUConvBN(self.features, 3, 1, name="conv_b")(y, train)
    r = nn.avg_pool(x, (2, 2), (2, 2))
    r = layers.conv(self.features, 1, name="shortcut")(r)
    return r + y


def zero_like(x, form: str):
  """The output of a node or edge that is exactly zero. ``"times_zero"``: ``0 * x``, which XLA does
  not constant-fold; ``"constant"``: ``zeros_like(x)``, whose downstream ops XLA constant-folds
  while compiling (seconds per batch-sized avg-pool; :mod:`jdanas.lowering`, ``zero_node``)."""
  return x * 0.0 if form == "times_zero" else jnp.zeros_like(x)


class Edge(layers.Switching):
  """One edge. ``op`` fixed (per-cell form: only that op exists) or ``None`` (masked form).

  In the masked form the op index is a traced input. ``impl="weighted"`` sums every op weighted
  by the exact one-hot of the index (outputs and gradients bit-equal to the per-cell edge).
  ``impl="switch"`` is an ``nn.switch`` over the ops, which runs only the chosen op when the index
  is not batched. Both use the same parameter paths (``conv1x1``/``conv3x3``); which one a program
  uses is the lowering's choice (:mod:`jdanas.lowering`, ``train_edge``/``score_edge``).

  ``static_op`` (masked form only) fixes the op at trace time: the edge keeps the masked
  variable layout (every op's variables exist) but runs only that op, so a program compiled for
  one known cell computes what the per-cell edge computes, without the other ops' cost.
  """
  features: int
  op: str | None = None
  impl: str = "weighted"
  static_op: str | None = None
  affine: bool = True
  zero_node: str = "times_zero"  # see zero_like

  def setup(self):
    if self.op in (None, "nor_conv_1x1"):
      self.conv1x1 = ReLUConvBN(self.features, 1, affine=self.affine)
    if self.op in (None, "nor_conv_3x3"):
      self.conv3x3 = ReLUConvBN(self.features, 3, affine=self.affine)

  def __call__(self, h, op_index, train: bool):
    branches = [lambda m, h: jnp.zeros_like(h),
                lambda m, h: h,
                lambda m, h: m.conv1x1(h, train),
                lambda m, h: m.conv3x3(h, train),
                lambda m, h: layers.avg_pool_3x3_exclude_pad(h)]
    if self.op is not None:
      return branches[OPS.index(self.op)](self, h)
    if self.is_initializing() and (self.static_op is not None or self.impl != "weighted"):
      for branch in branches:  # create every op's variables (the weighted sum calls them all)
        branch(self, h)
    if self.static_op == "none":
      return zero_like(h, self.zero_node)  # as the weighted sum gives
    if self.static_op is not None:
      return branches[OPS.index(self.static_op)](self, h)
    if self.impl == "weighted":
      w = jax.nn.one_hot(op_index, len(OPS), dtype=h.dtype)
      return sum(w[k] * branches[k](self, h) for k in range(1, len(OPS)))
    return self.switch(op_index, branches, h)


class Cell(nn.Module):
  """One NB201 cell. ``ops`` = op names per edge (per-cell form) or ``None`` (masked form);
  ``static_ops``: masked form with the cell fixed at trace time (see :class:`Edge`)."""
  features: int
  ops: tuple[str, ...] | None = None
  edge_impl: str = "weighted"
  static_ops: tuple[str, ...] | None = None
  affine: bool = True
  zero_node: str = "times_zero"  # see zero_like

  @nn.compact
  def __call__(self, x, enc, train: bool):
    nodes = [x]
    for j in (1, 2, 3):
      acc = None
      for i in range(j):
        e = EDGES.index((j, i))
        op = None if self.ops is None else self.ops[e]
        if op == "none":
          continue
        static = None if self.static_ops is None else self.static_ops[e]
        op_index = None if self.ops is not None or static is not None else enc[e]
        edge = Edge(self.features, op, self.edge_impl, static, self.affine, self.zero_node, name=f"edge{j}{i}")
        out = edge(nodes[i], op_index, train)
        acc = out if acc is None else acc + out
      nodes.append(zero_like(x, self.zero_node) if acc is None else acc)  # all inputs 'none': zero
    return nodes[3]


class NB201Network(nn.Module):
  ops: tuple[str, ...] | None = None  # None: masked superset, the cell comes from ``enc``
  channels: int = 16
  num_cells: int = 5
  num_classes: int = 10
  edge_impl: str = "weighted"
  static_ops: tuple[str, ...] | None = None  # masked layout, cell fixed at trace time
  cell_affine: bool = True  # False: the zero-cost-proxy reference cells (see module docstring)
  zero_node: str = "times_zero"  # see zero_like

  @nn.compact
  def __call__(self, x, enc=None, *, train: bool = False) -> layers.Features:
    if self.ops is None and self.static_ops is None and enc is None:
      raise ValueError("the masked NB201 network needs the cell encoding `enc`")
    x = layers.conv(self.channels, 3, name="stem_conv")(x)
    x = layers.batch_norm(train, "stem_bn")(x)
    stages = []
    for s in range(3):
      c = self.channels * 2 ** s
      if s > 0:
        x = ReductionBlock(c, name=f"reduction{s}")(x, train)
      for k in range(self.num_cells):
        x = Cell(c, self.ops, self.edge_impl, self.static_ops, self.cell_affine, self.zero_node,
                 name=f"stage{s + 1}_cell{k}")(x, enc, train)
      stages.append(x)
    pre_pool = layers.relu(layers.batch_norm(train, "lastact_bn")(x))
    return layers.features_dict(stages, pre_pool, layers.classifier(self.num_classes))


def parse_arch_str(arch: str) -> tuple[str, ...]:
  """``'|a~0|+|b~0|c~1|+|d~0|e~1|f~2|'`` -> ``('a', 'b', 'c', 'd', 'e', 'f')`` with checks."""
  nodes = arch.strip().split("+")
  if len(nodes) != 3:
    raise ValueError(f"NB201 arch string must have 3 nodes separated by '+': {arch!r}")
  ops = []
  for j, node in enumerate(nodes, start=1):
    m = _NODE_RE.match(node)
    items = m.group(1).split("|") if m else []
    if len(items) != j:
      raise ValueError(f"NB201 arch string node {j} must have {j} edges: {arch!r}")
    for i, item in enumerate(items):
      op, _, src = item.partition("~")
      if op not in OPS or src != str(i):
        raise ValueError(f"NB201 arch string: bad edge {item!r} (ops: {', '.join(OPS)}) in {arch!r}")
      ops.append(op)
  return tuple(ops)


def format_arch_str(ops: Sequence[str]) -> str:
  groups, e = [], 0
  for j in (1, 2, 3):
    groups.append("|" + "|".join(f"{ops[e + i]}~{i}" for i in range(j)) + "|")
    e += j
  return "+".join(groups)


@dataclasses.dataclass(frozen=True)
class NB201Space(AbstractSearchSpace):
  """NAS-Bench-201 cells on the exact NB201 macro skeleton (see module docstring)."""
  channels: int = 16
  num_cells: int = 5
  masked: bool = False
  # masked form only: "weighted" or "switch" (see Edge); programs set it from their lowering (lowered)
  edge_impl: str = "weighted"
  cell_affine: bool = True  # False: conv bias, BN without scale/bias in the cells (module docstring)
  zero_node: str = "times_zero"  # see zero_like; programs set it from their lowering (lowered)
  name = "nb201"

  def __post_init__(self):
    if self.edge_impl not in MASKED_EDGES:
      raise ValueError(f"nb201.edge_impl: {self.edge_impl!r} is not one of {MASKED_EDGES}")
    if self.zero_node not in ZERO_NODES:
      raise ValueError(f"nb201.zero_node: {self.zero_node!r} is not one of {ZERO_NODES}")

  def lowered(self, lowering, purpose: str) -> "NB201Space":
    edge = lowering.masked_edge(purpose) if self.masked else self.edge_impl
    return dataclasses.replace(self, edge_impl=edge, zero_node=lowering.zero_node)

  @property
  def num_choices(self) -> tuple[int, ...]:
    return (len(OPS),) * len(EDGES)

  def encode(self, arch: str) -> np.ndarray:
    return np.asarray([OPS.index(op) for op in parse_arch_str(arch)], np.int32)

  def decode(self, enc: Any) -> str:
    return format_arch_str([OPS[i] for i in to_tuple(self.check(enc))])

  def signature(self, enc: Any) -> Hashable:
    return () if self.masked else to_tuple(enc)

  def build(self, signature: Hashable, num_classes: int) -> nn.Module:
    ops = None if self.masked else tuple(OPS[i] for i in signature)
    return NB201Network(ops=ops, channels=self.channels, num_cells=self.num_cells,
                        num_classes=num_classes, edge_impl=self.edge_impl, cell_affine=self.cell_affine,
                        zero_node=self.zero_node)

  def specialize(self, enc: Any, num_classes: int) -> nn.Module | None:
    if not self.masked:
      return None
    return NB201Network(static_ops=tuple(OPS[i] for i in to_tuple(enc)), channels=self.channels,
                        num_cells=self.num_cells, num_classes=num_classes, edge_impl=self.edge_impl,
                        cell_affine=self.cell_affine, zero_node=self.zero_node)

  def cost_module(self, enc: Any, num_classes: int) -> nn.Module:
    return NB201Network(ops=tuple(OPS[i] for i in to_tuple(enc)), channels=self.channels,
                        num_cells=self.num_cells, num_classes=num_classes, cell_affine=self.cell_affine)
