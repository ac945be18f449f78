"""jdanas: JAX-native distillation-aware neural architecture search."""
__version__ = "0.1.0"


def __getattr__(name):
  """Lazy ``jdanas.load_student`` (importing jax/flax/orbax would make ``import jdanas`` slow)."""
  if name == "load_student":
    from jdanas.export import load_student
    return load_student
  raise AttributeError(f"module 'jdanas' has no attribute {name!r}")

