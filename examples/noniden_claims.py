"""The non-identical paper's three claims, read from a finished job's ``results.json`` (eta = 1, consistent start).

Prints one markdown table: the main model with tau water-filling against identical diffusion (claim 1), the best of
the ten steppings and tau-uniform stepping (claim 2), the best training pattern of Table III (claim 3), then each
pattern's Table III ranking.

  python examples/noniden_claims.py docs/results/noniden_quick_raytraced_mixture/results.json
"""

import json
import sys

PATTERNS = ("white", "exp", "salt", "salt_rec", "pilot", "pilot_car")


def claims(results: dict) -> str:
  rows = [x for x in results["generation"]["rows"]
          if x["sampler"] == "eta:1.0" and x["start"] in ("consistent", "identical")]

  def nmse(model, pattern, stepping=None):
    return {x["stepping"] if stepping is None else x["model"]: x["final_nmse"] for x in rows
            if (x["model"] == model if model else x["model"].startswith("nonid"))
            and x["pattern"] == pattern and (stepping is None or x["stepping"] == stepping)}

  def best(c):
    k = min(c, key=c.get)
    return k, c[k]

  lines = ["| claim | " + " | ".join(PATTERNS) + " |", "|---" * (len(PATTERNS) + 1) + "|"]
  lines.append("| non-identical `nonid` (tau water-filling) | "
               + " | ".join(f"{nmse('nonid', p)['tau-waterfilling']:.4g}" for p in PATTERNS) + " |")
  lines.append("| identical diffusion (its own exact start) | "
               + " | ".join(f"{next(iter(nmse('identical', p).values())):.4g}" for p in PATTERNS) + " |")
  cells = []
  for p in PATTERNS:
    c = nmse("nonid", p)
    k, v = best(c)
    cells.append(f"{k} {v:.4g} (all ten within {max(c.values()) - v:.2g})")
  lines.append("| best stepping of ten (Table II) | " + " | ".join(cells) + " |")
  lines.append("| tau-uniform stepping | " + " | ".join(f"{nmse('nonid', p)['tau-uniform']:.4g}" for p in PATTERNS)
               + " |")
  cells = []
  for p in PATTERNS:
    k, v = best(nmse(None, p, "tau-waterfilling"))
    cells.append(f"{'all_masked' if k == 'nonid' else k.replace('nonid_', '')} {v:.4g}")
  lines.append("| best training pattern (Table III) | " + " | ".join(cells) + " |")
  lines.append("")
  for p in PATTERNS:
    ranked = sorted(nmse(None, p, "tau-waterfilling").items(), key=lambda kv: kv[1])
    lines.append(f"- {p}: " + ", ".join(f"{'all_masked' if k == 'nonid' else k.replace('nonid_', '')} {v:.4f}"
                                        for k, v in ranked))
  return "\n".join(lines)


if __name__ == "__main__":
  print(claims(json.load(open(sys.argv[1]))))
