"""DisWOT's S1 table as the ``tabular`` evaluator (jdanas.benchmarks.diswot_s1) and bench/danas_table.py."""
from __future__ import annotations

import csv
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import require_file, smoke_config as smoke
from jdanas import costs
from jdanas.benchmarks.diswot_s1 import FILE, DisWOTS1Table
from jdanas.data import shared_data_dir
from jdanas.evaluators.tabular import TabularEvaluator, build_tabular
from jdanas.pipeline import ConfigError, run, validate_config
from jdanas.searchers import enumerate_encodings, get_searcher, mixed_radix_index
from jdanas.spaces import get_space

ROOT = pathlib.Path(__file__).resolve().parents[1]
TABLE = str(shared_data_dir() / FILE)


def _csv_rows(path):
  with open(path, newline="") as f:
    return {r["struct"]: r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def table_path():
  return require_file(TABLE)


def test_values_match_the_csv_for_both_columns(table_path):
  rows = _csv_rows(table_path)
  for name in ("s1_resnet", "s1_resnet_masked"):
    space = get_space(name)
    archs = ["557", "777", "111", "135", "713"]
    encs = np.stack([space.encode(a) for a in archs])
    for column in ("kd_top1", "vanilla_top1"):
      ev = build_tabular(table_path, column, space=space)
      assert isinstance(ev, TabularEvaluator) and ev.score_kind.units.startswith("percent top-1")
      scores = np.asarray(ev(jax.random.key(0), encs).scores)
      np.testing.assert_allclose(scores, [float(rows[a][column]) for a in archs], rtol=0, atol=1e-4)
  assert float(rows["557"]["kd_top1"]) == 74.86 and float(rows["777"]["vanilla_top1"]) == 72.56


def test_depth_order_of_the_space_does_not_matter(table_path):
  """Encodings map to rows through the architecture name, so a reordered depth_choices still finds 557."""
  space = get_space("s1_resnet", depth_choices=(7, 5, 3, 1))
  table = DisWOTS1Table(table_path, space)
  assert table.best("kd_top1") == ("557", 74.86)
  assert table.best("vanilla_top1")[0] == "777"
  np.testing.assert_allclose(table.lookup("kd_top1", space.encode("557")), 74.86)
  assert sorted(table.values("kd_top1")) == sorted(DisWOTS1Table(table_path).values("kd_top1"))


def test_values_follow_the_mixed_radix_order(table_path):
  """values() is the objective array of the jitted bench: entry mixed_radix_index(enc) is enc's row."""
  space = get_space("s1_resnet")
  table = DisWOTS1Table(table_path, space)
  encs = enumerate_encodings(space.num_choices)
  index = mixed_radix_index(space.num_choices)
  for column in ("kd_top1", "vanilla_top1"):
    values = table.values(column)
    for e in encs[::7]:
      assert values[int(index(e))] == table.value(column, space.decode(e))
    np.testing.assert_array_equal(values, table.lookup(column, encs))


def test_bad_column_table_or_space_is_one_line_naming_the_field(table_path, tmp_path):
  space = get_space("s1_resnet")
  cases = [
      (dict(table=table_path, column="test_top1", space=space), "config.evaluator.tabular.column: 'test_top1'"),
      (dict(table=table_path, column="kd_top1", space=get_space("s1_resnet", depth_choices=(1, 2, 3))),
       r"config.space.kwargs: depth_choices \(1, 2, 3\): 19 of the space's 27 students have no row"),
      (dict(table=table_path, column="kd_top1", space=get_space("s1_resnet", widths=(8, 16, 32))),
       "config.space.kwargs: DisWOT's S1 table measured students of widths"),
  ]
  other = tmp_path / "other.csv"
  other.write_text("arch,cifar10_valid_acc\n|nor_conv_3x3~0|,90.0\n")
  cases.append((dict(table=str(other), column="kd_top1", space=space),
                "config.evaluator.tabular.table: .* is not DisWOT's S1 table"))
  for kw, match in cases:
    with pytest.raises(ConfigError, match=match) as err:
      build_tabular(**kw)
    assert "\n" not in str(err.value)


def test_an_architecture_without_a_row_names_the_space(table_path, tmp_path):
  """A table missing a student of the space (here 557 deleted) is refused before any compute."""
  lines = pathlib.Path(table_path).read_text().splitlines()
  cut = tmp_path / "cut.csv"
  cut.write_text("\n".join(l for l in lines if not l.startswith("557,")) + "\n")
  with pytest.raises(ConfigError, match=r"^config.space.kwargs: .*1 of the space's 64 students have no row .*'557'"):
    build_tabular(str(cut), "kd_top1", space=get_space("s1_resnet"))
  with pytest.raises(KeyError, match="no row for '999'"):
    DisWOTS1Table(table_path).value("kd_top1", "999")
  with pytest.raises(KeyError, match="not encodings of s1_resnet"):
    DisWOTS1Table(table_path).lookup("kd_top1", np.asarray([[0, 0, 4]]))


def test_config_checks_before_compute(table_path):
  """validate_config names the field: a space without rows, an unknown column, a missing file;
  a matching S1 space and column validates, as does the ``table`` variant of configs/diswot_s1.py."""
  base = {"evaluator.name": "tabular", "evaluator.tabular": dict(table=table_path, column="kd_top1")}
  with pytest.raises(ConfigError, match=r"^config.space.kwargs: DisWOT's S1 table measured students of widths"):
    validate_config(smoke(**base))  # the smoke space: depths (1, 2), widths 4/8/8
  with pytest.raises(ConfigError, match=r"^config.space.kwargs: depth_choices \(1, 3, 5, 2\): 37 of the space's 64 "):
    validate_config(smoke(**{**base, "space": dict(name="s1_resnet", kwargs=dict(depth_choices=(1, 3, 5, 2)))}))
  good = {**base, "space": dict(name="s1_resnet", kwargs={})}
  validate_config(smoke(**good))
  with pytest.raises(ConfigError, match=r"^config.evaluator.tabular.column: 'top1' is not a column"):
    validate_config(smoke(**{**good, "evaluator.tabular": dict(table=table_path, column="top1")}))
  with pytest.raises(ConfigError, match=r"^config.evaluator.tabular.table: DisWOT S1 table file '/nonexistent.csv'"):
    validate_config(smoke(**{**good, "evaluator.tabular": dict(table="/nonexistent.csv", column="kd_top1")}))
  with pytest.raises(ConfigError, match=r"^config.evaluator.name: 'tabular' needs an nb201 space .* got 'mobilenet"):
    validate_config(smoke(**{**base, "space": dict(name="mobilenet", kwargs={})}))
  import importlib
  c = importlib.import_module("configs.diswot_s1").get_config("runlocal,table")
  assert c.evaluator.name == "tabular" and c.evaluator.tabular.column == "kd_top1"
  c.evaluator.tabular.table = table_path
  validate_config(c)


def test_a_searcher_over_the_table_from_python(table_path):
  """Regularized evolution, 6 rounds of 4 proposals scored by kd_top1: every score is the table's."""
  space = get_space("s1_resnet")
  ev = build_tabular(table_path, "kd_top1", space=space)
  table = DisWOTS1Table(table_path, space)
  searcher = get_searcher("regularized_evolution", space, num_asks=4, population_size=4, tournament_size=2)
  key = jax.random.key(0)
  ask, tell = jax.jit(searcher.ask), jax.jit(searcher.tell)  # one compile each, not op-by-op
  state = searcher.init(key)
  seen = {}
  for r in range(6):
    k_ask, k_tell = jax.random.split(jax.random.fold_in(key, r))
    encs, state = ask(k_ask, state)
    scores = ev(k_ask, np.asarray(encs)).scores
    state, _ = tell(k_tell, state, encs, scores)
    for e, s in zip(np.asarray(encs), np.asarray(scores)):
      seen[space.decode(e)] = float(s)
  assert all(abs(v - table.value("kd_top1", a)) < 1e-4 for a, v in seen.items())
  assert max(seen.values()) >= np.median(table.values("kd_top1"))


@pytest.mark.slow  # the whole pipeline: a 3-step teacher, 2 rounds of the table, 2-step final KD of one S1 ResNet
def test_pipeline_searches_the_table(table_path, tmp_path):
  """run.py's pipeline with the table as the evaluator: every ledger score is the table's kd_top1.
  The search reads the table, but the teacher and the final student are still trained (smoke
  settings); a parameter limit keeps the 8 students with at most 3 + 3 + 1 blocks (fast compiles)."""
  space = get_space("s1_resnet")
  limit = costs.model_costs(space, space.encode("731"), num_classes=10, input_shape=(8, 8, 1), flops=False).params
  c = smoke(**{"space": dict(name="s1_resnet", kwargs={}), "evaluator.name": "tabular",
               "evaluator.tabular": dict(table=table_path, column="kd_top1"), "search.rounds": 2, "search.top_k": 1,
               "searcher.kwargs": dict(num_asks=4, population_size=4, tournament_size=2),
               "constraint.max_params": limit})
  report = run(c, tmp_path)
  ledger = json.loads((tmp_path / "ledger.json").read_text())
  table = DisWOTS1Table(table_path)
  assert len(ledger) == 8 and all(r["feasible"] and r["params"] <= limit for r in ledger)
  for r in ledger:
    assert abs(r["score"] - table.value("kd_top1", r["arch"])) < 1e-4
  best = max(ledger, key=lambda r: r["score"])
  assert report["final"]["arch"] == best["arch"]


@pytest.mark.slow  # ~30 s: startup, 64 parameter counts, three searchers compiled
def test_bench_quick_runs(table_path):
  env = dict(os.environ, PYTHONPATH=str(ROOT), JDANAS_DATA_DIR=str(pathlib.Path(table_path).parent))
  out = subprocess.run([sys.executable, "bench/danas_table.py", "--quick"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=900)
  assert out.returncode == 0, out.stderr[-2000:]
  lines = [json.loads(l) for l in out.stdout.splitlines()]
  oracle = lines[0]["oracle"]
  assert oracle["best_kd"] == {"arch": "557", "kd_top1": 74.86}
  assert oracle["best_vanilla"]["arch"] == "777" and oracle["best_vanilla"]["kd_top1"] == 74.44
  rows = lines[1:]
  assert {r["searcher"] for r in rows} == {"random", "regularized_evolution", "diswot_evolution"}
  assert {(r["budget"], r["objective"]) for r in rows} == {(b, o) for b in (8, 16) for o in ("accuracy", "reward")}
  for r in rows:
    for arm in ("kd_scored", "vanilla_scored"):
      assert 60.0 <= r[arm]["kd_top1_mean"] <= 74.86 and r[arm]["runs_short"] == 0
    assert r["runs"] == 8
