"""TRADE's multi-family student space (Kim, Myeong & Yun, "Revisiting Architecture-aware Knowledge
Distillation: Smaller Models and Faster Search", ICML 2022 HAET workshop,
https://arxiv.org/abs/2206.13130): one categorical *family* decision plus per-family integer knobs
(a flattened conditional space), for 32x32 inputs.

The paper's exact ranges are not public; the defaults are jdanas's reconstruction
(``docs/methods/trade.md``), discretised to grids (log-spaced where a range spans a factor of several):

============  ====================================================================================
family        knobs (values)
============  ====================================================================================
resnet        blocks per stage 1..9; width multiplier 0.5, 0.75, 1, 1.5, 2, 3, 4 (stem and stages
              ``int(16/16/32/64 * w)``; :func:`jdanas.models.resnet.cifar_resnet`)
wrn           depth 10, 16, 22, 28, 40; widen 1, 2, 4, 8 (:class:`jdanas.models.wrn.WideResNet`)
mobilenetv2   width 0.25, 0.5, 0.75, 1, 1.25, 1.5; depth multiplier 0.5, 0.75, 1, 1.25, 1.5;
              expansion 3, 4, 6 (:func:`jdanas.models.mobilenetv2.mobilenetv2`)
shufflenetv2  width 0.5, 1, 1.5, 2 (:func:`jdanas.models.shufflenetv2.shufflenetv2`)
vgg           config 8, 11, 13; width multiplier 0.25, 0.5, 0.75, 1 (:func:`jdanas.models.vgg.vgg`)
vit           patch 2, 4, 8; dim 96, 144, 192, 288, 384; depth 4, 6, 8, 10, 12; heads 2, 3, 4, 6;
              MLP ratio 2, 4 (:class:`jdanas.models.vit.ViT`)
convmixer     depth 4, 6, 8, 12, 16; dim 64, 96, 128, 192, 256; patch 1, 2, 4; kernel 3, 5, 7, 9
              (:class:`jdanas.models.convmixer.ConvMixer`)
============  ====================================================================================

**Encoding.** ``int32[D]``: decision 0 is the family (index into ``families``), followed by the
knobs of every family in order (each knob is the index of its value). Knobs of the families that
are not selected are *inactive*; the canonical encoding has them at 0 (:meth:`canonicalize`,
jittable), :meth:`sample` and :meth:`mutate` return canonical encodings, and :meth:`decode` /
:meth:`signature` ignore inactive knobs, so every architecture has exactly one canonical encoding.
:meth:`decision_kinds` marks the family ``categorical`` and the knobs ``ordinal``.

**Mutation** changes exactly one *active* decision: a knob of the current family to another value,
or the family to another one (the new family's knobs are then drawn uniformly and the old ones
reset to 0, i.e. they go from active to inactive). :meth:`active` gives the jittable mask.

**Strings** are ``family(knob=value,...)`` with every knob of the family, e.g.
``convmixer(depth=8,dim=96,patch=2,kernel=7)``; :meth:`encode` also accepts the zoo names of the
predefined students that the space contains (``resnet8/14/20/32/44/56``, ``wrn_16_1``, ``wrn_16_2``,
``wrn_40_1``, ``wrn_40_2``, ``mobilenetv2``, ``mobilenetv2_half``, ``shufflenetv2``,
``vgg8/11/13``; :meth:`aliases`), which build exactly the zoo modules.

**Signature** = the canonical architecture ``(family, ((knob, value), ...))``: each distinct
architecture compiles its own training program. Params come from the built model
(:func:`jdanas.costs.model_costs`); a params budget is a searcher constraint
(:meth:`params_predicate` with :func:`jdanas.searchers.with_constraint`), not a filter of the space.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Hashable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jdanas.spaces.base import ConditionalSpace, to_tuple

Knobs = tuple[tuple[str, tuple[float, ...]], ...]

DEFAULT_FAMILIES: dict[str, Knobs] = {
    "resnet": (("blocks", (1, 2, 3, 4, 5, 6, 7, 8, 9)), ("width", (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0))),
    "wrn": (("depth", (10, 16, 22, 28, 40)), ("widen", (1, 2, 4, 8))),
    "mobilenetv2": (("width", (0.25, 0.5, 0.75, 1.0, 1.25, 1.5)), ("depth", (0.5, 0.75, 1.0, 1.25, 1.5)),
                    ("expansion", (3, 4, 6))),
    "shufflenetv2": (("width", (0.5, 1.0, 1.5, 2.0)),),
    "vgg": (("config", (8, 11, 13)), ("width", (0.25, 0.5, 0.75, 1.0))),
    "vit": (("patch", (2, 4, 8)), ("dim", (96, 144, 192, 288, 384)), ("depth", (4, 6, 8, 10, 12)),
            ("heads", (2, 3, 4, 6)), ("mlp", (2, 4))),
    "convmixer": (("depth", (4, 6, 8, 12, 16)), ("dim", (64, 96, 128, 192, 256)), ("patch", (1, 2, 4)),
                  ("kernel", (3, 5, 7, 9))),
}
FAMILY_NAMES = tuple(DEFAULT_FAMILIES)

# Zoo names -> (family, knob values); an alias exists in a space iff its family and values do.
ALIASES: dict[str, tuple[str, dict[str, float]]] = {
    **{f"resnet{6 * n + 2}": ("resnet", {"blocks": n, "width": 1.0}) for n in (1, 2, 3, 5, 7, 9)},
    **{f"wrn_{d}_{k}": ("wrn", {"depth": d, "widen": k}) for d in (16, 40) for k in (1, 2)},
    "mobilenetv2": ("mobilenetv2", {"width": 1.0, "depth": 1.0, "expansion": 6}),
    "mobilenetv2_half": ("mobilenetv2", {"width": 0.5, "depth": 1.0, "expansion": 6}),
    "shufflenetv2": ("shufflenetv2", {"width": 1.0}),
    **{f"vgg{c}": ("vgg", {"config": c, "width": 1.0}) for c in (8, 11, 13)},
}

_STRING = re.compile(r"^([a-z0-9_]+)\((.*)\)$")


def _fmt(v: float) -> str:
  return f"{v:g}"


@dataclasses.dataclass(frozen=True)
class TradeSpace(ConditionalSpace):
  """Multi-family student space (see the module docstring).

  Attributes:
    families: the families searched, a subset of :data:`FAMILY_NAMES` in any order.
    knobs: optional grid overrides ``((family, ((knob, values), ...)), ...)``; a family listed here
      must list exactly its default knob names (in order) with non-empty value tuples. Tests use
      it to keep the built networks tiny.
  """
  families: tuple[str, ...] = FAMILY_NAMES
  knobs: tuple[tuple[str, Knobs], ...] = ()
  name = "trade"

  def __post_init__(self):
    fams = tuple(self.families)
    unknown = [f for f in fams if f not in DEFAULT_FAMILIES]
    if not fams or unknown or len(set(fams)) != len(fams):
      raise ValueError(f"trade.families: must be distinct names from {', '.join(FAMILY_NAMES)}, got {fams}")
    overrides = {}
    for item in self.knobs:
      fam, grid = item[0], tuple((str(k), tuple(v)) for k, v in item[1])
      if fam not in fams:
        raise ValueError(f"trade.knobs: family {fam!r} is not in families {fams}")
      names = tuple(k for k, _ in DEFAULT_FAMILIES[fam])
      if tuple(k for k, _ in grid) != names or not all(len(v) for _, v in grid):
        raise ValueError(f"trade.knobs: {fam} must list the knobs {names} in order with non-empty values")
      overrides[fam] = grid
    grids = tuple((f, overrides.get(f, DEFAULT_FAMILIES[f])) for f in fams)
    object.__setattr__(self, "families", fams)
    object.__setattr__(self, "knobs", tuple((f, tuple((k, tuple(v)) for k, v in g)) for f, g in grids))
    # Static layout tables (numpy; closed over as constants by the jittable methods).
    offsets, start = [], 1
    for _, grid in self.knobs:
      offsets.append(start)
      start += len(grid)
    object.__setattr__(self, "_offsets", tuple(offsets))
    mask = np.zeros((len(fams), start), bool)
    mask[:, 0] = True
    for i, (_, grid) in enumerate(self.knobs):
      mask[i, offsets[i]:offsets[i] + len(grid)] = True
    object.__setattr__(self, "_mask", mask)

  # ---- layout ---------------------------------------------------------------------------------
  @property
  def num_choices(self) -> tuple[int, ...]:
    return (len(self.families),) + tuple(len(v) for _, grid in self.knobs for _, v in grid)

  def decision_kinds(self) -> tuple[str, ...]:
    return ("categorical",) + ("ordinal",) * (self.num_decisions - 1)

  def decision_names(self) -> tuple[str, ...]:
    """``'family'`` then ``'<family>.<knob>'`` for every knob decision."""
    return ("family",) + tuple(f"{f}.{k}" for f, grid in self.knobs for k, _ in grid)

  def grid(self, family: str) -> Knobs:
    """The knobs ``((name, values), ...)`` of ``family`` in this space."""
    return dict(self.knobs)[family]

  # ---- jittable -------------------------------------------------------------------------------
  def active(self, enc: jax.Array) -> jax.Array:
    """``bool[D]``: the family decision and the knobs of the selected family."""
    return jnp.asarray(self._mask)[jnp.asarray(enc, jnp.int32)[0]]

  def canonical_index(self, enc: jax.Array) -> jax.Array:
    """``int32[]``: position of the architecture in :meth:`enumerate_canonical` order."""
    enc = self.canonicalize(enc)
    weights = np.zeros((len(self.families), self.num_decisions), np.int64)
    starts, total = [], 0
    for i, (_, grid) in enumerate(self.knobs):
      sizes = [len(v) for _, v in grid]
      for j in range(len(sizes)):
        weights[i, self._offsets[i] + j] = int(np.prod(sizes[j + 1:], dtype=np.int64))
      starts.append(total)
      total += int(np.prod(sizes, dtype=np.int64))
    if total >= 2 ** 31:
      raise ValueError(f"trade: {total} architectures do not fit an int32 index")
    fam = enc[0]
    return (jnp.asarray(starts, jnp.int32)[fam]
            + jnp.sum(enc * jnp.asarray(weights, jnp.int32)[fam], dtype=jnp.int32)).astype(jnp.int32)

  # ---- host side ------------------------------------------------------------------------------
  def enumerate_canonical(self) -> np.ndarray:
    """Every architecture once, ``int32[M, D]`` canonical encodings in :meth:`canonical_index` order."""
    rows = []
    for i, (_, grid) in enumerate(self.knobs):
      sizes = tuple(len(v) for _, v in grid)
      idx = np.stack(np.unravel_index(np.arange(int(np.prod(sizes))), sizes), axis=-1)
      block = np.zeros((len(idx), self.num_decisions), np.int32)
      block[:, 0] = i
      block[:, self._offsets[i]:self._offsets[i] + len(sizes)] = idx
      rows.append(block)
    return np.concatenate(rows)

  def arch(self, enc: Any) -> tuple[str, tuple[tuple[str, float], ...]]:
    """``(family, ((knob, value), ...))`` of an encoding (inactive knobs ignored)."""
    e = to_tuple(self.check(enc))
    fam, grid = self.knobs[e[0]]
    off = self._offsets[e[0]]
    return fam, tuple((k, v[e[off + j]]) for j, (k, v) in enumerate(grid))

  def aliases(self) -> tuple[str, ...]:
    """The zoo names that :meth:`encode` accepts in this space."""
    return tuple(a for a in ALIASES if self._alias_encoding(a) is not None)

  def _alias_encoding(self, alias: str) -> np.ndarray | None:
    fam, values = ALIASES[alias]
    if fam not in self.families:
      return None
    try:
      return self._encoding(fam, values)
    except ValueError:
      return None

  def _encoding(self, fam: str, values: dict[str, float]) -> np.ndarray:
    i = self.families.index(fam)
    enc = np.zeros(self.num_decisions, np.int32)
    enc[0] = i
    for j, (k, grid) in enumerate(self.knobs[i][1]):
      matches = [m for m, g in enumerate(grid) if np.isclose(float(g), float(values[k]))]
      if not matches:
        raise ValueError(f"{self.name}: {fam}.{k} = {_fmt(values[k])} is not one of "
                         f"{', '.join(_fmt(g) for g in grid)}")
      enc[self._offsets[i] + j] = matches[0]
    return enc

  def encode(self, arch: str) -> np.ndarray:
    s = str(arch).replace(" ", "")
    if s in ALIASES:
      enc = self._alias_encoding(s)
      if enc is None:
        raise ValueError(f"{self.name}: alias {s!r} is not in this space (family or knob values missing)")
      return enc
    m = _STRING.match(s)
    if not m or m.group(1) not in self.families:
      raise ValueError(f"{self.name}: {arch!r} is not 'family(knob=value,...)' with family in "
                       f"{', '.join(self.families)} nor an alias ({', '.join(self.aliases())})")
    fam, body = m.group(1), m.group(2)
    names = [k for k, _ in self.grid(fam)]
    pairs = [p.split("=") for p in body.split(",")] if body else []
    if any(len(p) != 2 for p in pairs) or [p[0] for p in pairs] != names:
      raise ValueError(f"{self.name}: {arch!r} must list {fam}'s knobs {', '.join(names)} as knob=value, in order")
    try:
      values = {k: float(v) for k, v in pairs}
    except ValueError:
      raise ValueError(f"{self.name}: {arch!r} has a non-numeric knob value") from None
    return self._encoding(fam, values)

  def decode(self, enc: Any) -> str:
    fam, values = self.arch(enc)
    return f"{fam}(" + ",".join(f"{k}={_fmt(v)}" for k, v in values) + ")"

  def signature(self, enc: Any) -> Hashable:
    fam, values = self.arch(enc)
    return fam, tuple((k, float(v)) for k, v in values)

  def build(self, signature: Hashable, num_classes: int) -> nn.Module:
    fam, values = signature
    return build_family(fam, dict(values), num_classes)

  def params_table(self, *, num_classes: int, input_shape: tuple[int, ...] = (32, 32, 3)) -> np.ndarray:
    """``int64[M]``: params of every architecture (:meth:`enumerate_canonical` order), from the
    built models (:func:`jdanas.costs.model_costs`, abstract init, cached per architecture)."""
    from jdanas.costs import model_costs
    return np.asarray([model_costs(self, e, num_classes=num_classes, input_shape=input_shape,
                                   flops=False).params for e in self.enumerate_canonical()], np.int64)

  def params_predicate(self, max_params: float, *, num_classes: int,
                       input_shape: tuple[int, ...] = (32, 32, 3)):
    """Jittable ``feasible(enc) -> bool[]``: params ``<= max_params`` (a lookup in a bool table of
    every architecture); use with :func:`jdanas.searchers.with_constraint`."""
    table = jnp.asarray(self.params_table(num_classes=num_classes, input_shape=input_shape) <= max_params)

    def feasible(enc: jax.Array) -> jax.Array:
      return table[self.canonical_index(enc)]

    return feasible


def build_family(family: str, values: dict[str, float], num_classes: int) -> nn.Module:
  """The Flax module of one family with knob values ``values`` (see the module docstring)."""
  from jdanas.models.convmixer import ConvMixer
  from jdanas.models.mobilenetv2 import mobilenetv2
  from jdanas.models.resnet import cifar_resnet
  from jdanas.models.shufflenetv2 import shufflenetv2
  from jdanas.models.vgg import vgg
  from jdanas.models.vit import ViT
  from jdanas.models.wrn import WideResNet

  v = values
  if family == "resnet":
    return cifar_resnet(int(v["blocks"]), float(v["width"]), num_classes)
  if family == "wrn":
    return WideResNet(depth=int(v["depth"]), widen_factor=int(v["widen"]), num_classes=num_classes)
  if family == "mobilenetv2":
    return mobilenetv2(num_classes, expansion=int(v["expansion"]), width_mult=float(v["width"]),
                       depth_mult=float(v["depth"]))
  if family == "shufflenetv2":
    return shufflenetv2(num_classes, float(v["width"]))
  if family == "vgg":
    return vgg(f"vgg{int(v['config'])}", num_classes, float(v["width"]))
  if family == "vit":
    return ViT(dim=int(v["dim"]), depth=int(v["depth"]), heads=int(v["heads"]), mlp_ratio=int(v["mlp"]),
               patch=int(v["patch"]), num_classes=num_classes)
  if family == "convmixer":
    return ConvMixer(dim=int(v["dim"]), depth=int(v["depth"]), patch=int(v["patch"]), kernel=int(v["kernel"]),
                     num_classes=num_classes)
  raise ValueError(f"trade: unknown family {family!r}; choose one of {', '.join(FAMILY_NAMES)}")
