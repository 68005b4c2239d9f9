"""One look for every figure the reports draw: a colour-blind-safe palette, grids, legible legends, PDF beside PNG.

The palette is Okabe and Ito's (distinguishable under the common colour-vision deficiencies) and replaces
matplotlib's default cycle, so ``"C0"``, ``"C1"``... in the report modules are its colours; curves also differ by
marker and line style, so a figure survives greyscale printing.
"""

from __future__ import annotations

# Okabe-Ito: blue, orange, bluish green, vermillion, reddish purple, sky blue, yellow, grey, black.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#999999", "#000000")
MARKERS = "osD^v<>ph*"


def pyplot():
  """``matplotlib.pyplot`` on the Agg backend with this style applied."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from cycler import cycler

  plt.rcParams.update({
      "axes.prop_cycle": cycler(color=list(PALETTE)),
      "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.6,
      "legend.fontsize": 7, "legend.framealpha": 0.85,
      "axes.titlesize": 10, "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8,
      "image.cmap": "viridis", "pdf.fonttype": 42,
  })
  return plt
