"""Few-step posterior sampling checked with exact denoisers (issue: fast posterior sampling).

  python examples/fast_sampling_study.py [--out=docs/results/fast_sampling] [--smoke]

Two studies, no training: every denoiser is the exact one of a Gaussian mixture (jaxchan.oracle), so what is
measured is the solver's error alone.

1. Standard diffusion (the perception DM's sampler family), Bayesian precoding: a clustered MIMO-OFDM prior
   (2 UE x 8 BS antennas x 4 subcarriers, 8 single-path clusters), noisy observations at -10 dB; for each observation the exact posterior
   is a Gaussian mixture, and its exact eps drives the sampler (cosine schedule, T = 100). Reported: SE of the
   K = 16 Bayesian precoder (eq. 28) against network calls, for the ancestral chain respaced, DDIM, DPM-Solver++(2M)
   and its SDE form, next to K = 16 exact posterior samples, the exact posterior Gramian (K -> infinity) and
   perfect CSI.
2. Non-identical diffusion, posterior sampling from one observation with element-wise reliabilities: the error of
   the samples' covariance against the exact posterior's, against the number of generation steps, for the eta:1
   sampler and the element-wise DPM-Solver++(2M) SDE (dpm2m:1).

Writes results.json, tables.md and fig_fast_sampling.png/.pdf to --out.
"""

import argparse
import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxchan import conventions, files, metrics, noniden, oracle, precoding, schedules
from jaxchan.ddpm_solvers import Solver, sample


def bayesian_study(steps, *, B=16, K=16, shape=(2, 8, 4), snr_db=-10.0, dl_snr_db=10.0, components=8, seed=0):
  d = int(np.prod(shape))
  sch = schedules.cosine_schedule(100)
  keys = jax.random.split(jax.random.PRNGKey(seed), 6)
  prior = oracle.clustered_mixture(keys[0], shape, num_components=components, paths=1)
  H = oracle.sample(prior, keys[1], B)
  nv = 10 ** (-snr_db / 10)
  y = H + jnp.sqrt(nv) * conventions.standard_normal(keys[2], H.shape, H.dtype)
  A, N = jnp.eye(d, dtype=H.dtype), nv * jnp.eye(d)
  post = jax.vmap(lambda yy: oracle.posterior(prior, yy, A, N))(y)        # a GMM per observation
  Hc = H.reshape((B,) + shape)
  rho = 10 ** (dl_snr_db / 10)
  se = lambda W: float(jnp.mean(precoding.spectral_efficiency(Hc, W, rho)))  # noqa: E731
  bayes = lambda s: se(precoding.bayesian_precoder(jnp.moveaxis(s, 1, 0).reshape((K, B) + shape), 2))  # noqa: E731

  def eps_fn(x, t):                                                        # x: [B * K, d], observation-major
    xb = x.reshape(B, K, d)
    out = jax.vmap(lambda g, xx: oracle.ddpm_eps(g, sch)(xx, t))(post, xb)
    return out.reshape(B * K, d)

  out = {"perfect_csi": se(precoding.svd_precoder(Hc, 2)),
         "exact_gramian": se(precoding.precoder_from_gramian(
             jax.vmap(lambda g: oracle.expected_gramian(g, shape))(post), 2))}
  # K exact posterior draws per observation (the reference the solvers should match).
  exact = jax.vmap(lambda g, k: _mixture_sample(g, k, K))(post, jax.random.split(keys[3], B))
  out["exact_samples_k16"] = bayes(exact)
  out["exact_nmse_one_sample_db"] = float(metrics.nmse_db(H, exact[:, 0]))
  out["exact_posterior_mean_nmse_db"] = float(metrics.nmse_db(
      H, jax.vmap(lambda g: jnp.einsum("k,kd->d", g.weights.astype(g.means.dtype), g.means))(post)))
  xT = conventions.standard_normal(keys[4], (B * K, d), H.dtype)
  rows = []
  for kind in ("ancestral", "ddim", "dpm2m", "dpm2m_sde"):
    for n in steps:
      f = jax.jit(functools.partial(sample, eps_fn, schedule=sch, solver=Solver(kind, n)))
      s = f(xT, keys[5]).reshape(B, K, d)
      rows.append({"solver": kind, "network_calls": n, "se_k16": bayes(s),
                   "nmse_one_sample_db": float(metrics.nmse_db(H, s[:, 0]))})
  out["rows"] = rows
  out["settings"] = dict(B=B, K=K, shape=list(shape), snr_db=snr_db, dl_snr_db=dl_snr_db, components=components,
                         paths=1, T=100, seed=seed)
  return out


def _mixture_sample(gmm, key, num):
  """``num`` draws from a Gaussian mixture (the exact posterior), with an eigendecomposition root: posterior
  covariances can be near-singular, where :func:`jaxchan.oracle.sample`'s Cholesky factor is fragile."""
  kc, kz = jax.random.split(key)
  comp = jax.random.categorical(kc, jnp.log(jnp.maximum(gmm.weights, 1e-30)), shape=(num,))
  lam, V = jnp.linalg.eigh(gmm.covs)
  root = V * jnp.sqrt(jnp.maximum(lam, 0.0))[:, None, :].astype(V.dtype)
  z = conventions.standard_normal(kz, (num, gmm.dim), gmm.means.dtype)
  return gmm.means[comp] + jnp.einsum("nij,nj->ni", root[comp], z)


def noniden_study(steps, *, n=3000, seed=21):
  """Covariance error of non-identical posterior samples from one observation (the test's setting, d = 4)."""
  sch = schedules.GammaSchedule(100, 0.2)
  dim = 4
  gmm = oracle.random_mixture(jax.random.PRNGKey(7), dim, num_components=3)
  m = jnp.array([0.0, 0.7, 2.0, 6.0])
  k_h, k_n, k_run = jax.random.split(jax.random.PRNGKey(seed), 3)
  h = oracle.sample(gmm, k_h, 1)[0]
  h_bar = m * h + conventions.standard_normal(k_n, h.shape, h.dtype)
  g0, tau0 = noniden.initial_state(h_bar, m, sch)
  _, post_cov = oracle.moments(oracle.posterior(gmm, h_bar, jnp.diag(m), jnp.eye(dim)))
  start = noniden.Start(jnp.broadcast_to(g0, (n, dim)), jnp.broadcast_to(tau0, (n, dim)))
  D = oracle.denoiser(gmm, sch)
  rows = []
  for sp in ("eta:1.0", "dpm2m:1.0"):
    for ng in steps:
      out = np.asarray(noniden.make_generator(D, sch, sampler=noniden.Sampler.parse(sp), num_steps=ng)(start, k_run))
      c = np.cov(out.T)
      rows.append({"sampler": sp, "steps": ng,
                   "cov_rel_error": float(np.linalg.norm(c - np.asarray(post_cov)) / np.linalg.norm(post_cov))})
  return {"rows": rows, "settings": dict(n=n, dim=dim, m=m.tolist(), seed=seed, T=100, beta_max=0.2)}


def render(res, out):
  from jaxchan.experiments import style
  plt = style.pyplot()
  b, nn = res["bayesian"], res["noniden"]
  labels = {"ancestral": "ancestral (respaced)", "ddim": "DDIM", "dpm2m": "DPM-Solver++(2M)",
            "dpm2m_sde": "DPM-Solver++(2M) SDE"}
  md = ["# Few-step posterior sampling with exact denoisers\n",
        f"Command: `python examples/fast_sampling_study.py`. Bayesian precoding: {b['settings']}.\n",
        "| solver | network calls | SE, K = 16 Bayesian [bps/Hz] | NMSE one sample [dB] |", "|---|---|---|---|"]
  md += [f"| {labels[r['solver']]} | {r['network_calls']} | {r['se_k16']:.3f} | {r['nmse_one_sample_db']:.2f} |"
         for r in b["rows"]]
  md += ["", f"References: K = 16 exact posterior samples {b['exact_samples_k16']:.3f}, exact posterior Gramian "
         f"(K -> inf) {b['exact_gramian']:.3f}, perfect CSI {b['perfect_csi']:.3f} bps/Hz; one exact posterior "
         f"sample's NMSE {b['exact_nmse_one_sample_db']:.2f} dB, the exact posterior mean's "
         f"{b['exact_posterior_mean_nmse_db']:.2f} dB.", "",
         "Non-identical posterior sampling (one observation, exact denoiser): relative covariance error "
         f"({nn['settings']['n']} samples; Monte Carlo floor about {1 / np.sqrt(nn['settings']['n']):.3f} x a few).", "",
         "| sampler | steps | covariance error |", "|---|---|---|"]
  md += [f"| {r['sampler']} | {r['steps']} | {r['cov_rel_error']:.3f} |" for r in nn["rows"]]
  files.atomic_write_text(os.path.join(out, "tables.md"), "\n".join(md) + "\n")
  fig, (ax, ax1, ax2) = plt.subplots(1, 3, figsize=(15, 3.9))
  for i, kind in enumerate(labels):
    rr = [r for r in b["rows"] if r["solver"] == kind]
    ax.plot([r["network_calls"] for r in rr], [r["se_k16"] for r in rr], marker="osD^"[i], ms=4,
            ls=["-", "--", "-.", ":"][i], label=labels[kind])
    ax1.plot([r["network_calls"] for r in rr], [r["nmse_one_sample_db"] for r in rr], marker="osD^"[i], ms=4,
             ls=["-", "--", "-.", ":"][i], label=labels[kind])
  ax1.axhline(b["exact_nmse_one_sample_db"], color="k", lw=1, label="an exact posterior sample")
  ax1.axhline(b["exact_posterior_mean_nmse_db"], color="C7", ls="--", lw=1, label="the exact posterior mean")
  ax1.set_xscale("log")
  ax1.set(xlabel="network calls per sample", ylabel="NMSE of one sample [dB]",
          title="Is it a posterior sample? (same setting)")
  ax1.legend(fontsize=7)
  ax.axhline(b["exact_samples_k16"], color="k", lw=1, label="K = 16 exact posterior samples")
  ax.axhline(b["exact_gramian"], color="C7", ls="--", lw=1, label="exact posterior Gramian (K = inf)")
  ax.set_xscale("log")
  ax.set(xlabel="network calls per sample", ylabel="SE of the K = 16 Bayesian precoder [bps/Hz]",
         title=f"Standard diffusion, exact eps (clustered GMM, {b['settings']['snr_db']:g} dB)")
  ax.legend(fontsize=7)
  for i, sp in enumerate(("eta:1.0", "dpm2m:1.0")):
    rr = [r for r in nn["rows"] if r["sampler"] == sp]
    ax2.plot([r["steps"] for r in rr], [r["cov_rel_error"] for r in rr], marker="os"[i], ls=["-", "--"][i],
             label={"eta:1.0": "eta = 1 (ancestral)", "dpm2m:1.0": "element-wise DPM-Solver++(2M) SDE"}[sp])
  ax2.set_xscale("log")
  ax2.set_yscale("log")
  ax2.set(xlabel="generation steps N_G (network calls)", ylabel="posterior covariance error (relative)",
          title="Non-identical diffusion, exact D, water-filling")
  ax2.legend(fontsize=7)
  fig.tight_layout()
  files.atomic_save_figure(fig, os.path.join(out, "fig_fast_sampling.png"), dpi=120)
  plt.close(fig)


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--out", default="docs/results/fast_sampling")
  p.add_argument("--smoke", action="store_true")
  p.add_argument("--render_only", action="store_true", help="redraw tables and figure from OUT/results.json")
  a = p.parse_args()
  if a.render_only:
    render(json.load(open(os.path.join(a.out, "results.json"))), a.out)
    return
  t0 = time.time()
  steps = (2, 5) if a.smoke else (1, 2, 5, 10, 20, 50, 100)
  res = {"bayesian": bayesian_study(steps, B=4 if a.smoke else 16),
         "noniden": noniden_study((5, 10) if a.smoke else (5, 10, 20, 50, 100, 400), n=300 if a.smoke else 3000)}
  res["wall_s"] = round(time.time() - t0, 1)
  os.makedirs(a.out, exist_ok=True)
  files.atomic_write_json(os.path.join(a.out, "results.json"), res)
  render(res, a.out)
  print(open(os.path.join(a.out, "tables.md")).read())


if __name__ == "__main__":
  main()
