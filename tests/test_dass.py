"""DaSS space, parameter remapping and functional embeddings (fast)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jdanas.meta import MODES, embed_exact, embed_students, embed_teacher, noise_input, remap
from jdanas.spaces import DassSpace, get_space
from jdanas.spaces.dass import encoding_features

SPACE = DassSpace(stage_widths=(4, 8, 8, 16), max_depth=2, multipliers=(0.5, 0.75, 1.0), image_size=8)
K = 5


def random_tree(key, shapes):
  leaves, tree = jax.tree.flatten(shapes)
  keys = jax.random.split(key, len(leaves))
  # positive values keep BN variances valid; distinct values make any wrong slice visible
  return jax.tree.unflatten(tree, [jax.random.uniform(k, l.shape, jnp.float32, 0.5, 1.5) for k, l in zip(keys, leaves)])


@pytest.fixture(scope="module")
def teacher_vars():
  module = SPACE.teacher(K)
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), train=False))
  return random_tree(jax.random.key(1), shapes)


def student_shapes(enc):
  module = SPACE.build(SPACE.signature(enc), K)
  return jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), train=False))


def students(n=12, seed=0):
  encs = np.asarray(jax.vmap(SPACE.sample)(jax.random.split(jax.random.key(seed), n)))
  return encs


# ---- space ------------------------------------------------------------------------------------------

def test_default_space_is_the_papers():
  space = get_space("dass_resnet")
  assert space.num_choices == (5,) * 4 + (9,) * 19  # 4 depths + 20 block slots less the pinned last one
  assert space.decode(space.teacher_encoding) == "32.32.32.32.32|64.64.64.64.64|128.128.128.128.128|256.256.256.256.256"
  assert space.multipliers[1] == 0.5625 and space.image_size == 64
  enc = space.encode("16.18|64|72.128.96|144.256")
  assert space.decode(enc) == "16.18|64|72.128.96|144.256"
  assert space.widths(enc) == ((16, 18), (64,), (72, 128, 96), (144, 256))


def test_pinned_last_block_and_bad_names():
  enc = SPACE.sample(jax.random.key(3))
  assert all(w[-1] == 16 for w in [SPACE.widths(e)[-1] for e in students(12)])  # pinned full width
  free = DassSpace(stage_widths=(4, 8, 8, 16), max_depth=2, multipliers=(0.5, 1.0), pin_last=False)
  assert free.num_decisions == 4 + 8 and {free.widths(e)[-1][-1] for e in
                                          np.asarray(jax.vmap(free.sample)(jax.random.split(jax.random.key(0), 24)))} == {8, 16}
  for bad, match in [("2|4|8", "4 stages"), ("2|4|8|8", "last block"), ("1|4|8|16", "width 1"),
                     ("2.2.2|4|8|16", "3 blocks"), ("a|4|8|16", "block widths")]:
    with pytest.raises(ValueError, match=match):
      SPACE.encode(bad)
  with pytest.raises(ValueError, match="whole channel"):
    DassSpace(stage_widths=(5, 8, 8, 16), multipliers=(0.5, 1.0))
  assert SPACE.check(enc).shape == (SPACE.num_decisions,)


def test_encoding_features_one_hot_layout():
  f = jax.vmap(lambda e: encoding_features(SPACE, e))(jnp.asarray(students(16)))
  s, b, m = 4, 2, 3
  assert f.shape == (16, s * b + s * b * (m + 1))
  depth, slots = f[:, :s * b].reshape(16, s, b), f[:, s * b:].reshape(16, s, b, m + 1)
  np.testing.assert_array_equal(depth.sum(-1), 1)
  np.testing.assert_array_equal(slots.sum(-1), 1)
  for row, enc in zip(np.asarray(slots), students(16)):
    widths = SPACE.widths(enc)
    for st in range(s):
      for blk in range(b):
        absent = blk >= len(widths[st])
        assert row[st, blk, m] == absent
        if not absent:  # the multiplier of the block's width
          assert SPACE.multipliers[int(np.argmax(row[st, blk]))] * SPACE.stage_widths[st] == widths[st][blk]


# ---- remapping --------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_teacher_remaps_to_itself_exactly(teacher_vars, mode):
  out = remap(teacher_vars, teacher_vars, mode)
  assert jax.tree.structure(out) == jax.tree.structure(teacher_vars)
  for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(teacher_vars)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", MODES)
def test_random_students_get_their_own_shapes(teacher_vars, mode):
  for enc in students(8):
    shapes = student_shapes(enc)
    out = remap(teacher_vars, shapes, mode)
    assert jax.tree.structure(out) == jax.tree.structure(shapes)
    assert [a.shape for a in jax.tree.leaves(out)] == [a.shape for a in jax.tree.leaves(shapes)]


def test_modes_take_the_documented_slices(teacher_vars):
  enc = SPACE.encode("2|4|4.6|16")  # stage 3: 2 blocks of widths 4 and 6 out of 8
  shapes = student_shapes(enc)
  t = teacher_vars["params"]
  first = remap(teacher_vars, shapes, "copy_paste_first")["params"]
  np.testing.assert_array_equal(first["stem_conv"]["kernel"], t["stem_conv"]["kernel"][..., :2])
  np.testing.assert_array_equal(first["stage3_block1"]["conv1"]["kernel"], t["stage3_block1"]["conv1"]["kernel"][:, :, :4, :6])
  np.testing.assert_array_equal(first["classifier"]["kernel"], t["classifier"]["kernel"])
  last = remap(teacher_vars, shapes, "copy_paste_last")
  # stage 2 has one block out of the teacher's two: the last one, last channels
  np.testing.assert_array_equal(last["params"]["stage2_block0"]["conv2"]["kernel"],
                                t["stage2_block1"]["conv2"]["kernel"][:, :, 4:, 4:])
  np.testing.assert_array_equal(last["batch_stats"]["stage2_block0"]["bn1"]["var"],
                                teacher_vars["batch_stats"]["stage2_block1"]["bn1"]["var"][4:])
  uni = remap(teacher_vars, shapes, "uniform")["params"]
  np.testing.assert_array_equal(uni["stage3_block0"]["bn2"]["scale"], t["stage3_block0"]["bn2"]["scale"][::2])
  with pytest.raises(ValueError, match="mode must be one of"):
    remap(teacher_vars, shapes, "random")
  bigger = jax.tree.map(lambda a: jax.ShapeDtypeStruct(tuple(2 * d for d in a.shape), a.dtype), shapes)
  with pytest.raises(ValueError, match="larger than the teacher"):
    remap(teacher_vars, bigger)


# ---- masked network and embeddings --------------------------------------------------------------------

def test_masked_network_equals_the_remapped_students(teacher_vars):
  x = jax.random.normal(jax.random.key(5), (3, 8, 8, 3))
  masked = SPACE.masked_module(K)
  for enc in students(3, seed=2):
    student = SPACE.build(SPACE.signature(enc), K)
    exact = student.apply(remap(teacher_vars, student_shapes(enc)), x, train=False)
    got = masked.apply(teacher_vars, x, jnp.asarray(enc), train=False)
    np.testing.assert_allclose(got["logits"], exact["logits"], rtol=2e-5, atol=2e-5)
    for g, e in zip(got["stages"], exact["stages"]):
      c = e.shape[-1]
      np.testing.assert_allclose(g[..., :c], e, rtol=2e-5, atol=2e-5)
      np.testing.assert_array_equal(g[..., c:], 0)  # the student's unused channels are exactly zero


def test_batched_embeddings_equal_exact_ones_and_compile_once(teacher_vars):
  noise = noise_input(jax.random.key(0), SPACE, num_noise=2)
  encs = students(3, seed=4)
  maps = embed_students(SPACE, teacher_vars, encs, noise, num_classes=K, chunk=2)
  assert maps.shape == (3, 1, 1, 16)
  for enc, m in zip(encs, maps):
    np.testing.assert_allclose(m, embed_exact(SPACE, teacher_vars, enc, noise, num_classes=K), rtol=2e-5, atol=2e-5)
  from jdanas.runtime import CompileCounter
  with CompileCounter() as compiled:
    embed_students(SPACE, teacher_vars, students(3, seed=9), noise, num_classes=K, chunk=2)
  assert not [n for n in compiled.names if "_masked_maps" in n], compiled.names  # same shapes: no new program
  np.testing.assert_allclose(embed_teacher(SPACE, teacher_vars, noise, num_classes=K),
                             embed_exact(SPACE, teacher_vars, SPACE.teacher_encoding, noise, num_classes=K), rtol=1e-6)
  assert not np.allclose(maps[0], maps[1])


# ---- predictor and Meta-SGD ---------------------------------------------------------------------------

from jdanas.meta import predictor as P  # noqa: E402


def test_inner_step_and_outer_gradient_match_a_hand_computed_two_parameter_case():
  xs, ys, xq, yq = 1.5, 0.7, -0.8, 2.0
  params, alphas = {"w": 0.3, "b": -0.2}, {"w": 0.05, "b": 0.1}
  support = lambda p: (p["w"] * xs + p["b"] - ys) ** 2  # noqa: E731
  query = lambda p: (p["w"] * xq + p["b"] - yq) ** 2  # noqa: E731
  w, b, aw, ab = params["w"], params["b"], alphas["w"], alphas["b"]
  r = w * xs + b - ys
  gw, gb = 2 * r * xs, 2 * r
  w1, b1 = w - aw * gw, b - ab * gb
  adapted = P.inner_step(support, params, alphas)
  np.testing.assert_allclose([adapted["w"], adapted["b"]], [w1, b1], rtol=1e-6)
  rq = w1 * xq + b1 - yq
  second = {"w": 2 * rq * (xq * (1 - 2 * aw * xs ** 2) - 2 * ab * xs),
            "b": 2 * rq * (xq * (-2 * aw * xs) + (1 - 2 * ab))}
  first = {"w": 2 * rq * xq, "b": 2 * rq}
  d_alpha = {"w": 2 * rq * xq * (-gw), "b": 2 * rq * (-gb)}
  for first_order, expect in ((False, second), (True, first)):
    gp, ga = jax.grad(lambda p, a: query(P.inner_step(support, p, a, first_order=first_order)),
                      argnums=(0, 1))(params, alphas)
    np.testing.assert_allclose([gp["w"], gp["b"]], [expect["w"], expect["b"]], rtol=1e-5)
    np.testing.assert_allclose([ga["w"], ga["b"]], [d_alpha["w"], d_alpha["b"]], rtol=1e-5)


def synthetic_tasks(num_tasks=3, n=6, f=7, seed=0):
  rng = np.random.default_rng(seed)
  mk = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32)  # noqa: E731
  return P.Task(maps=mk(num_tasks, n, 2, 2, 16), arch=mk(num_tasks, n, f), labels=60 + 10 * mk(num_tasks, n),
                teacher_map=mk(num_tasks, 2, 2, 16), teacher_arch=mk(num_tasks, f),
                teacher_label=jnp.full((num_tasks,), 75.0))


@pytest.mark.parametrize("target", P.TARGETS)
def test_predictor_shapes_and_meta_step_is_deterministic_and_compiles_once(target):
  model = P.DassPredictor(hidden_channels=8, out_channels=16, h_dim=8)
  config = P.MetaConfig(target=target)
  tasks = synthetic_tasks()
  one = jax.tree.map(lambda a: a[0], tasks)
  state = P.meta_init(jax.random.key(0), model, one, config)
  assert P.predict(model, state.params, one, target=target).shape == (6,)
  queries = P.sample_queries(jax.random.key(1), tasks, 4)
  assert queries.maps.shape == (3, 4, 2, 2, 16) and queries.labels.shape == (3, 4)
  s1, loss1 = P.meta_step(model, config, state, queries)
  s2, loss2 = P.meta_step(model, config, state, queries)
  assert np.isfinite(float(loss1)) and float(loss1) == float(loss2)
  for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s2)):
    np.testing.assert_array_equal(a, b)
  from jdanas.runtime import CompileCounter
  with CompileCounter() as compiled:
    s3, loss3 = P.meta_step(model, config, s1, P.sample_queries(jax.random.key(2), tasks, 4))
  assert not [n for n in compiled.names if "meta_step" in n], compiled.names
  assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(s1.alphas), jax.tree.leaves(state.alphas)))


def test_meta_training_fits_its_tasks_and_keeps_the_best_validation_state():
  model = P.DassPredictor(hidden_channels=8, out_channels=16, h_dim=16)
  tasks = synthetic_tasks(num_tasks=4, n=12, seed=3)
  # labels that depend on the architecture vector: a learnable signal
  labels = 60 + 5 * tasks.arch[..., 0] + 3 * tasks.arch[..., 1]
  tasks = tasks._replace(labels=labels)
  val = [jax.tree.map(lambda a: a[i], tasks) for i in range(2)]
  config = P.MetaConfig(learning_rate=3e-3, target="relative")
  state, hist = P.meta_train(jax.random.key(0), model, config, tasks, val, episodes=60, num_queries=8,
                             eval_every=20)
  assert hist["episode"] == [20, 40, 60]
  assert hist["loss"][-1] < hist["loss"][0]
  rho = P.spearman(model, state.params, state.alphas, val, config)
  assert np.mean(rho) == max(hist["val_spearman"]) and np.mean(rho) > 0.5
  with pytest.raises(ValueError, match="num_queries"):
    P.meta_train(jax.random.key(0), model, config, tasks, val, episodes=1, num_queries=13)


# ---- meta-dataset builder -----------------------------------------------------------------------------

from jdanas.meta import tasks as T  # noqa: E402


def test_class_subsets_and_subset():
  assert T.class_subsets(10, 3, 3, seed=0) == T.class_subsets(10, 3, 3, seed=0)
  subsets = T.class_subsets(10, 3, 3, seed=1)
  assert len({c for s in subsets for c in s}) == 9  # disjoint while the classes last
  assert len(T.class_subsets(10, 5, 4)) == 5
  with pytest.raises(ValueError, match="classes_per_task"):
    T.class_subsets(10, 2, 11)
  from jdanas.data.synthetic import synthetic_dataset
  data = synthetic_dataset(num_classes=6)
  sub = T.subset(data, (4, 1))
  assert sub.num_classes == 2 and set(np.unique(sub.train.y)) == {0, 1}
  np.testing.assert_array_equal(sub.train.x[sub.train.y == 0], data.train.x[data.train.y == 4])


def fake_task(key, space, data, recipe, progress=False):
  """A cheap stand-in for the training inside build_task (the builder's bookkeeping is under test)."""
  v = float(jax.random.uniform(key))
  labels = np.asarray([v, np.nan], np.float32)
  return {"encodings": np.zeros((2, space.num_decisions), np.int32), "labels": labels,
          "label_repeats": labels[None], "curve": np.zeros((0, 2), np.float32), "curve_steps": np.zeros(0, np.int32),
          "maps": np.zeros((2, 1, 1, 4), np.float32), "arch": np.zeros((2, 3), np.float32),
          "teacher_map": np.zeros((1, 1, 4), np.float32), "teacher_arch": np.zeros(3, np.float32),
          "teacher_label": np.float32(data.num_classes), "teacher_encoding": np.zeros(space.num_decisions, np.int32),
          "seconds": np.float64(0.0)}


def test_builder_resumes_after_an_interruption_and_refuses_other_settings(tmp_path, monkeypatch):
  from jdanas.data.synthetic import synthetic_dataset
  monkeypatch.setattr(T, "build_task", fake_task)
  data = synthetic_dataset(num_classes=6)
  tasks = T.class_subsets(6, 3, 2)
  full = T.build_meta_dataset(jax.random.key(0), SPACE, data, tasks, tmp_path / "a")

  class Stop(Exception):
    pass

  def stop_after_first(i, entry):
    if i == 0:
      raise Stop
  with pytest.raises(Stop):
    T.build_meta_dataset(jax.random.key(0), SPACE, data, tasks, tmp_path / "b", on_task=stop_after_first)
  with pytest.raises(ValueError, match="not finished"):
    T.load_meta_dataset(tmp_path / "b")
  built = []
  resumed = T.build_meta_dataset(jax.random.key(0), SPACE, data, tasks, tmp_path / "b",
                                 on_task=lambda i, e: built.append(i))
  assert built == [1, 2] and resumed["tasks"] == full["tasks"]
  assert all(e["label_spread"] == 0.0 and "reliability" not in e for e in full["tasks"].values())  # one repeat
  a, b = T.load_meta_dataset(tmp_path / "a"), T.load_meta_dataset(tmp_path / "b")
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x.labels, y.labels)
    assert x.labels.shape == (1,)  # the failed (NaN) student is dropped
  assert not list((tmp_path / "b").glob("*.tmp*"))
  with pytest.raises(ValueError, match="other settings"):
    T.build_meta_dataset(jax.random.key(1), SPACE, data, tasks, tmp_path / "b")
  stacked = T.stack_tasks(a)
  assert stacked.labels.shape == (3, 1) and stacked.teacher_label.shape == (3,)


@pytest.mark.slow
def test_real_build_is_deterministic_and_masked_training_equals_exact(tmp_path):
  """Two builds with the same key give the same labels; the masked one-program student training
  (copy_paste_first) gives the labels of exact per-student training from remapped variables."""
  from jdanas.data.synthetic import synthetic_dataset
  from jdanas.train.recipe import Recipe
  space = DassSpace(stage_widths=(4, 8, 8, 16), max_depth=1, multipliers=(0.5, 1.0), image_size=8)
  data = synthetic_dataset(num_train=128, num_val=48, num_test=16, num_classes=6, image_size=8)
  recipe = T.TaskRecipe(teacher=Recipe(steps=20, batch_size=16, augment=False),
                        student=Recipe(steps=10, batch_size=16, augment=False), num_students=3, num_noise=2)
  tasks = T.class_subsets(6, 1, 3)
  T.build_meta_dataset(jax.random.key(0), space, data, tasks, tmp_path / "a", recipe)
  T.build_meta_dataset(jax.random.key(0), space, data, tasks, tmp_path / "b", recipe)
  (a,), (b,) = T.load_meta_dataset(tmp_path / "a"), T.load_meta_dataset(tmp_path / "b")
  np.testing.assert_array_equal(a.labels, b.labels)
  np.testing.assert_array_equal(a.maps, b.maps)
  assert a.maps.shape == (3, 1, 1, 16) and 0 < float(a.teacher_label) <= 100
  # exact per-student training from remapped variables: the same accuracies
  with np.load(tmp_path / "a" / "task_000.npz") as z:
    encs, labels = z["encodings"], z["labels"]
  sub = T.subset(data, tasks[0])
  key_teacher, _, key_train = jax.random.split(jax.random.fold_in(jax.random.key(0), 0), 3)
  from jdanas.distill.losses import KD_PRESETS
  from jdanas.teachers import Teacher
  from jdanas.train.population import PopulationTrainer
  t_res = PopulationTrainer(space, sub, recipe=dataclasses_replace(recipe.teacher, loss=KD_PRESETS["ce"]),
                            strategy="loop").train(key_teacher, [space.teacher_encoding])
  t_vars = jax.device_get(t_res.variables(0))
  stored = T.load_teacher_variables(tmp_path / "a" / "task_000.npz")
  for x, y in zip(jax.tree.leaves(stored), jax.tree.leaves(t_vars)):
    np.testing.assert_array_equal(x, y)
  teacher = Teacher("t", space.teacher(3), t_vars, 3, sub.image_shape)
  init = [remap(t_vars, jax.eval_shape(lambda m=space.build(space.signature(e), 3): m.init(
      jax.random.key(0), jnp.zeros((1, 8, 8, 3)), train=False))) for e in encs]
  exact = PopulationTrainer(space, sub, recipe=dataclasses_replace(recipe.student, loss=KD_PRESETS["dass"]),
                            teacher=teacher, strategy="loop").train(key_train, list(encs), init_variables=init)
  np.testing.assert_allclose(100 * exact.accuracy, labels, atol=1e-4)


def dataclasses_replace(obj, **kw):
  import dataclasses
  return dataclasses.replace(obj, **kw)


def test_predictor_round_trips_and_ranks_after_adaptation(tmp_path):
  model = P.DassPredictor(hidden_channels=4, out_channels=8, h_dim=8)
  config = P.MetaConfig(target="relative")
  tasks = synthetic_tasks()
  one = jax.tree.map(lambda a: a[0], tasks)
  state, _ = P.meta_step(model, config, P.meta_init(jax.random.key(0), model, one, config),
                         P.sample_queries(jax.random.key(1), tasks, 4))
  P.save_predictor(tmp_path / "p", model, config, state, meta={"tasks": 3})
  model2, config2, params, alphas, meta = P.load_predictor(tmp_path / "p", one)
  assert model2 == model and config2 == config and meta == {"tasks": 3}
  for a, b in zip(jax.tree.leaves((params, alphas)), jax.tree.leaves((state.params, state.alphas))):
    np.testing.assert_array_equal(a, b)
  order, pred = P.rank_candidates(model2, config2, params, alphas, one)
  assert sorted(order.tolist()) == list(range(6)) and np.all(np.diff(pred[order]) <= 0)
  _, unadapted = P.rank_candidates(model2, config2, params, alphas, one, adapt_to_teacher=False)
  assert not np.allclose(pred, unadapted)  # the one-shot teacher adaptation changes the predictions
  with pytest.raises(FileNotFoundError, match="predictor.json"):
    P.load_predictor(tmp_path / "nothing", one)
