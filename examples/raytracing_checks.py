"""The two measurements behind street_canyon's ray-tracer settings.

  python -m examples.raytracing_checks        # about 1 minute on 2 CPU cores

1. Rays per call: 250 users traced with 10^5 and with 10^6 rays; time and the channels' energy in the top 1 / 3
   singular values (the preset uses 10^5).
2. Threads: one batch traced twice with Dr.Jit's default thread count and twice single-threaded; the largest
   relative difference between the two runs (the preset runs single-threaded, so builds are bit-identical).
"""

import os
import time

import numpy as np

from datagen import presets, rt_source
from examples.channel_sparsity import sparsity


def main():
  for rays in (10**5, 10**6):
    cfg = presets.get("street_canyon", "small", samples_per_src=rays)
    rt_source.generate(cfg, 0, 2)                      # scene loading and first compilation
    t = time.perf_counter()
    h = rt_source.generate(cfg, 1, 250)["h"]
    r = sparsity(h)
    print(f"{rays:>8} rays: {time.perf_counter() - t:.1f} s for 250 users, top 1 {r['top1']:.4f}, "
          f"top 3 {r['top3']:.4f}")
  cfg = presets.get("street_canyon", "tiny")
  for threads in (os.cpu_count(), 1):                # Dr.Jit's default is one thread per core
    runs = []
    for _ in range(2):
      pos = rt_source.positions(cfg, np.random.default_rng(0), 32)
      runs.append(rt_source._trace(cfg, pos, threads=threads))
    diff = np.max(np.abs(runs[0] - runs[1])) / np.max(np.abs(runs[0]))
    print(f"{threads} thread(s): largest difference between two runs of one batch, relative {diff:.1e}")


if __name__ == "__main__":
  main()
