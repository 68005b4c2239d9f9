"""``jaxchan-datagen COMMAND [flags]`` (or ``python -m datagen COMMAND``): one front door to the dataset builders.

Commands: ``uma`` (Sionna 38.901 build), ``rt`` (ray-traced build, Sionna RT), ``merge`` (join ``--shard`` parts),
``from_numpy`` (import your own arrays or .npy/.npz/.mat files). ``jaxchan-datagen COMMAND --help`` shows a
command's flags; ``python -m datagen.COMMAND`` is the same command.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {"uma": "Sionna 3GPP TR 38.901 UMa datasets (presets)",
            "rt": "ray-traced datasets (Sionna RT scenes)",
            "merge": "join the shard files of a --shard build",
            "from_numpy": "import your own channels (.npy, .npz, .mat or in-memory arrays)"}


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] in ("-h", "--help", "help"):
    print(__doc__.strip() + "\n\n" + "\n".join(f"  {k:<11} {v}" for k, v in COMMANDS.items()))
    return 0 if argv else 2
  cmd, rest = argv[0], argv[1:]
  if cmd not in COMMANDS:
    print(f"error: unknown command {cmd!r}; choose one of {', '.join(COMMANDS)}.", file=sys.stderr)
    return 2
  return importlib.import_module(f"datagen.{cmd}").main(rest) or 0


if __name__ == "__main__":
  sys.exit(main())
