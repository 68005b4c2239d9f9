"""Join shard files made with ``python -m datagen.uma --shard=i/n`` into one dataset.

  python -m datagen.merge --out=PATH SHARD_FILE [SHARD_FILE ...]

The result is bit-identical to building the dataset in one process.
"""

import argparse
import sys

from datagen import cli, store


def main(argv=None):
  p = argparse.ArgumentParser(prog="python -m datagen.merge", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--out", required=True)
  p.add_argument("shards", nargs="+")
  args = p.parse_args(argv)
  return cli.write_once(args.out, lambda: store.merge(args.out, args.shards))

if __name__ == "__main__":
  sys.exit(main())
