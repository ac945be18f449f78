"""Host-side dataset loading: images and labels into numpy, split into train / val / test.

:func:`load_dataset` returns a :class:`Dataset` of uint8 NHWC images and int32 labels. Three kinds
of source are understood:

* ``"digits"``: scikit-learn's embedded 8x8 handwritten digits (1,797 images, ships with the
  dependency, so it works offline). Pixel values ``0..16`` become ``round(v * 255 / 16)`` as
  uint8 (half rounds up), shape ``[N, 8, 8, 1]``. The test split is a fixed, **stratified**
  20 % hold-out: for every class, a permutation from ``np.random.default_rng(0)`` puts
  ``round(0.2 * n_class)`` images into test (359 in all); the remaining 1,438 form the
  training pool. This split never depends on ``seed``.
* ``"npz"``: a local ``.npz`` (``path=``) with ``x`` uint8 ``[N, H, W, C]`` (or ``[N, H, W]``,
  which gets a channel axis) and integer ``y`` ``[N]``; ``test_path=`` optionally names a second
  file used as the test split. Files are read without ``allow_pickle``.
* any other name: a TFDS dataset read through ``tfds.data_source`` (random access to ArrayRecord
  files, which works without TensorFlow). The dataset must already be prepared as ArrayRecord
  in ``data_dir``; nothing is ever downloaded.

The validation split is always held out from the training data (never from test): a permutation
from ``np.random.default_rng(seed)`` of the training pool puts its first ``val_size`` (default
``round(val_fraction * N)``) examples into val and the rest into train; ``train_limit`` keeps
the first ``train_limit`` of that rest. ``test_limit`` keeps the first ``test_limit`` examples
of a fixed permutation (``np.random.default_rng(0)``, independent of ``seed``), so every seed
evaluates on the same test subset. Within each split, examples are stored in their original
source order; :attr:`Split.index` records their positions in the source.

Every bad input raises a one-line ``ValueError`` that starts with the name of the offending
argument.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pathlib
import time
from typing import Any, Callable, Sequence

import numpy as np

from jdanas.errors import FieldError

DATA_DIR_ENV = "JDANAS_DATA_DIR"

_log = logging.getLogger(__name__)

_DIGITS_TEST_FRACTION = 0.2
_FIXED_SEED = 0  # seed of the digits test split and of the test_limit subsample
_TFDS_CHUNK = 1024  # examples per bulk read from a TFDS data source
_STATS_CHUNK = 4096  # images per chunk when computing channel statistics


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Split:
  """One split of a dataset.

  Attributes:
    x: ``uint8[N, H, W, C]`` images (NHWC).
    y: ``int32[N]`` labels.
    index: optional ``int64[N]`` positions of the examples in the source they were read from
      (the npz file, the TFDS split, or scikit-learn's 1,797 digits), for bookkeeping.
  """

  x: np.ndarray
  y: np.ndarray
  index: np.ndarray | None = None

  def __post_init__(self):
    if not isinstance(self.x, np.ndarray) or self.x.dtype != np.uint8 or self.x.ndim != 4:
      raise FieldError("x", f"expected a uint8 [N, H, W, C] array, got {_describe(self.x)}")
    if not isinstance(self.y, np.ndarray) or self.y.dtype != np.int32 or self.y.ndim != 1:
      raise FieldError("y", f"expected an int32 [N] array, got {_describe(self.y)}")
    if len(self.x) != len(self.y):
      raise FieldError("y", f"has {len(self.y)} labels but x has {len(self.x)} images")
    if self.index is not None and (
        not isinstance(self.index, np.ndarray) or self.index.shape != self.y.shape):
      raise FieldError("index", f"expected an integer [{len(self.y)}] array, got "
                       f"{_describe(self.index)}")

  def __len__(self) -> int:
    return len(self.y)

  def __repr__(self) -> str:
    return f"Split(x={_describe(self.x)}, y={_describe(self.y)})"


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """A loaded image-classification dataset.

  Attributes:
    name: the source name given to :func:`load_dataset`.
    train: the training split (training pool minus validation, optionally limited).
    val: the validation split, held out from the training pool.
    test: the test split, or ``None`` when the source has none.
    num_classes: number of classes; labels lie in ``0 .. num_classes - 1``.
    mean: per-channel mean of the train pixels / 255.
    std: per-channel (population) standard deviation of the train pixels / 255.
  """

  name: str
  train: Split
  val: Split
  test: Split | None
  num_classes: int
  mean: tuple[float, ...]
  std: tuple[float, ...]

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """``(H, W, C)`` of every image."""
    return tuple(int(d) for d in self.train.x.shape[1:])


def shared_data_dir() -> pathlib.Path:
  """The directory of the shared offline data used by tests and benchmarks.

  The library itself never needs it.

  Returns:
    ``$JDANAS_DATA_DIR`` when set (and non-empty), else ``<repo root>/../shared/data``.
  """
  env = os.environ.get(DATA_DIR_ENV)
  if env:
    return pathlib.Path(env).expanduser()
  repo_root = pathlib.Path(__file__).resolve().parents[2]  # sources.py -> data -> jdanas -> repo
  return (repo_root.parent / "shared" / "data").resolve()


def load_dataset(name: str, *, data_dir: str | os.PathLike | None = None,
                 path: str | os.PathLike | None = None,
                 test_path: str | os.PathLike | None = None,
                 val_fraction: float = 0.1, val_size: int | None = None, seed: int = 0,
                 train_limit: int | None = None, test_limit: int | None = None,
                 num_classes: int | None = None, image_key: str | None = None,
                 label_key: str | None = None, remap_labels: bool = False,
                 image_size: int | None = None, rgb: bool = False) -> Dataset:
  """Loads a dataset into numpy and splits it into train / val / test.

  Args:
    name: ``"digits"``, ``"npz"`` or a TFDS dataset name (e.g. ``"cifar10"``).
    data_dir: TFDS data directory (``None``: the TFDS default); for ``"npz"``, the base of
      relative ``path`` / ``test_path``. Ignored by ``"digits"``.
    path: the ``.npz`` file of the training pool (``"npz"`` only, required there).
    test_path: an optional ``.npz`` file used as the test split (``"npz"`` only).
    val_fraction: fraction of the training pool held out for validation, in ``(0, 1)``.
    val_size: number of validation examples; overrides ``val_fraction`` when given.
    seed: seed of the train / val split (a non-negative integer).
    train_limit: keep at most this many training examples (after the val split).
    test_limit: keep at most this many test examples (a fixed, seed-independent subset).
    num_classes: number of classes; default: the TFDS label feature's, 10 for digits, and
      ``max label + 1`` (over train pool and test) for npz. Must exceed every label.
    image_key: image key of the source (default ``"x"`` for npz, ``"image"`` for TFDS).
    label_key: label key of the source (default ``"y"`` for npz, ``"label"`` for TFDS).
    remap_labels: map the labels that occur (in the training pool and test) onto ``0..K-1`` in
      sorted order (``npz`` only; e.g. labels ``{1, 5, 999}`` become ``{0, 1, 2}``). Without it,
      inferred classes that never occur (a gap such as one label 999 among 0..9) are refused,
      since they would silently turn the task into a 1000-class problem.
    image_size: resize every image to ``image_size x image_size`` (bilinear, antialiased, with PIL;
      the aspect ratio is not kept) as it is read: datasets whose images vary in size (e.g. TFDS
      ``dtd``, ``cars196``, ``caltech_birds2011``) load only with it. None: as stored.
    rgb: repeat single-channel (grey) images into 3 channels (e.g. ``quickdraw_bitmap`` for a
      network or predictor built for RGB input); 3-channel images are kept.

  Returns:
    The :class:`Dataset`, with channel statistics of its train split.

  Raises:
    ValueError: a one-line message naming the argument, for any bad input.
  """
  if not isinstance(name, str) or not name:
    raise FieldError("name", f"expected a non-empty string, got {name!r}")
  if not isinstance(val_fraction, (int, float, np.integer, np.floating)) or isinstance(
      val_fraction, bool) or not 0.0 < float(val_fraction) < 1.0:
    raise FieldError("val_fraction", f"must lie strictly between 0 and 1 (the search selects on "
                     f"the validation split), got {val_fraction!r}")
  _check_int("seed", seed, minimum=0)
  _check_int("val_size", val_size, minimum=1, optional=True)
  _check_int("train_limit", train_limit, minimum=1, optional=True)
  _check_int("test_limit", test_limit, minimum=1, optional=True)
  _check_int("num_classes", num_classes, minimum=1, optional=True)
  for arg, value in (("image_key", image_key), ("label_key", label_key)):
    if value is not None and (not isinstance(value, str) or not value):
      raise FieldError(arg, f"expected a non-empty string, got {value!r}")
  if not isinstance(remap_labels, (bool, np.bool_)):
    raise FieldError("remap_labels", f"expected True or False, got {remap_labels!r}")
  _check_int("image_size", image_size, minimum=1, optional=True)
  if not isinstance(rgb, (bool, np.bool_)):
    raise FieldError("rgb", f"expected True or False, got {rgb!r}")
  fit = _image_fitter(image_size, bool(rgb))
  if name != "npz":
    for arg, value in (("path", path), ("test_path", test_path), ("remap_labels", remap_labels or None)):
      if value is not None:
        raise FieldError(arg, f"only used with name='npz', got name={name!r}")

  if name == "digits":
    for arg, value in (("image_key", image_key), ("label_key", label_key)):
      if value is not None:
        raise FieldError(arg, f"not used with name='digits'")
    pool, test, default_classes = _digits_sources()
  elif name == "npz":
    if remap_labels and num_classes is not None:
      raise FieldError("remap_labels", "the number of classes is that of the remapped labels; drop num_classes")
    pool, test, default_classes = _npz_sources(path, test_path, data_dir, image_key or "x",
                                               label_key or "y", remap_labels=bool(remap_labels),
                                               allow_gaps=num_classes is not None)
  else:
    pool, test, default_classes = _tfds_sources(name, data_dir, image_key or "image",
                                                label_key or "label", fit)
  if fit is not None and name in ("digits", "npz"):  # uniform arrays: fitted after reading
    pool, test = (None if src is None else _fitted(src, fit) for src in (pool, test))
  if default_classes is None and num_classes is None:
    raise FieldError("num_classes", f"cannot be inferred for {name!r}; pass num_classes")
  classes = int(num_classes if num_classes is not None else default_classes)

  train_idx, val_idx = _split_indices(pool.size, val_fraction=float(val_fraction),
                                      val_size=val_size, seed=int(seed),
                                      train_limit=train_limit)
  train = pool.take(train_idx)
  val = pool.take(val_idx)
  test_split = None
  if test is not None and test.size > 0:
    test_idx = np.arange(test.size, dtype=np.int64)
    if test_limit is not None and test_limit < test.size:
      perm = np.random.default_rng(_FIXED_SEED).permutation(test.size)
      test_idx = np.sort(perm[:test_limit]).astype(np.int64)
    test_split = test.take(test_idx)
    if test_split.x.shape[1:] != train.x.shape[1:]:
      raise FieldError(test.arg, f"test images have shape {test_split.x.shape[1:]} but "
                       f"training images have {train.x.shape[1:]}")

  for split, source in ((train, pool), (val, pool), (test_split, test)):
    if split is not None and len(split) and split.y.max() >= classes:
      arg = "num_classes" if num_classes is not None else source.label_arg
      raise FieldError(arg, f"label {int(split.y.max())} found but num_classes={classes}")
  present = np.unique(train.y)
  if len(present) < 2:
    raise FieldError(pool.label_arg, f"the training split holds a single class (label {int(present[0])}); "
                     f"classification needs at least 2")

  mean, std = _channel_stats(train.x)
  return Dataset(name=name, train=train, val=val, test=test_split, num_classes=classes,
                 mean=mean, std=std)


# ---- split bookkeeping ------------------------------------------------------------------------


def _split_indices(n: int, *, val_fraction: float, val_size: int | None, seed: int,
                   train_limit: int | None) -> tuple[np.ndarray, np.ndarray]:
  """Sorted train and val positions in a training pool of ``n`` examples.

  Args:
    n: size of the training pool.
    val_fraction: used when ``val_size`` is None: ``round(val_fraction * n)`` val examples.
    val_size: number of val examples, or None.
    seed: seed of the permutation.
    train_limit: keep at most this many training examples, or None.

  Returns:
    ``(train_idx, val_idx)``, disjoint sorted ``int64`` arrays.
  """
  if val_size is not None:
    if val_size >= n:
      raise FieldError("val_size", f"{val_size} leaves no training examples out of {n}")
    num_val = int(val_size)
  else:
    num_val = int(round(val_fraction * n))
    if num_val < 1 or num_val >= n:
      raise FieldError("val_fraction", f"{val_fraction} of {n} training examples gives "
                       f"{num_val} validation examples; choose another val_fraction or val_size")
  perm = np.random.default_rng(seed).permutation(n)
  rest = perm[num_val:]
  if train_limit is not None:
    rest = rest[:train_limit]
  return np.sort(rest).astype(np.int64), np.sort(perm[:num_val]).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class _Source:
  """A split of a source that can be read at given positions.

  Attributes:
    size: number of examples.
    read: ``read(idx) -> (uint8[k, H, W, C], int64[k])`` for sorted positions ``idx``.
    arg: the argument to name in errors about the images (e.g. ``path``).
    label_arg: the argument to name in errors about the labels.
    positions: optional map from read positions to the :attr:`Split.index` recorded (digits:
      positions among all 1,797 images); None records the read positions themselves.
  """

  size: int
  read: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
  arg: str
  label_arg: str
  positions: np.ndarray | None = None

  def take(self, idx: np.ndarray) -> Split:
    """Reads the examples at ``idx`` into a :class:`Split`."""
    x, y = self.read(idx)
    if len(y) and y.min() < 0:
      raise FieldError(self.label_arg, f"labels must be non-negative, found {int(y.min())}")
    if len(y) and y.max() > np.iinfo(np.int32).max:
      raise FieldError(self.label_arg, f"label {int(y.max())} does not fit in int32")
    index = idx if self.positions is None else self.positions[idx]
    return Split(x=x, y=y.astype(np.int32), index=np.asarray(index, np.int64))


def _array_source(x: np.ndarray, y: np.ndarray, arg: str, label_arg: str) -> _Source:
  """A :class:`_Source` over in-memory arrays (validated by the caller)."""
  return _Source(size=len(y), read=lambda idx: (x[idx], y[idx].astype(np.int64)), arg=arg,
                 label_arg=label_arg)


def _check_arrays(x: Any, y: Any, arg: str, what: str) -> tuple[np.ndarray, np.ndarray]:
  """Validates images and labels and returns them as (uint8 NHWC, int64[N]).

  Args:
    x: images, uint8 ``[N, H, W, C]`` or ``[N, H, W]``.
    y: integer labels ``[N]``.
    arg: the argument the arrays came from (``FieldError.field``).
    what: what was read, e.g. ``"'a.npz' (keys 'x'/'y')"``.

  Returns:
    ``(x, y)`` with a channel axis added to rank-3 ``x`` and ``y`` as int64.
  """
  if x.dtype != np.uint8:
    raise FieldError(arg, f"{what}: images must be uint8, got {x.dtype}")
  if x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4:
    raise FieldError(arg, f"{what}: images must be [N, H, W, C] or [N, H, W], got shape {x.shape}")
  if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
    raise FieldError(arg, f"{what}: labels must be a 1-D integer array, got {_describe(y)}")
  if len(x) != len(y):
    raise FieldError(arg, f"{what}: {len(x)} images but {len(y)} labels")
  if len(y) == 0:
    raise FieldError(arg, f"{what}: no examples")
  if y.min() < 0:
    raise FieldError(arg, f"{what}: labels must be non-negative, found {int(y.min())}")
  if int(y.max()) > np.iinfo(np.int32).max:
    raise FieldError(arg, f"{what}: label {int(y.max())} does not fit in int32")
  return x, y.astype(np.int64)


# ---- digits -----------------------------------------------------------------------------------


def _digits_sources() -> tuple[_Source, _Source, int]:
  """The scikit-learn digits as (training pool, test, num_classes); see the module docstring."""
  from sklearn import datasets as sk_datasets  # pylint: disable=import-outside-toplevel

  digits = sk_datasets.load_digits()
  x = np.floor(np.asarray(digits.images, np.float64) * (255.0 / 16.0) + 0.5)
  x = np.clip(x, 0, 255).astype(np.uint8)[..., None]
  y = np.asarray(digits.target, np.int64)
  rng = np.random.default_rng(_FIXED_SEED)
  is_test = np.zeros(len(y), bool)
  for c in np.unique(y):
    members = np.flatnonzero(y == c)
    chosen = rng.permutation(members)[:int(round(_DIGITS_TEST_FRACTION * len(members)))]
    is_test[chosen] = True
  pool_pos, test_pos = np.flatnonzero(~is_test), np.flatnonzero(is_test)

  def source(positions: np.ndarray) -> _Source:
    return _Source(size=len(positions), read=lambda idx: (x[positions[idx]], y[positions[idx]]),
                   arg="name", label_arg="name", positions=positions)

  return source(pool_pos), source(test_pos), 10


# ---- npz --------------------------------------------------------------------------------------


def _npz_sources(path: Any, test_path: Any, data_dir: Any, image_key: str, label_key: str, *,
                 remap_labels: bool = False, allow_gaps: bool = False) -> tuple[_Source, _Source | None, int]:
  """Training pool and optional test source from ``.npz`` files, plus the number of classes:
  ``max label + 1``, or with ``remap_labels`` the number of distinct labels (mapped onto
  ``0..K-1`` in sorted order). Unless ``allow_gaps`` (an explicit ``num_classes``), classes in
  ``0..max`` that occur in neither file are refused."""
  if path is None:
    raise FieldError("path", "name='npz' needs path=<file.npz>")
  x, y = _read_npz("path", path, data_dir, image_key, label_key)
  tx = ty = None
  if test_path is not None:
    tx, ty = _read_npz("test_path", test_path, data_dir, image_key, label_key)
    if tx.shape[1:] != x.shape[1:]:
      raise FieldError("test_path", f"images have shape {tx.shape[1:]} but those of path have "
                       f"{x.shape[1:]}")
  seen = np.unique(y if ty is None else np.concatenate([y, ty]))
  if remap_labels:
    y = np.searchsorted(seen, y)
    ty = None if ty is None else np.searchsorted(seen, ty)
    seen = np.arange(len(seen))
  classes = int(seen[-1]) + 1
  if not allow_gaps and len(seen) < classes:
    missing = np.setdiff1d(np.arange(classes), seen)
    shown = ", ".join(str(int(m)) for m in missing[:5]) + (", ..." if len(missing) > 5 else "")
    raise FieldError("path", f"labels are not 0..K-1: {len(missing)} of the {classes} classes up to the largest "
                     f"label never occur ({shown}); set remap_labels=True or pass num_classes")
  test = None if tx is None else _array_source(tx, ty, "test_path", "test_path")
  return _array_source(x, y, "path", "path"), test, classes


def _read_npz(arg: str, path: Any, data_dir: Any, image_key: str,
              label_key: str) -> tuple[np.ndarray, np.ndarray]:
  """Reads and validates ``(x, y)`` from one ``.npz`` file.

  Args:
    arg: the argument name for errors (``path`` or ``test_path``).
    path: the file; relative paths are taken relative to ``data_dir`` when that is given.
    data_dir: optional base directory.
    image_key: key of the images.
    label_key: key of the labels.

  Returns:
    ``(uint8[N, H, W, C], int64[N])``.
  """
  try:
    file = pathlib.Path(os.fspath(path)).expanduser()
  except TypeError:
    raise FieldError(arg, f"expected a file path, got {path!r}") from None
  if data_dir is not None and not file.is_absolute():
    file = pathlib.Path(os.fspath(data_dir)).expanduser() / file
  if not file.is_file():
    raise FieldError(arg, f"no such file {str(file)!r}")
  where = repr(str(file))
  try:
    with np.load(file, allow_pickle=False) as npz:
      keys = list(npz.files)
      missing = [k for k in (image_key, label_key) if k not in keys]
      if missing:
        raise FieldError(arg, f"{str(file)!r} lacks key(s) {missing} (has {keys}); set "
                         f"image_key / label_key to pick others")
      x, y = npz[image_key], npz[label_key]
  except ValueError as e:
    if isinstance(e, FieldError):
      raise
    raise FieldError(arg, f"{where}: cannot read as a pickle-free .npz ({_first_line(e)})") from None
  except (OSError, EOFError) as e:
    raise FieldError(arg, f"{where}: cannot read as .npz ({_first_line(e)})") from None
  return _check_arrays(x, y, arg, f"{where} (keys {image_key!r}/{label_key!r})")


# ---- TFDS -------------------------------------------------------------------------------------


def _tfds_sources(name: str, data_dir: Any, image_key: str, label_key: str,
                  fit: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[_Source, _Source | None, int | None]:
  """Train and (when present) test sources of a prepared TFDS dataset, plus num_classes."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  data_dir = None if data_dir is None else os.fspath(pathlib.Path(os.fspath(data_dir)).expanduser())
  with _quiet_tfds():
    train_ds = _open_tfds(tfds, name, "train", data_dir)
  info = train_ds.dataset_info
  features = info.features
  for arg, key in (("image_key", image_key), ("label_key", label_key)):
    if features is not None and key not in features:
      raise FieldError(arg, f"{name!r} has no feature {key!r} (has {sorted(features.keys())})")
  classes = getattr(features[label_key], "num_classes", None) if features is not None else None
  available = set(info.splits.keys()) if info.splits else set()
  test_ds = None
  if not available or "test" in available:
    with _quiet_tfds():
      test_ds = _open_tfds(tfds, name, "test", data_dir, missing_ok=not available)

  def source(ds: Any) -> _Source:
    return _Source(size=len(ds), arg="image_key", label_arg="label_key",
                   read=lambda idx: _read_tfds(ds, idx, image_key, label_key, fit))

  return source(train_ds), (source(test_ds) if test_ds is not None else None), classes


@contextlib.contextmanager
def _quiet_tfds():
  """Silences TFDS's log lines while it looks for a dataset, restoring the levels after.

  TFDS logs through absl (the Python logger ``absl``) and its own loggers, e.g. two ``WARNING`` lines
  "Variant folder ... has no dataset_info.json" for a dataset that is not prepared; :func:`_open_tfds`
  reports every outcome as one ``ValueError`` line naming the argument, so those lines would only be
  noise above the one ``error:`` line a bad input gets. Errors (level ERROR and above) still pass.
  """
  loggers = [logging.getLogger(name) for name in ("absl", "tensorflow_datasets")]
  levels = [logger.level for logger in loggers]
  for logger in loggers:
    logger.setLevel(max(logging.ERROR, logger.getEffectiveLevel()))
  try:
    yield
  finally:
    for logger, level in zip(loggers, levels):
      logger.setLevel(level)


def _open_tfds(tfds: Any, name: str, split: str, data_dir: str | None,
               missing_ok: bool = False) -> Any:
  """``tfds.data_source(name, split=split)`` without downloading, with one-line errors.

  Args:
    tfds: the ``tensorflow_datasets`` module.
    name: dataset name.
    split: split name.
    data_dir: data directory or None.
    missing_ok: return None instead of raising when the split does not exist.

  Returns:
    The random-access data source, or None (``missing_ok`` and no such split).
  """
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except tfds.core.registered.DatasetNotFoundError:
    raise FieldError("name", f"unknown dataset {name!r} (neither 'digits', 'npz' nor a TFDS "
                     f"dataset name)") from None
  except Exception as e:  # pylint: disable=broad-except
    error = e
  try:
    builder = tfds.builder(name, data_dir=data_dir)
    prepared = builder.is_prepared()
    file_format = getattr(builder.info, "file_format", None)
    splits = set(builder.info.splits.keys()) if prepared else set()
    where = str(builder.data_dir)
  except Exception:  # pylint: disable=broad-except
    prepared, file_format, splits, where = False, None, set(), str(data_dir)
  shown_dir = data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
  build = (f"preparing TFDS datasets needs TensorFlow and network access (`pip install "
           f"tensorflow-cpu`, then `tfds build {name} --data_dir {shown_dir} --file_format "
           f"array_record`), or save the arrays as an .npz and use "
           f"load_dataset('npz', path=...)")
  if not prepared:
    raise FieldError("data_dir", f"TFDS dataset {name!r} is not prepared in "
                     f"{data_dir or 'the default TFDS data_dir'}; {build}") from None
  if splits and split not in splits:
    if missing_ok:
      return None
    raise FieldError("name", f"TFDS dataset {name!r} has no {split!r} split (has "
                     f"{sorted(splits)})") from None
  if file_format is not None and "array_record" not in str(file_format).lower():
    raise FieldError("data_dir", f"TFDS dataset {name!r} at {where} is stored as {file_format}, "
                     f"but reading without TensorFlow needs ArrayRecord files; {build}") from None
  raise FieldError("name", f"cannot open TFDS dataset {name!r} split {split!r} at {where}: "
                   f"{type(error).__name__}: {_first_line(error)}") from None


def _read_tfds(ds: Any, idx: np.ndarray, image_key: str, label_key: str,
               fit: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Reads the examples at positions ``idx`` of a TFDS data source.

  Chunks are read with the data source's bulk ``__getitems__`` when it works (it does for real
  ArrayRecord sources); otherwise, e.g. under ``tfds.testing.mock_data``, one by one.

  Args:
    ds: a TFDS random-access data source.
    idx: sorted positions.
    image_key: image feature name.
    label_key: label feature name.
    fit: applied to every image as it is read (:func:`_image_fitter`), or None.

  Returns:
    ``(uint8[k, H, W, C], int64[k])``.
  """
  start_time = time.perf_counter()
  n = len(idx)
  x: np.ndarray | None = None
  y = np.empty(n, np.int64)
  bulk = True
  for start in range(0, n, _TFDS_CHUNK):
    keys = [int(i) for i in idx[start:start + _TFDS_CHUNK]]
    examples: Sequence[Any] | None = None
    if bulk:
      try:
        examples = ds.__getitems__(keys)
      except (TypeError, AttributeError):
        examples = None
      if examples is None or len(examples) != len(keys):
        bulk, examples = False, None
    if examples is None:
      examples = [ds[k] for k in keys]
    for j, example in enumerate(examples):
      for arg, key in (("image_key", image_key), ("label_key", label_key)):
        if key not in example:
          raise FieldError(arg, f"examples have no {key!r} (have {sorted(example)})")
      image = np.asarray(example[image_key])
      if image.ndim == 2:
        image = image[..., None]
      if fit is not None and image.dtype == np.uint8 and image.ndim == 3:
        image = fit(image)
      if x is None:
        if image.dtype != np.uint8 or image.ndim != 3:
          raise FieldError("image_key", f"{image_key!r} must hold uint8 [H, W, C] images, got "
                           f"{_describe(image)}")
        x = np.empty((n,) + image.shape, np.uint8)
      elif image.shape != x.shape[1:] or image.dtype != np.uint8:
        raise FieldError("image_key", f"images of {image_key!r} differ in shape or dtype "
                         f"({_describe(image)} vs {_describe(x[0])}); pass image_size (config: "
                         f"data.image_size) to resize them as they are read")
      x[start + j] = image
      label = np.asarray(example[label_key])
      if label.ndim != 0 or not np.issubdtype(label.dtype, np.integer):
        raise FieldError("label_key", f"{label_key!r} must hold integer scalars, got "
                         f"{_describe(label)}")
      y[start + j] = int(label)
  if x is None:
    raise FieldError("name", "the TFDS split holds no examples")
  elapsed = time.perf_counter() - start_time
  _log.info("read %d TFDS examples in %.2fs (%s)", n, elapsed, "bulk" if bulk else "one by one")
  return x, y


# ---- helpers ----------------------------------------------------------------------------------


def _image_fitter(image_size: int | None, rgb: bool) -> Callable[[np.ndarray], np.ndarray] | None:
  """``uint8[H, W, C] -> uint8[S, S, C']`` for :func:`load_dataset`'s ``image_size`` / ``rgb``, or None."""
  if image_size is None and not rgb:
    return None

  def fit(image: np.ndarray) -> np.ndarray:
    if rgb and image.shape[-1] == 1:
      image = np.repeat(image, 3, axis=-1)
    if image_size is not None and image.shape[:2] != (image_size, image_size):
      from PIL import Image  # pylint: disable=import-outside-toplevel  (Pillow comes with matplotlib)
      grey = image.shape[-1] == 1
      resized = Image.fromarray(image[..., 0] if grey else image).resize((image_size, image_size),
                                                                          Image.Resampling.BILINEAR)
      image = np.asarray(resized, np.uint8)[..., None] if grey else np.asarray(resized, np.uint8)
    return image

  return fit


def _fitted(source: _Source, fit: Callable[[np.ndarray], np.ndarray]) -> _Source:
  """``source`` whose reads go through ``fit`` image by image."""
  def read(idx):
    x, y = source.read(idx)
    return np.stack([fit(image) for image in x]) if len(x) else x, y
  return dataclasses.replace(source, read=read)


def _channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """Exact per-channel mean and population std of ``x / 255`` from 256-bin histograms.

  Args:
    x: ``uint8[N, H, W, C]``.

  Returns:
    ``(mean, std)``, tuples of C python floats.
  """
  channels = x.shape[-1]
  counts = np.zeros((channels, 256), np.float64)
  for start in range(0, len(x), _STATS_CHUNK):
    chunk = x[start:start + _STATS_CHUNK]
    for c in range(channels):
      counts[c] += np.bincount(chunk[..., c].ravel(), minlength=256)
  levels = np.arange(256, dtype=np.float64) / 255.0
  total = counts.sum(axis=1)
  mean = counts @ levels / total
  var = (counts * (levels[None, :] - mean[:, None]) ** 2).sum(axis=1) / total
  return tuple(float(m) for m in mean), tuple(float(s) for s in np.sqrt(var))


def _check_int(arg: str, value: Any, *, minimum: int, optional: bool = False) -> None:
  """Raises a one-line ValueError unless ``value`` is an int ``>= minimum`` (or allowed None)."""
  if value is None and optional:
    return
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise FieldError(arg, f"expected an integer >= {minimum}"
                     f"{' or None' if optional else ''}, got {value!r}")


def _describe(a: Any) -> str:
  """A short description such as ``uint8[10,32,32,3]`` of an array-like."""
  if isinstance(a, np.ndarray):
    return f"{a.dtype}[{','.join(str(d) for d in a.shape)}]"
  return type(a).__name__


def _first_line(e: BaseException) -> str:
  """The first line of an exception's message."""
  text = str(e).strip()
  return text.splitlines()[0] if text else type(e).__name__
