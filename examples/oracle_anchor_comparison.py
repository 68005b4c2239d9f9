"""The exact-posterior experiment's anchored run beside the paper's networks: SE ratios to the exact precoders per
SNR, and the learning curves.

  python -m examples.oracle_anchor_comparison --anchored=docs/results/perception_oracle_mixture \
      --gaussian=docs/results/perception_oracle_anchored \
      --literal=docs/results/perception_oracle/short_training --literal_full=docs/results/perception_oracle

Writes ``comparison.md`` and ``fig_learning_curves.png`` into the anchored folder, from the ``results.json``
files alone (jaxchan.experiments.perception_oracle_report.anchor_comparison / plot_learning_curves).
"""

import json
import os

from absl import app, flags

from jaxchan import files
from jaxchan.experiments import perception_oracle_report

ANCHORED = flags.DEFINE_string("anchored", None, "folder of the anchored run's results.json", required=True)
GAUSSIAN = flags.DEFINE_string("gaussian", None, "folder of a run anchored on the one Gaussian (optional)")
LITERAL = flags.DEFINE_string("literal", None, "folder of the paper's network trained as long", required=True)
LITERAL_FULL = flags.DEFINE_string("literal_full", None, "folder of the paper's network trained longer (optional)")


#: How each run's anchor (config.learned.anchor) is named in the tables.
ANCHOR_LABELS = {"mixture": "anchored on the EM-fitted mixture", "prior": "anchored on the Gaussian",
                 "none": "paper's network"}


def runs(anchored: str, literal: str, literal_full: str | None, gaussian: str | None = None) -> dict:
  out = {}
  for folder, what in ((anchored, ""), (gaussian, ""), (literal, ", same training"), (literal_full, ", 3x training")):
    if folder:
      with open(os.path.join(folder, "results.json")) as f:
        res = json.load(f)
      e = res["config"]["learned"]["epochs"]
      label = ANCHOR_LABELS[res["config"]["learned"].get("anchor", "none")]
      out[f"{label}{what} ({e['sl']} / {e['dm']} epochs)"] = res
  return out


def main(_):
  r = runs(ANCHORED.value, LITERAL.value, LITERAL_FULL.value, GAUSSIAN.value)
  files.atomic_write_text(os.path.join(ANCHORED.value, "comparison.md"), perception_oracle_report.anchor_comparison(r))
  perception_oracle_report.plot_learning_curves(r, os.path.join(ANCHORED.value, "fig_learning_curves.png"))


if __name__ == "__main__":
  app.run(main)
