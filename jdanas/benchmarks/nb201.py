"""NAS-Bench-201 accuracy table (Dong & Yang, ICLR 2020).

Reads a CSV with at least the columns ``index`` (the official NB201 / NATS-Bench-TSS index) and
``arch_str`` plus any numeric columns (accuracies, params, FLOPs), such as the table described in
``shared/data/README.md``. The official index order is the order of the benchmark files and not a
function of the cell, so index <-> string goes through the table.
"""
from __future__ import annotations

import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jdanas.benchmarks import read_csv
from jdanas.searchers.base import archive_best
from jdanas.spaces.nb201 import NB201Space


class NB201Table:
  """Lookup of NB201 metrics by official index, arch string or jdanas encoding.

  Attributes:
    index: ``int64[15625]`` official indices in file order.
    arch_str: list of arch strings in file order.
    columns: name -> ``float64[15625]`` for every numeric column.
  """

  def __init__(self, path: str | pathlib.Path):
    path = pathlib.Path(path)
    if not path.exists():
      raise FileNotFoundError(f"nb201 table: {path} does not exist")
    rows, fields = read_csv(path)
    for need in ("index", "arch_str"):
      if need not in fields:
        raise ValueError(f"nb201 table: column {need!r} missing from {path}")
    self.path = path
    self.index = np.asarray([int(r["index"]) for r in rows], np.int64)
    self.arch_str = [r["arch_str"] for r in rows]
    self.columns: dict[str, np.ndarray] = {}
    for name in fields:
      if name in ("index", "arch_str"):
        continue
      try:
        self.columns[name] = np.asarray([float(r[name]) for r in rows], np.float64)
      except ValueError:
        continue  # non-numeric column
    space = NB201Space()
    self._encodings = np.stack([space.encode(a) for a in self.arch_str]).astype(np.int32)
    codes = self._code(self._encodings)
    self._row_of_code = np.full(5 ** 6, -1, np.int64)
    self._row_of_code[codes] = np.arange(len(rows))
    self._row_of_index = {int(i): r for r, i in enumerate(self.index)}

  @staticmethod
  def _code(encodings: np.ndarray) -> np.ndarray:
    """Base-5 code of ``int[..., 6]`` encodings (a dense key, not the official index)."""
    return (np.asarray(encodings, np.int64) * (5 ** np.arange(5, -1, -1))).sum(-1)

  def __len__(self) -> int:
    return len(self.arch_str)

  @property
  def encodings(self) -> np.ndarray:
    """``int32[N, 6]`` jdanas encodings in file order."""
    return self._encodings

  def rows(self, encodings: Any) -> np.ndarray:
    """Row numbers of ``int[..., 6]`` encodings (raises if a cell is missing)."""
    r = self._row_of_code[self._code(encodings)]
    if np.any(r < 0):
      raise KeyError("nb201 table: some encodings are not in the table")
    return r

  def official_index(self, arch: str | Any) -> int:
    enc = NB201Space().encode(arch) if isinstance(arch, str) else np.asarray(arch)
    return int(self.index[self.rows(enc)])

  def arch_of_index(self, index: int) -> str:
    return self.arch_str[self._row_of_index[int(index)]]

  def lookup(self, column: str, encodings: Any) -> np.ndarray:
    """Values of ``column`` for ``int[..., 6]`` encodings."""
    if column not in self.columns:
      raise KeyError(f"nb201 table: unknown column {column!r}; have {', '.join(sorted(self.columns))}")
    return self.columns[column][self.rows(encodings)]


def table_search(searcher, key, valid_table, test_table, index, queries):
  """One searcher run on a table oracle (jittable, vmappable over keys): ``queries`` sequential
  ask/tell rounds; a proposal's score is ``valid_table[index(enc)]``.

  Returns:
    ``(incumbent valid acc float32[queries] after each query, final incumbent test acc float32[])``.
  """
  key_init, key_loop = jax.random.split(key)

  def round_(state, r):
    key_ask, key_tell = jax.random.split(jax.random.fold_in(key_loop, r))
    encs, state = searcher.ask(key_ask, state)
    scores = valid_table[jax.vmap(index)(encs)]
    state, metrics = searcher.tell(key_tell, state, encs, scores)
    return state, metrics["best_score"]

  state, best_valid = jax.lax.scan(round_, searcher.init(key_init), jnp.arange(queries))
  incumbent, _, _ = archive_best(state.archive)
  return best_valid, test_table[index(incumbent)]
