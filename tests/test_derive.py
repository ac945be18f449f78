"""ENAS's derive step (``evaluator.one_shot.derive``): the final training's candidates are ranked by their
score with the *final* shared weights, not by ledger scores measured with the weights of different rounds.

Fast: the candidate set, its order and the top-K on a constructed case where the derive's top-K differ from the
ledger's (an evaluator whose "final weights" score is a fixed function of the encoding), and the reward wrapper.
Slow: a real search (reinforce + one_shot on kdas_masked) whose derive rows equal an independent computation from
the final checkpoint, and a run killed after its last round's checkpoint that resumes to the same report.
"""
from __future__ import annotations

import json
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import smoke_config
from jdanas import costs
from jdanas.evaluators.base import Evaluation, ScoreKind
from jdanas.evaluators.reward import RewardEvaluator
from jdanas.pipeline.final import candidates, choose, top_archs
from jdanas.pipeline.search import derive_candidates
from jdanas.rewards import reward
from jdanas.spaces import get_space

SPACE = dict(positions=(1, 3), depths=(2, 1, 2), widths=(4, 4, 8), stem=4)
DATA = types.SimpleNamespace(num_classes=4, image_shape=(8, 8, 3))  # what the candidates' costs need


class FinalWeights:
  """An evaluator whose score with "the final shared weights" is a fixed function of the encoding (the
  two add-ons' op indices), counting what it is asked to score."""
  score_kind = ScoreKind("one_shot_val_accuracy", "fraction in [0, 1]")

  def __init__(self):
    self.scored = []

  def score(self, encodings):
    encs = np.asarray(encodings)
    self.scored.append(encs)
    return ((encs[:, 0] + encs[:, 3]) / 12).astype(np.float32)

  def derive(self, encodings):
    return Evaluation(scores=self.score(encodings))


def _ask(space):
  """A searcher's jitted ask: two children per call, a function of the key only (the state is only counted)."""
  return jax.jit(lambda key, state: (jax.vmap(space.sample)(jax.random.split(key, 2)), state + 1))


def _costs(space, arch):
  return costs.model_costs(space, space.encode(arch), num_classes=DATA.num_classes, input_shape=DATA.image_shape)


def _ledger(space, archs_scores):
  """Ledger rows as the search writes them (params and FLOPs of each child, as pipeline.search._record)."""
  return [{"round": 0, "index": i, "arch": a, "encoding": [int(v) for v in space.encode(a)], "score": s,
           "feasible": f, "params": _costs(space, a).params, "flops": _costs(space, a).flops}
          for i, (a, s, f) in enumerate(archs_scores)]


def test_derive_ranks_candidates_by_the_final_weights_not_by_the_ledger():
  space = get_space("kdas_masked", **SPACE)
  # The ledger's best (scored early, with other weights) are the children the final weights rank last.
  ledger = _ledger(space, [("identity:00|identity:00", 0.9, True), ("maxpool3x3:00|identity:00", 0.8, True),
                           ("identity:00|identity:00", 0.7, True),  # the same child again: one candidate
                           ("sepconv5x5:11|sepconv5x5:11", 0.1, True), ("conv5x5:01|sepconv5x5:00", None, True),
                           ("avgpool3x3:00|avgpool3x3:00", None, False)])  # over the budget: no candidate
  over = space.encode("avgpool3x3:00|avgpool3x3:00")[0]
  feasible = jax.jit(jax.vmap(lambda e: e[0] != over))  # the budget: no avgpool3x3 as the first add-on
  ask, key_loop, rounds, n = _ask(space), jax.random.key(7), 5, 5
  ev = FinalWeights()
  out = derive_candidates(ev, ask, jnp.int32(0), key_loop, n=n, rounds=rounds, feasible_batch=feasible,
                          ledger=ledger, space=space, data=DATA)
  # (a) independently: asks with fold_in(key_loop, rounds + i) until n feasible proposals
  sampled, i = [], 0
  while len(sampled) < n:
    encs = np.asarray(jax.vmap(space.sample)(jax.random.split(jax.random.fold_in(key_loop, rounds + i), 2)))
    sampled += [e for e in encs if e[0] != over]
    i += 1
  sampled = sampled[:n]
  assert out["asks"] == i and out["sampled"] == n
  # (b) the ledger's distinct feasible children, after the sampled ones; one scoring call of every distinct one
  order = list(dict.fromkeys([space.decode(e) for e in sampled] + [r["arch"] for r in ledger if r["feasible"]]))
  assert len(ev.scored) == 1 and [space.decode(e) for e in ev.scored[0]] == order
  assert "avgpool3x3:00|avgpool3x3:00" not in order and out["candidates"] == len(order)
  expected = (np.asarray([space.encode(a) for a in order])[:, [0, 3]].sum(1) / 12).astype(np.float32)
  ranked = [order[j] for j in np.argsort(-expected, kind="stable")]  # ties keep the candidate order
  rows = out["rows"]
  assert [r["arch"] for r in rows] == ranked
  assert [r["derive_score"] for r in rows] == [float(expected[order.index(a)]) for a in ranked]
  by_arch = {r["arch"]: r for r in rows}
  assert by_arch["identity:00|identity:00"]["ledger_score"] == 0.9  # its best ledger score
  assert by_arch["conv5x5:01|sepconv5x5:00"]["ledger_score"] is None  # failed in the ledger, still a candidate
  ledger_archs = {r["arch"] for r in ledger}
  sampled_archs = {space.decode(e) for e in sampled}
  for r in rows:
    assert r["origin"] == {(True, False): "sampled", (False, True): "ledger", (True, True): "both"}[
        (r["arch"] in sampled_archs, r["arch"] in ledger_archs)]
    assert r["params"] > 0 and r["encoding"] == [int(v) for v in space.encode(r["arch"])]
    assert (r["params"], r["flops"]) == (_costs(space, r["arch"]).params, _costs(space, r["arch"]).flops)
  assert out["from_ledger"] == sum(r["origin"] != "sampled" for r in rows) == 4
  # The final training's candidates: the derive's top-K, not the ledger's
  s = types.SimpleNamespace(derive=out, ledger=ledger)
  picked = [r["arch"] for r in candidates(s, 2)]
  assert picked == ranked[:2]
  assert picked != [r["arch"] for r in top_archs(ledger, 2)] == ["identity:00|identity:00", "maxpool3x3:00|identity:00"]
  assert [r["arch"] for r in candidates(types.SimpleNamespace(derive=None, ledger=ledger), 2)] == [
      r["arch"] for r in top_archs(ledger, 2)]  # derive off: the ledger's best, as before


def test_a_failed_derive_score_is_never_a_candidate_and_ranks_last():
  space = get_space("kdas_masked", **SPACE)

  class WithFailure(FinalWeights):
    def score(self, encodings):
      s = super().score(encodings)
      return np.where(np.asarray(encodings)[:, 0] == bad, np.nan, s).astype(np.float32)  # diverged

  bad = space.encode("sepconv5x5:00|identity:00")[0]

  ledger = _ledger(space, [("sepconv5x5:00|identity:00", 0.9, True), ("identity:00|identity:00", 0.1, True)])
  out = derive_candidates(WithFailure(), _ask(space), jnp.int32(0), jax.random.key(0), n=0, rounds=1,
                          feasible_batch=None, ledger=ledger, space=space, data=DATA)
  assert out["asks"] == 0 and [(r["arch"], r["derive_score"]) for r in out["rows"]] == [
      ("identity:00|identity:00", 0.0), ("sepconv5x5:00|identity:00", None)]
  assert [r["arch"] for r in candidates(types.SimpleNamespace(derive=out, ledger=ledger), 2)] == [
      "identity:00|identity:00"]


def test_the_reward_wraps_the_derive_score_as_in_the_search():
  """With ``evaluator.reward`` the derive score is the search's reward of the final-weights score (the same
  ``_rewarded`` path as a call), each row keeps ACC / LAT / R, and the final choice reads the row's LAT."""
  space = get_space("kdas_masked", **SPACE)
  inner = FinalWeights()
  lat = lambda e: 1000.0 + 100.0 * float(e[0]) + 10.0 * float(e[3])  # noqa: E731  a size: bigger ops, more
  ev = RewardEvaluator(inner, lat, target=1300.0, alpha=0.0, beta=-1.0, latency_model="params")
  encs = np.stack([space.encode(a) for a in ("identity:00|identity:00", "sepconv5x5:11|sepconv5x5:11",
                                              "conv3x3:00|conv5x5:00")])
  acc = inner.score(encs)
  want = reward(acc, np.asarray([lat(e) for e in encs]), target=1300.0, alpha=0.0, beta=-1.0)
  got = ev.derive(encs)
  np.testing.assert_array_equal(got.scores, want)
  np.testing.assert_array_equal(got.extras["accuracy"], acc)
  np.testing.assert_array_equal(got.extras["reward"], want)
  np.testing.assert_array_equal(ev.score(encs), want)
  assert want[1] < acc[1]  # the penalty bites on the big child
  ledger = _ledger(space, [(space.decode(e), 0.5, True) for e in encs])
  out = derive_candidates(ev, _ask(space), jnp.int32(0), jax.random.key(1), n=2, rounds=3, feasible_batch=None,
                          ledger=ledger, space=space, data=DATA)
  for r in out["rows"]:
    e = np.asarray(r["encoding"])
    assert r["latency"] == lat(e) and r["accuracy"] == pytest.approx(float((e[0] + e[3]) / 12))
    assert r["derive_score"] == r["reward"] == pytest.approx(r["accuracy"] * min(1.0, 1300.0 / r["latency"]))
  top = candidates(types.SimpleNamespace(derive=out, ledger=ledger), 3)
  assert [r["derive_score"] for r in top] == sorted((r["derive_score"] for r in out["rows"]), reverse=True)[:3]
  final_acc = np.asarray([0.5, 0.6, 0.7])
  chosen, final_reward = choose(final_acc, top, {"target": 1300.0, "alpha": 0.0, "beta": -1.0})
  expected = final_acc * np.minimum(1.0, 1300.0 / np.asarray([r["latency"] for r in top]))
  np.testing.assert_allclose(final_reward, expected)
  assert chosen == int(np.argmax(expected))


# ---- a real search ------------------------------------------------------------------------------------------
ROUNDS, DERIVE = 3, 4


def _config():
  return smoke_config(**{
      "teacher.ensemble": 2, "kd.loss": "oracle", "space.name": "kdas_masked",
      "space.kwargs": dict(backbone="resnet8", **SPACE), "searcher.name": "reinforce",
      "searcher.kwargs": dict(num_asks=2), "evaluator.name": "one_shot", "evaluator.one_shot.steps": 3,
      "evaluator.one_shot.batch_size": 32, "search.rounds": ROUNDS, "evaluator.one_shot.derive": DERIVE})


def _run(workdir):
  from jdanas import pipeline
  s = pipeline.search(_config(), workdir)
  return s, pipeline.report(s, pipeline.train_final(s))


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("straight")
  return (workdir, *_run(workdir))


@pytest.mark.slow
def test_derive_rows_equal_an_independent_scoring_of_the_final_checkpoint(straight):
  """A fresh OneShotEvaluator restored from the final checkpoint scores the candidates (the controller's
  samples from the final checkpoint's state, then the ledger's distinct feasible children) as the run did,
  and the rows are in the order of those scores; the final training got the top-K of that order."""
  from jdanas.pipeline.checkpoints import Checkpoints
  from jdanas.pipeline.setup import build_evaluator, plan_searcher
  workdir, s, rep = straight
  plan = s.plan
  assert plan.evaluator.values["derive"] == DERIVE and not plan.limits["max_params"]  # no budget: all feasible
  fresh = build_evaluator(plan, s.data, s.teacher, int(s.config.seed))
  searcher = plan_searcher(plan, None)
  key_search = jax.random.split(jax.random.key(s.config.seed), 3)[1]
  key_init, key_loop = jax.random.split(key_search)
  template = {"searcher": jax.jit(searcher.init)(key_init), "evaluator": fresh.state()}
  ckpt = Checkpoints(workdir / "checkpoints", jax.eval_shape(lambda: template))
  round_done, state, ledger = ckpt.restore_latest()
  ckpt.close()
  assert round_done == ROUNDS
  fresh.restore(state["evaluator"])
  ask = jax.jit(searcher.ask)
  sampled = []
  for i in range(-(-DERIVE // 2)):  # two children per ask, all feasible
    sampled += list(np.asarray(ask(jax.random.fold_in(key_loop, ROUNDS + i), state["searcher"])[0]))
  space = plan.space
  order = list(dict.fromkeys([space.decode(e) for e in sampled[:DERIVE]] + [r["arch"] for r in ledger]))
  scores = fresh.score(np.asarray([space.encode(a) for a in order]))
  ranked = [order[j] for j in np.argsort(-scores, kind="stable")]
  assert [r["arch"] for r in s.derive["rows"]] == ranked
  assert [r["derive_score"] for r in s.derive["rows"]] == [float(scores[order.index(a)]) for a in ranked]
  assert s.derive["candidates"] == len(order) and s.derive["asks"] == 2
  assert [r["arch"] for r in rep["top"]] and {r["arch"] for r in rep["top"]} == set(ranked[:plan.top_k])
  assert rep["derive"]["rows"] == s.derive["rows"]
  for r in rep["top"]:
    row = s.derive["rows"][ranked.index(r["arch"])]
    assert (r["derive_score"], r["origin"], r["search_score"]) == (row["derive_score"], row["origin"],
                                                                    row["ledger_score"])
  md = (workdir / "report.md").read_text()
  assert "| Derive step |" in md and "Derive score" in md


@pytest.mark.slow
def test_a_run_killed_after_its_last_round_resumes_to_the_same_derive_and_report(straight, tmp_path, capsys):
  from jdanas.pipeline.checkpoints import Checkpoints
  from jdanas import pipeline
  workdir, _, rep = straight
  save = Checkpoints.save

  def save_then_stop(self, round_done, *args):  # killed right after the last round's checkpoint
    save(self, round_done, *args)
    if round_done == ROUNDS:
      raise KeyboardInterrupt

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(Checkpoints, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
      pipeline.search(_config(), tmp_path)
  capsys.readouterr()
  s, resumed = _run(tmp_path)
  err = capsys.readouterr().err
  assert f"[resume] continuing after round {ROUNDS}" in err and err.count("[derive] ") == 1
  assert s.stats["resumed_from_round"] == ROUNDS
  drop = lambda d, keys: {k: v for k, v in d.items() if k not in keys}  # noqa: E731  wall times, programs
  assert drop(resumed["derive"], {"seconds", "evaluator_programs"}) == drop(rep["derive"], {"seconds",
                                                                                            "evaluator_programs"})
  measured = {"latency_ms"}  # each top row's wall-clock latency, measured again
  assert [drop(r, measured) for r in resumed["top"]] == [drop(r, measured) for r in rep["top"]]
  timing = {"num_compilations"}
  assert drop(resumed["final"], timing) == drop(rep["final"], timing)
  on_disk = json.loads((tmp_path / "report.json").read_text())
  assert on_disk["derive"]["rows"] == json.loads((workdir / "report.json").read_text())["derive"]["rows"]
