"""Progress bars that suit where they are written.

On a terminal tqdm redraws the line several times a second; written to a file or a pipe (CI logs, ``nohup``,
a notebook's captured output) every redraw is a new chunk of text, so there the bar updates every
:data:`FILE_INTERVAL_S` seconds instead.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

#: Seconds between updates of a bar written to a file or pipe.
FILE_INTERVAL_S = 5.0


def bar(iterable=None, **kwargs):
  """``tqdm(iterable, **kwargs)`` with ``mininterval`` (and ``maxinterval``) set for a non-terminal stream."""
  stream = kwargs.get("file") or sys.stderr
  if not getattr(stream, "isatty", lambda: False)():
    kwargs.setdefault("mininterval", FILE_INTERVAL_S)
    kwargs.setdefault("maxinterval", max(FILE_INTERVAL_S, kwargs.get("maxinterval", 10.0)))
  return tqdm(iterable, **kwargs)
