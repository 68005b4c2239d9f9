import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import complex_moment_zscores
from jaxchan import conventions, ddpm, oracle, schedules

SCH = schedules.cosine_schedule(200)


def test_x0_and_eps_are_inverse():
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  x0 = conventions.standard_normal(k1, (4, 8))
  t = jnp.array([1, 50, 120, 199])
  xt, eps = ddpm.q_sample(x0, t, k2, SCH)
  np.testing.assert_allclose(ddpm.x0_from_eps(xt, eps, t, SCH), x0, atol=1e-3)  # 1/sqrt(abar_199) amplifies rounding
  np.testing.assert_allclose(ddpm.eps_from_x0(xt, x0, t, SCH), eps, atol=1e-4)


@pytest.mark.parametrize("t", [1, 2, 100, 200])
def test_reverse_mean_with_true_eps_is_forward_posterior_mean(t):
  # Eq. (5) with the true eps equals mu_tilde(x_t, x0) of q(x_{t-1} | x_t, x0).
  k1, k2 = jax.random.split(jax.random.PRNGKey(1))
  x0 = conventions.standard_normal(k1, (3, 5))
  xt, eps = ddpm.q_sample(x0, t, k2, SCH)
  abar, abar_prev, beta = (float(SCH.alpha_bars[t]), float(SCH.alpha_bars[t - 1]), float(SCH.betas[t]))
  mu_tilde = (np.sqrt(abar_prev) * beta / (1 - abar) * np.asarray(x0)
              + np.sqrt(1 - beta) * (1 - abar_prev) / (1 - abar) * np.asarray(xt))
  np.testing.assert_allclose(ddpm.reverse_mean(xt, eps, t, SCH), mu_tilde, rtol=1e-4, atol=1e-4)


def test_posterior_variance_and_last_step_is_noiseless():
  sd = ddpm.reverse_std(jnp.arange(1, 201), SCH, "posterior")
  assert float(sd[0]) == 0.0
  abar = np.asarray(SCH.alpha_bars, np.float64)
  beta = np.asarray(SCH.betas, np.float64)
  expect = np.sqrt((1 - abar[1:-1]) / (1 - abar[2:]) * beta[2:])
  np.testing.assert_allclose(sd[1:], expect, rtol=1e-4)
  x = jnp.ones((2, 3), jnp.complex64)
  a = ddpm.ddpm_step(x, x, 1, jax.random.PRNGKey(0), SCH, variance="beta")
  b = ddpm.ddpm_step(x, x, 1, jax.random.PRNGKey(1), SCH, variance="beta")
  np.testing.assert_allclose(a, b)


def test_cfg_convention_and_range():
  c, u = jnp.ones(3), jnp.zeros(3)
  np.testing.assert_allclose(ddpm.cfg_eps(c, u, 1.0), c)
  np.testing.assert_allclose(ddpm.cfg_eps(c, u, 0.0), u)
  np.testing.assert_allclose(ddpm.cfg_eps(c, u, 0.25), 0.25)
  with pytest.raises(ValueError, match=r"w \(guidance scale\) must lie in \[0.0, 1.0\]"):
    ddpm.cfg_eps(c, u, 1.5)
  np.testing.assert_allclose(ddpm.cfg_eps(c, u, 1.5, allow_extrapolation=True), 1.5)


def test_bad_timestep_shape():
  with pytest.raises(ValueError, match="t must be a scalar or one step per sample"):
    ddpm.x0_from_eps(jnp.zeros((4, 3)), jnp.zeros((4, 3)), jnp.ones((3,), jnp.int32), SCH)


@pytest.mark.slow
def test_ancestral_sampling_with_exact_eps_reproduces_gmm():
  gmm = oracle.random_mixture(jax.random.PRNGKey(2), 3, 3)
  mean, cov = oracle.moments(gmm)
  eps_fn = oracle.ddpm_eps(gmm, SCH)
  n = 4000
  xT = conventions.standard_normal(jax.random.PRNGKey(3), (n, 3))
  run = jax.jit(functools.partial(ddpm.sample, eps_fn, schedule=SCH, record=lambda tr: tr))
  x0, traj = run(xT, jax.random.PRNGKey(4))
  # 5-sigma Bonferroni criterion on 27 moment statistics from n = 4000 samples.
  assert complex_moment_zscores(np.asarray(x0), mean, cov) < 5.0
  assert traj.x.shape == (200, n, 3) and traj.x0_hat.shape == (200, n, 3)
  # Deterministic (mean-only) sampling from pure noise collapses towards the
  # prior mean: its spread is far below the prior's (the point of Fig. 6).
  det = jax.jit(functools.partial(ddpm.sample, eps_fn, schedule=SCH, deterministic=True))(xT, jax.random.PRNGKey(4))
  spread = float(jnp.mean(jnp.abs(det - jnp.mean(det, 0)) ** 2))
  assert spread < 0.5 * float(jnp.real(jnp.trace(cov))) / 3


def test_reverse_mean_through_x0_equals_eq5_and_the_clip_bounds_it():
  from jaxchan import conventions, ddpm, schedules
  sch = schedules.cosine_schedule(50)
  x = conventions.standard_normal(jax.random.PRNGKey(0), (6, 5))
  eps = 3.0 * conventions.standard_normal(jax.random.PRNGKey(1), (6, 5))
  for t in (1, 7, 49, 50):
    a = ddpm.reverse_mean(x, eps, t, sch)
    b = ddpm.reverse_mean_from_x0(x, ddpm.x0_from_eps(x, eps, t, sch), t, sch)
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=2e-4, atol=2e-4)
  c = ddpm.clip_magnitude(jnp.array([3 + 4j, 0.3 - 0.4j, 0j]), 2.0)
  np.testing.assert_allclose(np.asarray(c), [1.2 + 1.6j, 0.3 - 0.4j, 0j], rtol=1e-6)
  # At t = T the unclipped step amplifies a wrong eps by 1/sqrt(1 - beta_T); the clipped one stays bounded.
  wild = ddpm.ddpm_step(x, eps, 50, jax.random.PRNGKey(2), sch, deterministic=True)
  tame = ddpm.ddpm_step(x, eps, 50, jax.random.PRNGKey(2), sch, deterministic=True, clip_x0=4.0)
  assert float(jnp.max(jnp.abs(wild))) > 20 and float(jnp.max(jnp.abs(tame))) < 5


def test_gaussian_loss_bound_closed_form_and_monte_carlo():
  from jaxchan import conventions, ddpm, schedules
  sch = schedules.cosine_schedule(50)
  # Unit variances: the per-t error is abar_t, so the bound is the mean of abar over t = 1..T.
  np.testing.assert_allclose(float(ddpm.gaussian_loss_bound(jnp.ones(7), sch)),
                             float(jnp.mean(sch.alpha_bars[1:])), rtol=1e-6)
  # Zero variance (a constant element): eps is read off x_t exactly.
  assert float(ddpm.gaussian_loss_bound(jnp.zeros(3), sch)) == pytest.approx(0.0, abs=1e-7)
  # Monte Carlo at one t with the Wiener estimate eps_hat = (1 - abar) / (abar lam + 1 - abar) * x_t / sqrt(1 - abar):
  # n = 200,000 draws of |error|^2 (relative std 1) pin the mean to 0.2 %; allow 5 standard errors.
  lam, t, n = 0.3, 10, 200_000
  one = schedules.DDPMSchedule(sch.betas[:t + 1], sch.alphas[:t + 1], sch.alpha_bars[:t + 1])
  ab = float(sch.alpha_bars[t])
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  x0 = np.sqrt(lam) * np.asarray(conventions.standard_normal(k1, (n,)))
  eps = np.asarray(conventions.standard_normal(k2, (n,)))
  xt = np.sqrt(ab) * x0 + np.sqrt(1 - ab) * eps
  est = np.sqrt(1 - ab) / (ab * lam + 1 - ab) * xt
  mc = np.mean(np.abs(est - eps) ** 2)
  assert mc == pytest.approx(ab * lam / (ab * lam + 1 - ab), rel=5 / np.sqrt(n))
  # The bound averages the same per-t value over t = 1..T; the one-step schedule truncated at t checks that.
  per_t = np.asarray(sch.alpha_bars[1:t + 1]) * lam / (np.asarray(sch.alpha_bars[1:t + 1]) * lam + 1 - np.asarray(sch.alpha_bars[1:t + 1]))
  np.testing.assert_allclose(float(ddpm.gaussian_loss_bound(jnp.full(2, lam), one)), per_t.mean(), rtol=1e-5)


def test_v_target_and_eps_from_v_are_inverse_and_consistent_with_eq7():
  from jaxchan import conventions, ddpm, schedules
  sch = schedules.cosine_schedule(20)
  k1, k2 = jax.random.split(jax.random.PRNGKey(3))
  x0 = conventions.standard_normal(k1, (4, 6), jnp.complex64)
  t = jnp.array([1, 7, 19, 20])
  x_t, eps = ddpm.q_sample(x0, t, k2, sch)
  v = ddpm.v_target(x0, eps, t, sch)
  # Given x_t, v determines eps exactly, and eq. (7) then returns x0 (float32: 1e-4 away from t = T,
  # where 1 / sqrt(abar_T) magnifies rounding; the last row is checked on eps only).
  np.testing.assert_allclose(np.asarray(ddpm.eps_from_v(x_t, v, t, sch)), np.asarray(eps), atol=1e-5)
  np.testing.assert_allclose(np.asarray(ddpm.x0_from_eps(x_t, ddpm.as_eps("v", x_t, v, t, sch), t, sch))[:3],
                             np.asarray(x0)[:3], atol=1e-3)
  assert ddpm.as_eps("eps", x_t, eps, t, sch) is eps
  with pytest.raises(ValueError, match="prediction"):
    ddpm.as_eps("x0", x_t, v, t, sch)


def test_v_loss_bound_is_eps_bound_over_abar():
  from jaxchan import ddpm, schedules
  sch = schedules.cosine_schedule(30)
  ab = np.asarray(sch.alpha_bars[1:], np.float64)
  # Unit variance: the v miss is 1 / (abar + 1 - abar) = 1 at every t; a zero-variance element is read off x_t.
  assert float(ddpm.gaussian_loss_bound(jnp.ones(3), sch, "v")) == pytest.approx(1.0, rel=1e-6)
  assert float(ddpm.gaussian_loss_bound(jnp.zeros(3), sch, "v")) == pytest.approx(0.0, abs=1e-7)
  lam = 0.25
  np.testing.assert_allclose(float(ddpm.gaussian_loss_bound(jnp.full(2, lam), sch, "v")),
                             np.mean(lam / (ab * lam + 1 - ab)), rtol=1e-5)
