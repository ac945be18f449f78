"""Device meshes for population x data parallelism (``jit`` + ``NamedSharding``; no ``pmap``), and
the multi-process (multi-host) runtime.

Axis ``pop`` splits a vmapped population of students; axis ``data`` splits every batch (and the
teacher logits). Multi-process: every process calls :func:`initialize_distributed` first (``run.py``
does, from ``--coordinator/--num_processes/--process_id`` or the ``JDANAS_*`` environment variables,
:func:`launch_spec`); all processes then run the same program on the global mesh (JAX's
multi-controller model: docs/scaling.md). Each process holds the whole (small) dataset and computes
the same global batch indices from ``(seed, step)``; the batch program's output is sharded over
``data``, so each device computes and keeps only its slice. Process 0 writes the reports; the
searcher runs on every process and :func:`check_same_across_processes` compares a checksum of its
state every round.
"""
from __future__ import annotations

import dataclasses
import hashlib
import numbers
import os
import re
from typing import Any, Mapping

import jax
import numpy as np
from jax.sharding import Mesh

from jdanas.errors import FieldError

ENV = {"coordinator": "JDANAS_COORDINATOR", "num_processes": "JDANAS_NUM_PROCESSES",
       "process_id": "JDANAS_PROCESS_ID", "heartbeat_timeout": "JDANAS_HEARTBEAT_TIMEOUT"}
AUTO = "auto"  # --coordinator=auto: the cluster is detected by JAX (TPU pods, SLURM, Open MPI, ...)
DEFAULT_HEARTBEAT_TIMEOUT = 100  # seconds without a heartbeat before the others give up (JAX's default)


def make_mesh(pop: int = 1, data: int = -1) -> Mesh:
  """A ``('pop', 'data')`` mesh over all devices (of all processes); ``-1`` takes the remaining devices."""
  n = jax.device_count()
  for name, size in (("pop", pop), ("data", data)):
    if not isinstance(size, numbers.Integral) or (size < 1 and size != -1):
      raise FieldError("mesh", f"{name} must be a positive int or -1, got {size!r}")
  pop, data = int(pop), int(data)
  if pop == -1 and data == -1:
    raise FieldError("mesh", "at most one of pop/data may be -1")
  pop = n // data if pop == -1 else pop
  data = n // pop if data == -1 else data
  if pop < 1 or data < 1 or pop * data != n:
    raise FieldError("mesh", f"pop x data = {pop} x {data} does not use the {n} available devices")
  auto = (jax.sharding.AxisType.Auto,) * 2
  return jax.make_mesh((pop, data), ("pop", "data"), axis_types=auto)


@dataclasses.dataclass(frozen=True)
class Launch:
  """How this process joins a multi-process run (see :func:`launch_spec`).

  Attributes:
    coordinator: ``host:port`` of process 0's coordination service, or ``"auto"`` (JAX detects
      the cluster and every other field; ``num_processes``/``process_id`` are then None).
    num_processes, process_id: the number of processes and this one's index.
    heartbeat_timeout: seconds after which a silent process is declared dead; every other process
      then aborts (exit status 134) instead of waiting in a collective.
  """
  coordinator: str
  num_processes: int | None
  process_id: int | None
  heartbeat_timeout: int = DEFAULT_HEARTBEAT_TIMEOUT


def _int(value, flag: str, minimum: int) -> int:
  try:
    v = int(str(value).strip())
  except ValueError:
    raise ValueError(f"{flag}: must be an int, got {value!r}") from None
  if v < minimum:
    raise ValueError(f"{flag}: must be >= {minimum}, got {v}")
  return v


def launch_spec(coordinator: str | None = None, num_processes: int | str | None = None,
                process_id: int | str | None = None, heartbeat_timeout: int | str | None = None,
                env: Mapping[str, str] | None = None) -> Launch | None:
  """The :class:`Launch` of the flags (each falls back to its ``JDANAS_*`` variable in ``env``,
  default ``os.environ``), or None for a single-process run. Raises ``ValueError`` with one line
  that starts with the flag (and its variable) at fault."""
  env = os.environ if env is None else env
  given = {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id,
           "heartbeat_timeout": heartbeat_timeout}
  values = {k: (v if v not in (None, "") else env.get(ENV[k]) or None) for k, v in given.items()}
  name = lambda k: f"--{k} ({ENV[k]})"
  timeout = (_int(values["heartbeat_timeout"], name("heartbeat_timeout"), 1)
             if values["heartbeat_timeout"] is not None else DEFAULT_HEARTBEAT_TIMEOUT)
  if values["coordinator"] is None:
    for k in ("num_processes", "process_id"):
      if values[k] is not None and not (k == "num_processes" and str(values[k]).strip() == "1"):
        raise ValueError(f"{name(k)}: given without --coordinator ({ENV['coordinator']}), the address of "
                         f"process 0 (host:port, or 'auto' on a detected cluster)")
    return None
  coord = str(values["coordinator"]).strip()
  if coord == AUTO:
    for k in ("num_processes", "process_id"):
      if values[k] is not None:
        raise ValueError(f"{name(k)}: not used with --coordinator=auto (the cluster provides it)")
    return Launch(AUTO, None, None, timeout)
  m = re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.\-]+):(\d{1,5})", coord)
  if not m or not 0 < int(m.group(2)) < 65536:
    raise ValueError(f"{name('coordinator')}: {coord!r} is not host:port (e.g. 10.0.0.1:1234) or 'auto'")
  for k in ("num_processes", "process_id"):
    if values[k] is None:
      raise ValueError(f"{name(k)}: required with --coordinator {coord}")
  n = _int(values["num_processes"], name("num_processes"), 1)
  pid = _int(values["process_id"], name("process_id"), 0)
  if pid >= n:
    raise ValueError(f"{name('process_id')}: {pid} is not below --num_processes ({n})")
  return Launch(coord, n, pid, timeout)


def initialize_distributed(launch: Launch | None = None, **kwargs) -> None:
  """Joins the multi-process run of ``launch`` (``jax.distributed.initialize``; must precede any
  other JAX call). Without ``launch``, ``kwargs`` go to ``jax.distributed.initialize`` as they are.
  CPU processes exchange data through gloo collectives."""
  if launch is not None:
    kwargs = dict(heartbeat_timeout_seconds=launch.heartbeat_timeout, **kwargs)
    if launch.coordinator != AUTO:
      kwargs.update(coordinator_address=launch.coordinator, num_processes=launch.num_processes,
                    process_id=launch.process_id)
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**kwargs)


def is_main_process() -> bool:
  """Whether this process writes the run's files (reports, plots, exports, metrics): process 0."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process reaches ``barrier(name)`` (no-op in a single-process run)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def process_local_orbax():
  """``orbax.checkpoint.options.MultiprocessingOptions`` for a checkpointer that this process uses
  alone (the teacher cache and the export, written by process 0 and read by each process for
  itself): without them orbax would wait for every process at its barriers. Orbax's defaults in a
  single-process run."""
  import orbax.checkpoint as ocp
  if jax.process_count() == 1:
    return ocp.options.MultiprocessingOptions()
  me = jax.process_index()
  return ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me},
                                            barrier_sync_key_prefix=f"jdanas_process{me}")


def tree_checksum(tree: Any) -> int:
  """A 63-bit checksum of a pytree's host values (structure, shapes, dtypes and bytes)."""
  h = hashlib.sha256(str(jax.tree.structure(tree)).encode())
  for leaf in jax.tree.leaves(jax.device_get(tree)):
    a = np.asarray(leaf)
    h.update(f"{a.shape}{a.dtype}".encode())
    h.update(np.ascontiguousarray(a).tobytes())
  return int.from_bytes(h.digest()[:8], "little") >> 1


def check_same_across_processes(tree: Any, what: str) -> int:
  """Raises ``RuntimeError`` unless ``tree`` has the same :func:`tree_checksum` on every process
  (one all-gather of 8 bytes); returns the checksum."""
  checksum = tree_checksum(tree)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    mine = np.array([checksum & 0xFFFFFFFF, checksum >> 32], np.uint32)
    every = np.asarray(multihost_utils.process_allgather(mine)).reshape(-1, 2)
    sums = [int(lo) | (int(hi) << 32) for lo, hi in every]
    if len(set(sums)) != 1:
      raise RuntimeError(f"{what} differs across processes (checksums by process: "
                         f"{', '.join(f'{i}: {s:016x}' for i, s in enumerate(sums))}); the processes no longer "
                         f"run the same program (different code, config, data or jax versions?)")
  return checksum


__all__ = ["AUTO", "ENV", "Launch", "barrier", "check_same_across_processes", "initialize_distributed",
           "is_main_process", "launch_spec", "make_mesh", "process_local_orbax", "tree_checksum"]
