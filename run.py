"""Runs a jdanas experiment from a config file.

  python run.py --config configs/default.py --workdir /tmp/jdanas
  python run.py --config configs/default.py --workdir /tmp/jdanas --config.search.rounds=2

The pipeline lives in :mod:`jdanas.pipeline` (importable from notebooks); this file only parses
flags. A bad config exits with status 2 and a one-line error naming the field. Compiled programs
are cached in ``<workdir>/jax_cache`` (unless ``JAX_COMPILATION_CACHE_DIR`` is set), so a resumed
run does not compile again.
"""
import os
import pathlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file (e.g. configs/default.py).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for the teacher, checkpoints and results.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
  import jax
  if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    jax.config.update("jax_compilation_cache_dir", str(pathlib.Path(_WORKDIR.value).absolute() / "jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  from jdanas.pipeline import ConfigError, run
  try:
    run(_CONFIG.value, _WORKDIR.value)
  except (ConfigError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main)
