"""The classical LMMSE estimator and the Gaussian bound on the velocity loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxchan import conventions, lmmse, oracle, schedules


def _cov(key, d):
  X = conventions.standard_normal(key, (d, d))
  C = X @ X.conj().T / d + 0.1 * jnp.eye(d)
  return C / (jnp.trace(C).real / d)                 # unit power per element


@pytest.mark.slow
def test_lmmse_estimate_is_the_gaussian_posterior_mean():
  # For a Gaussian prior the LMMSE estimate is the conditional mean, which jaxchan.oracle
  # computes by a different route (Cholesky of the observation covariance per component).
  d = 6
  k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(0), 4)
  C = _cov(k1, d)
  mu = 0.3 * conventions.standard_normal(k2, (d,))
  gmm = oracle.GaussianMixture(jnp.ones(1), mu[None], C[None])
  m = jnp.array([[0.0, 0.5, 1.0, 2.0, 4.0, 0.1], [1.0, 1.0, 0.0, 0.0, 3.0, 3.0]])
  h = oracle.sample(gmm, k3, 2)
  h_bar = m * h + conventions.standard_normal(k4, h.shape)
  got = lmmse.estimate(h_bar, m, mu, C)
  want = jnp.stack([oracle.posterior_mean(gmm, h_bar[i], jnp.diag(m[i]).astype(C.dtype), jnp.eye(d))
                    for i in range(2)])
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="elements but the covariance"):
    lmmse.estimate(h_bar[:, :4], m[:, :4], mu, C)


def test_velocity_error_closed_form_and_monte_carlo():
  d = 5
  tau = jnp.array([[1.0, 10.0, 30.0, 60.0, 100.0], [20.0, 20.0, 20.0, 20.0, 20.0]])
  alpha, beta = schedules.alpha_beta(tau, schedules.GammaSchedule(100))
  # White prior: v = alpha xi - beta h and g = alpha h + beta xi are uncorrelated, so nothing
  # linear beats predicting 0, whose error is E|v|^2 = alpha^2 + beta^2 = 1 per element.
  np.testing.assert_allclose(np.asarray(lmmse.velocity_error(jnp.eye(d, dtype=jnp.complex64), alpha, beta)),
                             1.0, rtol=1e-5)
  # Correlated prior: the formula against the empirical error of the same linear estimator on
  # n Gaussian draws. |error|^2 of a complex Gaussian has relative std 1 (per sample, even if all d
  # elements were fully correlated), so n = 100,000 draws pin the mean to 1/sqrt(n) = 0.3 %;
  # allow 5 standard errors.
  C = _cov(jax.random.PRNGKey(1), d)
  bound = np.asarray(lmmse.velocity_error(C, alpha, beta))
  assert np.all(bound < 1.0)
  n = 100_000
  Cn = np.asarray(C, np.complex128)
  Lc = np.linalg.cholesky(Cn)
  rng = np.random.default_rng(0)
  cn = lambda *s: (rng.standard_normal(s) + 1j * rng.standard_normal(s)) / np.sqrt(2)  # noqa: E731
  for i in range(2):
    a, b = np.asarray(alpha[i], np.float64), np.asarray(beta[i], np.float64)
    h, xi = cn(n, d) @ Lc.T, cn(n, d)
    g, v = a * h + b * xi, a * xi - b * h
    Cgg = np.diag(a) @ Cn @ np.diag(a) + np.diag(b * b)
    Cvg = np.diag(a * b) - np.diag(b) @ Cn @ np.diag(a)
    K = Cvg @ np.linalg.inv(Cgg)
    err = np.mean(np.abs(v - g @ K.T) ** 2)
    assert err == pytest.approx(bound[i], rel=5 / np.sqrt(n))


@pytest.mark.slow
def test_velocity_loss_is_the_linear_estimators_empirical_loss_and_converges_to_the_bound():
  d, n = 5, 100_000
  tau = jnp.array([1.0, 10.0, 30.0, 60.0, 100.0])
  alpha, beta = schedules.alpha_beta(tau, schedules.GammaSchedule(100))
  C = _cov(jax.random.PRNGKey(1), d)
  Cn = np.asarray(C, np.complex128)
  rng = np.random.default_rng(1)
  cn = lambda *s: (rng.standard_normal(s) + 1j * rng.standard_normal(s)) / np.sqrt(2)  # noqa: E731
  h, xi = cn(n, d) @ np.linalg.cholesky(Cn).T, cn(n, d)
  got = float(lmmse.velocity_loss(C, jnp.asarray(h, jnp.complex64), alpha, beta, jnp.asarray(xi, jnp.complex64)))
  # The same estimator written out in float64 on the same draws: equal up to complex64 rounding.
  a, b = np.asarray(alpha, np.float64), np.asarray(beta, np.float64)
  g, v = a * h + b * xi, a * xi - b * h
  K = (np.diag(a * b) - np.diag(b) @ Cn @ np.diag(a)) @ np.linalg.inv(np.diag(a) @ Cn @ np.diag(a) + np.diag(b * b))
  assert got == pytest.approx(np.mean(np.abs(v - g @ K.T) ** 2), rel=1e-4)
  # And its mean over Gaussian draws is the population bound (relative std 1 per draw: 5 standard errors).
  bound = float(lmmse.velocity_error(C, alpha[None], beta[None])[0])
  assert got == pytest.approx(bound, rel=5 / np.sqrt(n))
