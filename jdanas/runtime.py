"""Process setup: what a program that owns its process does once, first (``run.py``, the benches,
``tests/conftest.py``, a notebook's first cell), and what jdanas' importable API never does.

:func:`configure` is the one opt-in: the XLA:CPU runtime settings that avoid a crash and a wedge
(:func:`jdanas.lowering.configure_cpu_runtime`: ``XLA_FLAGS`` and ``NPROC`` in ``os.environ``;
docs/lowering.md, "Hangs on XLA:CPU") and JAX's persistent compilation cache
(:func:`use_compilation_cache`). ``run.py`` also initialises ``jax.distributed``
(:func:`jdanas.parallel.initialize_distributed`) and arms the watchdog that ends a stalled process
(:class:`jdanas.pipeline.watchdog.Watchdog`), which it passes to :func:`jdanas.pipeline.run`.

Why an opt-in and not the library's job: the settings are process-wide and XLA reads them only when
jax starts its backend, and the watchdog ends the process; from a notebook or another program's
process none of that is the library's to decide. So ``jdanas.pipeline.run`` / ``search`` /
``train_final`` / ``prepare`` write no environment variable, arm no faulthandler timer and never end
the process; on CPU without the settings they only warn (:func:`check_cpu_runtime`). JAX has no
public query for "has the backend started" (jax-ml/jax#23320), so nothing here can tell whether
settings written now still take effect: call :func:`configure` before jax computes anything.

:class:`CompileCounter` counts the process's XLA compilations through JAX's public monitoring events
(the search's ``num_compilations``, and tests that a phase compiles nothing).
"""
from __future__ import annotations

import os
import pathlib
import warnings

from jdanas import lowering

CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"  # JAX's own variable; when set, it names the cache folder
MIN_COMPILE_TIME_ENV = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"


def use_compilation_cache(directory: str | os.PathLike | None, *, min_compile_time_s: float = 1.0) -> str | None:
  """Points JAX's persistent compilation cache at ``directory`` (``$JAX_COMPILATION_CACHE_DIR`` wins
  when set: a test session or a shell shares one folder across processes; likewise
  ``$JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` over ``min_compile_time_s``, the compile time from
  which a program is cached). Returns the folder in use, or None (no folder given, none set).

  Call it before jax compiles anything: JAX decides once per process, at its first compilation,
  whether the cache is used, so a program compiled earlier turns it off for the whole process.
  """
  import jax
  folder = os.environ.get(CACHE_ENV) or (None if directory is None else str(pathlib.Path(directory).absolute()))
  if folder is None:
    return None
  jax.config.update("jax_compilation_cache_dir", folder)
  if not os.environ.get(MIN_COMPILE_TIME_ENV):
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_s))
  return folder


def configure(compilation_cache: str | os.PathLike | None = None, *, min_compile_time_s: float = 1.0) -> bool:
  """The process setup of ``run.py``, for a script or notebook that wants the same: the XLA:CPU runtime
  settings (``JDANAS_XLA_SAFE=0`` skips them) and, with ``compilation_cache`` (a folder) or
  ``$JAX_COMPILATION_CACHE_DIR``, the persistent compilation cache. Call it first, before jax computes
  anything. Returns whether the runtime settings are in ``os.environ``."""
  safe = lowering.configure_cpu_runtime()
  use_compilation_cache(compilation_cache, min_compile_time_s=min_compile_time_s)
  return safe


def check_cpu_runtime() -> str | None:
  """Warns (a ``RuntimeWarning``, once per call site) and returns what is missing when jax runs on CPU and
  ``os.environ`` lacks the runtime settings of :func:`configure`; None otherwise, or with
  ``JDANAS_XLA_SAFE=0``. Writes nothing: the library's entry points call it instead of configuring
  the process themselves. Starts jax's backend (to ask its platform): call it where jax computes next."""
  if os.environ.get(lowering.SAFE_ENV, "1").strip() == "0":
    return None
  if not lowering.on_cpu():
    return None
  missing = lowering.cpu_runtime_missing(os.environ)
  if not missing:
    return None
  message = (f"jdanas: jax runs on CPU without {' '.join(missing)} (XLA_FLAGS, environment), so a long XLA:CPU run "
             f"can hang (docs/lowering.md, 'Hangs on XLA:CPU'); call jdanas.runtime.configure() first thing in "
             f"the process (as run.py does), or set {lowering.SAFE_ENV}=0 to accept the risk")
  warnings.warn(message, RuntimeWarning, stacklevel=3)
  return message


# JAX's monitoring events (jax.monitoring): one duration event per XLA program built for execution
# (compiled, or loaded from the persistent compilation cache), and one event per such cache load.
PROGRAM_BUILT_EVENT = "/jax/core/compile/backend_compile_duration"
CACHE_LOAD_EVENT = "/jax/compilation_cache/cache_hits"


class CompileCounter:
  """Counts the XLA programs this process builds while the context is open (every thread's, so a
  counter is meant for a phase that owns the process's compute): ``built`` programs, of which
  ``cache_loads`` came from the persistent compilation cache; ``compilations`` = the rest, what
  XLA compiled. ``names``: the built programs' names (``jit(<function>)``), for messages.

  ``with CompileCounter() as c: ...; c.compilations`` (public ``jax.monitoring`` listeners, removed on exit)."""

  def __init__(self):
    self.built, self.cache_loads, self.names = 0, 0, []

  @property
  def compilations(self) -> int:
    return self.built - self.cache_loads

  def _on_duration(self, event: str, duration: float, **kwargs) -> None:
    if event == PROGRAM_BUILT_EVENT:
      self.built += 1
      self.names.append(str(kwargs.get("fun_name", "?")))

  def _on_event(self, event: str, **kwargs) -> None:
    if event == CACHE_LOAD_EVENT:
      self.cache_loads += 1

  def __enter__(self) -> "CompileCounter":
    import jax
    jax.monitoring.register_event_duration_secs_listener(self._on_duration)
    jax.monitoring.register_event_listener(self._on_event)
    return self

  def __exit__(self, *exc) -> None:
    import jax
    jax.monitoring.unregister_event_duration_listener(self._on_duration)
    jax.monitoring.unregister_event_listener(self._on_event)


__all__ = ["CompileCounter", "check_cpu_runtime", "configure", "use_compilation_cache"]
