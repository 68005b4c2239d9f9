"""What every datagen command does around its work: skip finished files, report errors as one line."""

from __future__ import annotations

import os
import sys
from typing import Callable


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
