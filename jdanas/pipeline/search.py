"""The search phase: data, teacher, then ``config.search.rounds`` rounds of ask -> evaluate -> tell,
checkpointed after every round (a run in a workdir with a checkpoint resumes from it)."""
from __future__ import annotations

import json
import pathlib
import sys
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from jdanas import costs
from jdanas.parallel import check_same_across_processes, is_main_process
from jdanas.evaluators.base import ScoreKind
from jdanas.pipeline import sections as S
from jdanas.pipeline.checkpoints import Checkpoints
from jdanas.pipeline.check import Checked, prepare
from jdanas.pipeline.config import ConfigError, Plan
from jdanas.pipeline.results import SearchResult, at_chance, chance_accuracy
from jdanas.pipeline.resume import CONFIG_ECHO, check_resume, describe_changes, record_changes
from jdanas.pipeline.setup import build_evaluator, get_teacher, log, plan_searcher
from jdanas.pipeline.watchdog import Progress
from jdanas.runtime import CompileCounter, check_cpu_runtime
from jdanas.teachers import Teacher, ensemble_report, evaluate


def check_teacher(teacher_name: str, val_accuracy: float, data) -> None:
  """Stops the run (:class:`ConfigError`) when the teacher is no better than chance on the
  validation split: distilling from it would only teach the students noise."""
  problem = at_chance(teacher_name, val_accuracy, chance_accuracy(data.val))
  if problem:
    raise ConfigError(f"config.teacher: {problem}; check teacher.train (learning_rate, steps) or teacher.path")


def _data_and_teacher(config: ml_collections.ConfigDict, plan: Plan, workdir: pathlib.Path,
                      key: jax.Array, data, watchdog: Progress) -> tuple[Any, Teacher, dict]:
  """The teacher and its ``{"val_accuracy", "test_accuracy"}`` (stops at a teacher at chance)."""
  log(f"[data] {config.data.name}: train {len(data.train)}, val {len(data.val)}, "
      f"test {len(data.test) if data.test is not None else 0}, {data.num_classes} classes, {data.image_shape}")
  teacher = get_teacher(config, plan, data, workdir, key, progress=watchdog.ticker("teacher training"))
  watchdog.beat("teacher evaluation")
  val = evaluate(teacher.module, teacher.variables, data.val, data.mean, data.std)
  test = evaluate(teacher.module, teacher.variables, data.test, data.mean, data.std) if data.test is not None else None
  log(f"[teacher] {teacher.name}: val accuracy {val:.4f}")
  accuracy = {"val_accuracy": val, "test_accuracy": test}
  if teacher.members:  # each member's and the ensemble's accuracy (average, vote, oracle)
    split = data.test if data.test is not None else data.val
    accuracy["ensemble"] = {"split": "test" if data.test is not None else "val",
                            **ensemble_report(teacher, split, data.mean, data.std)}
    log(f"[teacher] ensemble ({accuracy['ensemble']['split']}): " + ", ".join(
        f"{k} {v:.4f}" for k, v in accuracy["ensemble"].items() if isinstance(v, float))
        + ", members " + " ".join(f"{a:.4f}" for a in accuracy["ensemble"]["members"]))
  if S.TEACHER.read(config.teacher)["require_above_chance"]:
    check_teacher(teacher.name, val, data)
  elif problem := at_chance(teacher.name, val, chance_accuracy(data.val)):
    log(f"[teacher] warning: {problem}; continuing because teacher.require_above_chance=False")
  return data, teacher, accuracy


def _reset_metrics(path: pathlib.Path, start_round: int) -> None:
  """Keeps the ``metrics.jsonl`` rows of the rounds a resumed run does not repeat."""
  kept = [l for l in path.read_text().splitlines() if json.loads(l)["round"] < start_round] if path.exists() else []
  path.write_text("".join(l + "\n" for l in kept))


def _evaluate(evaluator, feasible_batch, key: jax.Array, encs: np.ndarray):
  """Scores of one round (``float32[Q]``, NaN = failed or over budget), the evaluator's extra columns
  (``{name: [value | None]}``, None where a proposal was not evaluated) and the number of programs
  compiled."""
  # The searcher proposes within the budget; a proposal it could not repair is scored NaN.
  feasible = (np.asarray(jax.device_get(feasible_batch(encs))) if feasible_batch is not None
              else np.ones(len(encs), bool))
  scores = np.full(len(encs), np.nan, np.float32)
  extras: dict[str, list] = {}
  compilations = 0
  if feasible.any():
    ev = evaluator(key, encs[feasible])
    scores[feasible] = ev.scores
    compilations = ev.num_compilations
    rows = np.nonzero(feasible)[0]
    for name, column in (ev.extras or {}).items():
      extras[name] = [None] * len(encs)
      for j, i in enumerate(rows):
        v = float(column[j])
        extras[name][i] = v if np.isfinite(v) else None
  return feasible, scores, extras, compilations


def _record(r: int, encs, feasible, scores, extras, *, ledger: list, plan: Plan, data, seed: int,
            score_kind: ScoreKind) -> None:
  """Appends the round's ledger rows (with the evaluator's extra columns; the timing columns are
  stamped by :func:`_stamp`)."""
  space = plan.space
  for i, e in enumerate(encs):
    c = costs.model_costs(space, e, num_classes=data.num_classes, input_shape=data.image_shape)
    ledger.append({"round": r, "index": len(ledger), "arch": space.decode(e), "encoding": [int(v) for v in e],
                   "score": None if not np.isfinite(scores[i]) else float(scores[i]),
                   "score_kind": score_kind.kind, "feasible": bool(feasible[i]), "params": c.params,
                   "flops": c.flops, "seed": seed,
                   **{name: column[i] for name, column in extras.items()}})


def _stamp(rows: list, search_seconds: float, round_seconds: float) -> None:
  """The ledger's timing columns of one round's rows: ``search_seconds`` (wall time of the search so
  far, compilations included, as the progress bar counts it) and ``round_seconds`` (this round's)."""
  for row in rows:
    row.update(search_seconds=search_seconds, round_seconds=round_seconds)


def _search_seconds(ledger: list) -> float:
  """The search's wall time recorded by the last checkpointed round (a ledger written before the
  column was renamed calls it ``wall_time``)."""
  if not ledger:
    return 0.0
  return float(ledger[-1].get("search_seconds", ledger[-1].get("wall_time", 0.0)))


def _round_seconds(ledger: list) -> list[float | None]:
  """Each round's wall time, from the ledger (None for rounds recorded before the column existed)."""
  out = {}
  for row in ledger:
    out.setdefault(row["round"], row.get("round_seconds"))
  return [out[r] for r in sorted(out)]


def compile_note(plan: Plan, encs: np.ndarray) -> str | None:
  """What the first evaluation of a process compiles (``[search] compiling ...``), or None when the
  evaluator compiles nothing (``tabular``): the first round otherwise sits at 0 for minutes on CPU."""
  from jdanas.evaluators import get_spec
  what = get_spec(plan.evaluator.name).programs(plan.evaluator, plan, encs)  # the evaluator's spec says
  if what is None:
    return None
  return (f"[search] compiling the evaluator's program(s) ({what}) before the first evaluation; this can take "
          f"minutes on CPU (a rerun loads them from the compilation cache)")


def _metrics_row(r: int, ledger: list, scores: np.ndarray, metrics: dict) -> dict:
  best = max((row["score"] for row in ledger if row["score"] is not None), default=float("nan"))
  return {"round": r, "evaluations": len(ledger), "best_score": best,
          "round_best": float(np.nanmax(scores)) if np.isfinite(scores).any() else None,
          "failed": int((~np.isfinite(scores)).sum()), "search_seconds": ledger[-1]["search_seconds"],
          "round_seconds": ledger[-1]["round_seconds"],
          **{k: float(np.asarray(v)) for k, v in metrics.items()}}


def derive_candidates(evaluator, ask, state, key_loop: jax.Array, *, n: int, rounds: int, feasible_batch,
                      ledger: list, space, data) -> dict:
  """ENAS's derive step (``evaluator.one_shot.derive = n``): the final training's candidates ranked by
  scores of one age.

  Candidates: (a) ``n`` children sampled from the searcher's final ``state`` (ENAS's derive): ``ask`` with
  ``fold_in(key_loop, rounds + i)``, i = 0, 1, ..., its returned states discarded, proposals the budget's
  ``feasible_batch`` rejects dropped (the loop tells them failed), until ``n`` are collected (at most ``10 n``
  asks); (b) every distinct feasible child of the ``ledger`` (a jdanas addition: the search's good children
  stay in the running). Every distinct candidate is scored by ``evaluator.derive`` (the final shared weights,
  nothing trained; with ``evaluator.reward`` the search's reward of that score). A deterministic function of
  the final checkpoint and the keys, so a resumed run derives the same.

  Returns ``{"n", "asks", "sampled", "from_ledger", "candidates", "evaluator_programs", "seconds", "rows"}``;
  ``rows``: one per distinct candidate, ``{"arch", "encoding", "derive_score" (None: failed), "ledger_score"
  (its best in the ledger, None when not there or failed), "origin" ("sampled", "ledger" or "both"),
  "params", "flops"}`` plus the evaluator's columns (the reward's ``accuracy``, ``latency``, ``reward``),
  best derive score first; ties keep the candidate order (sampled in sampling order, then the ledger's)."""
  t0 = time.perf_counter()
  sampled: list[np.ndarray] = []
  asks = 0
  while len(sampled) < n and asks < 10 * n:
    encs, _ = ask(jax.random.fold_in(key_loop, rounds + asks), state)
    encs = np.asarray(jax.device_get(encs))
    ok = (np.asarray(jax.device_get(feasible_batch(encs))) if feasible_batch is not None
          else np.ones(len(encs), bool))
    sampled += list(encs[ok])
    asks += 1
  sampled = sampled[:n]
  found: dict[str, dict] = {}
  for e in sampled:
    found.setdefault(space.decode(e), {"encoding": [int(v) for v in e], "origin": "sampled", "ledger_score": None})
  for row in ledger:
    if not row["feasible"]:
      continue
    c = found.setdefault(row["arch"], {"encoding": list(row["encoding"]), "origin": "ledger", "ledger_score": None})
    if c["origin"] == "sampled":
      c["origin"] = "both"
    c.setdefault("params", row["params"])  # the ledger's costs: no recomputation (e.g. after a resume)
    c.setdefault("flops", row["flops"])
    if row["score"] is not None and (c["ledger_score"] is None or row["score"] > c["ledger_score"]):
      c["ledger_score"] = row["score"]
  rows, programs = [], 0
  finite = lambda v: float(v) if np.isfinite(v) else None  # noqa: E731
  if found:
    ev = evaluator.derive(np.asarray([c["encoding"] for c in found.values()], np.int32))
    programs = ev.num_compilations
    for i, (arch, c) in enumerate(found.items()):
      if "params" not in c:  # sampled only: not in the ledger
        cost = costs.model_costs(space, c["encoding"], num_classes=data.num_classes, input_shape=data.image_shape)
        c.update(params=cost.params, flops=cost.flops)
      rows.append({"arch": arch, "encoding": c["encoding"], "derive_score": finite(ev.scores[i]),
                   "ledger_score": c["ledger_score"], "origin": c["origin"], "params": c["params"], "flops": c["flops"],
                   **{name: finite(column[i]) for name, column in (ev.extras or {}).items()}})
  order = sorted(range(len(rows)), key=lambda i: (rows[i]["derive_score"] is None, -(rows[i]["derive_score"] or 0), i))
  return {"n": n, "asks": asks, "sampled": len(sampled), "from_ledger": sum(r["origin"] != "sampled" for r in rows),
          "candidates": len(rows), "evaluator_programs": programs, "seconds": time.perf_counter() - t0,
          "rows": [rows[i] for i in order]}


def _derive(plan: Plan, evaluator, ask, state, key_loop, feasible_batch, ledger, data, watchdog) -> dict | None:
  """:func:`derive_candidates` when the plan asks for it (``evaluator.one_shot.derive > 0``), logged; else None."""
  n = plan.evaluator.values.get("derive", 0) if plan.evaluator.name == "one_shot" else 0
  if not n:
    return None
  watchdog.beat("derive")
  out = derive_candidates(evaluator, ask, state, key_loop, n=n, rounds=plan.rounds, feasible_batch=feasible_batch,
                          ledger=ledger, space=plan.space, data=data)
  best = out["rows"][0] if out["rows"] else None
  fmt = lambda v: "none" if v is None else f"{v:.4f}"  # noqa: E731
  log(f"[derive] {out['candidates']} distinct candidates scored with the final shared weights ({out['sampled']} "
      f"sampled from the controller in {out['asks']} asks, {out['from_ledger']} from the ledger) in "
      f"{out['seconds']:.1f} s; the final training gets the top {min(plan.top_k, out['candidates'])}"
      + (f", best {best['arch']} (derive score {fmt(best['derive_score'])}, ledger score "
         f"{fmt(best['ledger_score'])})" if best else ""))
  watchdog.beat("derive (done)")
  return out


def search(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
           checked: Checked | None = None, watchdog: Progress | None = None) -> SearchResult:
  """Validates ``config`` and everything checkable before compute (:func:`jdanas.pipeline.check.prepare`,
  skipped when ``checked`` is its result), trains or loads the teacher (a teacher no better than
  chance stops the run with a :class:`ConfigError`), and runs (or resumes) the search.

  Round ``r`` uses ``fold_in(key_loop, r)`` split into ask / evaluate / tell keys, so a resumed run
  ends with the same ledger as an uninterrupted one. Writes ``<workdir>/checkpoints``,
  ``metrics.jsonl`` and TensorBoard events in ``<workdir>/tb``.

  In a multi-process run (docs/scaling.md) every process runs this same loop; the searcher state
  after each ``tell`` must have the same checksum on every process (a ``RuntimeError`` otherwise),
  every process takes part in the checkpoint, and only process 0 writes the other files.
  Teacher steps and search rounds are progress points of ``watchdog`` (default: none;
  ``run.py`` passes a :class:`jdanas.pipeline.watchdog.Watchdog`). Writes no environment variable:
  on CPU without the runtime settings of :func:`jdanas.runtime.configure` it warns
  (:func:`jdanas.runtime.check_cpu_runtime`).
  """
  checked = checked or prepare(config, workdir)
  check_cpu_runtime()
  with CompileCounter() as compiles:  # the search phase's XLA compilations, for the report
    return _search(config, workdir, checked, watchdog or Progress(), compiles)


def _search(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, checked: Checked, watchdog: Progress,
            compiles: CompileCounter) -> SearchResult:
  plan = checked.plan
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  main = is_main_process()
  # Checked again here (prepare checked it too): a caller may pass a ``checked`` made without the workdir.
  changes = check_resume(config, workdir)
  if changes:
    log(f"[resume] config changes allowed (they cannot change the result): {describe_changes(changes)}")
  history = changes
  if main:
    history = record_changes(workdir, changes)
    (workdir / CONFIG_ECHO).write_text(config.to_json_best_effort(indent=1, sort_keys=True) + "\n")
  started = time.perf_counter()
  key_teacher, key_search, key_final = jax.random.split(jax.random.key(config.seed), 3)
  key_init, key_loop = jax.random.split(key_search)

  data, teacher, teacher_accuracy = _data_and_teacher(config, plan, workdir, key_teacher, checked.data, watchdog)
  budget = checked.budget
  searcher = plan_searcher(plan, budget)
  feasible_batch = jax.jit(jax.vmap(budget)) if budget is not None else None
  mesh = plan.compute.mesh()
  evaluator = build_evaluator(plan, data, teacher, int(config.seed), mesh, teacher_accuracy["val_accuracy"])

  ask, tell = jax.jit(searcher.ask), jax.jit(searcher.tell)
  state = jax.jit(searcher.init)(key_init)
  # A stateful evaluator (one_shot: the shared weights and the data position) is checkpointed
  # with the searcher, so a resumed search continues both; a stateless one keeps the searcher's
  # checkpoint layout (the evaluator protocol: jdanas.evaluators.Evaluator).
  stateful = evaluator.state() is not None
  pack = (lambda s: {"searcher": s, "evaluator": evaluator.state()}) if stateful else (lambda s: s)
  ckpt = Checkpoints(workdir / "checkpoints", jax.eval_shape(lambda: pack(state)))
  restored = ckpt.restore_latest()
  start_round, ledger = 0, []
  if restored is not None:
    start_round, state, ledger = restored
    if stateful:
      evaluator.restore(state["evaluator"])
      state = state["searcher"]
    log(f"[resume] continuing after round {start_round} ({len(ledger)} evaluations in the ledger)")
    evaluator.resume(ledger)  # e.g. the reward's latency cache, from the ledger's latency column
  metrics_path = workdir / "metrics.jsonl"
  writer = None
  if main:
    _reset_metrics(metrics_path, start_round)
    from tensorboardX import SummaryWriter
    writer = SummaryWriter(str(workdir / "tb"))

  # Wall time of the search loop, as the progress bar counts it: compilations, costs and checkpoints
  # included; a resumed run adds its own to what the last checkpointed round recorded.
  base_seconds = _search_seconds(ledger)
  evaluator_programs = 0
  bar = tqdm(range(start_round, plan.rounds), desc="search", initial=start_round, total=plan.rounds, file=sys.stderr)
  t_loop = time.perf_counter()
  for r in bar:
    watchdog.beat(f"search round {r}")
    t_round = time.perf_counter()
    key_ask, key_eval, key_tell = jax.random.split(jax.random.fold_in(key_loop, r), 3)
    encs, state = ask(key_ask, state)
    encs = np.asarray(jax.device_get(encs))
    if r == start_round and (note := compile_note(plan, encs)):
      bar.write(note, file=sys.stderr)  # above the bar, which sits at 0 while this compiles
    feasible, scores, extras, n_compiled = _evaluate(evaluator, feasible_batch, key_eval, encs)
    evaluator_programs += n_compiled
    # Infeasible proposals are told as failed (NaN): they can never become the incumbent.
    state, metrics = tell(key_tell, state, encs, scores)
    check_same_across_processes(state, f"the searcher state after round {r}")
    _record(r, encs, feasible, scores, extras, ledger=ledger, plan=plan, data=data, seed=int(config.seed),
            score_kind=evaluator.score_kind)
    now = time.perf_counter()
    _stamp(ledger[-len(encs):], base_seconds + now - t_loop, now - t_round)
    ckpt.save(r + 1, pack(state), ledger)
    row = _metrics_row(r, ledger, scores, metrics)
    if main:
      with metrics_path.open("a") as f:
        f.write(json.dumps(row) + "\n")
      writer.add_scalar("search/best_score", row["best_score"], r)
      writer.add_scalar("search/round_best", row["round_best"] or float("nan"), r)
    # a score that is not an accuracy fraction (a predictor's uncalibrated 179.4, a proxy) is called a score
    fraction = evaluator.score_kind.units.startswith("fraction")
    bar.set_postfix({"best" if fraction else "best score": f"{row['best_score']:.4f}"})
    watchdog.beat(f"search round {r} (done)")
  if writer is not None:
    writer.close()
  ckpt.close()
  search_seconds = base_seconds + time.perf_counter() - t_loop
  derived = _derive(plan, evaluator, ask, state, key_loop, feasible_batch, ledger, data, watchdog)
  stats = {"evaluations": len(ledger), "rounds": plan.rounds, "search_seconds": search_seconds,
           "round_seconds": _round_seconds(ledger),
           "evaluator_programs": evaluator_programs + (derived["evaluator_programs"] if derived else 0),
           "xla_compilations": compiles.compilations, "cache_loads": compiles.cache_loads,
           "resumed_from_round": start_round, "resume_config_changes": history}
  return SearchResult(config=config, plan=plan, workdir=workdir, data=data, teacher=teacher,
                      teacher_accuracy=teacher_accuracy, ledger=ledger, score_kind=evaluator.score_kind,
                      reward=evaluator.describe(), derive=derived,
                      stats=stats, key_final=key_final, mesh=mesh, started=started)


__all__ = ["CONFIG_ECHO", "check_teacher", "derive_candidates", "search"]
