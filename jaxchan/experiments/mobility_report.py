"""Tables and figures of the mobility sweep, as pure functions of its ``results.json``.

``render(results, workdir)`` writes ``mobility.md`` and ``fig_mobility.png``.
"""

from __future__ import annotations

import os

from jaxchan import files, precoding

# The mobility sweep scores the classical precoders (jaxchan.precoding), in this order.
LABELS = precoding.CLASSICAL_LABELS
METHODS = tuple(LABELS)


def render(results: dict, workdir: str):
  """``mobility.md`` and ``fig_mobility.png`` of ``results``."""
  files.atomic_write_text(os.path.join(workdir, "mobility.md"), to_markdown(results))
  plot(results, os.path.join(workdir, "fig_mobility.png"))


def to_markdown(results) -> str:
  c = results["config"]
  head = ["UT speed [km/h]", "predictor NMSE", "|corr| 20/60/100/140 ms"] + [f"SE: {LABELS[m]}" for m in METHODS]
  body = [[f"{r['speed_kmh']:g}", f"{r['predictor_nmse']:.3f}", " / ".join(f"{x:.2f}" for x in r["corr"][::-1])]
          + [f"{r['se'][m]:.2f}" for m in METHODS] for r in results["rows"]]
  return (f"# Mobility sweep\n\n{results['rows'][0]['num_test']} test channels per speed (Sionna UMa, 3.5 GHz, "
          f"low_mobility geometry), UL SNR uniform in {list(c['snr_db_range'])} dB, DL SNR = UL SNR + "
          f"{c['dl_snr_offset_db']} dB, N_s = {c['n_streams']}. Predictor NMSE: best per-age linear predictor of the "
          "target from each PRB's latest SRS (1 = the history is useless). SE in bps/Hz.\n\n"
          + files.markdown_table(head, body))


def plot(results, path):
  from jaxchan.experiments import style
  plt = style.pyplot()
  rows = results["rows"]
  v = [r["speed_kmh"] for r in rows]
  fig, ax = plt.subplots(figsize=(6.4, 5.0))
  styles = {"perfect_csi": "k-", "srs_baseline": "C1--", "sample_cov": "C5-", "avg_gramian": "C7-.", "uniform": "k:"}
  for i, m in enumerate(METHODS):
    ax.plot(v, [r["se"][m] for r in rows], styles[m], marker="osD^v"[i], mfc="none", label=LABELS[m])
  ax.set_xscale("log")
  ax.set_xlabel("UT speed [km/h]")
  ax.set_ylabel("SE [bps/Hz]")
  ax.grid(alpha=0.3, which="both")
  ax2 = ax.twinx()
  ax2.plot(v, [r["predictor_nmse"] for r in rows], "C3", marker="x", lw=2, label="latest-SRS predictor NMSE (right)")
  ax2.set_ylabel("predictor NMSE (linear)", color="C3")
  ax2.set_ylim(0, 1.05)
  lines = ax.get_legend_handles_labels()
  lines2 = ax2.get_legend_handles_labels()
  # Below the axes: inside, it would hide the no-CSI curves at the bottom.
  ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14),
            ncol=2)
  ax.set_title("What the SRS history is worth against UT speed")
  fig.tight_layout()
  files.atomic_save_figure(fig, path, dpi=120)
  plt.close(fig)
