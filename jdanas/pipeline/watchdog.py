"""A no-progress watchdog: a run that reaches no progress point for ``timeout_s`` seconds fails loudly.

XLA:CPU can wedge (``docs/lowering.md``, "Hangs on XLA:CPU"): every thread parks in a futex wait,
the process uses no CPU and would sit idle forever. The pipeline calls :meth:`Watchdog.beat` at
its progress points (every teacher training step, the start and end of every search round, every
final training step); when none comes for ``timeout_s`` seconds, a watchdog thread writes one
``error:`` line naming the phase and the seconds without progress, then the Python stacks of all
threads (:func:`faulthandler.dump_traceback`), and ends the process with :data:`EXIT_STALLED`.
The thread needs the GIL, which jax releases while it waits for a computation; a C-level
backstop (:func:`faulthandler.dump_traceback_later` with ``exit=True``, re-armed at every beat)
fires a little later in case a call holds the GIL forever. ``timeout_s = 0`` turns both off.
"""
from __future__ import annotations

import faulthandler
import os
import sys
import threading
import time
from typing import Callable

EXIT_STALLED = 3
BACKSTOP_FACTOR = 1.5  # the C-level backstop fires at 1.5x the timeout (+ 5 s)


class Watchdog:
  """Fails the process when :meth:`beat` is not called for ``timeout_s`` seconds (0: never).

  Use as a context manager (``with Watchdog(t) as w: ...; w.beat("search round 3")``); leaving
  the context stops it. ``stream`` (default ``sys.stderr``) must have a file descriptor."""

  def __init__(self, timeout_s: float, stream=None):
    if not timeout_s >= 0:
      raise ValueError(f"timeout_s: must be >= 0 seconds, got {timeout_s!r}")
    self.timeout_s = float(timeout_s)
    self.stream = stream
    self._phase = "start"
    self._last = time.monotonic()
    self._stop = threading.Event()
    self._thread = None

  @property
  def active(self) -> bool:
    return self._thread is not None

  def __enter__(self) -> "Watchdog":
    if self.timeout_s > 0:
      self._last = time.monotonic()
      self._stop.clear()
      self._thread = threading.Thread(target=self._watch, name="jdanas-watchdog", daemon=True)
      self._thread.start()
      self._arm_backstop()
    return self

  def __exit__(self, *exc) -> None:
    if self._thread is not None:
      self._stop.set()
      self._thread.join()
      self._thread = None
      faulthandler.cancel_dump_traceback_later()

  def beat(self, phase: str) -> None:
    """A progress point of ``phase`` (e.g. ``"teacher step 12"``, ``"search round 3"``)."""
    self._phase, self._last = phase, time.monotonic()
    if self._thread is not None:
      self._arm_backstop()

  def ticker(self, phase: str) -> Callable[[int], None]:
    """A per-step progress callback: ``step -> beat(f"{phase} step {step}")``."""
    return lambda step: self.beat(f"{phase} step {step}")

  def _out(self):
    """The stream, or the process's own stderr when it has no file descriptor (faulthandler needs one)."""
    out = self.stream or sys.stderr
    try:
      out.fileno()
      return out
    except (AttributeError, OSError, ValueError):
      return sys.__stderr__

  def _arm_backstop(self) -> None:
    faulthandler.dump_traceback_later(BACKSTOP_FACTOR * self.timeout_s + 5.0, exit=True, file=self._out())

  def _watch(self) -> None:
    poll = min(5.0, self.timeout_s / 10)
    while not self._stop.wait(poll):
      idle = time.monotonic() - self._last
      if idle >= self.timeout_s:
        out = self._out()
        out.write(f"error: compute.stall_timeout_s: no progress for {idle:.0f} s in {self._phase} (the limit is "
                  f"{self.timeout_s:g} s); the run is stuck (an XLA:CPU wedge? see docs/lowering.md, 'Hangs on "
                  f"XLA:CPU') or needs a larger compute.stall_timeout_s. Python stacks of all threads:\n")
        out.flush()
        faulthandler.dump_traceback(file=out, all_threads=True)
        out.flush()
        os._exit(EXIT_STALLED)


__all__ = ["EXIT_STALLED", "Watchdog"]
