"""The Gaussian-anchored backbone: untrained, each use is the closed-form Gaussian predictor exactly.

Against the kernels of :mod:`jaxchan.gaussian_predictor` (themselves tested against the exact Gaussian
posterior in ``test_gaussian_predictor.py``) and an independent dense-matrix posterior mean.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxchan import conventions, ddpm, gaussian_predictor as gpred, precoding, prediction, schedules, srs
from jaxchan.models.transformer import ChannelTransformer

B, O, U, N, P = 3, 4, 4, 8, 12
RHO = np.array([0.2 + 0.1j, 0.4 - 0.3j, 0.6, 0.85 + 0.05j], np.complex64)
SCHED = (20, 0.008, 0.999)


def _model(use, anchor="gaussian", prediction_="v"):
  return ChannelTransformer(O, U, N, P, num_hops=4, ue_per_token=1, use=use, d_model=2 * N, num_heads=2,
                            enc_layers=1, dec_layers=1, anchor=anchor,
                            age_corr=tuple((float(r.real), float(r.imag)) for r in RHO), dm_schedule=SCHED,
                            prediction=prediction_)


@functools.lru_cache(maxsize=None)
def _setup(use, prediction_="v"):
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  # Correlated histories (a shared spatial mixing) so R is far from white and the anchor far from trivial.
  mix = conventions.standard_normal(k2, (N, N)) / np.sqrt(N)
  hist = jnp.einsum("bounf,nm->boumf", conventions.standard_normal(k1, (B, O, U, N, P)), mix)
  obs = srs.observe(hist, jax.random.PRNGKey(2))
  m = _model(use, prediction_=prediction_)
  if use == "dm":
    params = jax.jit(m.init)(jax.random.PRNGKey(0), obs.obs, obs.mask, obs.noise_var,
                             jnp.zeros((B, U, N, P), jnp.complex64), jnp.ones((B,), jnp.int32), jnp.zeros((B,), bool))
  else:
    params = jax.jit(m.init)(jax.random.PRNGKey(0), obs.obs, obs.mask, obs.noise_var)
  return obs, m, params, gpred.predict(obs, RHO)


def _tol(x):
  # float32 products of O(1) numbers through two n_bs x n_bs rotations: 1e-5 relative to the scale.
  return 1e-5 * float(jnp.max(jnp.abs(x))) + 1e-6


@pytest.mark.slow
def test_untrained_anchored_sl_is_the_gaussian_conditional_mean():
  obs, m, params, gp = _setup("sl")
  out = prediction.sl_predict(m, params, obs)
  np.testing.assert_allclose(np.asarray(out), np.asarray(gp.mean), atol=_tol(gp.mean))


@pytest.mark.slow
def test_untrained_anchored_e2e_is_the_gaussian_bayesian_precoder_in_its_limit():
  obs, m, params, gp = _setup("e2e")
  W = prediction.e2e_precoder(m, params, obs, n_streams=2)
  W_ref = precoding.precoder_from_gramian(gpred.expected_gramian(gp), 2)
  # Equal up to a phase per column: compare the projectors W W^H.
  proj = lambda w: jnp.einsum("bisf,bjsf->bijf", w, jnp.conj(w))  # noqa: E731
  np.testing.assert_allclose(np.asarray(proj(W)), np.asarray(proj(W_ref)), atol=2e-4)


@pytest.mark.slow
def test_latent_gramian_is_the_best_rank_n_ue_approximation():
  obs, _, _, gp = _setup("e2e")
  Z = gpred.latent(gp, U)
  G = np.asarray(gpred.expected_gramian(gp))
  Gz = np.asarray(precoding.gramian(Z[None]))
  for f in (0, P - 1):
    # The latent carries the documented isotropic floor (same eigenvectors as G).
    Gf = G[0, :, :, f]
    lam, V = np.linalg.eigh(Gf + gpred.LATENT_FLOOR * (1 + np.trace(Gf).real / N) * np.eye(N))
    best = (V[:, -U:] * lam[-U:]) @ V[:, -U:].conj().T
    np.testing.assert_allclose(Gz[0, :, :, f], best, atol=1e-4 * lam[-1])


@pytest.mark.slow
@pytest.mark.parametrize("prediction_", ["v", "eps"])
def test_untrained_anchored_dm_output_is_the_exact_gaussian_posterior(prediction_):
  obs, m, params, gp = _setup("dm", prediction_)
  sch = schedules.cosine_schedule(*SCHED)
  x = conventions.standard_normal(jax.random.PRNGKey(5), (B, U, N, P))
  for step in (1, 7, 20):
    t = jnp.full((B,), step)
    out = m.apply(params, obs.obs, obs.mask, obs.noise_var, x, t)
    x0 = ddpm.x0_from_eps(x, ddpm.as_eps(prediction_, x, out, t, sch), t, sch)
    # Independent reference: the dense posterior mean m + S a (a^2 S + (1 - a^2) I)^-1 (x - a m) per row and PRB.
    ab = float(sch.alpha_bars[step])
    V, c = np.asarray(gp.vecs, np.complex128), np.asarray(gp.cov_vals, np.float64)
    mean, xs = np.asarray(gp.mean, np.complex128), np.asarray(x, np.complex128)
    ref = np.empty_like(mean)
    for b in range(B):
      for f in range(P):
        S = (V[b] * c[b, :, f]) @ V[b].conj().T
        K = np.sqrt(ab) * S @ np.linalg.inv(ab * S + (1 - ab) * np.eye(N))
        ref[b, :, :, f] = mean[b, :, :, f] + (xs[b, :, :, f] - np.sqrt(ab) * mean[b, :, :, f]) @ K.T
    # At t = 1 eq. (7) divides by sqrt(abar) ~ 1 and multiplies the output's float32 error by
    # sqrt(1 - abar) / sqrt(abar) <= 1 for v; eps at t = T divides by sqrt(abar_T) ~ 1e-2: 1e-3 covers both.
    np.testing.assert_allclose(np.asarray(x0), ref, atol=1e-3 * np.abs(ref).max())


@pytest.mark.slow
def test_dropped_condition_gets_the_observation_free_prior():
  """CFG's null condition must not see the history: the anchor becomes CN(0, I), whose v is exactly 0."""
  obs, m, params, _ = _setup("dm")
  x = conventions.standard_normal(jax.random.PRNGKey(6), (B, U, N, P))
  out = m.apply(params, obs.obs, obs.mask, obs.noise_var, x, jnp.full((B,), 9), jnp.ones((B,), bool))
  np.testing.assert_allclose(np.asarray(out), 0.0, atol=1e-5)


@pytest.mark.slow
def test_untrained_anchored_dm_samples_the_conditional_gaussian():
  """K posterior draws of the untrained anchored DM: the sample mean is the conditional mean (the ancestral
  chain with an exact Gaussian denoiser keeps means exactly, by linearity) and the spread is the conditional
  covariance's, shrunk as the T-step chain's variance recursion says (``ddpm.gaussian_chain_variance``)."""
  obs, m, params, gp = _setup("dm")
  sch = schedules.cosine_schedule(*SCHED)
  K = 512
  draws = prediction.sample_posterior(m, params, obs, jax.random.PRNGKey(7), sch, num_samples=K)
  mean = np.asarray(jnp.mean(draws, 0))
  # Monte-Carlo error of a mean of K draws with per-element variance <= max c: 5 standard errors.
  se = np.sqrt(float(jnp.max(gp.cov_vals)) / K)
  np.testing.assert_allclose(mean, np.asarray(gp.mean), atol=5 * se)
  # Variance along each eigenvector of R: projected draws' spread against the chain's exact recursion.
  coords = jnp.einsum("bnk,sbunf->sbukf", jnp.conj(gp.vecs), draws - gp.mean[None])
  var = np.asarray(jnp.mean(jnp.abs(coords) ** 2, axis=(0, 2)))                           # [B, N, P]
  expect = np.asarray(ddpm.gaussian_chain_variance(gp.cov_vals, sch))
  # Each variance averages K * U = 2048 squared complex Gaussians: relative standard error 1/sqrt(2048) ~ 2 %.
  np.testing.assert_allclose(var, expect, rtol=0.12, atol=1e-4)


def test_anchor_settings_are_checked():
  with pytest.raises(ValueError, match="age_corr"):
    ChannelTransformer(O, U, N, P, use="sl", d_model=2 * N, num_heads=2, anchor="gaussian").init(
        jax.random.PRNGKey(0), jnp.zeros((1, O, U, N, P), jnp.complex64), jnp.ones((1, O, P), bool), jnp.ones((1,)))
  with pytest.raises(ValueError, match="allowed"):
    ChannelTransformer(O, U, N, P, use="sl", d_model=2 * N, num_heads=2, anchor="kronecker").init(
        jax.random.PRNGKey(0), jnp.zeros((1, O, U, N, P), jnp.complex64), jnp.ones((1, O, P), bool), jnp.ones((1,)))
