"""The population engine: strategies agree, compile counts, NaN isolation, sharding, determinism."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jdanas.distill import KD_PRESETS
from jdanas.parallel import make_mesh
from jdanas.spaces import get_space
from jdanas.train import PopulationTrainer, Recipe, TrainingPrograms, train_population
from jdanas.train import batching

RECIPE = Recipe(steps=4, batch_size=16, loss=KD_PRESETS["ce"], learning_rate=0.1, eval_batch_size=16)
CELLS = ["|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
         "|nor_conv_1x1~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_3x3~1|nor_conv_1x1~2|",
         "|skip_connect~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|none~0|skip_connect~1|nor_conv_3x3~2|"]


@pytest.fixture(scope="module")
def cell_space():
  return get_space("nb201_masked", channels=4, num_cells=1)


@pytest.fixture(scope="module")
def depth_space():
  return get_space("s1_resnet", depth_choices=(1, 2), widths=(4, 8, 8), stem=4)


def _params(result, i):
  return jax.tree.leaves(jax.device_get(result.variables(i)))


def _assert_same_students(a, b, rtol=1e-5, atol=1e-6):
  np.testing.assert_allclose(a.loss, b.loss, rtol=rtol, atol=atol)
  np.testing.assert_allclose(a.accuracy, b.accuracy, atol=1e-6)
  for i in range(len(a.loss)):
    for pa, pb in zip(_params(a, i), _params(b, i)):
      np.testing.assert_allclose(pa, pb, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("strategy", ["unroll", "vmap"])
def test_strategies_equal_per_student_training(strategy, depth_space, tiny_data, key):
  encs = [depth_space.encode(n) for n in ("111", "111", "111")]
  loop = PopulationTrainer(depth_space, tiny_data, recipe=RECIPE, strategy="loop").train(key, encs)
  other = PopulationTrainer(depth_space, tiny_data, recipe=RECIPE, strategy=strategy).train(key, encs)
  assert np.all(np.isfinite(loop.accuracy))
  _assert_same_students(loop, other)


@pytest.mark.slow  # ~20 s
def test_masked_cells_match_per_cell_modules(tiny_data, key):
  masked = get_space("nb201_masked", channels=4, num_cells=1)
  per_cell = get_space("nb201", channels=4, num_cells=1)
  encs = [masked.encode(c) for c in CELLS[:2]]
  a = PopulationTrainer(masked, tiny_data, recipe=RECIPE, strategy="unroll").train(key, encs)
  b = PopulationTrainer(per_cell, tiny_data, recipe=RECIPE, strategy="loop").train(key, encs)
  np.testing.assert_allclose(a.loss, b.loss, rtol=1e-5)
  np.testing.assert_allclose(a.accuracy, b.accuracy)


@pytest.mark.slow  # ~19 s
def test_specialised_masked_cells_train_like_the_masked_program(cell_space, tiny_data, key):
  encs = [cell_space.encode(c) for c in CELLS[:2]] + [cell_space.encode(CELLS[0])]
  masked = PopulationTrainer(cell_space, tiny_data, recipe=RECIPE, strategy="loop", specialize=False)
  static = PopulationTrainer(cell_space, tiny_data, recipe=RECIPE, strategy="loop", specialize=True)
  a, b = masked.train(key, encs), static.train(key, encs)
  assert a.num_compilations == 1  # one masked program serves every cell
  assert b.num_compilations == 2  # one specialised program per distinct cell
  assert {type(g.signature).__name__ for g in b.groups} == {"Static"}
  assert np.all(np.isfinite(a.accuracy))
  # Same initial parameters and same updates: only unselected ops' BN statistics may differ.
  np.testing.assert_allclose(a.loss, b.loss, rtol=1e-5)
  np.testing.assert_allclose(a.accuracy, b.accuracy)
  for i in range(len(encs)):
    pa, pb = jax.device_get(a.variables(i)["params"]), jax.device_get(b.variables(i)["params"])
    assert jax.tree.structure(pa) == jax.tree.structure(pb)
    for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
      np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


def test_specialize_auto_rule_and_errors(cell_space, depth_space, tiny_data):
  import dataclasses
  from jdanas import lowering as lowering_lib
  from jdanas.train.population import masked_flops
  shape = tuple(tiny_data.train.x.shape[1:])
  flops = masked_flops(cell_space, tiny_data.num_classes, shape)
  assert flops > 0
  cpu = lowering_lib.resolve("cpu")
  enough = int(np.ceil(cpu.specialize_min_work / (flops * RECIPE.batch_size)))  # steps that reach the work

  def specializes(space, steps, strategy="auto", lowering=cpu):
    recipe = dataclasses.replace(RECIPE, steps=steps)
    return PopulationTrainer(space, tiny_data, recipe=recipe, strategy=strategy, lowering=lowering).specialize

  assert specializes(cell_space, enough)
  assert not specializes(cell_space, enough - 1)
  assert not specializes(cell_space, enough, strategy="unroll")  # explicit strategies keep one program
  assert not specializes(cell_space, enough, lowering="xla")  # accelerators keep the masked program
  assert not specializes(depth_space, 10 ** 9)  # no masked form
  assert not PopulationTrainer(cell_space, tiny_data, recipe=RECIPE).specialize  # 4 steps: one program
  with pytest.raises(ValueError, match="specialize: space 's1_resnet' has no specialised form"):
    PopulationTrainer(depth_space, tiny_data, recipe=RECIPE, specialize=True)
  with pytest.raises(ValueError, match="specialize: 'yes' is not one of"):
    PopulationTrainer(cell_space, tiny_data, recipe=RECIPE, specialize="yes")
  with pytest.raises(ValueError, match="lowering: 'tpu' is not one of"):
    PopulationTrainer(cell_space, tiny_data, recipe=RECIPE, lowering="tpu")


@pytest.mark.parametrize("lowering", ["cpu", pytest.param("xla", marks=pytest.mark.slow),
                                      pytest.param("switch_edges", marks=pytest.mark.slow)])  # ~15-30 s each
def test_training_programs_compile_once_per_group(cell_space, tiny_data, key, lowering):
  """Every init, step and eval program is traced once per group key under each lowering (switch
  edges: a masked training program with forward-only convolutions), and a second population with
  the same groups compiles nothing."""
  from jdanas import lowering as lowering_lib
  if lowering == "switch_edges":
    lowering = lowering_lib.Lowering("switch_edges", conv="forward_only", train_edge="switch")
  encs = [cell_space.encode(c) for c in CELLS[:2]] + [cell_space.encode(CELLS[0])]
  trainer = PopulationTrainer(cell_space, tiny_data, recipe=RECIPE, lowering=lowering)
  first = trainer.train(key, encs)
  assert first.num_compilations == len(first.groups) and np.all(np.isfinite(first.accuracy))
  assert trainer.train(jax.random.fold_in(key, 1), encs[::-1]).num_compilations == 0
  assert set(trainer.trace_counts.values()) == {1}, trainer.trace_counts


def test_unroll_mixes_architectures(depth_space, tiny_data, key):
  encs = [depth_space.encode(n) for n in ("111", "211", "121")]
  loop = PopulationTrainer(depth_space, tiny_data, recipe=RECIPE, strategy="loop").train(key, encs)
  unroll = PopulationTrainer(depth_space, tiny_data, recipe=RECIPE, strategy="unroll").train(key, encs)
  assert len(unroll.groups) == 1 and unroll.num_compilations == 1
  assert len(loop.groups) == 3 and loop.num_compilations == 3
  _assert_same_students(loop, unroll)


def test_compilations_equal_groups_and_are_cached(depth_space, tiny_data, key):
  encs = [depth_space.encode(n) for n in ("111", "111", "211", "121")]
  trainer = PopulationTrainer(depth_space, tiny_data, recipe=RECIPE, strategy="auto")
  first = trainer.train(key, encs)
  keys = {g.key for g in first.groups}
  assert first.num_compilations == len(keys) == 3  # unroll(111 x2), loop(211), loop(121)
  second = trainer.train(jax.random.key(1), encs)
  assert second.num_compilations == 0
  # Each jitted program traced exactly once over both calls.
  assert all(v == 1 for v in trainer.trace_counts.values()), trainer.trace_counts
  assert trainer.trace_counts[("batch",)] == 1


def test_trainers_share_training_programs(depth_space, tiny_data, key):
  """A shared TrainingPrograms compiles each program once for every trainer that uses it, records
  the compile time, and counts the uses of each program (the benchmarks' public hook)."""
  encs = [depth_space.encode(n) for n in ("111", "211")]
  programs = TrainingPrograms()
  a = PopulationTrainer(depth_space, tiny_data, recipe=RECIPE, strategy="loop", programs=programs)
  b = PopulationTrainer(depth_space, tiny_data, recipe=RECIPE, strategy="loop", programs=programs)
  first = a.train(key, encs)
  assert first.num_compilations == 2 and first.compile_seconds > 0
  step_keys = [k for k in programs.compiled if k[0] == "step"]
  assert len(step_keys) == 2 and all(programs.compile_seconds[k] > 0 for k in step_keys)
  uses = dict(programs.uses)
  second = b.train(jax.random.key(1), encs)
  assert second.num_compilations == 0 and second.compile_seconds == 0.0
  assert all(programs.uses[k] == uses[k] + 1 for k in step_keys)
  assert PopulationTrainer(depth_space, tiny_data, recipe=RECIPE).programs is not programs


def test_masked_nb201_needs_one_program(cell_space, tiny_data, key):
  trainer = PopulationTrainer(cell_space, tiny_data, recipe=RECIPE, strategy="auto")
  encs = [cell_space.encode(c) for c in CELLS[:2]]
  result = trainer.train(key, encs)
  assert result.num_compilations == 1 and len(result.groups) == 1
  more = [np.asarray(cell_space.sample(jax.random.key(100 + i))) for i in range(2)]
  assert trainer.train(key, more).num_compilations == 0


@pytest.mark.parametrize("strategy", ["unroll", "vmap", "loop"])
def test_diverging_student_is_nan_and_isolated(strategy, depth_space, tiny_data, key):
  encs = [depth_space.encode(n) for n in ("111", "111", "111")]
  trainer = PopulationTrainer(depth_space, tiny_data, recipe=RECIPE, strategy=strategy)
  clean = trainer.train(key, encs, lr_scale=[1.0, 1.0, 1.0])
  broken = trainer.train(key, encs, lr_scale=[1.0, 1e30, 1.0])
  assert np.isnan(broken.accuracy[1]) and np.isfinite(clean.accuracy[1])
  for i in (0, 2):  # bit-identical, not merely close
    assert broken.accuracy[i] == clean.accuracy[i]
    assert broken.loss[i] == clean.loss[i]
    for pa, pb in zip(_params(broken, i), _params(clean, i)):
      np.testing.assert_array_equal(pa, pb)


def test_four_devices_match_one(depth_space, tiny_data, key):
  assert jax.device_count() == 4, "conftest sets 4 simulated CPU devices"
  encs = [depth_space.encode(n) for n in ("111", "111")]
  single = train_population(key, depth_space, encs, tiny_data, recipe=RECIPE, strategy="vmap")
  sharded = train_population(key, depth_space, encs, tiny_data, recipe=RECIPE, strategy="vmap",
                             mesh=make_mesh(pop=2, data=2))
  np.testing.assert_array_equal(sharded.accuracy, single.accuracy)
  np.testing.assert_allclose(sharded.loss, single.loss, rtol=1e-4)
  data_only = train_population(key, depth_space, encs, tiny_data, recipe=RECIPE, strategy="unroll",
                               mesh=make_mesh(pop=1, data=4))
  np.testing.assert_array_equal(data_only.accuracy, single.accuracy)


def test_same_seed_same_result(depth_space, tiny_data):
  encs = [depth_space.encode(n) for n in ("111", "112")]
  trainer = PopulationTrainer(depth_space, tiny_data, recipe=RECIPE)
  a = trainer.train(jax.random.key(3), encs)
  b = trainer.train(jax.random.key(3), encs)
  c = trainer.train(jax.random.key(4), encs)
  np.testing.assert_array_equal(a.loss, b.loss)
  assert not np.array_equal(a.loss, c.loss)


@pytest.mark.slow  # ~14 s
def test_kd_uses_teacher_once_per_batch(cell_space, tiny_data, key):
  from jdanas.teachers import Teacher
  module = cell_space.cost_module(cell_space.encode(CELLS[0]), tiny_data.num_classes)
  variables = module.init(jax.random.key(9), jnp.zeros((1, 8, 8, 3)), None, train=False)
  teacher = Teacher("nb201-cell", module, variables, tiny_data.num_classes, (8, 8, 3))
  recipe = Recipe(steps=3, batch_size=16, loss=KD_PRESETS["repdistiller"], eval_batch_size=16)
  trainer = PopulationTrainer(cell_space, tiny_data, recipe=recipe, teacher=teacher, strategy="vmap")
  result = trainer.train(key, [cell_space.encode(c) for c in CELLS[:2]])
  assert np.all(np.isfinite(result.accuracy))
  jaxpr = jax.make_jaxpr(trainer._build_batch_fn())(*trainer._batch_args(*jax.random.split(key), 0))
  assert str(jaxpr).count("conv_general_dilated") > 0  # the teacher runs in the batch program ...
  with pytest.raises(ValueError, match="teacher"):
    PopulationTrainer(cell_space, tiny_data, recipe=recipe)  # ... and KD without one is refused


def test_bad_inputs_fail_before_compute(cell_space, tiny_data, key):
  with pytest.raises(ValueError, match="strategy"):
    PopulationTrainer(cell_space, tiny_data, recipe=RECIPE, strategy="pmap")
  with pytest.raises(ValueError, match="batch_size"):
    PopulationTrainer(cell_space, tiny_data, recipe=Recipe(batch_size=10_000, loss=KD_PRESETS["ce"]))
  trainer = PopulationTrainer(cell_space, tiny_data, recipe=RECIPE)
  with pytest.raises(ValueError, match="decision 0"):
    trainer.train(key, [np.array([7, 0, 0, 0, 0, 0])])
  with pytest.raises(ValueError, match="lr_scale"):
    trainer.train(key, [cell_space.encode(CELLS[0])], lr_scale=[1.0, 2.0])
  with pytest.raises(ValueError, match="recipe.steps"):
    Recipe(steps=0)


def test_batches_are_deterministic_and_cover_each_epoch():
  key = jax.random.key(5)
  idx = [np.asarray(batching.batch_indices(key, jnp.int32(s), 40, 8)) for s in range(5)]
  assert sorted(np.concatenate(idx).tolist()) == list(range(40))  # one epoch, no repeats
  again = np.asarray(batching.batch_indices(key, jnp.int32(3), 40, 8))
  np.testing.assert_array_equal(again, idx[3])
  nxt = np.asarray(batching.batch_indices(key, jnp.int32(5), 40, 8))
  assert not np.array_equal(nxt, idx[0])  # a new permutation for the next epoch


def test_augment_shapes_and_flip():
  x = jnp.arange(2 * 4 * 4 * 1, dtype=jnp.float32).reshape(2, 4, 4, 1)
  y = batching.augment(jax.random.key(0), x, pad=0, flip=True)
  for a, b in zip(np.asarray(x), np.asarray(y)):
    assert np.array_equal(a, b) or np.array_equal(a[:, ::-1], b)
  z = batching.augment(jax.random.key(1), x, pad=1, flip=False)
  assert z.shape == x.shape


def test_shared_programs_never_reuse_another_teachers_batch_or_another_losss_step(depth_space, tiny_data, key):
  """Trainers of two teachers share their KD step programs (the teacher's logits are an input) but
  not their batch programs (which run the teacher's module); a CE recipe gets its own step programs.
  Results equal those of trainers with their own programs."""
  from jdanas.models.zoo import get_model
  from jdanas.teachers import Teacher
  x = jnp.zeros((1,) + tiny_data.image_shape)
  teachers = []
  for i, name in enumerate(("resnet8", "vgg8")):
    module = get_model(name, tiny_data.num_classes)
    teachers.append(Teacher(name, module, module.init(jax.random.key(i), x, None, train=False),
                            tiny_data.num_classes, tiny_data.image_shape))
  kd = Recipe(steps=3, batch_size=16, loss=KD_PRESETS["repdistiller"], learning_rate=0.1, eval_batch_size=16)
  enc = [depth_space.encode("111")]
  programs = TrainingPrograms()
  shared = [PopulationTrainer(depth_space, tiny_data, recipe=kd, teacher=t, strategy="loop", programs=programs)
            .train(key, enc) for t in teachers]
  assert sum(1 for k in programs.compiled if k[0] == "batch") == 2
  assert sum(1 for k in programs.compiled if k[0] == "step") == 1
  for t, got in zip(teachers, shared):
    alone = PopulationTrainer(depth_space, tiny_data, recipe=kd, teacher=t, strategy="loop").train(key, enc)
    _assert_same_students(got, alone)
  PopulationTrainer(depth_space, tiny_data, recipe=RECIPE, strategy="loop", programs=programs).train(key, enc)
  assert sum(1 for k in programs.compiled if k[0] == "step") == 2


def test_validation_curve_reuses_the_eval_program_and_leaves_training_unchanged(depth_space, tiny_data, key):
  """``eval_every``: rows after steps 3 and 4 (the last step once), the last row is the final accuracy, the
  best is the max over the rows, no new program is compiled and the students train exactly as without it."""
  encs = [depth_space.encode(n) for n in ("111", "111", "211")]
  trainer = PopulationTrainer(depth_space, tiny_data, recipe=RECIPE, strategy="auto")
  plain = trainer.train(key, encs)
  assert plain.curve is None and plain.curve_steps == () and plain.best_accuracy is plain.accuracy
  compiled = set(trainer.programs.compiled)
  curved = trainer.train(key, encs, eval_every=3)
  assert curved.num_compilations == 0 and set(trainer.programs.compiled) == compiled
  assert set(trainer.trace_counts.values()) == {1}, trainer.trace_counts
  assert curved.curve_steps == (3, 4) and curved.curve.shape == (2, 3) and curved.curve.dtype == np.float32
  np.testing.assert_array_equal(curved.curve[-1], curved.accuracy)
  np.testing.assert_array_equal(curved.accuracy, plain.accuracy)  # evaluating does not disturb training
  np.testing.assert_array_equal(curved.loss, plain.loss)
  np.testing.assert_array_equal(curved.best_accuracy, curved.curve.max(axis=0))
  assert trainer.train(key, encs, eval_every=2).curve_steps == (2, 4)  # no duplicate of the last step
  every = trainer.train(key, encs, eval_every=1)
  assert every.curve_steps == (1, 2, 3, 4) and not np.array_equal(every.curve[0], every.curve[-1])
  for bad in (-1, 5, 1.5, True, "2"):
    with pytest.raises(ValueError, match="^eval_every: "):
      trainer.train(key, encs, eval_every=bad)


def test_validation_curve_of_a_vmapped_group_keeps_a_diverged_student_nan(depth_space, tiny_data, key):
  encs = [depth_space.encode(n) for n in ("111", "111", "111")]
  trainer = PopulationTrainer(depth_space, tiny_data, recipe=RECIPE, strategy="vmap")
  plain = trainer.train(key, encs, lr_scale=[1.0, 1e30, 1.0])
  curved = trainer.train(key, encs, lr_scale=[1.0, 1e30, 1.0], eval_every=2)
  assert curved.num_compilations == 0 and curved.curve_steps == (2, 4)
  np.testing.assert_array_equal(curved.accuracy, plain.accuracy)
  np.testing.assert_array_equal(curved.curve[-1], curved.accuracy)
  assert np.isnan(curved.accuracy[1]) and np.isnan(curved.best_accuracy[1])
  ok = [0, 2]
  np.testing.assert_array_equal(curved.best_accuracy[ok], curved.curve[:, ok].max(axis=0))
