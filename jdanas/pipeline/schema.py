"""A config section declared once: each field's type, default, allowed values and range.

A :class:`Section` lists its :class:`Field` s; :meth:`Section.read` checks a config section against
them with one generic function and returns its values with the defaults filled in. A default or a
rule is written in one place, the error of a bad value is generated from the declaration (one line
``config.<section>.<field>: must be ..., got ...``: :class:`ConfigError`), and ``--show_config`` can
list the same declarations. Rules that relate several fields (a batch that must divide the mesh, a
path that must exist) stay with the code that knows why; they raise through :func:`need` too.

Declaration style (after big_vision's and flax examples' configs, where a config is data and the
code that reads it states what it expects)::

  SEARCH = Section("search", {
      "rounds": Field("int", lo=1, doc="search rounds"),
      "top_k": Field("int", lo=1, doc="students of the final training"),
  })
  values = SEARCH.read(config.search)  # {"rounds": 3, "top_k": 2}
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

KINDS = ("int", "number", "bool", "str", "list", "any")


class ConfigError(ValueError):
  """A config value is invalid; the message is one line naming the field."""


def need(ok: bool, field: str, msg: str) -> None:
  """Raises ``ConfigError("config.<field>: <msg>")`` unless ``ok``."""
  if not ok:
    raise ConfigError(f"config.{field}: {msg}")


class _Required:
  def __repr__(self) -> str:
    return "REQUIRED"


REQUIRED: Any = _Required()  # a field without a default must be given


def is_int(v) -> bool:
  return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def is_number(v) -> bool:
  return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _bound(lo, hi, lo_open: bool, hi_open: bool) -> str:
  if lo is not None and hi is not None:
    return f" in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
  if lo is not None:
    return f" {'>' if lo_open else '>='} {lo:g}"
  if hi is not None:
    return f" {'<' if hi_open else '<='} {hi:g}"
  return ""


@dataclasses.dataclass(frozen=True)
class Field:
  """One config field.

  Attributes:
    kind: ``"int"``, ``"number"`` (int or float), ``"bool"``, ``"str"``, ``"list"`` (list or tuple) or
      ``"any"`` (checked by ``check`` only).
    default: the value of an absent field; :data:`REQUIRED`: absence is an error.
    choices: the allowed values, or a function returning them (imported lazily, e.g. a registry).
    lo, hi, lo_open, hi_open: the range of a number (``lo=1`` on an int reads "a positive int").
    finite: numbers must be finite (``inf``/``nan`` refused).
    nonempty: a string or list must not be empty.
    check: a further rule on the value: returns the error text or None; a text starting with "must"
      (``"must be ..."``) is followed by ``", got <value>"``, any other (``"'x' is not one of ..."``) stands as is.
    note: shown in the error after the requirement, e.g. ``"0 = no limit"``.
    doc: what the field means (``--show_config``).
  """
  kind: str
  default: Any = REQUIRED
  choices: Sequence | Callable[[], Sequence] | None = None
  lo: float | None = None
  hi: float | None = None
  lo_open: bool = False
  hi_open: bool = False
  finite: bool = True
  nonempty: bool = False
  check: Callable[[Any], str | None] | None = None
  note: str = ""
  doc: str = ""

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"kind: {self.kind!r} is not one of {', '.join(KINDS)}")

  def allowed(self) -> tuple | None:
    """The allowed values (None: no fixed set)."""
    if self.choices is None:
      return None
    return tuple(self.choices() if callable(self.choices) else self.choices)

  def requirement(self) -> str:
    """What a value must be, in words (the start of the error message)."""
    if self.kind == "bool":
      text = "True or False"
    elif self.kind == "int" and self.lo == 1 and self.hi is None and not self.lo_open:
      text = "a positive int"
    elif self.kind in ("int", "number"):
      noun = "an int" if self.kind == "int" else ("a finite number" if self.finite and self.lo is None
                                                    and self.hi is None else "a number")
      text = noun + _bound(self.lo, self.hi, self.lo_open, self.hi_open)
    elif self.kind == "str":
      text = "a non-empty string" if self.nonempty else "a string"
    elif self.kind == "list":
      text = "a non-empty list" if self.nonempty else "a list"
    else:
      text = "valid"
    return text + (f" ({self.note})" if self.note else "")

  def validate(self, value, name: str) -> Any:
    """``value`` checked (an ``int`` is returned as ``int``, a ``number`` as ``float``, a list as a tuple)."""
    allowed = self.allowed()
    if allowed is not None:
      need(value in allowed, name, f"{value!r} is not one of {', '.join(map(str, allowed))}")
      return value
    bad = f"must be {self.requirement()}, got {value!r}"
    if self.kind == "bool":
      need(isinstance(value, (bool, np.bool_)), name, bad)
      value = bool(value)
    elif self.kind in ("int", "number"):
      ok = is_int(value) if self.kind == "int" else is_number(value)
      ok = ok and (not self.finite or math.isfinite(float(value)))
      ok = ok and (self.lo is None or (value > self.lo if self.lo_open else value >= self.lo))
      ok = ok and (self.hi is None or (value < self.hi if self.hi_open else value <= self.hi))
      need(ok, name, bad)
      value = int(value) if self.kind == "int" else float(value)
    elif self.kind == "str":
      need(isinstance(value, str) and (bool(value) or not self.nonempty), name, bad)
    elif self.kind == "list":
      need(isinstance(value, (list, tuple)) and (bool(value) or not self.nonempty), name, bad)
      value = tuple(value)
    if self.check is not None:
      msg = self.check(value)
      need(msg is None, name, f"{msg}, got {value!r}" if msg and msg.startswith("must") else msg or "")
    return value


@dataclasses.dataclass(frozen=True)
class Section:
  """A config section: its dotted name (``"evaluator.zero_cost"``) and fields.

  ``extra``: field names the section may hold that another reader checks (e.g. a recipe section's
  ``distill``), accepted as they are and returned when present.
  """
  name: str
  fields: Mapping[str, Field]
  extra: tuple[str, ...] = ()
  doc: str = ""

  def path(self, field: str) -> str:
    """``"<section>.<field>"`` (``"<field>"`` for the top-level section, named ``""``)."""
    return f"{self.name}.{field}" if self.name else field

  def read(self, section) -> dict[str, Any]:
    """The section's values, defaults filled in; the first invalid or unknown field raises
    :class:`ConfigError` (unknown fields first: a typo is the likeliest mistake)."""
    section = {} if section is None else section
    names = tuple(self.fields) + self.extra
    unknown = sorted(set(section) - set(names))
    need(not unknown, self.name, f"unknown field(s) {unknown}; the fields are {', '.join(names)}")
    values = {}
    for name, f in self.fields.items():
      if name in section and section[name] is not None:
        values[name] = f.validate(section[name], self.path(name))
      else:
        need(f.default is not REQUIRED, self.path(name), f"is required ({f.requirement()})")
        values[name] = f.default
    values.update({name: section[name] for name in self.extra if name in section})
    return values

  def choices(self) -> dict[str, Callable[[], tuple]]:
    """``{"<section>.<field>": allowed-values function}`` of the fields with a fixed set."""
    return {self.path(n): f.allowed for n, f in self.fields.items() if f.choices is not None}

  def describe(self) -> list[tuple[str, Any, str, str]]:
    """``(field, default, requirement, doc)`` rows (``--show_config``, docs)."""
    return [(self.path(n), f.default, (f"one of {', '.join(map(str, f.allowed()))}" if f.choices is not None
                                             else f.requirement()), f.doc) for n, f in self.fields.items()]


__all__ = ["ConfigError", "Field", "KINDS", "REQUIRED", "Section", "is_int", "is_number", "need"]
