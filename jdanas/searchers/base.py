"""The searcher interface and the fixed-capacity archive of evaluated architectures.

A searcher is a NamedTuple of three pure functions built by a lowercase factory that closes over
the space and the structural sizes (optax's ``GradientTransformation`` pattern; evosax's
ask/tell with ``flax.struct`` states):

* ``init(key) -> state``
* ``ask(key, state) -> (encodings int32[Q, D], state)``
* ``tell(key, state, encodings int32[Q, D], scores float32[Q], **extra) -> (state, metrics)``

Scores are higher-is-better; NaN marks a failed evaluation that can never become the incumbent.
``tell`` accepts extra keywords (``cost=...``, ``flops=...``) and ignores those it does not use.
Metrics are a dict of scalar arrays, so logging never reads inside the state. States hold arrays
only (no keys, no Python scalars) with shapes fixed for the whole search, so ``ask`` and ``tell``
compile once and the whole loop runs inside ``lax.scan``. Pass scores as strongly typed
``float32`` (``jnp.full((Q,), jnp.nan)`` is weakly typed and would trace a jitted ``tell`` again).

:class:`Archive` pads the history to a fixed capacity N with a validity mask (Vizier's
``PaddedArray`` discipline) so its shape never changes as trials accumulate.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import flax.struct
import jax
import jax.numpy as jnp

Key = jax.Array
Encodings = jax.Array  # int32[Q, D]
Scores = jax.Array  # float32[Q]
Metrics = dict[str, jax.Array]
State = Any  # a flax.struct.dataclass with array leaves only


class InitFn(Protocol):
  def __call__(self, key: Key) -> State: ...


class AskFn(Protocol):
  def __call__(self, key: Key, state: State) -> tuple[Encodings, State]: ...


class TellFn(Protocol):
  def __call__(self, key: Key, state: State, encodings: Encodings, scores: Scores,
               **extra: Any) -> tuple[State, Metrics]: ...


class Searcher(NamedTuple):
  """Three pure, jittable functions; see the module docstring for the contract."""
  init: InitFn
  ask: AskFn
  tell: TellFn


@flax.struct.dataclass
class Archive:
  """Evaluated architectures in a fixed-capacity, masked buffer.

  Rows are kept sorted best-first (see :func:`archive_add`), so the incumbent is row 0 whenever
  any evaluation succeeded. Empty rows have ``valid=False``, encoding 0, score NaN and stamp -1.

  Attributes:
    encodings: ``int32[N, D]``.
    scores: ``float32[N]``; NaN for failed evaluations.
    valid: ``bool[N]``, True for rows that hold an evaluated architecture.
    stamps: ``int32[N]`` insertion number of each row (0 for the first row ever added).
    size: ``int32[]`` number of valid rows (at most N).
    num_added: ``int32[]`` rows ever added, evicted and dropped ones included.
  """
  encodings: jax.Array
  scores: jax.Array
  valid: jax.Array
  stamps: jax.Array
  size: jax.Array
  num_added: jax.Array


def archive_init(capacity: int, num_decisions: int) -> Archive:
  """An empty archive of ``capacity`` rows of ``int32[num_decisions]`` encodings."""
  if capacity < 1:
    raise ValueError(f"archive: capacity must be >= 1, got {capacity}")
  return Archive(encodings=jnp.zeros((capacity, num_decisions), jnp.int32),
                 scores=jnp.full((capacity,), jnp.nan, jnp.float32),
                 valid=jnp.zeros((capacity,), bool),
                 stamps=jnp.full((capacity,), -1, jnp.int32),
                 size=jnp.zeros((), jnp.int32),
                 num_added=jnp.zeros((), jnp.int32))


def _keep_order(scores: jax.Array, valid: jax.Array, stamps: jax.Array) -> jax.Array:
  """Permutation that sorts rows best-first: valid before empty, scored before NaN, higher
  scores first, and among equal scores the older row (smaller stamp) first."""
  rank = jnp.where(valid, jnp.where(jnp.isnan(scores), 1, 2), 0).astype(jnp.int32)
  finite = jnp.where(jnp.isnan(scores), 0.0, scores)
  return jnp.lexsort((stamps, -finite, -rank))  # the last key is the primary one


def archive_add(archive: Archive, encodings: jax.Array, scores: jax.Array,
                mask: jax.Array | None = None) -> Archive:
  """Adds a batch of evaluated architectures.

  Eviction rule: the archive keeps the best N rows of the N + Q stored and new ones, ordered as
  scored rows before NaN (failed) rows, higher score first, older row first among equal scores.
  While it is not full nothing is dropped; once full, failed rows are evicted first, then the
  lowest scores, and a new row worse than every stored row is dropped. The incumbent is
  therefore never evicted. Duplicates are not merged (see :func:`archive_contains`).

  Args:
    archive: the archive, N rows.
    encodings: ``int32[Q, D]``.
    scores: ``float32[Q]``, NaN for failed evaluations.
    mask: optional ``bool[Q]``; rows with False are ignored (not added, not counted).

  Returns:
    The updated archive, rows sorted best-first.
  """
  n = archive.scores.shape[0]
  q = scores.shape[0]
  mask = jnp.ones((q,), bool) if mask is None else jnp.asarray(mask, bool)
  new_stamps = archive.num_added + jnp.cumsum(mask.astype(jnp.int32)) - 1
  enc = jnp.concatenate([archive.encodings, jnp.asarray(encodings, jnp.int32)])
  sc = jnp.concatenate([archive.scores, jnp.where(mask, jnp.asarray(scores, jnp.float32), jnp.nan)])
  valid = jnp.concatenate([archive.valid, mask])
  stamps = jnp.concatenate([archive.stamps, jnp.where(mask, new_stamps, -1).astype(jnp.int32)])
  keep = _keep_order(sc, valid, stamps)[:n]
  valid = valid[keep]
  return Archive(encodings=jnp.where(valid[:, None], enc[keep], 0),
                 scores=jnp.where(valid, sc[keep], jnp.nan),
                 valid=valid,
                 stamps=jnp.where(valid, stamps[keep], -1),
                 size=valid.sum(dtype=jnp.int32),
                 num_added=archive.num_added + mask.sum(dtype=jnp.int32))


def best_index(scores: jax.Array, mask: jax.Array) -> jax.Array:
  """Index of the best row: masked-out rows lose to everything, NaN loses to any number (even
  -inf), ties go to the lowest index.

  Args:
    scores: ``float32[M]``.
    mask: ``bool[M]``.

  Returns:
    ``int32[]``. When ``mask`` is all False every row competes under the same rule (callers
    check ``any(mask)`` when that matters).
  """
  rank = jnp.where(mask, jnp.where(jnp.isnan(scores), 1, 2), 0)
  candidate = rank == rank.max()
  value = jnp.where(candidate, jnp.where(jnp.isnan(scores), 0.0, scores), -jnp.inf)
  return jnp.argmax(candidate & (value == value.max())).astype(jnp.int32)


def archive_best(archive: Archive) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The incumbent: the best valid, non-NaN row (ties: the oldest).

  Returns:
    ``(encoding int32[D], score float32[], found bool[])``; when no evaluation succeeded,
    ``found`` is False, the score is ``-inf`` and the encoding is row 0's.
  """
  ok = archive.valid & ~jnp.isnan(archive.scores)
  i = best_index(jnp.where(ok, archive.scores, jnp.nan), ok)
  found = jnp.any(ok)
  return archive.encodings[i], jnp.where(found, archive.scores[i], -jnp.inf), found


def archive_contains(archive: Archive, encoding: jax.Array) -> jax.Array:
  """``bool[]``: whether ``int32[D]`` ``encoding`` is a valid row of the archive."""
  same = jnp.all(archive.encodings == jnp.asarray(encoding, jnp.int32)[None, :], axis=-1)
  return jnp.any(archive.valid & same)


def tell_metrics(archive: Archive, scores: jax.Array) -> Metrics:
  """The metrics every searcher's ``tell`` reports, as scalar arrays.

  Args:
    archive: the archive after the batch was added.
    scores: ``float32[Q]`` scores of the batch just told.

  Returns:
    ``best_score`` (the incumbent's, ``-inf`` if none), ``batch_best`` (best non-NaN score of the
    batch, ``-inf`` if none), ``num_failed`` (NaN scores in the batch), ``archive_size`` and
    ``num_told`` (evaluations told so far).
  """
  _, best, _ = archive_best(archive)
  scores = jnp.asarray(scores, jnp.float32)
  return {"best_score": best,
          "batch_best": jnp.max(jnp.where(jnp.isnan(scores), -jnp.inf, scores)),
          "num_failed": jnp.isnan(scores).sum(dtype=jnp.int32),
          "archive_size": archive.size,
          "num_told": archive.num_added}


def check_sizes(name: str, **sizes: int) -> None:
  """Raises a one-line ``ValueError`` unless every structural size is a positive int."""
  for k, v in sizes.items():
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
      raise ValueError(f"{name}: {k} must be a positive int, got {v!r}")
