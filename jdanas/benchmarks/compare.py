"""One teacher, many methods, one table: the parts of ``bench/compare_methods.py`` that a test or a notebook can
call (issue 33; docs/compare.md).

A *study* (``configs/compare/*.py``) is a complete pipeline config (``base``: data, teacher, space, budget, the
short-KD and zero-cost evaluators, ``search.rounds``), the proposals a round (``num_asks``), the searchers'
settings (``searchers``), the arms and ONE final recipe (``final``, with ``seeds``). Each arm of :data:`ARMS` is
that base with its own searcher and evaluator (:func:`arm_config`), run by :func:`jdanas.pipeline.run` in its own
workdir, so every arm searches the same space, for the same teacher, under the same parameter budget, with the same
number of scored candidates; only what a method *is* differs. ``best_by_params`` trains nothing in its search
(:func:`best_by_params`).

The comparison's verdict comes from :class:`FinalStage`: every arm's pick is trained with the same recipe, with KD
and without, for several seeds, all picks of a seed in one population (seed ``j`` of both modes shares initial
weights and batch order), and scored on the test split. :func:`aggregate` makes one table row per arm (test accuracy
mean +- standard error, the paired KD gain, costs), :func:`render_table` the markdown and :func:`plot` accuracy
against search wall time.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pathlib
import tempfile
import time
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from jdanas.pipeline.config import ConfigError


@dataclasses.dataclass(frozen=True)
class ArmSpec:
  """One arm: which searcher proposes and how candidates are scored.

  Attributes:
    method: what the arm stands for (the table's column).
    searcher: a searcher of :data:`jdanas.searchers.SEARCHERS` (None: no search, :func:`best_by_params`).
    evaluator: ``"short_kd"``, ``"zero_cost"`` (the study's ``evaluator.zero_cost`` section) or None.
    distill: the short run distils from the teacher (False: plain cross-entropy, the teacher-agnostic search).
  """
  method: str
  searcher: str | None
  evaluator: str | None
  distill: bool = True


# The arms of the common space (DaSS and Oracle-KD NAS need their own spaces: docs/compare.md, "Next").
ARMS: dict[str, ArmSpec] = {
    "random": ArmSpec("random search, short-KD score", "random", "short_kd"),
    "regularized_evolution": ArmSpec("regularized evolution, short-KD score", "regularized_evolution", "short_kd"),
    "diswot": ArmSpec("DisWOT: training-free score + its evolution", "diswot_evolution", "zero_cost"),
    "trade": ArmSpec("TRADE: trust-region BO (CASMOPOLITAN), short-KD score", "casmopolitan", "short_kd"),
    "akd": ArmSpec("AKD: PPO controller, short-KD reward", "ppo", "short_kd"),
    "teacher_agnostic": ArmSpec("regularized evolution, short run without KD", "regularized_evolution", "short_kd",
                                distill=False),
    "best_by_params": ArmSpec("no search: most params under the budget", None, None),
}


def check_arms(names: Iterable[str], field: str = "config.arms") -> list[str]:
  """``names`` as a list, each an arm of :data:`ARMS`, none twice; otherwise one :class:`ConfigError` line."""
  names = [n.strip() for n in names if n.strip()]
  if not names:
    raise ConfigError(f"{field}: no arm given (choose from {', '.join(ARMS)})")
  for n in names:
    if n not in ARMS:
      raise ConfigError(f"{field}: unknown arm {n!r} (choose from {', '.join(ARMS)})")
  twice = sorted({n for n in names if names.count(n) > 1})
  if twice:
    raise ConfigError(f"{field}: arm {twice[0]!r} given twice")
  return names


def arm_config(study, arm: str, teacher_dir: str | os.PathLike):
  """The pipeline config of ``arm``: the study's ``base`` with the arm's searcher (the study's ``searchers`` kwargs)
  and evaluator, the teacher loaded from ``teacher_dir`` (trained once by the harness), ``top_k = 1`` (the pick is
  the search's best-scored candidate). The base's other evaluator subsections are dropped (a zero-cost arm keeps
  ``zero_cost``, a short-KD arm ``short_kd``)."""
  spec = ARMS[arm]
  if spec.searcher is None:
    raise ValueError(f"arm {arm!r} runs no search (best_by_params)")
  c = study.base.copy_and_resolve_references()
  c.teacher.path = str(pathlib.Path(teacher_dir).absolute())
  c.searcher.name = spec.searcher
  c.searcher.kwargs = dict(study.searchers[spec.searcher])
  evaluator = {"name": spec.evaluator, spec.evaluator: c.evaluator[spec.evaluator].to_dict()}
  if spec.evaluator == "short_kd":
    evaluator["short_kd"]["distill"] = spec.distill
  c.evaluator = evaluator
  c.search.top_k = 1
  return c


def best_by_params(space, *, n: int, max_params: float, num_classes: int, input_shape: Sequence[int],
                   seed: int = 0) -> dict:
  """The no-search arm: ``n`` distinct random cells within ``max_params`` (uniform draws of ``space.sample``,
  over-budget draws discarded, at most ``100 n`` draws), the one with the most parameters picked (ties: the first
  drawn). Costs only: nothing is trained or scored."""
  import jax
  from jdanas import costs
  key = jax.random.key(seed)
  seen: dict[str, dict] = {}
  draws = 0
  while len(seen) < n and draws < 100 * n:
    enc = np.asarray(jax.device_get(space.sample(jax.random.fold_in(key, draws))), np.int32)
    draws += 1
    arch = space.decode(enc)
    if arch in seen:
      continue
    params = costs.model_costs(space, enc, num_classes=num_classes, input_shape=tuple(input_shape), flops=False).params
    if max_params and params > max_params:
      continue
    seen[arch] = {"arch": arch, "encoding": [int(v) for v in enc], "params": int(params)}
  if not seen:
    raise ConfigError(f"config.base.constraint.max_params: no random cell of {draws} fits {max_params:g} params")
  best = max(seen.values(), key=lambda r: r["params"])  # max keeps the first of equals
  flops = costs.model_costs(space, best["encoding"], num_classes=num_classes, input_shape=tuple(input_shape)).flops
  return {**best, "flops": float(flops), "evaluations": len(seen), "draws": draws}


def population_id(archs: Sequence[str]) -> str:
  """A short stable name of a final population (the distinct picks, sorted): its cache file's suffix."""
  return hashlib.sha1("\n".join(sorted(set(archs))).encode()).hexdigest()[:10]


class FinalStage:
  """The one final recipe for every pick: a KD trainer (the teacher, ``recipe``) and a no-KD trainer (the same
  recipe with plain cross-entropy) over the masked space, strategy ``loop`` without specialisation, so every pick
  and every seed of a mode runs ONE compiled P=1 program (no program grows with the number of arms); every step
  draws one batch and runs the teacher once for all picks (:class:`jdanas.train.PopulationTrainer`)."""

  def __init__(self, space, data, teacher, recipe, mesh=None):
    from jdanas.pipeline.setup import vanilla_recipe
    from jdanas.train import PopulationTrainer
    self.space, self.data = space, data
    self.trainers = {
        "kd": PopulationTrainer(space, data, recipe=recipe, teacher=teacher, strategy="loop", specialize=False,
                                mesh=mesh),
        "no_kd": PopulationTrainer(space, data, recipe=vanilla_recipe(recipe), strategy="loop", specialize=False,
                                   mesh=mesh)}

  def train(self, seed: int, archs: Sequence[str]) -> dict:
    """Trains the distinct ``archs`` (sorted) with and without KD from ``fold_in(key(0), seed)``; returns
    ``{"seed", "archs", "results": {arch: {"kd": {"val_accuracy", "test_accuracy"}, "no_kd": {...}}},
    "programs", "seconds"}`` (test accuracy None without a test split; NaN accuracies, a diverged run, as None)."""
    import jax
    from jdanas.teachers import evaluate
    t0 = time.perf_counter()
    archs = sorted(set(archs))
    encs = [self.space.encode(a) for a in archs]
    key = jax.random.fold_in(jax.random.key(0), seed)
    results = {a: {} for a in archs}
    programs = 0
    for mode, trainer in self.trainers.items():
      r = trainer.train(key, encs, desc=f"final {mode} seed {seed}")
      programs += r.num_compilations
      for i, (arch, enc) in enumerate(zip(archs, encs)):
        val = float(r.accuracy[i]) if np.isfinite(r.accuracy[i]) else None
        test = None
        if val is not None and self.data.test is not None:
          module = self.space.build(self.space.signature(enc), self.data.num_classes)
          # the variables stay on device: fetched to the host they would be copied back for every test batch
          test = float(evaluate(module, r.variables(i), self.data.test, self.data.mean, self.data.std,
                                enc=np.asarray(enc)))
        results[arch][mode] = {"val_accuracy": val, "test_accuracy": test}
    return {"seed": int(seed), "archs": archs, "results": results, "programs": programs,
            "seconds": time.perf_counter() - t0}


def _finite(values) -> list[float]:
  return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def mean_se(values) -> tuple[float | None, float | None]:
  """Mean and standard error (``std(ddof=1) / sqrt(n)``) of the finite ``values``; None where undefined."""
  v = _finite(values)
  if not v:
    return None, None
  return float(np.mean(v)), (float(np.std(v, ddof=1) / math.sqrt(len(v))) if len(v) > 1 else None)


def aggregate(arm_lines: Sequence[Mapping], final_lines: Sequence[Mapping]) -> list[dict]:
  """One table row per ``arm`` line (in their order) from the ``final`` lines of that arm: test accuracy with and
  without KD (mean, standard error, per seed), the paired KD gain (seeds where both ran), and the arm's costs."""
  rows = []
  for a in arm_lines:
    finals = sorted((f for f in final_lines if f["arm"] == a["arm"]), key=lambda f: f["seed"])
    kd = [f["kd_test_accuracy"] for f in finals]
    no_kd = [f["no_kd_test_accuracy"] for f in finals]
    pairs = [(x, y) for x, y in zip(kd, no_kd) if _finite([x]) and _finite([y])]
    kd_mean, kd_se = mean_se(kd)
    no_kd_mean, no_kd_se = mean_se(no_kd)
    gain_mean, gain_se = mean_se([x - y for x, y in pairs])
    rows.append({"kind": "row", "arm": a["arm"], "method": a.get("method", a["arm"]), "arch": a["arch"],
                 "params": a["params"], "flops": a["flops"], "evaluations": a["evaluations"],
                 "search_seconds": a["search_seconds"], "programs": a.get("evaluator_programs"),
                 "xla_compilations": a.get("xla_compilations"), "seeds": len(finals),
                 "kd_mean": kd_mean, "kd_se": kd_se, "no_kd_mean": no_kd_mean, "no_kd_se": no_kd_se,
                 "gain_mean": gain_mean, "gain_se": gain_se, "kd": kd, "no_kd": no_kd})
  return rows


def _pct(mean, se) -> str:
  if mean is None:
    return "-"
  return f"{100 * mean:.2f}" + ("" if se is None else f" ± {100 * se:.2f}")


def _num(v, fmt: str) -> str:
  return "-" if v is None else format(v, fmt)


def render_table(rows: Sequence[Mapping]) -> str:
  """The markdown table of :func:`aggregate`'s rows (accuracies in %, mean ± s.e. over the seeds; the gain is the
  paired KD minus no-KD difference; the pick's ``|`` escaped, so an NB201 string stays in its cell)."""
  out = ["| arm | pick | params | MFLOPs | evals | search s | programs | KD test % | no-KD test % | KD gain (pts) "
         "| seeds |",
         "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
  for r in rows:
    gain = "-" if r.get("gain_mean") is None else (f"{100 * r['gain_mean']:+.2f}" + (
        "" if r.get("gain_se") is None else f" ± {100 * r['gain_se']:.2f}"))
    arch = str(r["arch"]).replace("|", "\\|")  # NB201 strings are full of pipes, which end a table cell
    out.append(f"| {r['arm']} | `{arch}` | {_num(r.get('params'), ',')} | "
               f"{_num(None if r.get('flops') is None else r['flops'] / 1e6, '.2f')} | "
               f"{_num(r.get('evaluations'), 'd')} "
               f"| {_num(r.get('search_seconds'), '.1f')} | {_num(r.get('programs'), 'd')} | "
               f"{_pct(r.get('kd_mean'), r.get('kd_se'))} | {_pct(r.get('no_kd_mean'), r.get('no_kd_se'))} | "
               f"{gain} | {r.get('seeds', 0)} |")
  return "\n".join(out)


def plot(rows: Sequence[Mapping], path: str | os.PathLike | None = None, ax=None, teacher: float | None = None):
  """KD test accuracy (mean ± s.e.) against search wall time, one point per arm (hollow: the same pick without
  KD); the x axis is logarithmic (a no-search arm's seconds are drawn at 0.1 s). Writes ``path`` when given;
  returns the axes."""
  import matplotlib
  if ax is None and path is not None:
    matplotlib.use("Agg", force=False)
  import matplotlib.pyplot as plt
  fig = None
  if ax is None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
  for i, r in enumerate(rows):
    if r.get("kd_mean") is None:
      continue
    color = f"C{i % 10}"
    x = max(float(r.get("search_seconds") or 0.0), 0.1)
    ax.errorbar([x], [100 * r["kd_mean"]], yerr=[100 * (r.get("kd_se") or 0.0)], fmt="o", color=color, capsize=3,
                label=r["arm"])
    if r.get("no_kd_mean") is not None:
      ax.errorbar([x], [100 * r["no_kd_mean"]], yerr=[100 * (r.get("no_kd_se") or 0.0)], fmt="o", color=color,
                  mfc="none", capsize=3, alpha=0.6)
  if teacher is not None:
    ax.axhline(100 * teacher, color="grey", ls="--", lw=1, label="teacher")
  ax.set_xscale("log")
  ax.set_xlabel("search wall time (s, log)")
  ax.set_ylabel("test accuracy (%)")
  ax.set_title("final KD test accuracy (filled) and without KD (hollow), mean ± s.e.", fontsize=9)
  ax.legend(fontsize=7, loc="best")
  ax.grid(alpha=0.3)
  if path is not None:
    (fig or ax.figure).tight_layout()
    (fig or ax.figure).savefig(path, dpi=120)
    if fig is not None:
      plt.close(fig)
  return ax


def write_json(path: str | os.PathLike, obj: Any) -> None:
  """Writes ``obj`` as JSON atomically (a temporary file in the same folder, then ``os.replace``): a killed run
  leaves the old file or the new one, never half of one."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "w") as f:
      json.dump(obj, f, indent=1)
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise


def read_cached(path: str | os.PathLike, config: Any) -> dict | None:
  """The record :func:`write_json` stored at ``path`` as ``{"config", ...}`` when its ``config`` equals ``config``
  (compared as JSON, so tuples and lists match); None when there is none or it was made with another config."""
  path = pathlib.Path(path)
  done = json.loads(path.read_text()) if path.exists() else None
  return done if done is not None and done.get("config") == json.loads(json.dumps(config)) else None


def read_lines(path: str | os.PathLike) -> dict[str, list[dict]]:
  """The bench's JSON lines file grouped by ``kind`` (``arm``, ``final``, ``row``, ``stage``, ``teacher``)."""
  out: dict[str, list[dict]] = {}
  for line in pathlib.Path(path).read_text().splitlines():
    if line.strip():
      d = json.loads(line)
      out.setdefault(d.get("kind", "?"), []).append(d)
  return out


__all__ = ["ARMS", "ArmSpec", "FinalStage", "aggregate", "arm_config", "best_by_params", "check_arms", "mean_se",
           "plot", "population_id", "read_cached", "read_lines", "render_table", "write_json"]
