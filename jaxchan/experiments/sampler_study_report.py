"""Tables and figures of the sampler study, as pure functions of its ``results.json``.

``render(results, workdir)`` writes ``sampler_study.md`` and ``sampler_study.png``.
"""

from __future__ import annotations

import os

from jaxchan import files, noniden


def render(results: dict, workdir: str):
  """``sampler_study.md`` and ``sampler_study.png`` of ``results``."""
  files.atomic_write_text(os.path.join(workdir, "sampler_study.md"), to_markdown(results))
  _plot(results, os.path.join(workdir, "sampler_study.png"))


def to_markdown(results) -> str:
  header = ["sampler", "N_G", "prior cov err", "prior mean err", "post. cov err", "post. mean err",
            "post. var ratio"]
  body = [[r["sampler"], r["num_steps"], r["prior"]["cov_err"], r["prior"]["mean_err"],
           r["posterior"]["cov_err"], r["posterior"]["mean_err"], r["posterior"]["var_ratio"]]
          for r in results["rows"]]
  f = results["floor"]
  body.append(["exact samples (floor)", "-", f["prior"]["cov_err"], f["prior"]["mean_err"],
               f["posterior"]["cov_err"], f["posterior"]["mean_err"], f["posterior"]["var_ratio"]])
  c = results["config"]
  intro = (f"Exact GMM denoiser, d={c['dim']}, {c['num_components']} components, T={c['T']}, "
           f"tau0={c['tau0']}, {c['rule']} stepping, {c['num_samples']} samples. "
           "Errors are relative Frobenius (covariance) and in units of the std (mean); "
           "var ratio = trace of sample / exact posterior covariance (1 is right).\n\n")
  md = intro + files.markdown_table(header, body)
  starts = [s for s in noniden.STARTS if all(s in r.get("observation", {}) for r in results["rows"])]
  if starts:
    keys = ("cov_err", "mean_err", "var_ratio")
    head = ["sampler", "N_G"] + [f"{s} start: {k.replace('_', ' ')}" for s in starts for k in keys]
    rows = [[r["sampler"], r["num_steps"]] + [r["observation"][s][k] for s in starts for k in keys]
            for r in results["rows"]]
    fo = f["observation"]
    rows.append(["exact posterior samples (floor)", "-"] + [fo[k] for _ in starts for k in keys])
    md += (f"\n\n### From an observation H_bar = M o H + CN(0, I), M = {list(c['reliability'])}\n\n"
           "Against the exact posterior p(h | H_bar); `consistent` is the default start, `paper` eqs. (15)-(16).\n\n"
           + files.markdown_table(head, rows))
  return md


def _plot(results, path):
  from jaxchan.experiments import style
  plt = style.pyplot()
  panels = [("prior", "cov_err", "prior: covariance error", None),
            ("posterior", "cov_err", "posterior: covariance error", None),
            ("posterior", "var_ratio", "posterior: variance ratio", None)]
  if all("observation" in r for r in results["rows"]):
    panels += [("observation", "cov_err", "from H_bar, consistent start", "consistent"),
               ("observation", "cov_err", "from H_bar, paper start", "paper")]
  fig, axes = plt.subplots(1, len(panels), figsize=(4.3 * len(panels), 3.8))
  for ax, (exp, stat, title, start) in zip(axes, panels):
    specs = list(dict.fromkeys(r["sampler"] for r in results["rows"]))
    get = (lambda r: r[exp][stat]) if start is None else (lambda r: r[exp][start][stat])  # noqa: E731
    for i, spec in enumerate(specs):
      rs = [r for r in results["rows"] if r["sampler"] == spec and (start is None or start in r[exp])]
      # Distinct markers and dashes: eq9:1.0 and eta:0.0 are the same sampler (eq. 8) and overlap.
      ax.plot([r["num_steps"] for r in rs], [get(r) for r in rs], marker="osD^v<>"[i % 7],
              ls=["-", "--", ":", "-."][i % 4], mfc="none", label=spec)
    ax.axhline(results["floor"][exp][stat], color="k", ls="--", lw=1, label="exact samples")
    ax.set_xscale("log")
    if stat != "var_ratio":
      ax.set_yscale("log")
    ax.set_xlabel("N_G (generation steps)")
    ax.set_title(title)
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  files.atomic_save_figure(fig, path, dpi=120)
  plt.close(fig)
