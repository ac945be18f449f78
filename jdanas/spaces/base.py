"""The search-space interface shared by every space.

A space is a frozen dataclass. Architectures are fixed-length ``int32[D]`` encodings
(decision ``i`` takes values ``0 .. num_choices[i]-1``); readable strings exist only on the host.

* ``sample``, ``mutate`` and ``is_valid`` are pure, jittable and vmappable.
* ``encode`` / ``decode`` convert between encodings and readable strings (host side).
* ``signature(enc)`` is the part of an architecture that fixes parameter shapes. Students
  with equal signatures share one compiled training program; everything else about the
  architecture enters the module as the traced ``enc`` argument.
* ``build(signature, num_classes)`` returns a Flax Linen module called as
  ``module.apply(variables, x, enc, train=...)`` that returns a :data:`Features` dict.
"""
from __future__ import annotations

import abc
from typing import Any, Hashable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class AbstractSearchSpace(abc.ABC):
  """Base class of all spaces: concrete spaces are frozen dataclasses."""

  name: str = "abstract"  # concrete spaces set a class attribute

  @property
  @abc.abstractmethod
  def num_choices(self) -> tuple[int, ...]:
    """Cardinality of each decision; ``D = len(num_choices)``."""

  @property
  def num_decisions(self) -> int:
    return len(self.num_choices)

  # ---- jittable -----------------------------------------------------------------------
  def sample(self, key: jax.Array) -> jax.Array:
    """A uniformly random valid encoding, ``int32[D]``."""
    maxval = jnp.asarray(self.num_choices, jnp.int32)
    return jax.random.randint(key, (self.num_decisions,), 0, maxval, dtype=jnp.int32)

  def mutate(self, key: jax.Array, enc: jax.Array) -> jax.Array:
    """Changes exactly one decision (among those with more than one choice) to another value."""
    n = jnp.asarray(self.num_choices, jnp.int32)
    key_pos, key_val = jax.random.split(key)
    mutable = n > 1
    pos = jax.random.choice(key_pos, self.num_decisions, p=mutable / mutable.sum())
    shift = jax.random.randint(key_val, (), 1, jnp.maximum(n[pos], 2), dtype=jnp.int32)
    return enc.at[pos].set((enc[pos] + shift) % n[pos]).astype(jnp.int32)

  def canonicalize(self, enc: jax.Array) -> jax.Array:
    """The canonical encoding of the same architecture (jittable).

    Spaces with decisions that can be inactive (a knob of a family that is not selected) map
    every encoding of one architecture to a single representative, so searchers never evaluate
    the same network twice under two encodings. The default is the identity.
    """
    return jnp.asarray(enc, jnp.int32)

  def active(self, enc: jax.Array) -> jax.Array:
    """``bool[D]``: the decisions that matter for ``enc`` (jittable).

    Conditional spaces (per-family knobs) mark the knobs of unselected families inactive;
    :meth:`mutate` then changes exactly one decision that is active in both parent and child.
    The default marks every decision active.
    """
    del enc
    return jnp.ones(self.num_decisions, bool)

  def params_predicate(self, max_params: float, *, num_classes: int,
                       input_shape: tuple[int, ...] = (32, 32, 3)):
    """A jittable ``feasible(enc) -> bool[]`` for ``params <= max_params``, or None when the space
    has none (the pipeline then checks the budget per proposal on the host). Spaces that can
    enumerate their architectures return a lookup table for :func:`jdanas.searchers.with_constraint`.
    """
    del max_params, num_classes, input_shape
    return None

  def is_valid(self, enc: jax.Array) -> jax.Array:
    """``bool[]``: every decision is within its range."""
    enc = jnp.asarray(enc)
    n = jnp.asarray(self.num_choices, jnp.int32)
    return jnp.all((enc >= 0) & (enc < n)) & (enc.shape == (self.num_decisions,))

  def decision_kinds(self) -> tuple[str, ...]:
    """Per decision, ``"categorical"`` (unordered choices) or ``"ordinal"`` (ordered values).

    Model-based searchers use this to pick a kernel per dimension (overlap for categorical,
    Matern on the normalised index for ordinal). The default treats every decision as
    categorical.
    """
    return ("categorical",) * self.num_decisions

  # ---- host side ----------------------------------------------------------------------
  @abc.abstractmethod
  def encode(self, arch: str) -> np.ndarray:
    """See the module docstring."""

  @abc.abstractmethod
  def decode(self, enc: Any) -> str:
    """See the module docstring."""

  @abc.abstractmethod
  def signature(self, enc: Any) -> Hashable:
    """See the module docstring."""

  @abc.abstractmethod
  def build(self, signature: Hashable, num_classes: int) -> nn.Module:
    """See the module docstring."""

  def cost_module(self, enc: Any, num_classes: int) -> nn.Module:
    """The module whose parameters and FLOPs are the architecture's true cost.

    Masked spaces (one superset module for every architecture) override this to return the
    exact architecture, so that unselected operations never count.
    """
    return self.build(self.signature(enc), num_classes)

  def specialize(self, enc: Any, num_classes: int) -> nn.Module | None:
    """A module specialised to one architecture, or None when the space has no such form.

    Masked spaces (architecture as a traced input) may return a module that has exactly the
    variable layout of ``build(signature(enc))`` but fixes ``enc`` at trace time, so it runs
    only the selected operations; it is called like the masked module (``enc`` is ignored).
    The population engine uses it to trade one compilation per architecture for faster steps
    (``PopulationTrainer(specialize=...)``).
    """
    del enc, num_classes
    return None

  @property
  def can_specialize(self) -> bool:
    """Whether :meth:`specialize` gives modules (a masked space with a specialised form)."""
    return self.specialize(np.zeros(self.num_decisions, np.int32), 2) is not None

  def lowered(self, lowering, purpose: str) -> "AbstractSearchSpace":
    """This space configured for a program with ``purpose`` under ``lowering`` (a
    :class:`jdanas.lowering.Lowering`; ``purpose`` in :data:`jdanas.lowering.PURPOSES`).

    The one place where a space opts into backend-specific structure (e.g. the masked NB201
    edge implementation). Outputs, gradients and variables must not change. The default is the
    space itself: its convolutions are lowered by the program (:func:`jdanas.lowering.build`).
    """
    del lowering, purpose
    return self

  def check(self, enc: Any) -> np.ndarray:
    """Host-side validation: returns ``int32[D]`` or raises ``ValueError`` naming the problem."""
    arr = np.asarray(enc)
    if arr.shape != (self.num_decisions,):
      raise ValueError(f"{self.name}: encoding must have shape ({self.num_decisions},), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
      raise ValueError(f"{self.name}: encoding must be integer, got dtype {arr.dtype}")
    n = np.asarray(self.num_choices)
    bad = np.nonzero((arr < 0) | (arr >= n))[0]
    if bad.size:
      i = int(bad[0])
      raise ValueError(f"{self.name}: decision {i} = {int(arr[i])} is outside 0..{n[i] - 1}")
    overridden = type(self).is_valid is not AbstractSearchSpace.is_valid  # base check done above
    if overridden and not bool(self.is_valid(jnp.asarray(arr, jnp.int32))):
      raise ValueError(f"{self.name}: encoding {arr.tolist()} is not a valid architecture")
    return arr.astype(np.int32)


class ConditionalSpace(AbstractSearchSpace):
  """A space whose decisions can be inactive (a knob of an unselected family, the width of an absent
  block): subclasses define :meth:`active`; encodings are canonical (inactive decisions 0), samples
  are canonical, and :meth:`mutate` changes exactly one decision active in the parent, giving every
  decision the change activates a fresh uniform value."""

  def canonicalize(self, enc: jax.Array) -> jax.Array:
    enc = jnp.asarray(enc, jnp.int32)
    return jnp.where(self.active(enc), enc, 0).astype(jnp.int32)

  def sample(self, key: jax.Array) -> jax.Array:
    """Every decision uniformly and independently, then canonical."""
    return self.canonicalize(super().sample(key))

  def mutate(self, key: jax.Array, enc: jax.Array) -> jax.Array:
    enc = self.canonicalize(enc)
    n = jnp.asarray(self.num_choices, jnp.int32)
    key_pos, key_val, key_fresh = jax.random.split(key, 3)
    mutable = self.active(enc) & (n > 1)
    pos = jax.random.choice(key_pos, self.num_decisions, p=mutable / jnp.maximum(mutable.sum(), 1))
    shift = jax.random.randint(key_val, (), 1, jnp.maximum(n[pos], 2), dtype=jnp.int32)
    child = enc.at[pos].set((enc[pos] + shift) % n[pos])
    newly = self.active(child) & ~self.active(enc)
    child = jnp.where(newly, AbstractSearchSpace.sample(self, key_fresh), child)
    return jnp.where(mutable.any(), self.canonicalize(child), enc).astype(jnp.int32)


def to_tuple(enc: Any) -> tuple[int, ...]:
  return tuple(int(v) for v in np.asarray(enc).reshape(-1))
