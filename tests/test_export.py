"""Student export: folder layout, exact round trip, the serialized jax.export, and errors."""
from __future__ import annotations

import json
import shutil
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jdanas
from jdanas.export import Student, export_student, load_student
from jdanas.spaces import get_space
from jdanas.teachers import evaluate
from jdanas.train import batching

SPACE_KWARGS = {"depth_choices": (1, 2), "widths": (4, 8, 8), "stem": 4}
ARCH = "212"


def _init(module, enc, input_shape, seed):
  """Random variables in the shapes of ``module.init`` (``eval_shape``: compiling a real init is
  slow on CPU), with random BN statistics so that a restore that dropped them would be caught."""
  abstract = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1,) + input_shape),
                                                jnp.asarray(enc), train=False))
  rng = np.random.default_rng(seed)

  def draw(path, a):
    name = jax.tree_util.keystr(path)
    if "var" in name or "scale" in name:
      value = rng.uniform(0.5, 1.5, a.shape)
    elif "kernel" in name:
      value = rng.normal(0.0, 1.0 / np.sqrt(np.prod(a.shape[:-1])), a.shape)
    else:  # biases and running means
      value = rng.normal(0.0, 0.2, a.shape)
    return value.astype(a.dtype)

  return jax.tree_util.tree_map_with_path(draw, abstract)


def _reference(module, variables, enc, mean, std):
  return jax.jit(lambda v, x: module.apply(v, batching.normalize(x, mean, std), jnp.asarray(enc),
                                           train=False)["logits"])


@pytest.fixture(scope="module")
def original(tiny_data):
  space = get_space("s1_resnet", **SPACE_KWARGS)
  enc = space.encode(ARCH)
  module = space.build(space.signature(enc), tiny_data.num_classes)
  input_shape = tuple(tiny_data.train.x.shape[1:])
  return dict(space=space, enc=enc, module=module, variables=_init(module, enc, input_shape, 0),
              input_shape=input_shape, mean=tiny_data.mean, std=tiny_data.std)


@pytest.fixture(scope="module")
def exported_path(original, tiny_data, tmp_path_factory):
  o = original
  return export_student(tmp_path_factory.mktemp("export") / "student", space=o["space"],
                        space_kwargs=SPACE_KWARGS, space_name="s1_resnet", encoding=o["enc"],
                        variables=o["variables"], num_classes=tiny_data.num_classes,
                        input_shape=o["input_shape"], mean=o["mean"], std=o["std"],
                        meta={"params": np.int64(1234), "flops": np.float32(5.5e4), "val_accuracy": float("nan"),
                              "note": "tiny"})


@pytest.fixture(scope="module")
def student(exported_path):
  return load_student(exported_path)


def test_layout_and_arch_json(exported_path, original):
  assert (exported_path / "variables").is_dir() and (exported_path / "forward.jax").is_file()
  info = json.loads((exported_path / "arch.json").read_text())
  assert info["space_name"] == "s1_resnet" and info["arch"] == ARCH
  assert info["space_kwargs"] == {"depth_choices": [1, 2], "widths": [4, 8, 8], "stem": 4}
  assert info["encoding"] == original["enc"].tolist()
  assert info["num_classes"] == 4 and info["input_shape"] == [8, 8, 3]
  assert info["mean"] == list(original["mean"]) and info["std"] == list(original["std"])
  assert (info["params"], info["flops"]) == (1234, 5.5e4)
  assert info["meta"]["val_accuracy"] is None and info["meta"]["note"] == "tiny"
  assert info["versions"]["jax"] == jax.__version__ and info["versions"]["jdanas"] == jdanas.__version__
  assert "cpu" in info["forward"]["platforms"]


def test_load_restores_exactly(student, original):
  assert isinstance(student, Student)
  assert student.arch == ARCH and student.space == original["space"] and student.module == original["module"]
  assert student.encoding.tolist() == original["enc"].tolist()
  assert (student.num_classes, student.input_shape) == (4, (8, 8, 3))
  assert student.mean == tuple(original["mean"]) and student.std == tuple(original["std"])
  assert student.meta["params"] == 1234
  assert jax.tree.structure(student.variables) == jax.tree.structure(original["variables"])
  for a, b in zip(jax.tree.leaves(original["variables"]), jax.tree.leaves(student.variables)):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
  assert jdanas.load_student is load_student


def test_logits_match_original_exactly(student, original, tiny_data):
  o = original
  x = tiny_data.val.x[:16]
  expected = np.asarray(_reference(o["module"], o["variables"], o["enc"], o["mean"], o["std"])(o["variables"], x))
  got = np.asarray(student.logits(x))
  assert got.shape == (16, 4) and np.all(np.isfinite(got))
  np.testing.assert_array_equal(got, expected)
  # Raw float pixel values are accepted too.
  np.testing.assert_array_equal(np.asarray(student.logits(x.astype(np.float32))), expected)


def test_exported_call_symbolic_batch(student, original, tiny_data):
  o = original
  exp = student.exported()
  assert isinstance(exp, jax.export.Exported)
  (aval,) = exp.in_avals
  assert aval.dtype == np.uint8 and aval.shape[1:] == (8, 8, 3) and not isinstance(aval.shape[0], int)
  reference = _reference(o["module"], o["variables"], o["enc"], o["mean"], o["std"])
  for n in (1, 7):
    x = tiny_data.val.x[:n]
    got = np.asarray(exp.call(x))
    assert got.shape == (n, 4)
    np.testing.assert_allclose(got, np.asarray(reference(o["variables"], x)), rtol=1e-5, atol=1e-6)
  # A fresh deserialization of the file alone (what a deployer does) gives the same function.
  raw = jax.export.deserialize(bytearray((student.path / "forward.jax").read_bytes()))
  np.testing.assert_array_equal(np.asarray(raw.call(tiny_data.val.x[:7])), np.asarray(exp.call(tiny_data.val.x[:7])))


def test_accuracy_equals_teachers_evaluate(student, original, tiny_data):
  o = original
  split = tiny_data.val
  expected = evaluate(o["module"], o["variables"], split, o["mean"], o["std"], enc=jnp.asarray(o["enc"]))
  pred = np.argmax(np.asarray(student.logits(split.x)), -1)
  assert float((pred == split.y).mean()) == expected


def test_masked_space_round_trip(tmp_path, tiny_data):
  """A masked space: one superset module, the cell is selected by the baked-in encoding."""
  kwargs = {"channels": 4, "num_cells": 1}
  space = get_space("nb201_masked", **kwargs)
  enc = space.encode("|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|nor_conv_1x1~1|skip_connect~2|")
  module = space.build(space.signature(enc), 4)
  variables = _init(module, enc, (8, 8, 3), 1)
  path = export_student(tmp_path / "cell", space=space, space_kwargs=kwargs, space_name="nb201_masked",
                        encoding=enc, variables=variables, num_classes=4, input_shape=(8, 8, 3),
                        mean=tiny_data.mean, std=tiny_data.std)
  student = load_student(path)
  assert student.space == space and student.arch == space.decode(enc)
  x = tiny_data.val.x[:5]
  expected = np.asarray(_reference(module, variables, enc, tiny_data.mean, tiny_data.std)(variables, x))
  np.testing.assert_array_equal(np.asarray(student.logits(x)), expected)
  np.testing.assert_allclose(np.asarray(student.exported().call(x)), expected, rtol=1e-5, atol=1e-6)


def test_export_rejects_mismatched_space(original, tmp_path):
  o = original
  with pytest.raises(ValueError, match="^space_kwargs: "):
    export_student(tmp_path / "bad", space=o["space"], space_kwargs={"stem": 4}, space_name="s1_resnet",
                   encoding=o["enc"], variables=o["variables"], num_classes=4, input_shape=(8, 8, 3),
                   mean=o["mean"], std=o["std"])


def test_export_over_existing_folder(exported_path, original, tmp_path):
  path = shutil.copytree(exported_path, tmp_path / "again")
  o = original
  export_student(path, space=o["space"], space_kwargs=SPACE_KWARGS, space_name="s1_resnet", encoding=o["enc"],
                 variables=o["variables"], num_classes=4, input_shape=(8, 8, 3), mean=o["mean"], std=o["std"],
                 meta={"note": "second"})
  student = load_student(path)
  assert student.meta == {"note": "second"} and not (path / "arch.json.tmp").exists()
  for a, b in zip(jax.tree.leaves(o["variables"]), jax.tree.leaves(student.variables)):
    assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_load_errors(exported_path, tmp_path):
  with pytest.raises(FileNotFoundError, match=r"^student.path: .*missing is not a folder$"):
    load_student(tmp_path / "missing")
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="^student.path: no arch.json in"):
    load_student(tmp_path / "empty")

  def copy(name):
    return shutil.copytree(exported_path, tmp_path / name)

  bad = copy("no_forward")
  (bad / "forward.jax").unlink()
  with pytest.raises(FileNotFoundError, match="^student.path: no forward.jax in"):
    load_student(bad)

  bad = copy("bad_json")
  (bad / "arch.json").write_text("{not json")
  with pytest.raises(ValueError, match=r"^student.path: .*arch.json is corrupt"):
    load_student(bad)

  bad = copy("no_key")
  info = json.loads((bad / "arch.json").read_text())
  del info["encoding"]
  (bad / "arch.json").write_text(json.dumps(info))
  with pytest.raises(ValueError, match=r"arch.json is corrupt \(missing key 'encoding'\)"):
    load_student(bad)

  bad = copy("bad_forward")
  (bad / "forward.jax").write_bytes(b"garbage")
  with pytest.raises(ValueError, match=r"^student.path: .*forward.jax is not a serialized jax.export"):
    load_student(bad).exported()

  bad = copy("unknown_space")
  info = json.loads((bad / "arch.json").read_text())
  info["space_name"] = "nope"
  (bad / "arch.json").write_text(json.dumps(info))
  with pytest.raises(ValueError, match=r"^student.path: .*arch.json: space: unknown name 'nope'"):
    load_student(bad)

  bad = copy("other_arch")  # a checkpoint whose shapes do not fit the recorded architecture
  info = json.loads((bad / "arch.json").read_text())
  info["encoding"] = [0, 0, 0]
  (bad / "arch.json").write_text(json.dumps(info))
  with pytest.raises(ValueError, match=r"^student.path: cannot restore .*variables for arch '111'"):
    load_student(bad)


@pytest.mark.parametrize("make, match", [
    (lambda x: x[0], r"^images: expected raw pixels \[B, 8, 8, 3\], got shape \(8, 8, 3\) \(the batch axis is missing"),
    (lambda x: x[..., 0], r"^images: expected raw pixels \[B, 8, 8, 3\], got shape \(4, 8, 8\)$"),
    (lambda x: x.reshape(4, -1), r"^images: expected raw pixels"),
    (lambda x: x.astype(np.float32) / 255.0, r"^images: raw pixel values 0..255 expected, these reach only 0.9"),
    (lambda x: x.astype(np.float32) * 16 / 255.0, r"sklearn's 0..16 digits"),
    (lambda x: x.astype(np.float32) - 300, r"^images: raw pixel values must lie in 0..255"),
    (lambda x: x.astype(bool), r"^images: expected .* as uint8 or real numbers, got bool"),
])
def test_logits_check_images_at_the_entry(student, tiny_data, make, match):
  with pytest.raises(ValueError, match=match) as err:
    student.logits(make(tiny_data.val.x[:4]))
  assert "\n" not in str(err.value)


def test_exported_call_checks_images_at_the_entry(student, tiny_data):
  x = tiny_data.val.x[:4]
  with pytest.raises(ValueError, match=r"^images: expected raw pixels \[B, 8, 8, 3\] of dtype uint8, got float32"):
    student.exported().call(x.astype(np.float32))
  with pytest.raises(ValueError, match=r"the batch axis is missing"):
    student.exported().call(x[0])
  assert np.asarray(student.exported().call(x)).shape == (4, 4)


def test_uint8_images_in_a_tiny_range_warn(student, tiny_data):
  """sklearn's 0..16 digits cast to uint8 pass the dtype check: both entry points warn, naming the
  range and the fix, instead of silently giving near-chance accuracy."""
  digits = (tiny_data.val.x[:4].astype(np.float32) * 16 / 255).round().astype(np.uint8)
  assert digits.max() <= 16
  for call in (student.logits, student.exported().call):
    with pytest.warns(UserWarning, match=rf"^images: these uint8 pixels use only 0..{digits.max()} of 0..255, but "
                      r"the student was trained on raw 0..255 pixels .*rescale") as record:
      out = call(digits)
    assert np.asarray(out).shape == (4, 4)
    assert record[0].filename == __file__  # points at the caller's line, not jdanas/export.py


def test_normal_uint8_images_do_not_warn(student, tiny_data):
  x = tiny_data.val.x[:4]
  assert x.dtype == np.uint8 and x.max() > 32
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    student.logits(x)
    student.exported().call(x)
