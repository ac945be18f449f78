"""Teachers: train one from the zoo, evaluate it, save and load it with orbax; ensembles of them.

A teacher is frozen: the population engine calls it in eval mode (running BN statistics), once
per batch, outside the students' vmap and grad. Teachers are never part of a search checkpoint;
they live in their own directory::

  <path>/teacher.json      {"name": "resnet56", "num_classes": 10, "input_shape": [32, 32, 3], ...}
  <path>/variables/        orbax checkpoint of {"params", "batch_stats"}

An *ensemble teacher* (Kang, Mun & Han, "Towards Oracle Knowledge Distillation with Neural
Architecture Search", AAAI 2020; docs/methods/oracle_kd.md) is a :class:`Teacher` whose module
is an :class:`EnsembleModule`: one forward of all M members per batch gives ``{"logits": the
members' mean logits [B, K], "members": [M, B, K]}``, so every KD loss distils the averaged
ensemble (the "IE" baseline) and the oracle loss reads the members. It is saved as one folder
per member::

  <path>/teacher.json      {"name": "3xresnet32", "members": ["member_0", ...], ...}
  <path>/member_<i>/       a single teacher's folder (above)
"""
from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jdanas.models.zoo import get_model
from jdanas.parallel import process_local_orbax
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
  members: tuple["Teacher", ...] = ()   # the members of an ensemble teacher (empty: a single network)

  @property
  def size(self) -> int:
    """Number of networks (M; 1 for a single teacher)."""
    return max(len(self.members), 1)

  def logits(self, x: jax.Array) -> jax.Array:
    return self.module.apply(self.variables, x, None, train=False)["logits"]


def train_architecture(key: jax.Array, space, enc, label: str, data, recipe: Recipe,
                       progress: bool | Callable[[int], None]):
  """Trains architecture ``enc`` of ``space`` alone with plain cross-entropy (a teacher): ``(host
  variables, meta)`` with ``meta['val_accuracy']``; a non-finite loss raises ``FloatingPointError``."""
  if recipe.loss.uses_teacher:
    raise ValueError("recipe.loss: a teacher is trained without distillation (use KD_PRESETS['ce'])")
  trainer = PopulationTrainer(space, data, recipe=recipe, strategy="loop")
  result = trainer.train(key, [enc], progress=progress, desc=f"teacher {label}")
  if not np.isfinite(result.accuracy[0]):
    raise FloatingPointError(f"teacher {label}: training diverged (non-finite loss); lower the learning rate")
  meta = {"val_accuracy": float(result.accuracy[0]), "steps": recipe.steps, "train_seconds": result.train_seconds}
  return jax.device_get(result.variables(0)), meta


def train_teacher(key: jax.Array, name: str, data, *, recipe: Recipe,
                  progress: bool | Callable[[int], None] = False) -> Teacher:
  """Trains zoo model ``name`` on ``data`` with plain cross-entropy (``recipe.loss`` must have no
  soft term) and returns it with its validation accuracy in ``meta['val_accuracy']``."""
  space = ZooSpace((name,))
  variables, meta = train_architecture(key, space, space.encode(name), name, data, recipe, progress)
  return Teacher(name=name, module=get_model(name, data.num_classes), variables=variables,
                 num_classes=int(data.num_classes), input_shape=tuple(data.train.x.shape[1:]), meta=meta)


SPACE_TEACHER = "space"  # teacher.name of a search space's own full network


def train_space_teacher(key: jax.Array, space_ref: dict, data, *, recipe: Recipe,
                        progress: bool | Callable[[int], None] = False) -> Teacher:
  """Trains the full network of the registered space ``space_ref = {"name", "kwargs"}`` (its
  ``teacher(num_classes)`` at ``teacher_encoding``, e.g. the DaSS ResNet-42 skeleton of
  :class:`jdanas.spaces.DassSpace`) with plain cross-entropy. ``meta['space']`` records the space, so
  :func:`load_teacher` rebuilds the network and a run can check that its teacher is its space's."""
  space = space_of_teacher({"space": space_ref})
  variables, meta = train_architecture(key, space, space.teacher_encoding, f"{space_ref['name']} (full network)",
                                       data, recipe, progress)
  meta["space"] = json.loads(json.dumps(space_ref))
  return Teacher(name=f"{space_ref['name']}_teacher", module=space.teacher(int(data.num_classes)), variables=variables,
                 num_classes=int(data.num_classes), input_shape=tuple(data.train.x.shape[1:]), meta=meta)


def space_of_teacher(meta: dict):
  """The space whose full network a :func:`train_space_teacher` teacher is (from its ``meta``), or None."""
  ref = (meta or {}).get("space")
  if not ref:
    return None
  from jdanas.spaces import get_space
  kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in ref.get("kwargs", {}).items()}
  return get_space(ref["name"], **kwargs)


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


@dataclasses.dataclass(frozen=True)
class EnsembleModule:
  """The forward of an ensemble teacher (eval mode only).

  ``apply(variables, x, enc=None, train=False)`` with ``variables`` the tuple of the members'
  variables returns ``{"logits": float32[B, K], "members": float32[M, B, K]}``; ``logits`` is the
  mean of the members' logits (the aggregation the oracle loss also uses by default). Members of
  one architecture run as one vmapped program over their stacked variables when ``stack`` is
  True, otherwise one forward each; the values are the same (``jdanas.lowering.Lowering.ensemble``
  chooses per backend).
  """
  members: tuple[nn.Module, ...]
  stack: bool = True

  def groups(self) -> list[tuple[nn.Module, tuple[int, ...]]]:
    """Members grouped by architecture (equal modules), in order of first appearance."""
    out: list[tuple[nn.Module, list[int]]] = []
    for i, m in enumerate(self.members):
      for module, idx in out:
        if module == m:
          idx.append(i)
          break
      else:
        out.append((m, [i]))
    return [(m, tuple(idx)) for m, idx in out]

  def apply(self, variables, x, enc=None, *, train: bool = False, **kwargs) -> dict:
    if train or kwargs:
      raise ValueError("teacher: an ensemble teacher runs in eval mode only (no train=True, no mutable)")
    logits: list = [None] * len(self.members)
    for module, idx in self.groups():
      forward = lambda v, module=module: module.apply(v, x, None, train=False)["logits"]  # noqa: E731
      if self.stack and len(idx) > 1:
        out = jax.vmap(forward)(jax.tree.map(lambda *a: jnp.stack(a), *[variables[i] for i in idx]))
        for j, i in enumerate(idx):
          logits[i] = out[j]
      else:
        for i in idx:
          logits[i] = forward(variables[i])
    members = jnp.stack(logits).astype(jnp.float32)
    return {"logits": jnp.mean(members, axis=0), "members": members}


def ensemble_name(names: Sequence[str]) -> str:
  """``"3xresnet32"`` for equal members, else the names joined by ``+``."""
  return f"{len(names)}x{names[0]}" if len(set(names)) == 1 else "+".join(names)


def ensemble_teacher(members: Sequence[Teacher], *, stack: bool = True) -> Teacher:
  """An ensemble :class:`Teacher` of single teachers (same classes and input shape)."""
  members = tuple(members)
  if len(members) < 2:
    raise ValueError(f"teacher.ensemble: an ensemble needs >= 2 members, got {len(members)}")
  for m in members:
    if m.members:
      raise ValueError(f"teacher.ensemble: member {m.name} is itself an ensemble")
    if (m.num_classes, tuple(m.input_shape)) != (members[0].num_classes, tuple(members[0].input_shape)):
      raise ValueError(f"teacher.ensemble: members disagree on classes/input shape ({members[0].name}: "
                       f"{members[0].num_classes} of {members[0].input_shape}, {m.name}: {m.num_classes} of "
                       f"{m.input_shape})")
  module = EnsembleModule(tuple(m.module for m in members), stack=bool(stack))
  meta = {"members": [{"name": m.name, **m.meta} for m in members]}
  return Teacher(name=ensemble_name([m.name for m in members]), module=module,
                 variables=tuple(m.variables for m in members), num_classes=members[0].num_classes,
                 input_shape=tuple(members[0].input_shape), meta=meta, members=members)


def train_ensemble(key: jax.Array, names: Sequence[str], data, *, recipe: Recipe, stack: bool = True,
                   progress: bool | Callable[[int], None] = False) -> Teacher:
  """Trains member ``i`` (zoo model ``names[i]``) with :func:`train_teacher` from ``fold_in(key, i)``
  (M seeds of one recipe) and returns their ensemble."""
  members = [train_teacher(jax.random.fold_in(key, i), name, data, recipe=recipe, progress=progress)
             for i, name in enumerate(names)]
  return ensemble_teacher(members, stack=stack)


def oracle_statistics(member_logits: Any, labels: Any) -> dict:
  """Accuracies of an ensemble from its members' logits ``[M, N, K]`` and labels ``[N]``.

  Returns ``members`` (each member's accuracy), ``average`` (arg-max of the mean logits),
  ``vote`` (majority of the members' arg-maxes; a tie goes to the lowest class index),
  ``oracle`` (fraction of examples some member gets right: the accuracy of an oracle that picks
  a correct member), ``all_right`` and ``none_right`` (fractions every / no member gets right;
  Kang et al. 2020, Table 5).
  """
  z = np.asarray(member_logits, np.float32)
  y = np.asarray(labels)
  m, n, k = z.shape
  right = np.argmax(z, -1) == y[None]                                   # [M, N]
  votes = np.zeros((n, k), np.int64)
  np.add.at(votes, (np.broadcast_to(np.arange(n), (m, n)), np.argmax(z, -1)), 1)
  frac = lambda a: float(np.mean(a)) if n else float("nan")  # noqa: E731
  return {"members": [frac(r) for r in right], "average": frac(np.argmax(z.mean(0), -1) == y),
          "vote": frac(np.argmax(votes, -1) == y), "oracle": frac(right.any(0)),
          "all_right": frac(right.all(0)), "none_right": frac(~right.any(0))}


@functools.lru_cache(maxsize=16)
def _members_fn(module):
  def members(v, x, mean, std):
    out = module.apply(v, batching.normalize(x, mean, std), None, train=False)
    return out["members"] if "members" in out else out["logits"][None]
  return jax.jit(members, static_argnums=(2, 3))


def ensemble_report(teacher: Teacher, split, mean, std, *, batch_size: int = 500) -> dict:
  """:func:`oracle_statistics` of ``teacher`` (an ensemble, or a single network as M = 1) on a
  split of uint8 images; batches are padded to ``batch_size`` (one compiled program)."""
  fn = _members_fn(teacher.module)
  mean, std = tuple(float(a) for a in mean), tuple(float(a) for a in std)
  x, y = np.asarray(split.x), np.asarray(split.y)
  out = []
  for i in range(0, len(y), batch_size):
    xb = x[i:i + batch_size]
    n = len(xb)
    if n < batch_size:
      xb = np.concatenate([xb, np.zeros((batch_size - n,) + xb.shape[1:], xb.dtype)])
    out.append(np.asarray(fn(teacher.variables, xb, mean, std))[:, :n])
  logits = np.concatenate(out, axis=1) if out else np.zeros((teacher.size, 0, teacher.num_classes), np.float32)
  return oracle_statistics(logits, y)


def save_teacher(path: str | pathlib.Path, teacher: Teacher) -> pathlib.Path:
  """Writes ``teacher.json`` and an orbax checkpoint of the variables under ``path``."""
  path = pathlib.Path(path).absolute()
  path.mkdir(parents=True, exist_ok=True)
  if teacher.members:
    folders = [save_teacher(path / f"member_{i}", m).name for i, m in enumerate(teacher.members)]
    meta = {"name": teacher.name, "num_classes": teacher.num_classes, "input_shape": list(teacher.input_shape),
            "members": folders}
    (path / "teacher.json").write_text(json.dumps(meta, indent=2))
    return path
  with ocp.StandardCheckpointer(multiprocessing_options=process_local_orbax()) as ckptr:
    ckptr.save(path / "variables", jax.device_get(teacher.variables), force=True)
  meta = {"name": teacher.name, "num_classes": teacher.num_classes,
          "input_shape": list(teacher.input_shape), "meta": teacher.meta}
  (path / "teacher.json").write_text(json.dumps(meta, indent=2))
  return path


def load_teacher(path: str | pathlib.Path, *, stack: bool = True) -> Teacher:
  """Loads a teacher written by :func:`save_teacher` (or any orbax checkpoint of a zoo model's
  ``{'params', 'batch_stats'}`` with a ``teacher.json`` beside it); an ensemble folder gives an
  ensemble teacher (``stack``: see :class:`EnsembleModule`)."""
  path = pathlib.Path(path).absolute()
  info_file = path / "teacher.json"
  if not info_file.exists():
    raise FileNotFoundError(f"teacher.path: no teacher.json in {path}")
  info = json.loads(info_file.read_text())
  if "members" in info:
    return ensemble_teacher([load_teacher(path / folder) for folder in info["members"]], stack=stack)
  space = space_of_teacher(info.get("meta", {}))
  k = int(info["num_classes"])
  module = space.teacher(k) if space is not None else get_model(info["name"], k)
  shape = tuple(info["input_shape"])
  abstract = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1,) + shape), None, train=False))
  with ocp.StandardCheckpointer(multiprocessing_options=process_local_orbax()) as ckptr:
    variables = ckptr.restore(path / "variables", abstract)
  return Teacher(name=info["name"], module=module, variables=variables, num_classes=int(info["num_classes"]),
                 input_shape=shape, meta=info.get("meta", {}))

