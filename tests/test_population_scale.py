"""Scale-out of the population engine on 4 simulated CPU devices (tests/conftest.py): chunked
populations much larger than the mesh's ``pop`` axis, and one device->host transfer per round."""
import jax
import numpy as np
import pytest

from jdanas.distill import KD_PRESETS
from jdanas.evaluators.short_kd import ShortKDEvaluator
from jdanas.parallel import make_mesh
from jdanas.spaces import get_space
from jdanas.train import PopulationTrainer, Recipe
from jdanas.train import population

RECIPE = Recipe(steps=3, batch_size=16, loss=KD_PRESETS["ce"], learning_rate=0.1, eval_batch_size=16)


@pytest.fixture(scope="module")
def depth_space():
  return get_space("s1_resnet", depth_choices=(1, 2), widths=(4, 8, 8), stem=4)


@pytest.fixture(scope="module")
def unsharded(depth_space, tiny_data):
  """13 same-signature students in one vmapped program on one device (the reference)."""
  encs = [depth_space.encode("111")] * 13
  trainer = PopulationTrainer(depth_space, tiny_data, recipe=RECIPE, strategy="vmap")
  return encs, trainer, trainer.train(jax.random.key(0), encs, lr_scale=np.linspace(0.5, 1.5, 13))


def _step_programs(trainer):
  return {k: v for k, v in trainer.programs.compiled.items() if k[0] == "step"}


@pytest.mark.slow  # ~15 s per mesh on the loaded 2-core CPU
@pytest.mark.parametrize("pop,data,chunk", [(4, 1, 4), (2, 2, 2)])
def test_chunked_population_matches_unsharded(pop, data, chunk, depth_space, tiny_data, unsharded):
  """P = 13 students on a pop axis of 2 or 4 devices run as chunks of ``chunk`` through ONE
  compiled step program (the last chunk padded) and train exactly like the unsharded population;
  the program's stacked state and its temporaries are one chunk's, not the population's."""
  assert jax.device_count() == 4, "conftest sets 4 simulated CPU devices"
  encs, ref_trainer, ref = unsharded
  trainer = PopulationTrainer(depth_space, tiny_data, recipe=RECIPE, strategy="vmap",
                              mesh=make_mesh(pop=pop, data=data), pop_chunk=chunk)
  got = trainer.train(jax.random.key(0), encs, lr_scale=np.linspace(0.5, 1.5, 13))
  assert [g.size for g in got.groups] == [chunk] * -(-13 // chunk)
  assert got.groups[-1].members[-1] == got.groups[-1].members[0]  # padding repeats the chunk's first member
  assert got.num_compilations == 1 and trainer.trace_counts[("step",) + got.groups[0].key] == 1
  # The tolerances of test_population.py (test_four_devices_match_one's loss rtol; accuracies to
  # 1e-6, far below one validation example (1/40): the same predictions, the count's division
  # rounded in another program by at most an ulp).
  np.testing.assert_allclose(got.accuracy, ref.accuracy, atol=1e-6)
  np.testing.assert_allclose(got.loss, ref.loss, rtol=1e-4)
  for i in (0, 12):
    for a, b in zip(jax.tree.leaves(jax.device_get(got.variables(i))), jax.tree.leaves(jax.device_get(ref.variables(i)))):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  # Memory: the compiled step's inputs are a chunk's stacked states, and its working set is smaller
  # than the whole-population program's.
  (program,) = _step_programs(trainer).values()
  (ref_program,) = _step_programs(ref_trainer).values()
  assert {a.shape[0] for a in jax.tree.leaves(program.args_info[0][0]) if a.shape} == {chunk}
  mine, whole = program.memory_analysis(), ref_program.memory_analysis()
  assert mine.argument_size_in_bytes < whole.argument_size_in_bytes
  assert mine.temp_size_in_bytes < whole.temp_size_in_bytes
  # A population of another size reuses the program.
  assert trainer.train(jax.random.key(1), encs[:6]).num_compilations == 0


def test_pop_chunk_must_be_a_multiple_of_the_pop_axis(depth_space, tiny_data):
  mesh = make_mesh(pop=2, data=2)
  for bad in (0, 3, -2, 2.0, True):
    with pytest.raises(ValueError, match=r"pop_chunk: must be a positive multiple of the mesh's 'pop' axis \(2\)"):
      PopulationTrainer(depth_space, tiny_data, recipe=RECIPE, mesh=mesh, pop_chunk=bad)
  assert PopulationTrainer(depth_space, tiny_data, recipe=RECIPE, mesh=mesh, pop_chunk=4).pop_chunk == 4


@pytest.fixture
def counted_fetches(monkeypatch):
  """Counts :func:`jdanas.train.population.fetch_scores` calls; every other device->host transfer
  (explicit or implicit) raises while the test's guard is on."""
  calls = []

  def counting(scores):
    calls.append(np.shape(scores))
    return fetch(scores)

  fetch = population.fetch_scores
  monkeypatch.setattr(population, "fetch_scores", counting)
  return calls


@pytest.mark.parametrize("strategy,mesh,chunk", [
    ("loop", None, None),  # two groups, one program
    pytest.param("vmap", (2, 2), 2, marks=pytest.mark.slow)])  # ~50 s on the loaded 2-core CPU
def test_a_round_makes_one_device_to_host_transfer(strategy, mesh, chunk, depth_space, tiny_data, counted_fetches):
  """A training round (several groups, or several chunks on a mesh) and the short-KD evaluator
  around it move scores to the host in exactly one transfer; the step loop runs under
  ``transfer_guard("disallow")`` in the engine itself."""
  encs = [depth_space.encode("111")] * 2 + ([depth_space.encode(n) for n in ("111", "111", "111", "211")] if mesh else [])
  trainer = PopulationTrainer(depth_space, tiny_data, recipe=RECIPE, strategy=strategy,
                              mesh=None if mesh is None else make_mesh(*mesh), pop_chunk=chunk)
  trainer.train(jax.random.key(0), encs)  # compiles: the counted round below runs cached programs
  counted_fetches.clear()
  with jax.transfer_guard_device_to_host("disallow_explicit"):
    result = trainer.train(jax.random.key(1), encs, progress=lambda step: None)
    evaluation = ShortKDEvaluator(trainer)(jax.random.key(1), np.stack(encs))
  assert counted_fetches == [(2, sum(g.size for g in result.groups))] * 2
  assert len(result.groups) > 1 and np.all(np.isfinite(result.accuracy)) and np.all(np.isfinite(result.loss))
  np.testing.assert_array_equal(evaluation.scores, result.accuracy)


def test_plan_chunks_vmapped_groups(depth_space, tiny_data):
  """Chunks of ``pop_chunk`` for large groups, one call padded to a multiple of ``pop`` for small
  ones (as without chunking); only vmapped groups are chunked."""
  mesh = make_mesh(pop=2, data=2)
  encs = [depth_space.encode("111")] * 7 + [depth_space.encode("211")] * 3
  sizes = lambda trainer: [(g.signature, g.size, len(set(g.members))) for g in trainer.plan(encs)]  # noqa: E731
  whole = PopulationTrainer(depth_space, tiny_data, recipe=RECIPE, strategy="vmap", mesh=mesh)
  chunked = PopulationTrainer(depth_space, tiny_data, recipe=RECIPE, strategy="vmap", mesh=mesh, pop_chunk=4)
  sig_a, sig_b = depth_space.signature(encs[0]), depth_space.signature(encs[-1])
  assert sizes(whole) == [(sig_a, 8, 7), (sig_b, 4, 3)]
  assert sizes(chunked) == [(sig_a, 4, 4), (sig_a, 4, 3), (sig_b, 4, 3)]
  unrolled = PopulationTrainer(depth_space, tiny_data, recipe=RECIPE, strategy="unroll", pop_chunk=4)
  assert [g.size for g in unrolled.plan(encs)] == [10]


def test_given_start_variables_train_on_a_mesh(depth_space, tiny_data):
  """``init_variables`` (e.g. DaSS's remapped students) live on the mesh like initialised states (the
  step loop's transfer guard allows no implicit copy), the caller's arrays survive the donating steps,
  and the result equals the one-device run."""
  enc = depth_space.encode("111")
  single = PopulationTrainer(depth_space, tiny_data, recipe=RECIPE, strategy="loop")
  start = single.train(jax.random.key(1), [enc]).variables(0)
  ref = single.train(jax.random.key(0), [enc], init_variables=[start])
  meshed = PopulationTrainer(depth_space, tiny_data, recipe=RECIPE, strategy="loop", mesh=make_mesh(pop=1, data=4))
  got = meshed.train(jax.random.key(0), [enc], init_variables=[start])
  np.testing.assert_allclose(got.loss, ref.loss, rtol=1e-4)
  np.testing.assert_allclose(got.accuracy, ref.accuracy, atol=1e-6)
