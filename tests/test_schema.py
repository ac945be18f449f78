"""The config-section declarations (jdanas.pipeline.schema): one generic check, errors naming the field."""
import pytest

from jdanas.pipeline.config import ConfigError as PipelineConfigError
from jdanas.pipeline.schema import REQUIRED, ConfigError, Field, Section

S = Section("search", {
    "rounds": Field("int", lo=1),
    "top_k": Field("int", default=1, lo=1),
    "ratio": Field("number", default=0.5, lo=0, hi=1, lo_open=True, hi_open=True),
    "limit": Field("number", default=0.0, lo=0, note="0 = no limit"),
    "flag": Field("bool", default=True),
    "mode": Field("str", default="a", choices=lambda: ("a", "b")),
    "names": Field("list", default=(), check=lambda v: None if all(isinstance(x, str) for x in v) else "must hold strings"),
    "tap": Field("str", default="a", check=lambda v: None if v.startswith("a") else f"{v!r} is not one of a, a1, ..."),
}, extra=("distill",))


def test_defaults_and_conversion():
  v = S.read({"rounds": 3, "names": ["x"], "distill": False})
  assert v == {"rounds": 3, "top_k": 1, "ratio": 0.5, "limit": 0.0, "flag": True, "mode": "a", "names": ("x",),
               "tap": "a", "distill": False}
  assert isinstance(S.read({"rounds": 2, "limit": 3})["limit"], float)


@pytest.mark.parametrize("section, message", [
    ({}, "config.search.rounds: is required (a positive int)"),
    ({"rounds": 0}, "config.search.rounds: must be a positive int, got 0"),
    ({"rounds": True}, "config.search.rounds: must be a positive int, got True"),
    ({"rounds": 2.0}, "config.search.rounds: must be a positive int, got 2.0"),
    ({"rounds": 1, "ratio": 1.0}, "config.search.ratio: must be a number in (0, 1), got 1.0"),
    ({"rounds": 1, "limit": -1}, "config.search.limit: must be a number >= 0 (0 = no limit), got -1"),
    ({"rounds": 1, "limit": float("inf")}, "config.search.limit: must be a number >= 0 (0 = no limit), got inf"),
    ({"rounds": 1, "flag": "yes"}, "config.search.flag: must be True or False, got 'yes'"),
    ({"rounds": 1, "mode": "c"}, "config.search.mode: 'c' is not one of a, b"),
    ({"rounds": 1, "names": [1]}, "config.search.names: must hold strings, got (1,)"),
    ({"rounds": 1, "tap": "b"}, "config.search.tap: 'b' is not one of a, a1, ..."),
    ({"rounds": 1, "nmae": 1}, "config.search: unknown field(s) ['nmae']; the fields are rounds, top_k, ratio"),
])
def test_errors_name_the_field(section, message):
  with pytest.raises(ConfigError) as e:
    S.read(section)
  assert str(e.value).startswith(message)
  assert "\n" not in str(e.value)


def test_one_error_class_and_listings():
  assert PipelineConfigError is ConfigError
  assert S.choices()["search.mode"]() == ("a", "b")
  rows = {r[0]: r for r in S.describe()}
  assert rows["search.rounds"][1] is REQUIRED and rows["search.mode"][2] == "one of a, b"
  with pytest.raises(ValueError, match="kind"):
    Field("float")


def test_a_top_level_section_names_its_fields_alone():
  top = Section("", {"seed": Field("int", 0)})
  with pytest.raises(ConfigError, match=r"^config.seed: must be an int, got 'x'$"):
    top.read({"seed": "x"})
  assert top.describe()[0][0] == "seed" and top.path("seed") == "seed"
