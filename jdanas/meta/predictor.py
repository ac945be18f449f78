"""The DaSS meta accuracy predictor and its Meta-SGD training (Lee, An, Kim, Hwang, ICLR 2023).

The predictor reads a task through its teacher and a candidate student through three inputs:

* the student's functional embedding (:func:`jdanas.meta.embed_students`), encoded by a small conv net
  (3x3 stride-2 conv -> ReLU -> 3x3 stride-2 conv -> ReLU -> global average pool);
* the teacher's functional embedding, encoded by a second conv net of the same shape (own weights);
* the architecture vector (:func:`jdanas.spaces.dass.encoding_features`) through one linear layer;

concatenated and mapped by ``Dense(h) -> tanh -> Dense(1)`` to the predicted KD accuracy. The official
defaults are ``hidden_channels=128``, ``out_channels=256``, ``h_dim=64``.

Meta-training (Li et al.'s Meta-SGD, 2017): each task adapts the predictor with ONE gradient step on its
support set — the teacher itself, whose accuracy on the task is known: input (teacher arch, teacher map
as the "student" map, teacher map), target the teacher's accuracy — with learnable per-parameter step
sizes ``alpha`` (init 0.005 as in the official run script); the outer loss is the query students' MSE under
the adapted parameters, averaged over tasks, minimised by Adam (lr 5e-4) over the weights and the step
sizes together. Second-order by default (``first_order=False``: gradients flow through the inner step).

Targets (``target=``): ``"percent"`` is the official, faithful form (accuracies in percent, unbounded
linear output); ``"relative"`` divides every label by the task's teacher accuracy (the support target is
then 1), a per-task normalisation that needs nothing but the support, as DaSS's meta-test has.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

TARGETS = ("percent", "relative")


class MapEncoder(nn.Module):
  hidden_channels: int = 128
  out_channels: int = 256

  @nn.compact
  def __call__(self, x):
    pad = ((1, 1), (1, 1))
    x = nn.relu(nn.Conv(self.hidden_channels, (3, 3), (2, 2), pad, use_bias=False, name="conv1")(x))
    x = nn.relu(nn.Conv(self.out_channels, (3, 3), (2, 2), pad, use_bias=False, name="conv2")(x))
    return jnp.mean(x, axis=(-3, -2))


class DassPredictor(nn.Module):
  """``apply(params, student_maps [N,h,w,C], teacher_map [h,w,C], arch [N,F]) -> float32[N]``."""
  hidden_channels: int = 128
  out_channels: int = 256
  h_dim: int = 64
  use_maps: bool = True  # False: the "without functional embedding" ablation (arch + teacher only)

  @nn.compact
  def __call__(self, student_maps, teacher_map, arch):
    n = arch.shape[0]
    t = MapEncoder(self.hidden_channels, self.out_channels, name="teacher_encoder")(teacher_map[None])
    parts = [nn.Dense(self.h_dim, name="arch")(arch), jnp.broadcast_to(t, (n, t.shape[-1]))]
    if self.use_maps:
      parts.insert(0, MapEncoder(self.hidden_channels, self.out_channels, name="student_encoder")(student_maps))
    h = jnp.tanh(nn.Dense(self.h_dim, name="head1")(jnp.concatenate(parts, axis=-1)))
    return nn.Dense(1, name="head2")(h)[:, 0]


class Task(NamedTuple):
  """One (dataset, teacher) task, arrays only (stack tasks on a leading axis for a meta-batch).

  ``maps [n, h, w, C]``, ``arch [n, F]``, ``labels [n]``: the labelled students (KD accuracy in percent);
  ``teacher_map [h, w, C]``, ``teacher_arch [F]``, ``teacher_label []``: the support (the teacher).
  """
  maps: jax.Array
  arch: jax.Array
  labels: jax.Array
  teacher_map: jax.Array
  teacher_arch: jax.Array
  teacher_label: jax.Array


@dataclasses.dataclass(frozen=True)
class MetaConfig:
  """Meta-SGD settings (official defaults): inner step sizes initialised to ``alpha_init``, outer Adam
  learning rate ``learning_rate``, second-order unless ``first_order``, ``target`` in :data:`TARGETS`."""
  alpha_init: float = 0.005
  learning_rate: float = 5e-4
  first_order: bool = False
  target: str = "percent"

  def __post_init__(self):
    if self.target not in TARGETS:
      raise ValueError(f"meta.target: must be one of {', '.join(TARGETS)}, got {self.target!r}")
    if not (self.alpha_init > 0 and self.learning_rate > 0):
      raise ValueError("meta.alpha_init and meta.learning_rate must be positive")


class MetaState(NamedTuple):
  params: Any
  alphas: Any
  opt_state: Any
  step: jax.Array


def _scale(task: Task, target: str) -> jax.Array:
  return task.teacher_label if target == "relative" else jnp.ones((), jnp.float32)


def support_loss(model: DassPredictor, params, task: Task, target: str) -> jax.Array:
  """MSE of the teacher-only support set (the teacher as its own student)."""
  pred = model.apply({"params": params}, task.teacher_map[None], task.teacher_map, task.teacher_arch[None])
  return jnp.mean((pred - task.teacher_label / _scale(task, target)) ** 2)


def query_loss(model: DassPredictor, params, task: Task, target: str) -> jax.Array:
  pred = model.apply({"params": params}, task.maps, task.teacher_map, task.arch)
  return jnp.mean((pred - task.labels / _scale(task, target)) ** 2)


def inner_step(support_fn, params, alphas, *, first_order: bool = False):
  """Meta-SGD's inner step: ``params - alphas * grad support_fn(params)`` (the gradient is treated as a
  constant when ``first_order``). Generic over any pytree of parameters."""
  g = jax.grad(support_fn)(params)
  if first_order:
    g = jax.lax.stop_gradient(g)
  return jax.tree.map(lambda p, a, d: p - a * d, params, alphas, g)


def adapt(model: DassPredictor, params, alphas, task: Task, *, target: str = "percent",
          first_order: bool = False):
  """The predictor adapted to ``task`` by one inner step on its teacher-only support."""
  return inner_step(lambda p: support_loss(model, p, task, target), params, alphas, first_order=first_order)


def predict(model: DassPredictor, params, task: Task, *, target: str = "percent") -> jax.Array:
  """Predicted KD accuracies (percent) of ``task``'s students under ``params`` (adapted or not)."""
  pred = model.apply({"params": params}, task.maps, task.teacher_map, task.arch)
  return pred * _scale(task, target)


def meta_init(key: jax.Array, model: DassPredictor, example: Task, config: MetaConfig) -> MetaState:
  params = model.init(key, example.maps, example.teacher_map, example.arch)["params"]
  alphas = jax.tree.map(lambda p: jnp.full_like(p, config.alpha_init), params)
  return MetaState(params, alphas, optax.adam(config.learning_rate).init((params, alphas)),
                   jnp.zeros((), jnp.int32))


def meta_loss(model: DassPredictor, params, alphas, tasks: Task, config: MetaConfig) -> jax.Array:
  """Mean over the stacked ``tasks`` of the query MSE after one adaptation step on each support."""
  def one(task):
    adapted = adapt(model, params, alphas, task, target=config.target, first_order=config.first_order)
    return query_loss(model, adapted, task, config.target)
  return jnp.mean(jax.vmap(one)(tasks))


@functools.partial(jax.jit, static_argnums=(0, 1))
def meta_step(model: DassPredictor, config: MetaConfig, state: MetaState, tasks: Task):
  """One outer Adam step on (weights, step sizes) over a meta-batch of stacked tasks."""
  loss, grads = jax.value_and_grad(lambda pa: meta_loss(model, pa[0], pa[1], tasks, config))(
      (state.params, state.alphas))
  updates, opt_state = optax.adam(config.learning_rate).update(grads, state.opt_state)
  params, alphas = optax.apply_updates((state.params, state.alphas), updates)
  return MetaState(params, alphas, opt_state, state.step + 1), loss


def sample_queries(key: jax.Array, pools: Task, num_queries: int) -> Task:
  """Each stacked task's query set: ``num_queries`` students drawn without replacement from its pool."""
  def one(k, task):
    idx = jax.random.permutation(k, task.labels.shape[0])[:num_queries]
    return task._replace(maps=task.maps[idx], arch=task.arch[idx], labels=task.labels[idx])
  return jax.vmap(one)(jax.random.split(key, pools.labels.shape[0]), pools)


def spearman(model: DassPredictor, params, alphas, tasks: list[Task], config: MetaConfig, *,
             adapted: bool = True) -> list[float]:
  """Spearman rho between predicted and true labels of each task's whole pool (after the one-step
  teacher adaptation unless ``adapted=False``)."""
  from scipy.stats import spearmanr
  out = []
  for task in tasks:
    p = adapt(model, params, alphas, task, target=config.target, first_order=True) if adapted else params
    out.append(float(spearmanr(predict(model, p, task, target=config.target), task.labels).statistic))
  return out


def meta_train(key: jax.Array, model: DassPredictor, config: MetaConfig, train_tasks: Task,
               val_tasks: list[Task], *, episodes: int = 1000, num_queries: int = 50, eval_every: int = 20,
               progress=None) -> tuple[MetaState, dict]:
  """Meta-trains on the stacked ``train_tasks`` (every episode uses every task, ``num_queries`` query
  students each, drawn with ``fold_in(key, episode)`` of a split of ``key``); every ``eval_every`` episodes the mean Spearman on
  ``val_tasks`` picks the kept state (ties: the earlier). Returns ``(best state, history)``."""
  if num_queries > train_tasks.labels.shape[1]:
    raise ValueError(f"meta_train: num_queries={num_queries} exceeds the {train_tasks.labels.shape[1]} "
                     "labelled students per task")
  init_key, key = jax.random.split(key)
  state = meta_init(init_key, model, jax.tree.map(lambda a: a[0], train_tasks), config)
  best, best_rho, history = state, -float("inf"), {"episode": [], "loss": [], "val_spearman": []}
  for episode in range(episodes):
    queries = sample_queries(jax.random.fold_in(key, episode), train_tasks, num_queries)
    state, loss = meta_step(model, config, state, queries)
    if (episode + 1) % eval_every == 0 or episode + 1 == episodes:
      rho = float(np.mean(spearman(model, state.params, state.alphas, val_tasks, config)))
      history["episode"].append(episode + 1)
      history["loss"].append(float(loss))
      history["val_spearman"].append(rho)
      if progress is not None:
        progress(episode + 1, float(loss), rho)
      if rho > best_rho:
        best, best_rho = state, rho
  return best, history


def save_predictor(path, model: DassPredictor, config: MetaConfig, state: MetaState, *, meta: dict | None = None):
  """Writes ``predictor.json`` (model and Meta-SGD settings) and an orbax checkpoint of the weights and
  step sizes under ``path``."""
  import json
  import pathlib

  import orbax.checkpoint as ocp

  from jdanas.parallel import process_local_orbax
  path = pathlib.Path(path).absolute()
  path.mkdir(parents=True, exist_ok=True)
  with ocp.StandardCheckpointer(multiprocessing_options=process_local_orbax()) as ckptr:
    ckptr.save(path / "weights", jax.device_get({"params": state.params, "alphas": state.alphas}), force=True)
  info = {"model": dataclasses.asdict(_model_fields(model)), "config": dataclasses.asdict(config), "meta": meta or {}}
  (path / "predictor.json").write_text(json.dumps(info, indent=2))
  return path


@dataclasses.dataclass(frozen=True)
class _ModelFields:
  hidden_channels: int
  out_channels: int
  h_dim: int
  use_maps: bool


def _model_fields(model: DassPredictor) -> _ModelFields:
  return _ModelFields(model.hidden_channels, model.out_channels, model.h_dim, model.use_maps)


def load_predictor(path, example: Task):
  """``(model, config, params, alphas, meta)`` from :func:`save_predictor`'s directory; ``example`` (any
  task of the same shapes) gives the structure to restore into."""
  import json
  import pathlib

  import orbax.checkpoint as ocp

  from jdanas.parallel import process_local_orbax
  path = pathlib.Path(path).absolute()
  if not (path / "predictor.json").exists():
    raise FileNotFoundError(f"predictor: no predictor.json in {path}")
  info = json.loads((path / "predictor.json").read_text())
  model, config = DassPredictor(**info["model"]), MetaConfig(**info["config"])
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), example.maps, example.teacher_map,
                                               example.arch)["params"])
  with ocp.StandardCheckpointer(multiprocessing_options=process_local_orbax()) as ckptr:
    weights = ckptr.restore(path / "weights", {"params": abstract, "alphas": abstract})
  return model, config, weights["params"], weights["alphas"], info.get("meta", {})


def rank_candidates(model: DassPredictor, config: MetaConfig, params, alphas, task: Task, *,
                    adapt_to_teacher: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """DaSS's meta-test: adapt once on ``task``'s teacher (unless ``adapt_to_teacher=False``), predict
  every candidate in ``task`` (its ``labels`` are ignored) and return ``(order best-first, predictions)``."""
  p = adapt(model, params, alphas, task, target=config.target, first_order=True) if adapt_to_teacher else params
  pred = np.asarray(predict(model, p, task, target=config.target))
  return np.argsort(-pred, kind="stable"), pred


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _plain_step(model: DassPredictor, target: str, learning_rate: float, params, opt_state, tasks: Task):
  def loss(p):
    return jnp.mean(jax.vmap(lambda t: query_loss(model, p, t, target))(tasks))
  value, grads = jax.value_and_grad(loss)(params)
  updates, opt_state = optax.adam(learning_rate).update(grads, opt_state)
  return optax.apply_updates(params, updates), opt_state, value


def fit_plain(key: jax.Array, model: DassPredictor, train_tasks: Task, *, target: str = "percent",
              steps: int = 1000, num_queries: int = 50, learning_rate: float = 5e-4):
  """The non-meta baseline: the same predictor fitted by plain MSE on the pooled labels of the stacked
  ``train_tasks`` (same query sampling, no inner step, no adaptation at test time). Returns params."""
  init_key, key = jax.random.split(key)
  params = model.init(init_key, train_tasks.maps[0], train_tasks.teacher_map[0], train_tasks.arch[0])["params"]
  opt_state = optax.adam(learning_rate).init(params)
  for step in range(steps):
    queries = sample_queries(jax.random.fold_in(key, step), train_tasks, num_queries)
    params, opt_state, _ = _plain_step(model, target, float(learning_rate), params, opt_state, queries)
  return params
