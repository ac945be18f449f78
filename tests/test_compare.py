"""bench/compare_methods.py and jdanas.benchmarks.compare: the table renderer and aggregation on hand rows, the arms'
configs, the no-search arm, a bad arm name before any compute, and (slow) the harness end to end on the :quick study
with the resume of a half-finished comparison."""
from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

from conftest import require_file
from jdanas.benchmarks import compare
from jdanas.pipeline.config import ConfigError, build_plan

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
import compare_methods  # noqa: E402

ARM = {"kind": "arm", "arm": "random", "method": "random search", "arch": "|nor_conv_3x3~0|+|skip_connect~0|"
       "none~1|+|skip_connect~0|none~1|avg_pool_3x3~2|", "params": 31234, "flops": 1.5e6, "evaluations": 16,
       "search_seconds": 120.25, "evaluator_programs": 2, "xla_compilations": 9}


def _final(arm, seed, kd, no_kd):
  return {"kind": "final", "arm": arm, "seed": seed, "kd_test_accuracy": kd, "no_kd_test_accuracy": no_kd}


def test_aggregate_gives_mean_standard_error_and_the_paired_gain():
  finals = [_final("random", 0, 0.50, 0.45), _final("random", 1, 0.52, 0.49), _final("random", 2, 0.54, 0.47),
            _final("other", 0, 0.1, 0.1)]
  (row,) = compare.aggregate([ARM], finals)
  assert row["seeds"] == 3 and row["kd"] == [0.50, 0.52, 0.54]
  assert row["kd_mean"] == pytest.approx(0.52) and row["kd_se"] == pytest.approx(0.02 / math.sqrt(3))
  assert row["no_kd_mean"] == pytest.approx(0.47)
  # paired differences 0.05, 0.03, 0.07: mean 0.05, sd 0.02
  assert row["gain_mean"] == pytest.approx(0.05) and row["gain_se"] == pytest.approx(0.02 / math.sqrt(3))
  assert (row["params"], row["evaluations"], row["programs"]) == (31234, 16, 2)


def test_aggregate_leaves_a_diverged_seed_out_of_the_mean_and_the_pairs():
  finals = [_final("random", 0, 0.50, None), _final("random", 1, 0.60, 0.40), _final("random", 2, float("nan"), 0.5)]
  (row,) = compare.aggregate([ARM], finals)
  assert row["kd_mean"] == pytest.approx(0.55) and row["no_kd_mean"] == pytest.approx(0.45)
  assert row["gain_mean"] == pytest.approx(0.20) and row["gain_se"] is None  # one pair: no standard error


def test_render_table_on_hand_rows():
  rows = [{"arm": "random", "arch": "|skip_connect~0|+|none~0|none~1|", "params": 31234, "flops": 1.5e6,
           "evaluations": 16, "search_seconds": 120.25,
           "programs": 2, "kd_mean": 0.52, "kd_se": 0.011547, "no_kd_mean": 0.47, "no_kd_se": 0.01, "gain_mean": 0.05,
           "gain_se": 0.011547, "seeds": 3},
          {"arm": "best_by_params", "arch": "b", "params": 39000, "flops": 2e6, "evaluations": 16,
           "search_seconds": 0.5, "programs": 0, "kd_mean": 0.4, "kd_se": None, "no_kd_mean": None, "no_kd_se": None,
           "gain_mean": None, "gain_se": None, "seeds": 1}]
  lines = compare.render_table(rows).splitlines()
  assert lines[0].startswith("| arm | pick | params | MFLOPs |") and len(lines) == 4
  assert all(l.replace("\\|", "").count("|") == 12 for l in lines)  # 11 cells a line, the pick's pipes escaped
  assert lines[2] == ("| random | `\\|skip_connect~0\\|+\\|none~0\\|none~1\\|` | 31,234 | 1.50 | 16 | 120.2 | 2 "
                      "| 52.00 ± 1.15 | 47.00 ± 1.00 | +5.00 ± 1.15 "
                      "| 3 |")
  assert lines[3] == "| best_by_params | `b` | 39,000 | 2.00 | 16 | 0.5 | 0 | 40.00 | - | - | 1 |"


def test_plot_draws_one_point_per_arm_with_error_bars(tmp_path):
  rows = compare.aggregate([ARM, {**ARM, "arm": "diswot", "search_seconds": 0.0}],
                           [_final("random", s, 0.5 + s / 100, 0.4) for s in range(3)]
                           + [_final("diswot", s, 0.45, 0.41 + s / 100) for s in range(3)])
  ax = compare.plot(rows, tmp_path / "p.png", teacher=0.6)
  assert (tmp_path / "p.png").stat().st_size > 0
  assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["diswot", "random", "teacher"]
  assert len(ax.containers) == 4  # an error bar per arm with KD and without


def test_check_arms_names_the_bad_arm_and_the_choices():
  assert compare.check_arms(["random", " diswot"]) == ["random", "diswot"]
  with pytest.raises(ConfigError, match=r"^--arms: unknown arm 'foo' \(choose from random, regularized_evolution"):
    compare.check_arms(["random", "foo"], "--arms")
  with pytest.raises(ConfigError, match="given twice"):
    compare.check_arms(["random", "random"])


def test_a_bad_arm_name_is_one_error_line_before_any_compute(tmp_path, capsys):
  workdir = tmp_path / "w"
  assert compare_methods.main(["--quick", "--workdir", str(workdir), "--arms", "random,nope"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err == ["error: --arms: unknown arm 'nope' (choose from random, regularized_evolution, diswot, trade, akd, "
                 "teacher_agnostic, best_by_params)"]
  assert not workdir.exists()
  assert compare_methods.main(["--quick", "--workdir", str(workdir), "--seeds", "0"]) == 2
  assert capsys.readouterr().err.strip() == "error: --seeds: must be >= 1, got 0"


def _study(variant="quick"):
  return compare_methods.load_study(f"configs/compare/nb201.py:{variant}")


@pytest.mark.parametrize("variant", ["quick", "", "gpu"])
def test_every_arm_config_is_a_valid_pipeline_config_with_the_common_parts(variant, tmp_path):
  study = _study(variant)
  require_file(os.path.join(study.base.data.data_dir, study.base.data.path))
  budget = study.rounds * study.num_asks
  for arm, spec in compare.ARMS.items():
    if spec.searcher is None:
      continue
    c = compare.arm_config(study, arm, tmp_path / "teacher")
    assert c.teacher.path == str(tmp_path / "teacher") and c.search.top_k == 1
    assert c.searcher.name == spec.searcher and c.searcher.kwargs.num_asks == study.num_asks
    assert c.search.rounds * c.searcher.kwargs.num_asks == budget  # one evaluation budget for every arm
    assert c.constraint.max_params == study.base.constraint.max_params and c.data == study.base.data
    assert c.evaluator.name == spec.evaluator and set(c.evaluator) == {"name", spec.evaluator}
    if spec.evaluator == "short_kd":
      assert c.evaluator.short_kd.distill == (arm != "teacher_agnostic")
    c.teacher.path = ""  # not trained here: checked as the base's teacher
    plan = build_plan(c)
    assert plan.searcher_name == spec.searcher and plan.evaluator.name == spec.evaluator


def test_best_by_params_picks_the_largest_of_n_distinct_cells_within_the_budget():
  from jdanas import costs
  from jdanas.spaces import get_space
  space = get_space("nb201_masked", channels=4, num_cells=1)
  pick = compare.best_by_params(space, n=6, max_params=10_000, num_classes=10, input_shape=(8, 8, 3), seed=1)
  assert pick["evaluations"] == 6 and pick["params"] <= 10_000 and pick["draws"] >= 6
  c = costs.model_costs(space, pick["encoding"], num_classes=10, input_shape=(8, 8, 3))
  assert (c.params, space.decode(pick["encoding"])) == (pick["params"], pick["arch"])
  # the same draws with a budget so loose that every cell fits: the pick cannot be smaller
  loose = compare.best_by_params(space, n=6, max_params=0, num_classes=10, input_shape=(8, 8, 3), seed=1)
  assert loose["params"] >= pick["params"]
  with pytest.raises(ConfigError, match="max_params"):
    compare.best_by_params(space, n=1, max_params=10, num_classes=10, input_shape=(8, 8, 3))


def test_write_json_is_atomic_and_read_lines_groups_by_kind(tmp_path):
  compare.write_json(tmp_path / "a" / "x.json", {"k": 1})
  assert json.loads((tmp_path / "a" / "x.json").read_text()) == {"k": 1}
  assert [p.name for p in (tmp_path / "a").iterdir()] == ["x.json"]  # no temporary left
  (tmp_path / "l.jsonl").write_text('{"kind": "arm", "a": 1}\n\n{"kind": "row", "a": 2}\n{"kind": "arm", "a": 3}\n')
  got = compare.read_lines(tmp_path / "l.jsonl")
  assert {k: [d["a"] for d in v] for k, v in got.items()} == {"arm": [1, 3], "row": [2]}


def test_read_cached_returns_a_record_only_for_the_same_config(tmp_path):
  path = tmp_path / "arm.json"
  assert compare.read_cached(path, {"seed": 0}) is None  # nothing stored
  compare.write_json(path, {"config": {"seed": 0, "archs": ("a", "b")}, "record": {"x": 1}})
  assert compare.read_cached(path, {"seed": 0, "archs": ("a", "b")})["record"] == {"x": 1}  # tuple == stored list
  assert compare.read_cached(path, {"seed": 1, "archs": ("a", "b")}) is None


def _bench(workdir, *args):
  """The bench in a subprocess (its own process: JAX settings, compilation cache, one CPU device)."""
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  out = subprocess.run([sys.executable, str(REPO / "bench" / "compare_methods.py"), "--quick", "--workdir",
                        str(workdir), *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=3000)
  assert out.returncode == 0, out.stderr[-3000:]
  return [json.loads(l) for l in out.stdout.splitlines()]


@pytest.mark.slow
def test_the_harness_end_to_end_and_the_resume_of_a_half_finished_comparison(tmp_path):
  study = _study()
  require_file(os.path.join(study.base.data.data_dir, study.base.data.path))
  workdir = tmp_path / "cmp"
  # "killed" after two arms: only they ran
  first = _bench(workdir, "--arms", "random,best_by_params", "--seeds", "2")
  assert [l["arm"] for l in first if l["kind"] == "arm"] == ["random", "best_by_params"]
  assert not any(l["cached"] for l in first if l["kind"] in ("arm", "final"))
  stamps = {a: (workdir / "arms" / f"{a}.json").stat().st_mtime_ns for a in ("random", "best_by_params")}
  # then every arm: the finished ones are not rerun
  lines = _bench(workdir)
  arms = {l["arm"]: l for l in lines if l["kind"] == "arm"}
  assert list(arms) == list(study.arms)
  assert [a for a, l in arms.items() if l["cached"]] == ["random", "best_by_params"]
  assert {a: (workdir / "arms" / f"{a}.json").stat().st_mtime_ns for a in stamps} == stamps
  budget = study.rounds * study.num_asks
  for a, l in arms.items():
    assert l["evaluations"] == budget and l["params"] <= study.base.constraint.max_params, a
    assert l["search_seconds"] >= 0 and l["evaluator_programs"] >= 0
  finals = [l for l in lines if l["kind"] == "final"]
  assert sorted((l["arm"], l["seed"]) for l in finals) == sorted((a, s) for a in arms for s in range(3))
  assert all(0 <= l["kd_test_accuracy"] <= 1 and 0 <= l["no_kd_test_accuracy"] <= 1 for l in finals)
  rows = [l for l in lines if l["kind"] == "row"]
  assert [r["arm"] for r in rows] == list(arms) and all(r["seeds"] == 3 for r in rows)
  (stage,) = [l for l in lines if l["kind"] == "stage"]
  assert set(stage["seconds"]["arms"]) == set(arms) and set(stage["seconds"]["final"]) == {"seed0", "seed1", "seed2"}
  # the JSON lines file holds what was printed; the table and the plot are written
  assert compare.read_lines(workdir / "compare.jsonl")["row"] == rows
  assert (workdir / "table.md").read_text().startswith("| arm | pick |") and (workdir / "compare.png").exists()
  # a rerun recomputes nothing
  again = _bench(workdir)
  assert all(l["cached"] for l in again if l["kind"] in ("arm", "final"))
  assert [l for l in again if l["kind"] == "row"] == rows


def test_the_trade_arms_searcher_state_on_nb201_cells_checkpoints_and_restores(tmp_path):
  # CASMOPOLITAN on a purely categorical space had a zero-size GP lengthscale, which orbax refuses to save: the
  # pipeline stopped after the first round of the trade arm (jdanas.searchers.gp.init_params keeps one now).
  import jax
  import numpy as np
  from jdanas.pipeline.checkpoints import Checkpoints
  from jdanas.searchers import get_searcher
  from jdanas.spaces import get_space
  study = _study()
  space = get_space("nb201_masked", **study.base.space.kwargs)
  searcher = get_searcher("casmopolitan", space, **study.searchers["casmopolitan"])
  state = searcher.init(jax.random.key(0))
  assert all(leaf.size for leaf in jax.tree.leaves(state))
  ckpt = Checkpoints(tmp_path / "checkpoints", jax.eval_shape(lambda: state))
  ckpt.save(1, state, [{"round": 0}])
  round_done, restored, ledger = ckpt.restore_latest()
  ckpt.close()
  assert (round_done, ledger) == (1, [{"round": 0}])
  for a, b in zip(jax.tree.leaves(jax.device_get(state)), jax.tree.leaves(restored)):
    np.testing.assert_array_equal(np.asarray(b), np.asarray(a))  # NaN (empty buffer slots) equal to NaN
