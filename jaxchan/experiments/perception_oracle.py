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

With ``config.learned.enabled`` the same transformer backbone as the perception
experiment (:class:`jaxchan.models.transformer.ChannelTransformer`) is trained on
channels from this prior, seen through this observation (:func:`srs_view`: one SRS
occasion sounding the first ``sounded`` PRBs, least-squares scaled by ``1 / rho``):
the SL by MSE (it should approach the exact CME) and the DM by v prediction (its
K-sample Bayesian precoder should approach the exact one with the same K). Their
rows sit next to the exact ones in every table, with the ratios of their SE to the
exact CME and exact K-sample precoders.

Outputs: ``results.json``, ``tables.md``, ``fig_oracle_se.png`` (SE against SNR and the
gap K -> infinity minus CME); the learned models under ``WORKDIR/models/{sl,dm}``
(checkpointed, resumable).
"""

from __future__ import annotations

import functools
import math
import os
import time

import jax
import jax.numpy as jnp

from jaxchan import checks, conventions, ddpm, metrics, oracle, precoding
from jaxchan.experiments import common
from jaxchan.experiments.perception_oracle_setup import (  # noqa: F401  (re-exported)
    FITTED, GAUSSIAN, LABELS, LEARNED, LEARNED_CHUNK, LEARNED_USES, METHODS, Problem, draw, exact_cme_mse,
    fit_mixture, mixture_rows, moment_matched, observation, row_covariance, srs_view)

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
  # K of the Gaussian Bayesian row too, with or without the learned models.
  checks.positive_int("config.learned.num_samples", config.learned.num_samples)
  if not 0.0 <= config.rho <= 1.0:
    raise ValueError(f"config.rho={config.rho!r} (the aging correlation) must lie in [0, 1].")
  if not isinstance(config.sounded, int) or not 1 <= config.sounded <= n_freq:
    raise ValueError(f"config.sounded={config.sounded!r} must be an integer in [1, n_freq={n_freq}].")
  for f in ("num_test", "num_components"):
    if not isinstance(config[f], int) or config[f] < 1:
      raise ValueError(f"config.{f}={config[f]!r} must be a positive integer.")
  M = config.mixture
  for f in ("components", "rank", "train_samples"):
    checks.positive_int(f"config.mixture.{f}", M[f])
  if isinstance(M.rounds, bool) or not isinstance(M.rounds, int) or M.rounds < 0:
    raise ValueError(f"config.mixture.rounds={M.rounds!r} must be an integer >= 0.")
  if M.rank >= n_bs * n_freq:
    raise ValueError(f"config.mixture.rank={M.rank} must be below the row size n_bs x n_freq = {n_bs * n_freq}.")
  if n_ue * M.train_samples < M.components * (M.rank + 1):
    raise ValueError(f"config.mixture.train_samples={M.train_samples} gives {n_ue * M.train_samples} rows, too few "
                     f"for {M.components} components of rank {M.rank} (at least {M.components * (M.rank + 1)}); "
                     "draw more.")
  L = config.learned
  if L.enabled:
    if not config.rho > 0 or n_freq % config.sounded:
      raise ValueError(f"the learned models see the observation as an SRS occasion: they need config.rho > 0 "
                       f"(got {config.rho}) and config.sounded dividing n_freq={n_freq} (got {config.sounded}); "
                       "or set config.learned.enabled=False.")
    if L.num_samples not in tuple(config.num_samples):
      raise ValueError(f"config.learned.num_samples={L.num_samples!r} must be one of config.num_samples="
                       f"{tuple(config.num_samples)}, so the learned ensemble has an exact counterpart.")
    if n_ue % L.ue_per_token or 2 * n_bs * L.ue_per_token > L.d_model:
      raise ValueError(f"config.learned.ue_per_token={L.ue_per_token} must divide n_ue={n_ue} and keep tokens of "
                       f"2 x n_bs x ue_per_token = {2 * n_bs * L.ue_per_token} reals within "
                       f"config.learned.d_model={L.d_model}.")
    lo, hi = L.snr_db_range
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
      raise ValueError(f"config.learned.snr_db_range={tuple(L.snr_db_range)} must be finite (low, high), low <= high.")
    checks.choice("config.learned.prediction", L.prediction, ddpm.PREDICTIONS)
    checks.choice("config.learned.anchor", L.get("anchor", "none"), ("mixture", "prior", "none"))
    for f in ("batch_size", "steps_per_epoch", "T"):
      if not isinstance(L[f], int) or L[f] < 1:
        raise ValueError(f"config.learned.{f}={L[f]!r} must be a positive integer.")
    for u in LEARNED_USES:
      if not isinstance(L.epochs[u], int) or L.epochs[u] < 1:
        raise ValueError(f"config.learned.epochs.{u}={L.epochs[u]!r} must be a positive integer.")


def evaluate_snr(priors, key, problem: Problem, *, snr_db, num_test, num_samples, gauss_samples, learned=None):
  """Mean SE and captured-energy fraction of every method at one observation SNR of ``problem``;
  ``priors``: ``(prior, fitted)``, the true prior the channels come from and the mixture fitted on draws
  (:func:`fit_anchor`; ``None``: no such rows), whose exact CME and K-sample Bayesian precoders are rows too;
  ``gauss_samples``: K of the Gaussian and fitted-mixture Bayesian rows (the learned DM's K).

  ``learned``: ``(y, sigma2, key) -> ({name: W}, sl_estimate)`` for the learned rows (:func:`jaxchan.experiments.perception_oracle_learned.make_learned_precoders`),
  evaluated on the same channels and observations.
  """
  shape, sounded, rho, n_streams, dl_snr_db = problem
  prior, fitted = priors
  sigma2 = 10.0 ** (-snr_db / 10.0)
  A, N = observation(shape, sounded, rho, sigma2)
  k_h, k_n, k_s, k_u = jax.random.split(key, 4)
  h = oracle.sample(prior, k_h, num_test)                                  # [B, d]
  y = h @ A.T + jnp.sqrt(jnp.diag(N))[None] * conventions.standard_normal(k_n, (num_test, A.shape[0]), h.dtype)
  H = h.reshape((num_test,) + tuple(shape))
  dl = metrics.from_db(jnp.asarray(dl_snr_db, jnp.float32))
  post = jax.vmap(lambda yi: oracle.posterior(prior, yi, A, N))(y)
  cme = jnp.einsum("bk,bkd->bd", post.weights.astype(post.means.dtype), post.means).reshape(H.shape)
  # The Gaussian baseline: the exact posterior under the moment-matched Gaussian (LMMSE mean, K samples).
  gauss = moment_matched(prior)
  g_mean = jax.vmap(lambda yi: oracle.posterior(gauss, yi, A, N).means[0])(y).reshape(H.shape)
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
  W["gauss_mean"] = precoding.svd_precoder(g_mean, n_streams)
  g_samples = jax.vmap(lambda yi, k: oracle.posterior_sample(gauss, yi, A, N, k, gauss_samples))(
      y, jax.random.split(jax.random.fold_in(k_s, 7), num_test))
  W["gauss_bayes"] = precoding.bayesian_precoder(
      jnp.moveaxis(g_samples.reshape((num_test, gauss_samples) + tuple(shape)), 1, 0), n_streams)
  if fitted is not None:
    f_post = jax.vmap(lambda yi: oracle.posterior(fitted, yi, A, N))(y)
    f_mean = jnp.einsum("bk,bkd->bd", f_post.weights.astype(f_post.means.dtype), f_post.means).reshape(H.shape)
    W["mix_mean"] = precoding.svd_precoder(f_mean, n_streams)
    f_samples = jax.vmap(lambda yi, k: oracle.posterior_sample(fitted, yi, A, N, k, gauss_samples))(
        y, jax.random.split(jax.random.fold_in(k_s, 11), num_test))
    W["mix_bayes"] = precoding.bayesian_precoder(
        jnp.moveaxis(f_samples.reshape((num_test, gauss_samples) + tuple(shape)), 1, 0), n_streams)
  sl_est = None
  if learned is not None:
    # In chunks: K = 16 chains per channel through T decoder passes; one chunk's state stays in cache.
    parts = [learned(y[i:i + LEARNED_CHUNK], sigma2, jax.random.fold_in(k_s, 1 + i))
             for i in range(0, num_test, LEARNED_CHUNK)]
    W.update({n: jnp.concatenate([w[n] for w, _ in parts]) for n in parts[0][0]})
    sl_est = jnp.concatenate([e for _, e in parts])
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
  out["gauss_nmse"] = float(metrics.nmse(H, g_mean))
  if fitted is not None:
    out["mix_nmse"] = float(metrics.nmse(H, f_mean))
  if sl_est is not None:
    out["sl_nmse"] = float(metrics.nmse(H, sl_est))
  return out


def fit_anchor(config, prior, log=common.log):
  """The mixture fitted on ``config.mixture.train_samples`` draws from ``prior`` (:func:`fit_mixture`, seeded by
  ``config.seed``): a classical baseline in every table and the learned models' anchor under
  ``config.learned.anchor = "mixture"``."""
  M = config.mixture
  t = time.time()
  fitted = fit_mixture(prior, jax.random.fold_in(jax.random.PRNGKey(config.seed), 2000), tuple(config.shape),
                       components=M.components, rank=M.rank, rounds=M.rounds, num=M.train_samples, seed=config.seed)
  log(f"EM-fitted mixture: {M.components} components of rank {M.rank} on {M.train_samples} draws "
      f"({time.time() - t:.1f} s); weights " + ", ".join(f"{w:.3f}" for w in fitted.weights.tolist()))
  return fitted


def run(config, workdir: str, log=common.log) -> dict:
  from jaxchan.experiments import common, perception_oracle_report

  started = time.time()
  validate(config)
  os.makedirs(workdir, exist_ok=True)
  shape = tuple(config.shape)
  key = jax.random.PRNGKey(config.seed)
  prior = oracle.clustered_mixture(jax.random.fold_in(key, 0), shape, config.num_components, paths=config.paths)
  fitted = fit_anchor(config, prior, log)
  learned_fn, training, floors = None, {}, {}
  if config.learned.enabled:
    from jaxchan.experiments import perception_oracle_learned as learned
    models = {}
    for use in LEARNED_USES:
      log(f"training the learned {use.upper()} on the prior ({config.learned.epochs[use]} epochs of "
          f"{config.learned.steps_per_epoch} steps)")
      m, p, training[use], floor = learned.train_learned(config, prior, use, os.path.join(workdir, "models", use),
                                                         log=log, fitted=fitted)
      floors.update(floor)
      models[use] = (m, p)
    learned_fn = learned.make_learned_precoders(config, models, config.n_streams)
  problem = Problem(tuple(shape), config.sounded, config.rho, config.n_streams, config.dl_snr_db)
  ev = functools.partial(evaluate_snr, (prior, fitted), problem=problem, num_test=config.num_test,
                         num_samples=tuple(config.num_samples), gauss_samples=config.learned.num_samples,
                         learned=learned_fn)
  rows = []
  for i, snr in enumerate(config.snr_db_grid):
    r = ev(jax.random.fold_in(key, 1 + i), snr_db=float(snr))
    rows.append(dict(snr_db=float(snr), **r))
    log(f"obs. SNR {snr:+.0f} dB: SE " + ", ".join(f"{k} {v['se']:.3f}" for k, v in r.items() if isinstance(v, dict)))
  results = dict(config=config.to_dict(), rows=rows, device=str(jax.devices()[0]), training=training,
                 floors=floors)
  common.write_results(workdir, results, perception_oracle_report.render, started=started)
  return results
