"""Experiments runnable from ``run.py``, registered by name.

Each experiment module exposes ``run(config, workdir) -> dict`` and writes its
results (``results.json``, markdown tables, PNG figures) into ``workdir``.
"""

from __future__ import annotations

import importlib

# name -> module path. Experiments are imported lazily so that a missing
# optional dependency of one does not break the others.
REGISTRY = {
    "sampler_study": "jaxchan.experiments.sampler_study",
    "noniden": "jaxchan.experiments.noniden",
    "perception": "jaxchan.experiments.perception",
    "mobility": "jaxchan.experiments.mobility",
    "perception_oracle": "jaxchan.experiments.perception_oracle",
    "noniden_srs": "jaxchan.experiments.noniden_srs",
}


def get(name: str):
  if name not in REGISTRY:
    raise ValueError(f"config.experiment={name!r} is unknown; registered experiments: "
                     f"{', '.join(sorted(REGISTRY))}.")
  return importlib.import_module(REGISTRY[name])
