"""Runs a jdanas experiment from a config file.

  python run.py --config configs/default.py --workdir /tmp/jdanas
  python run.py --config configs/default.py --workdir /tmp/jdanas --config.search.rounds=2
  python run.py --config configs/default.py:smoke --workdir /tmp/s --config.searcher.kwargs.population_size=4
  python run.py --config configs/default.py --show_config      # fields, types, the plan; no compute

Several processes (hosts) run ONE search together: start the same command once per process with
``--coordinator=<host of process 0>:<port> --num_processes=N --process_id=i`` (or the variables
``JDANAS_COORDINATOR``, ``JDANAS_NUM_PROCESSES``, ``JDANAS_PROCESS_ID``; ``--coordinator=auto`` on
a cluster JAX detects, e.g. a TPU pod or SLURM) and one ``--workdir`` on a filesystem every
process sees; process 0 writes the reports (docs/scaling.md)::

  python run.py --config configs/default.py --workdir /shared/run --coordinator=10.0.0.1:1234 --num_processes=2 --process_id=0

Your own data (npz with ``x``: uint8 [N, H, W, C] and ``y``: int [N], labels 0..K-1; add
``--config.data.test_path=test.npz`` for a test split, ``--config.data.remap_labels=True`` for
sparse labels) and your own teacher (a folder saved by ``jdanas.teachers.save_teacher``, e.g. the
``<workdir>/teacher`` of an earlier run)::

  python run.py --config configs/default.py --workdir /tmp/own --config.data.name=npz --config.data.path=train.npz
  python run.py --config configs/default.py --workdir /tmp/own2 --config.teacher.path=/tmp/jdanas/teacher

A config with ``job = "meta_train"`` runs DaSS's meta-training job instead of a search (tasks,
teachers, KD-trained students, Meta-SGD; the predictor it writes is read by a search's ``predictor``
evaluator, docs/methods/dass.md)::

  python run.py --config configs/dass_meta_train.py:runlocal --workdir /tmp/dass_meta

The pipeline lives in :mod:`jdanas.pipeline` (importable from notebooks); this file only parses
flags. Every input (flags, the config file, overrides, the data, the workdir, the feasibility of
budgets and recipes) is checked before any compute; a bad one exits with status 2 and ONE line on
stderr, ``error: <field, flag or file>: <what is wrong>``. A teacher no better than chance stops the
run the same way before the search. Compiled programs are cached in ``<workdir>/jax_cache``
(unless ``JAX_COMPILATION_CACHE_DIR`` is set), so a resumed run does not compile again.

Never hang: XLA:CPU runs with the runtime flags that avoid its wedge, added to your own
``XLA_FLAGS`` (``JDANAS_XLA_SAFE=0`` leaves ``XLA_FLAGS`` alone), and a run that makes no progress
for ``compute.stall_timeout_s`` seconds (default 1800; 0 = never) stops with one ``error:`` line
naming the phase, the Python stacks of all threads and exit status 3; resuming it continues from
the last checkpointed round. See docs/lowering.md, "Hangs on XLA:CPU". A workdir resumes only with
the config it was made with (``compute.stall_timeout_s`` and more rounds of an unfinished search
may differ; anything else is ``error: --workdir: ...``, docs/configs.md "Resuming a workdir").
"""
from __future__ import annotations

import ast
import pathlib
import re
import sys
import textwrap

import ml_collections
from absl import flags, logging
from ml_collections import config_flags

REPO = pathlib.Path(__file__).resolve().parent
HELP_FLAGS = ("-h", "--help", "-help", "--helpshort", "--helpfull", "-?")


class UsageError(Exception):
  """A command-line problem; the message is one line naming the flag or file."""


def first_sentence(doc: str) -> str:
  """The first sentence of ``doc`` (up to the first period that ends a word), on one line: a config's
  summary often runs over two docstring lines, and its first line alone stops mid-sentence."""
  paragraph = " ".join(doc.strip().split("\n\n", 1)[0].split())
  match = re.match(r"(.+?\.)(\s|$)", paragraph)
  return match.group(1) if match else paragraph


def available_configs() -> list[tuple[str, str]]:
  """``(path, first docstring sentence)`` of every ``configs/*.py`` (read, not imported)."""
  out = []
  for path in sorted((REPO / "configs").glob("*.py")):
    if path.name == "__init__.py":
      continue
    try:
      doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    except SyntaxError:
      doc = "(does not parse)"
    out.append((f"configs/{path.name}", first_sentence(doc)))
  return out


def _define(argv: list[str]) -> flags.FlagValues:
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "Path to a config file, optionally with a variant: "
                                  "configs/default.py or configs/default.py:smoke.", flag_values=fv,
                                  lock_config=True, sys_argv=argv)
  flags.DEFINE_string("workdir", None, "Directory for the teacher, checkpoints and results (required to run).",
                      flag_values=fv)
  flags.DEFINE_boolean("show_config", False, "Validate the config (the workdir too when given), print its fields "
                       "with their types and allowed values and the plan (data, teacher, space size, evaluations, "
                       "estimated compilations), and exit without computing. Data that cannot be loaded here (or "
                       "a DaSS predictor not trained yet) is shown as 'not available (<reason>)'.", flag_values=fv)
  flags.DEFINE_string("coordinator", None, "Multi-process run: host:port of process 0 (every process passes the "
                      "same), or 'auto' on a cluster JAX detects (TPU pod, SLURM, Open MPI). Default: "
                      "$JDANAS_COORDINATOR; unset = one process.", flag_values=fv)
  flags.DEFINE_string("num_processes", None, "Multi-process run: number of processes (default "
                      "$JDANAS_NUM_PROCESSES).", flag_values=fv)
  flags.DEFINE_string("process_id", None, "Multi-process run: this process's index, 0..num_processes-1 (default "
                      "$JDANAS_PROCESS_ID); process 0 writes the reports.", flag_values=fv)
  flags.DEFINE_string("heartbeat_timeout", None, "Multi-process run: seconds without a heartbeat after which a "
                      "process counts as dead and the others abort (default $JDANAS_HEARTBEAT_TIMEOUT or 100).",
                      flag_values=fv)
  return fv


def usage() -> str:
  """``--help``: this docstring, the flags and the available configs (each described by its first
  sentence, wrapped at 100 columns under its own column)."""
  configs = "\n".join(textwrap.fill(d, width=100, initial_indent=f"  {p:<26} ", subsequent_indent=" " * 29)
                       for p, d in available_configs())
  return (f"{__doc__}\nflags:\n{_define(['run.py']).get_help()}\n\navailable configs (variants after ':' are "
          f"described in each file's docstring):\n{configs}\n")


def _last_line(msg: str) -> str:
  lines = [l.strip() for l in str(msg).strip().splitlines() if l.strip()]
  return lines[-1] if lines else str(msg)


def _config_arg(argv: list[str]) -> str | None:
  for i, a in enumerate(argv):
    if a.startswith(("--config=", "-config=")):
      return a.split("=", 1)[1]
    if a in ("--config", "-config") and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _overrides(argv: list[str]) -> list[str]:
  return [re.split("[= ]", a.lstrip("-"), maxsplit=1)[0] for a in argv if re.match(r"^--?config\.", a)]


def _flag_error(msg: str, spec: str | None) -> str:
  """One line naming the flag of an absl flags error."""
  last = _last_line(msg)
  if "Error whilst parsing config file" in msg:
    return f"--config: {spec}: {last}"
  bad_value = re.match(r"flag (--[\w.]+)=(.*?): (.*)", msg.splitlines()[0])
  if bad_value:
    return f"{bad_value.group(1)}: invalid value {bad_value.group(2)!r} ({bad_value.group(3)})"
  missing = re.match(r"Missing value for flag (-+[\w.]+)", msg)
  if missing:
    return f"{missing.group(1)}: missing value"
  unknown = re.match(r"Unknown command line flag '([\w.]+)'", msg)
  if unknown:
    return (f"--{unknown.group(1)}: unknown flag (the flags are --config, --workdir, --show_config, --coordinator, "
            f"--num_processes, --process_id, --heartbeat_timeout; see --help)")
  return f"{last} (see --help)"


def _override_error(e: Exception, argv: list[str]) -> str:
  """One line naming the ``--config.<field>`` override that names no field of the config."""
  text = str(e.args[0] if e.args else e)
  first, *rest = text.replace("\\n", "\n").splitlines() or [""]
  missing = first.strip("'\"\\ ")
  overrides = _overrides(argv)
  named = [o for o in overrides if missing in o.split(".")[1:]] or overrides
  where = f"--{named[0]}" if named else "--config"
  if not re.fullmatch(r"\w+", missing):  # e.g. a field below an int
    return f"{where}: names no field of the config ({first.strip()}); see --show_config for the fields"
  hint = f" ({' '.join(r.strip().strip(chr(39)) for r in rest)})" if rest else ""
  return f"{where}: the config has no field {missing!r}{hint} (see --show_config for the fields)"


def parse(argv: list[str]):
  """``(config, workdir, show_config, launch)`` of ``argv`` (``argv[0]`` is the program; ``launch``:
  the :class:`jdanas.parallel.Launch` of a multi-process run, None for one process); raises UsageError."""
  argv = list(argv)
  spec = _config_arg(argv[1:])
  if spec is not None:
    path = pathlib.Path(spec.split(":", 1)[0])
    if not path.is_file():
      raise UsageError(f"--config: no such file {str(path)!r} (list the configs with --help)")
  fv = _define(argv)
  # ml_collections loads the file as module "config_config" through SourceFileLoader.load_module, which reuses a
  # module of that name already in sys.modules: a second main() in one process (a notebook, the tests) would keep
  # the previous file's get_config when the new file defines none.
  sys.modules.pop("config_config", None)
  try:
    rest = fv(argv)[1:]
  except flags.Error as e:
    raise UsageError(_flag_error(str(e), spec)) from None
  except (KeyError, AttributeError) as e:
    if "get_config" in str(e):
      raise UsageError(f"--config: {spec}: the file defines no get_config() function") from None
    raise UsageError(_override_error(e, argv)) from None
  except SyntaxError as e:
    raise UsageError(f"--config: {spec}: syntax error line {e.lineno}: {e.msg}") from None
  except Exception as e:  # the config file's own code failed while loading
    raise UsageError(f"--config: {spec}: {type(e).__name__}: {_last_line(e)}") from None
  if rest:
    raise UsageError(f"{rest[0]!r}: unexpected argument (flags are --name=value; see --help)")
  if spec is None:
    raise UsageError("--config: required (e.g. --config configs/default.py; list the configs with --help)")
  config = fv.config
  if type(config).__name__ == "_ErrorConfig":  # ml_collections defers a loading error to first use
    try:
      config.keys()
    except Exception as e:
      raise UsageError(f"--config: {spec}: {_last_line(e)}") from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise UsageError(f"--config: {spec}: get_config() returned a {type(config).__name__}, not an "
                     f"ml_collections.ConfigDict")
  if not fv.show_config and not fv.workdir:
    raise UsageError("--workdir: required (the directory for the teacher, checkpoints and results)")
  from jdanas.parallel import launch_spec
  try:
    launch = launch_spec(fv.coordinator, fv.num_processes, fv.process_id, fv.heartbeat_timeout)
  except ValueError as e:
    raise UsageError(str(e)) from None
  return config, fv.workdir, fv.show_config, launch


def main(argv: list[str]) -> int:
  """The command line; returns the exit status (2 for any bad input, with one ``error:`` line)."""
  if any(a in HELP_FLAGS for a in argv[1:]):
    print(usage())
    return 0
  flags.FLAGS.mark_as_parsed()  # absl logging otherwise warns that flags are not parsed
  logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
  try:
    config, workdir, show, launch = parse(argv)
    from jdanas import runtime
    runtime.configure()  # before jax starts its backend: XLA reads XLA_FLAGS and NPROC only then
    if launch is not None and not show:  # before any other JAX call (the mesh spans every process)
      from jdanas.parallel import initialize_distributed
      initialize_distributed(launch)
    from jdanas.pipeline import ConfigError, Watchdog, check_workdir, describe, prepare, run
  except UsageError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  try:
    if show:
      print(describe(config, prepare(config, workdir, data_optional=True)))  # shown without data too
      return 0
    # The cache before anything compiles (JAX decides at its first compilation whether to use one), in a
    # workdir known to be usable (JAX creates the folder then).
    runtime.use_compilation_cache(check_workdir(workdir) / "jax_cache")
    checked = prepare(config, workdir)
    with Watchdog(checked.plan.compute.stall_timeout_s) as watchdog:  # ends this process on a stall
      run(config, workdir, checked=checked, watchdog=watchdog)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
