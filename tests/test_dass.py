"""DaSS space, parameter remapping and functional embeddings (fast)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jdanas.meta import MODES, embed_exact, embed_students, embed_teacher, noise_input, remap
from jdanas.spaces import DassSpace, get_space
from jdanas.spaces.dass import encoding_features

SPACE = DassSpace(stage_widths=(4, 8, 8, 16), max_depth=2, multipliers=(0.5, 0.75, 1.0), image_size=8)
K = 5


def random_tree(key, shapes):
  leaves, tree = jax.tree.flatten(shapes)
  keys = jax.random.split(key, len(leaves))
  # positive values keep BN variances valid; distinct values make any wrong slice visible
  return jax.tree.unflatten(tree, [jax.random.uniform(k, l.shape, jnp.float32, 0.5, 1.5) for k, l in zip(keys, leaves)])


@pytest.fixture(scope="module")
def teacher_vars():
  module = SPACE.teacher(K)
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), train=False))
  return random_tree(jax.random.key(1), shapes)


def student_shapes(enc):
  module = SPACE.build(SPACE.signature(enc), K)
  return jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), train=False))


def students(n=12, seed=0):
  encs = np.asarray(jax.vmap(SPACE.sample)(jax.random.split(jax.random.key(seed), n)))
  return encs


# ---- space ------------------------------------------------------------------------------------------

def test_default_space_is_the_papers():
  space = get_space("dass_resnet")
  assert space.num_choices == (5,) * 4 + (9,) * 19  # 4 depths + 20 block slots less the pinned last one
  assert space.decode(space.teacher_encoding) == "32.32.32.32.32|64.64.64.64.64|128.128.128.128.128|256.256.256.256.256"
  assert space.multipliers[1] == 0.5625 and space.image_size == 64
  enc = space.encode("16.18|64|72.128.96|144.256")
  assert space.decode(enc) == "16.18|64|72.128.96|144.256"
  assert space.widths(enc) == ((16, 18), (64,), (72, 128, 96), (144, 256))


def test_pinned_last_block_and_bad_names():
  enc = SPACE.sample(jax.random.key(3))
  assert all(w[-1] == 16 for w in [SPACE.widths(e)[-1] for e in students(12)])  # pinned full width
  free = DassSpace(stage_widths=(4, 8, 8, 16), max_depth=2, multipliers=(0.5, 1.0), pin_last=False)
  assert free.num_decisions == 4 + 8 and {free.widths(e)[-1][-1] for e in
                                          np.asarray(jax.vmap(free.sample)(jax.random.split(jax.random.key(0), 24)))} == {8, 16}
  for bad, match in [("2|4|8", "4 stages"), ("2|4|8|8", "last block"), ("1|4|8|16", "width 1"),
                     ("2.2.2|4|8|16", "3 blocks"), ("a|4|8|16", "block widths")]:
    with pytest.raises(ValueError, match=match):
      SPACE.encode(bad)
  with pytest.raises(ValueError, match="whole channel"):
    DassSpace(stage_widths=(5, 8, 8, 16), multipliers=(0.5, 1.0))
  assert SPACE.check(enc).shape == (SPACE.num_decisions,)


def test_encoding_features_one_hot_layout():
  f = jax.vmap(lambda e: encoding_features(SPACE, e))(jnp.asarray(students(16)))
  s, b, m = 4, 2, 3
  assert f.shape == (16, s * b + s * b * (m + 1))
  depth, slots = f[:, :s * b].reshape(16, s, b), f[:, s * b:].reshape(16, s, b, m + 1)
  np.testing.assert_array_equal(depth.sum(-1), 1)
  np.testing.assert_array_equal(slots.sum(-1), 1)
  for row, enc in zip(np.asarray(slots), students(16)):
    widths = SPACE.widths(enc)
    for st in range(s):
      for blk in range(b):
        absent = blk >= len(widths[st])
        assert row[st, blk, m] == absent
        if not absent:  # the multiplier of the block's width
          assert SPACE.multipliers[int(np.argmax(row[st, blk]))] * SPACE.stage_widths[st] == widths[st][blk]


# ---- remapping --------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_teacher_remaps_to_itself_exactly(teacher_vars, mode):
  out = remap(teacher_vars, teacher_vars, mode)
  assert jax.tree.structure(out) == jax.tree.structure(teacher_vars)
  for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(teacher_vars)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", MODES)
def test_random_students_get_their_own_shapes(teacher_vars, mode):
  for enc in students(8):
    shapes = student_shapes(enc)
    out = remap(teacher_vars, shapes, mode)
    assert jax.tree.structure(out) == jax.tree.structure(shapes)
    assert [a.shape for a in jax.tree.leaves(out)] == [a.shape for a in jax.tree.leaves(shapes)]


def test_modes_take_the_documented_slices(teacher_vars):
  enc = SPACE.encode("2|4|4.6|16")  # stage 3: 2 blocks of widths 4 and 6 out of 8
  shapes = student_shapes(enc)
  t = teacher_vars["params"]
  first = remap(teacher_vars, shapes, "copy_paste_first")["params"]
  np.testing.assert_array_equal(first["stem_conv"]["kernel"], t["stem_conv"]["kernel"][..., :2])
  np.testing.assert_array_equal(first["stage3_block1"]["conv1"]["kernel"], t["stage3_block1"]["conv1"]["kernel"][:, :, :4, :6])
  np.testing.assert_array_equal(first["classifier"]["kernel"], t["classifier"]["kernel"])
  last = remap(teacher_vars, shapes, "copy_paste_last")
  # stage 2 has one block out of the teacher's two: the last one, last channels
  np.testing.assert_array_equal(last["params"]["stage2_block0"]["conv2"]["kernel"],
                                t["stage2_block1"]["conv2"]["kernel"][:, :, 4:, 4:])
  np.testing.assert_array_equal(last["batch_stats"]["stage2_block0"]["bn1"]["var"],
                                teacher_vars["batch_stats"]["stage2_block1"]["bn1"]["var"][4:])
  uni = remap(teacher_vars, shapes, "uniform")["params"]
  np.testing.assert_array_equal(uni["stage3_block0"]["bn2"]["scale"], t["stage3_block0"]["bn2"]["scale"][::2])
  with pytest.raises(ValueError, match="mode must be one of"):
    remap(teacher_vars, shapes, "random")
  bigger = jax.tree.map(lambda a: jax.ShapeDtypeStruct(tuple(2 * d for d in a.shape), a.dtype), shapes)
  with pytest.raises(ValueError, match="larger than the teacher"):
    remap(teacher_vars, bigger)


# ---- masked network and embeddings --------------------------------------------------------------------

def test_masked_network_equals_the_remapped_students(teacher_vars):
  x = jax.random.normal(jax.random.key(5), (3, 8, 8, 3))
  masked = SPACE.masked_module(K)
  for enc in students(3, seed=2):
    student = SPACE.build(SPACE.signature(enc), K)
    exact = student.apply(remap(teacher_vars, student_shapes(enc)), x, train=False)
    got = masked.apply(teacher_vars, x, jnp.asarray(enc), train=False)
    np.testing.assert_allclose(got["logits"], exact["logits"], rtol=2e-5, atol=2e-5)
    for g, e in zip(got["stages"], exact["stages"]):
      c = e.shape[-1]
      np.testing.assert_allclose(g[..., :c], e, rtol=2e-5, atol=2e-5)
      np.testing.assert_array_equal(g[..., c:], 0)  # the student's unused channels are exactly zero


def test_batched_embeddings_equal_exact_ones_and_compile_once(teacher_vars):
  noise = noise_input(jax.random.key(0), SPACE, num_noise=2)
  encs = students(3, seed=4)
  maps = embed_students(SPACE, teacher_vars, encs, noise, num_classes=K, chunk=2)
  assert maps.shape == (3, 1, 1, 16)
  for enc, m in zip(encs, maps):
    np.testing.assert_allclose(m, embed_exact(SPACE, teacher_vars, enc, noise, num_classes=K), rtol=2e-5, atol=2e-5)
  from jdanas.meta.embed import _masked_maps
  before = _masked_maps._cache_size()
  embed_students(SPACE, teacher_vars, students(3, seed=9), noise, num_classes=K, chunk=2)
  assert _masked_maps._cache_size() == before  # same shapes: no new program
  np.testing.assert_allclose(embed_teacher(SPACE, teacher_vars, noise, num_classes=K),
                             embed_exact(SPACE, teacher_vars, SPACE.teacher_encoding, noise, num_classes=K), rtol=1e-6)
  assert not np.allclose(maps[0], maps[1])
