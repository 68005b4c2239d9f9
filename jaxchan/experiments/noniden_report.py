"""Tables and figures of the non-identical experiment, as pure functions of its ``results.json``.

``render(results, workdir)`` writes ``tables.md``, ``fig_steps.png`` and (with several
embedding schemes) ``fig_embeddings.png``; ``python -m jaxchan.experiments.report WORKDIR``
re-renders a finished run without retraining.
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from jaxchan import files, noniden
from jaxchan.experiments import noniden_setup as exp
from jaxchan.experiments import report


PIPELINE_NOTE = ("> **Pipeline check** (a `:smoke` run): tiny data and a few steps check that every stage runs; "
                 "the numbers below mean nothing about the method.\n\n")

def render(results: dict, workdir: str):
  """``tables.md`` and the figures of ``results`` (as written by :func:`jaxchan.experiments.noniden.run`)."""
  config = ml_collections.ConfigDict(results["config"])
  # results.json stores keys sorted; the tables follow config.eval.models (a tuple, so its order survives), then
  # the other trained models in the order stored.
  tr = results["training"]
  order = [n for n in config.eval.models if n in tr] + [n for n in tr if n not in config.eval.models]
  results = dict(results, training={n: tr[n] for n in order})
  files.atomic_write_text(os.path.join(workdir, "tables.md"), tables(results, config))
  plot_steps(results, config, os.path.join(workdir, "fig_steps.png"))
  plot_embeddings(results, config, os.path.join(workdir, "fig_embeddings.png"))
  plot_learning_curves(results, os.path.join(workdir, "fig_learning_curves.png"))


def plot_learning_curves(results, path, *, reference: dict | None = None, labels=("", "")) -> bool:
  """Test loss against Adam steps for every trained model, its Gaussian bound drawn in (dashed).

  ``reference``: another run's ``results.json`` (e.g. the literal networks beside the anchored ones), drawn in
  the same panel with dotted lines; ``labels`` name the two runs in the legend.
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from jaxchan.experiments import style

  bounds = results["generation"].get("velocity_bound", {}) if results.get("generation") else {}
  names = list(results["training"])
  if not names:
    return False
  cols = min(4, len(names))
  rows = (len(names) + cols - 1) // cols
  fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows), squeeze=False, sharey=True)
  for ax, name in zip(axes.flat, names):
    for res, ls, lab in ((results, "-", labels[0]), (reference, ":", labels[1])):
      if res is None or name not in res["training"]:
        continue
      hist = res["training"][name][1]
      x = "step" if all("step" in h for h in hist) else "epoch"   # records written before steps were logged
      ax.plot([h[x] for h in hist], [h["test_loss"] for h in hist], ls, marker="o", ms=2.5,
              color=style.PALETTE[0] if ls == "-" else style.PALETTE[1], label=f"test loss {lab}".strip())
    if name in bounds:
      ax.axhline(bounds[name]["mean"], color="k", ls="--", lw=1, label="Gaussian bound")
    ax.set_title(f"{name} ({results['training'][name][0]['tau_pattern']})", fontsize=9)
    ax.set_xlabel("Adam steps" if all("step" in h for h in results["training"][name][1]) else "epochs")
    ax.grid(alpha=0.3)
  for ax in axes[:, 0]:
    ax.set_ylabel("velocity loss (NMSE, linear)")
  for ax in list(axes.flat)[len(names):]:
    ax.axis("off")
  axes.flat[0].legend(fontsize=7)
  fig.tight_layout()
  files.atomic_save_figure(fig, path)
  plt.close(fig)
  return True


def headline(results: dict) -> str:
  """The job's last lines: the main model's one-shot and default generation NMSE against the Gaussian baselines."""
  gen = results.get("generation") or {}
  if not gen.get("one_shot_nmse"):
    return ""
  config = ml_collections.ConfigDict(results["config"])
  main, s0, st0 = config.eval.main_model, config.eval.samplers[0], config.eval.steppings[0]
  final = {r["pattern"]: r["final_nmse"] for r in gen["rows"] if r["model"] == main and r["stepping"] == st0
           and r["sampler"] == s0 and r.get("start") == gen.get("start", config.eval.start)}
  lines = [f"NMSE per pattern ({main}): " + "; ".join(
      f"{p}: one-shot {gen['one_shot_nmse'][p]:.3f}, generated {final.get(p, float('nan')):.3f}"
      + (f", LMMSE {gen['lmmse_nmse'][p]:.3f}" if p in gen.get("lmmse_nmse", {}) else "")
      + (f", Gaussian anchor {gen['gaussian_nmse'][p]:.3f}" if p in gen.get("gaussian_nmse", {}) else "")
      for p in config.eval.patterns if p in gen["one_shot_nmse"])]
  if config.get("pipeline_check"):
    lines.append("(a :smoke pipeline check: these numbers mean nothing about the method)")
  return "\n".join(lines)


def _fmt(mean, std):
  return f"{mean:.3f} ± {std:.3f}"


def table1(results, config) -> str:
  """Table I: training loss (mean ± std over the last epochs) by embedding x averaging x input x pattern."""
  last = config.eval.table1_last_epochs
  cells = {}
  for name, (m, hist) in results["training"].items():
    if m["placement"] == "identical":
      continue
    losses = np.array([h["train_loss"] for h in hist[-last:]])
    cells[exp.arch(m) + (m["tau_pattern"],)] = _fmt(losses.mean(), losses.std())
  if not cells:
    return ""
  pats = list(dict.fromkeys(k[3] for k in cells))
  norms = list(dict.fromkeys(k[2] for k in cells))
  cols = [(p, n) for p in pats for n in norms]
  rows = []
  for pl in ("row", "col", "both"):
    for av in ("tau", "alpha"):
      if any((pl, av) == k[:2] for k in cells):
        rows.append([pl, av] + [cells.get((pl, av, n, p), "-") for p, n in cols])
  head = ["embedding", "averaging"] + [f"{p} / identical {'noise' if n == 'noise' else 'power'}" for p, n in cols]
  return (f"\n## Table I: training loss (velocity NMSE), mean ± std over the last {last} epochs\n\n"
          + files.markdown_table(head, rows))


def tables(results, config) -> str:
  gen = results["generation"]
  pats = list(config.eval.patterns)
  md = ["# Non-identical diffusion results\n\n", PIPELINE_NOTE if config.get("pipeline_check") else "",
        f"Dataset `{results['dataset']}`, device {results['device']}. Generation: {gen['num_test']} test channels, "
        f"N_G = {config.eval.num_steps}; NMSE is linear and dataset level (ratio of sums).\n"]
  md.append("\n## Training\n\n")
  bounds = gen.get("velocity_bound", {})
  paired = any("model_minus_bound" in b for b in bounds.values())   # results written without them lack the columns
  anchored = any("anchor_minus_bound" in b for b in bounds.values())
  channels = next((b["channels"] for b in bounds.values() if "channels" in b), gen.get("num_test"))
  if bounds:
    md.append("Gaussian bound: the velocity loss (eq. 12) of the exact estimator for a Gaussian prior with the "
              "training covariance, on the model's tau pattern (mean ± standard error over "
              f"{config.eval.bound_samples} tau draws). A loss above it means the network has not learned even "
              "the channel's second-order statistics." + (
                  " Paired: the model's loss minus the LMMSE estimator's on the same "
                  f"{channels} test channels, tau draws and noise (mean ± standard error over the draws); "
                  "negative means below the bound." if paired else "") + (
                  " The anchor alone (the Gaussian part with the residual removed: where training starts) is paired "
                  "the same way." if anchored else "") + "\n\n")
  fmt_b = lambda n: f"{bounds[n]['mean']:.4f} ± {bounds[n]['sem']:.4f}" if n in bounds else "-"  # noqa: E731
  fmt_p = lambda n: (f"{bounds[n]['model_minus_bound']:+.4f} ± {bounds[n]['model_minus_bound_sem']:.4f}"  # noqa: E731
                     if "model_minus_bound" in bounds.get(n, {}) else "-")
  fmt_a = lambda n: (f"{bounds[n]['anchor_minus_bound']:+.4f} ± {bounds[n]['anchor_minus_bound_sem']:.4f}"  # noqa: E731
                     if "anchor_minus_bound" in bounds.get(n, {}) else "-")
  md.append(files.markdown_table(["model", "anchor", "placement", "averaging", "input", "tau pattern", "epochs",
                                  "train loss", "test loss", "Gaussian bound"] + (["paired: model - bound"] if paired
                                                                                   else [])
                                 + (["paired: anchor alone - bound"] if anchored else []),
                                 [[n, m.get("anchor", "none"), *exp.arch(m),
                                   m["tau_pattern"], h[-1]["epoch"], h[-1]["train_loss"], h[-1]["test_loss"], fmt_b(n)]
                                  + ([fmt_p(n)] if paired else []) + ([fmt_a(n)] if anchored else [])
                                  for n, (m, h) in results["training"].items()]))
  md.append(table1(results, config))
  start = gen.get("start", config.eval.start)
  # Main tables: every model from its own default start (non-identical: config.eval.start; the
  # identical baseline: its scalar-time start). The other start appears in the ablation table only.
  rows_by = {(r["model"], r["stepping"], r["sampler"], r["pattern"]): r["final_nmse"] for r in gen["rows"]
             if r.get("start", start) in (start, "identical")}
  ablation = {(r["stepping"], r["sampler"], r.get("start", start), r["pattern"]): r["final_nmse"]
              for r in gen["rows"] if r["model"] == config.eval.main_model}
  if not gen["rows"]:
    return "".join(md)
  main = config.eval.main_model
  s0, st0 = config.eval.samplers[0], config.eval.steppings[0]
  md.append(f"\nDefaults: sampler `{s0}`, `{start}` start, stepping `{st0}` (Table II varies the stepping, "
            "the sampler table the sampler); the ablation table holds the paper's literal choices.\n")
  baseline_rows = [[f"raw start H_tilde^(0) ({start})"] + [gen["raw_start_nmse"][p] for p in pats]]
  if gen.get("one_shot_nmse"):
    baseline_rows.append([f"one-shot D(g0, tau0) of `{main}`"] + [gen["one_shot_nmse"].get(p, float("nan"))
                                                                  for p in pats])
  if gen.get("gaussian_nmse"):
    kind = {"lowrank": "low-rank plus diagonal prior", "mixture": "mixture of low-rank Gaussians"}.get(
        config.models[main].get("anchor"), "Kronecker prior")
    baseline_rows.append([f"Gaussian anchor alone, E_G[h | g0] ({kind})"] + [gen["gaussian_nmse"][p]
                                                                             for p in pats])
  if gen["lmmse_nmse"]:
    baseline_rows.append(["LMMSE (train sample covariance)"] + [gen["lmmse_nmse"][p] for p in pats])
  # Table II: stepping methods of the main model.
  t2 = [[st] + [rows_by.get((main, st, s0, p), float("nan")) for p in pats] for st in config.eval.steppings
        if (main, st, s0, pats[0]) in rows_by]
  md.append(f"\n## Table II: final NMSE of `{main}` by stepping ({s0}) x initial pattern\n\n")
  md.append(files.markdown_table(["stepping"] + pats, t2 + baseline_rows))
  # Samplers: the paper's eq. (9) against the eta family.
  t_s = [[sp] + [rows_by.get((main, st0, sp, p), float("nan")) for p in pats] for sp in config.eval.samplers
         if (main, st0, sp, pats[0]) in rows_by]
  md.append(f"\n## Samplers: final NMSE of `{main}` ({st0}) x initial pattern\n\n")
  md.append(files.markdown_table(["sampler"] + pats, t_s))
  # Ablations: the paper's literal sampler (eq. 9 at eps = 0.4) and start (eqs. 15-16).
  labels = {"consistent": "variance-consistent start", "paper": "paper start, eqs. (15)-(16)"}
  t_a = []
  for (st, sp, stt) in dict.fromkeys(k[:3] for k in ablation):
    if st != st0:
      continue
    what = "eq. (9) as printed" if sp.startswith("eq9") else "eta family"
    t_a.append([f"{sp} ({what}), {labels.get(stt, stt)}"] + [ablation.get((st, sp, stt, p), float("nan"))
                                                             for p in pats])
  if any(r.get("start", start) != start for r in gen["rows"] if r["model"] == main):
    by_start = gen.get("one_shot_nmse_by_start", {})
    for stt in noniden.STARTS:
      if all(stt in by_start.get(p, {}) for p in pats):
        t_a.append([f"one-shot D(g0, tau0), {labels[stt]}"] + [by_start[p][stt] for p in pats])
    md.append(f"\n## Ablations: final NMSE of `{main}` ({st0}) by sampler and start\n\n")
    md.append(files.markdown_table(["sampler, start"] + pats, t_a))
  # Table III: training patterns (models that differ from the main model only in tau_pattern).
  ref = results["training"][main][0]
  same_arch = [n for n, (m, _) in results["training"].items()
               if exp.arch(m) == exp.arch(ref) and
               (n, st0, s0, pats[0]) in rows_by]
  if len(same_arch) > 1:
    t3 = [[results["training"][n][0]["tau_pattern"]] + [rows_by[(n, st0, s0, p)] for p in pats] for n in same_arch]
    md.append(f"\n## Table III: final NMSE by training tau-pattern ({st0}, {s0}) x initial pattern\n\n")
    md.append(files.markdown_table(["training pattern"] + pats, t3))
  # Identical vs non-identical (Fig. 7's last step).
  ident = config.eval.compare_identical
  if ident and (ident, "tau-uniform", s0, pats[0]) in rows_by:
    t7 = [[f"non-identical `{main}` ({st0}, {start} start)"] + [rows_by[(main, st0, s0, p)] for p in pats],
          [f"identical `{ident}` (scalar time, identical_start)"] + [rows_by[(ident, "tau-uniform", s0, p)]
                                                                      for p in pats]]
    md.append(f"\n## Identical vs non-identical diffusion: final NMSE ({s0})\n\n")
    md.append(files.markdown_table(["model"] + pats, t7 + baseline_rows))
  # Embedding schemes (Fig. 8).
  emb = embedding_models(results, config)
  if len(emb) > 1:
    t8 = [[f"{results['training'][n][0]['placement']} / {results['training'][n][0]['averaging']} avg"]
          + [rows_by[(n, st0, s0, p)] for p in pats] for n in emb]
    md.append(f"\n## Embedding schemes (cf. Fig. 8): final NMSE ({st0}, {s0})\n\n")
    md.append(files.markdown_table(["embedding"] + pats, t8))
  return "".join(md)


def plot_steps(results, config, path):
  """NMSE (dB) after every generation step, non-identical vs identical, one panel per initial pattern.

  Dotted lines: the raw start, the one-shot estimate D(g0, tau0) and LMMSE, so a reader
  sees at once whether iterating helps.
  """
  from jaxchan.experiments import style
  plt = style.pyplot()
  gen = results["generation"]
  pats = list(config.eval.patterns)
  start = gen.get("start", config.eval.start)
  ncol = min(3, len(pats))
  nrow = -(-len(pats) // ncol)
  fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.3 * nrow), squeeze=False, sharey=True)
  main, ident = config.eval.main_model, config.eval.compare_identical
  s0, st0 = config.eval.samplers[0], config.eval.steppings[0]
  db = lambda x: 10 * np.log10(np.asarray(x))  # noqa: E731
  for ax, p in zip(axes.flat, pats):
    for r in gen["rows"]:
      if r["pattern"] != p or r["sampler"] != s0:
        continue
      steps = np.arange(1, len(r["nmse_per_step"]) + 1)
      if r["model"] == main and r["stepping"] == st0 and r.get("start", start) == start:
        ax.plot(steps, db(r["nmse_per_step"]), "C0-", marker="o", ms=3.5, markevery=max(1, len(steps) // 10),
                label=f"non-identical, {st0}")
      if ident and r["model"] == ident:
        ax.plot(steps, db(r["nmse_per_step"]), "C1--", marker="s", ms=3.5, mfc="none",
                markevery=max(1, len(steps) // 10), label="identical (scalar time), tau-uniform")
    refs = [("raw_start_nmse", "raw start g0", "C7", ":"), ("one_shot_nmse", "one-shot D(g0, tau0)", "C2", "-."),
            ("lmmse_nmse", "LMMSE (sample covariance)", "C3", "--")]
    for k, label, color, ls in refs:
      if p in gen.get(k, {}):
        ax.axhline(db(gen[k][p]), color=color, ls=ls, lw=1.2, label=label)
    ax.set_title(f"{p} ({config.eval.snr_db[p]:+g} dB)")
    ax.set_xlabel("generation step")
    ax.set_ylabel("NMSE (dB)")
    ax.yaxis.set_tick_params(labelleft=True)
  for ax in list(axes.flat)[len(pats):]:
    ax.axis("off")
  axes.flat[0].legend(fontsize=7)
  fig.suptitle(f"Generation NMSE per step ({s0}, {start} start, {gen['num_test']} test channels)", fontsize=10)
  fig.tight_layout()
  files.atomic_save_figure(fig, path, dpi=110)
  plt.close(fig)


def embedding_models(results, config):
  """Models that differ from the main model only in embedding placement/averaging and were evaluated."""
  ref = results["training"][config.eval.main_model][0]
  s0, st0 = config.eval.samplers[0], config.eval.steppings[0]
  start = results["generation"].get("start", config.eval.start)
  done = {(r["model"], r["stepping"], r["sampler"]) for r in results["generation"]["rows"]
          if r.get("start", start) == start}
  return [n for n, (m, _) in results["training"].items()
          if m["tau_pattern"] == ref["tau_pattern"] and exp.arch(m)[2:] == exp.arch(ref)[2:]   # same input norm.
          and m["placement"] != "identical" and (n, st0, s0) in done]


def plot_embeddings(results, config, path) -> bool:
  """Fig. 8: final NMSE per initial pattern for each embedding scheme (grouped bars). False if < 2 schemes."""
  names = embedding_models(results, config)
  if len(names) < 2:
    return False
  from jaxchan.experiments import style
  plt = style.pyplot()
  pats = list(config.eval.patterns)
  s0, st0 = config.eval.samplers[0], config.eval.steppings[0]
  start = results["generation"].get("start", config.eval.start)
  val = {(r["model"], r["pattern"]): r["final_nmse"] for r in results["generation"]["rows"]
         if r["stepping"] == st0 and r["sampler"] == s0 and r.get("start", start) == start}
  fig, ax = plt.subplots(figsize=(1.4 * len(pats) * len(names) / 2 + 3, 3.4))
  width = 0.8 / len(names)
  for i, n in enumerate(names):
    m = results["training"][n][0]
    ax.bar(np.arange(len(pats)) + i * width, [10 * np.log10(val.get((n, p), np.nan)) for p in pats], width,
           hatch=["", "//", "..", "xx", "\\\\"][i % 5], label=f"{m['placement']} / {m['averaging']} avg")
  ax.set_xticks(np.arange(len(pats)) + 0.4 - width / 2)
  ax.set_xticklabels(pats)
  ax.set_ylabel(f"final NMSE (dB), {st0}, {s0}")
  ax.set_title("embedding schemes (cf. Fig. 8)")
  ax.legend(fontsize=8)
  fig.tight_layout()
  files.atomic_save_figure(fig, path, dpi=110)
  plt.close(fig)
  return True


def anchor_comparison(anchored: dict, literal: dict) -> str:
  """Markdown: the anchored run beside the literal (paper's) networks, one-shot, generation and training."""
  config = ml_collections.ConfigDict(anchored["config"])
  ga, gl = anchored["generation"], literal["generation"]
  pats = [p for p in config.eval.patterns if p in gl.get("lmmse_nmse", {})]
  main = config.eval.main_model
  s0, st0, start = config.eval.samplers[0], config.eval.steppings[0], ga.get("start", config.eval.start)

  def final(gen, model, stepping):
    return {r["pattern"]: r["final_nmse"] for r in gen["rows"] if r["model"] == model and r["stepping"] == stepping
            and r["sampler"] == s0 and r.get("start", start) in (start, "identical")}

  rows = [["LMMSE, full training sample covariance (literal run)"] + [gl["lmmse_nmse"][p] for p in pats],
          ["LMMSE, full training sample covariance (anchored run)"] + [ga["lmmse_nmse"].get(p, float("nan"))
                                                                       for p in pats]]
  if ga.get("gaussian_nmse"):
    rows.append(["Gaussian anchor alone E_G[h | g0]"] + [ga["gaussian_nmse"][p] for p in pats])
  rows += [[f"one-shot D(g0, tau0), `{main}` literal"] + [gl["one_shot_nmse"][p] for p in pats],
           [f"one-shot D(g0, tau0), `{main}` anchored"] + [ga["one_shot_nmse"][p] for p in pats]]
  fl, fa = final(gl, main, st0), final(ga, main, st0)
  rows += [[f"generation ({st0}, {s0}), `{main}` literal"] + [fl.get(p, float("nan")) for p in pats],
           [f"generation ({st0}, {s0}), `{main}` anchored"] + [fa.get(p, float("nan")) for p in pats]]
  ident = config.eval.compare_identical
  if ident:
    il, ia = final(gl, ident, "tau-uniform"), final(ga, ident, "tau-uniform")
    rows += [[f"generation, identical `{ident}` literal"] + [il.get(p, float("nan")) for p in pats],
             [f"generation, identical `{ident}` anchored"] + [ia.get(p, float("nan")) for p in pats]]
  md = ["# Gaussian-anchored vs literal non-identical models\n\n",
        f"Anchored: `{anchored['dataset']}`, {ga['num_test']} test channels; literal: `{literal['dataset']}`, "
        f"{gl['num_test']} test channels. NMSE, linear, dataset level.\n\n",
        files.markdown_table(["estimate"] + pats, rows)]
  bl = gl.get("velocity_bound", {})
  ba = ga.get("velocity_bound", {})
  trows = []
  for name in anchored["training"]:
    if name not in literal["training"]:
      continue
    hl, ha = literal["training"][name][1], anchored["training"][name][1]
    b = bl.get(name, {}).get("mean")
    reach = report.steps_to_bound(hl, b) if b is not None else {"steps": None, "how": "-"}
    reach_s = (f"{reach['steps']:.3g} ({reach['how']})" if isinstance(reach["steps"], float)
               else f"{reach['steps']} ({reach['how']})")
    pl, pa = literal["training"][name][0]["tau_pattern"], anchored["training"][name][0]["tau_pattern"]
    trows.append([name, pa if pl == pa else f"{pl} / {pa}", f"{hl[-1]['step']} / {ha[-1]['step']}", hl[-1]["test_loss"],
                  ha[-1]["test_loss"], f"{b:.4f}" if b is not None else "-",
                  f"{ba[name]['mean']:.4f}" if name in ba else "-", reach_s])
  md.append("\n\n## Training: final test loss against the Gaussian bound\n\n"
            "Steps to the bound for the literal network: measured when its curve reaches it, otherwise the power "
            "law `loss = a step^-b` fitted (log-log least squares) to the last half of its test-loss records, "
            "solved for the bound; the law has no floor, so this underestimates a curve that flattens.\n\n")
  md.append(files.markdown_table(["model", "tau pattern (literal / anchored where they differ)", "steps literal / anchored",
                                  "test loss literal", "test loss anchored",
                                  "bound (literal run)", "bound (anchored run)", "literal: steps to its bound"],
                                 trows))
  return "".join(md) + "\n"
