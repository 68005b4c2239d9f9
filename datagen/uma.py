"""Build a channel dataset with Sionna's 3GPP TR 38.901 UMa/UMi model.

  python -m datagen.uma --preset=NAME --out=PATH [--size=tiny|small|full]
      [--num_train=N --num_test=N] [--seed=S] [--shard=i/n] [--set FIELD=VALUE ...]

Rerunning an interrupted command resumes it; a finished file is never rewritten.
"""

from __future__ import annotations

import argparse
import sys

from datagen import cli, presets, sionna_source, store


def parse_args(argv=None):
  p = argparse.ArgumentParser(prog="python -m datagen.uma", description=__doc__ + "\n" + presets.help_text("uma"),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--preset", required=True, choices=presets.names("uma"),
                 help="dataset preset (see above; ray-traced presets: python -m datagen.rt)")
  p.add_argument("--out", required=True, help="output HDF5 path")
  p.add_argument("--size", default="small", choices=["tiny", "small", "full"],
                 help="tiny: seconds, for tests; small: minutes on a laptop CPU; full: the paper's size")
  p.add_argument("--num_train", type=int, help="override the training-set size")
  p.add_argument("--num_test", type=int, help="override the test-set size")
  p.add_argument("--seed", type=int, default=0, help="base seed; same seed, same file (bit-identical)")
  p.add_argument("--batch_size", type=int, help="samples per Sionna call (part of the seeding: keep it fixed)")
  p.add_argument("--scenario", choices=["uma", "umi"], help="38.901 scenario (default: the preset's)")
  p.add_argument("--shard", help="i/n: build only part i of n (disjoint, independently seeded); join the parts "
                 "with python -m datagen.merge")
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                 help="override any scenario field of the preset, e.g. --set speed_outdoor_kmh=120")
  p.add_argument("--no_progress", action="store_true")
  return p.parse_args(argv)


def config_from_args(args) -> dict:
  extra = {}
  for item in args.set:
    if "=" not in item:
      raise ValueError(f"--set {item!r} must look like FIELD=VALUE.")
    k, v = item.split("=", 1)
    extra[k] = v
  return presets.get(args.preset, args.size, num_train=args.num_train, num_test=args.num_test, seed=args.seed,
                     batch_size=args.batch_size, scenario=args.scenario, **extra)


def main(argv=None):
  args = parse_args(argv)
  try:
    cfg = config_from_args(args)
    shard = store.parse_shard(args.shard)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return cli.write_once(args.out, lambda: store.build(
      args.out, cfg, sionna_source.generate, shard=shard, generator=sionna_source.sionna_version(),
      progress=not args.no_progress))

if __name__ == "__main__":
  sys.exit(main())
