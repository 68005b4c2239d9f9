"""Re-render a finished run's tables and figures from its ``results.json``, without retraining.

  python -m jaxchan.experiments.report WORKDIR [WORKDIR ...]

Each experiment's tables and figures are pure functions of its results
(``jaxchan.experiments.<name>_report.render``), so a change to a table or a figure
never needs the models again.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

import numpy as np

# experiment name -> its report module (same names as jaxchan.experiments.REGISTRY).
REPORTS = {name: f"jaxchan.experiments.{name}_report"
           for name in ("noniden", "perception", "sampler_study", "mobility", "perception_oracle", "noniden_srs")}


def render(workdir: str) -> str:
  """Rewrite ``workdir``'s tables and figures from its ``results.json``; returns the experiment's name."""
  path = os.path.join(workdir, "results.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: {workdir} holds no finished run (run.py writes results.json last).")
  with open(path) as f:
    results = json.load(f)
  name = results.get("config", {}).get("experiment")
  if name not in REPORTS:
    raise ValueError(f"{path}: config.experiment={name!r} has no report; known: {', '.join(sorted(REPORTS))}.")
  importlib.import_module(REPORTS[name]).render(results, workdir)
  return name


def steps_to_bound(history: list[dict], bound: float) -> dict:
  """Adam steps at which a test-loss curve reaches ``bound``: measured, or extrapolated by a power law.

  Measured: the first recorded step whose test loss is at or below the bound. Otherwise the power law
  ``loss = a * step^-b`` is fitted by least squares in log-log space to the last half of the records and solved
  for the bound (``None`` when the fitted curve does not fall, or for a loss that is not positive, such as the
  E2E model's negative captured energy). The law has no floor, so the extrapolation is a lower estimate of the
  steps a curve that flattens would need.
  """
  steps = np.array([h["step"] for h in history], float)
  loss = np.array([h["test_loss"] for h in history], float)
  hit = np.nonzero(loss <= bound)[0]
  if len(hit):
    return {"steps": int(steps[hit[0]]), "how": "measured"}
  if bound <= 0 or np.any(loss <= 0):
    return {"steps": None, "how": "not reached; no power law for a non-positive loss"}
  tail = slice(len(steps) // 2, None)
  slope, icpt = np.polyfit(np.log(steps[tail]), np.log(loss[tail]), 1)
  if slope >= 0:
    return {"steps": None, "how": "not falling"}
  return {"steps": float(np.exp((np.log(bound) - icpt) / slope)), "how": f"power law, exponent {slope:.3f}"}


def headline(results: dict) -> str:
  """The report module's ``headline(results)`` (a few lines of the main numbers), or ``""`` if it has none."""
  name = results.get("config", {}).get("experiment")
  module = importlib.import_module(REPORTS[name]) if name in REPORTS else None
  return module.headline(results) if module is not None and hasattr(module, "headline") else ""


def main(argv=None):
  """``jaxchan-report WORKDIR...`` / ``python -m jaxchan.experiments.report WORKDIR...``."""
  argv = sys.argv if argv is None else argv
  if len(argv) < 2 or argv[1] in ("-h", "--help"):
    print(__doc__.strip())
    return 0 if len(argv) >= 2 else 2
  for wd in argv[1:]:
    try:
      name = render(wd)
    except (FileNotFoundError, ValueError) as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
    print(f"{wd}: {name} tables and figures re-rendered")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
