"""The Kronecker Gaussian prior, its CG posterior solve, and the Gaussian-anchored denoiser."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxchan import conventions, denoiser, gaussian_prior, lmmse, noniden, oracle, schedules, tau_patterns
from jaxchan.models.mixer import MixerDenoiser

SCH = schedules.GammaSchedule(100, 0.2)
NA, NS = 6, 10


def _cov(rng, n, decay):
  q, _ = np.linalg.qr(rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n)))
  return (q * np.exp(-decay * np.arange(n))) @ q.conj().T


def _prior(seed=0, decay=(0.9, 0.7)):
  rng = np.random.default_rng(seed)
  mu = 0.3 * (rng.normal(size=(NA, NS)) + 1j * rng.normal(size=(NA, NS)))
  return gaussian_prior.from_factors(mu, _cov(rng, NA, decay[0]), _cov(rng, NS, decay[1]), shrinkage=0.0)


def _exact(prior):
  return oracle.denoiser(oracle.GaussianMixture(jnp.ones(1), prior.mean.reshape(1, -1), prior.covariance()[None]),
                         SCH)


def _diffused(prior, tau, seed=1):
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  ca, cs = prior.factors()
  la, ls = jnp.linalg.cholesky(ca), jnp.linalg.cholesky(cs)
  z = conventions.standard_normal(k1, tau.shape)
  h = prior.mean + la @ z @ ls.T
  alpha, beta = schedules.alpha_beta(tau, SCH)
  return alpha * h + beta * conventions.standard_normal(k2, tau.shape), alpha, beta


@pytest.mark.slow
def test_posterior_equals_the_exact_gaussian_posterior_mean():
  # One batch holding every training pattern (one compilation of each side instead of one per pattern).
  prior = _prior()
  tau = jnp.concatenate([tau_patterns.sample(jax.random.PRNGKey(2), p, 4, (NA, NS), SCH.T)
                         for p in ("same", "independent", "periodical", "car_only")])
  g, alpha, beta = _diffused(prior, tau)
  s = gaussian_prior.posterior(prior, g, alpha, beta, tol=1e-6, max_iter=200)
  ref = _exact(prior)(g, tau)
  # float32 CG to a 1e-6 relative residual against a float32 Cholesky solve of the dense d x d system:
  # both carry ~1e-6 relative round-off, amplified by the system's condition number (< 1e3 here).
  np.testing.assert_allclose(s.h_mean, ref, atol=2e-4 * float(jnp.max(jnp.abs(ref))))
  assert float(jnp.max(s.residual)) <= 1e-6
  # E[xi | g] is consistent with E[h | g]: g = alpha E[h|g] + beta E[xi|g] exactly (linear posterior).
  np.testing.assert_allclose(alpha * s.h_mean + beta * s.xi_mean, g, atol=1e-4)


@pytest.mark.slow
def test_solve_converges_when_clean_and_pure_noise_elements_sit_side_by_side():
  # tau = 1 (SNR 27 dB) next to tau = T (SNR -47 dB) in a checkerboard on a strongly correlated prior:
  # the worst conditioning the schedule allows.
  prior = _prior(3, decay=(2.0, 1.5))
  board = (np.add.outer(np.arange(NA), np.arange(NS)) % 2).astype(np.float32)
  tau = jnp.broadcast_to(jnp.asarray(1.0 + (SCH.T - 1.0) * board), (4, NA, NS))
  g, alpha, beta = _diffused(prior, tau, seed=4)
  s = gaussian_prior.posterior(prior, g, alpha, beta, tol=1e-5, max_iter=500)
  assert float(jnp.max(s.residual)) <= 1e-5
  np.testing.assert_allclose(s.h_mean, _exact(prior)(g, tau), atol=1e-3)


@pytest.mark.slow
def test_uniform_times_are_solved_exactly_without_iterating():
  # Every element at one time: I + R C R = I + r^2 C is diagonal in the Kronecker eigenbasis, so the initial guess
  # is the exact solve (float32 round-off only) and CG must not iterate, at every time from clean to pure noise.
  prior = _prior(5, decay=(2.0, 1.5))
  tau = jnp.broadcast_to(jnp.asarray([1.0, 10.0, 50.0, 99.0])[:, None, None], (4, NA, NS))
  g, alpha, beta = _diffused(prior, tau, seed=6)
  s = gaussian_prior.posterior(prior, g, alpha, beta, tol=1e-4, max_iter=50)
  np.testing.assert_array_equal(s.iterations, 0)
  assert float(jnp.max(s.residual)) <= 1e-4
  ref = _exact(prior)(g, tau)
  np.testing.assert_allclose(s.h_mean, ref, atol=2e-4 * float(jnp.max(jnp.abs(ref))))


@pytest.mark.slow
@pytest.mark.parametrize("structure", ["kronecker", "lowrank"])
def test_per_sample_priors_solve_each_sample_under_its_own_prior(structure):
  # A per-user anchor: sample b is solved under prior b. Each result must equal the exact posterior mean of its own
  # prior (the oracle), at element-wise times from clean to pure noise, and differ from the other prior's.
  priors = [_prior(7, decay=(0.9, 0.7)), _prior(8, decay=(2.0, 0.3))]
  if structure == "lowrank":   # the same covariances, exactly, as rank NA*NS plus a zero diagonal
    priors = [_as_lowrank(p) for p in priors]
  tau = tau_patterns.sample(jax.random.PRNGKey(9), "independent", 2, (NA, NS), SCH.T)
  g, alpha, beta = _diffused(_prior(7), tau, seed=10)
  stacked = gaussian_prior.stack(priors)
  s = gaussian_prior.posterior(stacked, g, alpha, beta, tol=1e-6, max_iter=300)
  cx = gaussian_prior.cov_matvec(stacked, g)
  for b, p in enumerate(priors):
    # The structured product under prior b is its dense covariance times the sample (float32 round-off only).
    want = np.asarray(p.covariance()) @ np.asarray(g[b]).reshape(-1)
    np.testing.assert_allclose(np.asarray(cx[b]).reshape(-1), want, atol=1e-4 * np.abs(want).max())
    ref = _exact(p)(g[b:b + 1], tau[b:b + 1])[0]
    other = _exact(priors[1 - b])(g[b:b + 1], tau[b:b + 1])[0]
    # Tolerance as in test_posterior_equals_the_exact_gaussian_posterior_mean (float32 solves on both sides).
    np.testing.assert_allclose(s.h_mean[b], ref, atol=2e-4 * float(jnp.max(jnp.abs(ref))))
    assert float(jnp.max(jnp.abs(other - ref))) > 1e-2 * float(jnp.max(jnp.abs(ref)))
  with pytest.raises(ValueError, match="holds 2 priors but g holds 3 samples"):
    gaussian_prior.posterior(gaussian_prior.stack(priors), jnp.concatenate([g, g[:1]]), *(
        jnp.concatenate([x, x[:1]]) for x in (alpha, beta)))
  with pytest.raises(ValueError, match="one structure and channel shape"):
    gaussian_prior.stack([priors[0], _as_lowrank(_prior(7)) if structure == "kronecker" else _prior(7)])


def _as_lowrank(p):
  c = np.asarray(p.covariance(), np.complex128)
  w, v = np.linalg.eigh(c)
  return gaussian_prior.LowRankGaussian(p.mean, jnp.asarray(v, jnp.complex64), jnp.asarray(np.maximum(w, 1e-6),
                                        jnp.float32), jnp.zeros((NA, NS), jnp.float32))


def test_fit_recovers_a_separable_covariance():
  prior = _prior(5)
  ca, cs = prior.factors()
  n = 4000
  z = conventions.standard_normal(jax.random.PRNGKey(6), (n, NA, NS))
  h = prior.mean + jnp.linalg.cholesky(ca) @ z @ jnp.linalg.cholesky(cs).T
  fitted = gaussian_prior.fit(np.asarray(h))
  c_true, c_fit = np.asarray(prior.covariance()), np.asarray(fitted.covariance())
  # 4000 samples of a 60-dim vector: sample-covariance entries carry ~1/sqrt(4000) = 1.6 % relative error;
  # the Kronecker fit averages them further. 5 % of the Frobenius norm leaves ample room.
  assert np.linalg.norm(c_fit - c_true) < 0.05 * np.linalg.norm(c_true)
  np.testing.assert_allclose(fitted.mean, prior.mean, atol=0.1)


def test_bad_priors_and_solver_settings_are_refused():
  rng = np.random.default_rng(0)
  good = _cov(rng, NA, 1.0)
  with pytest.raises(ValueError, match="not Hermitian"):
    gaussian_prior.from_factors(np.zeros((NA, NS)), good + np.triu(np.ones((NA, NA)), 1), np.eye(NS))
  with pytest.raises(ValueError, match="not positive semi-definite"):
    gaussian_prior.from_factors(np.zeros((NA, NS)), -good, np.eye(NS))
  with pytest.raises(ValueError, match=r"shape \(6, 6\) but the channels need \(10, 10\)"):
    gaussian_prior.from_factors(np.zeros((NA, NS)), good, good)
  prior = _prior()
  g = jnp.zeros((1, NA, NS), jnp.complex64)
  a = jnp.full(g.shape, 0.5)
  with pytest.raises(ValueError, match="tolerance 0 must be a finite number > 0"):
    gaussian_prior.posterior(prior, g, a, a, tol=0)
  with pytest.raises(ValueError, match="max_iter 0 must be an integer >= 1"):
    gaussian_prior.posterior(prior, g, a, a, max_iter=0)
  with pytest.raises(ValueError, match=r"the Gaussian prior is for channels \(6, 10\)"):
    gaussian_prior.posterior(prior, jnp.zeros((1, NS, NA), jnp.complex64), a.T[None, :, :, 0], a.T[None, :, :, 0])
  with pytest.raises(ValueError, match="dataset holds"):
    gaussian_prior.from_numpy(prior.to_numpy(), shape=(NA, NS + 1))


def _anchored(prior):
  net = MixerDenoiser(num_layers=1, embed_dim=8, schedule=SCH, zero_head=True)
  den = denoiser.make(net, SCH, prior=prior, tol=1e-6, max_iter=200)
  tau = jnp.full((1, NA, NS), 50.0)
  return den, jax.jit(net.init)(jax.random.PRNGKey(0), jnp.zeros((1, NA, NS), jnp.complex64), tau)


@pytest.mark.slow
def test_untrained_anchored_denoiser_is_the_exact_posterior_mean():
  # r_theta = 0 (what the zero-initialized head gives; the mixer's zero head is exercised by the loss test below).
  prior = _prior()
  den = denoiser.make(denoiser.FunctionNetwork(lambda x, t: jnp.zeros_like(x)), SCH, prior=prior, tol=1e-6,
                      max_iter=200)
  params = None
  tau = tau_patterns.sample(jax.random.PRNGKey(7), "independent", 6, (NA, NS), SCH.T)
  g, _, _ = _diffused(prior, tau, seed=8)
  ref = _exact(prior)(g, tau)
  np.testing.assert_allclose(den(params, g, tau), ref, atol=2e-4 * float(jnp.max(jnp.abs(ref))))


@pytest.mark.slow
def test_untrained_anchored_loss_is_the_gaussian_bound():
  # On Gaussian data the anchored model's loss at initialization is the LMMSE velocity error
  # (jaxchan.lmmse.velocity_error), per tau draw, up to the Monte-Carlo noise of one xi draw.
  prior = _prior(9)
  den, params = _anchored(prior)
  n = 512
  tau = jnp.broadcast_to(tau_patterns.sample(jax.random.PRNGKey(10), "periodical", 1, (NA, NS), SCH.T), (n, NA, NS))
  ca, cs = prior.factors()
  z = conventions.standard_normal(jax.random.PRNGKey(11), (n, NA, NS))
  h = prior.mean + jnp.linalg.cholesky(ca) @ z @ jnp.linalg.cholesky(cs).T
  loss = float(jax.jit(den.loss)(params, h, tau, jax.random.PRNGKey(12)))
  alpha, beta = schedules.alpha_beta(tau[:1], SCH)
  bound = float(lmmse.velocity_error(prior.covariance(), alpha, beta)[0])
  # 512 x 60 squared errors of roughly equal size: the mean's relative standard error is ~1/sqrt(30720)
  # times the spread of the per-element errors; 3 % is several standard errors.
  assert loss == pytest.approx(bound, rel=0.03)


def test_literal_denoiser_is_the_papers_velocity_form():
  net = denoiser.FunctionNetwork(lambda x, t: jnp.sin(x.real) + 1j * jnp.cos(x.imag) * t / 100.0)
  den = denoiser.make(net, SCH)
  assert den.anchor == "none" and den.gaussian(None, None) is None
  g = conventions.standard_normal(jax.random.PRNGKey(0), (2, NA, NS))
  tau = jnp.full(g.shape, 30.0)
  params = None
  alpha, beta = schedules.alpha_beta(tau, SCH)
  v = den.velocity(params, g, tau)
  np.testing.assert_allclose(den(params, g, tau), alpha * g - beta * v, atol=1e-5)


def test_a_model_trained_with_one_anchor_is_refused_under_another(tmp_path):
  import json

  from jaxchan.experiments import noniden as exp
  (tmp_path / "model.json").write_text(json.dumps({"denoiser": {"anchor": "none"}, "model": {}, "shape": [4, 4]}))
  with pytest.raises(ValueError, match="trained with anchor 'none', not 'kronecker'"):
    exp.load_trained(str(tmp_path), anchor="kronecker")
  with pytest.raises(ValueError, match="trained with anchor 'none'; this config asks for 'kronecker'"):
    exp.check_resume(str(tmp_path), "kronecker")
  (tmp_path / "model.json").write_text(json.dumps({"denoiser": {"anchor": "kronecker"}, "model": {"tau_pattern": "all"}}))
  with pytest.raises(ValueError, match="trained on tau pattern 'all'; this config asks for 'all_masked'"):
    exp.check_resume(str(tmp_path), "kronecker", "all_masked")
  exp.check_resume(str(tmp_path), "kronecker", "all")
  (tmp_path / "model.json").write_text(json.dumps({"model": {}, "shape": [4, 4]}))
  with pytest.raises(ValueError, match="has no 'denoiser' field"):
    exp.load_trained(str(tmp_path))


@pytest.mark.slow
def test_closed_form_gaussian_steps_replace_the_network_only_where_every_time_qualifies():
  prior = _prior(3)
  net = denoiser.FunctionNetwork(lambda x, t: 0.3 * x + 0.01 * t)   # a non-zero residual velocity
  den = denoiser.make(net, SCH, prior=prior, tol=1e-6, max_iter=200)
  fast = den.with_gaussian_steps(2.0, 0.9 * SCH.T)
  g, _, _ = _diffused(prior, jnp.full((4, NA, NS), 1.0), seed=4)
  for tau, gaussian in ((jnp.full((4, NA, NS), 1.5), True), (jnp.full((4, NA, NS), SCH.T), True),
                        (jnp.full((4, NA, NS), 20.0), False),
                        (jnp.full((4, NA, NS), 1.5).at[0, 0, 0].set(SCH.T), False)):   # mixed: the network runs
    want = den.gaussian_denoised(g, tau) if gaussian else den(None, g, tau)
    got = jax.jit(lambda g, t: fast(None, g, t))(g, tau)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)
    assert not np.allclose(np.asarray(den(None, g, tau)), np.asarray(den.gaussian_denoised(g, tau)), atol=1e-3)
  # Time paths of 3 calls: the first all at T, the second mixed, the third all near 0: 2 of 3 calls saved.
  paths = jnp.stack([jnp.full((2, NA, NS), SCH.T), jnp.full((2, NA, NS), 10.0).at[0].set(SCH.T),
                     jnp.full((2, NA, NS), 1.0), jnp.zeros((2, NA, NS))])
  assert denoiser.gaussian_step_share(paths, fast.gaussian_steps) == pytest.approx(2 / 3)
  with pytest.raises(ValueError, match="tau_lo"):
    den.with_gaussian_steps(50.0, 10.0)
  with pytest.raises(ValueError, match="anchor"):
    denoiser.make(net, SCH).with_gaussian_steps(2.0, 90.0)


# ---------------------------------------------------------------------------
# The low-rank plus diagonal prior (few-path channels), solved exactly by Woodbury.


def _lowrank_prior(seed=0, rank=5):
  # A dense few-path covariance: rank-`rank` non-separable part plus a small diagonal, fitted exactly by
  # fit_lowrank from channels drawn from it (rank eigenpairs kept: the model is the truth up to sampling).
  rng = np.random.default_rng(seed)
  d = NA * NS
  u = rng.normal(size=(d, rank)) + 1j * rng.normal(size=(d, rank))
  cov = u @ u.conj().T / rank + 0.05 * np.eye(d)
  h = (rng.normal(size=(4000, d)) + 1j * rng.normal(size=(4000, d))) / np.sqrt(2) @ np.linalg.cholesky(cov).T
  h = h + 0.2                                                    # a non-zero mean
  return gaussian_prior.fit_lowrank(h.reshape(-1, NA, NS), rank=rank, shrinkage=0.0), h, cov


def test_lowrank_fit_keeps_every_variance_and_the_leading_eigenpairs():
  prior, h, _ = _lowrank_prior()
  x = h - h.mean(0)
  sample = x.T @ x.conj() / len(x)
  c = np.asarray(prior.covariance(), np.complex128)
  # The diagonal is the sample covariance's (delta is what the eigenpairs leave), to float32 rounding.
  np.testing.assert_allclose(np.diag(c).real, np.diag(sample).real, rtol=1e-4)
  w = np.linalg.eigvalsh(sample)[::-1][:5]
  np.testing.assert_allclose(np.asarray(prior.vals), w, rtol=1e-5)
  assert prior.kind == "lowrank" and prior.shape == (NA, NS)
  # Fewer channels than elements (30 < 60: the Gram-matrix route a mixture's components take) gives the dense
  # route's covariance: the same leading eigenpairs and diagonal, to float32 rounding.
  few = h[:30].reshape(-1, NA, NS)
  x = few.reshape(30, -1) - few.reshape(30, -1).mean(0)
  sample = x.T @ x.conj() / 30
  w, v = np.linalg.eigh(sample)
  top = (v[:, -5:] * w[-5:]) @ v[:, -5:].conj().T
  dense = top + np.diag(np.maximum(np.diag(sample - top).real, 0))
  np.testing.assert_allclose(gaussian_prior.fit_lowrank(few, rank=5, shrinkage=0.0).covariance(), dense,
                             atol=1e-5 * np.abs(dense).max())
  back = gaussian_prior.from_numpy(prior.to_numpy(), shape=(NA, NS))
  assert isinstance(back, gaussian_prior.LowRankGaussian)
  with pytest.raises(ValueError, match=r"rank=60 must be an integer in 1..59"):
    gaussian_prior.fit_lowrank(h.reshape(-1, NA, NS), rank=60)


@pytest.mark.parametrize("times", [pytest.param("patterns", marks=pytest.mark.slow), "checkerboard"])
def test_lowrank_posterior_equals_the_exact_posterior_mean(times):
  prior, _, _ = _lowrank_prior(1)
  if times == "patterns":
    tau = jnp.concatenate([tau_patterns.sample(jax.random.PRNGKey(2), p, 3, (NA, NS), SCH.T)
                           for p in ("same", "independent", "periodical", "car_only", "masked")])
  else:   # tau = 1 next to tau = T: the worst conditioning the schedule allows
    board = (np.add.outer(np.arange(NA), np.arange(NS)) % 2).astype(np.float32)
    tau = jnp.broadcast_to(jnp.asarray(1.0 + (SCH.T - 1.0) * board), (4, NA, NS))
  alpha, beta = schedules.alpha_beta(tau, SCH)
  k1, k2 = jax.random.split(jax.random.PRNGKey(3))
  lc = jnp.linalg.cholesky(prior.covariance())
  h = prior.mean + (conventions.standard_normal(k1, (tau.shape[0], NA * NS)) @ lc.T).reshape(tau.shape)
  g = alpha * h + beta * conventions.standard_normal(k2, tau.shape)
  s = gaussian_prior.posterior(prior, g, alpha, beta)
  ref = oracle.denoiser(oracle.GaussianMixture(jnp.ones(1), prior.mean.reshape(1, -1), prior.covariance()[None]),
                        SCH)(g, tau)
  # A float32 Woodbury solve against a float32 Cholesky solve of the dense system: both carry ~1e-6 relative
  # round-off amplified by the r x r and d x d systems' conditioning (< 1e3 here).
  np.testing.assert_allclose(s.h_mean, ref, atol=2e-4 * float(jnp.max(jnp.abs(ref))))
  # An exact solve: the residual is float32 rounding, ~1e-6 times the conditioning (< 1e3 here); the checkerboard
  # (tau = 1 next to tau = T) reaches 1.0e-4.
  assert float(jnp.max(s.residual)) <= 3e-4
  # g = alpha E[h|g] + beta E[xi|g] holds exactly in exact arithmetic; float32 leaves ~1e-5 of |g| after the
  # checkerboard's conditioning.
  np.testing.assert_allclose(alpha * s.h_mean + beta * s.xi_mean, g, atol=1e-4 * float(jnp.max(jnp.abs(g))))
  np.testing.assert_allclose(gaussian_prior.cov_matvec(prior, g), (g.reshape(len(g), -1) @ prior.covariance().T
                                                                   ).reshape(g.shape), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_lowrank_anchored_denoiser_is_the_exact_posterior_mean_before_training():
  prior, _, _ = _lowrank_prior(2)
  net = denoiser.FunctionNetwork(lambda x, t: jnp.zeros_like(x))        # r_theta = 0
  den = denoiser.make(net, SCH, prior=prior)
  assert den.anchor == "lowrank"
  tau = jnp.asarray(np.random.default_rng(4).uniform(1, SCH.T, (5, NA, NS)), jnp.float32)
  g = conventions.standard_normal(jax.random.PRNGKey(5), tau.shape)
  ref = oracle.denoiser(oracle.GaussianMixture(jnp.ones(1), prior.mean.reshape(1, -1), prior.covariance()[None]),
                        SCH)(g, tau)
  # beta floored at beta(1) in the anchor changes nothing here (every tau >= 1); float32 tolerance as above.
  np.testing.assert_allclose(den(None, g, tau), ref, atol=2e-4 * float(jnp.max(jnp.abs(ref))))


def _planted_mixture(seed=6, n=3000):
  # Two well-separated few-path clusters, each a rank-3 covariance around its own mean direction: channels whose
  # covariance depends on where the user is (one Gaussian fits them badly, two fit them exactly).
  rng = np.random.default_rng(seed)
  d = NA * NS
  comps = []
  for _ in range(2):
    u = np.linalg.qr(rng.normal(size=(d, 3)) + 1j * rng.normal(size=(d, 3)))[0]
    comps.append((u * np.sqrt([3.0, 1.5, 0.5])) @ u.conj().T + 0.02 * np.eye(d))
  lab = rng.integers(0, 2, n)
  z = (rng.normal(size=(n, d)) + 1j * rng.normal(size=(n, d))) / np.sqrt(2)
  roots = [np.linalg.cholesky(c) for c in comps]
  h = np.where(lab[:, None] == 0, z @ roots[0].T, z @ roots[1].T)
  return h.reshape(n, NA, NS).astype(np.complex64), lab


@pytest.mark.slow   # a fit of 3,000 channels and dense solves (~6 s); the low-rank exactness tests stay fast
def test_mixture_fit_separates_planted_components_and_its_posterior_is_the_exact_gmm_posterior_mean():
  h, lab = _planted_mixture()
  mix = gaussian_prior.fit_mixture(h, components=2, rank=3, rounds=3, shrinkage=0.0)
  assert mix.kind == "mixture" and mix.shape == (NA, NS) and mix.vecs.shape == (2, NA * NS, 3)
  np.testing.assert_allclose(float(jnp.sum(jnp.exp(mix.log_weights))), 1.0, rtol=1e-6)
  # The planted clusters come back: each weight equals its planted cluster's share of the 3,000 channels to 0.01
  # (at most 30 channels assigned to the wrong cluster).
  np.testing.assert_allclose(sorted(np.exp(np.asarray(mix.log_weights))), sorted([np.mean(lab == 0),
                                                                                   np.mean(lab == 1)]), atol=0.01)
  back = gaussian_prior.from_numpy(mix.to_numpy(), shape=(NA, NS))
  assert isinstance(back, gaussian_prior.MixtureGaussian)
  # The mixture's posterior at element-wise times (tau = 1 next to tau = T included) is the oracle's exact GMM
  # posterior mean with the same components as dense covariances.
  comps = mix.components
  dense = jax.vmap(lambda c: c.covariance())(comps)
  gmm = oracle.GaussianMixture(jnp.exp(mix.log_weights), comps.mean.reshape(2, -1), dense)
  tau = jnp.asarray(np.random.default_rng(7).uniform(1, SCH.T, (6, NA, NS)), jnp.float32)
  tau = tau.at[0].set(jnp.asarray(1.0 + (SCH.T - 1.0) * (np.add.outer(np.arange(NA), np.arange(NS)) % 2)))
  alpha, beta = schedules.alpha_beta(tau, SCH)
  g = alpha * jnp.asarray(h[:6]) + beta * conventions.standard_normal(jax.random.PRNGKey(8), tau.shape)
  s = gaussian_prior.posterior(mix, g, alpha, beta)
  ref = oracle.denoiser(gmm, SCH)(g, tau)
  # float32 Woodbury and evidence against float32 dense Cholesky solves (as the low-rank test above); the
  # responsibilities' log-odds carry the same relative round-off.
  np.testing.assert_allclose(s.h_mean, ref, atol=5e-4 * float(jnp.max(jnp.abs(ref))))
  np.testing.assert_allclose(alpha * s.h_mean + beta * s.xi_mean, g, atol=2e-4 * float(jnp.max(jnp.abs(g))))
  # The untrained mixture-anchored denoiser (r_theta = 0) is that posterior mean too (beta floored at beta(1)
  # changes nothing for tau >= 1).
  den = denoiser.make(denoiser.FunctionNetwork(lambda x, t: jnp.zeros_like(x)), SCH, prior=mix)
  assert den.anchor == "mixture"
  np.testing.assert_allclose(den(None, g, tau), ref, atol=5e-4 * float(jnp.max(jnp.abs(ref))))


@pytest.mark.slow
def test_a_mixture_prior_estimates_mixture_channels_better_than_one_gaussian():
  h, _ = _planted_mixture()
  mix = gaussian_prior.fit_mixture(h, components=2, rank=3, rounds=3, shrinkage=0.0)
  # One Gaussian fitted to the same channels (the low-rank anchor, whose rank 6 spans both clusters) is a worse
  # estimator on them: at tau = 15 (noise-to-signal 0.5), where g tells the clusters apart, the mixture's error is
  # 0.86x the single Gaussian's in a check over tau = 2..70 (at most 0.87x from tau = 10 to 20, 1.0x at tau = 70).
  one = gaussian_prior.fit_lowrank(h, rank=6, shrinkage=0.0)
  mid = jnp.full((256, NA, NS), 15.0)
  a, b = schedules.alpha_beta(mid, SCH)
  x = jnp.asarray(h[-256:])
  g = a * x + b * conventions.standard_normal(jax.random.PRNGKey(9), x.shape)
  err = lambda p: float(jnp.mean(jnp.abs(gaussian_prior.posterior(p, g, a, b).h_mean - x) ** 2))  # noqa: E731
  assert err(mix) < 0.92 * err(one)


def test_bad_mixture_settings_are_refused():
  h, _ = _planted_mixture(n=40)
  with pytest.raises(ValueError, match=r"components=0 must be an integer >= 1"):
    gaussian_prior.fit_mixture(h, components=0, rank=2)
  with pytest.raises(ValueError, match=r"3 components need at least 63 channels, got 40"):
    gaussian_prior.fit_mixture(h, components=3, rank=20)
  mix = gaussian_prior.fit_mixture(h, components=2, rank=3)
  with pytest.raises(ValueError, match="a mixture prior is one prior for every sample"):
    gaussian_prior.stack([mix, mix])
  with pytest.raises(ValueError, match="a mixture prior has no single covariance"):
    gaussian_prior.cov_matvec(mix, jnp.asarray(h[:2]))


@pytest.mark.parametrize("structure", ["kronecker", "lowrank"])
def test_draws_and_posterior_residuals_have_the_exact_gaussian_moments(structure):
  # A [2, 3] prior (6 complex dimensions: 78 moment statistics, so the 5-sigma threshold of
  # conftest.complex_moment_zscores false-alarms with probability below 1e-4) in either structure: its draws must
  # have its mean and covariance, and the perturbation residuals h' - E[h | g'] the exact posterior covariance
  # C - C A^H (A C A^H + N)^-1 A C of the element-wise observation (alpha, beta), whatever the value observed; the
  # low-rank case with beta floored at 0.1 (above beta(1) = 0.02), the posterior under the noise the solve assumes.
  from conftest import complex_moment_zscores
  rng = np.random.default_rng(4)
  mu = 0.3 * (rng.normal(size=(2, 3)) + 1j * rng.normal(size=(2, 3)))
  kron = gaussian_prior.from_factors(mu, _cov(rng, 2, 0.8), _cov(rng, 3, 0.6), shrinkage=0.0)
  if structure == "kronecker":
    prior = kron
  else:
    vals, vecs = np.linalg.eigh(np.asarray(kron.covariance()))
    prior = gaussian_prior.LowRankGaussian(jnp.asarray(mu, jnp.complex64), jnp.asarray(vecs[:, 2:], jnp.complex64),
                                           jnp.asarray(vals[2:], jnp.float32),
                                           jnp.asarray(np.full((2, 3), vals[:2].mean()), jnp.float32))
  cov = np.asarray(prior.covariance(), np.complex128)
  n = 4000
  draws = jax.jit(gaussian_prior.sample, static_argnums=2)(prior, jax.random.PRNGKey(0), n)
  assert complex_moment_zscores(np.asarray(draws).reshape(n, 6), np.asarray(prior.mean).reshape(6), cov) < 5.0
  tau = jnp.asarray([[1.0, 5.0, 30.0], [60.0, 90.0, 100.0]])       # nearly clean to pure noise side by side
  alpha, beta = schedules.alpha_beta(jnp.broadcast_to(tau, (n, 2, 3)), SCH)
  floor = 0.1 if structure == "lowrank" else 0.0
  r = jax.jit(lambda a, b, k: gaussian_prior.posterior_residual(prior, k, a, b, beta_floor=floor, tol=1e-7,
                                                                max_iter=50))(alpha, beta, jax.random.PRNGKey(1))
  a, b = np.asarray(alpha[0]).reshape(6), np.maximum(np.asarray(beta[0]).reshape(6), floor)
  post_cov = cov - cov @ np.diag(a) @ np.linalg.solve(np.diag(a) @ cov @ np.diag(a) + np.diag(b**2), np.diag(a) @ cov)
  assert complex_moment_zscores(np.asarray(r).reshape(n, 6), np.zeros(6), post_cov) < 5.0
  # A per-sample prior (stack) gives one draw from each of its priors.
  two = gaussian_prior.sample(gaussian_prior.stack([kron, kron._replace(mean=kron.mean + 100.0)]),
                              jax.random.PRNGKey(0), 2)
  assert two.shape == (2, 2, 3) and float(jnp.mean(jnp.real(two[1] - two[0]))) > 90.0
  with pytest.raises(ValueError, match="one draw each, but num=3"):
    gaussian_prior.sample(gaussian_prior.stack([kron, kron]), jax.random.PRNGKey(0), 3)
  with pytest.raises(ValueError, match="holds 2 priors but the times hold 3 samples"):
    gaussian_prior.posterior_residual(gaussian_prior.stack([kron, kron]), jax.random.PRNGKey(0), alpha[:3], beta[:3])


def test_point_estimate_solves_the_anchor_to_convergence_where_the_sampler_truncates():
  # Pilot-like observation (every other element at tau = 1, the rest pure noise at T) on a strongly correlated
  # prior: a 2-iteration CG stops short (the sampler's truncated setting, scaled down to this 60-element problem),
  # the point estimate does not, and with r_theta = 0 it is the exact Gaussian posterior mean (LMMSE).
  prior = _prior(3, decay=(2.0, 1.5))
  den = denoiser.make(denoiser.FunctionNetwork(lambda x, t: jnp.zeros_like(x)), SCH, prior=prior, tol=1e-4,
                      max_iter=2)
  board = (np.add.outer(np.arange(NA), np.arange(NS)) % 2).astype(np.float32)
  tau = jnp.broadcast_to(jnp.asarray(1.0 + (SCH.T - 1.0) * board), (4, NA, NS))
  g, _, _ = _diffused(prior, tau, seed=4)
  ref = _exact(prior)(g, tau)
  scale = float(jnp.max(jnp.abs(ref)))
  assert float(jnp.max(jnp.abs(den(None, g, tau) - ref))) > 1e-2 * scale      # truncated: visibly off
  # Tolerance as test_solve_converges_when_clean_and_pure_noise_elements_sit_side_by_side (float32, same system).
  np.testing.assert_allclose(den.point_estimate(None, g, tau), ref, atol=1e-3)
  assert den.point_estimate(None, g, tau).dtype == g.dtype
  assert (den.with_solver(1e-5, 7).tol, den.with_solver(1e-5, 7).max_iter) == (1e-5, 7)
  with pytest.raises(ValueError, match="max_iter"):
    den.with_solver(1e-5, 0)


@pytest.mark.parametrize("structure", ["kronecker", "lowrank"])
def test_posterior_draw_is_d_plus_the_posterior_residual_in_one_solve(structure):
  # D + r by Matheron's rule with the same key, solved twice (at g and g'), against the fused draw solving once
  # at g - g': equal for exact solves (the anchor's posterior mean is affine), with a nonlinear stand-in network
  # and with closed-form Gaussian steps; and eta+cov generation with either is the same chain.
  prior = kron = _prior(5)
  if structure == "lowrank":
    vals, vecs = np.linalg.eigh(np.asarray(prior.covariance()))
    prior = gaussian_prior.LowRankGaussian(prior.mean, jnp.asarray(vecs[:, 20:], jnp.complex64),
                                           jnp.asarray(vals[20:], jnp.float32),
                                           jnp.asarray(np.full((NA, NS), vals[:20].mean()), jnp.float32))
  net = denoiser.FunctionNetwork(lambda x, t: 0.3 * jnp.tanh(x.real) * x + 1e-3 * t)
  den = denoiser.make(net, SCH, prior=prior, tol=1e-7, max_iter=300)
  tau = tau_patterns.sample(jax.random.PRNGKey(2), "independent", 5, (NA, NS), SCH.T)
  g, _, _ = _diffused(kron, tau, seed=6)
  key = jax.random.PRNGKey(3)
  both = jax.jit(lambda d, t: (d.posterior_draw(None, g, t, key), d(None, g, t) + d.posterior_residual(g, t, key)))
  for d in (den, den.with_gaussian_steps(5.0, 80.0)):
    for t in (tau, jnp.full_like(tau, 90.0)):           # a network step and (with Gaussian steps) a closed-form one
      one, two = both(d, t)
      # float32 solves to a 1e-7 relative residual, conditioning < 1e3 (as the posterior-mean test above).
      np.testing.assert_allclose(one, two, atol=1e-3 * float(jnp.max(jnp.abs(two))))
  # A per-sample prior (gaussian_prior.stack, as the SRS prior model's per-user anchors): each sample under its own.
  one, two = both(den.replace(prior=gaussian_prior.stack([prior._replace(mean=prior.mean + 0.5 * i)
                                                          for i in range(5)])), tau)
  np.testing.assert_allclose(one, two, atol=1e-3 * float(jnp.max(jnp.abs(g))))
  sampler = noniden.Sampler("eta+cov", 1.0)
  run = lambda draw: noniden.generate(den.bind(None), noniden.Start(g, tau), key, SCH, sampler=sampler,  # noqa: E731
                                      num_steps=4, draw=draw)
  a = run(noniden.residual_draw(den.bind(None), den.posterior_residual))
  b = run(noniden.draw_for(den, None, sampler))
  np.testing.assert_allclose(a, b, atol=1e-3 * float(jnp.max(jnp.abs(a))))
  with pytest.raises(ValueError, match="single-Gaussian anchor"):
    denoiser.make(net, SCH).posterior_draw(None, g, tau, key)
