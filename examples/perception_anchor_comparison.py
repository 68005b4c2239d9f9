"""The Gaussian-anchored perception run beside the literal (paper's) networks: tables, checks and learning curves.

  python -m examples.perception_anchor_comparison --anchored=docs/results/perception_quick_anchored \
      --literal=docs/results/perception_quick_gpu

Writes ``comparison.md`` and ``fig_learning_curves_vs_literal.png`` into the anchored folder. The Gaussian
predictor's own losses (where each anchored model starts, :func:`jaxchan.experiments.perception_eval.anchor_losses`)
are taken from the anchored run's ``bounds`` or, for a run that predates them, computed here on its datasets
and saved as ``anchor_losses.json``.
"""

import json
import os

from absl import app, flags
import ml_collections

from jaxchan import files
from jaxchan.experiments import perception, perception_eval, perception_report

ANCHORED = flags.DEFINE_string("anchored", None, "folder of the anchored run's results.json", required=True)
LITERAL = flags.DEFINE_string("literal", None, "folder of the literal run's results.json", required=True)


def main(_):
  with open(os.path.join(ANCHORED.value, "results.json")) as f:
    anchored = json.load(f)
  with open(os.path.join(LITERAL.value, "results.json")) as f:
    literal = json.load(f)
  config = ml_collections.ConfigDict(anchored["config"])
  extra = {}
  for sc, r in anchored["scenarios"].items():
    if "sl_gaussian_predictor" not in (r.get("bounds") or {}):
      with perception.open_scenario(config, sc) as ds:
        extra[sc] = perception_eval.anchor_losses(config, ds)
      print(sc, extra[sc], flush=True)
  if extra:
    files.atomic_write_json(os.path.join(ANCHORED.value, "anchor_losses.json"), extra)
  files.atomic_write_text(os.path.join(ANCHORED.value, "comparison.md"),
                          perception_report.anchor_comparison(anchored, literal, extra))
  perception_report.plot_learning_curves(anchored, os.path.join(ANCHORED.value, "fig_learning_curves_vs_literal.png"),
                                         reference=literal, labels=("anchored", "literal"), bounds=extra)
  print(open(os.path.join(ANCHORED.value, "comparison.md")).read())


if __name__ == "__main__":
  app.run(main)
