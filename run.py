"""Runs a jdanas experiment from a config file.

  python run.py --config configs/default.py --workdir /tmp/jdanas
  python run.py --config configs/default.py --workdir /tmp/jdanas --config.population.size=4

The pipeline lives in :mod:`jdanas.experiment` (importable from notebooks); this file only parses
flags. A bad config exits with status 2 and a one-line error naming the field.
"""
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
  from jdanas.experiment import ConfigError, run
  try:
    run(_CONFIG.value, _WORKDIR.value)
  except (ConfigError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main)
