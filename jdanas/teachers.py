"""Teachers: train one from the zoo, evaluate it, save and load it with orbax.

A teacher is frozen: the population engine calls it in eval mode (running BN statistics), once
per batch, outside the students' vmap and grad. Teachers are never part of a search checkpoint;
they live in their own directory::

  <path>/teacher.json      {"name": "resnet56", "num_classes": 10, "input_shape": [32, 32, 3], ...}
  <path>/variables/        orbax checkpoint of {"params", "batch_stats"}
"""
from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jdanas.models.zoo import get_model
from jdanas.spaces.zoo import ZooSpace
from jdanas.train import batching
from jdanas.train.population import PopulationTrainer
from jdanas.train.recipe import Recipe


@dataclasses.dataclass(frozen=True, eq=False)
class Teacher:
  """A frozen network: ``module.apply(variables, x, None, train=False)`` gives its features."""
  name: str
  module: nn.Module
  variables: Any
  num_classes: int
  input_shape: tuple[int, ...]
  meta: dict = dataclasses.field(default_factory=dict)

  def logits(self, x: jax.Array) -> jax.Array:
    return self.module.apply(self.variables, x, None, train=False)["logits"]


def train_teacher(key: jax.Array, name: str, data, *, recipe: Recipe,
                  progress: bool | Callable[[int], None] = False) -> Teacher:
  """Trains zoo model ``name`` on ``data`` with plain cross-entropy (``recipe.loss`` must have no
  soft term) and returns it with its validation accuracy in ``meta['val_accuracy']``."""
  if recipe.loss.uses_teacher:
    raise ValueError("recipe.loss: a teacher is trained without distillation (use KD_PRESETS['ce'])")
  space = ZooSpace((name,))
  trainer = PopulationTrainer(space, data, recipe=recipe, strategy="loop")
  result = trainer.train(key, [space.encode(name)], progress=progress, desc=f"teacher {name}")
  if not np.isfinite(result.accuracy[0]):
    raise FloatingPointError(f"teacher {name}: training diverged (non-finite loss); lower the learning rate")
  variables = jax.device_get(result.variables(0))
  return Teacher(name=name, module=get_model(name, data.num_classes), variables=variables,
                 num_classes=int(data.num_classes), input_shape=tuple(data.train.x.shape[1:]),
                 meta={"val_accuracy": float(result.accuracy[0]), "steps": recipe.steps,
                       "train_seconds": result.train_seconds})


@functools.lru_cache(maxsize=64)
def _predict_fn(module: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]):
  """One jitted eval-mode predictor per (module, normalisation), reused by every call."""
  return jax.jit(lambda v, x, enc: jnp.argmax(
      module.apply(v, batching.normalize(x, mean, std), enc, train=False)["logits"], -1))


def evaluate(module: nn.Module, variables: Any, split, mean, std, *, enc=None, batch_size: int = 500) -> float:
  """Top-1 accuracy of a model on a split of uint8 images (eval mode).

  Every batch is padded to ``batch_size`` (eval-mode BatchNorm does not mix rows), so all splits
  and all calls share one compiled program per model.
  """
  apply = _predict_fn(module, tuple(float(m) for m in mean), tuple(float(s) for s in std))
  enc = None if enc is None else jnp.asarray(enc, jnp.int32)
  x, y = np.asarray(split.x), np.asarray(split.y)
  correct = 0
  for i in range(0, len(y), batch_size):
    xb = x[i:i + batch_size]
    n = len(xb)
    if n < batch_size:
      xb = np.concatenate([xb, np.zeros((batch_size - n,) + xb.shape[1:], xb.dtype)])
    pred = np.asarray(apply(variables, xb, enc))[:n]
    correct += int((pred == y[i:i + n]).sum())
  return correct / max(len(y), 1)


def save_teacher(path: str | pathlib.Path, teacher: Teacher) -> pathlib.Path:
  """Writes ``teacher.json`` and an orbax checkpoint of the variables under ``path``."""
  path = pathlib.Path(path).absolute()
  path.mkdir(parents=True, exist_ok=True)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(path / "variables", jax.device_get(teacher.variables), force=True)
  meta = {"name": teacher.name, "num_classes": teacher.num_classes,
          "input_shape": list(teacher.input_shape), "meta": teacher.meta}
  (path / "teacher.json").write_text(json.dumps(meta, indent=2))
  return path


def load_teacher(path: str | pathlib.Path) -> Teacher:
  """Loads a teacher written by :func:`save_teacher` (or any orbax checkpoint of a zoo model's
  ``{'params', 'batch_stats'}`` with a ``teacher.json`` beside it)."""
  path = pathlib.Path(path).absolute()
  info_file = path / "teacher.json"
  if not info_file.exists():
    raise FileNotFoundError(f"teacher.path: no teacher.json in {path}")
  info = json.loads(info_file.read_text())
  module = get_model(info["name"], int(info["num_classes"]))
  shape = tuple(info["input_shape"])
  abstract = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1,) + shape), None, train=False))
  with ocp.StandardCheckpointer() as ckptr:
    variables = ckptr.restore(path / "variables", abstract)
  return Teacher(name=info["name"], module=module, variables=variables, num_classes=int(info["num_classes"]),
                 input_shape=shape, meta=info.get("meta", {}))

