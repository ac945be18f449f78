"""The DaSS meta-dataset builder: what the official code never shipped (Lee, An, Kim, Hwang, ICLR 2023).

DaSS meta-trains on (dataset, teacher) tasks, each with students labelled by their accuracy after KD
from that task's teacher. The official release has only the preprocessed archives (Tiny-ImageNet
class-split tasks), not the code that made them. jdanas regenerates them from any source dataset:

1. :func:`class_subsets` splits the source classes into tasks (disjoint while the classes last);
   :func:`task_layout` lays out meta-training, meta-validation and held-out tasks, the held-out ones of
   classes no other task has seen (:func:`check_disjoint`);
2. per task (:func:`build_task`): the task's data (:func:`subset`, labels renumbered ``0..k-1``), its
   teacher (the space's full network trained with cross-entropy), ``num_students`` distinct students
   sampled from the space, each initialised by remapping the teacher (:func:`jdanas.meta.remap`) and
   KD-trained from it with the DaSS recipe by the population engine (``copy_paste_first``: all students in
   one compiled program, the masked form of :class:`jdanas.spaces.DassSpace`); the label of a student is its
   validation accuracy (percent): the best over the evaluation points of the schedule (``label="best"``,
   the official labels' form: the best accuracy over 50 KD epochs) or the last one (``"final"``); the same
   students may be trained ``repeats`` times with other data orders, so that the labels' split-half
   reliability can be measured (:func:`split_half_reliability`, in the manifest); plus the functional
   embeddings of the students and the teacher and the architecture vectors;
3. :func:`build_meta_dataset` writes one file per task (``task_000.npz``, ``task_001.npz``, ...) and a
   ``manifest.json`` (per task: the label spread and, with repeats, the labels' split-half reliability); a
   build that is interrupted resumes at the first task not on disk, and a task is written atomically, so a
   killed build never leaves a half-written task. The same key and settings give the same labels.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import pathlib
import time
import warnings
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

FORMAT_VERSION = 2  # 2: TaskRecipe.eval_every/label/repeats; label_repeats, curve, curve_steps in task files
LABELS = ("best", "final")  # TaskRecipe.label: best validation accuracy over the eval points, or the last one
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
  (:data:`jdanas.meta.MODES`); ``num_noise`` / ``noise_seed``: the embedding input.

  ``eval_every``: evaluate the students on the task's validation split every ``eval_every`` student steps
  (and after the last), the validation curve (``0``: after the last step only); ``label``: ``"best"``, the
  best accuracy over that curve (the official labels' form), or ``"final"``, the last one (the same with
  ``eval_every=0``); ``repeats``: train the same students from the same initialisation this many times with
  other data orders (repeat 0 is the labelled one; two or more give the labels' split-half reliability)."""
  teacher: Recipe = Recipe(steps=300, batch_size=64, learning_rate=0.05, weight_decay=3e-5)
  student: Recipe = Recipe(steps=100, batch_size=64, learning_rate=0.05, weight_decay=3e-5)
  num_students: int = 20
  remap: str = "copy_paste_first"
  num_noise: int = 8
  noise_seed: int = 0
  strategy: str = "auto"
  eval_every: int = 0
  label: str = "best"
  repeats: int = 1

  def __post_init__(self):
    if self.remap not in MODES:
      raise ValueError(f"remap: must be one of {', '.join(MODES)}, got {self.remap!r}")
    if not (isinstance(self.num_students, int) and self.num_students >= 2):
      raise ValueError(f"num_students: need an int >= 2, got {self.num_students!r}")
    if not (isinstance(self.num_noise, int) and self.num_noise >= 1):
      raise ValueError(f"num_noise: need an int >= 1, got {self.num_noise!r}")
    steps = self.student.steps
    if isinstance(self.eval_every, bool) or not isinstance(self.eval_every, int) or not 0 <= self.eval_every <= steps:
      raise ValueError(f"eval_every: need an int in 0..{steps} (the student recipe's steps), got {self.eval_every!r}")
    if self.label not in LABELS:
      raise ValueError(f"label: must be one of {', '.join(LABELS)}, got {self.label!r}")
    if isinstance(self.repeats, bool) or not isinstance(self.repeats, int) or self.repeats < 1:
      raise ValueError(f"repeats: need an int >= 1, got {self.repeats!r}")

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
  """One task's arrays (see the module docstring): ``encodings``, ``labels`` (percent, ``float32[n]``),
  ``label_repeats`` (``float32[repeats, n]``, percent, row 0 equal to ``labels``), ``curve`` (``float32[E, n]``,
  percent, repeat 0's validation curve; ``[0, n]`` with ``eval_every=0``), ``curve_steps`` (``int32[E]``),
  ``maps``, ``arch``, ``teacher_map``, ``teacher_arch``, ``teacher_label``, ``teacher_encoding``, ``seconds`` and
  the teacher's variables under :data:`TEACHER_PREFIX` keys (:func:`load_teacher_variables`).

  Repeat 0 trains with ``key_train`` (so ``repeats=1`` gives the labels of a build without repeats), repeat
  ``r >= 1`` with ``fold_in(key_train, r)``: the same students and initialisation, other data orders and
  augmentations, through the same compiled programs."""
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
  results = [s_trainer.train(key_train if r == 0 else jax.random.fold_in(key_train, r), list(encs),
                             init_variables=init, progress=progress, eval_every=recipe.eval_every,
                             desc="task students" + (f" (repeat {r})" if r else ""))
             for r in range(recipe.repeats)]
  label_repeats = np.stack([(100.0 * (res.best_accuracy if recipe.label == "best" else res.accuracy))
                            .astype(np.float32) for res in results])
  first = results[0]
  curve = (np.zeros((0, len(encs)), np.float32) if first.curve is None
           else (100.0 * first.curve).astype(np.float32))
  noise = noise_input(jax.random.key(recipe.noise_seed), space, recipe.num_noise)
  if recipe.remap == "copy_paste_first":
    maps = np.asarray(embed_students(space, t_vars, encs, noise, num_classes=k))
  else:
    maps = np.stack([np.asarray(embed_exact(space, t_vars, e, noise, num_classes=k, mode=recipe.remap)) for e in encs])
  features = jax.vmap(lambda e: encoding_features(space, e))
  return {"encodings": encs, "labels": label_repeats[0], "label_repeats": label_repeats, "curve": curve,
          "curve_steps": np.asarray(first.curve_steps, np.int32), "maps": maps,
          "arch": np.asarray(features(jnp.asarray(encs))),
          "teacher_map": np.asarray(embed_teacher(space, t_vars, noise, num_classes=k)),
          "teacher_arch": np.asarray(features(jnp.asarray(t_enc)[None]))[0],
          "teacher_label": np.float32(100.0 * t_meta["val_accuracy"]),
          "teacher_encoding": np.asarray(t_enc, np.int32),
          "seconds": np.float64(time.perf_counter() - t0),
          **{f"{TEACHER_PREFIX}{'/'.join(map(str, path))}": np.asarray(leaf)
             for path, leaf in traverse_util.flatten_dict(t_vars).items()}}


def label_spread(labels: np.ndarray) -> float:
  """``max - min`` of the finite labels (NaN with none): whether a task's students separate at all."""
  finite = np.asarray(labels, np.float64)[np.isfinite(labels)]
  return float(finite.max() - finite.min()) if finite.size else float("nan")


def split_half_reliability(a: Sequence[float], b: Sequence[float]) -> dict:
  """How well two labellings of the same students (two seeds) agree: ``spearman`` (rank correlation of the
  halves), ``spearman_brown`` (``2 r / (1 + r)``, the reliability of a label that averaged both halves),
  ``kendall`` (tau-b) and ``n`` (the pairs used). A ranking study cannot be more precise than its labels,
  so this roughly bounds what any predictor can reach. Pairs with a NaN (a diverged student) are dropped;
  fewer than 3 finite pairs, or a constant half, give NaN statistics."""
  from scipy import stats
  a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
  if a.shape != b.shape:
    raise ValueError(f"b: expected {a.shape[0]} labels like a, got {b.shape[0]}")
  ok = np.isfinite(a) & np.isfinite(b)
  n = int(ok.sum())
  nan = float("nan")
  if n < 3:
    return {"spearman": nan, "spearman_brown": nan, "kendall": nan, "n": n}
  with warnings.catch_warnings():  # a constant half: scipy warns and returns NaN, which is the answer
    warnings.simplefilter("ignore")
    rho = float(stats.spearmanr(a[ok], b[ok]).statistic)
    tau = float(stats.kendalltau(a[ok], b[ok]).statistic)
  brown = 2 * rho / (1 + rho) if np.isfinite(rho) and rho > -1 else nan
  return {"spearman": rho, "spearman_brown": float(brown), "kendall": tau, "n": n}


def _distinct_subsets(rng: np.random.Generator, classes: Sequence[int], k: int, count: int,
                      taken: set[tuple[int, ...]]) -> list[tuple[int, ...]]:
  """``count`` sorted ``k``-subsets of ``classes`` not in ``taken`` (which grows): seeded permutations cut into
  consecutive pieces, so subsets are disjoint while the classes last; when few subsets are left and the
  cuts keep repeating old ones, the rest come from the remaining subsets in a seeded order."""
  out: list[tuple[int, ...]] = []
  order: list[int] = []
  for _ in range(64 * count + 64):
    if len(out) == count:
      break
    if len(order) < k:
      order = [int(c) for c in rng.permutation(np.asarray(classes))]
    s = tuple(sorted(order[:k]))
    order = order[k:]
    if s not in taken:
      taken.add(s)
      out.append(s)
  if len(out) < count:  # only when the remaining subsets are few (the caller checked there are enough)
    rest = [s for s in itertools.combinations(sorted(classes), k) if s not in taken]
    for j in rng.permutation(len(rest))[:count - len(out)]:
      taken.add(rest[j])
      out.append(rest[j])
  return out


def task_layout(num_classes: int, unseen: Sequence[int], *, train: int, val: int, heldout: int,
                classes_per_task: int, heldout_classes_per_task: int | None = None,
                seed: int = 0) -> dict[str, list[tuple[int, ...]]]:
  """The class subsets of a meta-dataset's tasks: ``{"train": [...], "val": [...], "heldout": [...]}``, each a
  list of sorted class tuples.

  Meta-training (``train``) and meta-validation (``val``) tasks use only the classes not in ``unseen``;
  every one of them is a different subset (a validation task never has a training task's class set, though
  the two may share classes: model selection then sees new tasks, not new classes), disjoint from each other
  while the classes last. Held-out tasks (``heldout``, of ``heldout_classes_per_task`` classes, default
  ``classes_per_task``) use only ``unseen`` classes, distinct subsets (3 unseen classes in pairs make exactly
  3), so the claim "ranks students of an unseen dataset" is tested on classes no meta-training or model
  selection has seen (:func:`check_disjoint`). Deterministic in ``seed``; the held-out tasks do not depend on
  the train/val counts, nor the train tasks on ``val``. An impossible request raises a
  :class:`jdanas.errors.FieldError` naming the field."""
  if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
    raise FieldError("num_classes", f"need an int >= 2, got {num_classes!r}")
  hidden = sorted(int(c) for c in unseen)  # the order given does not matter
  if len(set(hidden)) != len(hidden) or any(not 0 <= c < num_classes for c in hidden):
    raise FieldError("unseen", f"need distinct classes in 0..{num_classes - 1}, got {hidden}")
  for name, value, least in (("train", train, 1), ("val", val, 0), ("heldout", heldout, 0)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
      raise FieldError(name, f"need an int >= {least}, got {value!r}")
  seen = [c for c in range(num_classes) if c not in set(hidden)]
  if not (isinstance(classes_per_task, (int, np.integer)) and 2 <= classes_per_task <= len(seen)):
    raise FieldError("classes_per_task", f"need 2..{len(seen)} (the classes not in unseen), got {classes_per_task!r}")
  hk = classes_per_task if heldout_classes_per_task is None else heldout_classes_per_task
  if heldout and len(hidden) < 2:
    raise FieldError("unseen", f"held-out tasks need >= 2 unseen classes, got {len(hidden)}")
  if heldout and not (isinstance(hk, (int, np.integer)) and 2 <= hk <= len(hidden)):
    raise FieldError("heldout_classes_per_task", f"need 2..{len(hidden)} (the unseen classes), got {hk!r}")
  total = math.comb(len(seen), classes_per_task)
  if train > total:
    raise FieldError("train", f"{train} tasks of {classes_per_task} classes out of {len(seen)} seen classes: "
                     f"only {total} distinct subsets")
  if train + val > total:
    raise FieldError("val", f"{val} tasks besides {train} train tasks of {classes_per_task} classes out of "
                     f"{len(seen)} seen classes: only {total} distinct subsets")
  if heldout and heldout > math.comb(len(hidden), hk):
    raise FieldError("heldout", f"{heldout} tasks of {hk} classes out of {len(hidden)} unseen classes: only "
                     f"{math.comb(len(hidden), hk)} distinct subsets")
  taken: set[tuple[int, ...]] = set()
  rng = np.random.default_rng([seed, 0])
  layout = {"train": _distinct_subsets(rng, seen, int(classes_per_task), int(train), taken)}
  layout["val"] = _distinct_subsets(rng, seen, int(classes_per_task), int(val), taken)
  layout["heldout"] = (_distinct_subsets(np.random.default_rng([seed, 1]), hidden, int(hk), int(heldout), set())
                       if heldout else [])
  return layout


def check_disjoint(layout: dict[str, Sequence[Sequence[int]]]) -> None:
  """Raises ``ValueError`` if a class of a held-out task appears in a train or val task of ``layout`` (the
  form of :func:`task_layout`): a held-out task must be of classes meta-training never saw."""
  held = {int(c) for t in layout.get("heldout", ()) for c in t}
  for part in ("train", "val"):
    shared = held & {int(c) for t in layout.get(part, ()) for c in t}
    if shared:
      raise ValueError(f"layout: held-out classes {sorted(shared)} also appear in {part} tasks")


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
             "num_failed": int(np.isnan(arrays["labels"]).sum()),
             "label_spread": label_spread(arrays["labels"])}
    repeats = arrays["label_repeats"]
    if len(repeats) >= 2:
      entry["reliability"] = split_half_reliability(repeats[0], repeats[1])
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
