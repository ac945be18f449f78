"""Statistics of the DaSS study (issue 31 §2): how well a method ranks the students of a held-out task.

Numpy/scipy only (no model code), so ``bench/dass.py`` and the tests use the same numbers:

* :func:`rank_metrics`: Spearman rho and Kendall tau-b of predictions against true KD accuracies;
* :func:`bootstrap_ci`: a percentile bootstrap interval of a rank metric per task or pooled over tasks,
  resampling *students within each task* (the tasks themselves are fixed: the interval says how much
  the students drawn for these tasks move the number, not how much another set of tasks would);
* :func:`regret`: what picking the top-k predicted students costs against the best student;
* :func:`synthetic_labels`: the learnability target (FLOPs rank + noise) that tells an encoding or
  sample-size bottleneck from a real negative result: a predictor that cannot fit this cannot be
  expected to rank real KD accuracies.

Every function drops non-finite (prediction, truth) pairs first: a student whose training diverged has a
NaN label and is no evidence for or against a ranking.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import numpy as np
from scipy import stats

METRICS = ("spearman", "kendall")
MIN_PAIRS = 3  # a rank correlation of fewer pairs is not reported (NaN)


def _finite_pairs(pred, truth) -> tuple[np.ndarray, np.ndarray]:
  pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
  if pred.shape != truth.shape or pred.ndim != 1:
    raise ValueError(f"pred and truth must be 1-D of the same length, got {pred.shape} and {truth.shape}")
  ok = np.isfinite(pred) & np.isfinite(truth)
  return pred[ok], truth[ok]


def rank_metrics(pred, truth) -> dict[str, float]:
  """``{"spearman": rho, "kendall": tau_b}`` of ``pred`` against ``truth`` over their finite pairs
  (scipy's definitions, ties averaged); NaN when fewer than 3 pairs remain or either side is constant."""
  p, t = _finite_pairs(pred, truth)
  if p.size < MIN_PAIRS or np.ptp(p) == 0 or np.ptp(t) == 0:
    return {"spearman": float("nan"), "kendall": float("nan")}
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    return {"spearman": float(stats.spearmanr(p, t).statistic), "kendall": float(stats.kendalltau(p, t).statistic)}


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  a = a - a.mean(axis=-1, keepdims=True)
  b = b - b.mean(axis=-1, keepdims=True)
  den = np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(den > 0, (a * b).sum(axis=-1) / np.where(den > 0, den, 1.0), np.nan)


def _spearman_rows(p: np.ndarray, t: np.ndarray) -> np.ndarray:
  """Spearman rho of every row pair (``[B, n]``), average ranks for ties as scipy; NaN for a constant row."""
  return _pearson_rows(stats.rankdata(p, axis=-1), stats.rankdata(t, axis=-1))


def tau_b(a, b, chunk: int = 256) -> np.ndarray | float:
  """Kendall's tau-b of ``a`` and ``b`` along the last axis (any leading axes: one tau per row), in numpy so a
  bootstrap evaluates all its resamples at once; equals ``scipy.stats.kendalltau``'s default with ties (resampling
  with replacement makes ties); NaN for a constant row. Chunked over rows: ``chunk x n x n`` signs at a time."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  lead, n = a.shape[:-1], a.shape[-1]
  p, t = a.reshape(-1, n), b.reshape(-1, n)
  out = np.empty(p.shape[0])
  for s in range(0, p.shape[0], chunk):
    x, y = p[s:s + chunk], t[s:s + chunk]
    sx = np.sign(x[:, :, None] - x[:, None, :])
    sy = np.sign(y[:, :, None] - y[:, None, :])
    # sums over ordered pairs count every unordered pair twice, on top and bottom alike
    num = (sx * sy).sum(axis=(1, 2))
    den = np.sqrt((sx * sx).sum(axis=(1, 2)) * (sy * sy).sum(axis=(1, 2)))
    with np.errstate(invalid="ignore", divide="ignore"):
      out[s:s + chunk] = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
  return out.reshape(lead) if lead else float(out[0])


_ROWS = {"spearman": _spearman_rows, "kendall": tau_b}


def _metric_rows(metric: str | Callable, p: np.ndarray, t: np.ndarray) -> np.ndarray:
  """The metric of each row pair of ``p``, ``t`` (``[B, n]``)."""
  if isinstance(metric, str):
    return _ROWS[metric](p, t)
  return np.array([float(metric(a, b)) for a, b in zip(p, t)])


def _prepare(pred_by_task: Sequence[Any], truth_by_task: Sequence[Any]) -> list[tuple[np.ndarray, np.ndarray]]:
  """Per task ``(pred [S, n], truth [n])`` with the students that lack a finite truth or a finite prediction
  in any row dropped. ``S``: predictions of the same students (e.g. one per meta-training seed)."""
  if len(pred_by_task) != len(truth_by_task) or not len(pred_by_task):
    raise ValueError(f"need the same number (>= 1) of prediction and truth tasks, got {len(pred_by_task)} "
                     f"and {len(truth_by_task)}")
  out = []
  for i, (pred, truth) in enumerate(zip(pred_by_task, truth_by_task)):
    p, t = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    p = p[None] if p.ndim == 1 else p
    if p.ndim != 2 or t.ndim != 1 or p.shape[1] != t.shape[0]:
      raise ValueError(f"task {i}: pred must be [n] or [S, n] and truth [n], got {np.shape(pred)} and {t.shape}")
    ok = np.isfinite(t) & np.isfinite(p).all(axis=0)
    out.append((p[:, ok], t[ok]))
  return out


def _check_metric(metric):
  if not (callable(metric) or metric in METRICS):
    raise ValueError(f"metric: must be one of {', '.join(METRICS)} or a callable(pred, truth), got {metric!r}")


def pooled_metric(pred_by_task: Sequence[Any], truth_by_task: Sequence[Any], metric: str | Callable) -> float:
  """The point estimate :func:`bootstrap_ci` brackets: per task the mean over its prediction rows of the
  metric, then the mean over tasks (NaN if any task's metric is undefined)."""
  _check_metric(metric)
  per_task = [np.mean(_metric_rows(metric, p, np.broadcast_to(t, p.shape))) if t.size >= MIN_PAIRS else np.nan
              for p, t in _prepare(pred_by_task, truth_by_task)]
  return float(np.mean(per_task))


def bootstrap_ci(pred_by_task: Sequence[Any], truth_by_task: Sequence[Any], metric: str | Callable, *,
                 n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
  """Percentile bootstrap interval ``(lo, hi)`` of :func:`pooled_metric`.

  What is resampled: in each of ``n_boot`` resamples, every task's students are drawn with replacement
  (as many as the task has finite students), independently across tasks; a task's prediction rows
  (``pred`` of shape ``[S, n]``, e.g. one per meta-training seed) all use that task's same draw, so seeds
  stay paired on the same students. The statistic of a resample is the mean over tasks of the mean over
  rows of ``metric`` (``"spearman"``, ``"kendall"``, or ``callable(pred, truth) -> float``) — one task
  gives a per-task interval. The tasks and the seeds are *not* resampled. Resamples where the metric is
  undefined (a constant resample) are dropped; ``(nan, nan)`` if none is left.
  """
  _check_metric(metric)
  if not 0 < level < 1:
    raise ValueError(f"level: must be in (0, 1), got {level}")
  if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 1):
    raise ValueError(f"n_boot: need an int >= 1, got {n_boot!r}")
  rng = np.random.default_rng(seed)
  total = np.zeros(int(n_boot))
  for p, t in _prepare(pred_by_task, truth_by_task):
    if t.size < MIN_PAIRS:
      return float("nan"), float("nan")
    idx = rng.integers(0, t.size, size=(int(n_boot), t.size))
    rows = [_metric_rows(metric, row[idx], t[idx]) for row in p]
    total += np.mean(rows, axis=0)
  draws = total / len(pred_by_task)
  draws = draws[np.isfinite(draws)]
  if not draws.size:
    return float("nan"), float("nan")
  lo, hi = np.percentile(draws, [50 * (1 - level), 50 * (1 + level)])
  return float(lo), float(hi)


def regret(pred, truth, k: int) -> float:
  """Best true label overall minus the best true label among the ``k`` students ranked highest by ``pred``
  (ties in ``pred`` broken by index, the earlier first): the accuracy (percent points for percent labels)
  lost by trusting the method's top-``k``; 0 when it contains the best student. Over finite pairs only;
  NaN if none."""
  if not (isinstance(k, (int, np.integer)) and k >= 1):
    raise ValueError(f"k: need an int >= 1, got {k!r}")
  p, t = _finite_pairs(pred, truth)
  if not t.size:
    return float("nan")
  top = np.argsort(-p, kind="stable")[:k]
  return float(t.max() - t[top].max())


def _rng(key_or_seed) -> np.random.Generator:
  if isinstance(key_or_seed, (int, np.integer)):
    return np.random.default_rng(int(key_or_seed))
  import jax  # a PRNG key: its bits seed numpy (the study stays reproducible from the bench's keys)
  return np.random.default_rng(np.asarray(jax.random.key_data(key_or_seed), np.uint32).ravel().tolist())


def synthetic_labels(key_or_seed, tasks: Sequence[Any], flops: Sequence[Any], noise: float) -> list[Any]:
  """``tasks`` (:class:`jdanas.meta.Task`) with their student labels replaced by the learnability target.

  Per task: the FLOPs rank of each student (ties averaged) mapped linearly onto the task's real label
  range (fewest FLOPs -> the lowest real label, most -> the highest), plus Gaussian noise of standard
  deviation ``noise`` x the real labels' standard deviation. So the target has the real labels' scale and
  the same students, inputs and teachers; only the truth is one an architecture encoding must be able to
  learn. ``flops[i]`` holds task ``i``'s students in label order; students whose real label is not finite
  keep it. ``key_or_seed``: an int or a JAX PRNG key; tasks draw their noise in order from one generator.
  """
  if not (np.isfinite(noise) and noise >= 0):
    raise ValueError(f"noise: need a finite value >= 0, got {noise!r}")
  if len(tasks) != len(flops):
    raise ValueError(f"need one FLOPs vector per task, got {len(flops)} for {len(tasks)} tasks")
  rng = _rng(key_or_seed)
  out = []
  for i, (task, f) in enumerate(zip(tasks, flops)):
    real = np.asarray(task.labels, np.float64)
    f = np.asarray(f, np.float64)
    if f.shape != real.shape:
      raise ValueError(f"task {i}: {f.shape[0] if f.ndim else 0} FLOPs for {real.shape[0]} students")
    ok = np.isfinite(real)
    new = real.copy()
    if ok.any():
      lo, hi, sd = real[ok].min(), real[ok].max(), real[ok].std()
      r = stats.rankdata(f[ok])
      scaled = lo + (r - 1) / max(ok.sum() - 1, 1) * (hi - lo)
      new[ok] = scaled + rng.normal(0.0, noise * sd, size=int(ok.sum())) if noise * sd > 0 else scaled
    labels = task.labels
    new = new.astype(np.asarray(labels).dtype)
    if not isinstance(labels, np.ndarray):  # a jax array stays one
      import jax.numpy as jnp
      new = jnp.asarray(new)
    out.append(task._replace(labels=new))
  return out
