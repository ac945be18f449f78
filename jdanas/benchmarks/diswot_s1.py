"""DisWOT's S1 ground truth (Dong et al., CVPR 2023): 64 CIFAR ResNets with measured CIFAR-100 top-1
trained alone and trained with KD from the same teacher.

The file ``diswot_s1_cifar100_vanilla_vs_kd.csv`` (``shared/data/README.md``, "DisWOT ground truth")
has the columns ``struct`` (three digits, the BasicBlocks of stages 1-3, each in {1, 3, 5, 7}),
``depth_stage1..3``, ``vanilla_top1`` and ``kd_top1`` (percent top-1). Its students are the
``s1_resnet`` space's at widths 16/32/64 with a 16-channel stem, so a table is tied to a space: every
encoding of the space must name a row (a depth choice without a row, or other widths, is refused),
and encodings map to rows through the architecture name (``space.decode``), whatever the order of
``depth_choices``. The best students differ between the columns (``777`` alone, ``557`` under KD),
which makes the table a tiny, noise-free benchmark of distillation-aware scoring
(``bench/danas_table.py``). Like every table it is for benchmarking searchers only, never used
inside a real distillation-aware search.

Errors are ``ValueError`` messages that start with the config field they concern
(``evaluator.tabular.table``, ``evaluator.tabular.column``, ``space.kwargs``, ``space.name``), so the
pipeline reports them as one ``config.<field>: ...`` line (:func:`jdanas.evaluators.tabular.build_tabular`).
"""
from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from jdanas.benchmarks import read_csv
from jdanas.errors import FieldError
from jdanas.evaluators import ScoreKind
from jdanas.searchers.wrappers import enumerate_encodings
from jdanas.spaces.base import AbstractSearchSpace
from jdanas.spaces.resnet_depth import ResNetDepthSpace

FILE = "diswot_s1_cifar100_vanilla_vs_kd.csv"  # in the shared data folder (jdanas.data.shared_data_dir)
COLUMNS = ("vanilla_top1", "kd_top1")  # the measured columns a search may be scored by
WIDTHS, STEM = (16, 32, 64), 16  # the students DisWOT trained ("mutable ResNet20")
KEY_COLUMNS = ("struct", "depth_stage1", "depth_stage2", "depth_stage3")



def _tabular_error(field: str, detail: str) -> FieldError:
  """A bad table or column, named as the config field the pipeline reads it from."""
  return FieldError(field, detail, owner="evaluator.tabular")


def _space_error(field: str, detail: str) -> FieldError:
  """A space the table does not describe (``space.name`` / ``space.kwargs``)."""
  return FieldError(field, detail, owner="space")

class DisWOTS1Table:
  """Lookup of DisWOT's S1 measurements for the encodings of one ``s1_resnet`` space.

  Attributes:
    path: the CSV file.
    space: the space whose encodings are looked up (default: ``s1_resnet`` with depths (1, 3, 5, 7)).
    structs: the ``struct`` names in file order.
    columns: name -> ``float64[rows]`` for the measured columns (:data:`COLUMNS`).
  """

  score_units = "percent top-1 (CIFAR-100, measured by DisWOT)"

  def __init__(self, path: str | pathlib.Path, space: AbstractSearchSpace | None = None):
    path = pathlib.Path(path)
    if not path.exists():
      raise _tabular_error("table", f"DisWOT S1 table file {str(path)!r} does not exist")
    rows, fields = read_csv(path)
    missing = [c for c in ("struct",) + COLUMNS if c not in fields]
    if missing:
      raise _tabular_error("table", f"{str(path)!r} is not DisWOT's S1 table (no column(s) "
                       f"{', '.join(missing)}; the S1 table has struct, depth_stage1..3, {', '.join(COLUMNS)})")
    self.path = path
    self.structs = [r["struct"].strip() for r in rows]
    if len(set(self.structs)) != len(self.structs):
      raise _tabular_error("table", f"{str(path)!r} repeats a struct")
    try:
      self.columns = {c: np.asarray([float(r[c]) for r in rows], np.float64) for c in COLUMNS}
    except ValueError as e:
      raise _tabular_error("table", f"non-numeric value in {str(path)!r} ({e})") from None
    stages = [c for c in KEY_COLUMNS[1:] if c in fields]
    for r, name in zip(rows, self.structs):  # the per-stage depths, where given, must spell the struct
      if stages and "".join(str(int(r[c])) for c in stages) != name:
        raise _tabular_error("table", f"row {name!r} of {str(path)!r} has depths "
                         f"{[r[c] for c in stages]} that do not spell its struct")
    self._row_of_struct = {s: i for i, s in enumerate(self.structs)}
    self.space = ResNetDepthSpace() if space is None else space
    self._rows = self._space_rows(self.space)

  def _space_rows(self, space: AbstractSearchSpace) -> np.ndarray:
    """``int64[M]``: the row of every encoding of ``space`` in mixed-radix order (see
    :func:`jdanas.searchers.enumerate_encodings`); refuses a space the table does not describe."""
    if not isinstance(space, ResNetDepthSpace):
      raise _space_error("name", f"DisWOT's S1 table describes the s1_resnet spaces, got {space.name!r}")
    if tuple(space.widths) != WIDTHS or int(space.stem) != STEM:
      raise _space_error("kwargs", f"DisWOT's S1 table measured students of widths {WIDTHS} and stem {STEM}; "
                       f"the space has widths {tuple(space.widths)} and stem {space.stem}")
    names = [space.decode(e) for e in enumerate_encodings(space.num_choices)]
    absent = [n for n in names if n not in self._row_of_struct]
    if absent:
      depths = sorted({int(c) for s in self.structs for c in s if c.isdigit()})
      raise _space_error("kwargs", f"depth_choices {tuple(space.depth_choices)}: {len(absent)} of the space's "
                       f"{len(names)} students have no row in {str(self.path)!r} (e.g. {absent[0]!r}); the table's "
                       f"depths are {', '.join(map(str, depths))}")
    return np.asarray([self._row_of_struct[n] for n in names], np.int64)

  def __len__(self) -> int:
    return len(self.structs)

  def check_column(self, column: str) -> None:
    """Raises (naming ``evaluator.tabular.column``) unless ``column`` is a measured column."""
    if column not in self.columns:
      raise _tabular_error("column", f"{column!r} is not a column of DisWOT's S1 table {str(self.path)!r}; "
                       f"choose from {', '.join(COLUMNS)}")

  def score_kind(self, column: str) -> ScoreKind:
    """What :class:`jdanas.evaluators.tabular.TabularEvaluator` returns for ``column``: the value as stored."""
    self.check_column(column)
    return ScoreKind(f"tabular:diswot_s1:{column}", self.score_units)

  def rows(self, encodings: Any) -> np.ndarray:
    """Row numbers of ``int[..., 3]`` encodings of :attr:`space` (raises on an invalid encoding)."""
    encs = np.asarray(encodings, np.int64)
    n = np.asarray(self.space.num_choices, np.int64)
    if encs.shape[-1:] != (len(n),) or np.any(encs < 0) or np.any(encs >= n):
      raise KeyError(f"diswot_s1 table: encodings of shape {encs.shape} are not encodings of {self.space.name} "
                     f"(choices {tuple(n)})")
    weights = np.asarray([int(np.prod(n[i + 1:])) for i in range(len(n))], np.int64)  # mixed_radix_index's order
    return self._rows[(encs * weights).sum(-1)]

  def lookup(self, column: str, encodings: Any) -> np.ndarray:
    """Values of ``column`` (percent) for ``int[..., 3]`` encodings of :attr:`space`."""
    self.check_column(column)
    return self.columns[column][self.rows(encodings)]

  def values(self, column: str) -> np.ndarray:
    """``float64[M]``: ``column`` for every encoding of :attr:`space` in mixed-radix order, the
    objective array of a jitted table search (index it with :func:`jdanas.searchers.mixed_radix_index`)."""
    self.check_column(column)
    return self.columns[column][self._rows]

  def best(self, column: str) -> tuple[str, float]:
    """The space's best student by ``column`` (ties: the first in mixed-radix order) and its value."""
    v = self.values(column)
    i = int(np.argmax(v))
    return self.structs[int(self._rows[i])], float(v[i])

  def value(self, column: str, arch: str) -> float:
    """``column`` of the student named ``arch`` (e.g. ``'557'``)."""
    self.check_column(column)
    if arch not in self._row_of_struct:
      raise KeyError(f"diswot_s1 table: no row for {arch!r}")
    return float(self.columns[column][self._row_of_struct[arch]])


def load(path: str | pathlib.Path | None = None, space: AbstractSearchSpace | None = None) -> DisWOTS1Table:
  """The table at ``path`` (default: :data:`FILE` in the shared data folder) for ``space``."""
  if path is None:
    from jdanas.data import shared_data_dir
    path = shared_data_dir() / FILE
  return DisWOTS1Table(path, space)
