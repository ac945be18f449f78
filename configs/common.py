"""The base every shipped config starts from, and the one variant parser (big_vision's ``common.py`` pattern).

:func:`base` is a complete config whose every field holds its declared default
(:mod:`jdanas.pipeline.sections`, the one place a default is written), so a config file writes only what
differs and ``--config.<section>.<field>=...`` can override any declared field of any config (absl refuses
a field the config does not hold). :func:`parse_variant` reads a config's ``:variant`` argument the same way
for every config: comma-separated flags and ``name=value`` options, one error for anything else.

What the base gives a search (the declared defaults; a config states what differs): RepDistiller's KD loss
at T = 4, 6 rounds with the top 2 trained in full, regularized evolution with deduplication, no budget, one
final seed, the compute defaults (strategy/specialize/lowering 'auto', fp32, mesh pop=1 x data=all,
watchdog 1800 s). docs/configs.md#field-reference lists every field.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import ml_collections

from jdanas.pipeline import sections



def base(job: str = "search") -> ml_collections.ConfigDict:
  """Every declared section of a ``job`` config at its defaults (:data:`jdanas.pipeline.sections.JOB_SECTIONS`;
  a search's evaluator: ``short_kd``, its subsections written by the configs that use them)."""
  c = sections.base_sections(sections.JOB_SECTIONS[job])
  c["job"] = job
  if job == "search":
    c["evaluator"] = {"name": "short_kd"}
  return ml_collections.ConfigDict(c)


def override(c: ml_collections.ConfigDict, **values) -> ml_collections.ConfigDict:
  """``c`` with ``values`` merged in, dicts recursively (``override(c, data=dict(name="cifar10"))``
  changes ``data.name`` only); a field not in ``c`` is added, a ``kwargs`` dict is replaced whole."""
  for key, value in values.items():
    if isinstance(value, Mapping) and key in c and isinstance(c[key], ml_collections.ConfigDict) and key != "kwargs":
      override(c[key], **value)
    elif key in c and isinstance(c[key], tuple) and isinstance(value, list):
      c[key] = tuple(value)
    else:
      setattr(c, key, value)
  return c


def recipe(steps: int, batch_size: int, learning_rate: float, weight_decay: float, augment: bool = True,
           optimizer: str = "sgd", schedule: str = "cosine") -> dict:
  """A recipe section (the shipped configs all train with SGD and a cosine schedule)."""
  return dict(steps=steps, batch_size=batch_size, optimizer=optimizer, learning_rate=learning_rate,
              weight_decay=weight_decay, schedule=schedule, augment=augment)


def parse_variant(arg: str | None, config_name: str, flags: Sequence[str] = (),
                  options: Mapping[str, Sequence[str]] | None = None, exclusive: bool = False) -> dict:
  """The variant ``arg`` of ``config_name`` (``"runlocal,searcher=random"``): ``{flag: bool}`` for each of
  ``flags`` and ``{option: value or None}`` for each of ``options`` (``name=<one of its values>``);
  ``exclusive``: at most one flag. Anything else is one ``ValueError`` naming the token and the choices."""
  options = dict(options or {})
  out = {**{f: False for f in flags}, **{o: None for o in options}}
  usage = ", ".join([*flags, *(f"{o}=<{'|'.join(v)}>" for o, v in options.items())])
  for token in (arg or "").split(","):
    token = token.strip()
    if not token:
      continue
    name, eq, value = token.partition("=")
    if not eq and token in flags:
      out[token] = True
    elif eq and name in options and value in options[name]:
      out[name] = value
    else:
      raise ValueError(f"{config_name}: unknown variant {token!r} (use nothing or "
                       f"{'one of' if exclusive else 'comma-separated'}: {usage})")
  given = [f for f in flags if out[f]]
  if exclusive and len(given) > 1:
    raise ValueError(f"{config_name}: variants {' and '.join(given)} exclude each other")
  return out


def variant(arg: str | None, config_name: str, names: Sequence[str]) -> str | None:
  """The one variant of a config whose variants exclude each other (None: none given)."""
  chosen = [n for n, on in parse_variant(arg, config_name, names, exclusive=True).items() if on]
  return chosen[0] if chosen else None


def shared_data_dir() -> str:
  """``$JDANAS_DATA_DIR``, else ../shared/data next to the repository (the CPU variants' npz files)."""
  from jdanas.data import shared_data_dir as find
  return str(find())


__all__ = ["base", "override", "parse_variant", "recipe", "shared_data_dir", "variant"]
