"""Device meshes for population x data parallelism (``jit`` + ``NamedSharding``; no ``pmap``).

Axis ``pop`` splits a vmapped population of students; axis ``data`` splits every batch (and the
teacher logits). Multi-host: call :func:`initialize_distributed` first on every host; all hosts
then run the same program on the global mesh.
"""
from __future__ import annotations

import numbers

import jax
from jax.sharding import Mesh


def make_mesh(pop: int = 1, data: int = -1) -> Mesh:
  """A ``('pop', 'data')`` mesh over all devices; ``-1`` takes the remaining devices."""
  n = jax.device_count()
  for name, size in (("pop", pop), ("data", data)):
    if not isinstance(size, numbers.Integral) or (size < 1 and size != -1):
      raise ValueError(f"mesh: {name} must be a positive int or -1, got {size!r}")
  pop, data = int(pop), int(data)
  if pop == -1 and data == -1:
    raise ValueError("mesh: at most one of pop/data may be -1")
  pop = n // data if pop == -1 else pop
  data = n // pop if data == -1 else data
  if pop < 1 or data < 1 or pop * data != n:
    raise ValueError(f"mesh: pop x data = {pop} x {data} does not use the {n} available devices")
  auto = (jax.sharding.AxisType.Auto,) * 2
  return jax.make_mesh((pop, data), ("pop", "data"), axis_types=auto)


def initialize_distributed(**kwargs) -> None:
  """Multi-host setup: ``jax.distributed.initialize(**kwargs)`` (coordinator etc. from the env)."""
  jax.distributed.initialize(**kwargs)
