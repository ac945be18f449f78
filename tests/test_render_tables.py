"""bench/render_tables.py: JSON lines / report.json -> markdown tables."""
import importlib.util
import json
import pathlib

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[1] / "bench" / "render_tables.py"
_spec = importlib.util.spec_from_file_location("render_tables", _PATH)
render_tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(render_tables)


def test_jsonl_rows_filters_and_renames():
  text = "\n".join([
      "progress 3/4",
      json.dumps({"strategy": "loop", "P": 4, "examples_per_s": 471.98}),
      json.dumps({"strategy": "vmap", "P": 4, "examples_per_s": 180.5, "note": "a|b"}),
      json.dumps({"skipped": "no data"}),
  ])
  table = render_tables.render(render_tables.read_records(text),
                               render_tables.parse_columns("strategy,examples_per_s=ex/s"), digits=1)
  assert table.splitlines() == ["| strategy | ex/s |", "| --- | --- |", "| loop | 472.0 |", "| vmap | 180.5 |"]
  only = render_tables.render(render_tables.read_records(text), render_tables.parse_columns("strategy,note"),
                              where=render_tables.parse_where(["P=4"]))
  assert only.splitlines()[2] == "| vmap | a\\|b |"


def test_report_json_nested_keys_and_rows(tmp_path, capsys):
  report = {"teacher": {"name": "resnet20", "test_accuracy": 0.9777},
            "final": {"kd": {"test_accuracy": 0.95}, "no_kd": {"test_accuracy": None}},
            "top": [{"arch": "a", "params": 32122}, {"arch": "b", "params": 900}]}
  path = tmp_path / "report.json"
  path.write_text(json.dumps(report, indent=1))
  assert render_tables.main([str(path), str(path), "--columns", "teacher.name,final.kd.test_accuracy,final.no_kd.test_accuracy",
                             "--digits", "3"]) == 0
  assert capsys.readouterr().out.splitlines()[2:] == ["| resnet20 | 0.950 | — |"] * 2  # one row per file
  records = render_tables.read_records(path.read_text())
  assert render_tables.render(records, render_tables.parse_columns("teacher.test_accuracy")).endswith("| 0.9777 |")
  rows = render_tables.render(records, render_tables.parse_columns("arch,params"), rows="top").splitlines()
  assert rows[2:] == ["| a | 32,122 |", "| b | 900 |"]


def test_missing_columns_is_an_error(capsys, tmp_path):
  path = tmp_path / "x.jsonl"
  path.write_text(json.dumps({"a": 1}) + "\n")
  with pytest.raises(ValueError, match="no record has every column"):
    render_tables.render(render_tables.read_records(path.read_text()), [("b", "b")])
  assert render_tables.main([str(path), "--columns", "b"]) == 2
  assert "error:" in capsys.readouterr().err
