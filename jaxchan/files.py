"""Crash-safe result writing: every file is written to a temporary name, then renamed."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def atomic_write_bytes(path: str, data: bytes) -> None:
  """Write ``data`` to ``path`` so that readers only ever see a complete file."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
  try:
    # mkstemp creates the file 0600 and the rename keeps that; give it the mode a plain open() would
    # (0666 less the umask), so a shared workdir stays readable by its group.
    os.fchmod(fd, 0o666 & ~_umask())
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def atomic_write_text(path: str, text: str) -> None:
  atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_npz(path: str, arrays: dict) -> None:
  """``np.savez`` of ``arrays`` to ``path``, atomically (the same guarantee as :func:`atomic_write_bytes`)."""
  import io
  import numpy as np
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  atomic_write_bytes(path, buf.getvalue())


def atomic_write_json(path: str, obj: Any) -> None:
  atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_save_figure(fig, path: str, *, vector: bool = True, **kwargs) -> None:
  """Save a matplotlib figure atomically as PNG (``path``) and, with ``vector``, as PDF beside it (same name)."""
  import io as _io
  buf = _io.BytesIO()
  fig.savefig(buf, format=kwargs.pop("format", "png"), **kwargs)
  atomic_write_bytes(path, buf.getvalue())
  if vector and path.endswith(".png"):
    buf = _io.BytesIO()
    fig.savefig(buf, format="pdf", **{k: v for k, v in kwargs.items() if k != "dpi"})
    atomic_write_bytes(path[:-4] + ".pdf", buf.getvalue())


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
  """A GitHub-flavoured markdown table."""
  fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
  return "\n".join(lines) + "\n"
