"""Meta-dataset labels that can teach (issue 31 §1): label reliability, task layouts with held-out classes,
the recipe's label options and a real build with repeats."""
from __future__ import annotations

import itertools
import json
import math

import jax
import numpy as np
import pytest

from jdanas.errors import FieldError
from jdanas.meta import tasks as T
from jdanas.spaces import DassSpace
from jdanas.train.recipe import Recipe


# ---- split-half reliability ---------------------------------------------------------------------------

def test_split_half_reliability_matches_a_hand_case():
  # ranks differ by two adjacent swaps: sum d^2 = 4, rho = 1 - 6 * 4 / (5 * 24) = 0.8; 8 concordant and
  # 2 discordant pairs of 10: tau = 0.6; Spearman-Brown 2 * 0.8 / 1.8
  got = T.split_half_reliability([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])
  assert got["n"] == 5
  np.testing.assert_allclose([got["spearman"], got["kendall"], got["spearman_brown"]], [0.8, 0.6, 1.6 / 1.8])
  with_nan = T.split_half_reliability([1, 2, 3, 4, 5, np.nan, 9], [2, 1, 4, 3, 5, 7, np.nan])
  assert with_nan == got  # pairs with a NaN on either side are dropped
  few = T.split_half_reliability([1, 2, np.nan], [1, 2, 3])
  assert few["n"] == 2 and all(math.isnan(few[k]) for k in ("spearman", "spearman_brown", "kendall"))
  assert math.isnan(T.split_half_reliability([1, 1, 1], [1, 2, 3])["spearman"])  # a constant half
  reverse = T.split_half_reliability([1, 2, 3], [3, 2, 1])
  assert reverse["spearman"] == pytest.approx(-1) and math.isnan(reverse["spearman_brown"])
  with pytest.raises(ValueError, match="^b: "):
    T.split_half_reliability([1, 2, 3], [1, 2])
  assert T.label_spread(np.array([50.0, np.nan, 62.5, 55.0])) == 12.5 and math.isnan(T.label_spread([np.nan]))


# ---- task layout --------------------------------------------------------------------------------------

def test_task_layout_holds_out_unseen_classes_and_is_deterministic():
  layout = T.task_layout(10, (7, 8, 9), train=8, val=2, heldout=3, classes_per_task=2)
  assert sorted(layout["heldout"]) == [(7, 8), (7, 9), (8, 9)]  # all 3 pairs of the 3 unseen classes
  seen = layout["train"] + layout["val"]
  assert len(layout["train"]) == 8 and len(layout["val"]) == 2 and len(set(seen)) == 10
  assert all(t == tuple(sorted(t)) and len(t) == 2 and set(t) <= set(range(7)) for t in seen)
  assert len({c for t in layout["train"][:3] for c in t}) == 6  # disjoint while the classes last
  T.check_disjoint(layout)
  assert layout == T.task_layout(10, [9, 8, 7], train=8, val=2, heldout=3, classes_per_task=2)
  assert layout["train"] != T.task_layout(10, (7, 8, 9), train=8, val=2, heldout=3, classes_per_task=2,
                                          seed=1)["train"]
  # the held-out tasks do not depend on the other counts, nor the train tasks on val
  other = T.task_layout(10, (7, 8, 9), train=5, val=0, heldout=3, classes_per_task=2)
  assert other["heldout"] == layout["heldout"] and other["train"] == layout["train"][:5] and other["val"] == []
  # every subset of the seen classes: the cuts repeat old subsets, the rest come from the remaining ones
  full = T.task_layout(10, (7, 8, 9), train=19, val=2, heldout=0, classes_per_task=2, seed=3)
  assert sorted(full["train"] + full["val"]) == list(itertools.combinations(range(7), 2)) and full["heldout"] == []
  wide = T.task_layout(20, range(14, 20), train=8, val=2, heldout=3, classes_per_task=5, heldout_classes_per_task=3)
  assert all(len(t) == 3 and set(t) <= set(range(14, 20)) for t in wide["heldout"]) and len(set(wide["heldout"])) == 3
  T.check_disjoint(wide)


@pytest.mark.parametrize("kwargs, field", [
    (dict(heldout=4), "heldout"),                      # only 3 pairs of 3 unseen classes
    (dict(train=22), "train"),                         # 21 pairs of 7 seen classes
    (dict(train=20, val=2), "val"),
    (dict(unseen=(7, 7, 9)), "unseen"),
    (dict(unseen=(7, 8, 10)), "unseen"),
    (dict(unseen=(9,)), "unseen"),                     # held-out tasks need 2 unseen classes
    (dict(classes_per_task=8), "classes_per_task"),
    (dict(heldout_classes_per_task=4), "heldout_classes_per_task"),
    (dict(train=0), "train"),
    (dict(val=-1), "val"),
    (dict(num_classes=1, unseen=()), "num_classes"),
])
def test_task_layout_names_the_impossible_field(kwargs, field):
  args = dict(num_classes=10, unseen=(7, 8, 9), train=8, val=2, heldout=3, classes_per_task=2) | kwargs
  with pytest.raises(FieldError, match=f"^{field}: ") as err:
    T.task_layout(args.pop("num_classes"), args.pop("unseen"), **args)
  assert err.value.field == field


def test_check_disjoint_refuses_a_held_out_class_seen_in_training():
  T.check_disjoint({"train": [(0, 1)], "val": [(0, 2)], "heldout": [(3, 4)]})
  with pytest.raises(ValueError, match=r"held-out classes \[1\] also appear in train"):
    T.check_disjoint({"train": [(0, 1)], "val": [], "heldout": [(1, 3)]})
  with pytest.raises(ValueError, match=r"held-out classes \[2\] also appear in val"):
    T.check_disjoint({"train": [(0, 1)], "val": [(0, 2)], "heldout": [(2, 3)]})


# ---- recipe -------------------------------------------------------------------------------------------

def test_task_recipe_validates_the_label_options():
  base = T.TaskRecipe()
  assert (base.eval_every, base.label, base.repeats) == (0, "best", 1)
  for kwargs, field in [(dict(eval_every=-1), "eval_every"), (dict(eval_every=101), "eval_every"),
                        (dict(eval_every=True), "eval_every"), (dict(eval_every=2.0), "eval_every"),
                        (dict(label="last"), "label"), (dict(repeats=0), "repeats"), (dict(repeats=True), "repeats"),
                        (dict(repeats=1.5), "repeats")]:
    with pytest.raises(ValueError, match=f"^{field}: "):
      T.TaskRecipe(**kwargs)
  T.TaskRecipe(eval_every=100, label="final", repeats=3)
  space = DassSpace(stage_widths=(4, 8, 8, 16), max_depth=1, multipliers=(0.5, 1.0), image_size=8)
  prints = {T.TaskRecipe(**kw).fingerprint(space) for kw in ({}, dict(label="final"), dict(repeats=2),
                                                                dict(eval_every=10))}
  assert len(prints) == 4  # a build with other label options is never resumed as this one


# ---- a real build with repeats ------------------------------------------------------------------------

@pytest.mark.slow  # ~18 s of CPU alone (compilation), ~35 s on the shared machine
def test_build_with_repeats_and_a_curve_labels_repeat_zero_and_reports_reliability(tmp_path, monkeypatch):
  from jdanas.data.synthetic import synthetic_dataset
  from jdanas.train.population import PopulationTrainer
  space = DassSpace(stage_widths=(4, 8, 8, 16), max_depth=1, multipliers=(0.5, 1.0), image_size=8)
  data = synthetic_dataset(num_train=128, num_val=48, num_test=16, num_classes=6, image_size=8)
  recipe = T.TaskRecipe(teacher=Recipe(steps=10, batch_size=16, augment=False),
                        student=Recipe(steps=10, batch_size=16, augment=False, learning_rate=0.1), num_students=4,
                        num_noise=2, eval_every=4, repeats=2)
  keys, real_train = [], PopulationTrainer.train

  def spy(self, key, *args, **kwargs):  # the keys the students are trained with
    if kwargs.get("desc", "").startswith("task students"):
      keys.append(np.asarray(jax.random.key_data(key)))
    return real_train(self, key, *args, **kwargs)
  monkeypatch.setattr(PopulationTrainer, "train", spy)
  manifest = T.build_meta_dataset(jax.random.key(0), space, data, [(0, 2, 4)], tmp_path, recipe)
  with np.load(tmp_path / "task_000.npz") as z:
    labels, repeats, curve, steps = z["labels"], z["label_repeats"], z["curve"], z["curve_steps"]
  assert repeats.shape == (2, 4) and repeats.dtype == np.float32 and curve.shape == (3, 4)
  np.testing.assert_array_equal(repeats[0], labels)
  np.testing.assert_array_equal(steps, [4, 8, 10])
  assert steps.dtype == np.int32
  assert np.all(np.isfinite(curve)) and np.all((curve >= 0) & (curve <= 100))
  np.testing.assert_array_equal(labels, curve.max(axis=0))  # label "best": the best point of repeat 0's curve
  # repeat 0 trains with build_task's key_train (the labels of a build without repeats), repeat 1 with its fold
  key_train = jax.random.split(jax.random.fold_in(jax.random.key(0), 0), 3)[2]
  assert len(keys) == 2
  np.testing.assert_array_equal(keys[0], jax.random.key_data(key_train))
  np.testing.assert_array_equal(keys[1], jax.random.key_data(jax.random.fold_in(key_train, 1)))
  entry = manifest["tasks"]["0"]
  assert entry["label_spread"] == pytest.approx(float(labels.max() - labels.min()))
  assert set(entry["reliability"]) == {"spearman", "spearman_brown", "kendall", "n"}
  assert entry["reliability"]["n"] == 4
  expect = T.split_half_reliability(repeats[0], repeats[1])
  assert json.loads(json.dumps(entry["reliability"])) == pytest.approx(expect, nan_ok=True)
  assert json.loads((tmp_path / "manifest.json").read_text())["tasks"]["0"]["reliability"]["n"] == 4
  assert T.load_task(tmp_path / "task_000.npz").labels.shape == (4,)
