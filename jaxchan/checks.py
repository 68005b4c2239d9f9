"""Input validation shared by the kernels.

Kernels are traced by ``jax.jit``; every check here runs in Python at trace
time, on static information (shapes, names, Python numbers) or on concrete
arrays. Values that are only known inside a traced computation cannot raise, so
public entry points check concrete inputs *before* they enter ``jit``.
"""

from __future__ import annotations

from typing import Iterable

import jax
import numpy as np


def is_concrete(x) -> bool:
  """True when ``x`` holds known values (not an abstract tracer)."""
  return not isinstance(x, jax.core.Tracer)


def choice(name: str, value, allowed: Iterable[str]):
  """Raise unless ``value`` is one of ``allowed``."""
  allowed = tuple(allowed)
  if value not in allowed:
    raise ValueError(f"{name}={value!r} is not supported; allowed values: {', '.join(map(repr, allowed))}.")
  return value


def in_range(name: str, value, lo: float, hi: float, *, hint: str = ""):
  """Raise unless every concrete entry of ``value`` lies in ``[lo, hi]`` (NaN fails too)."""
  if value is None or not is_concrete(value):
    return value
  arr = np.asarray(value)
  if arr.size == 0:
    return value
  bad = ~((arr >= lo) & (arr <= hi))
  if np.any(bad):
    first = arr[bad].flat[0]
    msg = (f"{name} must lie in [{lo}, {hi}]; got {first!r}"
           f"{' (and ' + str(int(bad.sum()) - 1) + ' more out-of-range entries)' if bad.sum() > 1 else ''}.")
    if hint:
      msg += " " + hint
    raise ValueError(msg)
  return value


def positive_int(name: str, value) -> int:
  if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
    raise ValueError(f"{name} must be a positive integer; got {value!r}.")
  return int(value)


def same_shape(name_a: str, a, name_b: str, b):
  """Raise unless ``a`` and ``b`` have identical shapes (no silent broadcasting)."""
  sa, sb = np.shape(a), np.shape(b)
  if tuple(sa) != tuple(sb):
    raise ValueError(f"{name_a} has shape {tuple(sa)} but {name_b} has shape {tuple(sb)}; "
                     "they must match exactly (no broadcasting).")


def min_ndim(name: str, x, ndim: int, layout: str):
  if np.ndim(x) < ndim:
    raise ValueError(f"{name} must have at least {ndim} dimensions laid out as {layout}; "
                     f"got shape {tuple(np.shape(x))}.")
