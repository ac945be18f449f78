"""Orbax checkpoints of a search: after every round, the searcher state (with a stateful evaluator's)
and the evaluation ledger; a truncated latest step falls back to the previous, and unreadable steps
are moved aside so that the rerun checkpoints those rounds again.

The short-KD students' weights are not kept: the final phase trains its students again with its own
recipe, and starting it from them bought nothing that as many more final steps do not (measured,
docs/benchmarks.md, "Final training from the search's weights"). A checkpoint written when they
were kept (a ``top`` item) still restores; the item is left unread.

Multi-process runs (docs/scaling.md): every process calls :meth:`Checkpoints.save` and
:meth:`Checkpoints.restore_latest` (orbax synchronises them; the directory must be on a filesystem
every process sees). The values are saved as host (numpy) arrays, which orbax writes from process 0
only: the searcher state is the same on every process (it is
checked every round), so the layout is the same as a single-process run's and either kind of run
resumes the other's checkpoints."""
from __future__ import annotations

import pathlib
import shutil

import jax
import orbax.checkpoint as ocp

from jdanas.parallel import barrier, is_main_process
from jdanas.pipeline.setup import log


class Checkpoints:
  """Searcher state + ledger, one orbax step per completed round."""

  def __init__(self, directory: pathlib.Path, abstract_state):
    options = ocp.CheckpointManagerOptions(max_to_keep=3, enable_async_checkpointing=False)
    self.directory = directory.absolute()
    self.manager = ocp.CheckpointManager(self.directory, options=options)
    # Restored onto this process's first device (searcher programs run per process).
    local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    self.abstract_state = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=local),
                                       abstract_state)

  def save(self, round_done: int, state, ledger: list) -> None:
    meta = {"round": round_done, "ledger": ledger}
    self.manager.save(round_done, args=ocp.args.Composite(
        state=ocp.args.StandardSave(jax.device_get(state)), ledger=ocp.args.JsonSave(meta)))
    self.manager.wait_until_finished()

  def restore_latest(self):
    """``(round_done, state, ledger)`` of the newest readable checkpoint, or ``None``.

    An unreadable step is moved aside into ``<directory>.unreadable/`` (kept for inspection):
    orbax never writes a step at or below the newest one present, so leaving it would stop
    the rerun from checkpointing those rounds again.
    """
    unreadable = []
    restored = None
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        r = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(self.abstract_state), ledger=ocp.args.JsonRestore()))
      except Exception as e:  # a truncated/corrupt step: fall back to the previous one
        log(f"[resume] checkpoint of round {step} is unreadable ({type(e).__name__}); trying the previous one")
        unreadable.append(step)
        continue
      meta = r["ledger"]
      restored = int(meta["round"]), r["state"], list(meta["ledger"])
      break
    if unreadable:
      if is_main_process():
        self._move_aside(unreadable)
      barrier("jdanas: unreadable checkpoints moved aside")
      self.manager.reload()
      if restored is None:
        log(f"[resume] no readable checkpoint (moved to {self.aside}); starting from scratch")
    return restored

  @property
  def aside(self) -> pathlib.Path:
    return self.directory.with_name(self.directory.name + ".unreadable")

  def _move_aside(self, steps: list[int]) -> None:
    self.aside.mkdir(parents=True, exist_ok=True)
    for step in steps:
      src = self.directory / str(step)
      dst, n = self.aside / str(step), 1
      while dst.exists():
        dst, n = self.aside / f"{step}.{n}", n + 1
      if src.exists():
        shutil.move(str(src), str(dst))
        log(f"[resume] moved the unreadable checkpoint of round {step} to {dst}")

  def close(self):
    self.manager.close()


__all__ = ["Checkpoints"]
