"""The last step of a run: ``report.json``, ``report.md``, ``ledger.json``, the plots (their y axis
says what the search score is) and a short summary on stdout."""
from __future__ import annotations

import json
import pathlib
import time

from jdanas import report as report_lib
from jdanas.parallel import is_main_process
from jdanas.pipeline.results import SearchResult


def report(s: SearchResult, final: dict) -> dict:
  """Writes the report of a search (:func:`jdanas.pipeline.search`) and its final phase
  (:func:`jdanas.pipeline.train_final`) into the workdir, prints a summary, returns the report dict
  (in a multi-process run only process 0 writes and prints; every process returns the dict)."""
  workdir = s.workdir
  out = dict(final)
  out.update({
      "dataset": s.config.data.name, "space": s.config.space.name, "searcher": s.plan.searcher_name,
      "evaluator": s.plan.evaluator.name,
      "teacher": {"name": s.teacher.name, **s.teacher_accuracy},
      "search": {**s.stats, "score": s.score_kind.to_dict(),
                 **({"reward": s.reward} if s.reward is not None else {})},
      **({"derive": s.derive} if s.derive is not None else {}),
      "seconds": time.perf_counter() - s.started,
      "config": config_dict(s.config),
  })
  out["ledger_file"] = "ledger.json"
  out["plots"] = dict(report_lib.DEFAULT_PLOTS)
  if not is_main_process():
    return out
  (workdir / "ledger.json").write_text(json.dumps(s.ledger, indent=1))
  # from the report dict and the ledger alone, as `python -m jdanas.report WORKDIR` redraws them
  report_lib.draw_plots(workdir, out, s.ledger)
  report_lib.write_report(workdir, out)
  print_summary(out, workdir)
  return out


def config_dict(config) -> dict:
  """The config as plain JSON values (what ``report.json`` stores to recognise a finished run)."""
  return json.loads(config.to_json_best_effort(sort_keys=True))


def _plural(n: int, word: str) -> str:
  return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _compilations(search: dict) -> str:
  """``N evaluator programs, M XLA compilations`` (a report written before ``num_compilations`` was renamed
  ``evaluator_programs`` has only that)."""
  text = _plural(search.get("evaluator_programs", search.get("num_compilations", 0)), "evaluator program")
  if search.get("xla_compilations") is not None:
    text += f", {_plural(search['xla_compilations'], 'XLA compilation')}"
  return text


def print_summary(report: dict, workdir: pathlib.Path) -> None:
  """A few lines for the console: teacher, search, top students, KD vs no KD, baselines."""
  f, t = report["final"], report["teacher"]
  fmt = lambda v: "n/a" if v is None else f"{v:.4f}"
  print(f"teacher {t['name']}: val {fmt(t['val_accuracy'])}, test {fmt(t['test_accuracy'])}")
  search = report["search"]
  took = (f"{search['search_seconds']:.1f} s wall time, compilation included" if "search_seconds" in search
          else f"{search['seconds']:.1f} s (evaluation rounds only)")  # a report written before search_seconds
  print(f"search: {search['evaluations']} evaluations in {took} "
        f"({_compilations(search)}); score: {search['score']['label']}")
  if isinstance(report.get("derive"), dict):
    d = report["derive"]
    print(f"derive: {d['candidates']} candidates scored with the final shared weights ({d['sampled']} sampled, "
          f"{d['from_ledger']} from the ledger); the top {len(report['top'])} went to the final training")
  print(f"{'val_acc':>8} {'params':>9} {'MFLOPs':>8} {'ms@b1':>7}  arch (top after final KD)")
  for r in report["top"]:
    print(f"{fmt(r['val_accuracy']):>8} {r['params']:>9d} {r['flops'] / 1e6:>8.2f} {r['latency_ms']:>7.2f}  {r['arch']}")
  print(f"chosen {f['arch']}: KD test {fmt(f['kd']['test_accuracy'])} vs no-KD test {fmt(f['no_kd']['test_accuracy'])}")
  if f.get("seeds"):
    print(report_lib.seeds_text(f["seeds"]))
  for b in report.get("baselines") or []:
    print(f"baseline {b['name']} ({b['params']} params): KD val {fmt(b['kd']['val_accuracy'])}, "
          f"test {fmt(b['kd']['test_accuracy'])}")
  for w in report.get("warnings") or []:
    print(f"warning: {w}")
  print(f"report: {workdir / 'report.md'}; exported student: {workdir / report['export']} "
        f"({report['seconds']:.1f} s total)")


__all__ = ["config_dict", "print_summary", "report"]
