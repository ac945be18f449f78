"""Exporting a trained student for deployment, and loading it back.

:func:`export_student` writes one self-describing folder::

  <path>/arch.json     space name + kwargs, encoding, readable arch string, num_classes,
                       input_shape, mean/std, params/FLOPs (when known), meta, versions
  <path>/variables/    orbax checkpoint of {"params", "batch_stats"}
  <path>/forward.jax   serialized ``jax.export`` of ``uint8[b, H, W, C] -> float32[b, num_classes]``

``arch.json`` is written last, so a folder whose export was interrupted has none and is refused
by :func:`load_student`.

**forward.jax** is the deployment artifact. It needs only ``jax`` to run (no jdanas, no flax, no
orbax, no Python source of the model)::

  exp = jax.export.deserialize(bytearray(open("forward.jax", "rb").read()))
  logits = exp.call(images_uint8)        # images: uint8 [B, H, W, C], any B

* Input: **raw uint8 pixels** ``[B, H, W, C]`` (``0..255``, NHWC, the dataset's channel order).
  The dataset's normalisation (``(x / 255 - mean) / std``, the constants recorded in
  ``arch.json``) is part of the exported function, so a deployer never re-implements it. The
  input dtype is fixed to uint8 by the export; a float image of raw pixel values must be cast
  (``x.astype(np.uint8)``) first. :meth:`Student.logits` accepts either. uint8 images whose
  maximum is tiny (``<= NARROW_UINT8_MAX``, e.g. sklearn's 0..16 digits cast to uint8) get a
  ``UserWarning`` from :meth:`Student.logits` and ``Student.exported().call``: rescale them.
* The batch dimension is symbolic (``jax.export.symbolic_shape("b, H, W, C")`` with the concrete
  H, W, C of training), so one artifact serves every batch size.
* The weights are **baked in as constants**. This makes the file self-contained: one file, one
  call, no checkpoint library and no matching pytree structure at the deployment site, and XLA
  can constant-fold the inference-mode BatchNorm into the convolutions. The cost is that the
  file is about as large as the weights (the students of a search are small: tens of kB to a
  few MB) and that changing weights means exporting again; the ``variables/`` checkpoint is kept
  beside it for fine-tuning or re-export.
* The architecture encoding is baked in too (masked spaces select their operations from it).
* The function is lowered for several platforms (``cpu``, ``cuda``, ``tpu`` by default), so an
  artifact written on a CPU-only machine runs on a GPU and vice versa; ``Exported.call`` picks
  the platform it runs on.

Serialization of ``jax.export`` needs the ``flatbuffers`` package.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import warnings
from typing import Any, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

import jdanas
from jdanas.parallel import process_local_orbax
from jdanas.report import to_jsonable
from jdanas.spaces import AbstractSearchSpace, get_space
from jdanas.train import batching

ARCH_FILE = "arch.json"
VARIABLES_DIR = "variables"
FORWARD_FILE = "forward.jax"
FORMAT_VERSION = 1
DEFAULT_PLATFORMS = ("cpu", "cuda", "tpu")
# uint8 images whose brightest pixel is at most this are almost surely not raw 0..255 pixels but
# values rescaled to a small range and cast (sklearn's 0..16 digits, 0/1 masks): they pass the dtype
# check and silently give near-chance accuracy. 32 (an eighth of the range) still flags 0..16 and
# 0..31 data with margin, while a batch of real photographs or scans never peaks that low; it is
# a warning, not an error, because a deliberately dark batch is legal input.
NARROW_UINT8_MAX = 32


@dataclasses.dataclass(eq=False)
class Student:
  """An exported student, loaded back by :func:`load_student`.

  Attributes:
    arch: readable architecture string (``space.decode(encoding)``).
    encoding: ``int32[D]`` encoding in ``space``.
    space: the search space, rebuilt from its registered name and constructor kwargs.
    module: the Flax module, ``space.build(space.signature(encoding), num_classes)``.
    variables: ``{"params", "batch_stats"}`` restored from the orbax checkpoint.
    num_classes: number of output classes.
    input_shape: ``(H, W, C)`` of one image.
    mean: per-channel normalisation mean (of pixels scaled to ``[0, 1]``).
    std: per-channel normalisation standard deviation.
    meta: free-form metadata given at export time (params, FLOPs, accuracies, ...).
    path: the export folder.
  """
  arch: str
  encoding: np.ndarray
  space: AbstractSearchSpace
  module: nn.Module
  variables: Any
  num_classes: int
  input_shape: tuple[int, ...]
  mean: tuple[float, ...]
  std: tuple[float, ...]
  meta: dict
  path: pathlib.Path

  @functools.cached_property
  def _forward(self):
    enc = jnp.asarray(self.encoding, jnp.int32)
    return jax.jit(lambda v, x: self.module.apply(
        v, batching.normalize(x, self.mean, self.std), enc, train=False)["logits"])

  def logits(self, images: Any) -> jax.Array:
    """Eval-mode logits ``float32[B, num_classes]`` of raw images.

    Args:
      images: ``[B, H, W, C]`` with ``(H, W, C) == input_shape`` (a batch axis even for one image;
        the channel axis even for grey images), uint8 pixels ``0..255``, or floats holding the same
        raw pixel values (not scaled to ``[0, 1]``, not sklearn's ``0..16`` digits). Anything
        else raises a one-line ``ValueError`` starting with ``images:``.

    Applies the Flax module to the restored variables (jitted; normalisation included), i.e. the
    same computation as :func:`jdanas.teachers.evaluate` on the original variables.
    """
    return self._forward(self.variables, check_images(images, self.input_shape))

  @functools.cached_property
  def _exported(self) -> jax.export.Exported:
    return _deserialize(self.path / FORWARD_FILE)

  def exported(self) -> jax.export.Exported:
    """The deserialized ``forward.jax``: ``exported().call(uint8[B, H, W, C])`` gives the logits;
    its ``call`` checks the images as :meth:`logits` does, uint8 only (one-line ``ValueError``)."""
    return _CheckedExported.wrap(self._exported, self.input_shape)


@dataclasses.dataclass(frozen=True)
class _CheckedExported(jax.export.Exported):
  """A ``jax.export.Exported`` whose ``call`` checks the image shape and dtype first."""
  input_shape: tuple[int, ...] = ()

  @classmethod
  def wrap(cls, exp: jax.export.Exported, input_shape) -> "_CheckedExported":
    fields = {f.name: getattr(exp, f.name) for f in dataclasses.fields(jax.export.Exported)}
    return cls(**fields, input_shape=tuple(input_shape))

  def call(self, *args, **kwargs):
    if len(args) == 1 and not kwargs:
      check_images(args[0], self.input_shape, uint8_only=True)
    return super().call(*args, **kwargs)


def check_images(images: Any, input_shape: Sequence[int], *, uint8_only: bool = False) -> Any:
  """``images`` if they are raw pixels ``[B, *input_shape]`` (uint8, or unless ``uint8_only``
  real numbers in ``0..255`` reaching above 16); else a one-line ``ValueError``. uint8 images that
  reach only ``NARROW_UINT8_MAX`` pass with a ``UserWarning`` (called from :meth:`Student.logits`
  and the checked ``exported().call``: ``stacklevel`` points at the caller's line)."""
  shape, dtype = getattr(images, "shape", None), getattr(images, "dtype", None)
  if shape is None or dtype is None:
    images = np.asarray(images)
    shape, dtype = images.shape, images.dtype
  want = tuple(int(d) for d in input_shape)
  expected = f"expected raw pixels [B, {', '.join(map(str, want))}]"
  if tuple(shape[1:]) != want:
    hint = (" (the batch axis is missing: use images[None])" if tuple(shape) == want else
            " (the channel axis is missing: use images[..., None])" if tuple(shape[1:]) == want[:-1] and want[-1] == 1
            else "")
    raise ValueError(f"images: {expected}, got shape {tuple(shape)}{hint}")
  dtype = np.dtype(dtype)
  if dtype == np.uint8:
    if not isinstance(images, jax.core.Tracer) and np.size(images):
      hi = int(np.max(images))
      if hi <= NARROW_UINT8_MAX:
        warnings.warn(f"images: these uint8 pixels use only 0..{hi} of 0..255, but the student was trained on raw "
                      f"0..255 pixels (sklearn's 0..16 digits cast to uint8?), so rescale them first, e.g. "
                      f"(images * (255 / images.max())).astype(np.uint8)", UserWarning, stacklevel=3)
    return images
  if uint8_only:
    raise ValueError(f"images: {expected} of dtype uint8, got {dtype} (cast with images.astype(np.uint8))")
  if dtype.kind not in "iuf":
    raise ValueError(f"images: {expected} as uint8 or real numbers, got {dtype}")
  if not isinstance(images, jax.core.Tracer) and np.size(images):
    lo, hi = float(np.min(images)), float(np.max(images))
    if not (np.isfinite(lo) and np.isfinite(hi) and lo >= 0 and hi <= 255):
      raise ValueError(f"images: raw pixel values must lie in 0..255, got {lo:g}..{hi:g}")
    if hi <= 16:
      raise ValueError(f"images: raw pixel values 0..255 expected, these reach only {hi:g} (scaled to [0, 1], "
                       f"or sklearn's 0..16 digits? multiply by 255 / max and pass uint8)")
  return images


def _normalise_kwargs(value: Any) -> Any:
  """JSON lists back to tuples (space fields are tuples; frozen dataclasses must stay hashable)."""
  if isinstance(value, (list, tuple)):
    return tuple(_normalise_kwargs(v) for v in value)
  if isinstance(value, dict):
    return {k: _normalise_kwargs(v) for k, v in value.items()}
  return value


def _forward_fn(module: nn.Module, variables: Any, enc: np.ndarray, mean, std):
  enc = jnp.asarray(enc, jnp.int32)
  variables = jax.tree.map(jnp.asarray, variables)

  def forward(images):
    return module.apply(variables, batching.normalize(images, mean, std), enc, train=False)["logits"]

  return forward


def export_student(path: str | pathlib.Path, *, space: AbstractSearchSpace, space_kwargs: dict,
                   space_name: str, encoding: Any, variables: Any, num_classes: int,
                   input_shape: Sequence[int], mean: Sequence[float], std: Sequence[float],
                   meta: dict | None = None,
                   platforms: Sequence[str] | None = DEFAULT_PLATFORMS) -> pathlib.Path:
  """Writes a trained student to ``path/`` (see the module docstring for the layout).

  Args:
    path: output folder (created; files of an earlier export there are replaced).
    space: the search space the student comes from.
    space_kwargs: constructor kwargs such that ``get_space(space_name, **space_kwargs)`` equals
      ``space`` (JSON-serialisable; tuples are stored as lists and restored as tuples).
    space_name: registered name of the space (see :data:`jdanas.spaces.SPACES`).
    encoding: the architecture, ``int[D]``.
    variables: ``{"params", "batch_stats"}`` of the trained student.
    num_classes: number of classes.
    input_shape: ``(H, W, C)`` of one image.
    mean: per-channel mean used by :func:`jdanas.train.batching.normalize`.
    std: per-channel standard deviation used by the same.
    meta: optional JSON-serialisable metadata (numpy scalars/arrays are converted; NaN becomes
      null). Its ``"params"`` and ``"flops"`` entries, if present, are also copied to the top
      level of ``arch.json``.
    platforms: platforms ``forward.jax`` is lowered for; ``None`` means the current backend only.

  Returns:
    The absolute export folder.

  Raises:
    ValueError: ``space`` does not match ``get_space(space_name, **space_kwargs)``, or the
      encoding is not valid in the space.
  """
  path = pathlib.Path(path).absolute()
  rebuilt = get_space(space_name, **_normalise_kwargs(dict(space_kwargs)))
  if rebuilt != space:
    raise ValueError(f"space_kwargs: get_space({space_name!r}, **{space_kwargs}) gives {rebuilt}, "
                     f"not the given space {space}")
  enc = space.check(encoding)
  input_shape = tuple(int(d) for d in input_shape)
  if len(input_shape) != 3:
    raise ValueError(f"input_shape: expected (H, W, C), got {input_shape}")
  mean = tuple(float(m) for m in np.asarray(mean).reshape(-1))
  std = tuple(float(s) for s in np.asarray(std).reshape(-1))
  module = space.build(space.signature(enc), int(num_classes))
  variables = jax.device_get(dict(variables))
  meta = to_jsonable(dict(meta or {}))

  path.mkdir(parents=True, exist_ok=True)
  (path / ARCH_FILE).unlink(missing_ok=True)  # written last: its presence marks a complete export
  with ocp.StandardCheckpointer(multiprocessing_options=process_local_orbax()) as ckptr:
    ckptr.save(path / VARIABLES_DIR, variables, force=True)

  h, w, c = input_shape
  spec = jax.ShapeDtypeStruct(jax.export.symbolic_shape(f"b, {h}, {w}, {c}"), jnp.uint8)
  # A masked space's specialised module (same variables) runs only the architecture's ops.
  forward = _forward_fn(space.specialize(enc, int(num_classes)) or module, variables, enc, mean, std)
  exported = jax.export.export(jax.jit(forward),
                               platforms=None if platforms is None else tuple(platforms))(spec)
  (path / FORWARD_FILE).write_bytes(exported.serialize())

  info = {
      "format_version": FORMAT_VERSION,
      "space_name": space_name,
      "space_kwargs": to_jsonable(dict(space_kwargs)),
      "encoding": [int(v) for v in enc],
      "arch": space.decode(enc),
      "num_classes": int(num_classes),
      "input_shape": list(input_shape),
      "mean": list(mean),
      "std": list(std),
      "params": meta.get("params"),
      "flops": meta.get("flops"),
      "forward": {"file": FORWARD_FILE, "input": f"uint8[b, {h}, {w}, {c}] raw pixels (normalised inside)",
                  "output": f"float32[b, {int(num_classes)}] logits", "weights": "baked in",
                  "platforms": list(exported.platforms)},
      "meta": meta,
      "versions": {"jdanas": jdanas.__version__, "jax": jax.__version__, "flax": flax.__version__,
                   "orbax-checkpoint": getattr(ocp, "__version__", None)},
  }
  tmp = path / (ARCH_FILE + ".tmp")
  tmp.write_text(json.dumps(info, indent=2, allow_nan=False))
  tmp.replace(path / ARCH_FILE)
  return path


def _deserialize(file: pathlib.Path) -> jax.export.Exported:
  if not file.is_file():
    raise FileNotFoundError(f"student.path: no {file.name} in {file.parent}")
  try:
    return jax.export.deserialize(bytearray(file.read_bytes()))
  except ImportError:
    raise
  except Exception as e:  # flatbuffers raises assorted errors on garbage
    raise ValueError(f"student.path: {file} is not a serialized jax.export ({type(e).__name__}: "
                     f"{str(e).splitlines()[0] if str(e) else ''})") from None


def load_student(path: str | pathlib.Path) -> Student:
  """Loads a student written by :func:`export_student`.

  The space is rebuilt with ``get_space(space_name, **space_kwargs)``, the module with
  ``space.build``, and the variables are restored by orbax into the abstract tree of
  ``module.init`` (``jax.eval_shape``: nothing is compiled). ``forward.jax`` is deserialized on
  the first call of :meth:`Student.exported`.

  Raises:
    FileNotFoundError: the folder, ``arch.json``, ``variables/`` or ``forward.jax`` is missing.
    ValueError: ``arch.json`` or the checkpoint is corrupt or does not match the architecture.
  """
  path = pathlib.Path(path).absolute()
  if not path.is_dir():
    raise FileNotFoundError(f"student.path: {path} is not a folder")
  info_file = path / ARCH_FILE
  if not info_file.is_file():
    raise FileNotFoundError(f"student.path: no {ARCH_FILE} in {path} (not an export, or an interrupted one)")
  for name, ok in ((VARIABLES_DIR, (path / VARIABLES_DIR).is_dir()), (FORWARD_FILE, (path / FORWARD_FILE).is_file())):
    if not ok:
      raise FileNotFoundError(f"student.path: no {name} in {path}")
  try:
    info = json.loads(info_file.read_text())
    space_name, space_kwargs = info["space_name"], _normalise_kwargs(info["space_kwargs"])
    encoding = np.asarray(info["encoding"], np.int32)
    num_classes, input_shape = int(info["num_classes"]), tuple(int(d) for d in info["input_shape"])
    mean, std = tuple(float(m) for m in info["mean"]), tuple(float(s) for s in info["std"])
  except (ValueError, KeyError, TypeError) as e:
    kind = "missing key " if isinstance(e, KeyError) else ""
    raise ValueError(f"student.path: {info_file} is corrupt ({kind}{str(e).splitlines()[0]})") from None
  try:
    space = get_space(space_name, **space_kwargs)
    encoding = space.check(encoding)
  except ValueError as e:
    raise ValueError(f"student.path: {info_file}: {e}") from None
  module = space.build(space.signature(encoding), num_classes)
  abstract = jax.eval_shape(lambda: module.init(
      jax.random.key(0), jnp.zeros((1,) + input_shape, jnp.float32), jnp.asarray(encoding), train=False))
  try:
    with ocp.StandardCheckpointer(multiprocessing_options=process_local_orbax()) as ckptr:
      variables = ckptr.restore(path / VARIABLES_DIR, abstract)
  except Exception as e:  # orbax/tensorstore raise many types for a damaged or mismatched checkpoint
    msg = " ".join(line.strip() for line in str(e).splitlines()[:3] if line.strip())
    msg = msg if len(msg) <= 240 else msg[:237] + "..."
    raise ValueError(f"student.path: cannot restore {path / VARIABLES_DIR} for arch "
                     f"{space.decode(encoding)!r} ({type(e).__name__}: {msg})") from None
  return Student(arch=space.decode(encoding), encoding=encoding, space=space, module=module,
                 variables=variables, num_classes=num_classes, input_shape=input_shape, mean=mean,
                 std=std, meta=info.get("meta") or {}, path=path)


__all__ = ["ARCH_FILE", "FORWARD_FILE", "Student", "VARIABLES_DIR", "check_images", "export_student", "load_student"]
