"""What every datagen command does around its work: skip finished files, report errors as one line."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable


def add_build_args(p: argparse.ArgumentParser, *, size_help: str, batch_help: str) -> None:
  """The flags every dataset builder shares (output, size, seeds, shards, field overrides)."""
  p.add_argument("--out", required=True, help="output HDF5 path")
  p.add_argument("--size", default="small", choices=["tiny", "small", "full"], help=size_help)
  p.add_argument("--num_train", type=int, help="override the training-set size")
  p.add_argument("--num_test", type=int, help="override the test-set size")
  p.add_argument("--seed", type=int, default=0, help="base seed; same seed, same file (bit-identical)")
  p.add_argument("--batch_size", type=int, help=batch_help)
  p.add_argument("--shard", help="i/n: build only part i of n (disjoint, independently seeded); join the parts "
                 "with python -m datagen.merge")
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                 help="override any field of the preset (see its description)")
  p.add_argument("--no_progress", action="store_true")


def parse_sets(items) -> dict:
  """``["FIELD=VALUE", ...]`` from ``--set`` as a dict (values stay strings; presets.get casts them)."""
  out = {}
  for item in items:
    if "=" not in item:
      raise ValueError(f"--set {item!r} must look like FIELD=VALUE.")
    k, v = item.split("=", 1)
    out[k] = v
  return out


def write_once(out: str, work: Callable[[], object]) -> int:
  """Run ``work()`` unless ``out`` exists; a ValueError becomes ``error: ...`` on stderr and exit status 2."""
  if os.path.exists(out):
    print(f"{out} already exists; nothing to do (delete it to rebuild).")
    return 0
  try:
    work()
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"wrote {out}")
  return 0
