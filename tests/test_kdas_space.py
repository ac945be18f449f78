"""KDAS space (Kang, Mun & Han, AAAI 2020): encoding size, exact vs masked supernet forward with
shared weights, the specialised form, params from the exact build, argument errors."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from conftest import concrete_variables
from jdanas.costs import model_costs, num_params
from jdanas.models.resnet import CifarResNet
from jdanas.spaces import get_space
from jdanas.spaces.kdas import OPS, KDASSpace

SMALL = dict(positions=(1, 3), depths=(2, 2, 2), widths=(4, 8, 8), stem=4)
ARCHS = ("conv3x3:01|sepconv5x5:11", "identity:00|maxpool3x3:10", "avgpool3x3:11|conv5x5:00",
         "sepconv3x3:10|identity:01")


def _init_shapes(module, x, enc):
  return jax.eval_shape(lambda: module.init(jax.random.key(0), x, enc, train=False))


def test_encoding_size_and_default_backbone():
  space = KDASSpace()
  assert (space.backbone, space.depths, space.widths, space.stem) == ("resnet32", (5, 5, 5), (16, 32, 64), 16)
  assert space.num_choices == (7, 2, 2) * 3 and space.num_decisions == 9
  assert math.prod(space.num_choices) == 2 ** (2 * 3) * 7 ** 3
  s = get_space("kdas", backbone="resnet56", positions=[2, 2, 3, 3])
  assert s.depths == (9, 9, 9) and math.prod(s.num_choices) == 2 ** 8 * 7 ** 4
  assert OPS == ("identity", "conv3x3", "conv5x5", "sepconv3x3", "sepconv5x5", "maxpool3x3", "avgpool3x3")
  enc = s.encode("sepconv5x5:10|identity:01|maxpool3x3:11|conv3x3:00")
  np.testing.assert_array_equal(enc, [4, 1, 0, 0, 0, 1, 5, 1, 1, 1, 0, 0])


def test_argument_errors():
  with pytest.raises(ValueError, match="^kdas.backbone: 'vgg8' is not a CIFAR ResNet"):
    KDASSpace(backbone="vgg8")
  with pytest.raises(ValueError, match="^kdas.positions: need >= 1 non-decreasing"):
    KDASSpace(positions=(3, 1))
  with pytest.raises(ValueError, match="^kdas.positions: need"):
    KDASSpace(positions=(4,))
  with pytest.raises(ValueError, match=r"^kdas.positions: stage\(s\) \[2\] have < 2 blocks"):
    KDASSpace(backbone="resnet8", positions=(2,), depths=(2, 1, 2))
  with pytest.raises(ValueError, match="bad add-on"):
    KDASSpace(**SMALL, masked=True).encode("conv7x7:01|identity:00")
  with pytest.raises(ValueError, match="need 2 add-ons"):
    KDASSpace(**SMALL).encode("conv3x3:01")


def test_exact_and_specialised_equal_the_masked_supernet_with_shared_weights():
  masked, exact = KDASSpace(**SMALL, masked=True), KDASSpace(**SMALL)
  x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 8, 8, 3)), jnp.float32)
  zero = jnp.zeros(masked.num_decisions, jnp.int32)
  m_module = masked.build((), 5)
  variables = concrete_variables(_init_shapes(m_module, x, zero))
  flat = traverse_util.flatten_dict(variables)
  m_apply = jax.jit(lambda v, inp, e: m_module.apply(v, inp, e, train=False)["logits"])
  outs = []
  for arch in ARCHS:
    enc = exact.encode(arch)
    got = m_apply(variables, x, jnp.asarray(enc))
    c_module = exact.build(exact.signature(enc), 5)
    names = traverse_util.flatten_dict(_init_shapes(c_module, x, jnp.asarray(enc)))
    assert set(names) <= set(flat)  # the exact student's variables are the supernet's, by name
    subset = traverse_util.unflatten_dict({k: flat[k] for k in names})
    np.testing.assert_allclose(c_module.apply(subset, x, None, train=False)["logits"], got, rtol=1e-5, atol=1e-6)
    s_module = masked.specialize(enc, 5)
    assert jax.tree.structure(_init_shapes(s_module, x, zero)) == jax.tree.structure(variables)
    np.testing.assert_allclose(s_module.apply(variables, x, None, train=False)["logits"], got, rtol=1e-5, atol=1e-6)
    outs.append(np.asarray(got))
  assert len({o.round(5).tobytes() for o in outs}) == len(ARCHS)  # the traced encoding selects the ops


def test_params_from_the_exact_build():
  masked, exact = KDASSpace(**SMALL, masked=True), KDASSpace(**SMALL)
  backbone = CifarResNet(depths=(2, 2, 2), widths=(4, 8, 8), stem=4, num_classes=10)
  base = num_params(_init_shapes(backbone, jnp.zeros((1, 8, 8, 3)), None))

  def params(arch):
    return model_costs(masked, masked.encode(arch), num_classes=10, input_shape=(8, 8, 3), flops=False).params

  assert params("identity:00|maxpool3x3:11") == params("avgpool3x3:10|identity:01") == base
  conv3_c4 = 9 * 4 * 4 + 2 * 4          # conv3x3 at stage 1 (4 channels) + BN scale/bias
  sep5_c8 = 25 * 8 + 8 * 8 + 2 * 8      # depthwise 5x5 + pointwise 1x1 + BN at stage 3 (8 channels)
  assert params("conv3x3:01|sepconv5x5:11") == base + conv3_c4 + sep5_c8
  enc = masked.encode("conv3x3:01|sepconv5x5:11")
  assert masked.cost_module(enc, 10) == exact.build(exact.signature(enc), 10)
  superset = num_params(_init_shapes(masked.build((), 10), jnp.zeros((1, 8, 8, 3)), jnp.asarray(enc))["params"])
  assert params("conv3x3:01|sepconv5x5:11") < superset


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("op", ["maxpool3x3", "avgpool3x3"])
def test_a_pool_add_on_before_the_classifier_is_normalised(op, masked):
  """Regression: an unnormalised pool add-on on the last stage's post-ReLU features (mean > 0,
  about 3.7x the backbone's with its residual) made ``maxpool3x3:11|maxpool3x3:01`` stay at chance
  in ``:runlocal``. Each pool is now followed by BatchNorm without parameters (DARTS's pool op), so in
  training mode the add-on's output has zero mean and unit variance per channel, and the pool still
  adds no parameters."""
  space = KDASSpace(**SMALL, masked=masked)
  enc = space.encode(f"identity:00|{op}:00")
  module = space.build(space.signature(enc), 10)
  x = jax.random.normal(jax.random.key(1), (16, 8, 8, 3))
  variables = module.init(jax.random.key(0), x, jnp.asarray(enc), train=False)
  out, _ = module.apply(variables, x, jnp.asarray(enc), train=True, mutable=["batch_stats"])
  last = out["pre_pool"]  # the stage-3 add-on's output (no residual): BN(pool(h))
  np.testing.assert_allclose(np.mean(last, axis=(0, 1, 2)), 0.0, atol=1e-4)
  np.testing.assert_allclose(np.var(last, axis=(0, 1, 2)), 1.0, rtol=1e-2)
  assert not any(op in "/".join(k) for k in traverse_util.flatten_dict(variables["params"]))
