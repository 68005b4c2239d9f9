"""Tables of the SRS prior experiment, as pure functions of its ``results.json``.

``render(results, workdir)`` writes ``tables.md``: per scenario, the perception table's rows (classical from this
run, learned from the perception run it names) beside the non-identical prior's, then the unseen SRS
configurations; and the training times side by side.
"""

from __future__ import annotations

import os

from jaxchan import files

ROWS = (  # (key in this run's results or "perception:<key>", label, NMSE key or None)
    ("perfect_csi", "Perfect CSI (SVD)", None),
    ("srs_baseline", "SRS baseline (latest SRS per PRB)", "srs_baseline"),
    ("sample_cov", "Sample-covariance precoder", None),
    ("gaussian_mean", "Gaussian predictor, mean (SVD)", "gaussian"),
    ("gaussian_bayes", "Gaussian predictor, Bayesian K", None),
    ("gaussian_bayes_inf", "Gaussian predictor, Bayesian K -> inf", None),
    ("perception:sl", "Perception SL (trained for this configuration)", "sl"),
    ("perception:dm_k1", "Perception DM, K = 1", "dm"),
    ("perception:dm_bayes", "Perception DM, Bayesian K", None),
    ("perception:e2e", "Perception E2E", None),
    ("noniden_train_mean", "Non-identical prior, training-set anchor (no per-user statistics): one-shot (SVD)",
     "noniden_train"),
    ("noniden_train_bayes", "Non-identical prior, training-set anchor: Bayesian K", None),
    ("gauss_user_mean", "Per-user Gaussian anchor alone (untrained prior): one-shot (SVD)", "gauss_user"),
    ("gauss_user_bayes", "Per-user Gaussian anchor alone: Bayesian K", None),
    ("noniden_user_mean", "**Non-identical prior, per-user anchor: one-shot (SVD)**", "noniden_user"),
    ("noniden_user_bayes", "**Non-identical prior, per-user anchor: Bayesian K**", None),
)


def render(results: dict, workdir: str):
  files.atomic_write_text(os.path.join(workdir, "tables.md"), to_markdown(results))
  if results["prior"].get("velocity_bound"):
    plot_learning_curve(results, os.path.join(workdir, "fig_learning_curve.png"))


def plot_learning_curve(results: dict, path: str):
  """The prior's test loss against Adam steps with its Gaussian bound (the non-identical experiment's figure)."""
  from jaxchan.experiments import noniden_report
  pr = results["prior"]
  view = {"training": {"prior": [{"tau_pattern": pr.get("tau_pattern", "all_masked")}, pr["training"]]},
          "generation": {"velocity_bound": {"prior": pr["velocity_bound"]}}}
  noniden_report.plot_learning_curves(view, path)


def _bound_line(pr: dict) -> str:
  b = pr["velocity_bound"]
  return (f"Velocity loss on {b['channels']} test rows after {len(pr['training'])} epochs: {b['model_loss']:.4f}; "
          f"the Gaussian bound (training rows' covariance, the same channels, times and noise) {b['paired_bound']:.4f}"
          f" (model - bound {b['model_minus_bound']:+.4f} ± {b['model_minus_bound_sem']:.4f})"
          + (f"; the anchor alone {b['anchor_loss']:.4f}" if "anchor_loss" in b else "")
          + ". Learning curve: `fig_learning_curve.png`.")


def _setting(s: dict) -> str:
  occ = f"last {s['occasions']} occasions" if s["occasions"] else "all occasions"
  lo, hi = s["snr_db_range"]
  snr = f"UL SNR {lo:g} dB" if lo == hi else f"UL SNR {lo:g}..{hi:g} dB"
  return f"{s['num_hops']} hops, {occ}, {snr}"


def main_table(sc: dict, K: int) -> str:
  main, perc = sc["main"], sc.get("perception")
  lines = ["| method | NMSE [dB] | SE [bps/Hz] |", "|---|---|---|"]
  for key, label, nkey in ROWS:
    label = label.replace("Bayesian K", f"Bayesian K = {K}") if "K ->" not in label else label
    if key.startswith("perception:"):
      if perc is None:
        continue
      k = key.split(":", 1)[1]
      se, nm = perc["table3"].get(k), perc["table2"].get(nkey, {}).get("nmse_db") if nkey else None
    else:
      se, nm = main["se"].get(key), main["nmse_db"].get(nkey) if nkey else None
      if se is None:
        continue
    lines.append(f"| {label} | {'' if nm is None else f'{nm:.2f}'} | {'' if se is None else f'{se:.3f}'} |")
  return "\n".join(lines)


def unseen_table(sc: dict, K: int, order=()) -> str:
  cols = [("gaussian", "gaussian_mean", "Gaussian predictor"), (None, "sample_cov", "sample cov."),
          (None, "gaussian_bayes", f"Gaussian Bayes K = {K}"), (None, "gaussian_bayes_inf", "Gaussian K -> inf"),
          ("noniden_user", "noniden_user_mean", "prior one-shot"), (None, "noniden_user_bayes", f"prior K = {K}")]
  head = "| SRS configuration | " + " | ".join(c[2] + (" NMSE [dB] / SE" if c[0] else " SE") for c in cols) + \
         f" | perception DM K = {K} SE |"
  lines = [head, "|" + "---|" * (len(cols) + 2)]
  entries = [("trained configuration", sc["main"], True)] + [(spec, r, False) for spec, r in sc["unseen"].items()]
  # results.json stores its keys sorted: the configured order comes back from the settings themselves.
  entries[1:] = sorted(entries[1:], key=lambda e: order.index(e[0]) if e[0] in order else len(order))
  for name, r, trained in entries:
    cells = []
    for nkey, skey, _ in cols:
      se = r["se"].get(skey)
      cell = "" if se is None else f"{se:.3f}"
      if nkey and nkey in r["nmse_db"]:
        cell = f"{r['nmse_db'][nkey]:.2f} / {cell}"
      cells.append(cell)
    dm = sc["perception"]["table3"]["dm_bayes"] if trained and sc.get("perception") else None
    dm_cell = (f"{dm:.3f}" if dm is not None else "") if trained else "not trained for it (needs retraining)"
    # An entry evaluated on a dataset the job built (a longer history, another speed) names it.
    where = f" of `{os.path.basename(r['dataset'])}`" if r.get("dataset") else ""
    lines.append(f"| {name}: {_setting(r['setting'])} ({r['num_test']} histories{where}) | " + " | ".join(cells) +
                 f" | {dm_cell} |")
  return "\n".join(lines)


def to_markdown(results: dict) -> str:
  c = results["config"]
  K = c["eval"]["num_samples"]
  pr = results["prior"]
  gen = f"{c['eval']['sampler']}, {c['eval']['stepping']}, {c['eval']['num_steps']} steps"
  md = ["# Non-identical diffusion as the posterior sampler for aged-SRS precoding", ""]
  if c.get("pipeline_check"):
    md += ["**Pipeline check (:smoke): tiny data and networks; these numbers mean nothing.**", ""]
  md += [f"One unconditional non-identical prior (anchor `{pr['anchor']}`, the mixer of the non-identical "
         f"experiment) trained on {pr['rows']} target rows (one UE antenna's {c['data']['bs_antennas'] or c['data']['n_bs']} "
         f"BS antennas x {c['data']['n_prb']} PRBs) of the scenarios {', '.join(c['scenarios'])} together, "
         f"{len(pr['training'])} epochs, {pr['train_seconds']:.0f} s of training. Generation: {gen}; "
         f"N_s = {c['eval']['n_streams']}, DL SNR = UL SNR + {c['eval']['dl_snr_offset_db']:g} dB. NMSE is dataset "
         "level; SE is the mean over test histories.", ""]
  if pr.get("velocity_bound"):
    md += [_bound_line(pr), ""]
  for s, sc in _in_order(results["scenarios"], c["scenarios"]):
    perc = sc.get("perception")
    md += [f"## {s}", "",
           f"Test histories: the first {sc['main']['num_test']} of `{sc['dataset']}`, observed as the perception "
           f"evaluation observes them ({_setting(sc['main']['setting'])}). Reliability map: innovation "
           f"`{sc['innovation']}`" + (" (fitted on training histories; one-shot NMSE of the per-user anchor alone, dB: "
                                      + _fit(sc["innovation_fit"]) + ")"
                                      if sc.get("innovation_fit") else "") + ".", ""]
    if perc:
      spec = perc.get("config", {}).get("eval", {}).get("sampler", "ancestral")
      md += [f"Perception rows from `{perc['path']}` ({perc['num_test']} test histories; its DM sampled with "
             + ("the full chain" if spec == "ancestral" else f"`{spec}`") + "); its classical rows against this "
             "run's: " + _agreement(sc) + ".", ""]
    else:
      md += ["No perception run given (`config.eval.perception_results`): its learned rows are left out.", ""]
    md += [main_table(sc, K), "", f"### {s}: SRS configurations the perception models were not trained for", "",
           "The same prior, not retrained. The perception DM is trained for the first row's configuration only. "
           "A history longer than the scenario's dataset holds is evaluated on the scenario's preset built with that "
           "many occasions (its own test histories; the age correlation fitted on its training histories).", "",
           unseen_table(sc, K, tuple(c["eval"]["unseen"])), ""]
  if results.get("speeds"):
    md += ["## UT speeds of the mobility sweep", "",
           "The same prior on the mobility sweep's datasets (low-mobility geometry at each speed); the age correlation "
           "is fitted on each speed's training histories, nothing is retrained. The perception DM would need training "
           "at each speed.", "",
           _speed_table(dict(_in_order(results["speeds"], [f"{v:g}" for v in c["eval"]["speeds"]])), K), ""]
  md += ["## Training time", "", "| model | training [s] |", "|---|---|",
         f"| non-identical prior (all scenarios, {pr['rows']} rows) | {pr['train_seconds']:.0f} |"]
  for s, sc in _in_order(results["scenarios"], c["scenarios"]):
    if sc.get("perception"):
      md.append(f"| perception DM, {s} only | {sc['perception']['dm_train_seconds']:.0f} |")
  md += ["", "Training seconds are the sums of the per-epoch times recorded in each run (test-loss evaluation "
         "excluded), on the machine that ran it."]
  return "\n".join(md) + "\n"


def _in_order(d: dict, order) -> list:
  """``d``'s items in the configured ``order`` (results.json sorts its keys), any others after."""
  order = list(order)
  return sorted(d.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))


def _fit(fit: dict) -> str:
  from jaxchan import srs_prior
  return ", ".join(f"{k} {v:.2f}" for k, v in _in_order(fit, srs_prior.INNOVATIONS))


def _speed_table(speeds: dict, K: int) -> str:
  lines = unseen_table({"main": next(iter(speeds.values())), "unseen": {}, "perception": None}, K).splitlines()[:2]
  for v, r in speeds.items():
    one = unseen_table({"main": r, "unseen": {}, "perception": None}, K).splitlines()[2]
    one = one.replace("trained configuration", f"{v} km/h (innovation {r['innovation']})", 1)
    lines.append(one.rsplit("|", 2)[0] + "| not trained for it |")
  return "\n".join(lines)


def _agreement(sc: dict) -> str:
  perc, main = sc["perception"], sc["main"]
  if perc["num_test"] != main["num_test"]:
    return f"not comparable ({perc['num_test']} against {main['num_test']} test histories)"
  diffs = [abs(perc["table3"][k] - main["se"][k]) for k in ("perfect_csi", "srs_baseline", "sample_cov",
                                                            "gaussian_mean", "gaussian_bayes", "gaussian_bayes_inf")
           if k in perc["table3"] and k in main["se"]]
  return f"largest SE difference {max(diffs):.2g} bps/Hz over {len(diffs)} rows" if diffs else "no common rows"
