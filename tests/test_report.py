"""Search ledgers, plots and the Markdown/JSON report."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from jdanas import report as report_lib
from jdanas.report import (best_so_far, pareto_figure, pareto_front, plot_pareto, plot_search, render, search_figure,
                           to_jsonable, write_report)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _ledger(n=40, seed=0):
  rng = np.random.default_rng(seed)
  ledger = []
  for i in range(n):
    params = int(rng.integers(2_000, 400_000))
    score = float(0.5 + 0.4 * np.log(params) / np.log(400_000) + rng.normal(0, 0.03))
    if i in (3, 17):
      score = None
    elif i == 25:
      score = float("nan")
    ledger.append({"round": i // 10, "index": i, "arch": f"arch{i:02d}", "encoding": [i % 4, i % 3, 1],
                   "score": score, "params": params, "flops": 2.0 * params * 64, "seed": 0,
                   "search_seconds": 1.5 * (i + 1), "round_seconds": 1.5})
  return ledger


def _assert_png(path):
  data = path.read_bytes()
  assert data[:8] == PNG_SIGNATURE
  assert len(data) > 10_000  # axes, points and text, not an empty canvas


def test_best_so_far_skips_failures():
  ledger = [{"score": s} for s in (None, float("nan"), 0.3, 0.2, None, 0.5, float("nan"), 0.4)]
  got = best_so_far(ledger)
  assert got.dtype == np.float64 and got.shape == (8,)
  np.testing.assert_array_equal(got, [np.nan, np.nan, 0.3, 0.3, 0.3, 0.5, 0.5, 0.5])
  assert best_so_far([]).shape == (0,)


def test_pareto_front_hand_made():
  #             0    1    2    3     4    5    6     7    8
  params = [100, 200, 150, 300, 100, 400, 50, 250, 200]
  scores = [0.5, 0.7, 0.5, 0.9, 0.6, 0.9, None, float("nan"), 0.7]
  # 4 beats 0 (same params, higher score); 2 is dominated by 4; 8 duplicates 1 (first kept);
  # 5 has the score of 3 with more params; 6 and 7 failed.
  np.testing.assert_array_equal(pareto_front(params, scores), [4, 1, 3])
  assert pareto_front([], []).shape == (0,)
  np.testing.assert_array_equal(pareto_front([10, 5], [0.1, 0.2]), [1])
  with pytest.raises(ValueError, match="^pareto_front: "):
    pareto_front([1, 2], [0.1])


def test_plots_are_valid_pngs(tmp_path):
  ledger = _ledger()
  chosen = max((e for e in ledger if e["score"] is not None and math.isfinite(e["score"])),
               key=lambda e: e["score"])["arch"]
  search = plot_search(ledger, tmp_path / "plots" / "search.png", score_label="validation accuracy")
  pareto = plot_pareto(ledger, tmp_path / "plots" / "pareto.png", highlight=chosen,
                       score_label="validation accuracy")
  _assert_png(search)
  _assert_png(pareto)
  # Edge cases: highlight by position, unknown highlight, every evaluation failed, empty ledger.
  _assert_png(plot_pareto(ledger, tmp_path / "p2.png", highlight=0))
  _assert_png(plot_pareto(ledger, tmp_path / "p3.png", highlight="no-such-arch"))
  failed = [dict(e, score=None) for e in ledger[:5]]
  for fn in (plot_search, plot_pareto):
    assert (fn(failed, tmp_path / f"{fn.__name__}_failed.png").read_bytes()[:8] == PNG_SIGNATURE)
    assert (fn([], tmp_path / f"{fn.__name__}_empty.png").read_bytes()[:8] == PNG_SIGNATURE)


def test_to_jsonable():
  value = {"a": np.float32(0.5), "b": np.int64(3), "c": (1, np.nan), "d": np.arange(3), "e": np.bool_(True),
           "f": float("inf"), 1: None}
  assert to_jsonable(value) == {"a": 0.5, "b": 3, "c": [1, None], "d": [0, 1, 2], "e": True, "f": None, "1": None}
  with pytest.raises(TypeError, match="^report: cannot convert object"):
    to_jsonable(object())


def _report(tmp_path):
  return {
      "dataset": {"name": "cifar10", "train": 45000, "val": 5000},
      "space": "nb201",
      "searcher": {"name": "regularized_evolution", "population": 16},
      "teacher": {"name": "resnet56", "val_accuracy": np.float32(0.9312), "test_accuracy": 0.9275},
      "search": {"evaluations": np.int64(40), "rounds": 4, "seconds": 812.34, "num_compilations": 7},
      "top": [
          {"arch": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|", "val_accuracy": 0.9012,
           "params": 1_073_466, "flops": 2.2e8, "latency_ms": 1.23},
          {"arch": "|skip_connect~0|+|nor_conv_1x1~0|none~1|", "val_accuracy": float("nan"),
           "params": 402_000, "flops": 7.5e7},
      ],
      "final": {"arch": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|",
                "kd": {"val_accuracy": 0.912, "test_accuracy": 0.905},
                "no_kd": {"val_accuracy": 0.9, "test_accuracy": 0.8975}},
      "plots": {"search": "search.png", "pareto": tmp_path / "plots" / "pareto.png"},
      "export": tmp_path / "student",
      "ledger_file": "ledger.json",
  }


def test_write_report(tmp_path):
  json_path, md_path = write_report(tmp_path, _report(tmp_path))
  assert (json_path, md_path) == (tmp_path / "report.json", tmp_path / "report.md")
  text = json_path.read_text()
  assert "NaN" not in text and "Infinity" not in text
  data = json.loads(text)
  assert data["top"][1]["val_accuracy"] is None
  assert data["search"]["evaluations"] == 40 and isinstance(data["teacher"]["val_accuracy"], float)
  assert data["export"] == str(tmp_path / "student")

  md = md_path.read_text()
  for section in ("## Summary", "## Top students", "## Final training", "## Plots", "## Export"):
    assert section in md
  # Top students: arch strings as code, "|" escaped inside the table (GFM splits cells on it).
  assert "| 1 | `\\|nor_conv_3x3~0\\|+\\|nor_conv_3x3~0\\|nor_conv_3x3~1\\|` | 90.12 % |" in md
  assert "| 2 | `\\|skip_connect~0\\|+\\|nor_conv_1x1~0\\|none~1\\|` | – |" in md
  assert "Chosen student: `|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|`" in md
  table = [line for line in md.splitlines() if line.startswith("| 1 |")][0]
  assert len(table.replace("\\|", "").split("|")) == 8  # 6 cells: Rank, Arch, Val, Params, FLOPs, Latency
  # num_compilations: an older report's name of evaluator_programs
  assert "resnet56" in md and "93.12 %" in md and "| Evaluator programs | 7 |" in md
  assert "regularized_evolution (population=16)" in md
  assert "1,073,466" in md and "220.00 M" in md and "1.23 ms" in md
  assert "| KD gain | +1.20 pp | +0.75 pp |" in md
  # Links are relative to the work dir, whether given relative or absolute.
  assert "![search](search.png)" in md and "![pareto](plots/pareto.png)" in md
  assert "[student](student)" in md and "[ledger.json](ledger.json)" in md
  assert str(tmp_path) not in md


def test_write_report_skips_missing_sections(tmp_path):
  _, md_path = write_report(tmp_path / "run", {"dataset": "digits", "top": [{"arch": "557"}]})
  md = md_path.read_text()
  assert "## Summary" in md and "## Top students" in md and "`557`" in md
  for section in ("## Final training", "## Plots", "## Export", "Latency", "Teacher"):
    assert section not in md
  _, md_path = write_report(tmp_path / "empty", {})
  assert md_path.read_text().startswith("# jdanas search report")


def test_report_says_what_the_search_score_is(tmp_path):
  from jdanas.evaluators import ScoreKind
  kind = ScoreKind("zero_cost:diswot", "negated distance to the teacher")
  report = _report(tmp_path)
  report["search"]["score"] = kind.to_dict()
  report["top"][0]["search_score"] = -12.5
  _, md_path = write_report(tmp_path, report)
  md = md_path.read_text()
  assert "| Search score | zero_cost:diswot (negated distance to the teacher, higher is better) |" in md
  assert "| Rank | Architecture | Val acc | Search score | Params | FLOPs | Latency |" in md
  assert "| -12.5 |" in md
  saved = json.loads((tmp_path / "report.json").read_text())
  assert saved["search"]["score"] == {"kind": "zero_cost:diswot", "units": "negated distance to the teacher",
                                      "higher_is_better": True, "label": kind.label}


# ---- plots: what the choice was made on, hygiene -----------------------------------------------
def _visible_ticks(fig, axis):
  """(tick values inside the view, their labels) of ``axis`` after a draw."""
  fig.canvas.draw()
  lo, hi = sorted(axis.get_view_interval())
  ticks = [(t.get_loc(), t.label1.get_text()) for t in axis.get_major_ticks() if lo <= t.get_loc() <= hi]
  return [v for v, _ in ticks], [text for _, text in ticks]


@pytest.mark.parametrize("n", [3, 6, 40])
def test_search_plot_counts_evaluations_in_whole_numbers(n):
  fig = search_figure(_ledger(n))
  values, labels = _visible_ticks(fig, fig.axes[0].xaxis)
  assert len(values) >= 2 and all(float(v).is_integer() for v in values), values
  assert all(label and "." not in label for label in labels), labels


def test_size_axis_is_labelled_at_enough_ticks():
  ledger = _ledger(20)
  for e, p in zip(ledger, np.linspace(1_300, 3_400, 20)):  # under one decade: a plain axis
    e["params"] = int(p)
  ax = pareto_figure(ledger).axes[0]
  assert ax.get_xscale() == "linear"
  values, labels = _visible_ticks(ax.figure, ax.xaxis)
  assert len([x for x in labels if x]) >= 4 and "2k" in labels and "3k" in labels, labels
  for e, p in zip(ledger, np.geomspace(800, 40_000, 20)):  # 1.7 decades: log, labelled at 1, 2, 5
    e["params"] = int(p)
  ax = pareto_figure(ledger).axes[0]
  assert ax.get_xscale() == "log" and "log scale" in ax.get_xlabel()
  values, labels = _visible_ticks(ax.figure, ax.xaxis)
  assert {"1k", "2k", "5k", "10k", "20k"} <= set(labels), labels


def test_long_labels_are_wrapped_to_the_axes():
  label = ("reward:val_accuracy x (measured/T)^w (fraction in [0, 1] x (measured in ms / 0.8)^w, w = 0 if under T "
           "else -0.07, higher is better)")
  for fig in (search_figure(_ledger(), score_label=label), pareto_figure(_ledger(), score_label=label)):
    ylabel = fig.axes[0].get_ylabel()
    assert ylabel.replace("\n", " ") == label
    assert all(len(line) <= 42 for line in ylabel.split("\n")), ylabel


def _top_report(ledger, reward=False):
  """report.json sections of a final phase that retrained the search's top 3 and chose its #3."""
  ok = [e for e in ledger if e["score"] is not None and math.isfinite(e["score"])]
  best = sorted(ok, key=lambda e: -e["score"])[:3]
  top = [{"arch": e["arch"], "params": e["params"], "search_score": e["score"], "val_accuracy": v}
         for e, v in zip(best, (0.91, 0.90, 0.93))]
  if reward:
    for r, fr in zip(top, (0.5, 0.7, 0.6)):
      r.update(latency=r["params"] / 1e4, final_reward=fr)
  chosen = max(top, key=lambda r: r["final_reward"] if reward else r["val_accuracy"])
  return {"top": top, "teacher": {"name": "resnet20", "val_accuracy": 0.97},
          "final": {"arch": chosen["arch"], "kd": {"val_accuracy": chosen["val_accuracy"]},
                    "no_kd": {"val_accuracy": 0.88}},
          "baselines": [{"name": "small", "arch": "s", "params": 5_000, "kd": {"val_accuracy": 0.8}}]}


def _points(ax, marker_label):
  """The (x, y) points of the scatter labelled ``marker_label`` on ``ax``."""
  hits = [c for c in ax.collections if c.get_label() == marker_label or c.get_label().startswith(marker_label)]
  assert hits, [c.get_label() for c in ax.collections]
  return [tuple(map(float, p)) for p in hits[0].get_offsets()]


def test_pareto_shows_the_criterion_the_choice_was_made_on():
  ledger = _ledger()
  report = _top_report(ledger)
  chosen = report["final"]["arch"]
  search_best = max((e for e in ledger if e["score"] is not None and math.isfinite(e["score"])),
                    key=lambda e: e["score"])
  assert chosen != search_best["arch"]  # the final phase reordered the top-K: the case the panel is for
  fig = pareto_figure(ledger, chosen, score_label="val_accuracy", report=report)
  search_ax, final_ax = fig.axes
  assert final_ax.get_title().replace("\n", " ") == "Chosen by final KD validation accuracy (top 3 retrained)"
  c = next(r for r in report["top"] if r["arch"] == chosen)
  assert _points(final_ax, "chosen:") == [(c["params"], 0.93)]
  assert sorted(_points(final_ax, "retrained")) == sorted((r["params"], r["val_accuracy"]) for r in report["top"]
                                                          if r["arch"] != chosen)
  assert _points(final_ax, "chosen, trained without KD") == [(c["params"], 0.88)]
  assert _points(final_ax, "predefined students") == [(5_000, 0.8)]
  assert [line.get_ydata()[0] for line in final_ax.lines if line.get_label().startswith("teacher")] == [0.97]
  # the search panel: the chosen one at its search score, the three retrained ones ringed
  assert _points(search_ax, "chosen:") == [(c["params"], c["search_score"])]
  assert len(_points(search_ax, "retrained")) == 3
  # without the final phase's rows: the search panel alone
  assert len(pareto_figure(ledger, chosen).axes) == 1
  assert len(pareto_figure(ledger, chosen, report={"top": [{"arch": chosen, "params": 1}]}).axes) == 1


def test_pareto_with_a_reward_shows_the_final_reward_against_lat():
  ledger = _ledger()
  for e in ledger:
    e["latency"] = e["params"] / 1e4
  report = _top_report(ledger, reward=True)
  fig = pareto_figure(ledger, report["final"]["arch"], x_key="latency", x_label="LAT: flops (FLOPs)", report=report,
                      x_target=0.25)
  final_ax = fig.axes[1]
  for ax in fig.axes:  # the reward's target T, where its penalty starts, on both panels
    assert [tuple(line.get_xdata()) for line in ax.lines if line.get_label() == "target T = 0.25"] == [(0.25, 0.25)]
  assert "reward" in final_ax.get_title() and "final reward" in final_ax.get_ylabel()
  c = next(r for r in report["top"] if r["arch"] == report["final"]["arch"])
  assert _points(final_ax, "chosen:") == [(c["latency"], 0.7)]
  # a reward is not an accuracy: no teacher accuracy line, no no-KD point, no baselines (they have no LAT)
  labels = [a.get_label() for a in final_ax.collections + final_ax.lines]
  assert not [x for x in labels if x.startswith(("teacher", "chosen, trained", "predefined"))], labels
  assert not [line for line in pareto_figure(ledger, x_key="latency").axes[0].lines if "target" in line.get_label()]


# ---- re-rendering a finished workdir -------------------------------------------------------------
def _finished_workdir(path, ledger, report):
  path.mkdir(parents=True, exist_ok=True)
  (path / "ledger.json").write_text(json.dumps(to_jsonable(ledger)))
  (path / "report.json").write_text(json.dumps(to_jsonable(report)))
  return path


def test_render_redraws_a_workdir_from_its_json_alone(tmp_path):
  ledger = _ledger()
  report = {**_report(tmp_path), **_top_report(ledger)}
  report["plots"] = {"search": "search.png", "pareto": "pareto.png"}
  report["search"]["score"] = {"kind": "predicted_kd_accuracy", "units": "percent (predicted)",
                               "higher_is_better": True, "label": "predicted_kd_accuracy (percent (predicted), "
                                                                  "higher is better)"}
  workdir = _finished_workdir(tmp_path / "run", ledger, report)
  before = {name: (workdir / name).read_bytes() for name in ("report.json", "ledger.json")}
  paths = render(workdir)
  assert paths == {"search": workdir / "search.png", "pareto": workdir / "pareto.png",
                   "markdown": workdir / "report.md"}
  _assert_png(paths["search"])
  _assert_png(paths["pareto"])
  assert {name: (workdir / name).read_bytes() for name in before} == before  # read, never written
  md = paths["markdown"].read_text()
  assert "## Top students" in md and "![pareto](pareto.png)" in md
  assert "Ordered by the final choice's criterion: the final KD validation accuracy" in md
  # an older run's predictor scores are named as today: not a percentage
  assert f"| Search score | predicted_kd_accuracy ({report_lib.LEGACY_UNITS['percent (predicted)']}, " in md
  assert "percent (predicted)" not in md


def test_legacy_units_are_todays_predictor_units():
  from jdanas.evaluators.predictor import PREDICTOR_UNITS
  assert report_lib.LEGACY_UNITS["percent (predicted)"] == PREDICTOR_UNITS
  assert "uncalibrated" in PREDICTOR_UNITS and "order" in PREDICTOR_UNITS and "exceed 100" in PREDICTOR_UNITS


def test_render_cli_needs_no_jax(tmp_path):
  import subprocess
  import sys
  workdir = _finished_workdir(tmp_path / "run", _ledger(), {**_top_report(_ledger()), "search": {"evaluations": 40}})
  code = ("import sys; from jdanas.report import main; rc = main(sys.argv[1:]); "
          "assert 'jax' not in sys.modules, 'rendering imported jax'; sys.exit(rc)")
  out = subprocess.run([sys.executable, "-c", code, str(workdir)], capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == f"{workdir}: search.png, pareto.png, report.md"
  _assert_png(workdir / "pareto.png")
  out = subprocess.run([sys.executable, "-m", "jdanas.report", str(tmp_path / "nothing")], capture_output=True,
                       text=True, timeout=120)
  assert out.returncode == 2 and out.stderr.strip() == (f"error: {tmp_path / 'nothing'}: no report.json "
                                                        "(not the workdir of a finished run)")
  (tmp_path / "broken").mkdir()
  (tmp_path / "broken" / "report.json").write_text("{")
  assert report_lib.main([str(tmp_path / "broken")]) == 2
  (tmp_path / "broken" / "report.json").write_text("[]")
  with pytest.raises(ValueError, match="report.json: a JSON object expected, got list"):
    render(tmp_path / "broken")


def test_draw_plots_takes_the_reward_axis_and_target_from_the_report(tmp_path, monkeypatch):
  ledger = _ledger()
  report = {**_top_report(ledger, reward=True),
            "search": {"score": {"kind": "reward:val_accuracy x (flops/T)^w", "units": "fraction x (LAT/T)^w",
                                 "higher_is_better": True},
                       "reward": {"latency_model": "flops", "units": "FLOPs", "target": 2e6, "alpha": 0.0,
                                  "beta": -0.07}}}
  calls = {}
  monkeypatch.setattr(report_lib, "plot_pareto", lambda led, path, **kw: calls.update(kw) or path)
  paths = report_lib.draw_plots(tmp_path, report, ledger)
  _assert_png(paths["search"])
  assert calls["x_key"] == "latency" and calls["x_label"] == "LAT: flops (FLOPs)" and calls["x_target"] == 2e6
  assert calls["highlight"] == report["final"]["arch"] and calls["report"]["top"] == report["top"]
  assert calls["score_label"] == "reward:val_accuracy x (flops/T)^w\n(fraction x (LAT/T)^w, higher is better)"
  assert "x_limit" not in calls
  # a hard budget on the plotted axis (config.constraint): max_flops on a FLOPs LAT, max_params on params
  report["config"] = {"constraint": {"max_params": 3_000, "max_flops": 5e6, "max_latency_ms": 0.0}}
  calls.clear()
  report_lib.draw_plots(tmp_path, report, ledger)
  assert calls["x_limit"] == 5e6
  del report["search"]["reward"]
  calls.clear()
  report_lib.draw_plots(tmp_path, report, ledger)
  assert calls["x_limit"] == 3_000 and "x_key" not in calls and "x_target" not in calls


def test_pareto_marks_a_hard_budget():
  fig = pareto_figure(_ledger(), x_limit=3_000)
  assert [tuple(line.get_xdata()) for line in fig.axes[0].lines if line.get_label() == "budget: at most 3k"] == [
      (3_000, 3_000)]


def test_markdown_says_the_top_table_is_in_the_final_choices_order(tmp_path):
  ledger = _ledger()
  _, md_path = write_report(tmp_path, _top_report(ledger, reward=True))
  assert "Ordered by the final choice's criterion: the final reward" in md_path.read_text()
  _, md_path = write_report(tmp_path, _top_report(ledger))
  assert "Ordered by the final choice's criterion: the final KD validation accuracy" in md_path.read_text()


def test_an_architecture_evaluated_twice_is_marked_once_at_the_score_the_top_k_took():
  ledger = _ledger(6)
  for e, s in zip(ledger, (0.3, 0.5, 0.2, 0.4, 0.6, 0.1)):
    e["score"] = s
  ledger[5]["arch"], ledger[5]["params"] = ledger[4]["arch"], ledger[4]["params"]  # re-evaluated (one-shot rounds)
  arch, params = ledger[4]["arch"], ledger[4]["params"]
  report = {"top": [{"arch": arch, "params": params, "search_score": 0.6, "val_accuracy": 0.7}],
            "final": {"arch": arch}}
  search_ax = pareto_figure(ledger, arch, report=report).axes[0]
  assert _points(search_ax, "retrained") == [(params, 0.6)]
  assert _points(search_ax, "chosen:") == [(params, 0.6)]
  report["top"][0]["search_score"] = 0.1  # the top-K took the later evaluation
  search_ax = pareto_figure(ledger, arch, report=report).axes[0]
  assert _points(search_ax, "retrained") == [(params, 0.1)] and _points(search_ax, "chosen:") == [(params, 0.1)]
