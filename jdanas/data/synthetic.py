"""A tiny learnable synthetic dataset for tests, notebooks and smoke runs (no files, no network)."""
from __future__ import annotations

import numpy as np

from jdanas.data.sources import Dataset, Split


def synthetic_dataset(*, num_train: int = 256, num_val: int = 64, num_test: int = 64, num_classes: int = 4,
                      image_size: int = 8, channels: int = 3, seed: int = 0) -> Dataset:
  """Images = a fixed random template per class + noise, as uint8 NHWC; a small CNN learns it."""
  rng = np.random.default_rng(seed)
  templates = rng.uniform(0, 255, (num_classes, image_size, image_size, channels))

  def split(n: int) -> Split:
    y = rng.integers(0, num_classes, n).astype(np.int32)
    x = templates[y] * 0.6 + rng.uniform(0, 255, (n, image_size, image_size, channels)) * 0.4
    return Split(np.clip(np.round(x), 0, 255).astype(np.uint8), y)

  train, val, test = split(num_train), split(num_val), split(num_test)
  pixels = train.x.reshape(-1, channels) / 255.0
  return Dataset(name="synthetic", train=train, val=val, test=test, num_classes=num_classes,
                 mean=tuple(float(m) for m in pixels.mean(0)), std=tuple(float(s) for s in pixels.std(0)))
