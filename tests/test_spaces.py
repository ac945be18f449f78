"""Search-space contract over the registry, and the NB201 / DisWOT S1 spaces against the real tables."""
from __future__ import annotations

import csv
import dataclasses
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from conftest import concrete_variables, require_file
from jdanas.benchmarks.nb201 import NB201Table
from jdanas.costs import model_costs
from jdanas.models import get_model
from jdanas.spaces import SPACES, AbstractSearchSpace, NB201Space, ResNetDepthSpace, get_space
from jdanas.spaces.zoo import ZooSpace

# Spaces that follow the contract without a registry entry (the registry wins once they have one).
UNREGISTERED = {"zoo": ZooSpace}
FACTORIES = {**UNREGISTERED, **SPACES}
# Small kwargs per space keep the built modules tiny; every factory must have an entry.
TEST_KWARGS = {
    "nb201": dict(channels=4, num_cells=1),
    "nb201_masked": dict(channels=4, num_cells=1),
    "s1_resnet": dict(depth_choices=(1, 2), widths=(4, 8, 8), stem=4),
    "s1_resnet_masked": dict(depth_choices=(1, 2), widths=(4, 8, 8), stem=4),
    "mobilenet": dict(base_width=0.25),
    "kdas": dict(positions=(3,), depths=(1, 1, 2), widths=(4, 4, 8), stem=4),
    "kdas_masked": dict(positions=(3,), depths=(1, 1, 2), widths=(4, 4, 8), stem=4),
    "dass_resnet": dict(stage_widths=(4, 8, 8, 16), max_depth=2, multipliers=(0.5, 0.75, 1.0)),
    "zoo": dict(models=("resnet8", "vgg8")),
    "trade": dict(knobs=(
        ("resnet", (("blocks", (1, 2)), ("width", (0.25, 0.5)))),
        ("wrn", (("depth", (10,)), ("widen", (1,)))),
        ("mobilenetv2", (("width", (0.125, 0.25)), ("depth", (0.5,)), ("expansion", (2, 3)))),
        ("shufflenetv2", (("width", (0.5,)),)),
        ("vgg", (("config", (8,)), ("width", (0.0625, 0.125)))),
        ("vit", (("patch", (2, 4)), ("dim", (8, 16)), ("depth", (1, 2)), ("heads", (2,)), ("mlp", (2,)))),
        ("convmixer", (("depth", (1, 2)), ("dim", (8, 16)), ("patch", (1, 2)), ("kernel", (3, 5)))))),
}
NAMES = sorted(FACTORIES)
CONTRACT_KEYS = {"stages", "pre_pool", "pooled", "logits"}
BEST_CIFAR10_CELL = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
                     "nor_conv_1x1~2|")
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
ALL_CONV3 = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|"
             "nor_conv_3x3~2|")


@functools.cache
def make(name: str) -> AbstractSearchSpace:
  return FACTORIES[name](**TEST_KWARGS[name])


def keys(n: int, seed: int = 0) -> jax.Array:
  return jax.random.split(jax.random.key(seed), n)


@functools.cache
def batched(name: str, method: str):
  """``jit(vmap(space.<method>))``, compiled once per space."""
  return jax.jit(jax.vmap(getattr(make(name), method)))


@functools.cache
def samples(name: str, n: int = 256, seed: int = 0) -> np.ndarray:
  return np.asarray(batched(name, "sample")(keys(n, seed)))


def abstract_init(module, x, enc):
  return jax.eval_shape(lambda k, inp, e: module.init(k, inp, e, train=False), jax.random.key(0), x, enc)


# ---- the contract, for every space ----------------------------------------------------------------


def test_test_kwargs_cover_every_space():
  assert set(TEST_KWARGS) == set(FACTORIES) and set(SPACES) <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_sample_jit_vmap_valid_and_deterministic(name):
  space = make(name)
  encs = samples(name)
  assert encs.dtype == np.int32 and encs.shape == (256, space.num_decisions)
  assert bool(jnp.all(jax.vmap(space.is_valid)(encs)))
  n = np.asarray(space.num_choices)
  assert np.all((encs >= 0) & (encs < n))
  # Every value of every decision shows up in 256 uniform draws.
  for d in range(space.num_decisions):
    assert set(encs[:, d].tolist()) == set(range(n[d])), f"decision {d}"
  # Same key, same sample: jitted and vmapped, or un-jitted one key at a time.
  np.testing.assert_array_equal(batched(name, "sample")(keys(256)), encs)
  single = space.sample(keys(256)[17])
  assert single.dtype == jnp.int32 and single.shape == (space.num_decisions,)
  np.testing.assert_array_equal(single, encs[17])
  assert not np.array_equal(samples(name, 256, 1), encs)


@pytest.mark.parametrize("name", NAMES)
def test_mutate_changes_exactly_one_decision(name):
  space = make(name)
  parents = samples(name)
  children = np.asarray(batched(name, "mutate")(keys(256, 1), parents))
  assert children.dtype == np.int32 and children.shape == parents.shape
  assert bool(jnp.all(jax.vmap(space.is_valid)(children)))
  # Exactly one decision that matters to both parent and child changes (every decision, for
  # spaces without inactive decisions); children of canonical parents are canonical.
  both = np.asarray(batched(name, "active")(parents)) & np.asarray(batched(name, "active")(children))
  assert np.all(((children != parents) & both).sum(axis=1) == 1)
  np.testing.assert_array_equal(batched(name, "canonicalize")(children), children)
  np.testing.assert_array_equal(batched(name, "mutate")(keys(256, 1), parents), children)


@pytest.mark.parametrize("name", NAMES)
def test_encode_decode_round_trip(name):
  space = make(name)
  for enc in samples(name)[:16]:
    arch = space.decode(enc)
    assert isinstance(arch, str) and arch
    back = space.encode(arch)
    assert back.dtype == np.int32
    np.testing.assert_array_equal(back, enc)
    assert space.decode(back) == arch
    assert space.decode(jnp.asarray(enc)) == space.decode(enc.tolist()) == arch


@pytest.mark.parametrize("name", NAMES)
def test_signature_hashable_and_equal_for_equal_encodings(name):
  space = make(name)
  encs = samples(name)[:16]
  for enc in encs:
    sig = space.signature(enc)
    forms = (enc.copy(), enc.tolist(), jnp.asarray(enc), enc.astype(np.int64))
    assert all(space.signature(e) == sig and hash(space.signature(e)) == hash(sig) for e in forms)
  sigs = {space.signature(e) for e in encs}
  if name.endswith("_masked"):
    assert sigs == {()}
  else:
    assert len(sigs) > 1


@pytest.mark.parametrize("name", NAMES)
def test_check_names_the_out_of_range_decision(name):
  space = make(name)
  enc = samples(name)[0]
  n = space.num_choices
  np.testing.assert_array_equal(space.check(enc), enc)
  for d in sorted({0, space.num_decisions // 2, space.num_decisions - 1}):
    for value in (n[d], -1):
      bad = enc.copy()
      bad[d] = value
      with pytest.raises(ValueError, match=rf"^{space.name}: decision {d} = {value} is outside 0\.\.{n[d] - 1}$"):
        space.check(bad)
      with pytest.raises(ValueError, match=rf"decision {d} = {value}"):
        space.decode(bad)
      assert not bool(space.is_valid(jnp.asarray(bad)))
  with pytest.raises(ValueError, match="shape"):
    space.check(np.concatenate([enc, enc]))
  with pytest.raises(ValueError, match="integer"):
    space.check(enc.astype(np.float32))


@pytest.mark.parametrize("name", NAMES)
def test_built_module_runs_and_returns_features(name):
  space = make(name)
  enc = samples(name)[0]
  module = space.build(space.signature(enc), 5)
  x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 8, 8, 3)), jnp.float32)
  shapes = abstract_init(module, x, jnp.asarray(enc))
  assert set(shapes) == {"params", "batch_stats"}
  feats = jax.jit(lambda v, inp, e: module.apply(v, inp, e, train=False))(
      concrete_variables(shapes), x, jnp.asarray(enc))
  assert set(feats) == CONTRACT_KEYS
  assert isinstance(feats["stages"], tuple) and len(feats["stages"]) >= 3
  assert all(s.ndim == 4 and s.shape[0] == 2 for s in feats["stages"])
  assert feats["pre_pool"].ndim == 4
  assert feats["pooled"].shape == (2, feats["pre_pool"].shape[-1])
  assert feats["logits"].shape == (2, 5)
  assert bool(jnp.all(jnp.isfinite(feats["logits"])))


def distinct_archs(name: str, n: int = 4) -> np.ndarray:
  """``n`` distinct architectures of a space (trade: one per family, so every family is covered)."""
  space = make(name)
  if name == "trade":
    return np.stack([np.eye(1, space.num_decisions, 0, np.int32)[0] * f for f in range(len(space.families))])
  out = {}
  for enc in samples(name):
    out.setdefault(space.decode(enc), enc)
  return np.stack(list(out.values())[:n])


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ("trade", "mobilenet", "dass_resnet", "nb201_masked")
                                  else n for n in NAMES])
def test_forward_only_lowering_same_values_and_gradients(name):
  """Every space is supported by the ``"cpu"`` lowering of gradient-scoring programs: every
  convolution has a forward-only form (grouped, strided and patch convolutions included), with
  the same variables, logits and parameter gradients as XLA's own convolutions (in float64: in
  float32, BatchNorm over the tiny maps of ShuffleNet amplifies rounding to ~1e-3)."""
  from jdanas import lowering as lowering_lib
  space = make(name)
  x = np.random.default_rng(0).standard_normal((2, 8, 8, 3))
  for enc in distinct_archs(name, 1):  # trade: one per family
    plain = space.build(space.signature(enc), 5)
    fast = lowering_lib.build(space, space.signature(enc), 5, lowering_lib.resolve("cpu"), "score_derivatives")
    v = plain.init(jax.random.key(0), jnp.asarray(x, jnp.float32), jnp.asarray(enc), train=False)
    assert jax.tree.structure(fast.init(jax.random.key(0), jnp.asarray(x, jnp.float32), jnp.asarray(enc),
                                        train=False)) == jax.tree.structure(v)

    def grads(module):
      def loss(params, x):
        out, _ = module.apply({**v64, "params": params}, x, jnp.asarray(enc), train=True, mutable=["batch_stats"])
        return jnp.sum(jnp.sin(out["logits"]))
      return jax.jit(jax.value_and_grad(loss))(v64["params"], jnp.asarray(x, jnp.float64))

    with jax.enable_x64(True):
      v64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), v)
      for a, b in zip(jax.tree.leaves(grads(fast)), jax.tree.leaves(grads(plain))):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9, err_msg=space.decode(enc))


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ("mobilenet", "trade", "dass_resnet")
                                  else n for n in NAMES])  # mobilenet (~28 s), trade (~23 s, the GELU nets), dass in the slow step
def test_activation_proxies_finite_and_varying_on_every_space(name):
  """NASWOT (ReLU and GELU codes) and Zen (BN variances) record every space's activations: finite
  scores that differ between architectures (GELU networks, ViT and ConvMixer, recorded nothing
  when the tape patched ``nn.relu``: NASWOT was -inf for all of them)."""
  from jdanas.scoring import score_population
  space = make(name)
  encs = distinct_archs(name)
  rng = np.random.default_rng(0)
  x, y = rng.standard_normal((8, 8, 8, 3)).astype(np.float32), rng.integers(0, 5, 8).astype(np.int32)
  # the two papers initialise differently (PROXY_INFO[p].paper_init); one init scores both here
  out = score_population(jax.random.key(0), space, encs, x, y, proxies=("naswot", "zen"), num_classes=5,
                         init="flax")
  for proxy, scores in out.items():
    assert np.all(np.isfinite(scores)), (proxy, scores)
    assert len(np.unique(np.round(scores, 6))) > 1, (proxy, scores)


def test_mutate_only_touches_decisions_with_choices():
  @dataclasses.dataclass(frozen=True)
  class Toy(AbstractSearchSpace):
    choices: tuple[int, ...] = (1, 3, 1, 2)
    name = "toy"

    @property
    def num_choices(self):
      return self.choices

    def encode(self, arch):
      return np.asarray([int(c) for c in arch], np.int32)

    def decode(self, enc):
      return "".join(str(int(v)) for v in self.check(enc))

    def signature(self, enc):
      return ()

    def build(self, signature, num_classes):
      raise AssertionError("the toy space is never built in this test")

  toy = Toy()
  parents = np.random.default_rng(0).integers(0, toy.num_choices, (128, 4)).astype(np.int32)
  children = np.asarray(jax.jit(jax.vmap(toy.mutate))(keys(128, 1), parents))
  changed = children != parents
  assert np.all(changed.sum(axis=1) == 1)
  assert set(np.nonzero(changed)[1].tolist()) == {1, 3}
  assert bool(jnp.all(jax.vmap(toy.is_valid)(children)))
  # No decision with a choice: the parent comes back unchanged.
  fixed = Toy(choices=(1, 1))
  np.testing.assert_array_equal(jax.jit(fixed.mutate)(jax.random.key(0), jnp.zeros(2, jnp.int32)), [0, 0])


def test_get_space_unknown_name_and_bad_arguments():
  with pytest.raises(ValueError, match="unknown name 'nope'") as info:
    get_space("nope")
  assert "\n" not in str(info.value) and all(name in str(info.value) for name in SPACES)
  with pytest.raises(ValueError, match="bogus") as info:
    get_space("nb201", bogus=1)
  assert "\n" not in str(info.value)


def test_masked_module_equals_per_cell_module():
  masked, per_cell = make("nb201_masked"), make("nb201")
  enc, other = (jnp.asarray(e) for e in samples("nb201")[:2])
  x = jnp.asarray(np.random.default_rng(3).standard_normal((2, 8, 8, 3)), jnp.float32)
  m_module = masked.build((), 5)
  variables = concrete_variables(abstract_init(m_module, x, enc))
  m_apply = jax.jit(lambda v, inp, e: m_module.apply(v, inp, e, train=False)["logits"])
  c_module = per_cell.build(per_cell.signature(enc), 5)
  flat = traverse_util.flatten_dict(variables)
  c_names = traverse_util.flatten_dict(abstract_init(c_module, x, enc))
  assert set(c_names) < set(flat)  # same names; the superset also has the unselected ops
  subset = traverse_util.unflatten_dict({k: flat[k] for k in c_names})
  expected = jax.jit(lambda v, inp: c_module.apply(v, inp, enc, train=False)["logits"])(subset, x)
  got = m_apply(variables, x, enc)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  assert not np.allclose(m_apply(variables, x, other), got)  # the traced encoding selects the ops


def test_masked_costs_are_per_cell_costs():
  masked, per_cell = make("nb201_masked"), make("nb201")
  superset = jax.eval_shape(lambda: masked.build((), 10).init(
      jax.random.key(0), jnp.zeros((1, 8, 8, 3)), jnp.zeros(6, jnp.int32), train=False))
  superset_params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(superset["params"]))
  for arch in (ALL_NONE, ALL_CONV3, BEST_CIFAR10_CELL):
    enc = per_cell.encode(arch)
    # model_costs costs cost_module, so equal modules also mean equal FLOPs.
    assert masked.cost_module(enc, 10) == per_cell.build(per_cell.signature(enc), 10)
    a = model_costs(masked, enc, num_classes=10, input_shape=(8, 8, 3), flops=False)
    b = model_costs(per_cell, enc, num_classes=10, input_shape=(8, 8, 3), flops=False)
    assert a.params == b.params < superset_params


# ---- NAS-Bench-201 against the real table -----------------------------------------------------------


@pytest.fixture(scope="module")
def nb201_csv(data_dir):
  return require_file(data_dir / "nb201_accuracy.csv")


@pytest.fixture(scope="module")
def nb201_rows(nb201_csv):
  with open(nb201_csv, newline="") as f:
    return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def nb201_table(nb201_csv):
  return NB201Table(nb201_csv)


def test_nb201_every_table_cell_round_trips(nb201_rows):
  space = NB201Space()
  assert len(nb201_rows) == 15625
  encs = np.stack([space.encode(r["arch_str"]) for r in nb201_rows])
  assert len({tuple(e) for e in encs}) == 15625 == int(np.prod(space.num_choices))
  for row, enc in zip(nb201_rows, encs):
    assert space.decode(enc) == row["arch_str"]
  # The op-count columns agree with the encodings (op order: none, skip, 1x1, 3x3, pool).
  for column, op in (("n_none", 0), ("n_skip", 1), ("n_conv1x1", 2), ("n_conv3x3", 3), ("n_avgpool", 4)):
    np.testing.assert_array_equal((encs == op).sum(1), [int(r[column]) for r in nb201_rows])


def test_nb201_table_index_and_strings(nb201_table, nb201_rows):
  table = nb201_table
  assert len(table) == 15625
  assert table.index.tolist() == [int(r["index"]) for r in nb201_rows]
  assert table.arch_str == [r["arch_str"] for r in nb201_rows]
  np.testing.assert_array_equal(table.rows(table.encodings), np.arange(15625))
  assert table.arch_of_index(6111) == BEST_CIFAR10_CELL
  assert table.official_index(BEST_CIFAR10_CELL) == 6111
  assert table.official_index(NB201Space().encode(BEST_CIFAR10_CELL)) == 6111
  for i in np.random.default_rng(0).choice(15625, 50, replace=False):
    assert table.arch_of_index(table.index[i]) == nb201_rows[i]["arch_str"]
    assert table.official_index(nb201_rows[i]["arch_str"]) == int(nb201_rows[i]["index"])
  # The published optima (shared/data/README.md).
  for column, index, value in (("cifar10_test_acc", 6111, 94.3733), ("cifar100_test_acc", 9930, 73.5133),
                               ("imagenet16_120_test_acc", 857, 47.3111), ("cifar10_valid_acc", 6111, 91.6067)):
    best = int(np.argmax(table.columns[column]))
    assert int(table.index[best]) == index, column
    assert table.columns[column][best] == pytest.approx(value, abs=1e-4)
    assert float(table.lookup(column, table.encodings[best])) == table.columns[column][best]
  with pytest.raises(KeyError, match="unknown column"):
    table.lookup("nope", table.encodings[:1])


def test_nb201_params_match_table_exactly(nb201_table):
  table, space = nb201_table, NB201Space()
  rows = np.random.default_rng(0).choice(15625, 10, replace=False).tolist()
  rows += table.rows(np.stack([space.encode(ALL_NONE), space.encode(ALL_CONV3)])).tolist()
  for r in rows:
    params = model_costs(space, table.encodings[r], num_classes=10, flops=False).params
    assert params == round(table.columns["params_cifar10_M"][r] * 1e6), table.arch_str[r]
  assert model_costs(space, space.encode(ALL_NONE), num_classes=10, flops=False).params == 73_306
  assert model_costs(space, space.encode(ALL_CONV3), num_classes=10, flops=False).params == 1_531_546
  best = space.encode(BEST_CIFAR10_CELL)
  assert (model_costs(get_space("nb201_masked"), best, num_classes=10, flops=False).params
          == round(float(table.lookup("params_cifar10_M", best)) * 1e6) == 1_073_466)
  params = model_costs(space, space.encode(ALL_CONV3), num_classes=100, flops=False).params
  assert params == round(float(table.lookup("params_cifar100_M", space.encode(ALL_CONV3))) * 1e6)


def test_nb201_flops_close_to_table_macs(nb201_table):
  # XLA counts 2 FLOPs per multiply-add (plus 1 per element-wise op) and skips the zero-padding
  # taps of 3x3 convs (about 10% of them at 32/16/8 pixels): flops/2 is ~0.90-0.91 x the MACs.
  table, space = nb201_table, NB201Space()
  for index in (0, 6111):
    enc = space.encode(table.arch_of_index(index))
    flops = model_costs(space, enc, num_classes=10).flops
    ratio = flops / 2 / (float(table.lookup("flops_cifar10_M", enc)) * 1e6)
    assert 0.85 < ratio <= 1.0, (index, ratio)


# ---- DisWOT S1 ResNet space against its ground-truth file ------------------------------------------


@pytest.fixture(scope="module")
def s1_rows(data_dir):
  with open(require_file(data_dir / "diswot_s1_cifar100_vanilla_vs_kd.csv"), newline="") as f:
    return list(csv.DictReader(f))


def test_s1_names_round_trip_and_cover_the_space(s1_rows):
  space = ResNetDepthSpace()
  names = [r["struct"] for r in s1_rows]
  for row in s1_rows:
    enc = space.encode(row["struct"])
    assert space.decode(enc) == row["struct"]
    assert space.depths(enc) == tuple(int(row[f"depth_stage{s}"]) for s in (1, 2, 3))
  everything = {space.decode(np.asarray(e, np.int32)) for e in itertools.product(range(4), repeat=3)}
  assert len(set(names)) == len(names) == 64 and set(names) == everything


def test_s1_resnet20_is_the_zoo_resnet20():
  space = ResNetDepthSpace()
  enc = space.encode("333")
  assert space.build(space.signature(enc), 100) == get_model("resnet20", 100)
  assert model_costs(space, enc, num_classes=100, flops=False).params == 278_324
  zoo = jax.eval_shape(lambda: get_model("resnet20", 100).init(
      jax.random.key(0), jnp.zeros((1, 32, 32, 3)), None, train=False))
  assert sum(int(np.prod(a.shape)) for a in jax.tree.leaves(zoo["params"])) == 278_324


def _constant_heavy_ops(jaxpr, const_in=None) -> list[str]:
  """Pools and convolutions whose operands are all compile-time constants (XLA:CPU constant-folds
  them while compiling, for seconds each at batch size); follows nested jaxprs."""
  from jax.extend import core as jcore
  const = set() if const_in is None else set(const_in)
  found = []

  def is_const(v):
    return isinstance(v, jcore.Literal) or v in const

  for eqn in jaxpr.eqns:
    ins = [is_const(v) for v in eqn.invars]
    for p in eqn.params.values():
      sub = getattr(p, "jaxpr", p)
      if isinstance(sub, jcore.Jaxpr) and len(sub.invars) == len(eqn.invars):
        found += _constant_heavy_ops(sub, [sv for sv, c in zip(sub.invars, ins) if c])
    if eqn.primitive.name in ("reduce_window_sum", "conv_general_dilated") and all(ins):
      found.append(eqn.primitive.name)
    if all(ins) and not eqn.effects:
      const.update(eqn.outvars)
  return found


def test_nb201_none_only_node_is_not_a_constant():
  """A node whose inputs are all 'none' must not be a constant: the pool after it would be
  constant-folded by XLA:CPU (12-13 s per pool at C=16, batch 64: bench/probes/none_node_compile.py)."""
  space = get_space("nb201", channels=2, num_cells=1)
  enc = space.encode("|none~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|nor_conv_1x1~1|avg_pool_3x3~2|")
  module = space.build(space.signature(enc), 3)
  x = jnp.ones((2, 8, 8, 3))
  v = module.init(jax.random.key(0), x, enc)
  jaxpr = jax.make_jaxpr(lambda v, x: module.apply(v, x, enc)["logits"])(v, x).jaxpr
  assert _constant_heavy_ops(jaxpr) == []
  constant = dataclasses.replace(space, zero_node="constant").build(space.signature(enc), 3)  # the bench's "before"
  assert _constant_heavy_ops(jax.make_jaxpr(lambda v, x: constant.apply(v, x, enc)["logits"])(v, x).jaxpr) != []
  from jdanas.models.layers import avg_pool_3x3_exclude_pad
  zeros = jax.make_jaxpr(lambda: avg_pool_3x3_exclude_pad(jnp.zeros((2, 8, 8, 3))))().jaxpr
  assert _constant_heavy_ops(zeros) == ["reduce_window_sum"]  # the helper does see constants
