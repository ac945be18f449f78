"""Convolution gradients inside ``lax.switch`` on this backend: ``lax.conv_general_dilated`` vs
:func:`jdanas.models.layers.forward_only_conv` (every derivative written as a forward convolution).

  python bench/probes/forward_only_conv.py [--quick]

Two measurements, the variants timed interleaved in one run (median of ``--reps`` calls, after
one compiling call):

* ``layer``: gradient w.r.t. kernel and input of one 3x3 convolution (batch 64, 32x32, 16 -> 16
  channels) at top level, inside a 2-branch ``lax.switch`` with the lax convolution, and inside
  the switch with ``forward_only_conv``.
* ``loop``: the same layer gradient inside a loop (``jax.lax.map`` over 2 inputs, as every
  program of :func:`jdanas.scoring.score_population` is), lax convolution vs ``forward_only_conv``,
  beside the lax convolution's top-level gradient; ``ms`` per loop iteration.
* ``wgrad``: the kernel gradient alone as :func:`jdanas.models.layers.forward_only_conv` writes it (one
  forward convolution, the zero padding the convolution's own) vs the same convolution on an
  input padded beforehand (``jnp.pad``, then 'VALID'; equal values), inside the switch.
* ``nb201``: the SNIP/GradNorm program of one masked NB201 cell with switch edges (C=16, N=5,
  batch 64; ``--quick``: C=8, N=1), with XLA's convolutions vs forward-only ones (the network
  wrapped in :class:`jdanas.lowering.ForwardOnlyConvs`, as the ``"cpu"`` lowering runs it).

One JSON line per measurement with keys ``bench, variant, ms, compile_s, ratio`` (``ratio``: the
lax-in-switch time over this variant's; for ``loop`` the lax-in-loop time, for ``wgrad`` the
padded-input time over this variant's).
"""
import argparse
import dataclasses
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from jdanas import lowering as lowering_lib
from jdanas.models import layers
from jdanas.scoring import proxies as proxy_lib
from jdanas.scoring.init import init_variables
from jdanas.spaces import get_space

DN = ("NHWC", "HWIO", "NHWC")
CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"


def timed(fn, args, reps):
  t0 = time.perf_counter()
  jax.block_until_ready(fn(*args))
  compile_s = time.perf_counter() - t0
  times = []
  for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return float(np.median(times)) * 1e3, compile_s


def lax_conv(x, w):
  return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN)


def layer_bench(reps):
  x = jax.random.normal(jax.random.key(0), (64, 32, 32, 16))
  w = jax.random.normal(jax.random.key(1), (3, 3, 16, 16))

  def loss(conv, in_switch):
    def f(w, x, i):
      if not in_switch:
        return jnp.sum(conv(x, w) ** 2)
      return jnp.sum(jax.lax.switch(i, [lambda: conv(x, w), lambda: x * 0.0]) ** 2)
    return jax.jit(jax.grad(f, (0, 1)))

  variants = {"top_level_lax": loss(lax_conv, False), "switch_lax": loss(lax_conv, True),
              "switch_forward_only": loss(layers.forward_only_conv, True)}
  return {name: timed(fn, (w, x, 0), reps) for name, fn in variants.items()}


def loop_bench(reps):
  x = jax.random.normal(jax.random.key(0), (64, 32, 32, 16))
  w = jax.random.normal(jax.random.key(1), (3, 3, 16, 16))
  shifts = jnp.arange(2, dtype=x.dtype)

  def grad(conv):
    return jax.grad(lambda w, x: jnp.sum(conv(x, w) ** 2), (0, 1))

  def looped(conv):
    return jax.jit(lambda w, x: jax.lax.map(lambda s: grad(conv)(w, x + s), shifts))

  out = {"top_level_lax": timed(jax.jit(grad(lax_conv)), (w, x), reps)}
  for name, conv in (("loop_lax", lax_conv), ("loop_forward_only", layers.forward_only_conv)):
    ms, compile_s = timed(looped(conv), (w, x), reps)
    out[name] = (ms / len(shifts), compile_s)
  return out


def wgrad_bench(reps):
  x = jax.random.normal(jax.random.key(0), (64, 32, 32, 16))
  g = jax.random.normal(jax.random.key(1), (64, 32, 32, 16))

  def padded_first(x, g, k):
    p = (k - 1) // 2
    xt = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0))).transpose(3, 1, 2, 0)
    out = jax.lax.conv_general_dilated(xt, g.transpose(1, 2, 0, 3), (1, 1), "VALID", dimension_numbers=DN)
    return out.transpose(1, 2, 0, 3)

  def in_switch(fn):
    zero = jnp.zeros((3, 3, 16, 16))
    return jax.jit(lambda x, g, i: jax.lax.switch(i, [lambda: fn(x, g, 3), lambda: zero]))

  fns = {"switch_padded_input": in_switch(padded_first), "switch_forward_only": in_switch(layers._wgrad_value)}
  a, b = (np.asarray(f(x, g, 0)) for f in fns.values())
  if not np.allclose(a, b, rtol=1e-4, atol=1e-3):
    raise AssertionError("wgrad variants differ")
  return {name: timed(fn, (x, g, 0), reps) for name, fn in fns.items()}


def nb201_bench(reps, channels, num_cells):
  space = dataclasses.replace(get_space("nb201_masked", channels=channels, num_cells=num_cells),
                              edge_impl="switch")
  enc = jnp.asarray(space.encode(CELL))
  x = jax.random.normal(jax.random.key(0), (64, 32, 32, 3))
  y = jnp.arange(64) % 10
  out = {}
  plain = space.build((), 10)
  for name, module in (("switch_lax", plain), ("switch_forward_only", lowering_lib.ForwardOnlyConvs(plain))):
    v = init_variables(jax.random.key(0), module, (32, 32, 3), enc, "flax")
    ctx = proxy_lib.Context(module=module, space=space, names=("snip", "gradnorm"))
    fn = jax.jit(lambda v, e, ctx=ctx: proxy_lib.GROUP_FNS["grad"](ctx, v, e, x, y, None, None))
    out[name] = timed(fn, (v, enc), reps)
  return out

def main():
  lowering_lib.configure_cpu_runtime()  # safe XLA:CPU flags, before jax starts (docs/lowering.md)
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--reps", type=int, default=None)
  args = parser.parse_args()
  reps = args.reps or (3 if args.quick else 5)
  channels, num_cells = (8, 1) if args.quick else (16, 5)
  benches = (("layer", layer_bench), ("loop", loop_bench), ("wgrad", wgrad_bench),
             ("nb201", lambda reps: nb201_bench(reps, channels, num_cells)))
  for bench, run in benches:
    res = run(reps)
    base = res[{"wgrad": "switch_padded_input", "loop": "loop_lax"}.get(bench, "switch_lax")][0]
    for variant, (ms, compile_s) in res.items():
      rec = {"bench": bench, "variant": variant, "ms": round(ms, 2), "compile_s": round(compile_s, 2),
             "ratio": round(base / ms, 2), "backend": jax.default_backend()}
      if bench == "nb201":
        rec.update(channels=channels, num_cells=num_cells, cell=CELL)
      print(json.dumps(rec), flush=True)


if __name__ == "__main__":
  main()
