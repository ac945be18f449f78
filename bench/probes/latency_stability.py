"""How stable is a measured latency? Repeats :func:`jdanas.costs.latency_ms` on a few architectures.

AKD's reward (Liu et al., CVPR 2020; docs/methods/akd.md) can use the latency measured on the run's
own device. One measurement is already a median of ``repeats`` timed calls after a warm-up; this
script takes ``--measurements`` such measurements of each of ``--archs`` random architectures of the
``mobilenet`` space (and its smallest and largest corner) and reports their spread, which is what
the reward's per-architecture cache protects a search from.

Commands (from the repository root)::

  python bench/probes/latency_stability.py                 # 6 architectures x 5 measurements, batch 1
  python bench/probes/latency_stability.py --quick         # 2 architectures x 3 measurements, 5 repeats

Output: one JSON line per architecture (``arch``, ``flops``, ``min_ms``, ``median_ms``, ``max_ms``,
``spread`` = (max - min) / median, the individual measurements) and a summary line with the
largest relative spread and whether the median latencies rank the architectures like their FLOPs
(Kendall tau). The protocol (batch, warm-up, repeats) and the device are in every line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--quick", action="store_true", help="2 architectures x 3 measurements of 5 repeats")
  p.add_argument("--archs", type=int, default=4, help="random architectures (plus the two corners)")
  p.add_argument("--measurements", type=int, default=5, help="latency_ms calls per architecture")
  p.add_argument("--repeats", type=int, default=20, help="timed forward calls inside one measurement")
  p.add_argument("--batch-size", type=int, default=1)
  p.add_argument("--base-width", type=float, default=0.25, help="mobilenet space base width")
  p.add_argument("--seed", type=int, default=0)
  return p.parse_args(argv)


def main(argv=None) -> None:
  args = parse_args(argv)
  if args.quick:
    args.archs, args.measurements, args.repeats = 0, 3, 5
  import jax
  import numpy as np
  from scipy.stats import kendalltau

  from jdanas import costs
  from jdanas.spaces import get_space

  space = get_space("mobilenet", base_width=args.base_width)
  n = np.asarray(space.num_choices)
  rng = np.random.default_rng(args.seed)
  encs = [np.zeros(len(n), np.int32), (n - 1).astype(np.int32)]
  encs += [rng.integers(0, n).astype(np.int32) for _ in range(args.archs)]
  device = jax.devices()[0]
  protocol = {"batch_size": args.batch_size, "warmup_calls": 1, "repeats": args.repeats, "statistic": "median",
              "device": f"{device.platform}:{device.device_kind}", "load_average_1m": os.getloadavg()[0]}
  rows = []
  for enc in encs:
    t0 = time.perf_counter()
    ms = [costs.latency_ms(space, enc, num_classes=10, batch_size=args.batch_size, repeats=args.repeats)
          for _ in range(args.measurements)]
    flops = costs.model_costs(space, enc, num_classes=10).flops
    med = float(np.median(ms))
    row = {"bench": "latency_stability", "arch": space.decode(enc), "flops": flops, "min_ms": min(ms),
           "median_ms": med, "max_ms": max(ms), "spread": (max(ms) - min(ms)) / med, "measurements_ms": ms,
           "seconds": time.perf_counter() - t0, **protocol}
    rows.append(row)
    print(json.dumps(row), flush=True)
  tau = kendalltau([r["median_ms"] for r in rows], [r["flops"] for r in rows]).statistic
  print(json.dumps({"bench": "latency_stability", "summary": True, "architectures": len(rows),
                    "measurements": args.measurements, "max_spread": max(r["spread"] for r in rows),
                    "median_spread": float(np.median([r["spread"] for r in rows])),
                    "kendall_tau_latency_vs_flops": float(tau), **protocol}), flush=True)


if __name__ == "__main__":
  main()
