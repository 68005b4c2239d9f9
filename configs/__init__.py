"""The experiment configs: one module per job, ``get_config(arg)`` -> ``ml_collections.ConfigDict``.

Run one with ``python run.py --config=configs/NAME.py[:VARIANT[,VARIANT]]``; load one in
Python (tests, notebooks, examples) with :func:`get`::

  import configs
  c = configs.get("noniden:smoke")      # same as --config=configs/noniden.py:smoke

Each module's docstring lists its variants (``python run.py --help`` prints them).
"""

from __future__ import annotations

import ast
import importlib
import os

NAMES = ("noniden", "perception", "perception_oracle", "noniden_srs", "mobility", "sampler_study")
_DIR = os.path.dirname(os.path.abspath(__file__))


def get(spec: str):
  """The ConfigDict of ``"NAME[:VARIANTS]"``, e.g. ``"perception:quick,high_mobility"``."""
  name, _, variant = str(spec).partition(":")
  if name.endswith(".py"):
    name = os.path.splitext(os.path.basename(name))[0]
  if name not in NAMES:
    raise ValueError(f"unknown config {name!r}; available: {', '.join(NAMES)}.")
  return importlib.import_module(f"configs.{name}").get_config(variant)


def variants(arg: str, config: str, allowed, *, exclusive=()) -> frozenset:
  """The comma-separated variants of ``arg`` (``"quick,high_mobility"``), each one of ``allowed``; at most one of
  ``exclusive``. A mistake is refused naming the variant, the config and the choices."""
  chosen = [v for v in (arg or "").split(",") if v]
  for v in chosen:
    if v not in allowed:
      raise ValueError(f"unknown variant {v!r} for configs/{config}.py; choose from {', '.join(sorted(allowed))} "
                       "(comma-separated" + (f"; at most one of {', '.join(exclusive)}" if exclusive else "") + ").")
  both = [v for v in exclusive if v in chosen]
  if len(both) > 1:
    raise ValueError(f"variants {' and '.join(repr(v) for v in both)} of configs/{config}.py exclude each other; "
                     "choose one.")
  return frozenset(chosen)


def describe() -> str:
  """Every config with its variants (the module docstrings), read without importing them."""
  parts = []
  for name in NAMES:
    with open(os.path.join(_DIR, f"{name}.py")) as f:
      doc = ast.get_docstring(ast.parse(f.read())) or ""
    parts.append(f"configs/{name}.py: {doc.strip()}")
  return "\n\n".join(parts)
