"""jdanas's population engine vs a plain PyTorch loop, training the same NB201 students.

Commands (from the repository root; torch is the optional ``bench`` extra, never a dependency of
the library: ``pip install -e ".[bench]"`` or ``pip install torch --index-url
https://download.pytorch.org/whl/cpu``)::

  python bench/vs_pytorch.py --quick            # C=4, N=1, 4 students, 2 steps, 2 rounds (CPU, minutes)
  python bench/vs_pytorch.py                    # C=16, N=5, 8 students, 4 steps, 3 rounds
  python bench/vs_pytorch.py --channels 4 --num-cells 1 --students 8 --steps 10

The students: ``--students`` distinct random NAS-Bench-201 cells (Dong & Yang, "NAS-Bench-201",
ICLR 2020) in the macro skeleton with ``--channels`` C and ``--num-cells`` N cells per stage, built
by ``jdanas.spaces`` (the per-cell ``nb201`` space) and by the PyTorch mirror below; the number of
parameters of every student is checked to be equal on both sides. The KD step is the same on both:
RepDistiller's loss (0.1 CE + 0.9 T^2 KL, T=4), Adam (lr 1e-3, no weight decay, constant
schedule), batch ``--batch`` (128) of 32x32x3 synthetic images, no augmentation; the teacher is a
random-init NB201 network (a fixed cell, same C and N), whose accuracy does not matter for speed.
jdanas trains the population with :class:`jdanas.train.PopulationTrainer` (strategy ``auto``:
the teacher once per batch for every student); PyTorch trains the students one after another
in eager mode, the teacher's forward pass in each student's step, as a plain loop does.

Protocol: one warm-up call per side (jdanas compiles; its compile time is reported), then
``--rounds`` rounds alternating the sides (jdanas first in even rounds, PyTorch first in odd ones).
``examples_per_s`` = students x steps x batch / training seconds (jdanas: the engine's
``train_seconds``, steps only; PyTorch: the loop's wall time). Output: one JSON line per side with
the per-round samples and medians, then ``{"ratio": jdanas / pytorch, ...}``. The PyTorch side uses
``torch.get_num_threads()`` threads (``--threads`` sets it).

``--quick`` (and the device check's tiny sizes) only proves the script runs: with 1-2 steps per
student the PyTorch side is dominated by per-student start-up (optimizer creation, first-call
allocations), and on a loaded machine its threads compete with everything else; compare sides
with the full sizes on a quiet machine (issue 22 quotes 0.62-0.81x PyTorch eager on a quiet 2-core
CPU for these students).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
TEACHER_CELL = (3, 3, 3, 3, 3, 3)  # every edge a 3x3 convolution


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--quick", action="store_true", help="C=4, N=1, 4 students, 2 steps, 2 rounds")
  p.add_argument("--channels", type=int, default=None)
  p.add_argument("--num-cells", type=int, default=None)
  p.add_argument("--students", type=int, default=None)
  p.add_argument("--steps", type=int, default=None, help="training steps per student per round")
  p.add_argument("--rounds", type=int, default=None)
  p.add_argument("--batch", type=int, default=128)
  p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args(argv)
  defaults = dict(channels=4, num_cells=1, students=4, steps=2, rounds=2) if args.quick else \
      dict(channels=16, num_cells=5, students=8, steps=4, rounds=3)
  for k, v in defaults.items():
    if getattr(args, k) is None:
      setattr(args, k, v)
  return args


def torch_network(cell, channels: int, num_cells: int, num_classes: int = 10):
  """NB201Network (jdanas/spaces/nb201.py) in PyTorch: stem conv + BN, 3 stages of ``num_cells``
  cells (channels C, 2C, 4C) with residual reduction blocks between them, BN-ReLU, global average
  pool, linear classifier."""
  import torch
  from torch import nn

  def relu_conv_bn(c_in, c_out, k, stride=1):
    return nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, c_out, k, stride, (k - 1) // 2, bias=False),
                         nn.BatchNorm2d(c_out, eps=1e-5, momentum=0.1))

  class Cell(nn.Module):
    def __init__(self, c):
      super().__init__()
      self.ops = nn.ModuleDict()
      for e, (j, i) in enumerate(EDGES):
        op = OPS[cell[e]]
        if op == "nor_conv_1x1":
          self.ops[f"{j}{i}"] = relu_conv_bn(c, c, 1)
        elif op == "nor_conv_3x3":
          self.ops[f"{j}{i}"] = relu_conv_bn(c, c, 3)
        elif op == "avg_pool_3x3":
          self.ops[f"{j}{i}"] = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        elif op == "skip_connect":
          self.ops[f"{j}{i}"] = nn.Identity()

    def forward(self, x):
      nodes = [x]
      for j in (1, 2, 3):
        outs = [self.ops[f"{j}{i}"](nodes[i]) for i in range(j) if f"{j}{i}" in self.ops]
        nodes.append(sum(outs) if outs else torch.zeros_like(x))
      return nodes[3]

  class Reduction(nn.Module):
    def __init__(self, c_in, c_out):
      super().__init__()
      self.a, self.b = relu_conv_bn(c_in, c_out, 3, 2), relu_conv_bn(c_out, c_out, 3)
      self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x):
      return self.shortcut(x) + self.b(self.a(x))

  layers = [nn.Conv2d(3, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)]
  for s in range(3):
    c = channels * 2 ** s
    if s > 0:
      layers.append(Reduction(c // 2, c))
    layers += [Cell(c) for _ in range(num_cells)]
  c = channels * 4
  layers += [nn.BatchNorm2d(c, eps=1e-5, momentum=0.1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
             nn.Linear(c, num_classes)]
  return nn.Sequential(*layers)


def build_sides(args) -> dict:
  """The two sides of the comparison for ``args`` (:func:`parse_args`): ``{"jdanas": round_fn,
  "pytorch": round_fn, "warmup": fn, "work": examples per round, "common": the sizes}``. A round
  function trains every student ``args.steps`` steps and returns the training seconds; ``warmup()``
  is the first jdanas call (it compiles) and returns ``(result, wall seconds)``. Also used by
  ``bench/probes/xla_cpu_flags.py``, whose workers each run one side under their own ``XLA_FLAGS``."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import torch
  import torch.nn.functional as F

  from jdanas.data import synthetic_dataset
  from jdanas.distill.losses import KD_PRESETS
  from jdanas.spaces import get_space
  from jdanas.teachers import Teacher
  from jdanas.train import PopulationTrainer, Recipe

  if args.threads:
    torch.set_num_threads(args.threads)
  space = get_space("nb201", channels=args.channels, num_cells=args.num_cells)
  rng = np.random.default_rng(args.seed)
  cells = []
  while len(cells) < args.students:
    c = tuple(int(v) for v in rng.integers(0, len(OPS), 6))
    if c not in cells:
      cells.append(c)
  encs = [np.asarray(c, np.int32) for c in cells]
  data = synthetic_dataset(image_size=32, num_classes=10, num_train=max(8 * args.batch, 1024), num_val=128,
                           num_test=16, seed=args.seed)
  loss = KD_PRESETS["repdistiller"]
  recipe = Recipe(steps=args.steps, batch_size=args.batch, optimizer="adam", learning_rate=1e-3, weight_decay=0.0,
                  schedule="constant", augment=False, loss=loss, eval_batch_size=128)
  t_enc = np.asarray(TEACHER_CELL, np.int32)
  t_module = space.build(space.signature(t_enc), 10)
  t_vars = t_module.init(jax.random.key(args.seed + 1), jnp.zeros((1, 32, 32, 3)), t_enc, train=False)
  teacher = Teacher(name="nb201-teacher", module=t_module, variables=t_vars, num_classes=10,
                    input_shape=(32, 32, 3), meta={"init": "random"})
  trainer = PopulationTrainer(space, data, recipe=recipe, teacher=teacher, strategy="auto")

  # PyTorch side: the same networks (parameter counts checked), the same data and loss.
  nets = [torch_network(c, args.channels, args.num_cells) for c in cells]
  t_net = torch_network(TEACHER_CELL, args.channels, args.num_cells).eval()
  for c, enc, net in zip(cells, encs, nets):
    shapes = jax.eval_shape(lambda e=enc: space.build(space.signature(e), 10).init(
        jax.random.key(0), jnp.zeros((1, 32, 32, 3)), e, train=False))
    n_jax = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes["params"]))
    n_torch = sum(p.numel() for p in net.parameters())
    if n_jax != n_torch:
      raise SystemExit(f"parameter counts differ for cell {c}: jdanas {n_jax}, pytorch {n_torch}")
  mean, std = np.asarray(data.mean, np.float32), np.asarray(data.std, np.float32)
  images = torch.from_numpy(((np.asarray(data.train.x, np.float32) / 255.0 - mean) / std).transpose(0, 3, 1, 2).copy())
  labels = torch.from_numpy(np.asarray(data.train.y, np.int64))
  temp = loss.temperature

  def torch_round() -> float:
    t0 = time.perf_counter()
    for net in nets:
      net.train()
      opt = torch.optim.Adam(net.parameters(), lr=1e-3)
      order = np.random.default_rng(args.seed)
      for _ in range(args.steps):
        idx = torch.from_numpy(order.integers(0, len(labels), args.batch))
        x, y = images[idx], labels[idx]
        with torch.no_grad():
          t_logits = t_net(x)
        s_logits = net(x)
        kl = F.kl_div(F.log_softmax(s_logits / temp, -1), F.softmax(t_logits / temp, -1), reduction="batchmean")
        objective = loss.hard_weight * F.cross_entropy(s_logits, y) + loss.soft_weight * temp ** 2 * kl
        opt.zero_grad(set_to_none=True)
        objective.backward()
        opt.step()
    return time.perf_counter() - t0

  key = jax.random.key(args.seed)

  def warmup():
    t0 = time.perf_counter()
    result = trainer.train(key, encs)
    return result, time.perf_counter() - t0

  common = {"channels": args.channels, "num_cells": args.num_cells, "students": args.students,
            "steps": args.steps, "batch": args.batch, "backend": jax.default_backend(), "cpu_count": os.cpu_count()}
  return {"jdanas": lambda: trainer.train(key, encs).train_seconds, "pytorch": torch_round, "warmup": warmup,
          "work": args.students * args.steps * args.batch, "common": common}


def main(argv=None) -> None:
  args = parse_args(argv)
  import jax
  import torch

  sides = build_sides(args)
  work = sides["work"]
  warm, jax_warm_s = sides["warmup"]()
  sides["pytorch"]()
  samples = {"jdanas": [], "pytorch": []}
  for r in range(args.rounds):
    for side in (("jdanas", "pytorch") if r % 2 == 0 else ("pytorch", "jdanas")):
      samples[side].append(work / sides[side]())
    print(f"[vs_pytorch] round {r + 1}/{args.rounds}: jdanas {samples['jdanas'][-1]:.0f}, "
          f"pytorch {samples['pytorch'][-1]:.0f} examples/s", file=sys.stderr, flush=True)
  common = {**sides["common"], "rounds": args.rounds}
  med = {s: statistics.median(v) for s, v in samples.items()}
  print(json.dumps({"side": "jdanas", "examples_per_s": round(med["jdanas"], 2),
                    "samples": [round(v, 2) for v in samples["jdanas"]], "compile_s": round(warm.compile_seconds, 2),
                    "warmup_call_s": round(jax_warm_s, 2), "num_programs": len({g.key for g in warm.groups}),
                    "jax": jax.__version__, **common}), flush=True)
  print(json.dumps({"side": "pytorch", "examples_per_s": round(med["pytorch"], 2),
                    "samples": [round(v, 2) for v in samples["pytorch"]], "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(), **common}), flush=True)
  paired = statistics.median(a / b for a, b in zip(samples["jdanas"], samples["pytorch"]))
  print(json.dumps({"ratio": round(med["jdanas"] / med["pytorch"], 3), "ratio_paired": round(paired, 3),
                    "meaning": "jdanas examples/s / pytorch examples/s (same students, KD step, Adam, batch)",
                    **common}), flush=True)


if __name__ == "__main__":
  main()
