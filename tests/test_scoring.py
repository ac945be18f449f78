"""Training-free scoring: hand-computed proxy values, DisWOT distances, sign conventions,
determinism, masked NB201 == per-cell, the channel-mismatch policy and the evaluator.

Tiny networks only (NB201 C=4, one cell per stage, 8x8 inputs, batch 8); compiled programs are
cached by the library, so tests that score the same module share them.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jdanas import lowering as lowering_lib
from jdanas.models import layers
from jdanas.distill import classifier_gradient, semantic_distance, sp_loss
from jdanas.evaluators.zero_cost import ZeroCostEvaluator
from jdanas.scoring import INITS, PROXIES, PROXY_INFO, score_population, torch_variables
from jdanas.scoring import proxies as proxy_lib
from jdanas.scoring.init import count_params, gaussian_variables, init_variables, path_weight
from jdanas.spaces import get_space

NUM_CLASSES = 5
CELLS = ("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|",
         "|nor_conv_1x1~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|")


@pytest.fixture(scope="module")
def batch():
  rng = np.random.default_rng(0)
  return rng.standard_normal((8, 8, 8, 3)).astype(np.float32), rng.integers(0, NUM_CLASSES, 8).astype(np.int32)


@pytest.fixture(scope="module")
def masked():
  return get_space("nb201_masked", channels=4, num_cells=1)


@pytest.fixture(scope="module")
def per_cell():
  return get_space("nb201", channels=4, num_cells=1)


@pytest.fixture(scope="module")
def teacher16():
  """Random teacher whose classifier input (16) equals the tiny NB201 students' (4 * 4)."""
  return _teacher(16)


def _teacher(width):
  from jdanas.models.resnet import CifarResNet
  from jdanas.scoring.init import abstract_variables
  from jdanas.teachers import Teacher
  module = CifarResNet(depths=(1, 1, 1), widths=(width // 4, width // 2, width), stem=4, num_classes=NUM_CLASSES)
  return Teacher(name=f"tiny{width}", module=module, variables=abstract_variables(module, (8, 8, 3), None),
                 num_classes=NUM_CLASSES, input_shape=(8, 8, 3))


# ---- tiny hand-made networks -------------------------------------------------------------------

class TwoLayer(nn.Module):
  """x -> Dense(h, no bias) -> ReLU -> Dense(K, no bias); Features taps like every jdanas model."""
  hidden: int = 3
  num_classes: int = 2

  @nn.compact
  def __call__(self, x, enc=None, *, train=False):
    del enc, train
    h = layers.relu(nn.Dense(self.hidden, use_bias=False, name="hidden")(x.reshape(x.shape[0], -1)))
    pre = h[:, None, None, :]
    return layers.features_dict([pre], pre, lambda p: nn.Dense(self.num_classes, use_bias=False,
                                                               name="classifier")(p))


class ReluOnly(nn.Module):
  """One ReLU on the raw input (so the activation pattern is the sign pattern of the input)."""

  @nn.compact
  def __call__(self, x, enc=None, *, train=False):
    del enc, train
    h = layers.relu(x.reshape(x.shape[0], -1))
    pre = h[:, None, None, :]
    return layers.features_dict([pre], pre, lambda p: nn.Dense(2, name="classifier")(p))


def _group(name, module, variables, x, y=None):
  ctx = proxy_lib.Context(module=module, space=None, names=(name,))
  group = PROXY_INFO[name].group
  fn = proxy_lib.GROUP_FNS[group]
  y = jnp.zeros(x.shape[0], jnp.int32) if y is None else y
  if group == "synflow":
    with jax.enable_x64(True):
      out = fn(ctx, variables, None, jnp.asarray(x), y, None, None)
  else:
    out = fn(ctx, variables, None, jnp.asarray(x), y, None, None)
  return float(proxy_lib.finalize(name, np.asarray(out[name])[None])[0])


def test_synflow_two_layer_linear_net_matches_closed_form():
  rng = np.random.default_rng(1)
  w1, w2 = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))
  variables = {"params": {"hidden": {"kernel": jnp.asarray(w1, jnp.float32)},
                          "classifier": {"kernel": jnp.asarray(w2, jnp.float32)}}}
  # All-ones input, |W|: everything positive, ReLU is the identity, R = 1^T |W1| |W2| 1 and each
  # layer's sum of theta * dR/dtheta equals R (Euler), so SynFlow = 2 R.
  r = np.ones(4) @ np.abs(w1) @ np.abs(w2) @ np.ones(2)
  got = _group("synflow", TwoLayer(), variables, np.zeros((2, 1, 1, 4), np.float32))
  np.testing.assert_allclose(got, 2 * r, rtol=1e-6)


def test_fisher_two_layer_net_matches_closed_form():
  """Fisher = sum over layers of fan_in * sum_k 0.5 mean_n (a_nk dL/da_nk)^2 (conv/linear outputs a)."""
  rng = np.random.default_rng(2)
  w1, w2 = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))
  x, y = rng.standard_normal((5, 1, 1, 4)), np.array([0, 1, 1, 0, 1])
  variables = {"params": {"hidden": {"kernel": jnp.asarray(w1, jnp.float32)},
                          "classifier": {"kernel": jnp.asarray(w2, jnp.float32)}}}
  a1 = x.reshape(5, 4) @ w1
  a2 = np.maximum(a1, 0) @ w2
  p = np.exp(a2 - a2.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  g2 = (p - np.eye(2)[y]) / 5  # dL/da2 of the batch-mean cross-entropy
  g1 = (g2 @ w2.T) * (a1 > 0)
  want = sum(fan_in * np.sum(0.5 * np.mean((a * g) ** 2, axis=0)) for a, g, fan_in in ((a1, g1, 4), (a2, g2, 3)))
  got = _group("fisher", TwoLayer(), variables, x.astype(np.float32), jnp.asarray(y, jnp.int32))
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_gradnorm_and_snip_two_layer_net_match_the_reference_definition():
  """Abdelfattah et al.'s grad_norm / snip: per conv / linear layer the Frobenius norm of dL/dW
  (resp. sum |W * dL/dW|), summed over layers; biases never enter (the classifier's here)."""
  rng = np.random.default_rng(3)
  w1, w2, b2 = rng.standard_normal((4, 3)), rng.standard_normal((3, 2)), rng.standard_normal(2)
  x, y = rng.standard_normal((5, 1, 1, 4)), np.array([0, 1, 1, 0, 1])

  class WithBias(nn.Module):
    @nn.compact
    def __call__(self, x, enc=None, *, train=False):
      del enc, train
      h = nn.relu(nn.Dense(3, use_bias=False, name="hidden")(x.reshape(x.shape[0], -1)))[:, None, None, :]
      return layers.features_dict([h], h, lambda p: nn.Dense(2, name="classifier")(p))

  variables = {"params": {"hidden": {"kernel": jnp.asarray(w1, jnp.float32)},
                          "classifier": {"kernel": jnp.asarray(w2, jnp.float32), "bias": jnp.asarray(b2, jnp.float32)}}}
  a1 = x.reshape(5, 4) @ w1
  h = np.maximum(a1, 0)
  logits = h @ w2 + b2
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  g2 = (p - np.eye(2)[y]) / 5  # dL/dlogits of the batch-mean cross-entropy
  dw2, dw1 = h.T @ g2, x.reshape(5, 4).T @ ((g2 @ w2.T) * (a1 > 0))
  yj = jnp.asarray(y, jnp.int32)
  got = _group("gradnorm", WithBias(), variables, x.astype(np.float32), yj)
  np.testing.assert_allclose(got, np.linalg.norm(dw1) + np.linalg.norm(dw2), rtol=1e-5)
  got = _group("snip", WithBias(), variables, x.astype(np.float32), yj)
  np.testing.assert_allclose(got, np.abs(w1 * dw1).sum() + np.abs(w2 * dw2).sum(), rtol=1e-5)


class SharedDense(nn.Module):
  @nn.compact
  def __call__(self, x, enc=None, *, train=False):
    del enc, train
    dense = nn.Dense(4, name="shared")
    h = dense(dense(x.reshape(x.shape[0], -1)))[:, None, None, :]
    return layers.features_dict([h], h, lambda q: nn.Dense(2, name="classifier")(q))


def test_fisher_refuses_a_layer_called_twice():
  variables = SharedDense().init(jax.random.key(0), jnp.zeros((2, 1, 1, 4)))
  with pytest.raises(ValueError, match="fisher.*shared.*called twice"):
    _group("fisher", SharedDense(), variables, np.ones((2, 1, 1, 4), np.float32))


def test_naswot_kernel_for_known_activation_pattern():
  x = np.asarray([[1.0, -1.0, 2.0, -3.0],
                  [1.0, 1.0, -2.0, -3.0],
                  [-1.0, 1.0, 2.0, 3.0]], np.float32).reshape(3, 1, 1, 4)
  codes = (x.reshape(3, 4) > 0).astype(np.float64)
  kernel = codes @ codes.T + (1 - codes) @ (1 - codes).T  # = 4 - Hamming distance
  np.testing.assert_array_equal(kernel, [[4, 2, 1], [2, 4, 1], [1, 1, 4]])
  variables = {"params": {"classifier": {"kernel": jnp.zeros((4, 2)), "bias": jnp.zeros(2)}}}
  got = _group("naswot", ReluOnly(), variables, x)
  np.testing.assert_allclose(got, np.linalg.slogdet(kernel)[1], rtol=1e-6)


def _sp_reference(ft, fs):
  """Direct transcription of the SP loss of DisWOT's code (distiller_zoo/SP.py) in numpy."""
  def gram(f):
    f = f.reshape(f.shape[0], -1)
    g = f @ f.T
    return g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
  n = ft.shape[0]
  return ((gram(ft) - gram(fs)) ** 2).sum() / (n * n)


def _ickd_reference(gt, gs):
  """ICKD batch_loss of DisWOT's code on [K, C] maps, with explicit loops."""
  k, c = gs.shape
  total = 0.0
  for i in range(k):
    for g_t, g_s in ((gt[i], gs[i]),):
      et, es = np.outer(g_t, g_t), np.outer(g_s, g_s)
      et = et / np.maximum(np.linalg.norm(et, axis=1, keepdims=True), 1e-12)
      es = es / np.maximum(np.linalg.norm(es, axis=1, keepdims=True), 1e-12)
      total += ((et - es) ** 2).sum()
  return total / (c * k)


def sp_distance(student, teacher):
  """The batch SP distance (DisWOT's relation term M_r)."""
  return jnp.mean(sp_loss(jnp.asarray(student, jnp.float32), jnp.asarray(teacher, jnp.float32)))


def test_sp_and_ickd_distances_small_matrices():
  eye, ones = np.eye(2, dtype=np.float32), np.ones((2, 2), np.float32)
  # G_T = I, G_S rows = (1, 1)/sqrt(2): 2 (1 - 1/sqrt2)^2 + 2 (1/2), over N^2 = 4.
  expected_sp = (2 * (1 - 2 ** -0.5) ** 2 + 1.0) / 4
  np.testing.assert_allclose(float(sp_distance(ones, eye)), expected_sp, rtol=1e-6)
  # One class, C=2: g_T=(1,0) -> [[1,0],[0,0]]; g_S=(1,1) -> rows (1,1)/sqrt2; over C*K = 2.
  expected_ickd = ((1 - 2 ** -0.5) ** 2 + 0.5 * 3) / 2
  np.testing.assert_allclose(float(semantic_distance(jnp.asarray([[1.0, 1.0]]), jnp.asarray([[1.0, 0.0]]))),
                             expected_ickd, rtol=1e-6)
  rng = np.random.default_rng(2)
  ft, fs = rng.standard_normal((6, 3, 3, 5)), rng.standard_normal((6, 2, 2, 7))
  np.testing.assert_allclose(float(sp_distance(fs, ft)), _sp_reference(ft, fs), rtol=1e-5)
  gt, gs = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
  g_t, g_s = jnp.asarray(gt, jnp.float32), jnp.asarray(gs, jnp.float32)
  np.testing.assert_allclose(float(semantic_distance(g_s, g_t)), _ickd_reference(gt, gs), rtol=1e-5)
  assert float(semantic_distance(g_t, g_t)) == pytest.approx(0.0, abs=1e-6)
  assert float(sp_distance(ft, ft)) == pytest.approx(0.0, abs=1e-6)


def test_classifier_gradient_equals_autodiff():
  rng = np.random.default_rng(3)
  pooled = jnp.asarray(rng.standard_normal((8, 6)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((6, 4)), jnp.float32)
  b = jnp.asarray(rng.standard_normal(4), jnp.float32)
  y = jnp.asarray(rng.integers(0, 4, 8))
  ce = lambda w: -jnp.mean(jax.nn.log_softmax(pooled @ w + b)[jnp.arange(8), y])  # noqa: E731
  np.testing.assert_allclose(classifier_gradient(pooled, pooled @ w + b, y), jax.grad(ce)(w).T, rtol=1e-5,
                             atol=1e-7)


def test_semantic_mismatch_policy():
  rng = np.random.default_rng(4)
  gt = jnp.asarray(rng.standard_normal((5, 8)), jnp.float32)
  gs = jnp.asarray(rng.standard_normal((5, 6)), jnp.float32)
  # Unequal widths: default compares the channel-agnostic K x K class Gram matrices.
  np.testing.assert_allclose(float(semantic_distance(gs, gt)), float(sp_distance(gs, gt)), rtol=1e-6)
  assert float(semantic_distance(gs, gt, mismatch="drop")) == 0.0
  with pytest.raises(ValueError, match="semantic_mismatch"):
    semantic_distance(gs, gt, mismatch="error")
  with pytest.raises(ValueError, match="equal K"):
    semantic_distance(gs[:3], gt)


def test_gaussian_init_rule():
  abstract = {"params": {"conv": {"kernel": jax.ShapeDtypeStruct((3, 3, 2, 4), jnp.float32)},
                         "bn": {"scale": jax.ShapeDtypeStruct((4,), jnp.float32),
                                "bias": jax.ShapeDtypeStruct((4,), jnp.float32)},
                         "fc": {"kernel": jax.ShapeDtypeStruct((400, 300), jnp.float32),
                                "bias": jax.ShapeDtypeStruct((300,), jnp.float32)}},
              "batch_stats": {"bn": {"mean": jax.ShapeDtypeStruct((4,), jnp.float32),
                                     "var": jax.ShapeDtypeStruct((4,), jnp.float32)}}}
  v = gaussian_variables(jax.random.key(0), abstract)
  k = np.asarray(v["params"]["fc"]["kernel"])
  assert abs(k.mean()) < 0.01 and abs(k.std() - 1.0) < 0.01  # N(0, 1)
  assert np.all(np.asarray(v["params"]["fc"]["bias"]) == 0)
  assert np.all(np.asarray(v["params"]["bn"]["scale"]) == 1) and np.all(np.asarray(v["params"]["bn"]["bias"]) == 0)
  assert np.all(np.asarray(v["batch_stats"]["bn"]["var"]) == 1)
  again = gaussian_variables(jax.random.key(0), abstract)
  np.testing.assert_array_equal(np.asarray(again["params"]["conv"]["kernel"]),
                                np.asarray(v["params"]["conv"]["kernel"]))


def test_torch_init_rule():
  """PyTorch defaults: conv / linear kernel and bias ~ U(+-1/sqrt(fan_in)), BN 1/0."""
  abstract = {"params": {"conv": {"kernel": jax.ShapeDtypeStruct((3, 3, 2, 4), jnp.float32)},
                         "bn": {"scale": jax.ShapeDtypeStruct((4,), jnp.float32),
                                "bias": jax.ShapeDtypeStruct((4,), jnp.float32)},
                         "fc": {"kernel": jax.ShapeDtypeStruct((400, 300), jnp.float32),
                                "bias": jax.ShapeDtypeStruct((3000,), jnp.float32)}}}  # long: variance check
  v = torch_variables(jax.random.key(0), abstract)
  k, b = np.asarray(v["params"]["fc"]["kernel"]), np.asarray(v["params"]["fc"]["bias"])
  for a in (k, b):  # U(-1/20, 1/20): max near the bound, variance bound^2 / 3
    assert np.abs(a).max() <= 0.05 and np.abs(a).max() > 0.049 and abs(a.var() - 0.05 ** 2 / 3) < 5e-5
  assert np.abs(np.asarray(v["params"]["conv"]["kernel"])).max() <= 1 / np.sqrt(18)
  assert np.all(np.asarray(v["params"]["bn"]["scale"]) == 1) and np.all(np.asarray(v["params"]["bn"]["bias"]) == 0)
  again = torch_variables(jax.random.key(0), abstract)
  np.testing.assert_array_equal(np.asarray(again["params"]["fc"]["kernel"]), k)


# ---- NB201: masked == per-cell, determinism, signs ---------------------------------------------

FAST_PROXIES = ("diswot", "diswot_semantic", "diswot_relation", "kd", "sp", "at", "fitnet", "rkd", "pkt",
                "synflow", "naswot", "snip", "gradnorm", "params")


@pytest.fixture(scope="module")
def masked_scores(masked, batch, teacher16):
  x, y = batch
  encs = np.stack([masked.encode(c) for c in CELLS])
  info = {}
  out = score_population(jax.random.key(0), masked, encs, x, y, proxies=FAST_PROXIES, num_classes=NUM_CLASSES,
                         teacher=teacher16, init="gaussian", info=info)
  return out, info


@pytest.mark.parametrize("init", ["gaussian", "flax", "torch"])
def test_masked_equals_per_cell(masked, per_cell, batch, teacher16, masked_scores, init):
  x, y = batch
  names = FAST_PROXIES if init == "gaussian" else ("synflow", "params", "diswot")
  encs = np.stack([masked.encode(c) for c in CELLS])
  if init == "gaussian":
    a = masked_scores[0]
  else:
    a = score_population(jax.random.key(0), masked, encs, x, y, proxies=names, num_classes=NUM_CLASSES,
                         teacher=teacher16, init=init)
  b = score_population(jax.random.key(0), per_cell, encs, x, y, proxies=names, num_classes=NUM_CLASSES,
                       teacher=teacher16, init=init)
  for name in names:
    np.testing.assert_allclose(a[name], b[name], rtol=2e-4, err_msg=name)
  if init == "gaussian":  # params also equal jdanas.costs (the exact per-cell module's count)
    from jdanas import costs
    want = [costs.model_costs(masked, e, num_classes=NUM_CLASSES, input_shape=(8, 8, 3), flops=False).params
            for e in encs]
    np.testing.assert_array_equal(a["params"], want)


def test_path_weight_masks_unselected_ops(masked):
  enc = masked.encode(CELLS[0])  # edge (1<-0) is conv3x3
  assert float(path_weight(masked, ("params", "stage1_cell0", "edge10", "conv3x3", "conv", "kernel"), enc)) == 1
  assert float(path_weight(masked, ("params", "stage1_cell0", "edge10", "conv1x1", "conv", "kernel"), enc)) == 0
  assert path_weight(masked, ("params", "stem_conv", "kernel"), enc) == 1.0
  module = masked.build((), NUM_CLASSES)
  assert count_params(masked, module, enc, (8, 8, 3)) < count_params(masked, module, np.full(6, 3), (8, 8, 3))


def test_signs_and_combination(masked_scores):
  out, info = masked_scores
  np.testing.assert_allclose(out["diswot"], out["diswot_semantic"] + out["diswot_relation"], rtol=1e-5)
  for name in ("diswot_semantic", "diswot_relation", "kd", "sp", "at", "fitnet", "rkd", "pkt"):
    assert np.all(out[name] <= 0), name  # -distance: 0 is a perfect match
  for name in ("synflow", "snip", "gradnorm", "params"):
    assert np.all(out[name] > 0), name
  assert info["semantic_form"] == ["channel", "channel"]
  assert set(out) == set(FAST_PROXIES) and all(v.dtype == np.float64 for v in out.values())


def test_distance_proxies_are_zero_for_the_teacher_itself(batch):
  """A student identical to the teacher (same architecture, same weights) gets the best score 0."""
  x, y = batch
  t = _teacher(16)
  from jdanas.scoring.init import init_variables
  from jdanas.scoring.population import _teacher_program
  variables = init_variables(jax.random.key(5), t.module, (8, 8, 3), None, "gaussian")
  ctx = proxy_lib.Context(module=t.module, space=None, names=("diswot", "kd", "sp", "rkd", "pkt", "at"))
  tout = _teacher_program(t.module, "pre_pool")(variables, jnp.asarray(x), jnp.asarray(y))
  out = jax.jit(lambda v, tt: proxy_lib.GROUP_FNS["teacher"](ctx, v, None, jnp.asarray(x), jnp.asarray(y), tt,
                                                              None))(variables, tout)
  for name in ctx.names:
    assert abs(float(out[name])) < 1e-5, name


def test_deterministic_per_key(masked, batch, teacher16, masked_scores):
  x, y = batch
  encs = np.stack([masked.encode(c) for c in CELLS])
  again = score_population(jax.random.key(0), masked, encs, x, y, proxies=("diswot", "synflow"),
                           num_classes=NUM_CLASSES, teacher=teacher16, init="gaussian")
  for name in ("diswot", "synflow"):
    np.testing.assert_array_equal(again[name], masked_scores[0][name])
  # A candidate's score does not depend on the other candidates or its position.
  alone = score_population(jax.random.key(0), masked, encs[1:], x, y, proxies=("diswot",),
                           num_classes=NUM_CLASSES, teacher=teacher16)
  np.testing.assert_allclose(alone["diswot"], masked_scores[0]["diswot"][1:], rtol=1e-6)
  other = score_population(jax.random.key(1), masked, encs, x, y, proxies=("diswot",), num_classes=NUM_CLASSES,
                           teacher=teacher16)
  assert not np.allclose(other["diswot"], masked_scores[0]["diswot"])


def test_channel_mismatch_records_policy_and_fitnet_refuses(masked, batch):
  x, y = batch
  encs = np.stack([masked.encode(c) for c in CELLS])
  wide = _teacher(32)
  info = {}
  out = score_population(jax.random.key(0), masked, encs, x, y, proxies=("diswot",), num_classes=NUM_CLASSES,
                         teacher=wide, info=info)
  assert info["semantic_form"] == ["class_gram", "class_gram"] and np.all(np.isfinite(out["diswot"]))
  with pytest.raises(ValueError, match="fitnet"):
    score_population(jax.random.key(0), masked, encs, x, y, proxies=("fitnet",), num_classes=NUM_CLASSES,
                     teacher=wide)
  with pytest.raises(ValueError, match="semantic_mismatch"):
    score_population(jax.random.key(0), masked, encs, x, y, proxies=("diswot",), num_classes=NUM_CLASSES,
                     teacher=wide, semantic_mismatch="error")


def test_bad_inputs_raise_one_line_errors(masked, batch):
  x, y = batch
  encs = np.stack([masked.encode(c) for c in CELLS])
  cases = [(dict(proxies=("diswot",)), "teacher"), (dict(proxies=("nope",)), "unknown proxy"),
           (dict(proxies=("snip",), init="kaiming"), "init"), (dict(proxies=("snip",), strategy="pmap"), "strategy"),
           (dict(proxies=("snip",), relation_tap="middle"), "relation_tap"),
           (dict(proxies=("naswot", "zen")), "different initialisations")]
  for kwargs, match in cases:
    with pytest.raises(ValueError, match=match) as e:
      score_population(jax.random.key(0), masked, encs, x, y, num_classes=NUM_CLASSES, **kwargs)
    assert "\n" not in str(e.value)
  with pytest.raises(ValueError, match="labels"):
    score_population(jax.random.key(0), masked, encs, x, y + NUM_CLASSES, proxies=("snip",), num_classes=NUM_CLASSES)
  with pytest.raises(ValueError, match="decision"):
    score_population(jax.random.key(0), masked, encs + 5, x, y, proxies=("snip",), num_classes=NUM_CLASSES)


def test_proxy_table_complete():
  assert set(PROXIES) == {"diswot", "diswot_semantic", "diswot_relation", "naswot", "synflow", "snip", "grasp",
                          "gradnorm", "fisher", "jacob_cov", "zen", "params", "flops", "kd", "fitnet", "at", "sp",
                          "rkd", "pkt"}
  for info in PROXY_INFO.values():
    assert info.reference and info.group in proxy_lib.GROUPS + ("host",)
    assert (info.paper_init is None) == (info.group == "host") and info.paper_init in INITS + (None,)


def test_default_init_is_the_papers():
  assert proxy_lib.paper_init(("diswot", "kd", "params")) == "gaussian"
  assert proxy_lib.paper_init(("params",)) == "flax"
  assert proxy_lib.init_groups(("params", "naswot", "diswot", "zen")) == {"flax": ("params", "naswot"),
                                                                          "gaussian": ("diswot", "zen")}
  assert proxy_lib.init_groups(("naswot", "diswot"), "torch") == {"torch": ("naswot", "diswot")}


def test_evaluator_matches_score_population_and_compiles_once(masked, batch, teacher16, masked_scores):
  x, y = batch
  encs = np.stack([masked.encode(c) for c in CELLS])
  ev = ZeroCostEvaluator(masked, teacher16, x, y, "diswot", seed=0)
  first = ev(jax.random.key(7), encs)
  np.testing.assert_array_equal(first.scores, masked_scores[0]["diswot"].astype(np.float32))
  second = ev(jax.random.key(8), encs[::-1])  # the key is ignored: scores are comparable across rounds
  np.testing.assert_array_equal(second.scores, first.scores[::-1])
  assert second.num_compilations == 0
  with pytest.raises(ValueError, match="teacher"):
    ZeroCostEvaluator(masked, None, x, y, "kd", num_classes=NUM_CLASSES)


def test_evaluator_passes_log_synflow(masked, batch, masked_scores):
  """SynFlow of deep cells exceeds float32 (score_population returns float64); the evaluator
  hands searchers log(synflow), which keeps the order."""
  x, y = batch
  encs = np.stack([masked.encode(c) for c in CELLS])
  ev = ZeroCostEvaluator(masked, None, x, y, "synflow", num_classes=NUM_CLASSES, seed=0, init="gaussian")
  raw = masked_scores[0]["synflow"]
  np.testing.assert_allclose(ev(jax.random.key(0), encs).scores, np.log(raw), rtol=1e-6)


@pytest.mark.slow
def test_masked_equals_per_cell_heavy_proxies(masked, per_cell, batch):
  """GraSP, Fisher, Jacobian covariance, Zen and FLOPs (slower programs to compile)."""
  x, y = batch
  encs = np.stack([masked.encode(c) for c in CELLS])
  names = ("grasp", "fisher", "jacob_cov", "zen", "flops")
  a = score_population(jax.random.key(0), masked, encs, x, y, proxies=names, num_classes=NUM_CLASSES, init="flax")
  b = score_population(jax.random.key(0), per_cell, encs, x, y, proxies=names, num_classes=NUM_CLASSES, init="flax")
  for name in names:
    np.testing.assert_allclose(a[name], b[name], rtol=1e-3, err_msg=name)


@pytest.mark.parametrize("name,arch", [pytest.param("nb201", CELLS[0], marks=pytest.mark.slow),  # ~23 s
                                       pytest.param("s1_resnet", "21", marks=pytest.mark.slow)])  # ~16 s
def test_forward_only_convs_network_same_values_gradients_and_hvp(name, arch, batch):
  """Forward-only convolutions (GraSP's networks on CPU): same variables, and the same loss,
  gradient and Hessian-vector product (strided convs included) as XLA's own convolutions."""
  x, y = batch
  space = (get_space("nb201", channels=4, num_cells=1) if name == "nb201"
           else get_space("s1_resnet", depth_choices=(1, 2), widths=(4, 8), stem=4))
  enc = space.encode(arch)
  slow = space.build(space.signature(enc), NUM_CLASSES)
  fast = lowering_lib.build(space, space.signature(enc), NUM_CLASSES, lowering_lib.resolve("cpu"),
                            "score_derivatives")
  assert isinstance(fast, lowering_lib.ForwardOnlyConvs)
  v = init_variables(jax.random.key(0), slow, x.shape[1:], enc, "torch")
  v_fast = init_variables(jax.random.key(0), fast, x.shape[1:], enc, "torch")
  assert jax.tree_util.tree_structure(v) == jax.tree_util.tree_structure(v_fast)

  def derivatives(module):
    def loss(params):
      logits = module.apply({**v, "params": params}, x, enc, train=True, mutable=["batch_stats"])[0]["logits"]
      return proxy_lib._ce(logits, y)
    g, hvp = jax.vjp(jax.grad(loss), v["params"])
    return loss(v["params"]), g, hvp(g)[0]

  for a, b in zip(jax.tree_util.tree_leaves(derivatives(fast)), jax.tree_util.tree_leaves(derivatives(slow))):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("name", ["cpu", "xla"])
def test_scoring_programs_follow_the_lowering(masked, per_cell, name):
  """Under ``"cpu"`` every group that differentiates through the network runs forward-only
  convolutions (masked and per cell, NB201 and S1, and any other space), forward-only groups keep
  XLA's convolutions, and ``"map"`` runs the masked NB201 network with switch edges; under
  ``"xla"`` every program runs the network as built (weighted edges)."""
  from jdanas.scoring import population
  from jdanas.spaces.nb201 import OPS
  lowering = lowering_lib.resolve(name)
  enc = per_cell.encode(CELLS[0])
  sig = per_cell.signature(enc)
  cpu = name == "cpu"
  inner = lambda m: m.module if isinstance(m, lowering_lib.ForwardOnlyConvs) else m  # noqa: E731
  for group in proxy_lib.GROUPS:
    run_masked = population._run_module(masked, (), group, "map", NUM_CLASSES, lowering)
    run_cell = population._run_module(per_cell, sig, group, "map", NUM_CLASSES, lowering)
    derivative = group in population.DERIVATIVE_GROUPS
    for run in (run_masked, run_cell):
      assert isinstance(run, lowering_lib.ForwardOnlyConvs) == (cpu and derivative), group
    assert inner(run_masked).edge_impl == ("switch" if cpu else "weighted")
    assert inner(run_cell).ops == tuple(OPS[i] for i in enc)
    assert inner(population._run_module(masked, (), group, "vmap", NUM_CLASSES, lowering)).edge_impl == "weighted"
  for space in (get_space("s1_resnet_masked"), get_space("mobilenet")):
    sig = space.signature(np.zeros(space.num_decisions, np.int32))
    assert isinstance(population._run_module(space, sig, "grasp", "map", NUM_CLASSES, lowering),
                      lowering_lib.ForwardOnlyConvs) == cpu
    assert not isinstance(population._run_module(space, sig, "zen", "map", NUM_CLASSES, lowering),
                          lowering_lib.ForwardOnlyConvs)


@pytest.mark.parametrize("name", ["cpu", pytest.param("xla", marks=pytest.mark.slow)])  # xla: ~13 s
def test_group_programs_compile_once_per_signature(masked, per_cell, batch, name):
  """Each group program is traced (compiled) once per signature and cached across calls, under each
  lowering; a second call with the same shapes compiles nothing."""
  from jdanas.scoring import ProgramCache
  x, y = batch
  encs = np.stack([masked.encode(c) for c in CELLS])
  kw = dict(proxies=("snip", "naswot"), num_classes=NUM_CLASSES, init="flax", lowering=name)
  for space, signatures in ((masked, 1), (per_cell, len(CELLS))):
    programs, info = ProgramCache(), {}
    score_population(jax.random.key(0), space, encs, x, y, programs=programs, info=info, **kw)
    assert info["num_compilations"] == programs.num_compilations == programs.num_traces == 2 * signatures
    score_population(jax.random.key(1), space, encs[::-1], x, y, programs=programs, info=info, **kw)
    assert info["num_compilations"] == 0 and programs.num_traces == 2 * signatures


def test_lowering_names_and_errors():
  assert lowering_lib.resolve("auto", backend="cpu") == lowering_lib.resolve("cpu")
  assert lowering_lib.resolve("auto", backend="gpu") == lowering_lib.resolve("xla")
  custom = lowering_lib.Lowering("custom", zero_node="constant")
  assert lowering_lib.resolve(custom) is custom
  assert hash(custom) == hash(lowering_lib.Lowering("custom", zero_node="constant"))
  with pytest.raises(ValueError, match=r"lowering: 'gpu' is not one of \('auto', 'xla', 'cpu'\)"):
    lowering_lib.resolve("gpu")
  with pytest.raises(ValueError, match="Lowering.score_edge: 'magic'"):
    lowering_lib.Lowering("custom", score_edge="magic")
  with pytest.raises(ValueError, match="purpose: 'eval'"):
    lowering_lib.resolve("cpu").masked_edge("eval")


def test_forward_only_refuses_convolutions_without_a_form(batch):
  """A convolution with no forward-only form is refused with a message naming it and the way out."""
  import flax.linen as nn

  class Dilated(nn.Module):
    @nn.compact
    def __call__(self, x, enc=None, *, train=False):
      return nn.Conv(4, (3, 3), kernel_dilation=(2, 2), name="dilated")(x)

  x, _ = batch
  with pytest.raises(ValueError, match="convolution dilated .* has no forward-only form.*lowering='xla'"):
    lowering_lib.ForwardOnlyConvs(Dilated()).init(jax.random.key(0), x)


@pytest.mark.slow  # ~18 s
def test_activation_tapes_see_into_switch_branches(masked, per_cell, batch):
  """NASWOT's ReLU codes and Zen's BN variances recorded inside ``lax.switch`` edges (``"map"``:
  only the selected op runs) equal the weighted form's (``"vmap"``: every op runs outside any
  branch) and the per-cell module's."""
  x, y = batch
  encs = np.stack([masked.encode(c) for c in CELLS] + [np.array([1, 0, 4, 3, 2, 0])])
  kw = dict(proxies=("naswot", "zen"), num_classes=NUM_CLASSES, init="gaussian")
  switch = score_population(jax.random.key(0), masked, encs, x, y, strategy="map", **kw)
  weighted = score_population(jax.random.key(0), masked, encs, x, y, strategy="vmap", chunk_size=2, **kw)
  cell = score_population(jax.random.key(0), per_cell, encs, x, y, **kw)
  for name in kw["proxies"]:
    np.testing.assert_allclose(switch[name], cell[name], rtol=1e-4, err_msg=name)
    np.testing.assert_allclose(weighted[name], cell[name], rtol=1e-4, err_msg=name)
  assert np.all(np.isfinite(switch["zen"])) and len(set(np.round(switch["zen"], 4))) == len(encs)


def test_vmap_strategy_equals_map(masked, batch, teacher16, masked_scores):
  """Chunked vmap (the weighted masked form) gives the scores of lax.map (the switch form)."""
  x, y = batch
  encs = np.stack([masked.encode(c) for c in CELLS])
  out = score_population(jax.random.key(0), masked, encs, x, y, proxies=("diswot",), num_classes=NUM_CLASSES,
                         teacher=teacher16, strategy="vmap", chunk_size=2)
  np.testing.assert_allclose(out["diswot"], masked_scores[0]["diswot"], rtol=1e-4)


@pytest.mark.slow  # ~21 s
def test_reference_cells_without_affine(batch):
  """``cell_affine=False`` (zero-cost reference cells): conv biases, parameter-free BN in the
  cells; masked == per-cell; a bias before train-mode BN leaves the kernel gradients (SNIP) unchanged
  but enters Fisher's activations."""
  x, y = batch
  ref_masked = get_space("nb201_masked", channels=4, num_cells=1, cell_affine=False)
  ref_cell = get_space("nb201", channels=4, num_cells=1, cell_affine=False)
  plain = get_space("nb201_masked", channels=4, num_cells=1)
  enc = ref_masked.encode(CELLS[0])
  v = init_variables(jax.random.key(0), ref_masked.build((), NUM_CLASSES), x.shape[1:], enc, "torch")
  op = v["params"]["stage1_cell0"]["edge10"]["conv3x3"]
  assert set(op) == {"conv"} and set(op["conv"]) == {"kernel", "bias"}
  bound = 1.0 / np.sqrt(3 * 3 * 4)
  assert 0 < np.abs(np.asarray(op["conv"]["bias"])).max() <= bound
  assert set(v["params"]["reduction1"]["conv_a"]["bn"]) == {"scale", "bias"}
  encs = np.stack([ref_masked.encode(c) for c in CELLS])
  names = ("fisher", "snip", "params")
  kw = dict(proxies=names, num_classes=NUM_CLASSES, init="torch")
  a = score_population(jax.random.key(0), ref_masked, encs, x, y, **kw)
  b = score_population(jax.random.key(0), ref_cell, encs[:1], x, y, **kw)  # one per-cell program each
  c = score_population(jax.random.key(0), plain, encs, x, y, **kw)
  for name in names:
    np.testing.assert_allclose(a[name][:1], b[name], rtol=1e-3, err_msg=name)
  np.testing.assert_allclose(a["snip"], c["snip"], rtol=1e-3)
  assert not np.allclose(a["fisher"], c["fisher"], rtol=1e-2)
  assert np.all(a["params"] != c["params"])
