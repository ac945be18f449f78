"""The jobs a config can run (``config.job``), in one registry.

A job is a name and the four functions the pipeline calls on its config: ``plan`` (validate and build
what needs no data), ``prepare`` (every check before compute: the plan, the workdir, the data),
``describe`` (``--show_config``'s plan lines) and ``run``. :func:`jdanas.pipeline.run`,
:func:`jdanas.pipeline.prepare` and :func:`jdanas.pipeline.describe` look the job up here instead of
switching on its name; the functions are named by module and attribute and imported on use (the
meta-training job imports jdanas.meta only when it runs). Adding a job = one entry here.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable


@dataclasses.dataclass(frozen=True)
class Job:
  """A job: ``doc`` says what it does; the other fields are ``"module:function"`` references."""
  doc: str
  plan: str
  prepare: str
  describe: str
  run: str

  def fn(self, what: str) -> Callable[..., Any]:
    """The function ``what`` (``"plan"``, ``"prepare"``, ``"describe"`` or ``"run"``) of this job."""
    module, _, name = getattr(self, what).partition(":")
    return getattr(importlib.import_module(module), name)


JOBS: dict[str, Job] = {
    "search": Job(doc="a distillation-aware search: teacher, search, final training, report",
                  plan="jdanas.pipeline.config:build_plan", prepare="jdanas.pipeline.check:prepare_search",
                  describe="jdanas.pipeline.check:describe_search", run="jdanas.pipeline:run_search"),
    "meta_train": Job(doc="DaSS's meta-training: tasks, Meta-SGD, a saved predictor (jdanas.pipeline.meta_train)",
                      plan="jdanas.pipeline.meta_train:build_meta_plan",
                      prepare="jdanas.pipeline.meta_train:prepare_meta",
                      describe="jdanas.pipeline.meta_train:describe_meta",
                      run="jdanas.pipeline.meta_train:run_meta_train"),
}


def get_job(config) -> Job:
  """The :class:`Job` of ``config.job`` (checked against :data:`JOBS`; default ``"search"``)."""
  from jdanas.pipeline.config import job_of
  return JOBS[job_of(config)]


__all__ = ["JOBS", "Job", "get_job"]
