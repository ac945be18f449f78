"""Controllers (jdanas.searchers.controller): the masked categorical, the autoregressive policy as
a distribution, rewards and baseline, PPO's clipped objective, and that the policy learns.

The registry contract (shapes, keys, NaN incumbents, scan, trace once, beats random, dedup and
constraint wrappers) runs over ``reinforce`` and ``ppo`` in tests/test_searchers.py.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jdanas.searchers import controller_policy, ppo, reinforce
from jdanas.searchers.controller import (categorical_log_prob, ema_baseline, ppo_objective,
                                         rewards_from_scores)
from jdanas.spaces import get_space
from jdanas.spaces.base import AbstractSearchSpace


@dataclasses.dataclass(frozen=True)
class ToySpace(AbstractSearchSpace):
  """Mixed cardinalities (3, 1, 2, 4); with ``conditional``, decision 3 is active only when
  decision 0 is not 0 (an earlier decision, like a family choice)."""
  conditional: bool = False
  name = "toy"

  @property
  def num_choices(self):
    return (3, 1, 2, 4)

  def active(self, enc):
    on = jnp.ones(4, bool)
    return on.at[3].set(jnp.asarray(enc)[0] != 0) if self.conditional else on

  def canonicalize(self, enc):
    return jnp.where(self.active(enc), jnp.asarray(enc, jnp.int32), 0).astype(jnp.int32)

  def encode(self, arch):
    return np.asarray([int(c) for c in arch], np.int32)

  def decode(self, enc):
    return "".join(str(int(v)) for v in enc)

  def signature(self, enc):
    return ()

  def build(self, signature, num_classes):  # searchers never build; a tiny real network keeps the contract
    from jdanas.models.resnet import CifarResNet
    return CifarResNet(depths=(1, 1, 1), widths=(2, 2, 2), stem=2, num_classes=num_classes)


def all_canonical(space):
  encs = np.asarray(list(itertools.product(*(range(n) for n in space.num_choices))), np.int32)
  canon = np.asarray(jax.vmap(space.canonicalize)(encs))
  return np.unique(canon, axis=0)


# ---- the masked categorical ---------------------------------------------------------------

def test_categorical_log_prob_and_entropy_by_hand():
  logits = jnp.asarray([[1.0, 2.0, 0.5], [0.3, -1.0, 7.0]])
  valid = jnp.asarray([[True, True, True], [True, True, False]])
  tokens = jnp.asarray([2, 1])
  lp, ent = categorical_log_prob(logits, tokens, valid)
  p0 = np.exp([1.0, 2.0, 0.5]) / np.exp([1.0, 2.0, 0.5]).sum()
  p1 = np.exp([0.3, -1.0]) / np.exp([0.3, -1.0]).sum()  # the masked 7.0 does not count
  np.testing.assert_allclose(lp, [np.log(p0[2]), np.log(p1[1])], rtol=1e-6)
  np.testing.assert_allclose(ent, [-(p0 * np.log(p0)).sum(), -(p1 * np.log(p1)).sum()], rtol=1e-6)
  # Masked (-inf) choices: finite gradients.
  total = lambda z: jnp.sum(sum(categorical_log_prob(jnp.where(valid, z, -jnp.inf), tokens, valid)))
  grads = jax.grad(total)(logits)
  assert bool(jnp.all(jnp.isfinite(grads))) and float(grads[1, 2]) == 0.0


# ---- the policy as a distribution ---------------------------------------------------------

@functools.lru_cache(maxsize=None)
def toy_policy(policy, conditional):
  space = ToySpace(conditional=conditional)
  pi = controller_policy(space, policy=policy, hidden_size=8, tanh_constant=2.5, temperature=0.5,
                         init_range=0.5)  # sharp logits, so a wrong factor would show
  encs = jnp.asarray(all_canonical(space))
  log_probs = jax.jit(jax.vmap(pi.log_prob, in_axes=(None, 0)))
  samples = jax.jit(jax.vmap(pi.sample, in_axes=(None, 0)))
  return space, pi, encs, log_probs, samples


@pytest.mark.parametrize("policy", ["lstm", "factorized"])
@pytest.mark.parametrize("conditional", [False, True])
def test_policy_is_a_normalised_distribution_that_sample_follows(policy, conditional, key):
  space, pi, encs, log_probs, samples = toy_policy(policy, conditional)
  params = pi.init(key)
  if policy == "factorized":  # non-uniform logits, impossible tokens included
    params = {"params": {"logits": jax.random.normal(key, (4, 4)) * 2}}
  lp, ent = log_probs(params, encs)
  probs = np.exp(np.asarray(lp, np.float64))
  np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-5)  # over canonical encodings only
  assert bool(jnp.all(jnp.isfinite(ent))) and bool(jnp.all(ent >= 0))
  draws = np.asarray(samples(params, jax.random.split(jax.random.key(7), 4000)))
  assert bool(jnp.all(jax.vmap(space.is_valid)(draws)))
  np.testing.assert_array_equal(draws, np.asarray(jax.vmap(space.canonicalize)(draws)))
  index = {tuple(e): i for i, e in enumerate(np.asarray(encs))}
  freq = np.bincount([index[tuple(e)] for e in draws], minlength=len(encs)) / len(draws)
  assert np.abs(freq - probs).max() < 4 * np.sqrt(0.25 / len(draws))  # 4 sigma at worst


def test_lstm_logits_follow_the_previous_tokens_step_by_step(key):
  space, pi, _, _, _ = toy_policy("lstm", False)
  params = pi.init(key)
  enc = jnp.asarray([2, 0, 1, 3], jnp.int32)
  logits = pi.logits(params, enc)
  # By hand: feed the start token, then the token id of each chosen choice (offsets 0, 3, 4, 6).
  from jdanas.searchers.controller import LSTMPolicyNet
  net = LSTMPolicyNet((3, 1, 2, 4), 8, 0.5)
  carry = (jnp.zeros(8), jnp.zeros(8))
  ids = [10, 0 + 2, 3 + 0, 4 + 1]
  for d, token_id in enumerate(ids):
    carry, raw = net.apply(params, carry, jnp.asarray(token_id), jnp.asarray(d))
    shaped = 2.5 * jnp.tanh(raw / 0.5)
    n = space.num_choices[d]
    np.testing.assert_allclose(logits[d, :n], shaped[:n], rtol=1e-5, atol=1e-6)
    assert bool(jnp.all(jnp.isneginf(logits[d, n:])))
  # Changing a later token does not change an earlier decision's logits, but changes later ones.
  other = pi.logits(params, enc.at[2].set(0))
  np.testing.assert_array_equal(other[:3], logits[:3])
  assert not np.allclose(other[3], logits[3])


def test_inactive_decisions_carry_no_probability(key):
  space, pi, _, log_probs, _ = toy_policy("factorized", True)
  params = {"params": {"logits": jax.random.normal(key, (4, 4))}}
  enc = jnp.asarray([0, 0, 1, 0], jnp.int32)  # decision 3 is inactive
  bumped = {"params": {"logits": params["params"]["logits"].at[3].add(jnp.asarray([5.0, -3, 1, 0]))}}
  np.testing.assert_allclose(pi.log_prob(params, enc)[0], pi.log_prob(bumped, enc)[0], rtol=1e-6)
  assert not np.isclose(float(pi.log_prob(params, enc.at[0].set(1))[0]),
                        float(pi.log_prob(bumped, enc.at[0].set(1))[0]))


def test_uniform_factorized_policy_has_entropy_sum_of_log_cardinalities(key):
  space = get_space("mobilenet")
  pi = controller_policy(space, policy="factorized")
  enc = space.sample(key)
  lp, ent = pi.log_prob(pi.init(key), enc)
  expected = float(np.sum(np.log(space.num_choices)))
  np.testing.assert_allclose(ent, expected, rtol=1e-5)
  np.testing.assert_allclose(lp, -expected, rtol=1e-5)


# ---- rewards, baseline, PPO objective -----------------------------------------------------

def test_rewards_replace_failures_and_never_nan():
  scores = jnp.asarray([jnp.nan, 3.0, -jnp.inf, 1.0, jnp.inf])
  r, usable = rewards_from_scores(scores, "min")
  np.testing.assert_array_equal(r, [1.0, 3.0, 1.0, 1.0, 1.0])
  assert bool(usable)
  r, usable = rewards_from_scores(scores, -2.5)
  np.testing.assert_array_equal(r, [-2.5, 3.0, -2.5, 1.0, -2.5])
  r, usable = rewards_from_scores(jnp.full((3,), jnp.nan, jnp.float32), "min")
  assert not bool(usable) and bool(jnp.all(jnp.isfinite(r)))


def test_ema_baseline_is_sequential_updates():
  b = 1.0
  for r in (2.0, 5.0, -1.0):
    b = 0.9 * b + 0.1 * r
  np.testing.assert_allclose(ema_baseline(jnp.float32(1.0), jnp.asarray([2.0, 5.0, -1.0]), 0.9), b, rtol=1e-6)


def test_ppo_clipping_by_hand():
  # ratios e^0.5 = 1.65 (clipped for A > 0 only), e^-0.5 = 0.61 (clipped for A < 0 only), 1.1.
  lp = jnp.asarray([0.5, 0.5, -0.5, -0.5, np.log(1.1)])
  adv = jnp.asarray([2.0, -2.0, 2.0, -2.0, 1.0])
  surrogate, frac = ppo_objective(lp, jnp.zeros(5), adv, 0.2)
  hand = [1.2 * 2.0, np.exp(0.5) * -2.0, np.exp(-0.5) * 2.0, 0.8 * -2.0, 1.1]
  np.testing.assert_allclose(surrogate, np.mean(hand), rtol=1e-5)
  np.testing.assert_allclose(frac, 0.8)
  # Gradient: zero through the clipped branches, the plain ratio gradient elsewhere.
  g = jax.grad(lambda x: ppo_objective(x, jnp.zeros(5), adv, 0.2)[0])(lp)
  np.testing.assert_allclose(g, [0.0, np.exp(0.5) * -2 / 5, np.exp(-0.5) * 2 / 5, 0.0, 1.1 / 5], rtol=1e-5)


# ---- searcher behaviour ---------------------------------------------------------------------

NB201 = get_space("nb201")
TARGET = jnp.asarray([1, 4, 2, 0, 3, 2], jnp.int32)


def indicator_reward(encs):
  return jnp.sum(encs == TARGET[None, :], axis=-1).astype(jnp.float32)


@functools.lru_cache(maxsize=None)
def learned(name, policy, rounds):
  factory = {"reinforce": reinforce, "ppo": ppo}[name]
  # PPO takes 4 steps per batch: a 0.05 rate can lock a decision on a wrong token early.
  kw = dict(num_asks=8, capacity=8, policy=policy, hidden_size=16, learning_rate=0.02)
  if name == "reinforce":
    kw.update(tanh_constant=None, temperature=None, learning_rate=0.05)
  searcher = factory(NB201, **kw)
  pi = controller_policy(NB201, policy=policy, hidden_size=16)

  def run(key):
    def round_(state, r):
      key_ask, key_tell = jax.random.split(jax.random.fold_in(key, r))
      encs, state = searcher.ask(key_ask, state)
      return searcher.tell(key_tell, state, encs, indicator_reward(encs))

    state, metrics = jax.lax.scan(round_, searcher.init(key), jnp.arange(rounds))
    probs = jax.nn.softmax(pi.logits(state.params, TARGET), axis=-1)
    return jnp.take_along_axis(probs, TARGET[:, None], axis=-1)[:, 0], metrics

  return jax.jit(run)


@pytest.mark.parametrize("name,policy", [("reinforce", "lstm"), ("reinforce", "factorized"),
                                         ("ppo", "lstm"), ("ppo", "factorized")])
def test_policy_learns_the_target_tokens(name, policy, key):
  p_target, metrics = learned(name, policy, 100)(key)
  assert bool(jnp.all(p_target > 0.9)), p_target  # uniform start: 0.2 per decision
  assert float(metrics["mean_reward"][-5:].mean()) > 5.0
  assert bool(jnp.all(jnp.isfinite(metrics["policy_loss"])))


def test_nan_scores_never_reach_the_gradient(key):
  searcher = reinforce(NB201, num_asks=4, capacity=8, hidden_size=8, learning_rate=0.1)
  ask, tell = jax.jit(searcher.ask), jax.jit(searcher.tell)
  state = searcher.init(key)
  encs, state = ask(key, state)
  before = state.params
  state, m = tell(key, state, encs, jnp.full((4,), jnp.nan, jnp.float32))
  # Nothing usable: policy, optimizer and baseline untouched, no step counted.
  jax.tree.map(np.testing.assert_array_equal, state.params, before)
  assert int(state.step) == 0 and not bool(state.baseline_ready) and np.isnan(float(m["mean_reward"]))
  state, m = tell(key, state, encs, jnp.asarray([jnp.nan, 2.0, jnp.inf, 1.0]))
  assert int(state.step) == 1 and bool(state.baseline_ready)
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves((state.params, state.opt_state)))
  np.testing.assert_allclose(m["mean_reward"], 1.25)  # failures got the batch min, 1.0
  assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(before)))


def test_ppo_first_epoch_is_the_reinforce_step(key):
  """Old log-probs are the asking policy's: PPO's first epoch (ratio 1) takes REINFORCE's step."""
  kw = dict(num_asks=4, capacity=8, hidden_size=8, learning_rate=0.01, baseline_decay=0.5,
            tanh_constant=None, temperature=None)
  a, b = reinforce(NB201, **kw), ppo(NB201, num_epochs=1, **kw)
  state_a, state_b = a.init(key), b.init(key)
  encs, _ = a.ask(key, state_a)
  scores = jnp.asarray([1.0, 3.0, 0.0, 2.0])
  state_a, _ = jax.jit(a.tell)(key, state_a, encs, scores)
  state_a, _ = jax.jit(a.tell)(key, state_a, encs, scores[::-1])
  state_b, m = jax.jit(b.tell)(key, state_b, encs, scores)
  state_b, m = jax.jit(b.tell)(key, state_b, encs, scores[::-1])
  assert float(m["clip_fraction"]) == 0.0
  close = functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-7)
  jax.tree.map(close, state_a.params, state_b.params)
  np.testing.assert_allclose(state_a.baseline, state_b.baseline)


def test_masked_tokens_are_never_sampled(key):
  space = get_space("mobilenet")  # cardinalities 3 and 2 padded to 3
  searcher = ppo(space, num_asks=64, capacity=8, hidden_size=8, init_range=2.0)  # sharp random logits
  encs, _ = jax.jit(searcher.ask)(key, searcher.init(key))
  assert bool(jnp.all(jax.vmap(space.is_valid)(encs)))
  assert len({tuple(e) for e in np.asarray(encs)}) > 1


def test_bad_keywords_raise_one_line_errors():
  with pytest.raises(ValueError, match="policy must be one of"):
    reinforce(NB201, policy="gru")
  with pytest.raises(ValueError, match="clip_ratio"):
    ppo(NB201, clip_ratio=1.5)
  with pytest.raises(ValueError, match="baseline_decay"):
    reinforce(NB201, baseline_decay=1.0)
  with pytest.raises(ValueError, match="failure_reward"):
    ppo(NB201, failure_reward="max")
  with pytest.raises(ValueError, match="normalize_advantages"):
    ppo(NB201, num_asks=1, normalize_advantages=True)
  with pytest.raises(ValueError, match="temperature"):
    reinforce(NB201, temperature=0.0)
