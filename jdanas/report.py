"""Search ledgers, plots and the human-readable report of one run.

**Ledger.** A search records one dict per evaluated architecture, in evaluation order::

  {"round": int,          # searcher round / generation the evaluation belongs to
   "index": int,          # 0-based evaluation count over the whole search
   "arch": str,           # readable architecture (space.decode)
   "encoding": [int],     # the encoding
   "score": float | None, # higher is better; None (or NaN) = failed / diverged
   "score_kind": str,     # what the score is (jdanas.evaluators.ScoreKind.kind), e.g. "val_accuracy"
   "params": int,         # see jdanas.costs
   "flops": float,        # see jdanas.costs
   "seed": int,
   "search_seconds": float,  # wall time of the search when this row's round was recorded (cumulative,
                             # compilations included; summed over resumes)
   "round_seconds": float}   # wall time of this row's round (ask, evaluation, tell, costs)

With a latency-aware reward (:mod:`jdanas.rewards`) each row also has ``accuracy``, ``latency``
and ``reward`` (the score).

**Report.** :func:`write_report` takes one dict; every key is optional and a missing (or
``None``) section is skipped in the Markdown::

  {"dataset": str | {"name": str, ...},           # extra keys are listed after the name
   "space": str | {"name": str, ...},
   "searcher": str | {"name": str, ...},
   "teacher": {"name": str, "val_accuracy": float, "test_accuracy": float, "params": int},
   "search": {"evaluations": int, "rounds": int, "num_compilations": int,
              "search_seconds": float,  # wall time of the search loop (its progress bar), compilations included
              "round_seconds": [float],  # per round
              "score": {"kind": str, "units": str, "higher_is_better": bool, "label": str},
              # what the ledger's scores are (jdanas.evaluators.ScoreKind.to_dict())
              "reward": {"latency_model": str, "units": str, "target": float, "alpha": float,
                         "beta": float, "protocol": {...}}},  # optional: jdanas.rewards
   "top": [{"arch": str, "val_accuracy": float, "params": int, "flops": float,
            "latency_ms": float,                  # optional: the column appears if any row has it
            "search_score": float,                # optional: the score the search gave it
            "search_accuracy": float, "latency": float, "reward": float,  # optional: reward terms
            "final_reward": float}],              # optional: the reward on val_accuracy (chose the final)
   "final": {"arch": str,
             "kd": {"val_accuracy": float, "test_accuracy": float},
             "no_kd": {"val_accuracy": float, "test_accuracy": float},
             "seeds": {"split": str, "kd": [float], "no_kd": [float], "n": int, "gain_mean": float,
                       "gain_se": float, "gain_interval": [float, float], "kd_wins": int, ...}},
             # optional (final.seeds > 1): paired KD / no-KD runs of the chosen student
   "baselines": [{"name": str, "arch": str, "params": int, "flops": float,   # predefined students,
                  "kd": {"val_accuracy": float, "test_accuracy": float}}],  # same KD recipe
   "plots": {"search": "search.png", "pareto": "pareto.png"},   # label -> PNG path
   "export": str,                                 # folder written by jdanas.export.export_student
   "ledger_file": str,                            # e.g. "ledger.json"
   "warnings": [str]}                             # e.g. a teacher less accurate than the no-KD student

Accuracies are fractions in ``[0, 1]`` (shown as percentages); search scores are whatever
``search.score`` says (an accuracy, a negated distance, a log, ...). Paths may be absolute or relative
to ``workdir``; the Markdown links them relative to ``workdir`` so the folder can be moved.
Other keys are kept in ``report.json`` and ignored by the Markdown.

Plots use Matplotlib's object-oriented API on an Agg canvas (no display, no pyplot global state).
"""
from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Any, Sequence

import numpy as np

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
DPI = 120


# ---- JSON ---------------------------------------------------------------------------------------
def to_jsonable(value: Any) -> Any:
  """A JSON-serialisable copy: numpy/jax scalars and arrays to Python, tuples to lists, paths to
  strings, non-finite floats to ``None`` (so ``json.dumps(..., allow_nan=False)`` succeeds)."""
  if isinstance(value, dict):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_jsonable(v) for v in value]
  if isinstance(value, (str, bool)) or value is None:
    return value
  if isinstance(value, os.PathLike):
    return os.fspath(value)
  if isinstance(value, (np.bool_,)):
    return bool(value)
  if isinstance(value, (int, np.integer)):
    return int(value)
  if isinstance(value, (float, np.floating)):
    value = float(value)
    return value if math.isfinite(value) else None
  if hasattr(value, "__array__"):  # numpy / jax arrays
    arr = np.asarray(value)
    return to_jsonable(arr.item() if arr.ndim == 0 else arr.tolist())
  raise TypeError(f"report: cannot convert {type(value).__name__} to JSON")


# ---- ledger analysis ----------------------------------------------------------------------------
def _scores(ledger: Sequence[dict]) -> np.ndarray:
  return np.asarray([np.nan if e.get("score") is None else float(e["score"]) for e in ledger], np.float64)


def best_so_far(ledger: Sequence[dict]) -> np.ndarray:
  """Running maximum of the ledger's scores, ``float64[len(ledger)]``.

  Failed evaluations (``None`` or NaN) are skipped; entries before the first finite score are NaN.
  """
  scores = _scores(ledger)
  return np.fmax.accumulate(scores) if scores.size else scores


def pareto_front(params: Sequence[float], scores: Sequence[float | None]) -> np.ndarray:
  """Indices of the Pareto-optimal points (maximise score, minimise params), by increasing params.

  A point is on the front if no other point has at most its params and a strictly higher score,
  or strictly fewer params and at least its score. Of exact duplicates (same params and score)
  only the first index is kept. NaN/None scores or params are excluded.

  Returns:
    ``int64`` indices into the inputs; along the front, params and score both increase strictly.
  """
  p = np.asarray([np.nan if v is None else float(v) for v in params], np.float64)
  s = np.asarray([np.nan if v is None else float(v) for v in scores], np.float64)
  if p.shape != s.shape:
    raise ValueError(f"pareto_front: params has {p.size} entries but scores has {s.size}")
  idx = np.nonzero(np.isfinite(p) & np.isfinite(s))[0]
  order = idx[np.lexsort((idx, -s[idx], p[idx]))]  # params up, then score down, then index up
  front, best = [], -np.inf
  for i in order:
    if s[i] > best:
      front.append(i)
      best = s[i]
  return np.asarray(front, np.int64)


# ---- plots --------------------------------------------------------------------------------------
def _figure(width: float = 6.4, height: float = 4.2):
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  fig = Figure(figsize=(width, height), layout="constrained")
  FigureCanvasAgg(fig)
  return fig


def _legend(fig, ax) -> None:
  """Legend below the axes, so it never hides a point."""
  handles, labels = ax.get_legend_handles_labels()
  if handles:
    ncols = min(3, len(handles)) if sum(len(label) for label in labels) <= 70 else 1
    fig.legend(handles, labels, loc="outside lower center", ncols=ncols, frameon=False)


def plot_search(ledger: Sequence[dict], path_png: str | pathlib.Path, *,
                score_label: str = "score") -> pathlib.Path:
  """Best-so-far score against the number of evaluations (each evaluation as a faint point,
  failed ones as red crosses on the x axis, round boundaries as dotted lines).

  Returns:
    The written PNG path.
  """
  path_png = pathlib.Path(path_png)
  path_png.parent.mkdir(parents=True, exist_ok=True)
  scores = _scores(ledger)
  n = np.arange(1, len(scores) + 1)
  fig = _figure()
  ax = fig.add_subplot()
  ok = np.isfinite(scores)
  if ok.any():
    ax.scatter(n[ok], scores[ok], s=12, color="tab:blue", alpha=0.35, label="evaluated architecture")
    ax.step(n, best_so_far(ledger), where="post", color="tab:blue", lw=2, label="best so far")
    lo, hi = float(scores[ok].min()), float(scores[ok].max())
    pad = 0.05 * (hi - lo) if hi > lo else 0.05 * max(abs(hi), 1e-3)
    ax.set_ylim(lo - 2 * pad, hi + pad)
  if (~ok).any():
    y = ax.get_ylim()[0] if ok.any() else 0.0
    ax.scatter(n[~ok], np.full((~ok).sum(), y), marker="x", color="tab:red", s=25, clip_on=False,
               label=f"failed ({int((~ok).sum())})", zorder=3)
  rounds = [e.get("round") for e in ledger]
  for i in range(1, len(rounds)):
    if rounds[i] != rounds[i - 1]:
      ax.axvline(i + 0.5, color="0.8", ls=":", lw=0.8, zorder=0)
  ax.set_xlabel("number of evaluations")
  ax.set_ylabel(score_label.replace(" (", "\n(", 1))  # kind, then (units, ...) on a second line
  finite = scores[ok]
  title = "Search progress" + ("" if finite.size or not len(scores) else ": no successful evaluation")
  if finite.size:
    title += f": best {finite.max():.4g} after {int(np.argmax(np.where(ok, scores, -np.inf))) + 1} of {len(scores)}"
  ax.set_title(title)
  if len(scores):
    ax.set_xlim(0.5, len(scores) + 0.5)
  ax.grid(alpha=0.3)
  _legend(fig, ax)
  fig.savefig(path_png, dpi=DPI)
  return path_png


def plot_pareto(ledger: Sequence[dict], path_png: str | pathlib.Path, highlight: str | int | None = None, *,
                score_label: str = "score", x_key: str = "params",
                x_label: str = "parameters") -> pathlib.Path:
  """Score against parameters (log x; or another ledger column ``x_key``, e.g. a reward's
  ``latency``): every evaluated architecture, the Pareto front (max score, min x) as a step line,
  and optionally the chosen student.

  Args:
    ledger: see the module docstring (failed entries are left out).
    path_png: output file.
    highlight: the chosen student, as an arch string or a ledger position (``ledger[highlight]``).
    score_label: y-axis label.
    x_key, x_label: the ledger column on the x axis and its label.

  Returns:
    The written PNG path.
  """
  path_png = pathlib.Path(path_png)
  path_png.parent.mkdir(parents=True, exist_ok=True)
  scores = _scores(ledger)
  params = np.asarray([np.nan if e.get(x_key) is None else float(e[x_key]) for e in ledger], np.float64)
  ok = np.isfinite(scores) & np.isfinite(params) & (params > 0)
  fig = _figure()
  ax = fig.add_subplot()
  if ok.any():
    ax.scatter(params[ok], scores[ok], s=14, color="tab:blue", alpha=0.45, label="evaluated architecture")
    front = pareto_front(np.where(ok, params, np.nan), scores)
    fp, fs = params[front], scores[front]
    ax.step(np.append(fp, params[ok].max() * 1.15), np.append(fs, fs[-1]), where="post", color="tab:orange",
            lw=1.8, label=f"Pareto front ({len(front)})")
    ax.scatter(fp, fs, s=22, color="tab:orange", zorder=3)
    ax.set_xscale("log")
  if highlight is not None:
    if isinstance(highlight, (int, np.integer)):
      hits = [int(highlight)] if 0 <= int(highlight) < len(ledger) else []
    else:
      hits = [i for i, e in enumerate(ledger) if e.get("arch") == highlight]
    hits = [i for i in hits if ok[i]]
    if hits:
      i = max(hits, key=lambda j: scores[j])
      arch = str(ledger[i].get("arch", i))
      arch = arch if len(arch) <= 40 else arch[:39] + "\u2026"  # keep the legend compact
      ax.scatter([params[i]], [scores[i]], marker="*", s=220, color="tab:red", edgecolor="black", lw=0.6,
                 zorder=4, label=f"chosen: {arch}")
  failed = int((~ok).sum())
  ax.set_xlabel(f"{x_label} (log scale)")
  ax.set_ylabel(score_label.replace(" (", "\n(", 1))  # kind, then (units, ...) on a second line
  ax.set_title(("Score vs. size" if x_key == "params" else f"Score vs. {x_key}") + (f" ({failed} failed not shown)" if failed else ""))
  ax.grid(alpha=0.3, which="both")
  _legend(fig, ax)
  fig.savefig(path_png, dpi=DPI)
  return path_png


# ---- Markdown -----------------------------------------------------------------------------------
def _num(v: Any) -> float | None:
  if v is None:
    return None
  try:
    v = float(v)
  except (TypeError, ValueError):
    return None
  return v if math.isfinite(v) else None


def _pct(v: Any) -> str:
  v = _num(v)
  return "–" if v is None else f"{100 * v:.2f} %"


def _count(v: Any) -> str:
  v = _num(v)
  return "–" if v is None else f"{int(round(v)):,}"


def _flops(v: Any) -> str:
  v = _num(v)
  if v is None:
    return "–"
  for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
    if abs(v) >= scale:
      return f"{v / scale:.2f} {unit}"
  return f"{v:.0f}"


def _seconds(v: Any) -> str:
  v = _num(v)
  if v is None:
    return "–"
  return f"{v:.1f} s" if v < 120 else f"{v:.0f} s ({v / 60:.1f} min)"


def _describe(v: Any) -> str:
  if isinstance(v, dict):
    name = v.get("name", "")
    rest = ", ".join(f"{k}={v[k]}" for k in v if k != "name")
    return f"{name} ({rest})" if rest else str(name)
  return str(v)


def _cell(s: Any) -> str:
  return str(s).replace("|", "\\|")


def _link(workdir: pathlib.Path, target: Any) -> str:
  target = pathlib.Path(os.fspath(target))
  if target.is_absolute():
    try:
      target = pathlib.Path(os.path.relpath(target, workdir))
    except ValueError:  # another drive on Windows
      pass
  return target.as_posix()


def _code(s: Any, in_table: bool = False) -> str:
  """Inline code; in a table cell ``|`` is escaped (GFM splits cells on it even inside code)."""
  s = str(s).replace("`", "'")
  return "`" + (s.replace("|", "\\|") if in_table else s) + "`"


def _search_score(row: dict) -> Any:
  return row.get("search_score", row.get("score"))


def _score_label(score: dict) -> str:
  """``kind (units, higher is better)`` of a report's ``search.score``."""
  if score.get("label"):
    return str(score["label"])
  better = "higher" if score.get("higher_is_better", True) else "lower"
  return f"{score.get('kind', 'score')} ({score.get('units', '?')}, {better} is better)"


def _reward_text(reward: dict) -> str:
  """``ACC x (LAT/T)^w`` with the latency model, target, exponents and measuring protocol."""
  text = (f"ACC x (LAT/T)^w, LAT = {reward.get('latency_model', '?')} ({reward.get('units', '?')}), "
          f"T = {reward.get('target', '?'):g}, w = {reward.get('alpha', '?'):g} if LAT <= T else "
          f"{reward.get('beta', '?'):g}")
  p = reward.get("protocol")
  if isinstance(p, dict):
    text += (f"; measured on {p.get('device', '?')}: batch {p.get('batch_size', '?')}, "
             f"{p.get('warmup_calls', '?')} warm-up call, median of {p.get('repeats', '?')}")
  return text


def seeds_text(seeds: dict) -> str:
  """One sentence of the paired-seeds KD gain (``report["final"]["seeds"]``), in percentage points."""
  pct = lambda v: "n/a" if _num(v) is None or not np.isfinite(v) else f"{100 * v:.2f}"
  lo, hi = seeds.get("gain_interval") or (None, None)
  failed = f", {seeds['failed']} diverged pair(s) left out" if seeds.get("failed") else ""
  return (f"Over {seeds['n']} paired seeds (initial weights and batch order shared by the two arms; "
          f"{seeds['split']} accuracy): with KD {pct(seeds['kd_mean'])} ± {pct(seeds['kd_se'])} %, without KD "
          f"{pct(seeds['no_kd_mean'])} ± {pct(seeds['no_kd_se'])} % (mean ± standard error); KD gain "
          f"{100 * seeds['gain_mean']:+.2f} ± {pct(seeds['gain_se'])} points, "
          f"{100 * seeds.get('confidence', 0.95):.0f} % interval [{100 * lo:+.2f}, {100 * hi:+.2f}]; KD better in "
          f"{seeds['kd_wins']} of {seeds['n']}{failed}.")


def _markdown(report: dict, workdir: pathlib.Path) -> str:
  lines = ["# jdanas search report", ""]

  summary = []
  for key, label in (("dataset", "Dataset"), ("space", "Search space"), ("searcher", "Searcher")):
    if report.get(key) is not None:
      summary.append(f"| {label} | {_cell(_describe(report[key]))} |")
  teacher = report.get("teacher")
  if isinstance(teacher, dict):
    parts = [str(teacher.get("name", "?"))]
    accs = [f"{name} {_pct(teacher[k])}" for k, name in (("val_accuracy", "val"), ("test_accuracy", "test"))
            if _num(teacher.get(k)) is not None]
    if accs:
      parts.append("(" + ", ".join(accs) + ")")
    if _num(teacher.get("params")) is not None:
      parts.append(f"{_count(teacher['params'])} params")
    summary.append(f"| Teacher | {_cell(' '.join(parts))} |")
  search = report.get("search")
  if isinstance(search, dict):
    for key, label, fmt in (("evaluations", "Evaluations", _count), ("rounds", "Rounds", _count),
                            ("search_seconds", "Search wall time (compilation included)", _seconds),
                            ("seconds", "Search time (evaluation rounds only)", _seconds),  # an older report
                            ("num_compilations", "Compilations", _count)):
      if search.get(key) is not None:
        summary.append(f"| {label} | {fmt(search[key])} |")
    if isinstance(search.get("score"), dict):
      summary.append(f"| Search score | {_cell(_score_label(search['score']))} |")
    if isinstance(search.get("reward"), dict):
      summary.append(f"| Reward | {_cell(_reward_text(search['reward']))} |")
  if summary:
    lines += ["## Summary", "", "| Item | Value |", "| --- | --- |", *summary, ""]
  warnings = report.get("warnings")
  if warnings:
    lines += ["## Warnings", "", *[f"- {w}" for w in warnings], ""]

  top = report.get("top")
  if top:
    has_latency = any(_num(r.get("latency_ms")) is not None for r in top)
    has_score = any(_search_score(r) is not None for r in top)
    has_reward = any(_num(r.get("reward")) is not None for r in top)
    reward = search.get("reward") if isinstance(search, dict) and isinstance(search.get("reward"), dict) else {}
    head = ["Rank", "Architecture", "Val acc"] + (["Search score"] if has_score and not has_reward else [])
    has_final_reward = any(_num(r.get("final_reward")) is not None for r in top)
    head += [f"ACC ({reward.get('accuracy', 'search')})", f"LAT ({reward.get('units', '?')})",
             "Reward"] if has_reward else []
    head += ["Final reward"] if has_final_reward else []
    head += ["Params", "FLOPs"] + (["Latency"] if has_latency else [])
    lines += ["## Top students", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rank, r in enumerate(top, 1):
      row = [str(rank), _code(r.get("arch", "?"), in_table=True), _pct(r.get("val_accuracy"))]
      if has_score and not has_reward:
        score = _num(_search_score(r))
        row.append("–" if score is None else f"{score:.4g}")
      if has_reward:
        acc, lat, rew = (_num(r.get(k)) for k in ("search_accuracy", "latency", "reward"))
        row += [_pct(acc), "–" if lat is None else f"{lat:.4g}", "–" if rew is None else f"{rew:.4g}"]
      if has_final_reward:
        fr = _num(r.get("final_reward"))
        row.append("–" if fr is None else f"{fr:.4g}")
      row += [_count(r.get("params")), _flops(r.get("flops"))]
      if has_latency:
        lat = _num(r.get("latency_ms"))
        row.append("–" if lat is None else f"{lat:.3g} ms")
      lines.append("| " + " | ".join(row) + " |")
    lines.append("")

  final = report.get("final")
  if isinstance(final, dict):
    lines += ["## Final training", ""]
    if final.get("arch") is not None:
      lines += [f"Chosen student: {_code(final['arch'])}", ""]
    runs = [(label, final[key]) for key, label in (("kd", "with KD"), ("no_kd", "without KD"))
            if isinstance(final.get(key), dict)]
    if runs:
      lines += ["| Training | Val acc | Test acc |", "| --- | --- | --- |"]
      lines += [f"| {label} | {_pct(r.get('val_accuracy'))} | {_pct(r.get('test_accuracy'))} |" for label, r in runs]
      if len(runs) == 2:
        gains = []
        for k in ("val_accuracy", "test_accuracy"):
          a, b = _num(runs[0][1].get(k)), _num(runs[1][1].get(k))
          gains.append("–" if a is None or b is None else f"{100 * (a - b):+.2f} pp")
        lines.append(f"| KD gain | {gains[0]} | {gains[1]} |")
      lines.append("")
    if isinstance(final.get("seeds"), dict):
      lines += [seeds_text(final["seeds"]), ""]

  baselines = report.get("baselines")
  if baselines:
    lines += ["## Chosen student vs predefined students (same KD recipe)", "",
              "| Student | Architecture | Params | Val acc | Test acc |", "| --- | --- | --- | --- | --- |"]
    final = report.get("final") if isinstance(report.get("final"), dict) else {}
    rows = ([("chosen", final.get("arch"), final.get("params"), final.get("kd") or {})] if final.get("arch") else [])
    rows += [(b.get("name", "?"), b.get("arch"), b.get("params"), b.get("kd") or {}) for b in baselines]
    for name, arch, params, kd in rows:
      lines.append(f"| {_cell(name)} | {_code(arch or '?', in_table=True)} | {_count(params)} | "
                   f"{_pct(kd.get('val_accuracy'))} | {_pct(kd.get('test_accuracy'))} |")
    lines.append("")

  plots = report.get("plots")
  if plots:
    lines += ["## Plots", ""]
    for label, target in plots.items():
      if target is not None:
        lines += [f"![{label}]({_link(workdir, target)})", ""]

  if report.get("export") is not None or report.get("ledger_file") is not None:
    lines += ["## Export", ""]
    if report.get("export") is not None:
      link = _link(workdir, report["export"])
      lines += [f"Deployable student: [{link}]({link}) (`arch.json`, `variables/`, `forward.jax`; "
                "load with `jdanas.load_student`).", ""]
    if report.get("ledger_file") is not None:
      link = _link(workdir, report["ledger_file"])
      lines += [f"Search ledger: [{link}]({link})", ""]
  return "\n".join(lines).rstrip() + "\n"


def write_report(workdir: str | pathlib.Path, report: dict) -> tuple[pathlib.Path, pathlib.Path]:
  """Writes ``report.json`` (``report`` made JSON-safe, NaN as null) and ``report.md``.

  Args:
    workdir: folder to write into (created if needed).
    report: see the module docstring for the schema; every section is optional.

  Returns:
    ``(json_path, md_path)``.
  """
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  clean = to_jsonable(dict(report))
  json_path, md_path = workdir / REPORT_JSON, workdir / REPORT_MD
  json_path.write_text(json.dumps(clean, indent=2, allow_nan=False) + "\n")
  md_path.write_text(_markdown(clean, workdir.absolute()))
  return json_path, md_path


__all__ = ["best_so_far", "pareto_front", "plot_pareto", "plot_search", "to_jsonable", "write_report"]
