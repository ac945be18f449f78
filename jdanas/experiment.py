"""Former home of the pipeline, kept for existing imports: see :mod:`jdanas.pipeline`."""
from jdanas.pipeline import ConfigError, run, validate_config

__all__ = ["ConfigError", "run", "validate_config"]
