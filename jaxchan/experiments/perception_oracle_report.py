"""Tables and figures of the exact-posterior experiment, as pure functions of its ``results.json``.

``render(results, workdir)`` writes ``tables.md`` and ``fig_oracle_se.png``.
"""

from __future__ import annotations

import os

import numpy as np

from jaxchan import files
from jaxchan.experiments.perception_oracle_setup import LABELS, LEARNED, LEARNED_USES, METHODS


def render(results: dict, workdir: str):
  """``tables.md`` and ``fig_oracle_se.png`` of ``results``."""
  # results.json stores keys sorted; the tables list the learned models in training order.
  tr = results.get("training", {})
  results = dict(results, training={u: tr[u] for u in LEARNED_USES if u in tr})
  files.atomic_write_text(os.path.join(workdir, "tables.md"), to_markdown(results))
  plot(results, os.path.join(workdir, "fig_oracle_se.png"))


def _names(results):
  Ks = results["config"]["num_samples"]
  learned = [n for n in LEARNED if n in results["rows"][0]]
  return list(METHODS[:2]) + [f"bayes_{k}" for k in Ks] + list(METHODS[2:3]) + learned + list(METHODS[3:])


def _label(name, K=None):
  if name == "dm_bayes" and K is not None:
    return f"Learned DM, Bayesian from K = {K} samples"
  return LABELS.get(name) or f"Exact Bayesian, K = {name.split('_')[1]} posterior samples"


def learned_vs_exact(results) -> list[dict]:
  """Per SNR: the learned SL against the exact CME precoder and the learned DM ensemble against the exact
  precoder from the same K, as SE ratios (1 = as good as exact)."""
  K = results["config"]["learned"]["num_samples"]
  return [dict(snr_db=r["snr_db"], sl=r["sl"]["se"], cme=r["cme"]["se"], sl_ratio=r["sl"]["se"] / r["cme"]["se"],
               dm=r["dm_bayes"]["se"], exact=r[f"bayes_{K}"]["se"],
               dm_ratio=r["dm_bayes"]["se"] / r[f"bayes_{K}"]["se"],
               sl_nmse_db=10 * np.log10(r["sl_nmse"]), cme_nmse_db=10 * np.log10(r["cme_nmse"]))
          for r in results["rows"] if "sl" in r]


def to_markdown(results) -> str:
  c = results["config"]
  names = _names(results)
  K = c.get("learned", {}).get("num_samples")
  head = ["obs. SNR [dB]", "CME NMSE [dB]"] + [_label(n, K) for n in names] + ["gap K->inf - CME"]
  body = [[f"{r['snr_db']:+g}", f"{10 * np.log10(r['cme_nmse']):.2f}"] + [f"{r[n]['se']:.3f}" for n in names]
          + [f"{r['bayes_inf']['se'] - r['cme']['se']:+.3f}"] for r in results["rows"]]
  head_e = ["obs. SNR [dB]"] + [_label(n, K) for n in names]
  body_e = [[f"{r['snr_db']:+g}"] + [f"{r[n]['energy']:.4f}" for n in names] for r in results["rows"]]
  return (f"# Perception vs. distortion with exact posteriors\n\nPrior: {c['num_components']}-cluster GMM over "
          f"H ({' x '.join(map(str, c['shape']))}: UE x BS x PRB), {c['paths']} paths per cluster. Observation: "
          f"{c['sounded']} of {c['shape'][2]} PRBs, aging correlation rho = {c['rho']}, SNR on the rows. "
          f"{c['num_test']} channels per SNR, N_s = {c['n_streams']}, DL SNR {c['dl_snr_db']} dB.\n\n"
          "## Spectral efficiency [bps/Hz]\n\n" + files.markdown_table(head, body)
          + "\n\n## Captured energy (eq. 28 objective, fraction of the channel's)\n\n" + files.markdown_table(head_e, body_e)
          + _learned_markdown(results))


def _learned_markdown(results) -> str:
  rows = learned_vs_exact(results)
  if not rows:
    return ""
  L, K = results["config"]["learned"], results["config"]["learned"]["num_samples"]
  tr = results.get("training", {})
  losses = ", ".join(f"{u.upper()} test loss {h[-1]['test_loss']:.4f} after {h[-1]['epoch']} epochs"
                     for u, h in tr.items() if h)
  if "exact_cme_mse" in results.get("floors", {}):
    losses += f" (the exact CME's loss on the same test draws: {results['floors']['exact_cme_mse']:.4f})"
  body = [[f"{r['snr_db']:+g}", f"{r['cme_nmse_db']:.2f}", f"{r['sl_nmse_db']:.2f}", f"{r['cme']:.3f}",
           f"{r['sl']:.3f}", f"{r['sl_ratio']:.3f}", f"{r['exact']:.3f}", f"{r['dm']:.3f}", f"{r['dm_ratio']:.3f}"]
          for r in rows]
  worst_sl, worst_dm = min(r["sl_ratio"] for r in rows), min(r["dm_ratio"] for r in rows)
  return ("\n\n## Learned models against the exact ones\n\n"
          f"The perception backbone (d_model {L['d_model']}, {L['layers']} + {L['layers']} layers) trained on fresh "
          f"draws from the prior at observation SNRs uniform in {tuple(L['snr_db_range'])} dB; DM: T = {L['T']}, "
          f"{L['prediction']} prediction, K = {K}. {losses}. SE ratio 1 = as good as the exact precoder.\n\n"
          + files.markdown_table(["obs. SNR [dB]", "CME NMSE [dB]", "SL NMSE [dB]", "exact CME SE", "SL SE",
                               "SL / CME", f"exact K = {K} SE", f"DM K = {K} SE", f"DM / exact K = {K}"], body)
          + f"\n\nWorst ratio over the SNRs: SL / exact CME {worst_sl:.3f}, DM / exact K = {K} {worst_dm:.3f}.\n")


def plot(results, path):
  from jaxchan.experiments import style
  plt = style.pyplot()
  rows = results["rows"]
  s = [r["snr_db"] for r in rows]
  fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
  k_colors = iter(["C2", "C1", "C4", "C5", "C6", "C8", "C9"])
  for i, n in enumerate(_names(results)):
    style = {"perfect_csi": "k-", "uniform": "k:", "prior": "C7-.", "cme": "C3--", "bayes_inf": "C0-",
             "sl": "C3:", "dm_bayes": "C2:"}.get(n)
    style = style or next(k_colors) + "-"
    ax.plot(s, [r[n]["se"] for r in rows], style, marker="osD^v<>ph*"[i % 10], ms=4, mfc="none",
            label=_label(n, results["config"].get("learned", {}).get("num_samples")))
  ax.set(xlabel="observation SNR [dB]", ylabel="SE [bps/Hz]", title="Exact posteriors: SE against information")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  ax2.plot(s, [r["bayes_inf"]["se"] - r["cme"]["se"] for r in rows], "C0-o", label="K -> inf minus CME")
  k_colors = iter(["C2", "C1", "C4", "C5", "C6", "C8", "C9"])
  for j, K in enumerate(results["config"]["num_samples"]):
    ax2.plot(s, [r[f"bayes_{K}"]["se"] - r["cme"]["se"] for r in rows], next(k_colors) + "--",
             marker="sD^v<>ph*"[j % 9], ms=4, mfc="none", label=f"K = {K} minus CME")
  ax2.axhline(0, color="k", lw=0.8)
  ax2.set(xlabel="observation SNR [dB]", ylabel="SE gain over the CME precoder [bps/Hz]", title="Jensen gap")
  ax2.grid(alpha=0.3)
  ax2.legend(fontsize=7)
  fig.tight_layout()
  files.atomic_save_figure(fig, path, dpi=120)
  plt.close(fig)
