"""The non-identical results on two datasets side by side, next to the paper's Table III ("All") on DeepMIMO O1.

  python -m examples.noniden_datasets_table UMA_RESULTS.json RT_RESULTS.json

Reads two ``results.json`` written by ``run.py --config=configs/noniden.py:quick[,raytraced]`` and prints a markdown
table: per initial-noise pattern, LMMSE (training-set sample covariance), the one-shot estimate D(g0, tau0) and the
final generation NMSE of the main model (defaults: eta = 1, consistent start, tau water-filling).
"""

import json
import sys

PATTERNS = ("white", "exp", "salt", "salt_rec", "pilot", "pilot_car")
# The paper's Table III, row "All" (tau water-filling, its main model), on O1.
PAPER_O1 = dict(white=0.156, exp=0.092, salt=0.170, salt_rec=0.135, pilot=0.342, pilot_car=0.187)


def rows_of(results: dict, label: str) -> list[list[str]]:
  g, ev = results["generation"], results["config"]["eval"]
  main = ev.get("main_model", "nonid")
  final = {r["pattern"]: r["final_nmse"] for r in g["rows"]
           if r["model"] == main and r["sampler"] == ev["samplers"][0] and r["stepping"] == "tau-waterfilling"
           and r.get("start", g.get("start")) == g.get("start")}
  fmt = lambda d: [f"{d[p]:.3f}" if p in d else "-" for p in PATTERNS]  # noqa: E731
  return [[f"{label}: LMMSE"] + fmt(g["lmmse_nmse"]), [f"{label}: one-shot D(g0, tau0)"] + fmt(g["one_shot_nmse"]),
          [f"{label}: generation (final)"] + fmt(final), [f"{label}: raw start"] + fmt(g["raw_start_nmse"])]


def table(named: dict) -> str:
  head = ["NMSE"] + list(PATTERNS)
  body = [["paper, O1: generation (Table III, All)"] + [f"{PAPER_O1[p]:.3f}" for p in PATTERNS]]
  for label, res in named.items():
    body += rows_of(res, label)
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])


if __name__ == "__main__":
  if len(sys.argv) != 3:
    sys.exit(__doc__)
  print(table({"UMa (simo_ofdm)": json.load(open(sys.argv[1])), "ray-traced (street_canyon)": json.load(open(sys.argv[2]))}))
