"""Architecture costs compile nothing: FLOPs are XLA's cost analysis of the lowered program
(:func:`jdanas.costs.forward_flops`), the one definition the ledger, budgets, the final report and the
population engine's work estimate share; compilations are counted with JAX's public monitoring events."""
import types

import jax
import jax.numpy as jnp
import numpy as np

from jdanas import costs
from jdanas.pipeline.search import _record
from jdanas.runtime import CompileCounter
from jdanas.spaces import get_space


def test_forward_flops_counts_a_multiply_add_as_two():
  w = jax.ShapeDtypeStruct((64, 10), jnp.float32)
  x = jax.ShapeDtypeStruct((1, 64), jnp.float32)
  assert costs.forward_flops(lambda w, x: x @ w, w, x) == 2 * 64 * 10


def test_the_compile_counter_sees_a_compilation_and_nothing_else():
  f = jax.jit(lambda x: jnp.sin(x) * 3.0 + 0.5)
  with CompileCounter() as c:
    f(np.ones(7, np.float32)).block_until_ready()
  assert c.built == 1 and c.names[0].startswith("jit(") and c.compilations + c.cache_loads == 1
  with CompileCounter() as again:
    f(np.ones(7, np.float32)).block_until_ready()  # the in-memory program: nothing built
  assert again.built == 0


def test_the_ledgers_flops_bookkeeping_compiles_nothing():
  """A search round's ledger rows (params and FLOPs of every proposal) build no XLA program."""
  space = get_space("nb201")
  rng = np.random.default_rng(0)
  encs = rng.integers(0, np.asarray(space.num_choices), size=(4, space.num_decisions)).astype(np.int32)
  costs._costs.cache_clear()  # every architecture costed afresh
  plan = types.SimpleNamespace(space=space)
  data = types.SimpleNamespace(num_classes=10, image_shape=(32, 32, 3))
  ledger: list = []
  with CompileCounter() as c:
    _record(0, encs, np.ones(4, bool), np.linspace(0.1, 0.4, 4, dtype=np.float32), {}, ledger=ledger, plan=plan,
            data=data, seed=0, score_kind=types.SimpleNamespace(kind="val_accuracy"))
  assert c.built == 0, c.names
  assert len(ledger) == 4 and all(r["flops"] > r["params"] > 0 for r in ledger)
  # the lowered program's analysis, nothing else
  e = encs[0]
  module = space.cost_module(tuple(int(v) for v in e), 10)
  x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  abstract = jax.eval_shape(lambda x: module.init(jax.random.key(0), x, e, train=False), x)
  lowered = jax.jit(lambda v, x: module.apply(v, x, e, train=False)["logits"]).lower(abstract, x).cost_analysis()
  assert ledger[0]["flops"] == float(lowered["flops"])
