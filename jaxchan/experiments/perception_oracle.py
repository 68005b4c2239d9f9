"""Perception vs. distortion with exact posteriors: the Jensen gap of Bayesian precoding, measured exactly.

The perception-distortion paper argues that precoding from posterior samples
(eq. 28, K samples) beats precoding from the CME because the SE objective is not a
function of the mean alone. Learned models hide that argument behind training
error. Here the channel prior is a Gaussian mixture shaped like the SRS problem
(:func:`jaxchan.oracle.clustered_mixture`: user clusters with low-rank beams and
frequency correlation) and the observation is linear and noisy, so every posterior
quantity is exact (:mod:`jaxchan.oracle`):

``y = A h + n``, ``A = rho S`` (``S`` keeps the sounded PRBs, one hop of the SRS),
``n ~ CN(0, (1 - rho^2 + sigma^2) I)``: an aged (correlation ``rho``) and noisy
look at part of the band. The observation SNR ``1 / sigma^2`` is the information dial.

Per SNR it reports the SE (eq. 25, DL SNR fixed) and the captured energy of eq. (28) of:
perfect CSI; the exact CME precoder (SVD of ``E[H | y]``); the exact Bayesian precoder
from K = 1, 4, 16, 64 exact posterior samples; its K -> infinity limit, the
eigenvectors of the exact posterior Gramian ``E[H^H H | y]`` (:func:`jaxchan.oracle.expected_gramian`);
the prior-only precoder (the prior's Gramian, no observation) and Haar-uniform precoders.

Outputs: ``results.json``, ``tables.md``, ``fig_oracle_se.png`` (SE against SNR and the
gap K -> infinity minus CME).
"""

from __future__ import annotations

import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxchan import conventions, io, metrics, oracle, precoding

METHODS = ("perfect_csi", "bayes_inf", "cme", "prior", "uniform")
LABELS = {"perfect_csi": "Perfect CSI (SVD)", "bayes_inf": "Exact Bayesian, K -> inf (posterior Gramian)",
          "cme": "Exact CME precoder (SVD of E[H|y])", "prior": "Prior Gramian (no observation)",
          "uniform": "Uniform precoder (no CSI)"}


def validate(config):
  if len(config.shape) != 3 or not all(isinstance(x, int) and x >= 1 for x in config.shape):
    raise ValueError(f"config.shape={tuple(config.shape)} must be three positive integers (n_ue, n_bs, n_freq).")
  n_ue, n_bs, n_freq = config.shape
  if not isinstance(config.n_streams, int) or not 1 <= config.n_streams <= min(n_ue, n_bs):
    raise ValueError(f"config.n_streams={config.n_streams!r} must be an integer in [1, min(n_ue, n_bs)].")
  if not config.snr_db_grid or any(not math.isfinite(s) for s in config.snr_db_grid):
    raise ValueError(f"config.snr_db_grid={tuple(config.snr_db_grid)} must be a non-empty list of finite dB values.")
  if not config.num_samples or any(not isinstance(k, int) or k < 1 for k in config.num_samples):
    raise ValueError(f"config.num_samples={tuple(config.num_samples)}: every K must be an integer >= 1.")
  if not 0.0 <= config.rho <= 1.0:
    raise ValueError(f"config.rho={config.rho!r} (the aging correlation) must lie in [0, 1].")
  if not isinstance(config.sounded, int) or not 1 <= config.sounded <= n_freq:
    raise ValueError(f"config.sounded={config.sounded!r} must be an integer in [1, n_freq={n_freq}].")
  for f in ("num_test", "num_components"):
    if not isinstance(config[f], int) or config[f] < 1:
      raise ValueError(f"config.{f}={config[f]!r} must be a positive integer.")


def observation(shape, sounded: int, rho: float, sigma2: float):
  """``(A [m, d], N [m, m])``: the sounded PRBs (the first ``sounded``), scaled by ``rho``, plus noise."""
  n_ue, n_bs, n_freq = shape
  keep = np.zeros(shape, bool)
  keep[..., :sounded] = True
  rows = np.flatnonzero(keep.reshape(-1))
  A = np.zeros((rows.size, keep.size), np.complex64)
  A[np.arange(rows.size), rows] = rho
  return jnp.asarray(A), jnp.asarray((1.0 - rho**2 + sigma2) * np.eye(rows.size, dtype=np.float32))


def evaluate_snr(prior, key, *, shape, n_streams, sounded, rho, snr_db, dl_snr_db, num_test, num_samples):
  """Mean SE and captured-energy fraction of every method at one observation SNR."""
  sigma2 = 10.0 ** (-snr_db / 10.0)
  A, N = observation(shape, sounded, rho, sigma2)
  k_h, k_n, k_s, k_u = jax.random.split(key, 4)
  h = oracle.sample(prior, k_h, num_test)                                  # [B, d]
  y = h @ A.T + jnp.sqrt(jnp.diag(N))[None] * conventions.standard_normal(k_n, (num_test, A.shape[0]), h.dtype)
  H = h.reshape((num_test,) + tuple(shape))
  dl = metrics.from_db(jnp.asarray(dl_snr_db, jnp.float32))
  post = jax.vmap(lambda yi: oracle.posterior(prior, yi, A, N))(y)
  cme = jnp.einsum("bk,bkd->bd", post.weights.astype(post.means.dtype), post.means).reshape(H.shape)
  G_inf = jax.vmap(lambda p: oracle.expected_gramian(p, shape))(post)
  W_prior = precoding.precoder_from_gramian(oracle.expected_gramian(prior, shape), n_streams)
  W = {"perfect_csi": precoding.svd_precoder(H, n_streams), "cme": precoding.svd_precoder(cme, n_streams),
       "bayes_inf": precoding.precoder_from_gramian(G_inf, n_streams),
       "prior": jnp.broadcast_to(W_prior, (num_test,) + W_prior.shape),
       "uniform": precoding.random_precoder(k_u, (num_test,), shape[1], n_streams, shape[2])}
  kmax = max(num_samples)
  samples = jax.vmap(lambda yi, k: oracle.posterior_sample(prior, yi, A, N, k, kmax))(
      y, jax.random.split(k_s, num_test))                                  # [B, kmax, d]
  samples = jnp.moveaxis(samples.reshape((num_test, kmax) + tuple(shape)), 1, 0)
  for K in num_samples:
    W[f"bayes_{K}"] = precoding.bayesian_precoder(samples[:K], n_streams)
  energy = jnp.mean(jnp.sum(jnp.abs(H) ** 2, axis=(-3, -2)), axis=-1)
  # The conditional expectation E[||H W||^2 | y] = tr(W^H G_inf(y) W), exact: eq. (28)'s objective,
  # which the K -> infinity precoder maximizes for every y (the test checks this ordering).
  cond = lambda w: jnp.real(jnp.einsum("bisf,bijf,bjsf->b", jnp.conj(w), G_inf, w)) / shape[2]  # noqa: E731
  post_energy = jnp.real(jnp.einsum("biif->b", G_inf)) / shape[2]
  out = {}
  for name, w in W.items():
    out[name] = {"se": float(jnp.mean(precoding.spectral_efficiency(H, w, dl))),
                 "energy": float(jnp.mean(precoding.received_energy(H, w) / energy)),
                 "expected_energy": float(jnp.mean(cond(w)) / jnp.mean(post_energy))}
  out["cme_nmse"] = float(metrics.nmse(H, cme))
  return out


def run(config, workdir: str) -> dict:
  validate(config)
  os.makedirs(workdir, exist_ok=True)
  shape = tuple(config.shape)
  key = jax.random.PRNGKey(config.seed)
  prior = oracle.clustered_mixture(jax.random.fold_in(key, 0), shape, config.num_components, paths=config.paths)
  ev = functools.partial(evaluate_snr, prior, shape=shape, n_streams=config.n_streams, sounded=config.sounded,
                         rho=config.rho, dl_snr_db=config.dl_snr_db, num_test=config.num_test,
                         num_samples=tuple(config.num_samples))
  rows = []
  for i, snr in enumerate(config.snr_db_grid):
    r = ev(jax.random.fold_in(key, 1 + i), snr_db=float(snr))
    rows.append(dict(snr_db=float(snr), **r))
    if config.progress:
      print(f"obs. SNR {snr:+.0f} dB: SE " + ", ".join(f"{k} {v['se']:.3f}" for k, v in r.items() if k != "cme_nmse"),
            flush=True)
  results = dict(config=config.to_dict(), rows=rows, device=str(jax.devices()[0]))
  io.atomic_write_json(os.path.join(workdir, "results.json"), results)
  io.atomic_write_text(os.path.join(workdir, "tables.md"), to_markdown(results))
  plot(results, os.path.join(workdir, "fig_oracle_se.png"))
  return results


def _names(results):
  Ks = results["config"]["num_samples"]
  return list(METHODS[:2]) + [f"bayes_{k}" for k in Ks] + list(METHODS[2:])


def _label(name):
  return LABELS.get(name) or f"Exact Bayesian, K = {name.split('_')[1]} posterior samples"


def to_markdown(results) -> str:
  c = results["config"]
  names = _names(results)
  head = ["obs. SNR [dB]", "CME NMSE [dB]"] + [_label(n) for n in names] + ["gap K->inf - CME"]
  body = [[f"{r['snr_db']:+g}", f"{10 * np.log10(r['cme_nmse']):.2f}"] + [f"{r[n]['se']:.3f}" for n in names]
          + [f"{r['bayes_inf']['se'] - r['cme']['se']:+.3f}"] for r in results["rows"]]
  head_e = ["obs. SNR [dB]"] + [_label(n) for n in names]
  body_e = [[f"{r['snr_db']:+g}"] + [f"{r[n]['energy']:.4f}" for n in names] for r in results["rows"]]
  return (f"# Perception vs. distortion with exact posteriors\n\nPrior: {c['num_components']}-cluster GMM over "
          f"H ({' x '.join(map(str, c['shape']))}: UE x BS x PRB), {c['paths']} paths per cluster. Observation: "
          f"{c['sounded']} of {c['shape'][2]} PRBs, aging correlation rho = {c['rho']}, SNR on the rows. "
          f"{c['num_test']} channels per SNR, N_s = {c['n_streams']}, DL SNR {c['dl_snr_db']} dB.\n\n"
          "## Spectral efficiency [bps/Hz]\n\n" + io.markdown_table(head, body)
          + "\n\n## Captured energy (eq. 28 objective, fraction of the channel's)\n\n" + io.markdown_table(head_e, body_e))


def plot(results, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  rows = results["rows"]
  s = [r["snr_db"] for r in rows]
  fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
  k_colors = iter(["C2", "C1", "C4", "C5", "C6", "C8", "C9"])
  for i, n in enumerate(_names(results)):
    style = {"perfect_csi": "k-", "uniform": "k:", "prior": "C7-.", "cme": "C3--", "bayes_inf": "C0-"}.get(n)
    style = style or next(k_colors) + "-"
    ax.plot(s, [r[n]["se"] for r in rows], style, marker="osD^v<>ph*"[i % 10], ms=4, mfc="none", label=_label(n))
  ax.set(xlabel="observation SNR [dB]", ylabel="SE [bps/Hz]", title="Exact posteriors: SE against information")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  ax2.plot(s, [r["bayes_inf"]["se"] - r["cme"]["se"] for r in rows], "C0-o", label="K -> inf minus CME")
  k_colors = iter(["C2", "C1", "C4", "C5", "C6", "C8", "C9"])
  for K in results["config"]["num_samples"]:
    ax2.plot(s, [r[f"bayes_{K}"]["se"] - r["cme"]["se"] for r in rows], next(k_colors) + "--", marker=".",
             label=f"K = {K} minus CME")
  ax2.axhline(0, color="k", lw=0.8)
  ax2.set(xlabel="observation SNR [dB]", ylabel="SE gain over the CME precoder [bps/Hz]", title="Jensen gap")
  ax2.grid(alpha=0.3)
  ax2.legend(fontsize=7)
  fig.tight_layout()
  io.atomic_save_figure(fig, path, dpi=120)
  plt.close(fig)
