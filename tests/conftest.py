"""Test setup: 4 simulated CPU devices (sharding tests), XLA optimisations off (compile time
dominates tiny test programs), and shared fixtures."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_disable_most_optimizations", True)

from jdanas.data import shared_data_dir, synthetic_dataset  # noqa: E402


@pytest.fixture
def key():
  return jax.random.key(0)


@pytest.fixture(scope="session")
def tiny_data():
  return synthetic_dataset(num_train=128, num_val=40, num_classes=4, image_size=8)


@pytest.fixture(scope="session")
def data_dir():
  return shared_data_dir()


def require_file(path):
  """Skips the calling test, with the reason, when a shared-data file is absent."""
  if not os.path.exists(path):
    pytest.skip(f"shared data file {path} not found (set JDANAS_DATA_DIR to the shared/data folder)")
  return path
