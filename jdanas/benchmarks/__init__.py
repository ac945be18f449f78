"""Ground-truth tables (tabular benchmarks). Never used inside a real search, only to benchmark
searchers and proxies cheaply and to check results."""

from __future__ import annotations

import csv
import pathlib


def read_csv(path: pathlib.Path) -> tuple[list[dict[str, str]], list[str]]:
  """The rows (one dict each) and column names of a tabular benchmark's CSV file."""
  with pathlib.Path(path).open(newline="") as f:
    reader = csv.DictReader(f)
    rows = list(reader)
    return rows, list(reader.fieldnames or [])
