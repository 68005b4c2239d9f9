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
  cli.add_build_args(p, size_help="tiny: seconds, for tests; small: minutes on a laptop CPU; full: the paper's size",
                     batch_help="samples per Sionna call (part of the seeding: keep it fixed)")
  p.add_argument("--scenario", choices=["uma", "umi"], help="38.901 scenario (default: the preset's)")
  return p.parse_args(argv)


def config_from_args(args) -> dict:
  return presets.get(args.preset, args.size, num_train=args.num_train, num_test=args.num_test, seed=args.seed,
                     batch_size=args.batch_size, scenario=args.scenario, **cli.parse_sets(args.set))


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
