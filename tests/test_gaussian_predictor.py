"""The Gaussian predictor from an aged SRS history: exact where its model holds, and its Bayesian Gramian."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxchan import conventions, gaussian_predictor as gpred, precoding, srs

B, U, N, F, OCC = 64, 2, 6, 8, 4


def _cov(rng, n):
  a = rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))
  q, _ = np.linalg.qr(a)
  return (q * np.exp(-0.6 * np.arange(n)) * n / np.exp(-0.6 * np.arange(n)).sum()) @ q.conj().T


def _aged(rng, R, rho, n):
  """Histories and targets that follow the predictor's model exactly (Gauss-Markov with E[h_t h_o^H] = rho_o R)."""
  L = np.linalg.cholesky(R)
  z = lambda *s: (rng.normal(size=s + (N,)) + 1j * rng.normal(size=s + (N,))) / np.sqrt(2)  # noqa: E731
  ht = z(n, U, F) @ L.T                                      # rows h ~ CN(0, R): [n, U, F, N]
  hist = np.stack([np.conj(r) * ht + np.sqrt(1 - abs(r) ** 2) * (z(n, U, F) @ L.T) for r in rho], 1)
  to_layout = lambda x: np.moveaxis(x, -1, -2).astype(np.complex64)                            # noqa: E731
  return to_layout(hist), to_layout(ht)


def test_fit_recovers_the_age_correlation():
  rng = np.random.default_rng(0)
  rho = np.array([0.3 + 0.2j, 0.5 - 0.1j, 0.7j, 0.9], np.complex64)
  hist, tgt = _aged(rng, _cov(rng, N), rho, 2000)
  # 2000 x 2 x 8 x 6 unit-scale products per estimate: the standard error is ~3e-3; 0.02 is several of them.
  np.testing.assert_allclose(gpred.fit_age_correlation(hist, tgt), rho, atol=0.02)


def test_conditional_mean_and_covariance_are_the_exact_gaussian_posterior():
  rng = np.random.default_rng(1)
  R = _cov(rng, N)
  rho = np.array([0.2, 0.4 + 0.3j, 0.6, 0.8 - 0.1j], np.complex64)
  hist, tgt = _aged(rng, R, rho, B)
  nv = np.full(B, 0.3, np.float32)
  obs = srs.observe(jnp.asarray(hist), jax.random.PRNGKey(0), snr_db_range=(5.23, 5.23))
  latest, occ, seen = srs.latest_observation(obs.obs, obs.mask)
  vals, vecs = np.linalg.eigh(R)
  pred = gpred.conditional(latest, jnp.where(seen, jnp.asarray(rho)[occ], 0.0),
                           jnp.broadcast_to(vals, (B, N)).astype(np.float32),
                           jnp.broadcast_to(vecs, (B, N, N)).astype(np.complex64), obs.noise_var)
  # Dense reference for one PRB: E[h | y] = rho R (R + nv I)^-1 y.
  b, f = 3, 5
  nvb = float(obs.noise_var[b])
  r = rho[int(occ[b, f])]
  y = np.asarray(latest[b, :, :, f])                                     # [U, N]
  ref = r * (R @ np.linalg.solve(R + nvb * np.eye(N), y.T)).T
  np.testing.assert_allclose(pred.mean[b, :, :, f], ref, rtol=1e-4, atol=1e-4)
  ref_cov = R - abs(r) ** 2 * R @ np.linalg.solve(R + nvb * np.eye(N), R)
  cov = (np.asarray(pred.vecs[b]) * np.asarray(pred.cov_vals[b, :, f])) @ np.asarray(pred.vecs[b]).conj().T
  np.testing.assert_allclose(cov, ref_cov, atol=1e-4)
  # Calibration on data the model holds for: the mean's squared error matches the predicted covariance's trace.
  err = float(jnp.mean(jnp.sum(jnp.abs(pred.mean - tgt) ** 2, axis=2)))
  pred_err = float(jnp.mean(jnp.sum(pred.cov_vals, axis=1)))
  # 64 x 2 x 8 rows of 6 elements: the sample mean of the squared error has a relative standard error near 3 %.
  assert err == pytest.approx(pred_err, rel=0.12)


@pytest.mark.slow
def test_expected_gramian_is_the_limit_of_sampled_gramians():
  rng = np.random.default_rng(2)
  rho = np.array([0.2, 0.4, 0.6, 0.8], np.complex64)
  hist, _ = _aged(rng, _cov(rng, N), rho, 4)
  obs = srs.observe(jnp.asarray(hist), jax.random.PRNGKey(1))
  pred = gpred.predict(obs, rho)
  G = gpred.expected_gramian(pred)
  draws = gpred.sample(pred, jax.random.PRNGKey(2), 20000)
  G_mc = precoding.gramian(draws)
  # 20000 draws: the Monte-Carlo Gramian's entries carry ~1/sqrt(20000) = 0.7 % relative error.
  np.testing.assert_allclose(G_mc, G, atol=0.05 * float(jnp.max(jnp.abs(G))))


def test_spatial_covariance_removes_the_noise():
  rng = np.random.default_rng(3)
  R = _cov(rng, N)
  hist, _ = _aged(rng, R, np.ones(OCC, np.complex64) * 0.9, 512)
  obs = srs.observe(jnp.asarray(hist), jax.random.PRNGKey(3), snr_db_range=(7.0, 7.0))
  vals, vecs = gpred.spatial_covariance(obs)
  R_hat = np.mean(np.einsum("bik,bk,bjk->bij", np.asarray(vecs), np.asarray(vals), np.conj(np.asarray(vecs))), 0)
  raw = np.mean(np.swapaxes(np.asarray(srs.history_gramian(obs)), -1, -2), 0)      # without the noise removed
  # The raw Gramian is off by nv I (nv = 0.2, 8 % of ||R|| here); the corrected one only by the sampling error of
  # 512 x 32 rows and the clipping of each sample's negative eigenvalues (32 noisy rows in 6 dimensions).
  assert np.linalg.norm(raw - R) > 0.06 * np.linalg.norm(R)
  assert np.linalg.norm(R_hat - R) < 0.5 * np.linalg.norm(raw - R)


def test_bad_rho_is_refused():
  hist = conventions.standard_normal(jax.random.PRNGKey(0), (2, OCC, U, N, F))
  obs = srs.observe(hist, jax.random.PRNGKey(1))
  with pytest.raises(ValueError, match="history has 4 occasions"):
    gpred.predict(obs, np.ones(3, np.complex64))
