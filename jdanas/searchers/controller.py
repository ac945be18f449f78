"""Policy-gradient controllers: REINFORCE (ENAS style) and PPO (NASNet / MnasNet / AKD style).

A controller is a stochastic policy over a space's decisions, trained on the scores it is told:

* ``reinforce``: the ENAS controller (Pham et al., "Efficient Neural Architecture Search via
  Parameter Sharing", ICML 2018, https://arxiv.org/abs/1802.03268), which Oracle-KD NAS (Kang,
  Mun, Han, AAAI 2020) reuses: one policy-gradient step per ``tell`` with an exponential moving
  average (EMA) reward baseline and an entropy bonus.
* ``ppo``: the clipped surrogate objective of PPO (Schulman et al., 2017,
  https://arxiv.org/abs/1707.06347) as used by the NASNet and MnasNet controllers (Zoph et al.,
  CVPR 2018; Tan et al., CVPR 2019) and by AKD (Liu et al., "Search to Distill: Pearls are
  Everywhere but not the Eyes", CVPR 2020): several epochs over the told batch, ratio clipped to
  ``1 +- clip_ratio``, advantage = reward - EMA baseline.

Both are ordinary searchers (``init / ask / tell`` of :mod:`jdanas.searchers.base`); defaults and
their sources are listed in ``docs/methods/akd.md`` ("Controllers").

The policy (:func:`controller_policy`) emits one categorical token per decision, in decision
order. ``policy="lstm"``: an autoregressive LSTM (one layer, ``hidden_size`` units) whose input at
step ``d`` is a learned embedding of the token chosen at step ``d - 1`` (a learned start embedding
at step 0), with one linear head per decision (the NASNet/ENAS/MnasNet controller).
``policy="factorized"``: independent logits per decision (no recurrence). Logits are padded to
the largest cardinality K; tokens a decision does not have get ``-inf`` logits, so every sample
is a valid encoding. ENAS's logit tricks are options: ``logits / temperature`` then
``tanh_constant * tanh(.)``.

Conditional spaces (``space.active``, e.g. the TRADE space's per-family knobs): a decision that
is inactive given the tokens before it is set to 0 while sampling (so samples are canonical) and
contributes neither log-probability nor entropy. This is exact when a decision's activity depends
only on earlier decisions, as in every jdanas space (the family comes first).

Rewards: a score that is NaN or infinite (a failed evaluation) gets ``failure_reward`` (a number,
or ``"min"``: the lowest finite score of the batch), so no NaN ever reaches the gradient; with
``"min"`` a batch without any finite score leaves the policy and the baseline unchanged.

PPO's "old" log-probabilities are those of the policy that asked. The parameters change only in
``tell``, so ``tell`` recomputes them (under ``stop_gradient``) for the encodings it is told,
before its first epoch; the first epoch's ratio is exactly 1. This stays right when a wrapper
(:func:`jdanas.searchers.with_constraint`, :func:`jdanas.searchers.with_dedup`) replaces rows of
an ask by redraws from the same policy, where log-probs stored at ask time would belong to the
rows that were replaced.

Budgets: impossible tokens are masked in the policy, but a cost budget (``feasible``) is not:
with ``feasible`` the factory wraps itself in :func:`jdanas.searchers.with_constraint`, which
rejects infeasible proposals and redraws them from the same policy.

The categorical log-probability and entropy are a few lines here (:func:`categorical_log_prob`)
rather than ``distrax``/``rlax``: neither is installed, both would pull in
TensorFlow-Probability-on-JAX (distrax) or extra pins for two formulas, and the masked
``-inf`` logits need the guarded entropy written out anyway.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jdanas.searchers.base import (Archive, Searcher, archive_add, archive_init, check_sizes,
                                   tell_metrics)
from jdanas.searchers.wrappers import Predicate, constrained
from jdanas.spaces.base import AbstractSearchSpace

POLICIES = ("lstm", "factorized")


def _uniform(scale: float) -> Callable:
  """ENAS's initialiser: every controller weight uniform in ``[-scale, scale]``."""
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)
  return init


class LSTMPolicyNet(nn.Module):
  """One LSTM step of the autoregressive policy: previous token id -> (carry, raw logits[K]).

  Token ids: decision ``d``'s token ``t`` is ``offsets[d] + t``; the start token is
  ``sum(num_choices)``. ``head_kernel[d]`` / ``head_bias[d]`` are decision ``d``'s softmax head.
  """
  num_choices: tuple[int, ...]
  hidden_size: int
  init_range: float

  def setup(self):
    init = _uniform(self.init_range)
    d, k = len(self.num_choices), max(self.num_choices)
    self.cell = nn.LSTMCell(self.hidden_size, kernel_init=init, recurrent_kernel_init=init)
    self.embed = nn.Embed(sum(self.num_choices) + 1, self.hidden_size, embedding_init=init)
    self.head_kernel = self.param("head_kernel", init, (d, self.hidden_size, k))
    self.head_bias = self.param("head_bias", nn.initializers.zeros, (d, k))

  def __call__(self, carry, token_id, position):
    carry, h = self.cell(carry, self.embed(token_id))
    return carry, h @ self.head_kernel[position] + self.head_bias[position]


class Policy(NamedTuple):
  """Pure functions of a controller policy (built by :func:`controller_policy`).

  * ``init(key) -> params``
  * ``sample(params, key) -> int32[D]``: a valid, canonical encoding.
  * ``logits(params, enc int32[D]) -> float32[D, K]``: the shaped, masked logits of each
    decision given the tokens of ``enc`` before it (teacher forcing).
  * ``log_prob(params, enc) -> (log_prob float32[], entropy float32[])``: log-probability of
    ``enc`` and the sum of the per-decision (conditional) entropies, active decisions only.
  """
  init: Callable[[jax.Array], Any]
  sample: Callable[[Any, jax.Array], jax.Array]
  logits: Callable[[Any, jax.Array], jax.Array]
  log_prob: Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]]


def categorical_log_prob(logits: jax.Array, tokens: jax.Array,
                         valid: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Log-probability and entropy of categoricals with masked choices.

  Args:
    logits: ``float32[..., K]``; entries where ``valid`` is False are ignored (may be -inf).
    tokens: ``int32[...]`` chosen indices (must be valid choices).
    valid: ``bool[..., K]`` choices that exist.

  Returns:
    ``(log_prob float32[...], entropy float32[...])``, finite with finite gradients even where
    choices are masked (the masked terms are zeroed before the product ``p * log p``).
  """
  logp = jax.nn.log_softmax(jnp.where(valid, logits, -jnp.inf), axis=-1)
  chosen = jnp.take_along_axis(logp, tokens[..., None], axis=-1)[..., 0]
  safe = jnp.where(valid, logp, 0.0)
  return chosen, -jnp.sum(jnp.exp(safe) * jnp.where(valid, safe, 0.0), axis=-1)


def controller_policy(space: AbstractSearchSpace, *, policy: str = "lstm", hidden_size: int = 100,
                      tanh_constant: float | None = None, temperature: float | None = None,
                      init_range: float = 0.1) -> Policy:
  """The controller's policy over ``space`` (see the module docstring).

  Args:
    space: the search space (``num_choices`` and ``active`` are read).
    policy: ``"lstm"`` (autoregressive) or ``"factorized"`` (independent logits, initialised to 0,
      i.e. the uniform distribution).
    hidden_size: LSTM units (and embedding size); ``"lstm"`` only.
    tanh_constant: ENAS: logits become ``tanh_constant * tanh(logits)`` (None = off).
    temperature: ENAS: logits are divided by ``temperature`` first (None = off).
    init_range: LSTM weights start uniform in ``[-init_range, init_range]`` (ENAS: 0.1).

  Returns:
    A :class:`Policy`.
  """
  if policy not in POLICIES:
    raise ValueError(f"controller: policy must be one of {', '.join(POLICIES)}, got {policy!r}")
  check_sizes("controller", hidden_size=hidden_size)
  for name, v in (("tanh_constant", tanh_constant), ("temperature", temperature)):
    if v is not None and not v > 0:
      raise ValueError(f"controller: {name} must be > 0 or None, got {v!r}")
  n = tuple(int(c) for c in space.num_choices)
  d, k = len(n), max(n)
  valid = jnp.asarray(np.arange(k)[None, :] < np.asarray(n)[:, None])  # bool[D, K]
  offsets = jnp.asarray(np.concatenate([[0], np.cumsum(n)[:-1]]), jnp.int32)
  start = jnp.asarray(sum(n), jnp.int32)
  positions = jnp.arange(d, dtype=jnp.int32)

  def shape(raw: jax.Array, position: jax.Array) -> jax.Array:
    if temperature is not None:
      raw = raw / temperature
    if tanh_constant is not None:
      raw = tanh_constant * jnp.tanh(raw)
    return jnp.where(valid[position], raw, -jnp.inf)

  def pick(logits: jax.Array, key: jax.Array, enc: jax.Array, position: jax.Array) -> jax.Array:
    """Samples decision ``position``; 0 when it is inactive given the tokens before it."""
    token = jax.random.categorical(key, logits).astype(jnp.int32)
    on = space.active(enc.at[position].set(token))[position]
    return jnp.where(on, token, 0).astype(jnp.int32)

  if policy == "lstm":
    net = LSTMPolicyNet(n, hidden_size, init_range)
    carry0 = (jnp.zeros((hidden_size,), jnp.float32), jnp.zeros((hidden_size,), jnp.float32))

    def init(key):
      return net.init(key, carry0, start, jnp.zeros((), jnp.int32))

    def logits_fn(params, enc):
      enc = jnp.asarray(enc, jnp.int32)
      previous = jnp.concatenate([start[None], offsets[:-1] + enc[:-1]])

      def body(carry, xs):
        token_id, position = xs
        carry, raw = net.apply(params, carry, token_id, position)
        return carry, shape(raw, position)

      return jax.lax.scan(body, carry0, (previous, positions))[1]

    def sample(params, key):
      def body(carry, xs):
        state, token_id, enc = carry
        key_d, position = xs
        state, raw = net.apply(params, state, token_id, position)
        token = pick(shape(raw, position), key_d, enc, position)
        return (state, offsets[position] + token, enc.at[position].set(token)), None

      init_carry = (carry0, start, jnp.zeros((d,), jnp.int32))
      (_, _, enc), _ = jax.lax.scan(body, init_carry, (jax.random.split(key, d), positions))
      return space.canonicalize(enc).astype(jnp.int32)
  else:
    def init(key):
      del key  # uniform start
      return {"params": {"logits": jnp.zeros((d, k), jnp.float32)}}

    def logits_fn(params, enc):
      del enc  # independent decisions
      return jax.vmap(shape)(params["params"]["logits"], positions)

    def sample(params, key):
      logits = logits_fn(params, None)

      def body(enc, xs):
        key_d, position = xs
        return enc.at[position].set(pick(logits[position], key_d, enc, position)), None

      enc, _ = jax.lax.scan(body, jnp.zeros((d,), jnp.int32), (jax.random.split(key, d), positions))
      return space.canonicalize(enc).astype(jnp.int32)

  def log_prob(params, enc):
    enc = jnp.asarray(enc, jnp.int32)
    lp, ent = categorical_log_prob(logits_fn(params, enc), enc, valid)
    on = space.active(enc)
    return jnp.sum(jnp.where(on, lp, 0.0)), jnp.sum(jnp.where(on, ent, 0.0))

  return Policy(init, sample, logits_fn, log_prob)


@flax.struct.dataclass
class ControllerState:
  """Attributes:
    params: the policy's Flax variables.
    opt_state: the optax state of the policy optimizer.
    baseline: ``float32[]`` EMA of the rewards (meaningful once ``baseline_ready``).
    baseline_ready: ``bool[]`` whether a reward has been seen (the first batch's mean starts it).
    step: ``int32[]`` policy updates taken (tells whose batch had a usable reward).
    archive: every evaluated architecture (capacity N, best-first; see :class:`Archive`).
    num_asked: ``int32[]`` proposals made so far.
  """
  params: Any
  opt_state: Any
  baseline: jax.Array
  baseline_ready: jax.Array
  step: jax.Array
  archive: Archive
  num_asked: jax.Array


def rewards_from_scores(scores: jax.Array, failure_reward: float | str) -> tuple[jax.Array, jax.Array]:
  """Rewards for a batch of scores, and whether the batch can update the policy.

  Args:
    scores: ``float32[Q]``, NaN or +-inf for failed evaluations.
    failure_reward: a number for failed rows, or ``"min"`` (the batch's lowest finite score).

  Returns:
    ``(rewards float32[Q], usable bool[])``; rewards are always finite. With ``"min"`` and no
    finite score, ``usable`` is False (the rewards are then zeros and must not be used).
  """
  scores = jnp.asarray(scores, jnp.float32)
  ok = jnp.isfinite(scores)
  if failure_reward == "min":
    fill = jnp.min(jnp.where(ok, scores, jnp.inf))
    usable = jnp.any(ok)
    fill = jnp.where(usable, fill, 0.0)
  else:
    fill, usable = jnp.float32(failure_reward), jnp.ones((), bool)
  return jnp.where(ok, scores, fill).astype(jnp.float32), usable


def ema_baseline(baseline: jax.Array, rewards: jax.Array, decay: float) -> jax.Array:
  """The EMA after the rewards of a batch, one update per reward in order:
  ``b <- decay * b + (1 - decay) * r`` (ENAS's baseline with batch size 1)."""
  q = rewards.shape[0]
  weights = (1.0 - decay) * decay ** jnp.arange(q - 1, -1, -1, dtype=jnp.float32)
  return (decay ** q) * baseline + jnp.sum(weights * rewards)


def ppo_objective(log_probs: jax.Array, old_log_probs: jax.Array, advantages: jax.Array,
                  clip_ratio: float) -> tuple[jax.Array, jax.Array]:
  """PPO's clipped surrogate (to maximise) and the fraction of clipped rows.

  ``mean(min(rho * A, clip(rho, 1 - eps, 1 + eps) * A))`` with ``rho = exp(log_probs -
  old_log_probs)`` (Schulman et al., 2017, Eq. 7).
  """
  ratio = jnp.exp(log_probs - old_log_probs)
  clipped = jnp.clip(ratio, 1.0 - clip_ratio, 1.0 + clip_ratio)
  surrogate = jnp.mean(jnp.minimum(ratio * advantages, clipped * advantages))
  return surrogate, jnp.mean((jnp.abs(ratio - 1.0) > clip_ratio).astype(jnp.float32))


def _controller(space: AbstractSearchSpace, *, algorithm: str, num_asks: int, capacity: int,
                policy: str, hidden_size: int, learning_rate: float, baseline_decay: float,
                entropy_weight: float, tanh_constant: float | None, temperature: float | None,
                failure_reward: float | str, init_range: float, max_grad_norm: float | None,
                clip_ratio: float, num_epochs: int, normalize_advantages: bool,
                feasible: Predicate | None) -> Searcher:
  """The shared body of :func:`reinforce` and :func:`ppo` (``algorithm`` picks the update)."""
  check_sizes(algorithm, num_asks=num_asks, capacity=capacity, num_epochs=num_epochs)
  if not 0.0 <= baseline_decay < 1.0:
    raise ValueError(f"{algorithm}: baseline_decay must be in [0, 1), got {baseline_decay!r}")
  if not learning_rate > 0:
    raise ValueError(f"{algorithm}: learning_rate must be > 0, got {learning_rate!r}")
  if not entropy_weight >= 0:
    raise ValueError(f"{algorithm}: entropy_weight must be >= 0, got {entropy_weight!r}")
  if failure_reward != "min" and not (isinstance(failure_reward, (int, float))
                                      and np.isfinite(failure_reward)):
    raise ValueError(f"{algorithm}: failure_reward must be 'min' or a finite number, got {failure_reward!r}")
  if not 0.0 < clip_ratio < 1.0:
    raise ValueError(f"{algorithm}: clip_ratio must be in (0, 1), got {clip_ratio!r}")
  if max_grad_norm is not None and not max_grad_norm > 0:
    raise ValueError(f"{algorithm}: max_grad_norm must be > 0 or None, got {max_grad_norm!r}")
  if normalize_advantages and num_asks < 2:
    raise ValueError(f"{algorithm}: normalize_advantages needs num_asks >= 2, got {num_asks}")
  pi = controller_policy(space, policy=policy, hidden_size=hidden_size, tanh_constant=tanh_constant,
                         temperature=temperature, init_range=init_range)
  adam = optax.adam(learning_rate)
  optimizer = adam if max_grad_norm is None else optax.chain(optax.clip_by_global_norm(max_grad_norm), adam)
  batch_log_prob = jax.vmap(pi.log_prob, in_axes=(None, 0))
  d = space.num_decisions

  def init(key: jax.Array) -> ControllerState:
    params = pi.init(key)
    return ControllerState(params=params, opt_state=optimizer.init(params),
                           baseline=jnp.zeros((), jnp.float32), baseline_ready=jnp.zeros((), bool),
                           step=jnp.zeros((), jnp.int32), archive=archive_init(capacity, d),
                           num_asked=jnp.zeros((), jnp.int32))

  def ask(key: jax.Array, state: ControllerState) -> tuple[jax.Array, ControllerState]:
    encs = jax.vmap(pi.sample, in_axes=(None, 0))(state.params, jax.random.split(key, num_asks))
    return encs, state.replace(num_asked=state.num_asked + num_asks)

  def reinforce_loss(params, encs, advantages):
    log_probs, entropy = batch_log_prob(params, encs)
    loss = -jnp.mean(advantages * log_probs) - entropy_weight * jnp.mean(entropy)
    return loss, {"entropy": jnp.mean(entropy), "clip_fraction": jnp.zeros((), jnp.float32)}

  def ppo_loss(params, encs, advantages, old_log_probs):
    log_probs, entropy = batch_log_prob(params, encs)
    surrogate, clip_fraction = ppo_objective(log_probs, old_log_probs, advantages, clip_ratio)
    loss = -surrogate - entropy_weight * jnp.mean(entropy)
    return loss, {"entropy": jnp.mean(entropy), "clip_fraction": clip_fraction}

  def update(params, opt_state, encs, advantages):
    """Policy-gradient step(s): REINFORCE one, PPO ``num_epochs`` over the batch."""
    if algorithm == "reinforce":
      (loss, aux), grads = jax.value_and_grad(reinforce_loss, has_aux=True)(params, encs, advantages)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state, loss, aux
    old_log_probs = jax.lax.stop_gradient(batch_log_prob(params, encs)[0])

    def epoch(carry, _):
      params, opt_state = carry
      (loss, aux), grads = jax.value_and_grad(ppo_loss, has_aux=True)(params, encs, advantages,
                                                                      old_log_probs)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), (loss, aux)

    (params, opt_state), (loss, aux) = jax.lax.scan(epoch, (params, opt_state), None, length=num_epochs)
    return params, opt_state, loss[-1], jax.tree.map(lambda a: a[-1], aux)

  def tell(key: jax.Array, state: ControllerState, encodings: jax.Array, scores: jax.Array,
           **extra: Any) -> tuple[ControllerState, dict[str, jax.Array]]:
    del key, extra  # deterministic; extra keywords (cost, ...) are not used
    encodings = jnp.asarray(encodings, jnp.int32)
    scores = jnp.asarray(scores, jnp.float32)
    archive = archive_add(state.archive, encodings, scores)
    rewards, usable = rewards_from_scores(scores, failure_reward)
    baseline = jnp.where(state.baseline_ready, state.baseline, jnp.mean(rewards))
    advantages = rewards - baseline
    if normalize_advantages:
      advantages = (advantages - jnp.mean(advantages)) / (jnp.std(advantages) + 1e-8)
    encs = jax.vmap(space.canonicalize)(encodings).astype(jnp.int32)
    params, opt_state, loss, aux = update(state.params, state.opt_state, encs, advantages)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(usable, a, b), new, old)
    state = state.replace(params=keep(params, state.params), opt_state=keep(opt_state, state.opt_state),
                          baseline=jnp.where(usable, ema_baseline(baseline, rewards, baseline_decay),
                                             state.baseline),
                          baseline_ready=state.baseline_ready | usable,
                          step=state.step + usable.astype(jnp.int32), archive=archive)
    metrics = tell_metrics(archive, scores)
    metrics.update(baseline=state.baseline, mean_reward=jnp.where(usable, jnp.mean(rewards), jnp.nan),
                   policy_loss=jnp.where(usable, loss, jnp.nan), entropy=aux["entropy"],
                   clip_fraction=aux["clip_fraction"])
    return state, metrics

  return constrained(Searcher(init, ask, tell), feasible)


def reinforce(space: AbstractSearchSpace, *, num_asks: int = 8, capacity: int = 1024,
              policy: str = "lstm", hidden_size: int = 100, learning_rate: float = 3.5e-4,
              baseline_decay: float = 0.99, entropy_weight: float = 1e-4,
              tanh_constant: float | None = 2.5, temperature: float | None = 5.0,
              failure_reward: float | str = "min", init_range: float = 0.1,
              max_grad_norm: float | None = None, feasible: Predicate | None = None) -> Searcher:
  """REINFORCE controller with an EMA baseline and an entropy bonus (ENAS's controller).

  Each ``tell`` takes one Adam step on ``-mean((r - b) * log pi(a)) - entropy_weight *
  mean(H)``, where ``b`` is the EMA baseline before the batch (the first batch's mean reward
  starts it) and ``H`` the sum of the per-decision entropies. Defaults are ENAS's (Pham et al.,
  ICML 2018), see ``docs/methods/akd.md``.

  Args:
    space: the search space.
    num_asks: Q, proposals per ``ask`` (the policy-gradient batch).
    capacity: N, rows of the archive that tracks the incumbent.
    policy: ``"lstm"`` or ``"factorized"`` (see :func:`controller_policy`).
    hidden_size: LSTM units.
    learning_rate: Adam learning rate.
    baseline_decay: EMA decay per evaluated architecture.
    entropy_weight: weight of the entropy bonus.
    tanh_constant: ENAS logit squashing ``c * tanh(logits)`` (None = off).
    temperature: ENAS logit temperature, applied before the tanh (None = off).
    failure_reward: reward of a failed (NaN / inf) score: a number or ``"min"``.
    init_range: LSTM weights start uniform in ``[-init_range, init_range]``.
    max_grad_norm: optional global-norm gradient clipping.
    feasible: optional jittable ``int32[D] -> bool[]`` budget predicate; infeasible proposals are
      rejected and redrawn from the policy by :func:`jdanas.searchers.with_constraint`.

  Returns:
    A :class:`Searcher` with :class:`ControllerState`; ``tell`` adds ``baseline``,
    ``mean_reward``, ``policy_loss``, ``entropy`` and ``clip_fraction`` (0) to the usual metrics.

  >>> from jdanas.spaces import get_space
  >>> s = reinforce(get_space("nb201"), num_asks=2, hidden_size=8)
  >>> encs, state = s.ask(jax.random.key(1), s.init(jax.random.key(0)))
  >>> encs.shape, encs.dtype
  ((2, 6), dtype('int32'))
  """
  return _controller(space, algorithm="reinforce", num_asks=num_asks, capacity=capacity, policy=policy,
                     hidden_size=hidden_size, learning_rate=learning_rate, baseline_decay=baseline_decay,
                     entropy_weight=entropy_weight, tanh_constant=tanh_constant, temperature=temperature,
                     failure_reward=failure_reward, init_range=init_range, max_grad_norm=max_grad_norm,
                     clip_ratio=0.2, num_epochs=1, normalize_advantages=False, feasible=feasible)


def ppo(space: AbstractSearchSpace, *, num_asks: int = 8, capacity: int = 1024, policy: str = "lstm",
        hidden_size: int = 100, learning_rate: float = 3.5e-4, baseline_decay: float = 0.95,
        entropy_weight: float = 1e-4, clip_ratio: float = 0.2, num_epochs: int = 4,
        normalize_advantages: bool = False, tanh_constant: float | None = None,
        temperature: float | None = None, failure_reward: float | str = "min", init_range: float = 0.1,
        max_grad_norm: float | None = None, feasible: Predicate | None = None) -> Searcher:
  """PPO controller (NASNet / MnasNet / AKD): clipped surrogate, several epochs per batch.

  Each ``tell`` takes ``num_epochs`` full-batch Adam steps on ``-mean(min(rho A, clip(rho, 1 -
  eps, 1 + eps) A)) - entropy_weight * mean(H)``, with ``rho`` the ratio to the policy that
  asked, ``A = r - b`` (``b`` the EMA baseline before the batch; optionally normalised over the
  batch) and ``eps = clip_ratio``. Defaults: see ``docs/methods/akd.md``.

  Args:
    space: the search space.
    num_asks: Q, proposals per ``ask`` (the PPO batch).
    capacity: N, rows of the archive that tracks the incumbent.
    policy: ``"lstm"`` or ``"factorized"`` (see :func:`controller_policy`).
    hidden_size: LSTM units.
    learning_rate: Adam learning rate.
    baseline_decay: EMA decay per evaluated architecture (AKD notes: 0.95).
    entropy_weight: weight of the entropy bonus.
    clip_ratio: PPO's epsilon (0.2).
    num_epochs: gradient steps over each told batch.
    normalize_advantages: standardise the advantages over the batch (needs Q >= 2).
    tanh_constant: ENAS logit squashing (None = off).
    temperature: ENAS logit temperature (None = off).
    failure_reward: reward of a failed (NaN / inf) score: a number or ``"min"``.
    init_range: LSTM weights start uniform in ``[-init_range, init_range]``.
    max_grad_norm: optional global-norm gradient clipping.
    feasible: optional budget predicate, applied by :func:`jdanas.searchers.with_constraint`.

  Returns:
    A :class:`Searcher` with :class:`ControllerState`; ``tell`` adds ``baseline``,
    ``mean_reward``, ``policy_loss``, ``entropy`` and ``clip_fraction`` (last epoch) to the
    usual metrics.
  """
  return _controller(space, algorithm="ppo", num_asks=num_asks, capacity=capacity, policy=policy,
                     hidden_size=hidden_size, learning_rate=learning_rate, baseline_decay=baseline_decay,
                     entropy_weight=entropy_weight, tanh_constant=tanh_constant, temperature=temperature,
                     failure_reward=failure_reward, init_range=init_range, max_grad_norm=max_grad_norm,
                     clip_ratio=clip_ratio, num_epochs=num_epochs,
                     normalize_advantages=normalize_advantages, feasible=feasible)
