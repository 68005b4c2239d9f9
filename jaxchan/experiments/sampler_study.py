"""How far do the non-identical samplers land from the truth, with an exact denoiser?

The paper's generation uses eq. (9) with a constant ``eps = 0.4``. Eq. (9) is DDIM
with injected noise ``sqrt(1 - eps^2) beta_next`` per step, which does not
shrink with the step size; the eta family (:mod:`jaxchan.noniden`) does. This
study removes every learning error by driving the samplers with the exact GMM
denoiser (:mod:`jaxchan.oracle`) and measures, as ``N_G`` grows:

* **prior**: start from non-identical forward samples
  ``g0 = alpha(tau0) h + beta(tau0) xi``, ``h ~ GMM``; by Theorem 2 the output
  should be distributed as the GMM. Reported: relative covariance error and
  mean error (in units of the prior std).
* **posterior**: start many times from one fixed ``g0``; a sampler of
  ``p(h | g0)`` should match the exact posterior moments. Reported: relative
  covariance error, mean error in posterior std units, and the ratio of sample
  to exact posterior variance (trace). Averaged over a few observations.

* **observation**: the whole estimation problem. An observation
  ``H_bar = M o H + CN(0, I)`` with element-wise reliabilities ``M`` (eq. 14) is
  turned into a start by :func:`jaxchan.noniden.initial_state`, either the
  variance-consistent one (the default) or the paper's eqs. (15)-(16); the
  output should match the exact posterior ``p(h | H_bar)``. Reported per start:
  relative covariance error and mean error in posterior std units.

The "floor" rows are the same statistics for exact samples of the same size:
an error at the floor is indistinguishable from sampling noise.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxchan import checks, conventions, noniden, oracle, progress, schedules, stepping
from jaxchan.experiments import common


def _moments(x):
  m = x.mean(0)
  c = x - m
  return m, c.T @ c.conj() / x.shape[0]


def _prior_stats(x, mean, cov):
  m, c = _moments(x)
  return dict(cov_err=float(np.linalg.norm(c - cov) / np.linalg.norm(cov)),
              mean_err=float(np.linalg.norm(m - mean) / np.sqrt(np.trace(cov).real)))


def _posterior_stats(xs, means, covs):
  out = dict(cov_err=[], mean_err=[], var_ratio=[])
  for x, pm, pc in zip(xs, means, covs):
    m, c = _moments(x)
    out["cov_err"].append(np.linalg.norm(c - pc) / np.linalg.norm(pc))
    out["mean_err"].append(np.linalg.norm(m - pm) / np.sqrt(np.trace(pc).real))
    out["var_ratio"].append(np.trace(c).real / np.trace(pc).real)
  return {k: float(np.mean(v)) for k, v in out.items()}


def validate(config):
  if len(config.tau0) != config.dim:
    raise ValueError(f"config.tau0 has {len(config.tau0)} entries but config.dim={config.dim}; "
                     "give one initial time per element.")
  with common.field("config.T"):
    schedules.GammaSchedule(config.T)
  with common.field("config.samplers"):
    for spec in config.samplers:
      if noniden.Sampler.parse(spec).kind in noniden.RESIDUAL_SAMPLERS:
        raise ValueError(f"{spec!r} draws from a Gaussian anchor's posterior, which this exact-GMM study has none "
                         "of; use eta, eq9 or dpm2m samplers.")
  with common.field("config.rule"):
    stepping.Stepping(config.rule)
  for n in config.num_steps:
    checks.positive_int("config.num_steps entry", n)
  if any(not 0 <= t <= config.T for t in config.tau0):
    raise ValueError(f"config.tau0={list(config.tau0)} must lie in [0, T={config.T}].")
  if len(config.reliability) != config.dim or any(not (r >= 0 and np.isfinite(r)) for r in config.reliability):
    raise ValueError(f"config.reliability={list(config.reliability)} must hold dim={config.dim} finite values >= 0 "
                     "(the M of eq. 14; 0 = unobserved).")
  for start in config.starts:
    if start not in noniden.STARTS:
      raise ValueError(f"config.starts entry {start!r} must be one of {noniden.STARTS}.")


def run(config, workdir: str) -> dict:
  """Run the study; writes results.json, sampler_study.md and sampler_study.png to ``workdir``."""
  started = time.time()
  validate(config)
  os.makedirs(workdir, exist_ok=True)
  sch = schedules.GammaSchedule(config.T)
  key = jax.random.PRNGKey(config.seed)
  k_gmm, k_h, k_xi, k_obs, k_run, k_floor = jax.random.split(key, 6)
  gmm = oracle.random_mixture(k_gmm, config.dim, config.num_components)
  prior_mean, prior_cov = (np.asarray(a, np.complex128) for a in oracle.moments(gmm))
  D = oracle.denoiser(gmm, sch)
  tau0 = jnp.asarray(config.tau0, jnp.float32)
  n = config.num_samples

  # Prior experiment inputs.
  h = oracle.sample(gmm, k_h, n)
  taus = jnp.broadcast_to(tau0, h.shape)
  g0_prior, _ = noniden.diffuse(h, taus, k_xi, sch)
  # Posterior experiment inputs: num_obs observations, each replicated.
  reps = n // config.num_obs
  h_obs = oracle.sample(gmm, k_obs, config.num_obs)
  g_obs, _ = noniden.diffuse(h_obs, jnp.broadcast_to(tau0, h_obs.shape), jax.random.fold_in(k_obs, 1), sch)
  A, N = oracle.elementwise_observation(*schedules.alpha_beta(tau0, sch))
  posts = [oracle.posterior(gmm, g, A, N) for g in g_obs]
  post_mom = [tuple(np.asarray(a, np.complex128) for a in oracle.moments(p)) for p in posts]
  g0_post = jnp.repeat(g_obs, reps, axis=0)
  taus_post = jnp.broadcast_to(tau0, g0_post.shape)
  # Observation experiment: H_bar = M o H + CN(0, I), started by each start rule.
  k_hb, k_hn = jax.random.split(jax.random.fold_in(k_obs, 2))
  m = jnp.asarray(config.reliability, jnp.float32)
  h_o = oracle.sample(gmm, k_hb, config.num_obs)
  hbar = m * h_o + conventions.standard_normal(k_hn, h_o.shape, h_o.dtype)
  A_obs, N_obs = jnp.diag(m).astype(h_o.dtype), jnp.eye(config.dim)
  obs_mom = [tuple(np.asarray(a, np.complex128) for a in oracle.moments(oracle.posterior(gmm, y, A_obs, N_obs)))
             for y in hbar]
  hbar_rep, m_rep = jnp.repeat(hbar, reps, axis=0), jnp.broadcast_to(m, (reps * config.num_obs, config.dim))
  obs_starts = {s: noniden.initial_state(hbar_rep, m_rep, sch, start=s) for s in config.starts}

  floor = dict(
      prior=_prior_stats(np.asarray(oracle.sample(gmm, k_floor, n), np.complex128), prior_mean, prior_cov),
      posterior=_posterior_stats(
          [np.asarray(oracle.posterior_sample(gmm, g, A, N, jax.random.fold_in(k_floor, j), reps), np.complex128)
           for j, g in enumerate(g_obs)],
          [m for m, _ in post_mom], [c for _, c in post_mom]),
      observation=_posterior_stats(
          [np.asarray(oracle.posterior_sample(gmm, y, A_obs, N_obs, jax.random.fold_in(k_floor, 100 + j), reps),
                      np.complex128) for j, y in enumerate(hbar)],
          [a for a, _ in obs_mom], [c for _, c in obs_mom]))

  rows = []
  grid = [(s, ng) for s in config.samplers for ng in config.num_steps]
  for spec, n_steps in progress.bar(grid, desc="sampler study", disable=not config.progress):
    gen = noniden.make_generator(D, sch, stepping=stepping.Stepping(config.rule), sampler=noniden.Sampler.parse(spec),
                                 num_steps=n_steps)
    t0 = time.time()
    out_prior = np.asarray(gen((g0_prior, taus), k_run), np.complex128)
    out_post = np.asarray(gen((g0_post, taus_post), jax.random.fold_in(k_run, 1)), np.complex128)
    observation = {}
    for start, (g0s, tau0s) in obs_starts.items():
      out_obs = np.asarray(gen((g0s, tau0s), jax.random.fold_in(k_run, 2)), np.complex128)
      observation[start] = _posterior_stats(out_obs.reshape(config.num_obs, reps, -1),
                                            [a for a, _ in obs_mom], [c for _, c in obs_mom])
    rows.append(dict(sampler=spec, num_steps=n_steps, seconds=round(time.time() - t0, 2),
                     prior=_prior_stats(out_prior, prior_mean, prior_cov),
                     posterior=_posterior_stats(out_post.reshape(config.num_obs, reps, -1),
                                                [m for m, _ in post_mom], [c for _, c in post_mom]),
                     observation=observation))
    if config.progress:
      progress.tqdm.write(f"{spec} N_G={n_steps}: prior cov err {rows[-1]['prior']['cov_err']:.4f}, "
                 f"posterior cov err {rows[-1]['posterior']['cov_err']:.4f}")

  results = dict(config=config.to_dict(), floor=floor, rows=rows, device=str(jax.devices()[0]))
  from jaxchan.experiments import sampler_study_report
  common.write_results(workdir, results, sampler_study_report.render, started=started)
  return results
