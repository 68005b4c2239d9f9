"""Build a ray-traced channel dataset with Sionna RT (a stand-in for DeepMIMO O1).

  python -m datagen.rt --preset=NAME --out=PATH [--size=tiny|small|full]
      [--num_train=N --num_test=N] [--seed=S] [--shard=i/n] [--set FIELD=VALUE ...]

Same file layout and guarantees as ``python -m datagen.uma``'s ``simo_ofdm`` (``h``
``[N, 32, 64]``, unit power per sample): allocate-then-fill, rerunning an interrupted
command resumes it, shards merge bit-identically (``python -m datagen.merge``), the
config and versions are recorded in the file. Users that receive no path are dropped,
counted and replaced, never stored as zeros.

On a CPU, Sionna RT needs libLLVM >= 16 (Debian/Ubuntu: ``apt-get install libllvm19``);
it is found in the usual places or taken from ``DRJIT_LIBLLVM_PATH``. With an NVIDIA
driver, Sionna RT uses Dr.Jit's CUDA backend instead, which needs no LLVM (not tested here).
"""

from __future__ import annotations

import argparse
import sys

from datagen import cli, presets, rt_source, store


def parse_args(argv=None):
  p = argparse.ArgumentParser(prog="python -m datagen.rt", description=__doc__ + "\n" + presets.help_text("rt"),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--preset", required=True, help=f"ray-traced preset: {', '.join(presets.names('rt'))}")
  cli.add_build_args(p, size_help="tiny: a few dozen users, for tests; small: 8,000 / 2,000; full: 43,440 / 10,860",
                     batch_help="users per path-solver call (part of the seeding: keep it fixed)")
  return p.parse_args(argv)


def config_from_args(args) -> dict:
  if args.preset not in presets.names("rt"):
    hint = " (a 38.901 preset: build it with python -m datagen.uma)" if args.preset in presets.PRESETS else ""
    raise ValueError(f"--preset={args.preset!r} is not a ray-traced preset{hint}; choose one of: "
                     f"{', '.join(presets.names('rt'))}.")
  cfg = presets.get(args.preset, args.size, num_train=args.num_train, num_test=args.num_test, seed=args.seed,
                    batch_size=args.batch_size, **cli.parse_sets(args.set))
  rt_source.validate(cfg)
  return cfg


def main(argv=None):
  args = parse_args(argv)
  try:
    shard = store.parse_shard(args.shard)
    cfg = config_from_args(args)
  except (ValueError, RuntimeError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  status = cli.write_once(args.out, lambda: store.build(
      args.out, cfg, rt_source.generate, shard=shard, generator=rt_source.version(), progress=not args.no_progress))
  if rt_source.DROPPED["users"]:
    print(f"{rt_source.DROPPED['users']} drawn user positions received no path and were replaced")
  return status


if __name__ == "__main__":
  sys.exit(main())
