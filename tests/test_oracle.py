import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import complex_moment_zscores
from jaxchan import conventions, oracle


def _gaussian(d, key):
  g = oracle.random_mixture(key, d, 1)
  return g, np.asarray(g.means[0], np.complex128), np.asarray(g.covs[0], np.complex128)


def test_single_gaussian_posterior_is_lmmse():
  d, n = 5, 3
  prior, m, C = _gaussian(d, jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  A = (rng.normal(size=(n, d)) + 1j * rng.normal(size=(n, d))) / np.sqrt(2)
  Ncov = np.diag(rng.uniform(0.1, 1.0, n)).astype(np.complex128)
  y = rng.normal(size=n) + 1j * rng.normal(size=n)
  # LMMSE, written in the "information" form to be independent of the code's gain form.
  Ci = np.linalg.inv(C)
  P = np.linalg.inv(Ci + A.conj().T @ np.linalg.inv(Ncov) @ A)
  mu = P @ (Ci @ m + A.conj().T @ np.linalg.inv(Ncov) @ y)
  post = oracle.posterior(prior, jnp.asarray(y, jnp.complex64), jnp.asarray(A, jnp.complex64),
                          jnp.asarray(Ncov, jnp.complex64))
  np.testing.assert_allclose(post.weights, [1.0])
  np.testing.assert_allclose(post.means[0], mu, rtol=2e-4, atol=2e-4)  # float32 solves of a 5x5 system
  np.testing.assert_allclose(post.covs[0], P, rtol=2e-4, atol=2e-4)
  np.testing.assert_allclose(oracle.posterior_mean(prior, jnp.asarray(y, jnp.complex64),
                                                   jnp.asarray(A, jnp.complex64), jnp.asarray(Ncov, jnp.complex64)),
                             mu, rtol=2e-4, atol=2e-4)


def test_mixture_posterior_weights_follow_bayes_rule():
  # Two far-apart 1-D components: an observation near one of them selects it.
  gmm = oracle.GaussianMixture(jnp.array([0.5, 0.5]), jnp.array([[3.0 + 0j], [-3.0 + 0j]], jnp.complex64),
                               jnp.array([[[0.1 + 0j]], [[0.1 + 0j]]], jnp.complex64))
  A, N = oracle.elementwise_observation(jnp.array([1.0]), jnp.array([0.3]))
  post = oracle.posterior(gmm, jnp.array([2.5 + 0j]), A, N)
  # log-likelihood ratio = (|y + 3|^2 - |y - 3|^2) / (0.1 + 0.09) = 30 / 0.19
  expect = 1.0 / (1.0 + np.exp(-30 / 0.19))
  np.testing.assert_allclose(post.weights[0], expect, rtol=1e-6)
  np.testing.assert_allclose(jnp.sum(post.weights), 1.0, rtol=1e-6)


def test_sampling_matches_moments():
  gmm = oracle.random_mixture(jax.random.PRNGKey(1), 3, 3)
  mean, cov = oracle.moments(gmm)
  x = oracle.sample(gmm, jax.random.PRNGKey(2), 20000)
  assert complex_moment_zscores(np.asarray(x), mean, cov) < 5.0
  # Unit power convention.
  _, second = oracle.second_moment(gmm)
  np.testing.assert_allclose(jnp.real(jnp.trace(second)) / 3, 1.0, rtol=1e-5)


@pytest.mark.slow
def test_posterior_samples_match_posterior_moments():
  gmm = oracle.random_mixture(jax.random.PRNGKey(3), 3, 2)
  A, N = oracle.elementwise_observation(jnp.array([0.9, 0.2, 0.5]), jnp.array([0.4, 0.98, 0.8]))
  y = conventions.standard_normal(jax.random.PRNGKey(4), (3,))
  post = oracle.posterior(gmm, y, A, N)
  pm, pc = oracle.moments(post)
  x = oracle.posterior_sample(gmm, y, A, N, jax.random.PRNGKey(5), 20000)
  assert complex_moment_zscores(np.asarray(x), pm, pc) < 5.0
  np.testing.assert_allclose(oracle.posterior_mean(gmm, y, A, N), pm, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_denoiser_is_mmse_better_than_scaled_observation():
  # The exact D has lower MSE than any other estimator; compare with alpha^-1 g
  # and with the per-element Wiener filter on fresh data (both suboptimal).
  gmm = oracle.random_mixture(jax.random.PRNGKey(6), 4, 3)
  h = oracle.sample(gmm, jax.random.PRNGKey(7), 4000)
  tau = jnp.broadcast_to(jnp.array([70.0, 30.0, 50.0, 10.0]), h.shape)
  from jaxchan import noniden, schedules
  sch = schedules.GammaSchedule()
  g, _ = noniden.diffuse(h, tau, jax.random.PRNGKey(8), sch)
  alpha, beta = schedules.alpha_beta(tau, sch)
  d = oracle.denoiser(gmm, sch)(g, tau)
  mse = lambda e: float(jnp.mean(jnp.abs(e - h) ** 2))  # noqa: E731
  assert mse(d) < mse(alpha * g)  # alpha g is the Wiener filter for a unit-power white prior
  assert mse(d) < mse(g / alpha)


@pytest.mark.slow
def test_ddpm_eps_consistent_with_denoiser():
  from jaxchan import schedules
  gmm = oracle.random_mixture(jax.random.PRNGKey(9), 3, 2)
  sch = schedules.cosine_schedule(50)
  x = conventions.standard_normal(jax.random.PRNGKey(10), (6, 3))
  t = 20
  eps = oracle.ddpm_eps(gmm, sch)(x, t)
  abar = sch.alpha_bars[t]
  x0 = (x - jnp.sqrt(1 - abar) * eps) / jnp.sqrt(abar)
  A, N = oracle.elementwise_observation(jnp.full((3,), jnp.sqrt(abar)), jnp.full((3,), jnp.sqrt(1 - abar)))
  expect = jax.vmap(lambda y: oracle.posterior_mean(gmm, y, A, N))(x)
  np.testing.assert_allclose(x0, expect, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_expected_gramian_is_the_many_sample_limit_and_mean_plus_covariance():
  # E[H_f^H H_f] under a mixture = Gramian of the mean + the covariance's share: check against the
  # Gramian of 200,000 draws (entries of order 1, sample std of each entry ~ 2, hence SE ~ 5e-3;
  # 3e-2 is 6 standard errors) and, for one Gaussian, against mean-Gramian + trace of covariance blocks.
  from jaxchan import precoding
  shape = (2, 3, 2)
  gmm = oracle.random_mixture(jax.random.PRNGKey(0), 12, 3)
  G = np.asarray(oracle.expected_gramian(gmm, shape))
  x = oracle.sample(gmm, jax.random.PRNGKey(1), 200_000).reshape((-1,) + shape)
  np.testing.assert_allclose(G, np.asarray(precoding.gramian(x)), atol=3e-2)
  m, C = (np.asarray(a) for a in oracle.moments(gmm))
  mean_H = m.reshape(shape)
  want = np.einsum("uif,ujf->ijf", mean_H.conj(), mean_H)
  C6 = C.reshape(shape + shape)
  want = want + np.einsum("ujfuif->ijf", C6)
  np.testing.assert_allclose(G, want, rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="holds 8 entries but the mixture has dim=12"):
    oracle.expected_gramian(gmm, (2, 2, 2))


def test_clustered_mixture_has_unit_power_and_low_rank_beams():
  shape = (2, 8, 4)
  gmm = oracle.clustered_mixture(jax.random.PRNGKey(3), shape, 4, paths=2)
  _, S = oracle.second_moment(gmm)
  np.testing.assert_allclose(np.real(np.diag(np.asarray(S))), 1.0, rtol=1e-4)
  # Each cluster's per-PRB Gramian (n_bs x n_bs) has rank `paths` up to the 1 % white floor.
  one = oracle.GaussianMixture(jnp.ones(1), gmm.means[:1], gmm.covs[:1])
  ev = np.linalg.eigvalsh(np.asarray(oracle.expected_gramian(one, shape))[..., 0])[::-1]
  assert ev[:2].sum() / ev.sum() > 0.9
