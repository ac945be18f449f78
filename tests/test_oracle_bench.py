"""bench/oracle_kd.py's fidelity analysis: Kendall tau and the derive-step size curve from saved JSON lines."""
import contextlib
import io
import json
import pathlib
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import oracle_kd  # noqa: E402

ROWS = [  # three children of the runlocal KDAS space: params 189,018 / 152,026 / 254,554
    {"child": "conv3x3:00", "test_per_seed": [0.40, 0.42], "one_shot_running_0": 0.30, "one_shot_batch_0": 0.35},
    {"child": "identity:00", "test_per_seed": [0.38, 0.40], "one_shot_running_0": 0.32, "one_shot_batch_0": 0.30},
    {"child": "conv5x5:11", "test_per_seed": [0.45, 0.43], "one_shot_running_0": 0.20, "one_shot_batch_0": 0.36},
]


def _curve(tmp_path, targets: str) -> list[dict]:
  path = tmp_path / "fidelity.jsonl"
  path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n" + json.dumps(
      {"summary": {"space": {"backbone": "resnet8", "positions": [3], "depths": [1, 1, 2]}}, "image_size": 16}) + "\n")
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    oracle_kd.main(["--part", "fidelity", "--from-jsonl", str(path), "--targets", targets, "--alpha", "1"])
  return [json.loads(l) for l in out.getvalue().splitlines()]


def test_the_curve_picks_by_reward_on_each_modes_scores_and_reports_stand_alone_accuracy(tmp_path):
  lines = _curve(tmp_path, "1.05")
  got = {(l["curve"]["target_x_backbone"], l["curve"]["mode"]): l for l in lines}
  assert set(got) == {(None, "running"), (None, "batch"), (1.05, "running"), (1.05, "batch")}
  # no budget: the best one-shot score; its stand-alone mean is reported
  assert got[(None, "running")]["curve"]["pick"] == "identity:00" and got[(None, "running")]["curve"]["test_mean"] == 0.39
  assert got[(None, "batch")]["curve"]["pick"] == "conv5x5:11"
  assert got[(None, "batch")]["perfect"] == {"pick": "conv5x5:11", "params": 254554, "test_mean": 0.44}
  # T = 1.05 x 152,026: reward = score x (params / T)^w (w = 1 under T, -1 over it), by hand
  T = 1.05 * 152026
  reward = {r["child"]: r["one_shot_batch_0"] * (p / T) ** (1 if p <= T else -1)
            for r, p in zip(ROWS, (189018, 152026, 254554))}
  assert got[(1.05, "batch")]["curve"]["pick"] == max(reward, key=reward.get) == "conv3x3:00"
  assert all(l["backbone_params"] == 152026 for l in lines)


def test_kendall_matches_scipy_and_is_one_for_the_same_order():
  from scipy import stats
  a, b = np.array([0.1, 0.3, 0.2, 0.5]), np.array([1.0, 2.0, 3.0, 4.0])
  got = oracle_kd._kendall(a, b)
  assert got["tau"] == pytest.approx(round(stats.kendalltau(a, b).statistic, 3))
  assert oracle_kd._kendall(b, 2 * b)["tau"] == 1.0
