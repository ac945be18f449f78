"""bench/dass.py without its training: flags and the plan (task layout disjoint, per-split recipes, errors
before compute), the held-out task loader, the scoring rows, and the learnability check's negative control.
The bench's own runs are measured in docs/benchmarks.md."""
from __future__ import annotations

import json

import numpy as np
import pytest

from jdanas.meta import Task

from conftest import load_script


bench = load_script("bench/dass.py", "bench_dass")


def test_flags_take_the_size_defaults_and_explicit_values_win():
  full = bench.parse_args([])
  assert (full.students, full.student_steps, full.eval_every, full.teacher_steps, full.batch) == (32, 100, 20, 600, 32)
  assert (full.train_tasks, full.val_tasks, full.heldout_tasks, full.heldout_classes) == (8, 2, 3, 2)
  assert full.image_size == 16 and full.target == "percent" and full.seeds == 3
  quick = bench.parse_args(["--quick", "--students", "9", "--target", "relative"])
  assert quick.students == 9 and quick.student_steps == bench.SIZES["quick"]["student_steps"]
  assert quick.target == "relative"


@pytest.mark.parametrize("argv, message", [
    (["--queries", "40"], "--queries: 40 query students exceed the 32"),
    (["--quick", "--students", "4", "--queries", "2"], "--students: need >= 5"),
    (["--eval-every", "0"], "--eval-every: need >= 1"),
    (["--noise", "-1"], "--noise"),
    (["--lr", "0"], "--lr"),
    (["--teacher-widths", "8,16,32,64;16,24,32,32"], "--teacher-widths: every teacher needs as many stages and the same"),
    (["--teacher-widths", "8,16,x"], "--teacher-widths: need ';'-separated lists of ints"),
    (["--teacher-widths", "8,16,32,64;16,18,32,64"], "0.25 x stage width 18 is not a whole channel count"),
])
def test_plan_refuses_bad_flags_before_any_compute(argv, message, capsys):
  with pytest.raises(bench.BenchError, match=message):
    bench.plan(bench.parse_args(argv))
  assert bench.main(argv) == 2
  assert capsys.readouterr().err.startswith("error: ")


def test_plan_layout_keeps_the_unseen_classes_out_of_meta_training(tmp_path):
  p = bench.plan(bench.parse_args(["--workdir", str(tmp_path)]))
  layout = p["layout"]
  assert [len(layout[s]) for s in bench.SPLITS] == [8, 2, 3]
  seen = {c for s in ("train", "val") for t in layout[s] for c in t}
  assert seen <= set(bench.SEEN)
  assert all(set(t) <= set(bench.UNSEEN) and len(t) == 2 for t in layout["heldout"])
  assert len(set(layout["heldout"])) == 3
  assert [p["recipes"][s].repeats for s in bench.SPLITS] == [1, 2, 2]
  r = p["recipes"]["heldout"]
  assert (r.eval_every, r.label, r.strategy, r.num_students, r.student.steps) == (20, "best", "loop", 32, 100)
  assert p["space"].image_size == 16 and p["space"].multipliers == (0.25, 0.5, 0.75, 1.0)
  assert p["dirs"]["heldout"] == tmp_path / "full" / "heldout"
  json.dumps(bench.describe(p))  # the plan line is JSON
  with pytest.raises(bench.BenchError, match="heldout"):  # 3 unseen classes, 2 per task: 3 distinct tasks
    bench.plan(bench.parse_args(["--heldout-tasks", "4"]))


def _task(n, labels):
  rng = np.random.default_rng(n)
  return Task(maps=np.zeros((n, 4, 4, 2), np.float32), arch=np.zeros((n, 3), np.float32),
              labels=np.asarray(labels, np.float32), teacher_map=rng.normal(size=(4, 4, 2)).astype(np.float32),
              teacher_arch=np.ones(3, np.float32), teacher_label=np.float32(90.0))


def test_load_split_keeps_the_finite_students_and_averages_the_runs(tmp_path):
  labels = np.array([70.0, np.nan, 80.0, 75.0], np.float32)
  runs = np.stack([labels, np.array([72.0, 50.0, 78.0, np.nan], np.float32)])
  np.savez(tmp_path / "task_000.npz", encodings=np.arange(8, dtype=np.int32).reshape(4, 2), labels=labels,
           label_repeats=runs, maps=np.zeros((4, 2, 2, 1), np.float32), arch=np.zeros((4, 3), np.float32),
           teacher_map=np.zeros((2, 2, 1), np.float32), teacher_arch=np.zeros(3, np.float32),
           teacher_label=np.float32(90.0))
  manifest = {"settings": {"tasks": [[7, 8]]},
              "tasks": {"0": {"file": "task_000.npz", "classes": [7, 8], "teacher_accuracy": 90.0}}}
  got = bench.load_split(tmp_path, manifest, "mean")[0]
  assert got["encodings"].tolist() == [[0, 1], [4, 5], [6, 7]]
  assert np.asarray(got["task"].labels).tolist() == [70.0, 80.0, 75.0]
  assert got["truth"][:2].tolist() == [71.0, 79.0] and np.isnan(got["truth"][2])  # a NaN run: not evidence
  assert bench.load_split(tmp_path, manifest, "first")[0]["truth"].tolist() == [70.0, 80.0, 75.0]
  assert got["classes"] == (7, 8)


def test_score_methods_rows():
  rng = np.random.default_rng(0)
  truths = [rng.uniform(60, 90, size=20) for _ in range(3)]
  preds = {"oracle": [np.stack([t, t]) for t in truths],  # two seeds
           "reversed": [-t for t in truths],
           "noise": [rng.normal(size=(2, 20)) for _ in truths]}
  rows = bench.score_methods(preds, truths, n_boot=200)
  assert len(rows) == 3 * (3 + 1)
  summary = {r["summary"]: r for r in rows if "summary" in r}
  assert summary["oracle"]["spearman"] == 1.0 and summary["oracle"]["kendall"] == 1.0
  assert summary["oracle"]["regret_top1"] == 0.0 and summary["oracle"]["seeds"] == 2
  assert summary["reversed"]["spearman"] == -1.0
  worst = np.mean([t.max() - t.min() for t in truths])
  assert summary["reversed"]["regret_top1"] == pytest.approx(worst, abs=1e-3)
  assert summary["reversed"]["regret_top5"] < summary["reversed"]["regret_top1"]
  lo, hi = summary["noise"]["spearman_ci"]
  assert lo < summary["noise"]["spearman"] < hi and lo < 0 < hi
  per_task = [r for r in rows if r.get("result") == "noise"]
  assert [r["task"] for r in per_task] == [0, 1, 2] and len(per_task[0]["by_seed_spearman"]) == 2
  assert summary["noise"]["spearman"] == pytest.approx(np.mean([r["spearman"] for r in per_task]), abs=1e-3)
  json.dumps(rows)


@pytest.mark.slow
def test_learnability_fails_when_the_inputs_carry_no_information(tmp_path):
  """Negative control: identical inputs for every student give constant predictions, so the check must not
  pass however well FLOPs (the synthetic truth's source) would rank them."""
  from jdanas import meta

  args = bench.parse_args(["--quick", "--students", "8", "--queries", "4", "--episodes", "4",
                           "--meta-eval-every", "2", "--n-boot", "50", "--noise", "0", "--workdir", str(tmp_path)])
  p = bench.plan(args)
  p["model"] = meta.DassPredictor(hidden_channels=2, out_channels=2, h_dim=4)
  rng = np.random.default_rng(1)
  splits = {s: [{"task": _task(8, rng.uniform(60, 80, 8))} for _ in range(k)]
            for s, k in (("train", 2), ("val", 1), ("heldout", 2))}
  flops = {s: [rng.uniform(1e6, 1e8, 8) for _ in splits[s]] for s in splits}
  row = bench.learnability(p, splits, flops, seeds=1)
  assert row["flops_vs_synthetic"] == 1.0  # noise 0: the target is exactly the FLOPs order
  assert np.isnan(row["dass"]["spearman"]) and np.isnan(row["plain"]["spearman"])
  assert row["passed"] is False


def test_cached_scores_compute_once_per_identity(tmp_path):
  path, calls = tmp_path / "proxy_scores.npz", []
  encs = np.arange(6, dtype=np.int32).reshape(3, 2)

  def compute():
    calls.append(1)
    return np.array([3.0, 1.0, 2.0], np.float32)

  first, fresh = bench.cached_scores(path, ("synflow", 0, 0, encs), compute)
  again, fresh_again = bench.cached_scores(path, ("synflow", 0, 0, encs), compute)
  assert (fresh, fresh_again, len(calls)) == (True, False, 1)
  assert first.dtype == np.float64 and again.tolist() == [3.0, 1.0, 2.0]
  bench.cached_scores(path, ("synflow", 1, 0, encs), compute)  # another seed
  bench.cached_scores(path, ("synflow", 0, 0, encs + 1), compute)  # other students
  bench.cached_scores(path, ("diswot", 0, 0, encs), compute)
  assert len(calls) == 4 and len(np.load(path).files) == 4


def test_emit_writes_strict_json(capsys):
  bench.emit(a=float("nan"), b={"c": [1.5, float("inf")], "d": np.float32(2.0)}, e="x")
  assert json.loads(capsys.readouterr().out) == {"a": None, "b": {"c": [1.5, None], "d": 2.0}, "e": "x"}


def test_teachers_of_two_architectures_and_the_accelerator_size(tmp_path):
  p = bench.plan(bench.parse_args(["--workdir", str(tmp_path)]))
  assert [sp.stage_widths for sp in p["spaces"]] == [(8, 16, 32, 64), (16, 24, 32, 64)]
  assert p["space"] is p["spaces"][0] and len({sp.teacher_encoding.shape for sp in p["spaces"]}) == 1
  one = bench.plan(bench.parse_args(["--workdir", str(tmp_path), "--teacher-widths", "8,16,32,64"]))
  assert [sp.stage_widths for sp in one["spaces"]] == [(8, 16, 32, 64)]
  assert bench.describe(p)["teacher_widths"] == [[8, 16, 32, 64], [16, 24, 32, 64]]
  gpu = bench.parse_args(["--size", "gpu"])
  assert (gpu.size, gpu.students, gpu.image_size, gpu.strategy, gpu.train_tasks) == ("gpu", 50, 32, "vmap", 8)
  g = bench.plan(gpu)
  assert g["recipes"]["train"].strategy == "vmap" and g["recipes"]["heldout"].repeats == 2
  assert bench.parse_args(["--quick"]).size == "quick" and bench.parse_args([]).strategy == "loop"
  with pytest.raises(SystemExit):
    bench.parse_args(["--quick", "--size", "gpu"])


@pytest.mark.parametrize("argv, message", [
    (["--eval-every", "0"], "error: --eval-every: need 1..100, got 0"),
    (["--students", "2"], "error: --students: need >= 3, got 2"),
    (["--multipliers", "0.3"], "error: dass_resnet.multipliers: 0.3 x stage width 8 is not a whole channel count"),
])
def test_label_reliability_bench_refuses_bad_flags_before_any_compute(argv, message, capsys):
  assert load_script("bench/dass_labels.py", "bench_dass_labels").main(argv) == 2
  assert capsys.readouterr().err.strip() == message
