"""TRADE's multi-family space: canonical encodings, mutation, every family's model, the params
budget as a searcher constraint, the pipeline's baselines field and a tiny end-to-end run.

The generic space contract (sampling, mutation, strings, signatures, building) runs for ``trade``
in ``tests/test_spaces.py`` (it is parametrized over the registry)."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import concrete_variables
from jdanas.costs import model_costs
from jdanas.models import get_model
from jdanas.models.shufflenetv2 import shufflenetv2
from jdanas.searchers import regularized_evolution, with_constraint
from jdanas.spaces import SPACES, get_space
from jdanas.spaces.trade import ALIASES, DEFAULT_FAMILIES, FAMILY_NAMES, TradeSpace

# Tiny grids: every family builds in a fraction of a second on an 8x8 input.
TINY = (
    ("resnet", (("blocks", (1, 2)), ("width", (0.25, 0.5)))),
    ("wrn", (("depth", (10,)), ("widen", (1, 2)))),
    ("mobilenetv2", (("width", (0.125, 0.25)), ("depth", (0.5, 1.0)), ("expansion", (2, 3)))),
    ("shufflenetv2", (("width", (0.5,)),)),
    ("vgg", (("config", (8, 11)), ("width", (0.0625, 0.125)))),
    ("vit", (("patch", (2, 4)), ("dim", (8, 16)), ("depth", (1, 3)), ("heads", (2, 4)), ("mlp", (2,)))),
    ("convmixer", (("depth", (1, 2)), ("dim", (8, 16)), ("patch", (1, 2)), ("kernel", (3, 5)))),
)


@functools.cache
def tiny() -> TradeSpace:
  return TradeSpace(knobs=TINY)


@functools.cache
def full() -> TradeSpace:
  return TradeSpace()


@functools.cache
def jitted(space: TradeSpace, method: str):
  return jax.jit(jax.vmap(getattr(space, method)))


def keys(n, seed=0):
  return jax.random.split(jax.random.key(seed), n)


def test_registered_with_kinds_and_layout():
  space = get_space("trade")
  assert SPACES["trade"] is TradeSpace and space == full()
  assert space.families == FAMILY_NAMES == ("resnet", "wrn", "mobilenetv2", "shufflenetv2", "vgg", "vit",
                                            "convmixer")
  d = 1 + sum(len(k) for k in DEFAULT_FAMILIES.values())
  assert space.num_decisions == d == len(space.decision_kinds()) == len(space.decision_names())
  assert space.decision_kinds() == ("categorical",) + ("ordinal",) * (d - 1)
  assert space.num_choices[0] == 7
  assert space.decision_names()[1:3] == ("resnet.blocks", "resnet.width")
  # The full grid: every family's architectures enumerated once, in canonical_index order.
  encs = space.enumerate_canonical()
  assert len(encs) == 63 + 20 + 90 + 4 + 12 + 600 + 300
  assert len({tuple(e) for e in encs}) == len(encs)
  np.testing.assert_array_equal(jitted(space, "canonicalize")(encs), encs)
  np.testing.assert_array_equal(jitted(space, "canonical_index")(encs), np.arange(len(encs)))


def test_bad_space_arguments_are_one_line_errors():
  for kwargs, match in ((dict(families=("resnet", "nope")), "trade.families"),
                        (dict(families=()), "trade.families"),
                        (dict(families=("resnet",), knobs=(("vit", DEFAULT_FAMILIES["vit"]),)), "trade.knobs"),
                        (dict(knobs=(("resnet", (("width", (1.0,)), ("blocks", (1,)))),)), "trade.knobs")):
    with pytest.raises(ValueError, match=match) as info:
      TradeSpace(**kwargs)
    assert "\n" not in str(info.value)


def test_canonicalize_is_idempotent_and_zeroes_inactive_knobs():
  space = tiny()
  n = np.asarray(space.num_choices)
  raw = np.asarray(jax.random.randint(jax.random.key(3), (512, space.num_decisions), 0, n), np.int32)
  canon = np.asarray(jitted(space, "canonicalize")(raw))
  active = np.asarray(jitted(space, "active")(raw))
  np.testing.assert_array_equal(canon[active], raw[active])
  assert np.all(canon[~active] == 0) and np.any(raw[~active] != 0)
  np.testing.assert_array_equal(jitted(space, "canonicalize")(canon), canon)
  # The same architecture: equal strings, signatures and canonical indices.
  for r, c in zip(raw[:32], canon[:32]):
    assert space.decode(r) == space.decode(c) and space.signature(r) == space.signature(c)
  np.testing.assert_array_equal(jitted(space, "canonical_index")(raw), jitted(space, "canonical_index")(canon))
  # Samples are canonical and cover every family.
  samples = np.asarray(jitted(space, "sample")(keys(256)))
  np.testing.assert_array_equal(jitted(space, "canonicalize")(samples), samples)
  assert set(samples[:, 0].tolist()) == set(range(7))


def test_mutate_changes_exactly_one_active_decision():
  space = tiny()
  parents = np.asarray(jitted(space, "sample")(keys(512)))
  children = np.asarray(jitted(space, "mutate")(keys(512, 1), parents))
  np.testing.assert_array_equal(jitted(space, "canonicalize")(children), children)
  act_p = np.asarray(jitted(space, "active")(parents))
  act_c = np.asarray(jitted(space, "active")(children))
  changed = children != parents
  assert np.all((changed & act_p & act_c).sum(1) == 1)
  # Nothing changes outside the parent's and the child's active decisions.
  assert not np.any(changed & ~act_p & ~act_c)
  switched = children[:, 0] != parents[:, 0]
  assert 0 < switched.mean() < 1  # family switches and knob edits both happen
  # A knob edit stays in the family and touches one active knob only.
  assert np.all(changed[~switched].sum(1) == 1)
  # Decisions with one value (wrn.depth, shufflenetv2.width, ...) never change.
  single = np.asarray(space.num_choices) == 1
  assert not np.any(changed[:, single])
  # Every family is reached from every family.
  pairs = {(int(p), int(c)) for p, c in zip(parents[switched, 0], children[switched, 0])}
  assert len(pairs) > 30  # of the 42 ordered pairs, in about 70 switches


def test_strings_and_aliases():
  space = full()
  enc = space.encode("convmixer(depth=8,dim=96,patch=2,kernel=7)")
  assert space.decode(enc) == "convmixer(depth=8,dim=96,patch=2,kernel=7)"
  assert space.signature(enc) == ("convmixer", (("depth", 8.0), ("dim", 96.0), ("patch", 2.0), ("kernel", 7.0)))
  assert space.decode(space.encode("mobilenetv2(width=0.5, depth=0.75, expansion=3)")) == \
      "mobilenetv2(width=0.5,depth=0.75,expansion=3)"
  assert set(space.aliases()) == set(ALIASES)
  for alias in space.aliases():
    enc = space.encode(alias)
    if alias != "shufflenetv2":  # not in the zoo; checked against its builder below
      assert space.build(space.signature(enc), 100) == get_model(alias, 100), alias
  assert space.build(space.signature(space.encode("shufflenetv2")), 10) == shufflenetv2(10, 1.0)
  assert space.decode(space.encode("resnet20")) == "resnet(blocks=3,width=1)"
  assert space.decode(space.encode("wrn_16_2")) == "wrn(depth=16,widen=2)"
  # Aliases exist only where the family and knob values do.
  small = TradeSpace(families=("resnet", "vit"))
  assert small.aliases() == tuple(f"resnet{d}" for d in (8, 14, 20, 32, 44, 56))
  for bad, match in (("wrn_16_2", "alias 'wrn_16_2' is not in this space"),
                     ("nope(x=1)", "is not 'family"),
                     ("resnet(width=1,blocks=3)", "must list resnet's knobs blocks, width"),
                     ("resnet(blocks=10,width=1)", r"resnet.blocks = 10 is not one of 1, 2"),
                     ("resnet(blocks=a,width=1)", "non-numeric")):
    with pytest.raises(ValueError, match=match) as info:
      small.encode(bad)
    assert "\n" not in str(info.value)


# Published PyTorch parameter counts (100 classes, millions), as in tests/test_models.py.
PUBLISHED_PARAMS_M_100 = {"resnet20": 0.278, "wrn_16_2": 0.703, "mobilenetv2_half": 0.812, "vgg8": 3.965}


def test_params_from_the_built_model():
  space = full()
  assert model_costs(space, space.encode("resnet20"), num_classes=100, flops=False).params == 278_324
  for alias, millions in PUBLISHED_PARAMS_M_100.items():
    got = model_costs(space, space.encode(alias), num_classes=100, flops=False).params
    assert got / 1e6 == pytest.approx(millions, rel=2e-3), alias
  # Width and depth knobs move params the right way.
  p = lambda s: model_costs(space, space.encode(s), num_classes=10, flops=False).params
  assert p("resnet(blocks=3,width=0.5)") < p("resnet20") < p("resnet(blocks=3,width=2)")
  assert p("vit(patch=4,dim=96,depth=4,heads=2,mlp=2)") < p("vit(patch=4,dim=96,depth=8,heads=2,mlp=2)")
  assert p("convmixer(depth=8,dim=96,patch=2,kernel=3)") < p("convmixer(depth=8,dim=96,patch=2,kernel=9)")
  assert p("mobilenetv2(width=0.5,depth=0.5,expansion=6)") < p("mobilenetv2_half")


@pytest.fixture(scope="module")
def family_outputs():
  """One architecture per family of the tiny space, run in train and eval mode on 8x8 inputs."""
  space = tiny()
  x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 8, 8, 3)), jnp.float32)
  out = {}
  for i, fam in enumerate(space.families):
    enc = np.zeros(space.num_decisions, np.int32)
    enc[0] = i
    enc = space.canonicalize(enc)
    enc = np.asarray(enc).copy()
    grid = space.grid(fam)
    off = 1 + sum(len(g) for _, g in space.knobs[:i])
    enc[off:off + len(grid)] = [len(v) - 1 for _, v in grid]  # the largest tiny variant
    module = space.build(space.signature(enc), 5)
    shapes = jax.eval_shape(lambda k: module.init(k, x, jnp.asarray(enc), train=False), jax.random.key(0))
    variables = concrete_variables(shapes)

    def both(v, inp, e, module=module):
      train_out, updates = module.apply(v, inp, e, train=True, mutable=["batch_stats"])
      return train_out["logits"], updates, module.apply(v, inp, e, train=False)
    out[fam] = (space.decode(enc), shapes, jax.jit(both)(variables, x, jnp.asarray(enc)))
  return out


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_every_family_builds_and_runs(family_outputs, family):
  arch, shapes, (train_logits, updates, feats) = family_outputs[family]
  assert arch.startswith(family + "(")
  assert set(shapes) == {"params", "batch_stats"} and set(updates) == {"batch_stats"}
  assert set(feats) == {"stages", "pre_pool", "pooled", "logits"}
  assert len(feats["stages"]) >= 3 and all(s.ndim == 4 and s.shape[0] == 2 for s in feats["stages"])
  assert feats["pre_pool"].ndim == 4 and feats["pooled"].shape == (2, feats["pre_pool"].shape[-1])
  np.testing.assert_allclose(feats["pooled"], feats["pre_pool"].mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
  assert feats["logits"].shape == train_logits.shape == (2, 5)
  assert bool(jnp.all(jnp.isfinite(feats["logits"]))) and bool(jnp.all(jnp.isfinite(train_logits)))


def test_params_budget_is_a_searcher_constraint():
  space = TradeSpace(families=("resnet", "vgg", "convmixer"), knobs=tuple(
      (f, k) for f, k in TINY if f in ("resnet", "vgg", "convmixer")))
  table = space.params_table(num_classes=10, input_shape=(8, 8, 3))
  encs = space.enumerate_canonical()
  assert table.shape == (len(encs),) and np.all(table > 0)
  budget = float(np.median(table))
  feasible = space.params_predicate(budget, num_classes=10, input_shape=(8, 8, 3))
  for i in np.random.default_rng(0).choice(len(encs), 12, replace=False):
    params = model_costs(space, encs[i], num_classes=10, input_shape=(8, 8, 3), flops=False).params
    assert params == table[i] and bool(feasible(jnp.asarray(encs[i]))) == (params <= budget)
  searcher = with_constraint(regularized_evolution(space, num_asks=8, population_size=8, tournament_size=3),
                             feasible)
  ask, tell = jax.jit(searcher.ask), jax.jit(searcher.tell)
  state = searcher.init(jax.random.key(0))
  asked = []
  for r in range(4):
    encs_r, state = ask(jax.random.fold_in(jax.random.key(1), r), state)
    state, metrics = tell(jax.random.key(2), state, encs_r, jnp.arange(8, dtype=jnp.float32))
    asked.append(np.asarray(encs_r))
  asked = np.concatenate(asked)
  rows = np.asarray(jitted(space, "canonical_index")(asked))
  assert np.all(table[rows] <= budget) and int(metrics["constraint_unrepaired"]) == 0
  # Without the wrapper the same searcher proposes over-budget students.
  plain = regularized_evolution(space, num_asks=32, population_size=32, tournament_size=3)
  encs_p, _ = jax.jit(plain.ask)(jax.random.key(1), plain.init(jax.random.key(0)))
  assert np.any(table[np.asarray(jitted(space, "canonical_index")(encs_p))] > budget)


# ---- the pipeline: baselines config field and a tiny end-to-end run --------------------------------


def tiny_trade_config(**changes):
  """The default smoke config on the trade space (digits, tiny grids, budget, one round)."""
  from configs import default
  c = default.get_config("smoke")
  c.space = dict(name="trade", kwargs=dict(families=("resnet", "convmixer"), knobs=(
      ("resnet", (("blocks", (1, 2)), ("width", (0.25, 0.5)))),
      ("convmixer", (("depth", (1, 2)), ("dim", (8, 16)), ("patch", (1, 2)), ("kernel", (3,)))))))
  c.searcher.kwargs.update(num_asks=2, population_size=2, tournament_size=2)
  c.search.update(rounds=1, top_k=1)
  c.constraint.max_params = 3_000
  c.final.baselines = ["resnet(blocks=1,width=0.25)", "convmixer(depth=1,dim=8,patch=2,kernel=3)"]
  for field, value in changes.items():
    node = c
    *parents, leaf = field.split(".")
    for p in parents:
      node = node[p]
    if leaf in node:
      del node[leaf]  # ConfigDict keeps a field's type; bad-type values replace the field
    node[leaf] = value
  return c


@pytest.mark.parametrize("value, match", [
    ("resnet20", "must be a list"),
    ([""], "must be a list"),
    (["resnet(blocks=1,width=0.25)", "resnet(blocks=1,width=0.25)"], "has duplicates"),
    (["wrn_16_2"], "'wrn_16_2' is not an architecture of space 'trade'"),
    (["resnet(blocks=7,width=0.25)"], "resnet.blocks = 7 is not one of 1, 2"),
])
def test_bad_baselines_name_the_field(value, match):
  from jdanas.pipeline import ConfigError, validate_config
  with pytest.raises(ConfigError, match=match) as info:
    validate_config(tiny_trade_config(**{"final.baselines": value}))
  assert str(info.value).startswith("config.final.baselines: ") and "\n" not in str(info.value)


def test_baselines_default_and_empty_are_valid():
  from jdanas.pipeline import validate_config
  validate_config(tiny_trade_config(**{"final.baselines": []}))
  c = tiny_trade_config()
  del c.final["baselines"]
  validate_config(c)


def test_trade_config_variants():
  from configs import trade_cifar10
  full_c = trade_cifar10.get_config()
  assert full_c.searcher.name == "casmopolitan" and full_c.space.name == "trade"
  assert full_c.constraint.max_params == 700_000 and "wrn_16_2" in full_c.final.baselines
  local = trade_cifar10.get_config("runlocal,searcher=regularized_evolution")
  assert local.searcher.name == "regularized_evolution" and local.search.rounds == 2
  space = get_space("trade", **dict(local.space.kwargs))
  for b in list(full_c.final.baselines) + list(local.final.baselines):
    (full() if b in full_c.final.baselines else space).encode(b)
  with pytest.raises(ValueError, match="unknown variant 'fast'"):
    trade_cifar10.get_config("runlocal,fast")


@pytest.mark.slow
def test_pipeline_end_to_end_with_budget_and_baselines(tmp_path):
  import json

  from jdanas.pipeline import run
  config = tiny_trade_config()
  report = run(config, tmp_path)
  space = get_space("trade", **dict(config.space.kwargs))
  ledger = json.loads((tmp_path / "ledger.json").read_text())
  assert len(ledger) == 2 and all(r["feasible"] and r["params"] <= 3_000 for r in ledger)
  assert [b["name"] for b in report["baselines"]] == list(config.final.baselines)
  for b in report["baselines"]:
    assert b["arch"] == space.decode(space.encode(b["name"]))
    assert b["params"] == model_costs(space, space.encode(b["name"]), num_classes=10, input_shape=(8, 8, 1),
                                      flops=False).params  # digits: 8x8 grey
    assert 0 <= b["kd"]["val_accuracy"] <= 1 and 0 <= b["kd"]["test_accuracy"] <= 1
  saved = json.loads((tmp_path / "report.json").read_text())
  assert saved["baselines"] == report["baselines"]
  md = (tmp_path / "report.md").read_text()
  assert "## Chosen student vs predefined students (same KD recipe)" in md
  assert all(f"`{b['arch']}`" in md for b in report["baselines"])
  from jdanas import load_student
  assert load_student(tmp_path / "export").arch == report["final"]["arch"]
  # Resume after completion: the search is not repeated and the report is the same.
  again = run(config, tmp_path)
  assert again["baselines"] == report["baselines"] and again["final"] == report["final"]
  assert json.loads((tmp_path / "ledger.json").read_text()) == ledger
