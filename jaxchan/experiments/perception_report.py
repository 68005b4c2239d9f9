"""Tables and figures of the perception experiment, as pure functions of its ``results.json``.

``render(results, workdir)`` writes ``tables.md`` and Figs. 5-8; ``python -m
jaxchan.experiments.report WORKDIR`` re-renders a finished run without retraining.
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from jaxchan import files, precoding
from jaxchan.experiments.perception_setup import CLASSICAL, ESTIMATES, SE_ROWS, dm_prediction


PIPELINE_NOTE = ("> **Pipeline check** (a `:smoke` run): tiny data and a few steps check that every stage runs; "
                 "the numbers below mean nothing about the method.\n\n")


def render(results: dict, workdir: str):
  """``tables.md`` and ``fig{5,6,7,8}_*.png`` of ``results`` (as written by :func:`jaxchan.experiments.perception.run`)."""
  config = ml_collections.ConfigDict(results["config"])
  if not config.eval.enabled:
    return   # a training-only run (config.eval.enabled=False) has no tables or figures
  # results.json stores keys sorted; tables and figures follow the config's order of scenarios and models.
  scs = [s for s in config.scenarios if s in results["scenarios"]]
  results = dict(results, scenarios={s: dict(results["scenarios"][s], training={
      u: results["scenarios"][s]["training"][u] for u in config.train.models if u in results["scenarios"][s]["training"]})
      for s in scs})
  files.atomic_write_text(os.path.join(workdir, "tables.md"), tables(results, config))
  plot_all(results, config, workdir)


LABELS = {**precoding.CLASSICAL_LABELS, "gaussian_mean": "Gaussian predictor, mean (SVD)",
          "gaussian_bayes": "Gaussian predictor, Bayesian (K = {K} draws)",
          "gaussian_bayes_inf": "Gaussian predictor, Bayesian (K -> infinity)",
          "gaussian": "Gaussian predictor (conditional mean)", "e2e": "End-to-end model", "sl": "SL model",
          "dm_k1": "DM model (K = 1)", "dm_bayes": "DM model (K = {K}, Bayesian)", "dm": "DM model (one sample)"}


def headline(results: dict) -> str:
  """The job's last lines: SE of the learned models and the strongest classical baselines per scenario."""
  config = ml_collections.ConfigDict(results["config"])
  lines = []
  for sc, r in results.get("scenarios", {}).items():
    t3 = r.get("eval", {}).get("table3")
    if t3:
      lines.append(f"{sc} SE [bps/Hz]: " + ", ".join(f"{k} {t3[k]:.2f}" for k in (
          "perfect_csi", "e2e", "sl", "dm_bayes", "sample_cov", "gaussian_bayes", "gaussian_bayes_inf") if k in t3))
  if lines and config.get("pipeline_check"):
    lines.append("(a :smoke pipeline check: these numbers mean nothing about the method)")
  return "\n".join(lines)


def sampler_label(config) -> str:
  """How the DM rows were sampled (``config.eval.sampler``; runs recorded before it existed used the full chain)."""
  spec = config.eval.get("sampler", "ancestral")
  return "the full chain (`ancestral`)" if spec == "ancestral" else f"`{spec}`"


def tables(results, config) -> str:
  K = config.eval.num_samples
  md = ["# Perception vs. distortion results\n\n", PIPELINE_NOTE if config.get("pipeline_check") else "",
        f"Device {results['device']}. NMSE is dataset level (ratio of sums); GCS is averaged over BS-antenna "
        f"vectors; SE is eq. (25) with N_s = {config.eval.n_streams}, equal power per layer, at each sample's DL "
        f"SNR = UL SNR + {config.eval.dl_snr_offset_db} dB. DM: T = {config.dm.T} cosine steps, guidance "
        f"w = {config.eval.guidance}, {config.dm.variance} variance, {dm_prediction(config)} prediction; "
        f"Tables II/III and Fig. 7 draw its samples with {sampler_label(config)}, the trajectory, guidance and "
        "example figures with the full chain.\n"]
  md.append("\n## Table II: NMSE and GCS\n\n")
  rows = []
  for sc, r in results["scenarios"].items():
    for name in ESTIMATES:
      if name not in r["eval"]["table2"]:   # results written before the Gaussian predictor existed
        continue
      t = r["eval"]["table2"][name]
      rows.append([sc, LABELS[name], f"{t['nmse_db']:.2f}", f"{t['gcs']:.3f}"])
  md.append(files.markdown_table(["scenario", "model", "NMSE [dB]", "GCS"], rows))
  md.append("\n## Table III: spectral efficiency\n\n")
  rows, notes = [], []
  for sc, r in results["scenarios"].items():
    t3 = r["eval"]["table3"]
    for name in SE_ROWS:
      if name not in t3:          # results written before the classical baselines existed
        continue
      gap = "ref." if name == "e2e" else ("-" if name == "perfect_csi" or name in CLASSICAL
                                           else f"{t3[name] - t3['e2e']:+.3f}")
      rows.append([sc, LABELS[name].format(K=K), f"{t3[name]:.3f}", gap])
    c = r["eval"]["cg_check"]
    notes.append(f"- {sc}: Riemannian CG on the Monte-Carlo capacity (27), {c['iters']} iterations from the eq. (28) "
                 f"eigenvector solution with the same K = {K} samples, on {c['num_test']} test channels: SE "
                 f"{c['se_eigenvectors']:.4f} -> {c['se_riemannian_cg']:.4f} bps/Hz (gap {c['gap']:+.4f}).")
  md.append(files.markdown_table(["scenario", "model", "SE [bps/Hz]", "Δ to E2E"], rows))
  md.append("\nNotes (energy surrogate check):\n\n" + "\n".join(notes) + "\n")
  md.append("\n## Fig. 8 data: SE against guidance scale w\n\n")
  rows = []
  for sc, r in results["scenarios"].items():
    g = r["guidance"]
    for w, a, b in zip(g["w"], g["dm_bayes"], g["dm_deterministic"]):
      rows.append([sc, w, f"{a:.3f}", f"{b:.3f}"])
  md.append(files.markdown_table(["scenario", "w", f"DM ensemble (K = {K})", "deterministic DM"], rows))
  md.append("\n## Training\n\n")
  rows = []
  # Runs with held-out selection also say which epoch's parameters were kept (0: the initial ones) and their
  # test and held-out losses; earlier results render as they did.
  kept = any("kept_epoch" in h[-1] for r in results["scenarios"].values() for h in r["training"].values())
  for sc, r in results["scenarios"].items():
    for use, hist in r["training"].items():
      row = [sc, use, hist[-1]["epoch"], f"{hist[-1]['train_loss']:.4f}", f"{hist[-1]['test_loss']:.4f}"]
      if kept:
        k = hist[-1].get("kept_epoch")
        at = hist[k - 1] if k else None
        row += ["-" if k is None else k, f"{at['test_loss']:.4f}" if at else "initial",
                f"{at['val_loss']:.4f}" if at else "initial"]
      rows.append(row)
  md.append(files.markdown_table(["scenario", "model", "epochs", "train loss", "test loss"] + (
      ["kept epoch", "kept: test loss", "kept: held-out loss"] if kept else []), rows))
  bounds = [(sc, r["bounds"]) for sc, r in results["scenarios"].items() if r.get("bounds")]
  # The Gaussian predictor's own losses (runs with them; earlier results render as they did).
  anchor_cols = any("sl_gaussian_predictor" in b for _, b in bounds)
  keys = (("sl_zero", "SL: zero predictor"),) + ((("sl_gaussian_predictor", "SL: Gaussian predictor"),)
                                                 if anchor_cols else ()) + (
      ("dm_per_element", "DM: per-element shrinkage"),
      ("dm_gaussian", "DM: Gaussian prior" if anchor_cols else "DM: Gaussian")) + (
      (("dm_gaussian_predictor", "DM: Gaussian predictor"), ("e2e_gaussian_predictor", "E2E: Gaussian predictor"))
      if anchor_cols else ())
  rows = [[sc] + [f"{b[k]:.4f}" if k in b else "-" for k, _ in keys] + [b["num_samples"]] for sc, b in bounds]
  if rows:
    md.append("\nBounds from the training targets: the SL loss of predicting 0, and the DM's loss (in its own "
              "parameterization, v or eps) for "
              "per-element Gaussian shrinkage and for the best Gaussian model (full sample covariance). A DM above "
              "the per-element bound has learned no correlation." + (
                  " The Gaussian predictor's columns are the losses of the closed-form predictor given the history "
                  "(on the test samples of the learning curves), where every anchored model starts."
                  if anchor_cols else "") + "\n\n")
    md.append(files.markdown_table(["scenario"] + [lab for _, lab in keys] + ["targets used"], rows))
  fast = [(sc, r["fast_sampling"]) for sc, r in results["scenarios"].items() if "fast_sampling" in r]
  if fast:
    md.append("\n## Fast posterior sampling\n\nK-sample Bayesian precoder SE (DL SNR = UL SNR + "
              f"{config.eval.dl_snr_offset_db} dB) and one sample's NMSE against the number of network calls per "
              "sample: `ancestral` alone is the full chain, `ancestral:N` / `ddim:N` / `dpm2m:N` the few-step "
              "solvers (jaxchan.ddpm_solvers), `distilled:N` a progressively distilled student sampled with DDIM "
              "in N steps.\n\n")
    rows = [[sc, r["sampler"], r["network_calls"], f"{r['se_bayes']:.3f}", f"{r['nmse_one_sample_db']:.2f}"]
            for sc, f in fast for r in f["rows"]]
    md.append(files.markdown_table(["scenario", "sampler", "network calls", f"SE, K = {fast[0][1]['K']} [bps/Hz]",
                                    "NMSE one sample [dB]"], rows))
  return "".join(md)


def _plt():
  from jaxchan.experiments import style
  return style.pyplot()


def _scenario_figure(plt, scenarios, panels, panel_size, draw, path):
  """One figure with a group of ``panels`` axes per scenario, drawn by ``draw(scenario, axes)``, saved to ``path``.

  Several panels per scenario: one row per scenario. One panel: the scenarios side by side.
  """
  rows, cols = (len(scenarios), panels) if panels > 1 else (1, len(scenarios))
  fig, axes = plt.subplots(rows, cols, figsize=(panel_size[0] * cols, panel_size[1] * rows), squeeze=False,
                           layout="constrained")
  groups = axes if panels > 1 else [[ax] for ax in axes[0]]
  for group, sc in zip(groups, scenarios):
    draw(sc, group)
  if groups[0][0].get_legend_handles_labels()[0]:
    groups[0][0].legend(fontsize=7)
  files.atomic_save_figure(fig, path, dpi=110)
  plt.close(fig)


def plot_all(results, config, workdir):
  """Figs. 5-8 of the perception paper from ``results``, one panel group per scenario."""
  plt = _plt()
  from matplotlib.ticker import FormatStrFormatter, MaxNLocator, NullLocator
  scs = list(results["scenarios"])
  K = config.eval.num_samples

  def fig5_examples(sc, row):
    ex = results["scenarios"][sc]["example"]
    vmax = max(np.max(ex[k]) for k in ("truth", "dm", "sl"))
    for ax, k, title in zip(row, ("truth", "dm", "sl"), ("ground truth", "DM sample", "SL estimate")):
      im = ax.imshow(np.asarray(ex[k]), aspect="auto", origin="lower", vmin=0, vmax=vmax, cmap="viridis",
                     interpolation="nearest")
      ax.set_title(f"{sc}: {title}", fontsize=9)
      ax.set_xlabel("PRB")
      ax.grid(False)
      for axis in (ax.xaxis, ax.yaxis):   # antennas and PRBs are integers: no half-integer ticks
        axis.set_major_locator(MaxNLocator(integer=True))
    row[0].set_ylabel(f"BS antenna\n(test sample {ex['index']}, UL SNR {ex['ul_snr_db']:.0f} dB)", fontsize=8)
    cb = row[-1].figure.colorbar(im, ax=list(row), fraction=0.03, pad=0.01)
    cb.set_label("|h| (unit average power), UE antenna 0", fontsize=8)

  def fig6_trajectory(sc, row):
    tr = results["scenarios"][sc]["trajectory"]
    steps = np.arange(len(tr["stochastic"]["nmse_xt"]), 0, -1)
    every = max(1, len(steps) // 10)
    for var, color, mk in (("stochastic", "C3", "o"), ("deterministic", "C0", "s")):
      for k, ls, fill in (("xt", "-", None), ("x0", "--", "none")):
        label = f"{var} {'x_t' if k == 'xt' else 'x0_hat'}"
        kw = dict(color=color, ls=ls, marker=mk, ms=3.5, mfc=fill, markevery=every, label=label)
        row[0].plot(steps, 10 * np.log10(tr[var][f"nmse_{k}"]), **kw)
        row[1].plot(steps, tr[var][f"gcs_{k}"], **kw)
    row[0].axhline(10 * np.log10(tr["sl"]["nmse"]), color="k", lw=0.8, label="SL")
    row[1].axhline(tr["sl"]["gcs"], color="k", lw=0.8, label="SL")
    row[0].set_ylabel(f"{sc}\nNMSE [dB]")
    row[1].set_ylabel("GCS")
    row[0].set_title(f"{sc}: NMSE along the reverse chain", fontsize=9)
    row[1].set_title(f"{sc}: GCS along the reverse chain", fontsize=9)
    for ax in row:
      ax.invert_xaxis()
      ax.set_xlabel("reverse step t")

  def fig7_se_snr(sc, axes):
    se = results["scenarios"][sc]["eval"]["se_vs_snr"]
    styles = {"perfect_csi": "k-", "uniform": "k:", "avg_gramian": "C7-.", "sample_cov": "C5--",
              "srs_baseline": "C1--"}
    # Learned rows take the colours the reference rows above leave free, then a new line style per cycle, so no
    # two curves share colour and line style.
    free = ("C0", "C2", "C3", "C4", "C6")
    learned = 0
    for i, name in enumerate(n for n in SE_ROWS if n in se):
      if name in styles:
        style = styles[name]
      else:
        style = free[learned % len(free)] + ("-", "--", "-.")[(learned // len(free)) % 3]
        learned += 1
      axes[0].plot(se["dl_snr_db"], se[name], style, marker="osD^v<>ph*"[i % 10],
                   ms=4, mfc="none", label=LABELS[name].format(K=K))
    axes[0].set(title=sc, xlabel="DL SNR [dB]", ylabel="SE [bps/Hz]")

  def fig8_guidance(sc, axes):
    g = results["scenarios"][sc]["guidance"]
    axes[0].plot(g["w"], g["dm_bayes"], marker="o", label=f"DM ensemble (K = {K})")
    axes[0].plot(g["w"], g["dm_deterministic"], marker="s", label="deterministic DM")
    axes[0].set(title=sc, xlabel="guidance scale w", ylabel="SE [bps/Hz]")

  def fig9_fast_sampling(sc, row):
    rows = results["scenarios"][sc]["fast_sampling"]["rows"]
    families = sorted({r["sampler"].split(":")[0] for r in rows}, key=lambda f: (f != "ancestral", f))
    for i, fam in enumerate(families):
      rr = sorted((r for r in rows if r["sampler"].split(":")[0] == fam), key=lambda r: r["network_calls"])
      kw = dict(marker="osD^v<"[i % 6], ls=["-", "--", "-.", ":"][i % 4], ms=5, label=fam)
      row[0].plot([r["network_calls"] for r in rr], [r["se_bayes"] for r in rr], **kw)
      row[1].plot([r["network_calls"] for r in rr], [r["nmse_one_sample_db"] for r in rr], **kw)
    full = max(rows, key=lambda r: r["network_calls"])   # the full chain: the most calls
    calls = sorted({r["network_calls"] for r in rows})
    for ax, key, what in zip(row, ("se_bayes", "nmse_one_sample_db"),
                             (f"SE of the K = {K} Bayesian precoder [bps/Hz]", "NMSE of one sample [dB]")):
      ax.axhline(full[key], color="k", lw=0.8, ls=":", label=f"full chain ({full['sampler']}, "
                                                                f"{full['network_calls']} calls)")
      ax.set_xscale("log")
      ax.set_xticks(calls)
      ax.xaxis.set_major_formatter(FormatStrFormatter("%d"))
      ax.xaxis.set_minor_locator(NullLocator())
      ax.set(xlabel="network calls per sample", ylabel=what, title=f"{sc}: fast sampling")

  figures = [(fig5_examples, 3, (10 / 3, 2.8)), (fig6_trajectory, 2, (4.5, 3.0)), (fig7_se_snr, 1, (5, 3.6)),
             (fig8_guidance, 1, (5, 3.4))]
  if all("fast_sampling" in results["scenarios"][sc] for sc in scs):
    figures.append((fig9_fast_sampling, 2, (4.8, 3.4)))
  for draw, panels, size in figures:
    _scenario_figure(plt, scs, panels, size, draw, os.path.join(workdir, f"{draw.__name__}.png"))


# Learning-curve bounds per model: (bounds key, label, line style); the E2E loss is minus the captured energy share.
CURVE_BOUNDS = {"sl": (("sl_zero", "zero predictor", ":"), ("sl_gaussian_predictor", "Gaussian predictor", "--")),
                "dm": (("dm_per_element", "per-element Gaussian", ":"), ("dm_gaussian", "Gaussian prior", "-."),
                       ("dm_gaussian_predictor", "Gaussian predictor", "--")),
                "e2e": (("e2e_gaussian_predictor", "Gaussian Bayesian, K -> inf", "--"),)}


def plot_learning_curves(results, path, *, reference: dict | None = None, labels=("", ""),
                         bounds: dict | None = None) -> bool:
  """Test loss against Adam steps per scenario (rows) and model (columns), the bounds drawn in.

  ``reference``: another run's ``results.json`` (e.g. the literal networks beside the anchored ones), dotted;
  ``labels`` name the two runs. ``bounds``: ``{scenario: {key: value}}`` added to each run's own ``bounds``.
  """
  from jaxchan.experiments import style
  plt = _plt()
  scs = list(results["scenarios"])
  uses = [u for u in ("sl", "dm", "e2e") if any(u in results["scenarios"][s]["training"] for s in scs)]
  if not scs or not uses:
    return False
  fig, axes = plt.subplots(len(scs), len(uses), figsize=(3.6 * len(uses), 2.8 * len(scs)), squeeze=False,
                           layout="constrained")
  for i, sc in enumerate(scs):
    b = dict(results["scenarios"][sc].get("bounds") or {}, **((bounds or {}).get(sc, {})))
    for j, use in enumerate(uses):
      ax = axes[i, j]
      for res, ls, lab, color in ((results, "-", labels[0], style.PALETTE[0]),
                                  (reference, ":", labels[1], style.PALETTE[1])):
        hist = (res or {}).get("scenarios", {}).get(sc, {}).get("training", {}).get(use)
        if hist:
          ax.plot([h["step"] for h in hist], [h["test_loss"] for h in hist], ls, marker="o", ms=2.5, color=color,
                  label=f"test loss {lab}".strip())
      for key, name, bls in CURVE_BOUNDS[use]:
        if key in b:
          ax.axhline(b[key], color="k", ls=bls, lw=1, label=name)
      ax.set_title(f"{sc}: {use}", fontsize=9)
      ax.set_xlabel("Adam steps")
      ax.grid(alpha=0.3)
      ax.legend(fontsize=6)
    axes[i, 0].set_ylabel("test loss")
  files.atomic_save_figure(fig, path, dpi=110)
  plt.close(fig)
  return True


def anchor_comparison(anchored: dict, literal: dict, bounds: dict | None = None) -> str:
  """Markdown: the Gaussian-anchored run beside the literal (paper's) networks, with the classical baselines.

  ``bounds``: ``{scenario: {key: value}}`` (e.g. :func:`jaxchan.experiments.perception_eval.anchor_losses`)
  added to the anchored run's own ``bounds``.
  """
  from jaxchan.experiments import report
  config = ml_collections.ConfigDict(anchored["config"])
  K = config.eval.num_samples
  md = ["# Gaussian-anchored perception models beside the literal networks\n\n",
        f"`anchored`: {anchored['device']}; `literal`: {literal['device']}. SE at DL SNR = UL SNR + "
        f"{config.eval.dl_snr_offset_db} dB, N_s = {config.eval.n_streams}, K = {K}. Classical rows are "
        "the anchored run's (its datasets).\n"]
  for sc, r in anchored["scenarios"].items():
    lit = literal.get("scenarios", {}).get(sc)
    t2, t3 = r["eval"]["table2"], r["eval"]["table3"]
    l2 = lit["eval"]["table2"] if lit else {}
    l3 = lit["eval"]["table3"] if lit else {}
    md.append(f"\n## {sc}\n\n")
    rows = [[LABELS[n], f"{t2[n]['nmse_db']:.2f}", f"{l2[n]['nmse_db']:.2f}" if n in l2 and n in ("sl", "dm") else ""]
            for n in ESTIMATES if n in t2]
    md.append(files.markdown_table(["estimate", "NMSE [dB], anchored run", "literal"], rows))
    md.append("\n")
    rows = [[LABELS[n].format(K=K), f"{t3[n]:.3f}", f"{l3[n]:.3f}" if n in l3 and n not in CLASSICAL else ""]
            for n in SE_ROWS if n in t3]
    md.append(files.markdown_table(["precoder", "SE [bps/Hz], anchored run", "literal"], rows))
    checks = [
        ("SL NMSE <= Gaussian predictor", t2["sl"]["nmse_db"] <= t2["gaussian"]["nmse_db"],
         f"{t2['sl']['nmse_db']:.2f} vs {t2['gaussian']['nmse_db']:.2f} dB"),
        (f"DM K = {K} >= Gaussian Bayesian (K = {K}) - 0.1", t3["dm_bayes"] >= t3["gaussian_bayes"] - 0.1,
         f"{t3['dm_bayes']:.3f} vs {t3['gaussian_bayes']:.3f}"),
        (f"DM K = {K} >= sample-covariance - 0.1", t3["dm_bayes"] >= t3["sample_cov"] - 0.1,
         f"{t3['dm_bayes']:.3f} vs {t3['sample_cov']:.3f}"),
        ("E2E >= Gaussian Bayesian (K -> inf) - 0.1", t3["e2e"] >= t3["gaussian_bayes_inf"] - 0.1,
         f"{t3['e2e']:.3f} vs {t3['gaussian_bayes_inf']:.3f}"),
        ("E2E >= sample-covariance - 0.1", t3["e2e"] >= t3["sample_cov"] - 0.1,
         f"{t3['e2e']:.3f} vs {t3['sample_cov']:.3f}")]
    spread = max(t3[n] for n in ("sl", "dm_bayes", "e2e")) - min(t3[n] for n in ("sl", "dm_bayes", "e2e"))
    if sc == "high_mobility":
      checks.append((f"DM K = {K} - SL >= 0.2", t3["dm_bayes"] - t3["sl"] >= 0.2, f"{t3['dm_bayes'] - t3['sl']:+.3f}"))
    else:
      checks.append(("SL, DM and E2E within 0.5", spread <= 0.5, f"spread {spread:.3f}"))
    md.append("\n" + files.markdown_table(["check", "met", "numbers"],
                                          [[c, "yes" if ok else "**no**", v] for c, ok, v in checks]))
    b = dict(r.get("bounds") or {}, **((bounds or {}).get(sc, {})))
    rows = []
    for use in ("sl", "dm", "e2e"):
      key = f"{use}_gaussian_predictor"
      bound = b.get(key)
      for name, res in (("anchored", r), ("literal", lit)):
        hist = (res or {}).get("training", {}).get(use)
        if not hist:
          continue
        reach = report.steps_to_bound(hist, bound) if bound is not None else {"steps": None, "how": "-"}
        steps = "-" if reach["steps"] is None else f"{reach['steps']:.3g}"
        rows.append([use, name, hist[-1]["step"], f"{hist[-1]['test_loss']:.4f}",
                     "-" if bound is None else f"{bound:.4f}", steps, reach["how"]])
    md.append("\n" + files.markdown_table(
        ["model", "run", "Adam steps", "final test loss", "Gaussian predictor's loss", "steps to reach it", "how"],
        rows))
  md.append("\nThe Gaussian predictor's loss is that of the untrained anchored model (the predictor itself) under "
            "the same loss function (`perception_eval.anchor_losses`); the extrapolation fits `loss = a step^-b` "
            "to the last half of the test-loss records (`report.steps_to_bound`): a curve that flattens needs more "
            "steps than that.\n")
  return "".join(md)
