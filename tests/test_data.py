"""Tests of host-side dataset loading (:mod:`jdanas.data.sources`)."""
from __future__ import annotations

import io
import pathlib

import numpy as np
import pytest

from jdanas import data
from jdanas.data import sources

# ---- helpers ----------------------------------------------------------------------------------


def _write_npz(path: pathlib.Path, **arrays) -> pathlib.Path:
  """Writes ``arrays`` to ``path`` (uncompressed npz) and returns the path."""
  np.savez(path, **arrays)
  return path


def _small_arrays(n: int = 50, shape=(6, 5, 3), num_classes: int = 4, seed: int = 1):
  """Random uint8 images and uint8 labels; every image is distinct."""
  rng = np.random.default_rng(seed)
  x = rng.integers(0, 256, (n,) + shape, dtype=np.uint8)
  x[:, 0, 0, 0] = np.arange(n) % 256  # keep images distinct
  y = (np.arange(n) % num_classes).astype(np.uint8)
  return x, y


def _assert_disjoint_cover(ds: data.Dataset, pool_size: int):
  """Train and val indices are disjoint, sorted and together cover the pool (no limit)."""
  train, val = set(ds.train.index.tolist()), set(ds.val.index.tolist())
  assert not train & val
  assert len(train) + len(val) == pool_size
  assert np.all(np.diff(ds.train.index) > 0) and np.all(np.diff(ds.val.index) > 0)


# ---- digits -----------------------------------------------------------------------------------


def test_digits_shapes_dtypes_and_sizes():
  ds = data.load_dataset("digits")
  assert ds.name == "digits" and ds.num_classes == 10 and ds.image_shape == (8, 8, 1)
  for split in (ds.train, ds.val, ds.test):
    assert split.x.dtype == np.uint8 and split.x.ndim == 4 and split.x.shape[1:] == (8, 8, 1)
    assert split.y.dtype == np.int32 and split.y.shape == (len(split.x),)
    assert split.y.min() >= 0 and split.y.max() < 10
  assert len(ds.test) == 359  # stratified 20 %: round(0.2 * n_class) per class
  assert len(ds.train) + len(ds.val) == 1797 - 359
  assert len(ds.val) == round(0.1 * 1438)
  assert np.bincount(ds.test.y, minlength=10).min() >= 35  # stratified: every class present
  # 0..16 scaled to 0..255 with rounding: the 17 levels round(k * 255 / 16).
  levels = set(np.floor(np.arange(17) * 255 / 16 + 0.5).astype(int).tolist())
  assert set(np.unique(ds.train.x).tolist()) <= levels and ds.train.x.max() == 255
  # Indices refer to sklearn's 1,797 digits: train, val and test partition them.
  everything = np.concatenate([ds.train.index, ds.val.index, ds.test.index])
  assert np.array_equal(np.sort(everything), np.arange(1797))


def test_digits_pixels_match_sklearn():
  from sklearn.datasets import load_digits
  raw = load_digits()
  ds = data.load_dataset("digits")
  for split in (ds.train, ds.val, ds.test):
    expected = np.floor(raw.images[split.index] * 255 / 16 + 0.5).astype(np.uint8)[..., None]
    assert np.array_equal(split.x, expected)
    assert np.array_equal(split.y, raw.target[split.index])


def test_digits_split_determinism():
  a = data.load_dataset("digits", seed=3)
  b = data.load_dataset("digits", seed=3)
  c = data.load_dataset("digits", seed=4)
  assert np.array_equal(a.val.index, b.val.index) and np.array_equal(a.train.x, b.train.x)
  assert not np.array_equal(a.val.index, c.val.index)
  assert np.array_equal(a.test.index, c.test.index)  # the test split never depends on seed
  for ds in (a, c):
    _assert_disjoint_cover(ds, 1438)
    assert not set(ds.test.index.tolist()) & set(ds.train.index.tolist())
    assert not set(ds.test.index.tolist()) & set(ds.val.index.tolist())


def test_val_size_and_limits():
  full = data.load_dataset("digits", seed=7, val_size=100)
  assert len(full.val) == 100 and len(full.train) == 1338
  limited = data.load_dataset("digits", seed=7, val_size=100, train_limit=200, test_limit=50)
  assert np.array_equal(limited.val.index, full.val.index)  # limits do not move the val split
  assert len(limited.train) == 200 and len(limited.test) == 50
  assert set(limited.train.index.tolist()) <= set(full.train.index.tolist())
  assert set(limited.test.index.tolist()) <= set(full.test.index.tolist())
  again = data.load_dataset("digits", seed=7, val_size=100, train_limit=200, test_limit=50)
  assert np.array_equal(limited.train.index, again.train.index)
  other_seed = data.load_dataset("digits", seed=8, test_limit=50)
  assert np.array_equal(other_seed.test.index, limited.test.index)  # same test subset
  # Limits larger than the split keep everything.
  big = data.load_dataset("digits", seed=7, val_size=100, train_limit=10**6, test_limit=10**6)
  assert len(big.train) == 1338 and len(big.test) == 359


def test_mean_std_of_train_pixels():
  ds = data.load_dataset("digits", seed=1, train_limit=300)
  pixels = ds.train.x.astype(np.float64) / 255.0
  np.testing.assert_allclose(ds.mean, pixels.mean(axis=(0, 1, 2)), rtol=1e-12)
  np.testing.assert_allclose(ds.std, pixels.std(axis=(0, 1, 2)), rtol=1e-12)
  assert all(type(v) is float for v in ds.mean + ds.std)


# ---- npz --------------------------------------------------------------------------------------


def test_npz_loading(tmp_path):
  x, y = _small_arrays(n=50)
  tx, ty = _small_arrays(n=12, seed=2)
  train_file = _write_npz(tmp_path / "train.npz", x=x, y=y, extra=np.zeros(3))
  test_file = _write_npz(tmp_path / "test.npz", x=tx, y=ty.astype(np.int64))
  ds = data.load_dataset("npz", path=train_file, test_path=str(test_file), seed=5,
                         val_fraction=0.2)
  assert ds.num_classes == 4 and ds.image_shape == (6, 5, 3)
  assert len(ds.val) == 10 and len(ds.train) == 40 and len(ds.test) == 12
  _assert_disjoint_cover(ds, 50)
  for split in (ds.train, ds.val):
    assert np.array_equal(split.x, x[split.index]) and np.array_equal(split.y, y[split.index])
    assert split.y.dtype == np.int32
  assert np.array_equal(ds.test.x, tx) and np.array_equal(ds.test.y, ty)
  np.testing.assert_allclose(ds.mean, (ds.train.x / 255.0).mean(axis=(0, 1, 2)), rtol=1e-12)


def test_npz_rank3_keys_num_classes_and_data_dir(tmp_path):
  x, y = _small_arrays(n=30, shape=(7, 7, 1))
  _write_npz(tmp_path / "gray.npz", images=x[..., 0], labels=y.astype(np.int16),
             coarse=(y // 2).astype(np.int8))
  ds = data.load_dataset("npz", path="gray.npz", data_dir=tmp_path, image_key="images",
                         label_key="labels", num_classes=9, val_size=5)
  assert ds.image_shape == (7, 7, 1) and ds.num_classes == 9 and ds.test is None
  assert len(ds.val) == 5 and len(ds.train) == 25
  coarse = data.load_dataset("npz", path=tmp_path / "gray.npz", image_key="images",
                             label_key="coarse")
  assert coarse.num_classes == 2


def _bad_npz(tmp_path, **arrays):
  return _write_npz(tmp_path / "bad.npz", **arrays)


_X, _Y = _small_arrays(n=20)

# (id, function of tmp_path returning load_dataset kwargs, argument the message must start with)
_BAD_INPUTS = [
    ("empty-name", lambda p: dict(name=""), "name"),
    ("unknown-name", lambda p: dict(name="no_such_dataset_xyz"), "name"),
    ("val-fraction-0", lambda p: dict(name="digits", val_fraction=0.0), "val_fraction"),
    ("val-fraction-1", lambda p: dict(name="digits", val_fraction=1.0), "val_fraction"),
    ("val-fraction-neg", lambda p: dict(name="digits", val_fraction=-0.1), "val_fraction"),
    ("val-fraction-str", lambda p: dict(name="digits", val_fraction="0.1"), "val_fraction"),
    ("val-fraction-tiny", lambda p: dict(name="npz", path=_bad_npz(p, x=_X, y=_Y),
                                         val_fraction=0.01), "val_fraction"),
    ("val-size-0", lambda p: dict(name="digits", val_size=0), "val_size"),
    ("val-size-too-large", lambda p: dict(name="digits", val_size=1438), "val_size"),
    ("val-size-float", lambda p: dict(name="digits", val_size=10.0), "val_size"),
    ("seed-negative", lambda p: dict(name="digits", seed=-1), "seed"),
    ("seed-bool", lambda p: dict(name="digits", seed=True), "seed"),
    ("train-limit-0", lambda p: dict(name="digits", train_limit=0), "train_limit"),
    ("test-limit-0", lambda p: dict(name="digits", test_limit=0), "test_limit"),
    ("num-classes-too-small", lambda p: dict(name="digits", num_classes=5), "num_classes"),
    ("num-classes-0", lambda p: dict(name="digits", num_classes=0), "num_classes"),
    ("path-with-digits", lambda p: dict(name="digits", path="a.npz"), "path"),
    ("test-path-with-digits", lambda p: dict(name="digits", test_path="a.npz"), "test_path"),
    ("image-key-with-digits", lambda p: dict(name="digits", image_key="x"), "image_key"),
    ("npz-without-path", lambda p: dict(name="npz"), "path"),
    ("npz-missing-file", lambda p: dict(name="npz", path=p / "nope.npz"), "path"),
    ("npz-not-a-zip", lambda p: dict(name="npz", path=_text_file(p)), "path"),
    ("npz-missing-x", lambda p: dict(name="npz", path=_bad_npz(p, images=_X, y=_Y)), "path"),
    ("npz-missing-y", lambda p: dict(name="npz", path=_bad_npz(p, x=_X)), "path"),
    ("npz-x-float", lambda p: dict(name="npz", path=_bad_npz(p, x=_X / 255.0, y=_Y)), "path"),
    ("npz-x-rank2", lambda p: dict(name="npz", path=_bad_npz(p, x=_X[:, :, 0, 0], y=_Y)),
     "path"),
    ("npz-x-rank5", lambda p: dict(name="npz", path=_bad_npz(p, x=_X[..., None], y=_Y)),
     "path"),
    ("npz-length-mismatch", lambda p: dict(name="npz", path=_bad_npz(p, x=_X, y=_Y[:-1])),
     "path"),
    ("npz-negative-labels", lambda p: dict(name="npz", path=_bad_npz(
        p, x=_X, y=_Y.astype(np.int64) - 1)), "path"),
    ("npz-float-labels", lambda p: dict(name="npz", path=_bad_npz(p, x=_X, y=_Y * 1.0)),
     "path"),
    ("npz-2d-labels", lambda p: dict(name="npz", path=_bad_npz(p, x=_X, y=_Y[:, None])),
     "path"),
    ("npz-empty", lambda p: dict(name="npz", path=_bad_npz(p, x=_X[:0], y=_Y[:0])), "path"),
    ("npz-pickled", lambda p: dict(name="npz", path=_bad_npz(
        p, x=np.array([_X[0], None], dtype=object), y=_Y[:2])), "path"),
    ("npz-label-too-large", lambda p: dict(name="npz", path=_bad_npz(p, x=_X, y=_Y),
                                           num_classes=2), "num_classes"),
    ("npz-bad-label-key", lambda p: dict(name="npz", path=_bad_npz(p, x=_X, y=_Y),
                                         label_key="fine"), "path"),
    ("npz-test-missing", lambda p: dict(name="npz", path=_bad_npz(p, x=_X, y=_Y),
                                        test_path=p / "nope.npz"), "test_path"),
    ("npz-test-shape", lambda p: dict(name="npz", path=_bad_npz(p, x=_X, y=_Y),
                                      test_path=_write_npz(p / "t.npz", x=_X[:, :3], y=_Y)),
     "test_path"),
    ("npz-test-negative", lambda p: dict(name="npz", path=_bad_npz(p, x=_X, y=_Y),
                                         test_path=_write_npz(p / "t.npz", x=_X, y=-_Y.astype(
                                             np.int8) - 1)), "test_path"),
    ("npz-label-gap", lambda p: dict(name="npz", path=_bad_npz(p, x=_X, y=np.where(
        np.arange(len(_Y)) == 0, 999, _Y).astype(np.int64))), "path"),
    ("npz-test-label-gap", lambda p: dict(name="npz", path=_bad_npz(p, x=_X, y=_Y),
                                          test_path=_write_npz(p / "t.npz", x=_X, y=_Y + 5)), "path"),
    ("npz-single-class", lambda p: dict(name="npz", path=_bad_npz(p, x=_X, y=_Y * 0)), "path"),
    ("npz-remap-with-num-classes", lambda p: dict(name="npz", path=_bad_npz(p, x=_X, y=_Y),
                                                  remap_labels=True, num_classes=4), "remap_labels"),
    ("remap-not-bool", lambda p: dict(name="npz", path=_bad_npz(p, x=_X, y=_Y), remap_labels="yes"),
     "remap_labels"),
    ("remap-with-digits", lambda p: dict(name="digits", remap_labels=True), "remap_labels"),
    ("tfds-not-prepared", lambda p: dict(name="cifar10", data_dir=p / "tfds"), "data_dir"),
]


def test_sparse_labels_remapped_or_kept_with_explicit_num_classes(tmp_path):
  y = np.array([1, 5, 999, 5] * 5, np.int64)
  path = _write_npz(tmp_path / "sparse.npz", x=_X, y=y)
  remapped = data.load_dataset("npz", path=path, remap_labels=True, val_size=4)
  assert remapped.num_classes == 3
  pooled = np.concatenate([remapped.train.y, remapped.val.y])
  assert sorted(np.unique(pooled).tolist()) == [0, 1, 2]
  # the mapping keeps the order of the original labels: 1 -> 0, 5 -> 1, 999 -> 2
  order = np.argsort(np.concatenate([remapped.train.index, remapped.val.index]))
  assert np.array_equal(pooled[order], np.searchsorted([1, 5, 999], y))
  explicit = data.load_dataset("npz", path=path, num_classes=1000, val_size=4)
  assert explicit.num_classes == 1000


def _text_file(tmp_path):
  path = tmp_path / "not_npz.npz"
  path.write_text("hello")
  return path


@pytest.mark.parametrize("make_kwargs,arg", [(m, a) for _, m, a in _BAD_INPUTS],
                         ids=[i for i, _, _ in _BAD_INPUTS])
def test_bad_inputs_raise_one_line_value_error(tmp_path, make_kwargs, arg):
  kwargs = make_kwargs(tmp_path)
  with pytest.raises(ValueError) as info:
    data.load_dataset(**kwargs)
  message = str(info.value)
  assert message.startswith(f"{arg}:"), message
  assert "\n" not in message


def test_tfds_not_prepared_never_downloads(tmp_path):
  with pytest.raises(ValueError, match=r"tensorflow-cpu.*tfds build cifar10.*npz"):
    data.load_dataset("cifar10", data_dir=tmp_path)
  assert not any(tmp_path.rglob("*.array_record*")) and not any(tmp_path.rglob("*.tar.gz"))


def test_tfds_not_prepared_logs_nothing_and_restores_the_loggers(tmp_path, caplog):
  """TFDS's absl WARNING lines ("Variant folder ... has no dataset_info.json") would sit above the one
  error line a bad input gets: they are silenced around the TFDS calls, the levels restored after."""
  import logging
  pytest.importorskip("tensorflow_datasets")
  levels = {name: logging.getLogger(name).level for name in ("absl", "tensorflow_datasets")}
  with caplog.at_level(logging.DEBUG), pytest.raises(ValueError, match=r"^data_dir: TFDS dataset 'cifar10' is not"):
    data.load_dataset("cifar10", data_dir=tmp_path)
  assert [r for r in caplog.records if r.levelno >= logging.WARNING and r.name in levels] == []
  assert {name: logging.getLogger(name).level for name in levels} == levels


def test_split_validates_its_arrays():
  x = np.zeros((3, 4, 4, 1), np.uint8)
  y = np.zeros(3, np.int32)
  assert len(data.Split(x, y)) == 3 and "uint8[3,4,4,1]" in repr(data.Split(x, y))
  with pytest.raises(ValueError, match="^x:"):
    data.Split(x.astype(np.float32), y)
  with pytest.raises(ValueError, match="^y:"):
    data.Split(x, y.astype(np.int64))
  with pytest.raises(ValueError, match="^y:"):
    data.Split(x, y[:2])


# ---- TFDS -------------------------------------------------------------------------------------


def test_tfds_mock_cifar10():
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=60):
    ds = data.load_dataset("cifar10", seed=2)
    source = tfds.data_source("cifar10", split="train")
    assert ds.num_classes == 10 and ds.image_shape == (32, 32, 3)
    assert len(ds.val) == 6 and len(ds.train) == 54 and len(ds.test) == 60
    _assert_disjoint_cover(ds, 60)
    for split in (ds.train, ds.val, ds.test):
      assert split.x.dtype == np.uint8 and split.y.dtype == np.int32
      assert split.y.min() >= 0 and split.y.max() < 10
    for i in (0, 17, 53):
      example = source[int(ds.train.index[i])]
      assert np.array_equal(ds.train.x[i], example["image"])
      assert ds.train.y[i] == example["label"]
    again = data.load_dataset("cifar10", seed=2, train_limit=10, test_limit=7)
    assert np.array_equal(again.val.index, ds.val.index)
    assert len(again.train) == 10 and len(again.test) == 7
    with pytest.raises(ValueError, match="^label_key:"):
      data.load_dataset("cifar10", label_key="fine_label")


def _png(image: np.ndarray) -> bytes:
  """PNG bytes of a uint8 image (encoded with PIL, so no TensorFlow is needed)."""
  from PIL import Image
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="PNG")
  return buffer.getvalue()


def _tiny_image(split: str, i: int) -> np.ndarray:
  """The deterministic 8x8x3 image number ``i`` of ``split`` in the tiny test datasets."""
  return np.random.default_rng((0 if split == "train" else 1, i)).integers(
      0, 256, (8, 8, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny_tfds_dir(tmp_path_factory):
  """A data_dir with two real ArrayRecord TFDS datasets prepared without TensorFlow."""
  tfds = pytest.importorskip("tensorflow_datasets")
  sizes = {"train": 70, "test": 20}

  class _TinyMixin:
    """Builder methods shared by the two tiny datasets (PNG images bypass TF encoding)."""

    VERSION = tfds.core.Version("1.0.0")
    SPLITS = ("train", "test")

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          "image": tfds.features.Image(shape=(8, 8, 3)),
          "label": tfds.features.ClassLabel(num_classes=5)}))

    def _split_generators(self, dl_manager):
      del dl_manager
      return {split: self._generate_examples(split) for split in self.SPLITS}

    def _generate_examples(self, split):
      for i in range(sizes[split]):
        yield i, {"image": _png(_tiny_image(split, i)), "label": i % 5}

  class JdanasTinyImages(_TinyMixin, tfds.core.GeneratorBasedBuilder):
    """Train and test splits."""

  class JdanasTinyTrainOnly(_TinyMixin, tfds.core.GeneratorBasedBuilder):
    """Only a train split."""

    SPLITS = ("train",)

  root = tmp_path_factory.mktemp("tfds")
  try:
    for cls in (JdanasTinyImages, JdanasTinyTrainOnly):
      cls(data_dir=str(root), file_format="array_record").download_and_prepare()
  except ImportError as e:
    pytest.skip(f"cannot prepare an ArrayRecord dataset here: {e}")
  return root


def test_tfds_array_record(tiny_tfds_dir):
  ds = data.load_dataset("jdanas_tiny_images", data_dir=tiny_tfds_dir, val_size=10, seed=1)
  assert ds.num_classes == 5 and ds.image_shape == (8, 8, 3)
  assert len(ds.train) == 60 and len(ds.val) == 10 and len(ds.test) == 20
  _assert_disjoint_cover(ds, 70)
  # The data source's shuffled storage order is what `index` refers to; compare by content.
  train_images = {_tiny_image("train", i).tobytes(): i % 5 for i in range(70)}
  for split in (ds.train, ds.val):
    for image, label in zip(split.x, split.y):
      assert train_images[image.tobytes()] == label
  seen = {image.tobytes() for split in (ds.train, ds.val) for image in split.x}
  assert len(seen) == 70
  test_images = {_tiny_image("test", i).tobytes() for i in range(20)}
  assert {image.tobytes() for image in ds.test.x} == test_images


def test_tfds_bulk_and_single_reads_agree(tiny_tfds_dir):
  tfds = pytest.importorskip("tensorflow_datasets")
  source = tfds.data_source("jdanas_tiny_images", split="train", data_dir=str(tiny_tfds_dir))

  class OneByOne:
    """The same source without a working bulk read."""

    def __len__(self):
      return len(source)

    def __getitem__(self, i):
      return source[i]

    def __getitems__(self, keys):
      raise TypeError("no bulk reads")

  idx = np.array([0, 3, 4, 9, 40, 69])
  bulk_x, bulk_y = sources._read_tfds(source, idx, "image", "label")
  single_x, single_y = sources._read_tfds(OneByOne(), idx, "image", "label")
  assert np.array_equal(bulk_x, single_x) and np.array_equal(bulk_y, single_y)
  assert np.array_equal(bulk_x[2], source[4]["image"])


def test_tfds_without_test_split(tiny_tfds_dir):
  ds = data.load_dataset("jdanas_tiny_train_only", data_dir=tiny_tfds_dir, test_limit=3)
  assert ds.test is None and len(ds.train) + len(ds.val) == 70
  with pytest.raises(ValueError, match="^image_key:"):
    data.load_dataset("jdanas_tiny_train_only", data_dir=tiny_tfds_dir, image_key="img")


# ---- shared data ------------------------------------------------------------------------------


def test_shared_data_dir(monkeypatch, tmp_path):
  monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
  repo_root = pathlib.Path(sources.__file__).resolve().parents[2]
  assert data.shared_data_dir() == (repo_root.parent / "shared" / "data").resolve()
  monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
  assert data.shared_data_dir() == tmp_path


def test_shared_cifar10_npz():
  root = data.shared_data_dir()
  train_file, test_file = root / "cifar10_train_subset.npz", root / "cifar10_test.npz"
  if not test_file.is_file() or not train_file.is_file():
    pytest.skip(f"shared CIFAR-10 npz files not found in {root} (set {data.DATA_DIR_ENV})")
  ds = data.load_dataset("npz", path=train_file, test_path=test_file, train_limit=2000,
                         test_limit=500)
  assert ds.num_classes == 10 and ds.image_shape == (32, 32, 3)
  assert len(ds.val) == 2000 and len(ds.train) == 2000 and len(ds.test) == 500
  assert ds.train.x.dtype == np.uint8 and ds.test.y.dtype == np.int32
  assert not set(ds.train.index.tolist()) & set(ds.val.index.tolist())
  # Well-known CIFAR-10 channel means (0.491, 0.482, 0.447) within subsampling noise.
  np.testing.assert_allclose(ds.mean, (0.491, 0.482, 0.447), atol=0.02)
  np.testing.assert_allclose(ds.std, (0.247, 0.243, 0.261), atol=0.02)


def test_image_size_and_rgb_fit_every_image_as_it_is_read():
  ds = data.load_dataset("digits", seed=0, image_size=16, rgb=True)
  plain = data.load_dataset("digits", seed=0)
  assert ds.image_shape == (16, 16, 3) and len(ds.train) == len(plain.train) and ds.test.x.shape[1:] == (16, 16, 3)
  assert np.array_equal(ds.train.y, plain.train.y)
  x = ds.train.x[:20].astype(np.int32)
  assert np.array_equal(x[..., 0], x[..., 1]) and np.array_equal(x[..., 0], x[..., 2])  # grey repeated
  from PIL import Image
  expected = np.asarray(Image.fromarray(plain.train.x[3, ..., 0]).resize((16, 16), Image.Resampling.BILINEAR))
  assert np.array_equal(ds.train.x[3, ..., 0], expected)
  same = data.load_dataset("digits", seed=0, image_size=8)  # already 8x8: unchanged
  assert np.array_equal(same.train.x, plain.train.x)
  with pytest.raises(ValueError, match="^image_size:"):
    data.load_dataset("digits", image_size=0)
  with pytest.raises(ValueError, match="^rgb:"):
    data.load_dataset("digits", rgb="yes")


def test_tfds_images_of_varying_size_load_with_image_size():
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=12):
    with pytest.raises(ValueError, match=r"^image_key: .*differ in shape.*data\.image_size"):
      data.load_dataset("dtd", num_classes=47)
    ds = data.load_dataset("dtd", num_classes=47, image_size=12, val_size=2)
    assert ds.image_shape == (12, 12, 3) and ds.train.x.dtype == np.uint8
    grey = data.load_dataset("quickdraw_bitmap", rgb=True, val_size=2)
    assert grey.image_shape == (28, 28, 3)
