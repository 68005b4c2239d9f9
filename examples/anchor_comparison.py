"""The Gaussian-anchored non-identical run beside the literal (paper's) networks: tables and learning curves.

  python -m examples.anchor_comparison --anchored=docs/results/noniden_quick_anchored \
      --literal=docs/results/noniden_quick

Writes ``comparison.md`` and ``fig_learning_curves_vs_literal.png`` into the anchored folder, from the two
``results.json`` files alone (jaxchan.experiments.noniden_report.anchor_comparison / plot_learning_curves).
"""

import json
import os

from absl import app, flags

from jaxchan import files
from jaxchan.experiments import noniden_report

ANCHORED = flags.DEFINE_string("anchored", None, "folder of the anchored run's results.json", required=True)
LITERAL = flags.DEFINE_string("literal", None, "folder of the literal run's results.json", required=True)


def main(_):
  with open(os.path.join(ANCHORED.value, "results.json")) as f:
    anchored = json.load(f)
  with open(os.path.join(LITERAL.value, "results.json")) as f:
    literal = json.load(f)
  files.atomic_write_text(os.path.join(ANCHORED.value, "comparison.md"),
                          noniden_report.anchor_comparison(anchored, literal))
  noniden_report.plot_learning_curves(anchored, os.path.join(ANCHORED.value, "fig_learning_curves_vs_literal.png"),
                                      reference=literal, labels=("anchored", "literal"))
  print(open(os.path.join(ANCHORED.value, "comparison.md")).read())


if __name__ == "__main__":
  app.run(main)
