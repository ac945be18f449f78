"""Search ledgers, plots and the Markdown/JSON report."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from jdanas.report import best_so_far, pareto_front, plot_pareto, plot_search, to_jsonable, write_report

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
  assert "resnet56" in md and "93.12 %" in md and "| Compilations | 7 |" in md
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
