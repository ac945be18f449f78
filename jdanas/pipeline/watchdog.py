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

``idle_s`` adds a second, faster test that needs no progress points: a process whose threads
together used less than :data:`IDLE_CPU_FRACTION` of one core for ``idle_s`` seconds is wedged
(a wedge uses no CPU at all; a slow computation keeps at least one thread busy, and even on a
2-core machine shared by a dozen jobs the scheduler gives it far more than that), so a
multi-minute XLA call that wedges ends within about ``idle_s`` seconds instead of ``timeout_s``.
A process that was itself stopped (``SIGSTOP``, a suspended laptop: the watchdog thread wakes up
long after it asked to) restarts the idle count instead of counting the pause as a wedge. Only a
caller that owns the process (``run.py``, a bench) arms it: the watchdog ends the process. The library's
phases take any :class:`Progress` (default: one that does nothing), so a notebook's kernel is never ended.
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
IDLE_CPU_FRACTION = 0.01  # below 1 % of one core over `idle_s` seconds: wedged
IDLE_POLL_S = 5.0


class Progress:
  """Progress points of a long computation: what the pipeline's phases call. This base does nothing
  (the default of :func:`jdanas.pipeline.search` and friends); :class:`Watchdog` acts on them."""

  def beat(self, phase: str) -> None:
    """A progress point of ``phase`` (e.g. ``"teacher step 12"``, ``"search round 3"``)."""

  def ticker(self, phase: str) -> Callable[[int], None]:
    """A per-step progress callback: ``step -> beat(f"{phase} step {step}")``."""
    return lambda step: self.beat(f"{phase} step {step}")


class Watchdog(Progress):
  """Fails the process when :meth:`beat` is not called for ``timeout_s`` seconds (0: never), or,
  with ``idle_s > 0``, when the process uses (almost) no CPU for ``idle_s`` seconds.

  Use as a context manager (``with Watchdog(t) as w: ...; w.beat("search round 3")``); leaving
  the context stops it. ``stream`` (default ``sys.stderr``) must have a file descriptor. ``name`` /
  ``idle_name``: the settings the error line names for each test (``compute.stall_timeout_s`` in
  the pipeline; a bench's ``--stall-timeout`` / ``--idle-timeout``)."""

  def __init__(self, timeout_s: float, stream=None, *, idle_s: float = 0.0, name: str = "compute.stall_timeout_s",
               idle_name: str = "idle_s"):
    if not timeout_s >= 0:
      raise ValueError(f"timeout_s: must be >= 0 seconds, got {timeout_s!r}")
    if not idle_s >= 0:
      raise ValueError(f"idle_s: must be >= 0 seconds, got {idle_s!r}")
    self.timeout_s = float(timeout_s)
    self.idle_s = float(idle_s)
    self.name, self.idle_name = name, idle_name
    self.stream = stream
    self._phase = "start"
    self._last = time.monotonic()
    self._stop = threading.Event()
    self._thread = None

  @property
  def active(self) -> bool:
    return self._thread is not None

  def __enter__(self) -> "Watchdog":
    if self.timeout_s > 0 or self.idle_s > 0:
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
    self._phase, self._last = phase, time.monotonic()
    if self._thread is not None:
      self._arm_backstop()

  def _out(self):
    """The stream, or the process's own stderr when it has no file descriptor (faulthandler needs one)."""
    out = self.stream or sys.stderr
    try:
      out.fileno()
      return out
    except (AttributeError, OSError, ValueError):
      return sys.__stderr__

  def _arm_backstop(self) -> None:
    if self.timeout_s > 0:
      faulthandler.dump_traceback_later(BACKSTOP_FACTOR * self.timeout_s + 5.0, exit=True, file=self._out())

  def _fail(self, name: str, line: str) -> None:
    out = self._out()
    out.write(f"error: {name}: {line}. Python stacks of all threads:\n")
    out.flush()
    faulthandler.dump_traceback(file=out, all_threads=True)
    out.flush()
    os._exit(EXIT_STALLED)

  def _watch(self) -> None:
    polls = [IDLE_POLL_S] + [self.timeout_s / 10] * (self.timeout_s > 0) + [self.idle_s / 10] * (self.idle_s > 0)
    poll = min(polls)
    idle_since, last_wall, last_cpu = time.monotonic(), time.monotonic(), time.process_time()
    while not self._stop.wait(poll):
      now, cpu = time.monotonic(), time.process_time()  # process_time: all threads of the process
      if self.timeout_s > 0 and now - self._last >= self.timeout_s:
        self._fail(self.name, f"no progress for {now - self._last:.0f} s in {self._phase} (the limit is "
                   f"{self.timeout_s:g} s); the run is stuck (an XLA:CPU wedge? see docs/lowering.md, 'Hangs on "
                   f"XLA:CPU') or needs a larger {self.name}")
      if self.idle_s > 0:
        if now - last_wall > 3 * poll + 1.0 or cpu - last_cpu >= IDLE_CPU_FRACTION * (now - last_wall):
          idle_since = now  # busy, or the process itself was stopped: not a wedge
        elif now - idle_since >= self.idle_s:
          self._fail(self.idle_name, f"the process used almost no CPU (< {IDLE_CPU_FRACTION:.0%} of a core) for "
                     f"{now - idle_since:.0f} s in {self._phase} (the limit is {self.idle_s:g} s), and a computation "
                     f"that runs always uses some: XLA:CPU is wedged (docs/lowering.md, 'Hangs on XLA:CPU')")
        last_wall, last_cpu = now, cpu


__all__ = ["EXIT_STALLED", "Progress", "Watchdog"]
