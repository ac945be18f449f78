"""One-shot evaluator (ENAS protocol, KDAS): shared weights trained on the round's children with
the oracle loss, scored with the shared weights; one compiled step and score program; state
checkpointed with the search's Checkpoints and resumed bit-identically; a search run end to end."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import concrete_variables, smoke_config
from jdanas.distill import KD_PRESETS
from jdanas.models import get_model
from jdanas.pipeline.checkpoints import Checkpoints
from jdanas.spaces import get_space
from jdanas.teachers import Teacher, ensemble_teacher
from jdanas.train import Recipe
from jdanas.evaluators.one_shot import OneShotEvaluator

SPACE = dict(positions=(1, 3), depths=(2, 1, 2), widths=(4, 4, 8), stem=4)
# KDAS's memory penalty: AKD's reward on the params model, hard form (accuracy x min(1, T / params)).
PARAMS_PENALTY = dict(latency_model="params", target=4000.0, alpha=0.0, beta=-1.0)
RECIPE = Recipe(steps=12, batch_size=16, loss=KD_PRESETS["oracle"], eval_batch_size=20, augment=True)


@pytest.fixture(scope="module")
def teacher():
  members = []
  for seed in (0, 1):
    module = get_model("resnet8", 4)
    abstract = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), None, train=False))
    members.append(Teacher(name="resnet8", module=module, variables=concrete_variables(abstract, seed),
                           num_classes=4, input_shape=(8, 8, 3)))
  return ensemble_teacher(members, stack=False)


def _evaluator(tiny_data, teacher):
  space = get_space("kdas_masked", **SPACE)
  return OneShotEvaluator(space, tiny_data, recipe=RECIPE, steps_per_round=3, teacher=teacher, seed=0,
                          val_examples=20)


def _rounds(seed: int, n: int, space):
  return [np.asarray(jax.vmap(space.sample)(jax.random.split(jax.random.key(100 * seed + r), 3))) for r in range(n)]


@pytest.mark.slow
def test_rounds_train_shared_weights_and_score_children(tiny_data, teacher):
  ev = _evaluator(tiny_data, teacher)
  before = jax.tree.map(np.asarray, ev.state().shared.params)
  compiled = []
  for r, encs in enumerate(_rounds(0, 2, ev.space)):
    out = ev(jax.random.key(r), encs)
    assert out.scores.shape == (3,) and np.all((out.scores >= 0) & (out.scores <= 1)) and out.variables is None
    compiled.append(out.num_compilations)
  assert int(ev.state().step) == 6
  assert ev.trace_counts == {"init": 1, "step": 1, "score": 1}  # one program each, reused by every child and round
  assert compiled == [3, 0]  # reported by the first call (the init program built with the evaluator), none after
  after = jax.tree.map(np.asarray, ev.state().shared.params)
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))
  # The score is the child's accuracy with the shared weights (the encoding is the traced input).
  space = ev.space
  enc = _rounds(0, 1, space)[0][0]
  module = space.build((), 4)
  vars_ = {"params": ev.state().shared.params, "batch_stats": ev.state().shared.batch_stats}
  x = (np.asarray(tiny_data.val.x[:20], np.float32) / 255.0 - np.asarray(tiny_data.mean)) / np.asarray(tiny_data.std)
  pred = np.argmax(module.apply(vars_, jnp.asarray(x, jnp.float32), jnp.asarray(enc), train=False)["logits"], -1)
  expected = float(np.mean(pred == tiny_data.val.y[:20]))
  step = int(ev.state().step)
  assert float(ev.score(enc[None])[0]) == pytest.approx(expected)
  assert int(ev.state().step) == step and ev.trace_counts["score"] == 1  # scoring trains nothing, reuses the program
  with pytest.raises(ValueError, match="encodings"):
    ev.score(np.zeros((0, space.num_decisions), np.int32))


@pytest.mark.slow
def test_checkpointed_state_resumes_bit_identically(tiny_data, teacher, tmp_path):
  rounds = _rounds(1, 3, get_space("kdas_masked", **SPACE))
  straight = _evaluator(tiny_data, teacher)
  scores = [straight(jax.random.key(0), e).scores for e in rounds]
  first = _evaluator(tiny_data, teacher)
  for e in rounds[:2]:
    first(jax.random.key(0), e)
  ckpt = Checkpoints(tmp_path / "ckpt", jax.eval_shape(lambda: {"searcher": jnp.zeros(2), "evaluator": first.state()}))
  ckpt.save(2, {"searcher": jnp.zeros(2), "evaluator": first.state()}, [])
  ckpt.close()
  resumed = _evaluator(tiny_data, teacher)
  ckpt = Checkpoints(tmp_path / "ckpt",
                     jax.eval_shape(lambda: {"searcher": jnp.zeros(2), "evaluator": resumed.state()}))
  round_done, state, _ = ckpt.restore_latest()
  ckpt.close()
  resumed.restore(state["evaluator"])
  assert round_done == 2 and int(resumed.state().step) == 6
  np.testing.assert_array_equal(resumed(jax.random.key(0), rounds[2]).scores, scores[2])
  for a, b in zip(jax.tree.leaves(resumed.state()), jax.tree.leaves(straight.state())):
    assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_needs_a_masked_space_and_valid_settings(tiny_data, teacher):
  with pytest.raises(ValueError, match="^space: the one_shot evaluator needs a masked space"):
    OneShotEvaluator(get_space("kdas", **SPACE), tiny_data, recipe=RECIPE, steps_per_round=2, teacher=teacher)
  from jdanas.pipeline.config import ConfigError, build_plan
  masked = {"space.name": "kdas_masked", "evaluator.name": "one_shot",
            "space.kwargs": dict(backbone="resnet8", depths=(2, 1, 2), widths=(4, 4, 8), stem=4, positions=(3,))}
  plan = build_plan(smoke_config(**masked))
  assert plan.evaluator.recipe.steps == 20
  assert plan.evaluator.values == {"val_examples": 0, "bn": "running", "derive": 0}
  for changes, field in [({"evaluator.name": "one_shot"}, "config.space.name: the one_shot evaluator"),
                         ({**masked, "evaluator.one_shot.val_examples": -1}, "config.evaluator.one_shot.val_examples"),
                         ({**masked, "evaluator.one_shot.steps": 0}, "config.evaluator.one_shot.steps")]:
    with pytest.raises(ConfigError, match="^" + field):
      build_plan(smoke_config(**changes))


@pytest.mark.slow
@pytest.mark.parametrize("reward", [None, PARAMS_PENALTY], ids=["accuracy", "params_penalty"])
def test_kdas_search_with_reinforce_resumes_to_the_same_ledger(tmp_path, reward):
  """The ENAS protocol end to end: reinforce controller + one_shot evaluator on kdas_masked with
  an ensemble teacher and the oracle loss; an interrupted search resumes to the same ledger, also
  when the score is the params-penalised reward (the shared weights go through RewardEvaluator)."""
  from jdanas.pipeline import search

  def config(rounds):
    changes = {"teacher.ensemble": 2, "kd.loss": "oracle", "space.name": "kdas_masked",
               "space.kwargs": dict(backbone="resnet8", depths=(2, 1, 2), widths=(4, 4, 8), stem=4, positions=(1, 3)),
               "searcher.name": "reinforce", "searcher.kwargs": dict(num_asks=2),
               "evaluator.name": "one_shot", "evaluator.one_shot.steps": 3,
               "evaluator.one_shot.batch_size": 32, "search.rounds": rounds}
    return smoke_config(**changes, **({"evaluator.reward": reward} if reward else {}))

  straight = search(config(3), tmp_path / "straight")
  assert straight.stats["evaluator_programs"] == 3  # a fresh workdir: init, step and score programs
  straight = straight.ledger
  save = Checkpoints.save

  def save_then_stop(self, round_done, *args):  # an interruption right after round 2's checkpoint
    save(self, round_done, *args)
    if round_done == 2:
      raise KeyboardInterrupt

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(Checkpoints, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
      search(config(3), tmp_path / "resumed")
  resumed = search(config(3), tmp_path / "resumed").ledger
  strip = lambda rows: [{k: v for k, v in r.items() if k not in ("search_seconds", "round_seconds")}  # noqa: E731
                        for r in rows]
  assert len(straight) == 6 and strip(resumed) == strip(straight)
  kind = "one_shot_val_accuracy" if reward is None else "reward:one_shot_val_accuracy x (params/T)^w"
  assert all(r["score_kind"] == kind and r["score"] is not None for r in straight)
  if reward is not None:  # the penalty: accuracy x min(1, T / params) (hard form)
    for r in straight:
      expected = r["accuracy"] * min(1.0, reward["target"] / r["latency"])
      assert r["score"] == pytest.approx(expected, rel=1e-6)
    assert any(r["latency"] > reward["target"] for r in straight)  # the penalty bites on some child


def _penalty_plan():
  from jdanas.pipeline.config import build_plan
  return build_plan(smoke_config(**{"space.name": "kdas_masked", "evaluator.name": "one_shot",
                                    "space.kwargs": dict(SPACE), "kd.loss": "oracle",
                                    "evaluator.one_shot.batch_size": 16, "evaluator.reward": PARAMS_PENALTY}))


def test_plan_accepts_a_params_penalty_on_the_one_shot_score():
  plan = _penalty_plan()
  assert plan.evaluator.name == "one_shot" and plan.evaluator.reward == dict(PARAMS_PENALTY, batch_size=1, repeats=20)


@pytest.mark.slow
def test_params_penalty_wraps_the_one_shot_evaluator_and_forwards_its_state(tiny_data, teacher):
  """The reward evaluator exposes and restores the shared weights (what the search loop
  checkpoints) and its penalty uses the exact child's params."""
  from jdanas import costs
  from jdanas.pipeline.setup import build_evaluator
  from jdanas.evaluators.reward import RewardEvaluator
  ev = build_evaluator(_penalty_plan(), tiny_data, teacher, seed=0)
  assert isinstance(ev, RewardEvaluator) and ev.score_kind.kind.startswith("reward:one_shot_val_accuracy")
  assert ev.state() is ev.inner.state()
  moved = jax.tree.map(lambda a: np.asarray(a) + 1 if a.dtype.kind in "fi" else a, ev.state())  # a later state
  ev.restore(moved)
  assert int(ev.inner.state().step) == 1
  for a, b in zip(jax.tree.leaves(ev.inner.state()), jax.tree.leaves(moved)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  space = get_space("kdas_masked", **SPACE)
  small, large = space.encode("identity:00|identity:00"), space.encode("conv5x5:11|conv5x5:11")
  lat = ev.latencies(np.stack([small, large]))
  exact = get_space("kdas", **SPACE)
  assert lat[0] == costs.model_costs(exact, small, num_classes=tiny_data.num_classes,
                                     input_shape=tuple(tiny_data.image_shape), flops=False).params
  assert lat[0] < lat[1]


def test_batch_statistics_scoring_is_enass(tiny_data, teacher):
  """``bn="batch"`` (ENAS's ``is_training=True``): each held-out batch is normalised with its own statistics, so
  the score is independent of the running averages the children share, and equals a hand computation
  (the 20 held-out examples in batches of 8: the last batch padded with repeated examples, counted once)."""
  space = get_space("kdas_masked", **SPACE)
  recipe = Recipe(steps=4, batch_size=16, loss=KD_PRESETS["oracle"], eval_batch_size=8, augment=True)
  ev = OneShotEvaluator(space, tiny_data, recipe=recipe, steps_per_round=2, teacher=teacher, seed=0,
                        val_examples=20, bn="batch")
  enc = _rounds(1, 1, space)[0]
  ev(jax.random.key(0), enc)
  module = space.build((), 4)
  shared = ev.state().shared
  x = (np.asarray(tiny_data.val.x[:20], np.float32) / 255.0 - np.asarray(tiny_data.mean)) / np.asarray(tiny_data.std)
  y = np.asarray(tiny_data.val.y[:20])
  idx = np.arange(24) % 20  # three batches of 8, the last one wrapped around
  variables = {"params": shared.params, "batch_stats": shared.batch_stats}
  for e, got in zip(enc, ev.score(enc)):
    hits = []
    for b in range(3):
      out, _ = module.apply(variables, jnp.asarray(x[idx[8 * b:8 * b + 8]]), jnp.asarray(e), train=True,
                            mutable=["batch_stats"])
      hits.append(np.argmax(np.asarray(out["logits"]), -1) == y[idx[8 * b:8 * b + 8]])
    assert float(got) == pytest.approx(float(np.mean(np.concatenate(hits)[:20])))
  # the running statistics play no part: moved far away, the scores stay
  before = ev.score(enc)
  moved = shared.replace(batch_stats=jax.tree.map(lambda v: v + 3.0, shared.batch_stats))
  ev.shared.state = ev.shared.state.replace(shared=moved)
  np.testing.assert_array_equal(ev.score(enc), before)
  with pytest.raises(ValueError, match="^bn:"):
    OneShotEvaluator(space, tiny_data, recipe=recipe, steps_per_round=2, teacher=teacher, val_examples=20, bn="eval")
