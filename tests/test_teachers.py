"""Teachers (train, save, load, evaluate), cost caching, and mesh shape errors."""
from __future__ import annotations

import jax
import numpy as np
import pytest

from jdanas.costs import model_costs, num_params
from jdanas.distill import KD_PRESETS
from jdanas.models import get_model
from jdanas.parallel import make_mesh
from jdanas.spaces import get_space
from jdanas.teachers import Teacher, evaluate, load_teacher, save_teacher, train_teacher
from jdanas.train import Recipe

RECIPE = Recipe(steps=8, batch_size=16, loss=KD_PRESETS["ce"], eval_batch_size=40)


@pytest.fixture(scope="module")
def teacher(tiny_data):
  return train_teacher(jax.random.key(0), "resnet8", tiny_data, recipe=RECIPE)


def test_trained_teacher_fields(teacher, tiny_data):
  assert isinstance(teacher, Teacher) and teacher.name == "resnet8"
  assert teacher.num_classes == 4 and teacher.input_shape == (8, 8, 3)
  assert teacher.module == get_model("resnet8", 4)
  assert set(teacher.variables) == {"params", "batch_stats"}
  assert num_params(teacher.variables) == num_params(jax.eval_shape(
      lambda: teacher.module.init(jax.random.key(0), np.zeros((1, 8, 8, 3), np.float32), None, train=False)))
  assert teacher.meta["steps"] == 8 and 0.0 <= teacher.meta["val_accuracy"] <= 1.0
  # The recorded validation accuracy is that of the returned variables (one example of slack
  # for an arg-max tie broken differently by another batch size).
  acc = evaluate(teacher.module, teacher.variables, tiny_data.val, tiny_data.mean, tiny_data.std)
  assert abs(acc - teacher.meta["val_accuracy"]) <= 1 / len(tiny_data.val) + 1e-9
  logits = jax.jit(teacher.logits)(np.zeros((3, 8, 8, 3), np.float32))
  assert logits.shape == (3, 4) and np.all(np.isfinite(logits))


def test_save_load_round_trip(teacher, tiny_data, tmp_path):
  path = save_teacher(tmp_path / "t", teacher)
  assert (path / "teacher.json").exists() and (path / "variables").is_dir()
  loaded = load_teacher(tmp_path / "t")
  assert (loaded.name, loaded.num_classes, loaded.input_shape) == ("resnet8", 4, (8, 8, 3))
  assert loaded.module == teacher.module and loaded.meta == teacher.meta
  assert jax.tree.structure(loaded.variables) == jax.tree.structure(teacher.variables)
  for a, b in zip(jax.tree.leaves(teacher.variables), jax.tree.leaves(loaded.variables)):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()
  accuracy = [evaluate(t.module, t.variables, tiny_data.val, tiny_data.mean, tiny_data.std)
              for t in (teacher, loaded)]
  assert accuracy[0] == accuracy[1]
  # Saving again over the same folder replaces the checkpoint.
  save_teacher(path, teacher)
  assert load_teacher(path).meta == teacher.meta


def test_load_teacher_without_metadata(tmp_path):
  with pytest.raises(FileNotFoundError, match="^teacher.path: no teacher.json in"):
    load_teacher(tmp_path)


@pytest.mark.parametrize("preset", ["repdistiller", "dass"])
def test_train_teacher_rejects_kd_losses(preset, tiny_data):
  recipe = Recipe(steps=1, batch_size=16, loss=KD_PRESETS[preset], eval_batch_size=40)
  with pytest.raises(ValueError, match="^recipe.loss"):
    train_teacher(jax.random.key(0), "resnet8", tiny_data, recipe=recipe)


def test_model_costs_are_cached_per_architecture():
  space = get_space("s1_resnet", depth_choices=(1, 2), widths=(4, 8, 8), stem=4)
  enc = space.encode("121")
  first = model_costs(space, enc, num_classes=10, input_shape=(8, 8, 3), flops=False)
  assert first.params > 0 and np.isnan(first.flops)
  assert model_costs(space, enc, num_classes=10, input_shape=(8, 8, 3), flops=False) is first
  assert model_costs(space, enc.tolist(), num_classes=10, input_shape=[8, 8, 3], flops=False) is first
  assert model_costs(space, enc, num_classes=11, input_shape=(8, 8, 3), flops=False).params == first.params + 9
  with pytest.raises(ValueError, match="decision 1 = 2"):
    model_costs(space, [0, 2, 0], num_classes=10)


@pytest.mark.parametrize("pop, data, shape", [(1, -1, (1, 4)), (2, -1, (2, 2)), (-1, 1, (4, 1)), (4, 1, (4, 1))])
def test_make_mesh_shapes(pop, data, shape):
  mesh = make_mesh(pop, data)
  assert mesh.axis_names == ("pop", "data") and tuple(mesh.shape.values()) == shape


@pytest.mark.parametrize("pop, data, match", [
    (3, -1, "pop x data = 3 x 1 does not use the 4 available devices"),
    (8, -1, "pop x data = 8 x 0"),
    (2, 3, "pop x data = 2 x 3"),
    (-1, -1, "at most one of pop/data may be -1"),
    (0, -1, "pop must be a positive int or -1, got 0"),
    (-1, 0, "data must be a positive int or -1, got 0"),
    (-2, 2, "pop must be a positive int or -1, got -2"),
    (2.0, 2, "pop must be a positive int or -1, got 2.0"),
])
def test_make_mesh_rejects_impossible_shapes(pop, data, match):
  assert jax.device_count() == 4
  with pytest.raises(ValueError, match=f"^mesh: {match}"):
    make_mesh(pop, data)
