"""The final phase: the best ``top_k`` distinct architectures of the search (by ledger score, or with
``evaluator.one_shot.derive`` by their score with the final shared weights: :func:`candidates`) are KD-trained
with the full schedule (``config.final``); the one with the best *validation* accuracy is chosen (the test
split is only reported; with ``evaluator.reward`` the best reward on the validation accuracy, so a
size or latency budget binds the choice too), trained again without KD for comparison, and exported. The predefined
students of ``config.final.baselines`` are KD-trained with the same trainer (recipe, teacher,
batches) and reported side by side. ``final.init='remap'`` starts all of them (and the no-KD
comparison) from the teacher's remapped weights instead of a random init (DaSS).

One KD run against one no-KD run says little on a small test split (on the default job's 359 digits a
2-point gap is 7 images, within the spread of seeds), so ``final.seeds = n > 1`` trains the chosen
student ``n`` more times with KD and ``n`` times without, seed ``j`` of both sharing its initial weights
and batch order (``fold_in(fold_in(key_final, 2), j)``), and reports the paired gain with its standard
error and a t interval (:func:`paired_gain`)."""
from __future__ import annotations

import jax
import numpy as np
from scipy import stats

from jdanas import costs
from jdanas.parallel import is_main_process
from jdanas.pipeline import sections as S
from jdanas.pipeline.config import ConfigError
from jdanas.pipeline.results import SearchResult, at_chance, chance_accuracy
from jdanas.pipeline.setup import log, trainer, vanilla_recipe
from jdanas.pipeline.watchdog import Progress
from jdanas.teachers import evaluate
from jdanas.train import PopulationTrainer


def top_archs(ledger: list, k: int) -> list[dict]:
  """The ``k`` best distinct architectures of the ledger by score (failed ones excluded)."""
  best: dict[str, dict] = {}
  for row in ledger:
    if row["score"] is None:
      continue
    if row["arch"] not in best or row["score"] > best[row["arch"]]["score"]:
      best[row["arch"]] = row
  return sorted(best.values(), key=lambda r: (-r["score"], r["index"]))[:k]


def candidates(s: SearchResult, k: int) -> list[dict]:
  """The ``k`` students of the final training: with the derive step (``evaluator.one_shot.derive``) the best
  distinct candidates by their score with the final shared weights (``s.derive``, failed ones excluded), else
  the ledger's best (:func:`top_archs`). Each has ``arch``, ``encoding``, ``params``, ``flops`` (and with a
  reward ``latency``)."""
  if s.derive is None:
    return top_archs(s.ledger, k)
  return [r for r in s.derive["rows"] if r["derive_score"] is not None][:k]


def choose(accuracy: np.ndarray, top: list[dict], reward: dict | None) -> tuple[int, np.ndarray | None]:
  """The index of the chosen student among the KD-trained ``top`` (ledger rows) with final
  validation ``accuracy``: the best accuracy, or with the search's ``reward`` (the plan's
  ``evaluator.reward``) the best ``accuracy x (LAT / T)^w`` with each row's cached ``latency``, the
  search's own objective. Returns the index and the final rewards (None without a reward)."""
  final_reward = None
  if reward is not None:
    from jdanas.rewards import reward as reward_fn
    lat = np.asarray([np.nan if r.get("latency") is None else float(r["latency"]) for r in top], np.float64)
    final_reward = reward_fn(accuracy, lat, target=reward["target"], alpha=reward["alpha"], beta=reward["beta"])
  score = accuracy if final_reward is None else final_reward  # a failed student is NaN in both
  return int(np.argmax(np.where(np.isfinite(score), score, -np.inf))), final_reward


def _test_accuracy(s: SearchResult, enc: np.ndarray, variables) -> float | None:
  if s.data.test is None:
    return None
  module = s.plan.space.build(s.plan.space.signature(enc), s.data.num_classes)
  return evaluate(module, variables, s.data.test, s.data.mean, s.data.std, enc=np.asarray(enc))


def _top_rows(s: SearchResult, top: list[dict], encs: list[np.ndarray], accuracy: np.ndarray,
              final_reward: np.ndarray | None = None) -> list[dict]:
  """Report rows of the KD-trained top-K, best validation accuracy (with a reward: best final
  reward) first."""
  rows = []
  for i, r in enumerate(top):
    derived = "derive_score" in r  # a derive candidate: its ledger score (if any) and its final-weights score
    rows.append({"arch": r["arch"], "search_score": r["ledger_score"] if derived else r["score"],
                 **({"derive_score": r["derive_score"], "origin": r["origin"]} if derived else {}),
                 "params": r["params"], "flops": r["flops"],
                 "latency_ms": costs.latency_ms(s.plan.space, encs[i], num_classes=s.data.num_classes,
                                                input_shape=s.data.image_shape),
                 "val_accuracy": None if not np.isfinite(accuracy[i]) else float(accuracy[i])})
    if "reward" in r:  # the search's reward terms: ACC (short run or final shared weights), LAT (cached), R
      rows[-1].update(search_accuracy=r.get("accuracy"), latency=r.get("latency"), reward=r["reward"])
    if final_reward is not None:
      rows[-1]["final_reward"] = float(final_reward[i]) if np.isfinite(final_reward[i]) else None
  key = "val_accuracy" if final_reward is None else "final_reward"
  return sorted(rows, key=lambda r: np.inf if r[key] is None else -r[key])  # failed ones last


def _export(s: SearchResult, enc: np.ndarray, variables, val_accuracy: float) -> str:
  """Exports the chosen student (process 0 writes; every process returns the folder's name)."""
  export_dir = s.workdir / "export"
  if is_main_process():
    from jdanas.export import export_student
    c = costs.model_costs(s.plan.space, enc, num_classes=s.data.num_classes, input_shape=s.data.image_shape)
    space = S.SPACE.read(s.config.space)
    export_dir = export_student(
        export_dir, space=s.plan.space, space_kwargs=dict(space["kwargs"]), space_name=space["name"],
        encoding=enc, variables=variables, num_classes=s.data.num_classes, input_shape=s.data.image_shape,
        mean=s.data.mean, std=s.data.std,
        meta={"params": c.params, "flops": c.flops, "val_accuracy": val_accuracy})
  return str(export_dir.relative_to(s.workdir.absolute()) if export_dir.is_absolute() else export_dir)


def initial_variables(s: SearchResult, encs) -> list | None:
  """The final students' starting variables: None (random init) unless ``final.init='remap'``, which
  starts every student from the teacher's weights remapped to it (``copy_paste_first``; DaSS, Lee et al.,
  ICLR 2023; :func:`jdanas.meta.remap`)."""
  if s.plan.final_init != "remap":
    return None
  from jdanas.meta import remap_students
  return remap_students(s.teacher.variables, s.plan.space, encs, s.data.num_classes, s.data.image_shape)


def train_baselines(s: SearchResult, kd_trainer: PopulationTrainer, progress=True) -> list[dict]:
  """KD-trains ``config.final.baselines`` with the chosen student's trainer (same recipe, teacher
  and batches); one report row per baseline (``progress`` as in :meth:`PopulationTrainer.train`)."""
  names = list(s.plan.baselines)
  if not names:
    return []
  space, data = s.plan.space, s.data
  encs = [space.encode(b) for b in names]
  log(f"[final] KD-training {len(names)} baseline students with the same recipe: {', '.join(names)}")
  result = kd_trainer.train(jax.random.fold_in(s.key_final, 1), encs, init_variables=initial_variables(s, encs),
                            progress=progress, desc="final KD baselines")
  limit = s.plan.limits["max_params"]
  rows = []
  for i, (name, enc) in enumerate(zip(names, encs)):
    c = costs.model_costs(space, enc, num_classes=data.num_classes, input_shape=data.image_shape)
    val = float(result.accuracy[i]) if np.isfinite(result.accuracy[i]) else None
    test = _test_accuracy(s, enc, jax.device_get(result.variables(i))) if val is not None else None
    if limit and c.params > limit:
      log(f"[final] baseline {name} has {c.params} params, over the budget {limit:g}")
    rows.append({"name": name, "arch": space.decode(enc), "params": c.params, "flops": c.flops,
                 "kd": {"val_accuracy": val, "test_accuracy": test}})
  return rows


def paired_gain(with_kd, without_kd, confidence: float = 0.95) -> dict:
  """The KD gain of paired runs (seed ``j`` of both arms shares its initial weights and batches):
  per-arm mean and standard error, the mean paired difference with its standard error and Student-t
  ``confidence`` interval, and how many pairs KD won. Accuracies are fractions; the gain is in the
  same units. A non-finite pair (a diverged run) is left out and counted in ``failed``."""
  a, b = np.asarray(with_kd, np.float64), np.asarray(without_kd, np.float64)
  ok = np.isfinite(a) & np.isfinite(b)
  a, b, n = a[ok], b[ok], int(ok.sum())
  se = lambda v: float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")
  d = a - b
  out = {"n": n, "failed": int((~ok).sum()), "confidence": confidence,
         "kd_mean": float(a.mean()) if n else float("nan"), "kd_se": se(a),
         "no_kd_mean": float(b.mean()) if n else float("nan"), "no_kd_se": se(b),
         "gain_mean": float(d.mean()) if n else float("nan"), "gain_se": se(d),
         "kd_wins": int((d > 0).sum()), "ties": int((d == 0).sum())}
  half = (float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * out["gain_se"]) if n > 1 else float("nan")
  out["gain_interval"] = [out["gain_mean"] - half, out["gain_mean"] + half]
  return out


def seed_study(s: SearchResult, enc: np.ndarray, kd_trainer: PopulationTrainer, vanilla_trainer: PopulationTrainer,
               init, progress=True) -> dict:
  """``final.seeds`` paired KD / no-KD trainings of the chosen student (see the module docstring);
  the report's ``final.seeds`` section: per-seed accuracies on the test split (validation when the
  data has none) and :func:`paired_gain`."""
  n = s.plan.final_seeds
  split = "test" if s.data.test is not None else "val"
  log(f"[final] KD gain over {n} paired seeds: training the chosen student {n} times with KD and {n} times "
      f"without ({split} accuracy)")
  key_seeds = jax.random.fold_in(s.key_final, 2)
  start = None if init is None else [init]  # the trainer copies it
  acc = {"kd": [], "no_kd": []}
  for j in range(n):
    for arm, t in (("kd", kd_trainer), ("no_kd", vanilla_trainer)):
      result = t.train(jax.random.fold_in(key_seeds, j), [enc], init_variables=start, progress=progress,
                       desc=f"final seeds {arm} {j + 1}/{n}")
      if not np.isfinite(result.accuracy[0]):
        acc[arm].append(float("nan"))
      elif split == "test":
        acc[arm].append(_test_accuracy(s, enc, jax.device_get(result.variables(0))))
      else:
        acc[arm].append(float(result.accuracy[0]))
  gain = paired_gain(acc["kd"], acc["no_kd"])
  log(f"[final] KD gain over {gain['n']} seeds: {100 * gain['gain_mean']:+.2f} +- {100 * gain['gain_se']:.2f} "
      f"points ({split}; {100 * gain['confidence']:.0f} % interval {100 * gain['gain_interval'][0]:+.2f} .. "
      f"{100 * gain['gain_interval'][1]:+.2f}); KD better in {gain['kd_wins']} of {gain['n']}")
  return {"split": split, "kd": acc["kd"], "no_kd": acc["no_kd"], **gain}


def teacher_warnings(name: str, teacher_val: float, no_kd_val: float, chance: float | None = None) -> list[str]:
  """Warnings about the teacher: no better than ``chance`` (a run with
  ``teacher.require_above_chance=False``), or less accurate (validation) than the chosen student
  trained without it: distillation then pulls the student towards a worse classifier."""
  out = []
  problem = None if chance is None else at_chance(name, teacher_val, chance)
  if problem:
    out.append(f"{problem}: the students were distilled from noise "
               f"(teacher.require_above_chance=False)")
  if np.isfinite(no_kd_val) and teacher_val < no_kd_val:
    out.append(f"the teacher {name} (val {teacher_val:.4f}) is less accurate than the chosen student trained "
               f"without KD (val {no_kd_val:.4f}); KD from it is likely to hurt: train the teacher longer or pick "
               f"a stronger one")
  return out


def train_final(s: SearchResult, watchdog: Progress | None = None) -> dict:
  """Full-schedule KD of the top-K, choice by validation accuracy, no-KD comparison, baselines and
  export (``<workdir>/export``). Every training step is a progress point of ``watchdog`` (default:
  none; ``run.py`` passes a :class:`jdanas.pipeline.watchdog.Watchdog`).

  Returns:
    ``{"top": [...], "baselines": [...], "final": {...}, "export": str, "warnings": [str]}`` (sections of the report;
    see :mod:`jdanas.report`).
  """
  watchdog = watchdog or Progress()
  plan, data, space = s.plan, s.data, s.plan.space
  top = candidates(s, plan.top_k)
  if not top and s.derive is not None:
    raise ConfigError("config.evaluator.one_shot.derive: every derive candidate failed (NaN scores with the final "
                      "shared weights, or no feasible child); nothing to train: check config.constraint")
  if not top:
    raise ConfigError("config.search: every evaluation failed (NaN scores: a short-KD training diverged or every "
                      "proposal was over the budget); nothing to train: check evaluator.short_kd.learning_rate "
                      "and config.constraint")
  encs = [np.asarray(r["encoding"], np.int32) for r in top]
  log(f"[final] KD-training the top {len(encs)} students for {plan.final.steps} steps"
      + (" from the teacher's remapped weights" if plan.final_init == "remap" else ""))
  kd_trainer = trainer(plan, data, plan.final, s.teacher, s.mesh)
  init = initial_variables(s, encs)
  kd = kd_trainer.train(jax.random.fold_in(s.key_final, 0), encs, init_variables=init,
                        progress=watchdog.ticker("final KD"), desc="final KD")
  chosen, final_reward = choose(kd.accuracy, top, plan.evaluator.reward)
  enc = encs[chosen]
  if final_reward is not None:
    log(f"[final] chosen by the search's reward on the final validation accuracy: {space.decode(enc)} "
        f"(reward {final_reward[chosen]:.4f}, val {kd.accuracy[chosen]:.4f}, LAT {top[chosen].get('latency')})")
  log(f"[final] training the chosen student {space.decode(enc)} without KD for comparison")
  vanilla_trainer = trainer(plan, data, vanilla_recipe(plan.final), None, s.mesh)
  vanilla = vanilla_trainer.train(jax.random.fold_in(s.key_final, 0), [enc],
                                  init_variables=None if init is None else [init[chosen]],  # the trainer copies it
                                  progress=watchdog.ticker("final no-KD"), desc="final vanilla")
  warnings = teacher_warnings(s.teacher.name, s.teacher_accuracy["val_accuracy"], float(vanilla.accuracy[0]),
                              chance=chance_accuracy(data.val))
  for w in warnings:
    log(f"[final] warning: {w}")
  seeds = (seed_study(s, enc, kd_trainer, vanilla_trainer, None if init is None else init[chosen],
                      progress=watchdog.ticker("final seeds")) if plan.final_seeds > 1 else None)
  kd_vars = jax.device_get(kd.variables(chosen))
  export = _export(s, enc, kd_vars, float(kd.accuracy[chosen]))
  c = costs.model_costs(space, enc, num_classes=data.num_classes, input_shape=data.image_shape)
  return {
      "top": _top_rows(s, top, encs, kd.accuracy, final_reward),
      "baselines": train_baselines(s, kd_trainer, progress=watchdog.ticker("final baselines")),
      "final": {"arch": space.decode(enc), "params": c.params, "flops": c.flops, "steps": int(plan.final.steps),
                "init": plan.final_init,
                "kd": {"val_accuracy": float(kd.accuracy[chosen]), "test_accuracy": _test_accuracy(s, enc, kd_vars)},
                "no_kd": {"val_accuracy": float(vanilla.accuracy[0]),
                          "test_accuracy": _test_accuracy(s, enc, jax.device_get(vanilla.variables(0)))},
                "num_compilations": kd.num_compilations + vanilla.num_compilations,
                **({"seeds": seeds} if seeds is not None else {})},
      "export": export,
      "warnings": warnings,
  }


__all__ = ["candidates", "choose", "initial_variables", "paired_gain", "seed_study", "teacher_warnings", "top_archs",
           "train_baselines", "train_final"]
