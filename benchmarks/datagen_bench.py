"""Datagen throughput: samples/s, and the share of wall time spent outside Sionna's channel generation.

  python -m benchmarks.datagen_bench [--preset=low_mobility] [--num=256] [--batch_size=64] [--out=FILE.json]

"Inside Sionna" is the time in the preset's generator: datagen.sionna_source.generate
(38.901 presets: building the arrays and topology to the OFDM channel, model
construction included) or datagen.rt_source.generate (ray-traced presets: path
solving and the frequency response); everything else (normalization, NaN checks,
part files, HDF5 assembly, rename) is overhead that the issue asks to keep under 10 %.
"""

import argparse
import json
import os
import platform
import tempfile
import time

from datagen import presets, sionna_source, store


def run(preset="low_mobility", num=256, batch_size=64) -> dict:
  cfg = presets.get(preset, "small", num_train=num, num_test=max(1, num // 4), batch_size=batch_size)
  if presets.source(preset) == "rt":
    from datagen import rt_source
    rt_source.validate(cfg)
    gen, timer, key, version = rt_source.generate, rt_source._TIMER, "rt_s", rt_source.version()
  else:
    gen, timer, key, version = (sionna_source.generate, sionna_source._TIMER, "sionna_s",
                                sionna_source.sionna_version())
  # Warm-up outside the measurement: imports, first-call initialization (scene loading, JIT).
  gen(cfg, 0, 2)
  timer[key] = 0.0
  with tempfile.TemporaryDirectory() as d:
    out = os.path.join(d, "bench.h5")
    t0 = time.perf_counter()
    store.build(out, cfg, gen, generator=version, progress=False)
    wall = time.perf_counter() - t0
    size = os.path.getsize(out)
  n = cfg["num_train"] + cfg["num_test"]
  inside = timer[key]
  return dict(benchmark="datagen", preset=preset, samples=n, batch_size=batch_size, wall_s=round(wall, 3),
              sionna_s=round(inside, 3), samples_per_s=round(n / wall, 2),
              overhead_share=round(1 - inside / wall, 4), file_mb=round(size / 2**20, 1),
              machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              generator=version)


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--preset", default="low_mobility")
  p.add_argument("--num", type=int, default=256, help="training samples (test set: a quarter)")
  p.add_argument("--batch_size", type=int, default=64)
  p.add_argument("--out", default=None, help="JSON file for the results")
  args = p.parse_args()
  res = run(args.preset, args.num, args.batch_size)
  print(json.dumps(res, indent=2))
  if args.out:
    from jaxchan import files
    files.atomic_write_json(args.out, res)


if __name__ == "__main__":
  main()
