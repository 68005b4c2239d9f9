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

NAMES = ("noniden", "perception", "perception_oracle", "mobility", "sampler_study")
_DIR = os.path.dirname(os.path.abspath(__file__))


def get(spec: str):
  """The ConfigDict of ``"NAME[:VARIANTS]"``, e.g. ``"perception:quick,high_mobility"``."""
  name, _, variant = str(spec).partition(":")
  if name.endswith(".py"):
    name = os.path.splitext(os.path.basename(name))[0]
  if name not in NAMES:
    raise ValueError(f"unknown config {name!r}; available: {', '.join(NAMES)}.")
  return importlib.import_module(f"configs.{name}").get_config(variant)


def describe() -> str:
  """Every config with its variants (the module docstrings), read without importing them."""
  parts = []
  for name in NAMES:
    with open(os.path.join(_DIR, f"{name}.py")) as f:
      doc = ast.get_docstring(ast.parse(f.read())) or ""
    parts.append(f"configs/{name}.py: {doc.strip()}")
  return "\n\n".join(parts)
