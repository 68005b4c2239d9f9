"""Join shard files made with ``python -m datagen.uma --shard=i/n`` into one dataset.

  python -m datagen.merge --out=PATH SHARD_FILE [SHARD_FILE ...]

The result is bit-identical to building the dataset in one process.
"""

import argparse
import sys

from datagen import store


def main(argv=None):
  p = argparse.ArgumentParser(prog="python -m datagen.merge", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--out", required=True)
  p.add_argument("shards", nargs="+")
  args = p.parse_args(argv)
  try:
    store.merge(args.out, args.shards)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
