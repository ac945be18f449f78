"""The shipped configs build on configs/common.py: every declared field present (so any can be overridden
with --config.<field>=...), one variant parser, and docs/configs.md's field reference is the declarations'."""
from __future__ import annotations

import importlib
import pathlib

import pytest

from configs import common
from jdanas.pipeline import sections

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = {  # config -> a few of its variants (every one is parsed by common.parse_variant)
    "default": (None, "smoke"),
    "nb201_re": (None, "runlocal"),
    "akd_cifar10": (None, "runlocal", "runlocal,nas_kd,searcher=random,latency=params"),
    "trade_cifar10": (None, "runlocal,searcher=random"),
    "diswot_nb201": (None, "runlocal,distiller"),
    "diswot_s1": (None, "runlocal,distiller,table"),
    "oracle_kd_cifar": (None, "runlocal", "gpu", "smoke"),
    "dass_meta_train": (None, "runlocal", "smoke"),
    "dass_search": (None, "dataset=dtd", "runlocal", "smoke"),
}


def _node(config, name: str):
  for part in filter(None, name.split(".")):
    config = config[part]
  return config


@pytest.mark.parametrize("name, arg", [(n, a) for n, args in CONFIGS.items() for a in args])
def test_every_declared_field_is_in_every_config_and_reads(name, arg):
  c = importlib.import_module(f"configs.{name}").get_config(arg)
  job = c.get("job", "search")
  for section_name in sections.JOB_SECTIONS[job]:
    sec = sections.section(section_name)
    node = c if section_name == "" else _node(c, section_name)
    missing = [f for f in sec.fields if f not in node]
    assert not missing, (name, arg, section_name, missing)
    if section_name:
      sec.read(node)  # no unknown field, every value valid
  sections.TOP.read({k: c[k] for k in sections.TOP.fields})


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_an_unknown_variant_is_one_error_naming_it(name):
  with pytest.raises(ValueError, match=rf"configs/{name}.py: unknown variant 'bogus' \(use nothing or"):
    importlib.import_module(f"configs.{name}").get_config("runlocal,bogus" if name != "default" else "bogus")


def test_parse_variant():
  parse = common.parse_variant
  assert parse(None, "c.py", ("a", "b"), {"s": ("x", "y")}) == {"a": False, "b": False, "s": None}
  assert parse(" a, s=y ", "c.py", ("a", "b"), {"s": ("x", "y")}) == {"a": True, "b": False, "s": "y"}
  usage = r"\(use nothing or comma-separated: a, b, s=<x\|y>\)"
  with pytest.raises(ValueError, match=r"c.py: unknown variant 's=z' " + usage):
    parse("s=z", "c.py", ("a", "b"), {"s": ("x", "y")})
  with pytest.raises(ValueError, match="c.py: variants a and b exclude each other"):
    parse("a,b", "c.py", ("a", "b"), exclusive=True)
  assert common.variant("b", "c.py", ("a", "b")) == "b" and common.variant("", "c.py", ("a", "b")) is None


def test_the_base_holds_the_declared_defaults():
  c = common.base()
  for field, default in sections.defaults([sections.section(n) for n in sections.JOB_SECTIONS["search"]]).items():
    value = _node(c, field)
    value = tuple(value) if isinstance(default, tuple) else value.to_dict() if isinstance(default, dict) else value
    assert value == default, field


def test_docs_field_reference_is_generated_from_the_declarations():
  page = (REPO / "docs" / "configs.md").read_text()
  block = page.split("<!-- fields:begin -->\n", 1)[1].split("\n<!-- fields:end -->", 1)[0]
  assert block == sections.markdown(), ("docs/configs.md's field reference is stale: replace the block between "
                                        "the fields markers by jdanas.pipeline.sections.markdown()")
  for field, *_ in sections.describe():
    assert f"| `{field}` |" in block


def _cli_value(v) -> str:
  return repr(tuple(v)) if isinstance(v, (tuple, list)) else str(v)


@pytest.mark.parametrize("config, job", [("configs/nb201_re.py:runlocal", "search"),
                                         ("configs/dass_meta_train.py:smoke", "meta_train")])
def test_every_declared_field_can_be_overridden_on_the_command_line(config, job):
  """--config.<field>=<value> for every declared field of the job, each config of it (absl refuses a field the
  config does not hold): nb201_re writes no kd.semantic_weight, teacher.paths, compute.pop_chunk, ... itself."""
  from conftest import load_run_cli
  cli = load_run_cli()
  secs = [sections.section(n) for n in sections.JOB_SECTIONS[job]]
  values = {field: v for field, v in sections.defaults(secs).items() if not isinstance(v, dict)}
  argv = ["run.py", "--config", str(REPO / config), "--show_config"]
  argv += [f"--config.{field}={_cli_value(v)}" for field, v in values.items()]
  c = cli.parse(argv)[0]
  for field, v in values.items():
    got = _node(c, field)
    assert (tuple(got) if isinstance(v, tuple) else got) == v, field


def test_load_config_works_from_any_working_directory(tmp_path):
  """pipeline.load_config loads a shipped config (which imports configs.common) from a process whose working
  directory and sys.path hold no configs/ (a notebook kernel in notebooks/): the CI failure of 01_akd.ipynb."""
  import subprocess
  import sys
  code = ("import sys; from jdanas import pipeline; "
          "assert 'configs' not in sys.modules; "
          f"c = pipeline.load_config({str(REPO / 'configs' / 'akd_cifar10.py')!r} + ':runlocal,nas_kd'); "
          "print(c.evaluator.name, c.evaluator.reward.latency_model, c.evaluator.short_kd.distill)")
  env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
  env["PYTHONPATH"] = str(REPO / "jdanas" / "..")  # jdanas importable, configs/ only through load_config
  out = subprocess.run([sys.executable, "-P", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-2000:]
  expected = importlib.import_module("configs.akd_cifar10").get_config("runlocal,nas_kd")
  assert out.stdout.split() == [expected.evaluator.name, expected.evaluator.reward.latency_model,
                                str(expected.evaluator.short_kd.distill)]


def test_load_config_errors_name_the_file(tmp_path):
  from jdanas import pipeline
  with pytest.raises(FileNotFoundError, match="nope.py"):
    pipeline.load_config(tmp_path / "nope.py:runlocal")
  (tmp_path / "empty.py").write_text("x = 1\n")
  with pytest.raises(ValueError, match="get_config"):
    pipeline.load_config(tmp_path / "empty.py")
