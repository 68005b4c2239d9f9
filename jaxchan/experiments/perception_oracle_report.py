"""Tables and figures of the exact-posterior experiment, as pure functions of its ``results.json``.

``render(results, workdir)`` writes ``tables.md`` and ``fig_oracle_se.png``.
"""

from __future__ import annotations

import os

import numpy as np

from jaxchan import files
from jaxchan.experiments.perception_oracle_setup import FITTED, GAUSSIAN, LABELS, LEARNED, LEARNED_USES, METHODS


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
  gauss = [n for n in GAUSSIAN + FITTED if n in results["rows"][0]]
  return list(METHODS[:2]) + [f"bayes_{k}" for k in Ks] + list(METHODS[2:3]) + gauss + learned + list(METHODS[3:])


def _label(name, K=None):
  if name == "dm_bayes" and K is not None:
    return f"Learned DM, Bayesian from K = {K} samples"
  if name == "gauss_bayes" and K is not None:
    return f"Gaussian Bayesian, K = {K} samples of the conditional Gaussian"
  if name == "mix_bayes" and K is not None:
    return f"EM-fitted mixture Bayesian, K = {K} samples of its posterior"
  return LABELS.get(name) or f"Exact Bayesian, K = {name.split('_')[1]} posterior samples"


def learned_vs_exact(results) -> list[dict]:
  """Per SNR: the learned SL against the exact CME precoder and the learned DM ensemble against the exact
  precoder from the same K, as SE ratios (1 = as good as exact)."""
  K = results["config"]["learned"]["num_samples"]
  return [dict(snr_db=r["snr_db"], sl=r["sl"]["se"], cme=r["cme"]["se"], sl_ratio=r["sl"]["se"] / r["cme"]["se"],
               dm=r["dm_bayes"]["se"], exact=r[f"bayes_{K}"]["se"],
               dm_ratio=r["dm_bayes"]["se"] / r[f"bayes_{K}"]["se"],
               sl_nmse_db=10 * np.log10(r["sl_nmse"]), cme_nmse_db=10 * np.log10(r["cme_nmse"]),
               **({"gauss_nmse_db": 10 * np.log10(r["gauss_nmse"]), "gauss_mean": r["gauss_mean"]["se"],
                   "gauss_bayes": r["gauss_bayes"]["se"]} if "gauss_mean" in r else {}),
               **({"mix_mean": r["mix_mean"]["se"], "mix_bayes": r["mix_bayes"]["se"]} if "mix_mean" in r else {}))
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
  # In training order (results.json stores keys sorted), so a re-render matches the job's own tables.
  losses = ", ".join(f"{u.upper()} test loss {tr[u][-1]['test_loss']:.4f} after {tr[u][-1]['epoch']} epochs"
                     for u in LEARNED_USES if tr.get(u))
  if "exact_cme_mse" in results.get("floors", {}):
    gauss, mix = results["floors"].get("gaussian_mse"), results["floors"].get("mixture_mse")
    losses += (f" (the exact CME's loss on the same test draws: {results['floors']['exact_cme_mse']:.4f}"
               + (f"; the Gaussian baseline's: {gauss:.4f}" if gauss is not None else "")
               + (f"; the EM-fitted mixture's CME: {mix:.4f}" if mix is not None else "") + ")")
  gauss, mix = "gauss_mean" in rows[0], "mix_mean" in rows[0]
  body = [[f"{r['snr_db']:+g}", f"{r['cme_nmse_db']:.2f}"] + ([f"{r['gauss_nmse_db']:.2f}"] if gauss else [])
          + [f"{r['sl_nmse_db']:.2f}", f"{r['cme']:.3f}"] + ([f"{r['gauss_mean']:.3f}"] if gauss else [])
          + ([f"{r['mix_mean']:.3f}"] if mix else [])
          + [f"{r['sl']:.3f}", f"{r['sl_ratio']:.3f}", f"{r['exact']:.3f}"]
          + ([f"{r['gauss_bayes']:.3f}"] if gauss else []) + ([f"{r['mix_bayes']:.3f}"] if mix else [])
          + [f"{r['dm']:.3f}", f"{r['dm_ratio']:.3f}"]
          for r in rows]
  head = (["obs. SNR [dB]", "CME NMSE [dB]"] + (["Gaussian NMSE [dB]"] if gauss else [])
          + ["SL NMSE [dB]", "exact CME SE"] + (["Gaussian (LMMSE) SE"] if gauss else [])
          + (["EM mixture CME SE"] if mix else [])
          + ["SL SE", "SL / CME", f"exact K = {K} SE"] + ([f"Gaussian K = {K} SE"] if gauss else [])
          + ([f"EM mixture K = {K} SE"] if mix else [])
          + [f"DM K = {K} SE", f"DM / exact K = {K}"])
  worst_sl, worst_dm = min(r["sl_ratio"] for r in rows), min(r["dm_ratio"] for r in rows)
  anchor = L.get("anchor", "none")
  what = {"prior": ", anchored on the exact conditional Gaussian under the prior's moment-matched covariance "
                   "(untrained, it is the Gaussian rows),",
          "mixture": ", anchored on the exact posterior under the mixture fitted by EM on draws from the prior "
                     "(untrained, it is the EM-fitted mixture rows),"}.get(anchor, "")
  return ("\n\n## Learned models against the exact ones\n\n"
          f"The perception backbone (d_model {L['d_model']}, {L['layers']} + {L['layers']} layers){what} trained on "
          f"fresh draws from the prior at observation SNRs uniform in {tuple(L['snr_db_range'])} dB; DM: T = {L['T']}, "
          f"{L['prediction']} prediction, K = {K}. {losses}. SE ratio 1 = as good as the exact precoder.\n\n"
          + files.markdown_table(head, body)
          + f"\n\nWorst ratio over the SNRs: SL / exact CME {worst_sl:.3f}, DM / exact K = {K} {worst_dm:.3f}.\n")


def plot(results, path):
  from jaxchan.experiments import style
  plt = style.pyplot()
  rows = results["rows"]
  s = [r["snr_db"] for r in rows]
  fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 6))
  k_colors = iter(["C2", "C1", "C4", "C5", "C6", "C8", "C9"])
  for i, n in enumerate(_names(results)):
    style = {"perfect_csi": "k-", "uniform": "k:", "prior": "C7-.", "cme": "C3--", "bayes_inf": "C0-",
             "sl": "C3:", "dm_bayes": "C2:", "gauss_mean": "C6-", "gauss_bayes": "C6--", "mix_mean": "C3-.",
             "mix_bayes": "C0-."}.get(n)
    style = style or next(k_colors) + "-"
    ax.plot(s, [r[n]["se"] for r in rows], style, marker="osD^v<>ph*"[i % 10], ms=4, mfc="none",
            label=_label(n, results["config"].get("learned", {}).get("num_samples")))
  ax.set(xlabel="observation SNR [dB]", ylabel="SE [bps/Hz]", title="Exact posteriors: SE against information")
  ax.grid(alpha=0.3)
  # Below the axes: with the Gaussian, fitted-mixture and learned rows there are up to 15 curves.
  ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)
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


def anchor_comparison(runs: dict) -> str:
  """Markdown: per SNR, the learned SL / exact CME and DM / exact K-sample SE ratios of several runs of this
  experiment (``{label: results}``, e.g. anchored and the paper's network), with each run's worst ratio."""
  rows = {label: learned_vs_exact(res) for label, res in runs.items()}
  snrs = [r["snr_db"] for r in next(iter(rows.values()))]
  for label, rs in rows.items():
    if [r["snr_db"] for r in rs] != snrs:
      raise ValueError(f"run {label!r} has SNRs {[r['snr_db'] for r in rs]}, the first run {snrs}; compare runs "
                       "of one SNR grid.")
  body = []
  for what, key in (("SL / exact CME", "sl_ratio"), ("DM / exact K-sample", "dm_ratio")):
    for label, rs in rows.items():
      v = [r[key] for r in rs]
      body.append([f"{what}, {label}"] + [f"{x:.3f}" for x in v] + [f"**{min(v):.3f}**"])
  return files.markdown_table(["SE ratio"] + [f"{s:+g} dB" for s in snrs] + ["worst"], body) + "\n"


def plot_learning_curves(runs: dict, path: str) -> None:
  """Test loss against epochs of the learned SL and DM of each run (``{label: results}``), the SL's with the exact
  CME's loss (its floor) and, where recorded, the Gaussian baseline's and the EM-fitted mixture's."""
  from jaxchan.experiments import style
  plt = style.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
  for ax, use in zip(axes, LEARNED_USES):
    for i, (label, res) in enumerate(runs.items()):
      h = res.get("training", {}).get(use, [])
      ax.plot([r["epoch"] for r in h], [r["test_loss"] for r in h], f"C{i}-o", ms=3, label=label)
    floors = next(iter(runs.values())).get("floors", {})
    if use == "sl" and "exact_cme_mse" in floors:
      ax.axhline(floors["exact_cme_mse"], color="k", ls="--", lw=1, label="exact CME (floor)")
    if use == "sl" and "gaussian_mse" in floors:
      ax.axhline(floors["gaussian_mse"], color="C7", ls=":", lw=1, label="Gaussian (LMMSE)")
    if use == "sl" and "mixture_mse" in floors:
      ax.axhline(floors["mixture_mse"], color="C8", ls="-.", lw=1, label="EM-fitted mixture CME")
    ax.set(xlabel="epoch (250 Adam steps)", ylabel="test loss", title=f"{use.upper()}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.tight_layout()
  files.atomic_save_figure(fig, path, dpi=120)
  plt.close(fig)
