"""The DaSS meta-dataset builder: what the official code never shipped (Lee, An, Kim, Hwang, ICLR 2023).

DaSS meta-trains on (dataset, teacher) tasks, each with students labelled by their accuracy after KD
from that task's teacher. The official release has only the preprocessed archives (Tiny-ImageNet
class-split tasks), not the code that made them. jdanas regenerates them from any source dataset:

1. :func:`class_subsets` splits the source classes into tasks (disjoint while the classes last);
2. per task (:func:`build_task`): the task's data (:func:`subset`, labels renumbered ``0..k-1``), its
   teacher (the space's full network trained with cross-entropy), ``num_students`` distinct students
   sampled from the space, each initialised by remapping the teacher (:func:`jdanas.meta.remap`) and
   KD-trained from it with the DaSS recipe by the population engine (``copy_paste_first``: all students in
   one compiled program, the masked form of :class:`jdanas.spaces.DassSpace`); the label of a student is its
   validation accuracy (percent) after the schedule (the official labels are the best accuracy over
   epochs); plus the functional embeddings of the students and the teacher and the architecture vectors;
3. :func:`build_meta_dataset` writes one file per task (``task_000.npz``, ``task_001.npz``, ...) and a ``manifest.json``; a build that
   is interrupted resumes at the first task not on disk, and a task is written atomically, so a killed
   build never leaves a half-written task. The same key and settings give the same labels.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from flax import traverse_util

from jdanas.data.sources import Dataset, Split
from jdanas.distill.losses import KD_PRESETS
from jdanas.errors import FieldError
from jdanas.meta.embed import embed_exact, embed_students, embed_teacher, noise_input
from jdanas.meta.predictor import Task
from jdanas.meta.remap import MODES, remap_students
from jdanas.spaces.dass import DassSpace, encoding_features
from jdanas.teachers import Teacher, train_architecture
from jdanas.train.population import PopulationTrainer
from jdanas.train.recipe import Recipe

FORMAT_VERSION = 1
TEACHER_PREFIX = "teacher_variables:"  # npz keys of the task teacher's variables, "teacher_variables:params/..."


def class_subsets(num_classes: int, num_tasks: int, classes_per_task: int, *, seed: int = 0) -> list[tuple[int, ...]]:
  """``num_tasks`` sorted class subsets of ``classes_per_task`` classes out of ``num_classes``: a seeded
  permutation cut into consecutive pieces (disjoint while ``num_tasks * classes_per_task <= num_classes``;
  beyond that a new permutation starts)."""
  if not (2 <= classes_per_task <= num_classes):
    raise ValueError(f"classes_per_task: need 2..{num_classes}, got {classes_per_task}")
  if num_tasks < 1:
    raise ValueError(f"num_tasks: need >= 1, got {num_tasks}")
  rng = np.random.default_rng(seed)
  order: list[int] = []
  out = []
  for _ in range(num_tasks):
    if len(order) < classes_per_task:
      order = list(rng.permutation(num_classes))
    out.append(tuple(sorted(int(c) for c in order[:classes_per_task])))
    order = order[classes_per_task:]
  return out


def subset(data: Dataset, classes: Sequence[int]) -> Dataset:
  """The examples of ``classes`` only, labels renumbered by their position in ``classes``."""
  classes = [int(c) for c in classes]
  lookup = np.full(data.num_classes, -1, np.int32)
  lookup[classes] = np.arange(len(classes), dtype=np.int32)

  def cut(split: Split | None, what: str) -> Split | None:
    if split is None:
      return None
    keep = lookup[split.y] >= 0
    if not keep.any():
      raise ValueError(f"task classes {classes}: the {what} split has no example of them")
    return Split(split.x[keep], lookup[split.y[keep]],
                 None if split.index is None else split.index[keep])

  return dataclasses.replace(data, name=f"{data.name}[{','.join(map(str, classes))}]",
                             train=cut(data.train, "train"), val=cut(data.val, "val"),
                             test=cut(data.test, "test"), num_classes=len(classes))


@dataclasses.dataclass(frozen=True)
class TaskRecipe:
  """How each task is built. ``teacher``/``student``: training recipes (the student's loss is forced
  to DaSS's alpha-distillation, ``KD_PRESETS["dass"]``, the teacher's to cross-entropy);
  ``num_students``: distinct students per task; ``remap``: teacher -> student initialisation
  (:data:`jdanas.meta.MODES`); ``num_noise`` / ``noise_seed``: the embedding input."""
  teacher: Recipe = Recipe(steps=300, batch_size=64, learning_rate=0.05, weight_decay=3e-5)
  student: Recipe = Recipe(steps=100, batch_size=64, learning_rate=0.05, weight_decay=3e-5)
  num_students: int = 20
  remap: str = "copy_paste_first"
  num_noise: int = 8
  noise_seed: int = 0
  strategy: str = "auto"

  def __post_init__(self):
    if self.remap not in MODES:
      raise ValueError(f"remap: must be one of {', '.join(MODES)}, got {self.remap!r}")
    if not (isinstance(self.num_students, int) and self.num_students >= 2):
      raise ValueError(f"num_students: need an int >= 2, got {self.num_students!r}")
    if not (isinstance(self.num_noise, int) and self.num_noise >= 1):
      raise ValueError(f"num_noise: need an int >= 1, got {self.num_noise!r}")

  def fingerprint(self, space: DassSpace) -> str:
    text = repr((FORMAT_VERSION, space, self))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def distinct_students(key: jax.Array, space: DassSpace, n: int, *, max_draws: int = 64) -> np.ndarray:
  """``int32[n, D]``: ``n`` distinct architectures drawn uniformly (the teacher excluded)."""
  seen = {space.decode(space.teacher_encoding)}
  out = []
  for i in range(max_draws):
    for enc in np.asarray(jax.vmap(space.sample)(jax.random.split(jax.random.fold_in(key, i), 4 * n))):
      name = space.decode(enc)
      if name not in seen:
        seen.add(name)
        out.append(enc)
        if len(out) == n:
          return np.stack(out).astype(np.int32)
  raise FieldError("num_students", f"the space has fewer than {n} distinct students besides the teacher")


def build_task(key: jax.Array, space: DassSpace, data: Dataset, recipe: TaskRecipe, *,
               progress: bool = False) -> dict[str, np.ndarray]:
  """One task's arrays (see the module docstring): ``encodings``, ``labels`` (percent), ``maps``,
  ``arch``, ``teacher_map``, ``teacher_arch``, ``teacher_label``, ``teacher_encoding``, ``seconds`` and the
  teacher's variables under :data:`TEACHER_PREFIX` keys (:func:`load_teacher_variables`)."""
  t0 = time.perf_counter()
  key_teacher, key_students, key_train = jax.random.split(key, 3)
  k = data.num_classes
  t_enc = space.teacher_encoding
  t_recipe = dataclasses.replace(recipe.teacher, loss=KD_PRESETS["ce"])
  exact = dataclasses.replace(space, masked=False)
  space = exact
  t_vars, t_meta = train_architecture(key_teacher, space, t_enc, "of the task", data, t_recipe, progress)
  teacher = Teacher(name="dass_teacher", module=space.teacher(k), variables=t_vars, num_classes=k,
                    input_shape=data.image_shape)
  encs = distinct_students(key_students, space, recipe.num_students)
  if recipe.remap == "copy_paste_first":  # one program for all: the masked form started from the teacher
    train_space, init = dataclasses.replace(space, masked=True), [t_vars] * len(encs)
  else:
    train_space = space
    init = remap_students(t_vars, space, encs, k, data.image_shape, recipe.remap)
  s_recipe = dataclasses.replace(recipe.student, loss=KD_PRESETS["dass"])
  s_trainer = PopulationTrainer(train_space, data, recipe=s_recipe, teacher=teacher, strategy=recipe.strategy)
  s_result = s_trainer.train(key_train, list(encs), init_variables=init, progress=progress, desc="task students")
  noise = noise_input(jax.random.key(recipe.noise_seed), space, recipe.num_noise)
  if recipe.remap == "copy_paste_first":
    maps = np.asarray(embed_students(space, t_vars, encs, noise, num_classes=k))
  else:
    maps = np.stack([np.asarray(embed_exact(space, t_vars, e, noise, num_classes=k, mode=recipe.remap)) for e in encs])
  features = jax.vmap(lambda e: encoding_features(space, e))
  return {"encodings": encs, "labels": (100.0 * s_result.accuracy).astype(np.float32), "maps": maps,
          "arch": np.asarray(features(jnp.asarray(encs))),
          "teacher_map": np.asarray(embed_teacher(space, t_vars, noise, num_classes=k)),
          "teacher_arch": np.asarray(features(jnp.asarray(t_enc)[None]))[0],
          "teacher_label": np.float32(100.0 * t_meta["val_accuracy"]),
          "teacher_encoding": np.asarray(t_enc, np.int32),
          "seconds": np.float64(time.perf_counter() - t0),
          **{f"{TEACHER_PREFIX}{'/'.join(map(str, path))}": np.asarray(leaf)
             for path, leaf in traverse_util.flatten_dict(t_vars).items()}}


def _write_json(path: pathlib.Path, obj: Any) -> None:
  tmp = path.with_suffix(".tmp")
  tmp.write_text(json.dumps(obj, indent=2))
  os.replace(tmp, path)


def build_meta_dataset(key: jax.Array, space: DassSpace, data: Dataset, tasks: Sequence[Sequence[int]],
                       out_dir: str | os.PathLike, recipe: TaskRecipe = TaskRecipe(), *,
                       progress: bool = False, on_task: Callable[[int, dict], None] | None = None) -> dict:
  """Builds (or resumes building) the meta-dataset of ``tasks`` (class lists of ``data``) in ``out_dir``.

  Task ``i`` uses ``fold_in(key, i)``; finished tasks (their file and manifest entry) are skipped, so a
  rerun after an interruption does only the rest. ``out_dir`` must be empty or hold a build of the same
  key, space, source, tasks and recipe (else a one-line ``ValueError``). ``on_task(i, entry)`` is called
  after each task is written. Returns the manifest.
  """
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  settings = {"format": FORMAT_VERSION, "recipe": recipe.fingerprint(space), "source": data.name,
              "key": np.asarray(jax.random.key_data(key)).tolist(),
              "tasks": [[int(c) for c in t] for t in tasks]}
  manifest_path = out / "manifest.json"
  manifest = {"settings": settings, "tasks": {}}
  if manifest_path.exists():
    old = json.loads(manifest_path.read_text())
    if old.get("settings") != settings:
      raise ValueError(f"out_dir: {out} holds a meta-dataset built with other settings (key, space, source, "
                       "tasks or recipe); use a new directory")
    manifest = old
  for i, classes in enumerate(tasks):
    name = f"task_{i:03d}.npz"
    if str(i) in manifest["tasks"] and (out / name).exists():
      continue
    arrays = build_task(jax.random.fold_in(key, i), space, subset(data, classes), recipe, progress=progress)
    tmp = out / f".{name}.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, out / name)
    entry = {"file": name, "classes": [int(c) for c in classes],
             "teacher_accuracy": float(arrays["teacher_label"]), "seconds": float(arrays["seconds"]),
             "num_students": int(len(arrays["labels"])),
             "num_failed": int(np.isnan(arrays["labels"]).sum())}
    manifest["tasks"][str(i)] = entry
    _write_json(manifest_path, manifest)
    if on_task is not None:
      on_task(i, entry)
  return manifest


def load_task(path: str | os.PathLike) -> Task:
  """A task file as a :class:`jdanas.meta.Task` (students with a failed (NaN) label dropped)."""
  with np.load(path) as z:
    ok = np.isfinite(z["labels"])
    return Task(maps=jnp.asarray(z["maps"][ok]), arch=jnp.asarray(z["arch"][ok]), labels=jnp.asarray(z["labels"][ok]),
                teacher_map=jnp.asarray(z["teacher_map"]), teacher_arch=jnp.asarray(z["teacher_arch"]),
                teacher_label=jnp.asarray(z["teacher_label"]))


def load_teacher_variables(path: str | os.PathLike) -> dict:
  """The task teacher's ``{"params", "batch_stats"}`` stored in a task file."""
  with np.load(path) as z:
    flat = {tuple(k[len(TEACHER_PREFIX):].split("/")): z[k] for k in z.files if k.startswith(TEACHER_PREFIX)}
  if not flat:
    raise ValueError(f"{path}: no teacher variables in this task file")
  return traverse_util.unflatten_dict(flat)


def load_meta_dataset(out_dir: str | os.PathLike) -> list[Task]:
  """Every task of a finished build, in order (a one-line error names the first missing task)."""
  out = pathlib.Path(out_dir)
  manifest = json.loads((out / "manifest.json").read_text())
  n = len(manifest["settings"]["tasks"])
  missing = [i for i in range(n) if str(i) not in manifest["tasks"]]
  if missing:
    raise ValueError(f"out_dir: {out} is not finished (task {missing[0]} of {n} missing); rerun the build")
  return [load_task(out / manifest["tasks"][str(i)]["file"]) for i in range(n)]


def stack_tasks(tasks: Sequence[Task]) -> Task:
  """Tasks stacked on a leading axis for :func:`jdanas.meta.meta_train`; pools are cut to the smallest
  pool (the first students of each task) so every task has the same number of labelled students."""
  n = min(int(t.labels.shape[0]) for t in tasks)
  cut = [t._replace(maps=t.maps[:n], arch=t.arch[:n], labels=t.labels[:n]) for t in tasks]
  return jax.tree.map(lambda *a: jnp.stack(a), *cut)
