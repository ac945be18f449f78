"""The MnasNet-style MobileNet space: strings, jittable sampling/mutation, signatures, modules."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jdanas.models.mobilenetv2 import MobileLayer, mobilenetv2_blocks
from jdanas.spaces import get_space
from jdanas.spaces.mobilenet import MobileNetSpace, make_divisible

SPACE = MobileNetSpace()
BASELINE = "|".join(["mbconv_e6_k3_se0_w1.0_l+0"] * 7)
MIXED = ("conv_e3_k3_se1_w1.0_l+0|sepconv_e6_k5_se0_w1.25_l+1|mbconv_e3_k5_se1_w0.75_l-1"
         "|mbconv_e6_k3_se0_w1.0_l-1|conv_e6_k5_se0_w1.0_l-1|sepconv_e3_k3_se1_w1.0_l-1"
         "|mbconv_e6_k3_se1_w0.75_l+0")


def sampled(n: int, seed: int = 0) -> np.ndarray:
  return np.asarray(jax.vmap(SPACE.sample)(jax.random.split(jax.random.key(seed), n)))


def test_registry_and_shape():
  space = get_space("mobilenet")
  assert space == SPACE and space.name == "mobilenet"
  assert space.num_choices == (3, 2, 2, 2, 3, 3) * 7 and space.num_decisions == 42


def test_round_trip_on_sampled_encodings():
  encs = sampled(64)
  assert len({tuple(e) for e in encs}) == 64
  for enc in encs:
    arch = SPACE.decode(enc)
    assert len(arch.split("|")) == 7
    np.testing.assert_array_equal(SPACE.encode(arch), enc)
    assert SPACE.decode(SPACE.encode(arch)) == arch


def test_encode_known_string():
  enc = SPACE.encode(MIXED)
  np.testing.assert_array_equal(enc[:6], [2, 0, 0, 1, 1, 1])   # conv, k3, e3, se on, w1.0, +0
  np.testing.assert_array_equal(enc[6:12], [1, 1, 1, 0, 2, 2])  # sepconv, k5, e6, se off, w1.25, +1
  np.testing.assert_array_equal(SPACE.encode(BASELINE), [0, 0, 1, 0, 1, 1] * 7)
  assert SPACE.encode("  " + BASELINE + "\n").tolist() == SPACE.encode(BASELINE).tolist()


@pytest.mark.parametrize("arch", [
    "",
    "|".join(["mbconv_e6_k3_se0_w1.0_l+0"] * 6),
    BASELINE + "|mbconv_e6_k3_se0_w1.0_l+0",
    BASELINE.replace("k3", "k7", 1),
    BASELINE.replace("e6", "e4", 1),
    BASELINE.replace("w1.0", "w1", 1),
    BASELINE.replace("l+0", "l0", 1),
    BASELINE.replace("l+0", "l+2", 1),
    BASELINE.replace("mbconv", "dwconv", 1),
    BASELINE.replace("_k3", "_K3", 1),
    BASELINE.replace("|", " | ", 1),
    BASELINE.replace("|", "-"),
])
def test_encode_rejects_malformed_strings(arch):
  with pytest.raises(ValueError, match="^mobilenet: ") as info:
    SPACE.encode(arch)
  assert "\n" not in str(info.value)


def test_decode_rejects_bad_encodings():
  with pytest.raises(ValueError, match="decision 4 = 3"):
    SPACE.decode(np.asarray([0, 0, 0, 0, 3, 0] + [0] * 36))
  with pytest.raises(ValueError, match="shape"):
    SPACE.decode(np.zeros(41, np.int32))


def test_sample_mutate_and_validity_are_jittable():
  keys = jax.random.split(jax.random.key(1), 256)
  encs = jax.jit(jax.vmap(SPACE.sample))(keys)
  assert encs.dtype == jnp.int32 and bool(jnp.all(jax.vmap(SPACE.is_valid)(encs)))
  mutated = jax.jit(jax.vmap(SPACE.mutate))(jax.random.split(jax.random.key(2), 256), encs)
  assert mutated.dtype == jnp.int32 and bool(jnp.all(jax.vmap(SPACE.is_valid)(mutated)))
  changed = np.asarray(mutated != encs).sum(axis=1)
  assert np.all(changed == 1)
  positions = np.nonzero(np.asarray(mutated != encs))[1]
  assert len(set(positions.tolist())) > 30  # every decision can mutate


def test_signature_canonicalises_inactive_and_colliding_decisions():
  def sig(arch):
    return SPACE.signature(SPACE.encode(arch))

  def with_block(b, token):
    tokens = BASELINE.split("|")
    tokens[b] = token
    return "|".join(tokens)

  # Expansion is inactive unless the layer type is mbconv.
  for op in ("sepconv", "conv"):
    assert sig(with_block(3, f"{op}_e3_k5_se1_w1.0_l+0")) == sig(with_block(3, f"{op}_e6_k5_se1_w1.0_l+0"))
    assert sig(with_block(3, f"{op}_e3_k5_se1_w1.0_l+0"))[3].expansion == 1
  assert sig(with_block(3, "mbconv_e3_k5_se1_w1.0_l+0")) != sig(with_block(3, "mbconv_e6_k5_se1_w1.0_l+0"))
  # Block 0 has one base layer: deltas -1 and 0 both give one layer.
  assert sig(with_block(0, "mbconv_e6_k3_se0_w1.0_l-1")) == sig(BASELINE)
  assert sig(with_block(0, "mbconv_e6_k3_se0_w1.0_l+1"))[0].repeats == 2
  # At base width 0.5, block 1 (12 channels) rounds to 16 for every multiplier.
  assert sig(with_block(1, "mbconv_e6_k3_se0_w0.75_l+0")) == sig(BASELINE)
  assert sig(with_block(1, "mbconv_e6_k3_se0_w1.25_l+0")) == sig(BASELINE)
  # Every other decision changes the network.
  for token in ("sepconv_e6_k3_se0_w1.0_l+0", "mbconv_e6_k5_se0_w1.0_l+0", "mbconv_e6_k3_se1_w1.0_l+0",
                "mbconv_e6_k3_se0_w1.25_l+0", "mbconv_e6_k3_se0_w1.0_l-1"):
    assert sig(with_block(3, token)) != sig(BASELINE)
  hash(sig(MIXED))


def test_signature_widths_repeats_and_baseline_equivalence():
  specs = SPACE.signature(SPACE.encode(MIXED))
  assert [b.features for b in specs] == [8, 16, 16, 32, 48, 80, 120]
  assert [b.repeats for b in specs] == [1, 3, 2, 3, 2, 2, 1]
  assert [b.stride for b in specs] == [1, 1, 2, 2, 1, 2, 1]
  assert (make_divisible(6), make_divisible(9), make_divisible(20), make_divisible(100)) == (8, 16, 24, 104)
  # With base width 1.0 the baseline is MobileNetV2 (T=6) except block 0's expansion (1 there).
  full = MobileNetSpace(base_width=1.0)
  assert full.signature(full.encode(BASELINE))[1:] == mobilenetv2_blocks(6, 1.0)[1:]


@pytest.mark.parametrize("op, expected", [
    ("mbconv", {"expand_conv": (1, 1, 16, 48), "dw_conv": (5, 5, 1, 48), "project_conv": (1, 1, 48, 16)}),
    ("sepconv", {"dw_conv": (5, 5, 1, 16), "project_conv": (1, 1, 16, 16)}),
    ("conv", {"conv": (5, 5, 16, 16)}),
])
def test_layer_types_parameter_shapes(op, expected):
  layer = MobileLayer(op, features=16, kernel=5, expansion=3, se=True)
  x = jnp.zeros((1, 8, 8, 16))
  params = jax.eval_shape(lambda key, inp: layer.init(key, inp, False), jax.random.key(0), x)["params"]
  for name, shape in expected.items():
    assert params[name]["kernel"].shape == shape
  gated = expected["project_conv"][2] if op != "conv" else 16
  assert params["se"]["reduce"]["kernel"].shape == (gated, 4)  # int(16 input channels * 0.25)
  assert params["se"]["expand"]["kernel"].shape == (4, gated)
  assert set(params) == set(expected) | {"se"} | {n.replace("conv", "bn") for n in expected}


def test_built_module_runs_on_cifar_input():
  module = SPACE.build(SPACE.signature(SPACE.encode(MIXED)), 10)
  x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 32, 32, 3)), jnp.float32)
  shapes = jax.eval_shape(lambda key, inp: module.init(key, inp, None, train=False), jax.random.key(0), x)
  # Cheap host-side values instead of compiling ``init`` (seconds of RNG code on CPU).
  rng = np.random.default_rng(1)
  variables = jax.tree_util.tree_map_with_path(
      lambda path, leaf: (jnp.ones(leaf.shape) if path[-1].key in ("scale", "var") else
                          jnp.zeros(leaf.shape) if path[-1].key == "mean" else
                          jnp.asarray(0.1 * rng.standard_normal(leaf.shape), jnp.float32)), shapes)

  @jax.jit
  def both(v, inp):
    return (module.apply(v, inp, None, train=True, mutable=["batch_stats"]),
            module.apply(v, inp, None, train=False))

  (train_feats, updates), feats = both(variables, x)
  for f in (train_feats, feats):
    assert set(f) == {"stages", "pre_pool", "pooled", "logits"}
    assert [s.shape for s in f["stages"]] == [(1, 16, 16, 16), (1, 8, 8, 16), (1, 4, 4, 48), (1, 2, 2, 120)]
    assert f["pre_pool"].shape == (1, 2, 2, 1280) and f["pooled"].shape == (1, 1280)
    assert f["logits"].shape == (1, 10) and bool(jnp.all(jnp.isfinite(f["logits"])))
  assert set(updates) == {"batch_stats"}
