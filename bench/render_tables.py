"""Renders benchmark output as a markdown table, so the figures in docs/ are copied by a program.

The bench scripts print one JSON object per line (their stdout, saved as a ``.jsonl`` file);
``run.py`` writes ``report.json``. This script reads either, keeps the rows that have every
requested column (and match ``--where``), and prints a markdown table:

  python bench/population.py --quick > population.jsonl
  python bench/render_tables.py population.jsonl --columns space,strategy,P,examples_per_s

  python run.py --config configs/default.py --workdir /tmp/jdanas_default
  python bench/render_tables.py /tmp/jdanas_default/report.json \\
      --columns teacher.name,teacher.test_accuracy,final.kd.test_accuracy,final.no_kd.test_accuracy
  python bench/render_tables.py /tmp/jdanas_default/report.json --rows top --columns arch,params,val_accuracy
  python bench/render_tables.py /tmp/run_a/report.json /tmp/run_b/report.json --columns seconds,final.arch

Nested keys are addressed with dots (``final.kd.test_accuracy``). A column may be renamed with
``key=Header``. ``--rows KEY`` renders the list found at ``KEY`` of each object (one row per item)
instead of the objects themselves. Lines that are not JSON objects (progress output) are skipped.
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
from typing import Any, Iterable

_MISSING = object()


def read_records(text: str) -> list[dict]:
  """The JSON objects of ``text``: one whole-file JSON value (an object or a list of objects) or
  JSON lines (lines that do not parse as an object are skipped)."""
  try:
    whole = json.loads(text)
  except json.JSONDecodeError:
    whole = _MISSING
  if isinstance(whole, dict):
    return [whole]
  if isinstance(whole, list):
    return [r for r in whole if isinstance(r, dict)]
  records = []
  for line in text.splitlines():
    line = line.strip()
    if not line.startswith("{"):
      continue
    try:
      value = json.loads(line)
    except json.JSONDecodeError:
      continue
    if isinstance(value, dict):
      records.append(value)
  return records


def lookup(record: dict, dotted: str) -> Any:
  """``record['a']['b']`` for ``'a.b'``; a key that itself contains dots is tried whole first."""
  if dotted in record:
    return record[dotted]
  value: Any = record
  for part in dotted.split("."):
    if isinstance(value, dict) and part in value:
      value = value[part]
    elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
      value = value[int(part)]
    else:
      return _MISSING
  return value


def format_value(value: Any, digits: int) -> str:
  if value is None:
    return "—"
  if isinstance(value, bool):
    return "yes" if value else "no"
  if isinstance(value, float):
    if math.isnan(value):
      return "NaN"
    if value.is_integer() and abs(value) >= 10_000:
      return f"{int(value):,}"
    if value != 0 and abs(value) < 10 ** -digits:
      return f"{value:.{digits}g}"
    return f"{value:.{digits}f}"
  if isinstance(value, int):
    return f"{value:,}" if abs(value) >= 10_000 else str(value)
  if isinstance(value, (list, tuple)):
    return ", ".join(format_value(v, digits) for v in value)
  return str(value).replace("|", "\\|")


def parse_columns(spec: str) -> list[tuple[str, str]]:
  """``"a,b.c=Header"`` -> ``[("a", "a"), ("b.c", "Header")]``."""
  columns = []
  for item in spec.split(","):
    item = item.strip()
    if not item:
      continue
    key, _, header = item.partition("=")
    columns.append((key.strip(), header.strip() or key.strip()))
  if not columns:
    raise ValueError("--columns: name at least one column")
  return columns


def parse_where(items: Iterable[str]) -> list[tuple[str, str]]:
  where = []
  for item in items:
    key, sep, value = item.partition("=")
    if not sep:
      raise ValueError(f"--where: expected KEY=VALUE, got {item!r}")
    where.append((key.strip(), value.strip()))
  return where


def _matches(record: dict, where: list[tuple[str, str]]) -> bool:
  for key, want in where:
    value = lookup(record, key)
    if value is _MISSING or (format_value(value, 17) != want and str(value) != want):
      return False
  return True


def render(records: list[dict], columns: list[tuple[str, str]], *, rows: str | None = None,
           where: list[tuple[str, str]] = (), digits: int = 4) -> str:
  """The markdown table of ``records`` (see the module docstring); raises if no row qualifies."""
  if rows is not None:
    items = []
    for r in records:
      value = lookup(r, rows)
      if isinstance(value, list):
        items.extend(v for v in value if isinstance(v, dict))
    records = items
  kept = [r for r in records if _matches(r, list(where))
          and all(lookup(r, key) is not _MISSING for key, _ in columns)]
  if not kept:
    raise ValueError(f"no record has every column {[k for k, _ in columns]}"
                     + (f" and matches {dict(where)}" if where else ""))
  lines = ["| " + " | ".join(h for _, h in columns) + " |",
           "| " + " | ".join("---" for _ in columns) + " |"]
  for r in kept:
    lines.append("| " + " | ".join(format_value(lookup(r, k), digits) for k, _ in columns) + " |")
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("paths", nargs="+", help=".jsonl files of a bench script's stdout, report.json files, "
                      "or - for stdin; their records are rendered in order")
  parser.add_argument("--columns", required=True, help="comma-separated keys (dotted for nested), KEY=Header renames")
  parser.add_argument("--rows", default=None, help="render the list at this key of each object, one row per item")
  parser.add_argument("--where", action="append", default=[], help="KEY=VALUE filter (repeatable)")
  parser.add_argument("--digits", type=int, default=4, help="decimal places of floats (default 4)")
  args = parser.parse_args(argv)
  records = []
  for path in args.paths:
    records += read_records(sys.stdin.read() if path == "-" else pathlib.Path(path).read_text())
  try:
    table = render(records, parse_columns(args.columns), rows=args.rows,
                   where=parse_where(args.where), digits=args.digits)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(table)
  return 0


if __name__ == "__main__":
  sys.exit(main())
