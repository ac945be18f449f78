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
   "search": {"evaluations": int, "rounds": int,
              "evaluator_programs": int,  # programs the evaluator built (an older report: "num_compilations")
              "xla_compilations": int,  # every XLA compilation of the search phase (jdanas.runtime.CompileCounter)
              "cache_loads": int,  # programs loaded from JAX's persistent compilation cache instead
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
            "final_reward": float,                # optional: the reward on val_accuracy (chose the final)
            "derive_score": float, "origin": str}], # optional: the derive step's score, "sampled"/"ledger"/"both"
   "derive": {"n": int, "asks": int, "sampled": int, "from_ledger": int, "candidates": int, "seconds": float,
              "rows": [{"arch": str, "derive_score": float, "ledger_score": float, "origin": str, ...}]},
              # optional (evaluator.one_shot.derive): every candidate scored with the final shared weights
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

**Plots.** ``search.png``: the search score of every evaluation and the best so far (integer x ticks).
``pareto.png``: the search score against size (or the reward's LAT; its target T and a
``config.constraint`` budget on that axis as vertical lines) with its Pareto front and, below,
the criterion the final choice was made on: the top-K students' final KD validation accuracy (or
final reward) with the chosen one, the chosen one without KD, the predefined students and the teacher
(:func:`plot_pareto`). Labels wrap instead of running off the figure; size axes are logarithmic only
over a decade or more, labelled at 1-2-5 steps. Matplotlib's object-oriented API on an Agg canvas (no
display, no pyplot global state); :func:`search_figure` and :func:`pareto_figure` return the figures.

**Re-rendering.** ``python -m jdanas.report WORKDIR`` (:func:`render`) redraws the PNGs and
``report.md`` of a finished workdir from ``report.json`` and the ledger alone (no JAX), e.g. for a
long run made with older code.
"""
from __future__ import annotations

import json
import math
import os
import pathlib
import sys
import textwrap
from typing import Any, Sequence

import numpy as np

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
DPI = 120
DEFAULT_PLOTS = {"search": "search.png", "pareto": "pareto.png"}
# Score units that older runs recorded, and what :func:`render` says instead: DaSS's predictor scores are
# not percentages (jdanas.evaluators.predictor.PREDICTOR_UNITS; kept as text here so rendering never imports JAX).
LEGACY_UNITS = {"percent (predicted)": "uncalibrated predictor score on a percent scale, only its order is used; "
                                       "may exceed 100"}


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


def _save(fig, path_png: str | pathlib.Path) -> pathlib.Path:
  """Saves with ``bbox_inches="tight"``: the canvas grows to any text that would be cut off."""
  path_png = pathlib.Path(path_png)
  path_png.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path_png, dpi=DPI, bbox_inches="tight", pad_inches=0.08)
  return path_png


def _wrap(text: str, width: int) -> str:
  """``text`` on lines of at most ``width`` characters, keeping its own line breaks (long reward and
  predictor labels would otherwise be clipped or squeeze the axes)."""
  return "\n".join("\n".join(textwrap.wrap(line, width, break_long_words=False) or [""])
                   for line in str(text).split("\n"))


def _axis_label(score_label: str, prefix: str = "") -> str:
  """A score's y-axis label: ``kind`` then ``(units, ...)`` on the next line (unless the label
  already says where to break), wrapped to the axis height."""
  label = str(score_label)
  if "\n" not in label:
    label = label.replace(" (", "\n(", 1)
  return _wrap(prefix + label, 42)


def _legend(fig, axes) -> None:
  """One legend below the axes (so it never hides a point), each label once."""
  seen: dict[str, Any] = {}
  for ax in axes:
    for handle, label in zip(*ax.get_legend_handles_labels()):
      seen.setdefault(label, handle)
  if seen:
    labels = list(seen)
    ncols = min(3, len(labels)) if sum(len(label) for label in labels) <= 70 else (2 if len(labels) > 3 else 1)
    fig.legend(list(seen.values()), labels, loc="outside lower center", ncols=ncols, frameon=False)


def short_number(v: float, _pos: Any = None) -> str:
  """A tick label: ``1500 -> "1.5k"``, ``2e8 -> "200M"``, ``0.25 -> "0.25"`` (a Matplotlib formatter)."""
  if not math.isfinite(v):
    return ""
  for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
    if abs(v) >= scale:
      return f"{v / scale:.3g}{suffix}"
  return f"{v:.3g}"


def _size_axis(ax, values: np.ndarray, label: str) -> None:
  """The x axis of a size (params, FLOPs, latency): log when the values span a decade or more, with
  labels at 1, 2 and 5 of every decade while they span at most three (a log axis over one or two
  decades would otherwise be labelled at one or two ticks); a plain axis under one decade."""
  from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
  values = values[np.isfinite(values) & (values > 0)]
  if values.size and values.max() / values.min() >= 10:
    ax.set_xscale("log")
    decades = math.log10(values.max() / values.min())
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 3 else (1.0,)))
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=tuple(range(2, 10))))
    ax.xaxis.set_minor_formatter(NullFormatter())
    label += " (log scale)"
  else:
    ax.xaxis.set_major_locator(MaxNLocator(nbins=7))
  ax.xaxis.set_major_formatter(FuncFormatter(short_number))
  ax.set_xlabel(_wrap(label, 70))


def search_figure(ledger: Sequence[dict], *, score_label: str = "score"):
  """The figure of :func:`plot_search` (a Matplotlib ``Figure``, for tests and notebooks)."""
  from matplotlib.ticker import MaxNLocator
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
  ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # a count: no 2.5th evaluation
  ax.set_ylabel(_axis_label(score_label))
  finite = scores[ok]
  title = "Search progress" + ("" if finite.size or not len(scores) else ": no successful evaluation")
  if finite.size:
    title += f": best {finite.max():.4g} after {int(np.argmax(np.where(ok, scores, -np.inf))) + 1} of {len(scores)}"
  ax.set_title(title)
  if len(scores):
    ax.set_xlim(0.5, len(scores) + 0.5)
  ax.grid(alpha=0.3)
  _legend(fig, [ax])
  return fig


def plot_search(ledger: Sequence[dict], path_png: str | pathlib.Path, *,
                score_label: str = "score") -> pathlib.Path:
  """Best-so-far score against the number of evaluations (each evaluation as a faint point,
  failed ones as red crosses on the x axis, round boundaries as dotted lines).

  Returns:
    The written PNG path.
  """
  return _save(search_figure(ledger, score_label=score_label), path_png)


def _column(rows: Sequence[dict], key: str) -> np.ndarray:
  return np.asarray([np.nan if _num(r.get(key)) is None else _num(r.get(key)) for r in rows], np.float64)


def _short_arch(arch: Any, n: int = 40) -> str:
  arch = str(arch)
  return arch if len(arch) <= n else arch[:n - 1] + "\u2026"  # keep the legend compact


def pareto_figure(ledger: Sequence[dict], highlight: str | int | None = None, *, score_label: str = "score",
                  x_key: str = "params", x_label: str = "parameters", report: dict | None = None,
                  x_target: float | None = None, x_limit: float | None = None):
  """The figure of :func:`plot_pareto` (a Matplotlib ``Figure``, for tests and notebooks)."""
  scores = _scores(ledger)
  xs = _column(ledger, x_key)
  ok = np.isfinite(scores) & np.isfinite(xs) & (xs > 0)
  report = report or {}
  top = [r for r in report.get("top") or [] if isinstance(r, dict)]
  final_key = "final_reward" if any(_num(r.get("final_reward")) is not None for r in top) else "val_accuracy"
  top_x, top_y = _column(top, x_key), _column(top, final_key)
  shown = np.isfinite(top_x) & (top_x > 0) & np.isfinite(top_y)
  panel = bool(shown.any())  # the criterion the final choice used, for the top-K it was used on
  baselines = [b for b in report.get("baselines") or [] if isinstance(b, dict)] if final_key == "val_accuracy" else []
  base_x = _column(baselines, x_key)
  base_y = _column([b.get("kd") if isinstance(b.get("kd"), dict) else {} for b in baselines], "val_accuracy")
  base_ok = np.isfinite(base_x) & (base_x > 0) & np.isfinite(base_y)

  fig = _figure(6.4, 7.6 if panel else 4.4)
  if panel:
    ax, ax2 = fig.subplots(2, 1, sharex=True)
  else:
    ax, ax2 = fig.add_subplot(), None
  if ok.any():
    ax.scatter(xs[ok], scores[ok], s=14, color="tab:blue", alpha=0.45, label="evaluated architecture")
    front = pareto_front(np.where(ok, xs, np.nan), scores)
    fp, fs = xs[front], scores[front]
    ax.step(np.append(fp, xs[ok].max() * 1.15), np.append(fs, fs[-1]), where="post", color="tab:orange",
            lw=1.8, label=f"Pareto front of the search score ({len(front)})")
    ax.scatter(fp, fs, s=22, color="tab:orange", zorder=3)
  top_score = {r.get("arch"): _num(_search_score(r)) for r in top}

  def row_of(arch: Any) -> int | None:
    """The ledger row a top student came from: an architecture evaluated more than once (e.g. by a
    one-shot search in several rounds) is marked once, at the score the top-K took (else its best)."""
    hits = [i for i, e in enumerate(ledger) if ok[i] and e.get("arch") == arch]
    if not hits:
      return None
    want = top_score.get(arch)
    return min(hits, key=lambda j: abs(scores[j] - want)) if want is not None else max(hits, key=lambda j: scores[j])

  chosen = highlight if isinstance(highlight, str) else None
  if highlight is not None:
    if isinstance(highlight, (int, np.integer)):
      i = int(highlight) if 0 <= int(highlight) < len(ledger) else None
      chosen = str(ledger[i].get("arch", i)) if i is not None else None
      i = i if i is not None and ok[i] else None
    else:
      i = row_of(highlight)
    if i is not None:
      ax.scatter([xs[i]], [scores[i]], marker="*", s=220, color="tab:red", edgecolor="black", lw=0.6,
                 zorder=4, label=f"chosen: {_short_arch(chosen)}")
  failed = int((~ok).sum())
  what = "size" if x_key == "params" else x_key
  ax.set_ylabel(_axis_label(score_label, "search " if panel else ""))
  ax.set_title((f"Search score vs. {what}") + (f" ({failed} failed not shown)" if failed else ""))
  ax.grid(alpha=0.3, which="both")
  all_x = [xs[ok]]
  if panel:
    k = len(top)
    in_top = sorted({i for i in map(row_of, {r.get("arch") for r in top}) if i is not None})
    if in_top:  # which of the searched students went on to the final phase
      ax.scatter(xs[in_top], scores[in_top], s=200, facecolor="none", edgecolor="black", lw=1.0, zorder=3,
                 label=f"retrained in the final phase (top {k})")
    is_chosen = np.asarray([chosen is not None and r.get("arch") == chosen for r in top], bool)
    rest = shown & ~is_chosen
    what_y = "final reward" if final_key == "final_reward" else "final KD validation accuracy"
    ax2.scatter(top_x[rest], top_y[rest], s=200, facecolor="none", edgecolor="black", lw=1.0, zorder=3,
                label=f"retrained in the final phase (top {k})")
    if (shown & is_chosen).any():
      j = int(np.nonzero(shown & is_chosen)[0][0])
      ax2.scatter([top_x[j]], [top_y[j]], marker="*", s=220, color="tab:red", edgecolor="black", lw=0.6, zorder=4,
                  label=f"chosen: {_short_arch(top[j].get('arch'))}")
      no_kd = _num(((report.get("final") or {}).get("no_kd") or {}).get("val_accuracy"))
      if final_key == "val_accuracy" and no_kd is not None:
        # a white diamond on top: visible even where it equals the KD accuracy (inside the star)
        ax2.scatter([top_x[j]], [no_kd], marker="D", s=40, facecolor="white", edgecolor="tab:red", lw=1.2, zorder=5,
                    label="chosen, trained without KD")
    if base_ok.any():
      ax2.scatter(base_x[base_ok], base_y[base_ok], marker="^", s=50, color="tab:green", zorder=3,
                  label="predefined students (same KD recipe)")
      for b, bx, by in zip(baselines, base_x, base_y):
        if np.isfinite(bx) and np.isfinite(by):
          ax2.annotate(str(b.get("name", "")), (bx, by), xytext=(4, 4), textcoords="offset points", fontsize=7)
    teacher = _num((report.get("teacher") or {}).get("val_accuracy"))
    if final_key == "val_accuracy" and teacher is not None:
      name = (report.get("teacher") or {}).get("name")
      ax2.axhline(teacher, color="0.4", ls="--", lw=1, label=f"teacher {name} (val {teacher:.4g})" if name
                  else f"teacher (val {teacher:.4g})")
    if final_key == "final_reward":
      ax2.set_ylabel(_axis_label("final reward (the search's reward on the final KD validation accuracy, "
                                 "higher is better)"))
      ax2.set_title(_wrap(f"Chosen by the reward on the final KD validation accuracy (top {k} retrained)", 60))
    else:
      ax2.set_ylabel(_axis_label("final KD validation accuracy (fraction in [0, 1], higher is better)"))
      ax2.set_title(_wrap(f"Chosen by {what_y} (top {k} retrained)", 60))
    ax2.grid(alpha=0.3, which="both")
    all_x += [top_x[shown], base_x[base_ok]]
  if x_target is not None and math.isfinite(float(x_target)) and x_target > 0:  # where the reward's penalty starts
    for a in [ax] + ([ax2] if panel else []):
      a.axvline(float(x_target), color="tab:purple", ls=":", lw=1.2,
                label=f"target T = {short_number(float(x_target))}")
    all_x.append(np.asarray([float(x_target)]))
  if x_limit is not None and math.isfinite(float(x_limit)) and x_limit > 0:  # a hard budget (config.constraint)
    for a in [ax] + ([ax2] if panel else []):
      a.axvline(float(x_limit), color="tab:gray", ls="-.", lw=1.2,
                label=f"budget: at most {short_number(float(x_limit))}")
    all_x.append(np.asarray([float(x_limit)]))
  _size_axis(ax2 if panel else ax, np.concatenate(all_x), x_label)
  if panel:
    ax.tick_params(labelbottom=False)
  _legend(fig, [ax] + ([ax2] if panel else []))
  return fig


def plot_pareto(ledger: Sequence[dict], path_png: str | pathlib.Path, highlight: str | int | None = None, *,
                score_label: str = "score", x_key: str = "params", x_label: str = "parameters",
                report: dict | None = None, x_target: float | None = None,
                x_limit: float | None = None) -> pathlib.Path:
  """Search score against parameters (or another ledger column ``x_key``, e.g. a reward's
  ``latency``): every evaluated architecture, the Pareto front (max score, min x) as a step line,
  and optionally the chosen student. With a ``report`` whose ``top`` rows carry the final
  criterion, a second panel shows what the choice was made on: the top-K students' final KD
  validation accuracy (or their ``final_reward``) against the same x, the chosen one, the chosen
  one without KD, the predefined students and the teacher's validation accuracy. (The search
  score alone would show the chosen student off its front whenever the final phase reorders the
  top-K.)

  Args:
    ledger: see the module docstring (failed entries are left out).
    path_png: output file.
    highlight: the chosen student, as an arch string or a ledger position (``ledger[highlight]``).
    score_label: the search score's label (y axis).
    x_key, x_label: the ledger column on the x axis and its label.
    report: the report dict (module docstring): ``top``, ``final``, ``baselines``, ``teacher``.
    x_target: a reward's target ``T`` on the x axis (a dotted line: beyond it the reward penalises).
    x_limit: a hard budget on the x axis (``config.constraint.max_params``: no student beyond it).

  Returns:
    The written PNG path.
  """
  return _save(pareto_figure(ledger, highlight, score_label=score_label, x_key=x_key, x_label=x_label,
                             report=report, x_target=x_target, x_limit=x_limit), path_png)


def draw_plots(workdir: str | pathlib.Path, report: dict, ledger: Sequence[dict]) -> dict[str, pathlib.Path]:
  """Draws a run's ``search.png`` and ``pareto.png`` (the names in ``report["plots"]``) from its
  report dict and ledger alone: the score label from ``search.score``, the x axis from
  ``search.reward`` (its LAT and target T, when the search optimised a reward), a budget on that axis from
  ``config.constraint`` (``max_params``; ``max_flops`` on a FLOPs LAT), the chosen student from ``final``.

  Returns:
    ``{"search": path, "pareto": path}``.
  """
  workdir = pathlib.Path(workdir)
  report = to_jsonable(report)
  search = report.get("search") if isinstance(report.get("search"), dict) else {}
  score = search.get("score") if isinstance(search.get("score"), dict) else {}
  label = _score_label(score) if score else "score"
  if score.get("kind") and score.get("units"):  # break between the kind and its units (either may hold " (")
    better = "higher" if score.get("higher_is_better", True) else "lower"
    label = f"{score['kind']}\n({score['units']}, {better} is better)"
  reward = search.get("reward") if isinstance(search.get("reward"), dict) else None
  x = ({"x_key": "latency", "x_label": f"LAT: {reward.get('latency_model', '?')} ({reward.get('units', '?')})",
        "x_target": _num(reward.get("target"))} if reward is not None else {})
  # a hard budget on the plotted quantity (config.constraint): params, or FLOPs when the reward's LAT is FLOPs
  axis = "params" if reward is None else reward.get("latency_model")
  config = report.get("config") if isinstance(report.get("config"), dict) else {}
  limits = config.get("constraint") if isinstance(config.get("constraint"), dict) else {}
  limit = _num(limits.get({"params": "max_params", "flops": "max_flops"}.get(axis, "")))
  if limit:
    x["x_limit"] = limit
  names = {**DEFAULT_PLOTS, **(report.get("plots") or {})}
  paths = {k: workdir / pathlib.Path(os.fspath(names[k])) for k in DEFAULT_PLOTS}
  final = report.get("final") if isinstance(report.get("final"), dict) else {}
  plot_search(ledger, paths["search"], score_label=label)
  plot_pareto(ledger, paths["pareto"], highlight=final.get("arch"), score_label=label, report=report, **x)
  return paths


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
                            ("num_compilations", "Evaluator programs", _count),  # an older report's name
                            ("evaluator_programs", "Evaluator programs", _count),
                            ("xla_compilations", "XLA compilations (search phase)", _count),
                            ("cache_loads", "Programs loaded from the compilation cache", _count)):
      if search.get(key) is not None:
        summary.append(f"| {label} | {fmt(search[key])} |")
    if isinstance(search.get("score"), dict):
      summary.append(f"| Search score | {_cell(_score_label(search['score']))} |")
    if isinstance(search.get("reward"), dict):
      summary.append(f"| Reward | {_cell(_reward_text(search['reward']))} |")
  derive = report.get("derive")
  if isinstance(derive, dict):
    summary.append(f"| Derive step | {_count(derive.get('candidates'))} distinct candidates scored with the final "
                   f"shared weights ({_count(derive.get('sampled'))} sampled from the controller, "
                   f"{_count(derive.get('from_ledger'))} from the ledger) |")
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
    has_derive = any("derive_score" in r for r in top)  # with a reward, its columns are the derive step's
    head += ["Derive score", "Origin"] if has_derive and not has_reward else ["Origin"] if has_derive else []
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
      if has_derive:
        score = _num(r.get("derive_score"))
        row += ([] if has_reward else ["–" if score is None else f"{score:.4g}"]) + [_cell(r.get("origin", "–"))]
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
    lines += ["", ("Ordered by the final choice's criterion: the final reward (the search's reward on the final KD "
                   "validation accuracy)." if has_final_reward else
                   "Ordered by the final choice's criterion: the final KD validation accuracy (the search score "
                   "only picked these students)."), ""]
    if has_derive:
      lines += [("Picked by the derive step (evaluator.one_shot.derive): ACC, LAT and Reward are each candidate's "
                 "with the final shared weights." if has_reward else
                 "Picked by the derive step (evaluator.one_shot.derive): the best by Derive score, the score with "
                 "the final shared weights; Search score is the ledger's, from the round a child was proposed in "
                 "(– for a child sampled only after the search)."), ""]

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


def _read_json(path: pathlib.Path, kind: type) -> Any:
  try:
    value = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not valid JSON ({e})") from None
  if not isinstance(value, kind):
    raise ValueError(f"{path}: a JSON {'object' if kind is dict else 'list'} expected, got {type(value).__name__}")
  return value


def render(workdir: str | pathlib.Path) -> dict[str, pathlib.Path]:
  """Redraws every PNG and ``report.md`` of a finished workdir from its ``report.json`` and ledger
  alone (no JAX, nothing trained), so runs made with older code get the current plots and labels
  (score units an older run recorded are named as today, :data:`LEGACY_UNITS`). ``report.json`` and
  the ledger are read, never written.

  Raises:
    FileNotFoundError: the workdir holds no ``report.json`` (not a finished run) or no ledger.
    ValueError: ``report.json`` is not a JSON object or the ledger not a JSON list (the message names the file).

  Returns:
    ``{"search": path, "pareto": path, "markdown": path}``.
  """
  workdir = pathlib.Path(workdir)
  json_path = workdir / REPORT_JSON
  if not json_path.is_file():
    raise FileNotFoundError(f"{workdir}: no {REPORT_JSON} (not the workdir of a finished run)")
  report = _read_json(json_path, dict)
  ledger_path = workdir / pathlib.Path(os.fspath(report.get("ledger_file") or "ledger.json"))
  if not ledger_path.is_file():
    raise FileNotFoundError(f"{workdir}: no search ledger {ledger_path.name}")
  ledger = _read_json(ledger_path, list)
  report["plots"] = {**DEFAULT_PLOTS, **(report.get("plots") or {})}  # a report from before the plots
  score = (report.get("search") or {}).get("score") if isinstance(report.get("search"), dict) else None
  if isinstance(score, dict) and score.get("units") in LEGACY_UNITS:  # today's words for an older run's score
    score["units"] = LEGACY_UNITS[score["units"]]
    better = "higher" if score.get("higher_is_better", True) else "lower"
    score["label"] = f"{score.get('kind', 'score')} ({score['units']}, {better} is better)"
  paths = draw_plots(workdir, report, ledger)
  md_path = workdir / REPORT_MD
  md_path.write_text(_markdown(report, workdir.absolute()))
  return {**paths, "markdown": md_path}


def main(argv: Sequence[str] | None = None) -> int:
  """``python -m jdanas.report WORKDIR [WORKDIR ...]``: :func:`render` each finished workdir."""
  import argparse
  parser = argparse.ArgumentParser(prog="python -m jdanas.report", description=(
      "Redraw search.png, pareto.png and report.md of finished jdanas workdirs from their report.json and "
      "ledger.json (no training, no JAX)."))
  parser.add_argument("workdirs", nargs="+", metavar="WORKDIR")
  args = parser.parse_args(argv)
  for workdir in args.workdirs:
    try:
      paths = render(workdir)
    except (FileNotFoundError, ValueError) as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
    print(f"{workdir}: " + ", ".join(p.name for p in paths.values()))
  return 0


__all__ = ["best_so_far", "draw_plots", "main", "pareto_figure", "pareto_front", "plot_pareto", "plot_search",
           "render", "search_figure", "short_number", "to_jsonable", "write_report"]


if __name__ == "__main__":
  sys.exit(main())
