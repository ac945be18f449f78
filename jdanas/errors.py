"""An invalid argument, raised with the argument it names.

A library function that checks its arguments raises :class:`FieldError`: its message reads
``"<owner>.<field>: <detail>"`` as before, and a caller that maps arguments to its own names (the
pipeline maps them to ``config.<section>.<field>``) reads :attr:`FieldError.field` and
:attr:`FieldError.detail` instead of parsing the message.
"""
from __future__ import annotations


class FieldError(ValueError):
  """``ValueError`` naming the argument: ``field`` (e.g. ``"steps"``, ``"path"``), ``detail`` (the
  message after the name) and ``owner`` (a prefix of the printed name, e.g. ``"recipe"``)."""

  def __init__(self, field: str, detail: str, owner: str = ""):
    self.field, self.detail, self.owner = field, detail, owner
    super().__init__(f"{owner + '.' if owner else ''}{field}: {detail}")

  def __reduce__(self):  # picklable with its fields (multiprocessing, pytest-xdist)
    return type(self), (self.field, self.detail, self.owner)


__all__ = ["FieldError"]
