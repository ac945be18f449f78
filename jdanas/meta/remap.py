"""Parameter remapping teacher -> student (DaSS: Lee, An, Kim, Hwang, ICLR 2023; the scheme follows
Fang et al., "Fast Neural Network Adaptation via Parameter Remapping", ICLR 2020).

A student of a depth/width space that shares the teacher's parameter names (``stage{s}_block{b}/...``,
as :class:`jdanas.spaces.DassSpace` and the S1 ResNets do) takes, for every leaf, a slice of the
teacher's corresponding leaf:

* ``copy_paste_first`` (DaSS's default): student block ``b`` of a stage takes teacher block ``b`` (the
  first blocks), and every axis keeps the first entries (``kernel[..., :c_in, :c_out]``, BN vectors
  ``[:c]``, classifier ``[:c]``).
* ``copy_paste_last``: the last ``d_s`` teacher blocks of each stage, and the last entries of every axis.
* ``uniform``: the first blocks; every ``floor(T / S)``-th entry of an axis of teacher size ``T`` and
  student size ``S`` (then truncated to ``S``).

Every collection (``params``, ``batch_stats``) is remapped the same way, so a remapped student in eval
mode uses the teacher's running statistics of its channels. A student equal to the teacher gets the
teacher's variables exactly. Pure: ``remap`` runs on host arrays or under ``jit``.
"""
from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

MODES = ("copy_paste_first", "copy_paste_last", "uniform")
_BLOCK = re.compile(r"^stage(\d+)_block(\d+)$")


def _depths(flat: dict) -> dict[int, int]:
  """Blocks per stage, counted from ``stage{s}_block{b}`` names."""
  blocks: dict[int, set] = {}
  for path in flat:
    for name in path:
      m = _BLOCK.match(str(name))
      if m:
        blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
  return {s: len(b) for s, b in blocks.items()}


def _indices(student: int, teacher: int, mode: str) -> np.ndarray:
  if student > teacher:
    raise ValueError(f"remap: a student axis of size {student} is larger than the teacher's {teacher}")
  if mode == "copy_paste_last":
    return np.arange(teacher - student, teacher)
  if mode == "uniform":
    return (np.arange(student) * (teacher // student))[:student]
  return np.arange(student)


def _slice(leaf: jax.Array, shape: tuple[int, ...], mode: str) -> jax.Array:
  if leaf.ndim != len(shape):
    raise ValueError(f"remap: teacher leaf of shape {leaf.shape} cannot map to student shape {shape}")
  for axis, (s, t) in enumerate(zip(shape, leaf.shape)):
    if s != t:
      leaf = jnp.take(leaf, _indices(s, t, mode), axis=axis)
  return leaf


def remap(teacher_variables: Any, student_shapes: Any, mode: str = "copy_paste_first") -> dict:
  """The student's variables remapped from the teacher's.

  Args:
    teacher_variables: the teacher's ``{"params": ..., "batch_stats": ...}`` (arrays).
    student_shapes: the student's variables or their shapes (e.g. ``jax.eval_shape`` of its ``init``);
      only shapes are read.
    mode: one of :data:`MODES`.

  Returns:
    A variables dict with the student's structure and shapes and the teacher's dtypes.

  >>> import jax, jax.numpy as jnp
  >>> from jdanas.spaces import DassSpace
  >>> space = DassSpace(stage_widths=(4, 8, 8, 16), max_depth=2, multipliers=(0.5, 1.0))
  >>> x = jnp.zeros((1, 8, 8, 3))
  >>> teacher = space.teacher(10).init(jax.random.key(0), x)
  >>> student = space.build(space.signature(space.encode("2|4.8|8|16")), 10)
  >>> v = remap(teacher, jax.eval_shape(student.init, jax.random.key(0), x))
  >>> v["params"]["stem_conv"]["kernel"].shape
  (3, 3, 3, 2)
  """
  if mode not in MODES:
    raise ValueError(f"remap: mode must be one of {', '.join(MODES)}, got {mode!r}")
  teacher = traverse_util.flatten_dict(dict(teacher_variables))
  student = traverse_util.flatten_dict(dict(student_shapes))
  t_depth, s_depth = _depths(teacher), _depths(student)
  out = {}
  for path, leaf in student.items():
    source = list(path)
    for i, name in enumerate(path):
      m = _BLOCK.match(str(name))
      if m:
        stage, block = int(m.group(1)), int(m.group(2))
        if mode == "copy_paste_last":
          block += t_depth.get(stage, 0) - s_depth[stage]
        source[i] = f"stage{stage}_block{block}"
    source = tuple(source)
    if source not in teacher:
      raise ValueError(f"remap: the teacher has no variable {'/'.join(map(str, source))} for the student's "
                       f"{'/'.join(map(str, path))}")
    out[path] = _slice(teacher[source], tuple(leaf.shape), mode)
  return traverse_util.unflatten_dict(out)


def remap_students(teacher_variables: Any, space, encs, num_classes: int, image_shape, mode: str = "copy_paste_first"
                   ) -> list[dict]:
  """The remapped starting variables of each exact student ``space.build(space.signature(e))`` of ``encs``
  (for :meth:`jdanas.train.PopulationTrainer.train`'s ``init_variables``)."""
  def shapes(enc):
    module = space.build(space.signature(enc), int(num_classes))
    return jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1,) + tuple(image_shape)), train=False))
  return [remap(teacher_variables, shapes(e), mode) for e in encs]
