"""The CIFAR model zoo: every entry follows the module contract; parameter counts match PyTorch."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import concrete_variables
from jdanas.costs import num_params
from jdanas.models import MODELS, get_model

CONTRACT_KEYS = {"stages", "pre_pool", "pooled", "logits"}

# PyTorch ``sum(p.numel() for p in model.parameters())`` of the RepDistiller models with 100
# classes, in millions; all agree with a count by hand from the architectures.
CIFAR100_PARAMS_M = {
    "resnet20": 0.278,
    "resnet56": 0.861,
    "resnet110": 1.736,
    "resnet32x4": 7.43,
    "wrn_40_2": 2.255,
    "wrn_16_2": 0.703,
    "vgg13": 9.462,
    "vgg8": 3.965,
    "mobilenetv2_half": 0.812,
}


def abstract_variables(module, x):
  """Variable shapes from ``init`` traced abstractly (no compilation, no random numbers)."""
  return jax.eval_shape(lambda key, inp: module.init(key, inp, None, train=False), jax.random.key(0), x)


def run(module, variables, x, jit: bool):
  """``((train features, batch_stats updates), eval features)``; jitted as ONE program."""
  def both(v, inp):
    return (module.apply(v, inp, None, train=True, mutable=["batch_stats"]),
            module.apply(v, inp, None, train=False))
  return (jax.jit(both) if jit else both)(variables, x)


def check_features(feats, batch: int, num_classes: int):
  assert set(feats) == CONTRACT_KEYS
  assert isinstance(feats["stages"], tuple) and len(feats["stages"]) >= 3
  assert feats["stages"][-1].shape[0] == batch
  channels = feats["pre_pool"].shape[-1]
  assert feats["pre_pool"].ndim == 4
  assert feats["pooled"].shape == (batch, channels)
  assert feats["logits"].shape == (batch, num_classes)
  assert bool(jnp.all(jnp.isfinite(feats["logits"])))


@pytest.mark.parametrize("name", list(MODELS))
def test_model_runs_and_follows_contract(name):
  module = get_model(name, 5)
  x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 16, 16, 3)), jnp.float32)
  shapes = abstract_variables(module, x)
  assert set(shapes) == {"params", "batch_stats"}
  variables = concrete_variables(shapes)
  # Op-by-op execution compiles one small program per distinct operand shape; jit compiles one
  # program per layer. Deep but repetitive nets (ResNets, WRNs, VGGs) are faster op by op,
  # MobileNets (many distinct widths) faster jitted.
  jit = len({leaf.shape for leaf in jax.tree.leaves(shapes)}) > 30
  (train_feats, updates), eval_feats = run(module, variables, x, jit)
  check_features(train_feats, 2, 5)
  check_features(eval_feats, 2, 5)
  assert set(updates) == {"batch_stats"}
  assert jax.tree.structure(updates["batch_stats"]) == jax.tree.structure(shapes["batch_stats"])
  # Train mode normalises with batch statistics: the updated running means moved off zero.
  moved = [float(jnp.abs(m).max()) for m in jax.tree.leaves(updates["batch_stats"])]
  assert max(moved) > 0


@pytest.mark.parametrize("name", sorted(CIFAR100_PARAMS_M))
def test_cifar100_param_counts(name):
  count = num_params(abstract_variables(get_model(name, 100), jnp.zeros((1, 32, 32, 3))))
  assert count == pytest.approx(CIFAR100_PARAMS_M[name] * 1e6, rel=0.02)


def test_exact_param_counts_by_hand():
  # mobile_half (T=6, width 0.5): stem 464, blocks 475,912, head conv 207,360, linear 128,100.
  # vgg8: five conv3x3(+bias)+BN layers 3,913,728 and linear 51,300.
  shapes = lambda name: abstract_variables(get_model(name, 100), jnp.zeros((1, 32, 32, 3)))
  assert num_params(shapes("mobilenetv2_half")) == 812_836
  assert num_params(shapes("vgg8")) == 3_965_028


@pytest.mark.parametrize("name, stage_shapes, pre_pool_shape", [
    ("resnet20", [(32, 32, 16), (16, 16, 32), (8, 8, 64)], (8, 8, 64)),
    ("resnet8x4", [(32, 32, 64), (16, 16, 128), (8, 8, 256)], (8, 8, 256)),
    ("wrn_40_2", [(32, 32, 32), (16, 16, 64), (8, 8, 128)], (8, 8, 128)),
    # RepDistiller pools after groups 0-2 only (and after 3 only for 64-pixel inputs).
    ("vgg13", [(32, 32, 64), (16, 16, 128), (8, 8, 256), (4, 4, 512), (4, 4, 512)], (4, 4, 512)),
    # Stem stride 2 as in RepDistiller; taps after blocks 1, 2, 4, 6.
    ("mobilenetv2_half", [(16, 16, 12), (8, 8, 16), (4, 4, 48), (2, 2, 160)], (2, 2, 1280)),
])
def test_cifar_feature_shapes(name, stage_shapes, pre_pool_shape):
  module = get_model(name, 100)
  x = jnp.zeros((2, 32, 32, 3))
  feats = jax.eval_shape(lambda v, inp: module.apply(v, inp, None, train=False),
                         abstract_variables(module, x), x)
  assert [s.shape[1:] for s in feats["stages"]] == stage_shapes
  assert feats["pre_pool"].shape[1:] == pre_pool_shape
  assert feats["logits"].shape == (2, 100)


@pytest.mark.parametrize("size", [8, 64])
def test_vgg_pooling_small_and_large_inputs(size):
  module = get_model("vgg8", 10)
  x = jnp.zeros((1, size, size, 3))
  feats = jax.eval_shape(lambda v, inp: module.apply(v, inp, None, train=False),
                         abstract_variables(module, x), x)
  # 8x8: pools after groups 0-2 reach 1x1 and stop there; 64x64: four pools down to 4x4.
  expected = [8, 4, 2, 1, 1] if size == 8 else [64, 32, 16, 8, 4]
  assert [s.shape[1] for s in feats["stages"]] == expected


def test_get_model_unknown_name():
  with pytest.raises(ValueError, match="unknown name 'resnet19'") as info:
    get_model("resnet19", 10)
  assert "\n" not in str(info.value) and "wrn_40_2" in str(info.value)


# ---- forward_only_conv: derivatives written as forward convolutions ---------------------------

def lax_conv(x, w, groups=1):
  return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                      feature_group_count=groups)


def second_order(conv, x, w):
  """Values, gradients and Hessian-vector products of ``sum(sin(conv(x, w)))``."""
  f = lambda x, w: jnp.sum(jnp.sin(conv(x, w)))  # noqa: E731
  g = jax.grad(f, (0, 1))
  hvp = jax.grad(lambda x, w: sum(jnp.vdot(a, b) for a, b in zip(g(x, w), (x, w))), (0, 1))
  return (conv(x, w),) + g(x, w) + hvp(x, w)


@pytest.mark.parametrize("k,groups,cin,cout", [(1, 1, 3, 4), (3, 1, 3, 4), (3, 3, 3, 6), (3, 2, 4, 6),
                                                (5, 4, 4, 4)])
def test_forward_only_conv_equals_lax_conv_to_second_order(k, groups, cin, cout):
  from jdanas.models.layers import forward_only_conv
  x = jax.random.normal(jax.random.key(0), (2, 5, 5, cin))
  w = jax.random.normal(jax.random.key(1), (k, k, cin // groups, cout))
  got = second_order(lambda x, w: forward_only_conv(x, w, groups), x, w)
  for a, b in zip(got, second_order(lambda x, w: lax_conv(x, w, groups), x, w)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_forward_only_conv_inside_switch_and_rejects_other_convs():
  from jdanas.models.layers import forward_only_conv, forward_only_conv_general_dilated
  x = jax.random.normal(jax.random.key(0), (2, 6, 6, 3))
  w = jax.random.normal(jax.random.key(1), (3, 3, 3, 3))

  def f(w, i, conv):
    return jnp.sum(jax.lax.switch(i, [lambda: conv(x, w), lambda: x]) ** 2)

  for i in (0, 1):
    np.testing.assert_allclose(jax.grad(f)(w, i, forward_only_conv), jax.grad(f)(w, i, lax_conv), rtol=1e-5,
                               atol=1e-5)
  with pytest.raises(ValueError, match="equal-stride"):
    forward_only_conv_general_dilated(x, w, (2, 1), ((1, 1), (1, 1)))
  with pytest.raises(ValueError, match="equal-stride"):
    forward_only_conv_general_dilated(x, w, (1, 1), ((0, 0), (0, 0)))
  with pytest.raises(ValueError, match="equal-stride"):
    forward_only_conv_general_dilated(x, w[:2, :2], (1, 1), ((1, 1), (1, 1)))


@pytest.mark.parametrize("k,size,groups", [(3, 6, 1), (3, 7, 1), (1, 6, 1), (3, 7, 3)])
def test_strided_forward_only_conv_equals_lax_conv_to_second_order(k, size, groups):
  # stride 2 = the stride-1 convolution subsampled; values, gradients and Hessian-vector products
  from jdanas.models.layers import forward_only_conv_general_dilated
  x = jax.random.normal(jax.random.key(0), (2, size, size, 3))
  w = jax.random.normal(jax.random.key(1), (k, k, 3 // groups, 6))
  pad = ((k - 1) // 2,) * 2
  xla = lambda x, w: jax.lax.conv_general_dilated(  # noqa: E731
      x, w, (2, 2), (pad, pad), dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)
  got = second_order(lambda x, w: forward_only_conv_general_dilated(x, w, (2, 2), (pad, pad),
                                                                    feature_group_count=groups), x, w)
  want = second_order(xla, x, w)
  assert got[0].shape == want[0].shape == (2, (size + 1) // 2, (size + 1) // 2, 6)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("p,size", [(2, 8), (4, 10)])
def test_patch_conv_equals_valid_strided_conv_to_second_order(p, size):
  from jdanas.models.layers import patch_conv
  x = jax.random.normal(jax.random.key(0), (2, size, size, 3))
  w = jax.random.normal(jax.random.key(1), (p, p, 3, 5))
  xla = lambda x, w: jax.lax.conv_general_dilated(x, w, (p, p), "VALID",  # noqa: E731
                                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))
  for a, b in zip(second_order(patch_conv, x, w), second_order(xla, x, w)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
