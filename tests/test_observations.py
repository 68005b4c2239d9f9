"""Observation models: SRS hopping (eq. 22), initial-noise patterns (Sec. V-C), training tau-patterns."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxchan import conventions, noise_patterns, schedules, srs, tau_patterns

T = 100
SCH = schedules.GammaSchedule(T)


@pytest.mark.parametrize("pattern", noise_patterns.PATTERNS)
def test_noise_pattern_snr_kept_fraction_and_start(pattern):
  B = 64
  h = conventions.standard_normal(jax.random.PRNGKey(0), (B, 32, 64))
  obs = noise_patterns.observe(h, jax.random.PRNGKey(1), pattern, SCH)
  m = np.asarray(obs.m)
  kept = m > 0
  expect_kept = {"white": 1.0, "exp": 1.0, "salt": 0.3, "salt_rec": 19 / 64, "pilot": 0.25, "pilot_car": 0.125}
  # Kept fractions are exact by construction (salt: round(0.3 * 2048) = 614 elements).
  np.testing.assert_allclose(kept.mean(), expect_kept[pattern], atol=1 / 2048)
  # Noise on the kept elements: H_bar / M - H = n / M; its mean power is the
  # stated 10^(-SNR/10). Over >= 64 x 256 exponential-like terms the relative
  # standard error is < 2 %, i.e. < 0.1 dB; allow 0.25 dB.
  noise = np.abs(np.asarray(obs.h_bar)[kept] / m[kept] - np.asarray(h)[kept]) ** 2
  snr = -10 * np.log10(noise.mean())
  assert abs(snr - noise_patterns.DEFAULT_SNR_DB[pattern]) < 0.25, snr
  # 10 % background: no kept element is quieter than 0.1 x the mean noise power.
  var = 1 / m[kept] ** 2
  assert var.min() >= 0.1 * 10 ** (-noise_patterns.DEFAULT_SNR_DB[pattern] / 10) * (1 - 1e-5)
  # Default (variance-consistent) start; unobserved elements start from pure noise at tau = T.
  np.testing.assert_allclose(obs.g0, np.asarray(obs.h_bar) / np.sqrt(m**2 + 1), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(schedules.gamma(obs.tau0, SCH)[kept], (m / np.sqrt(m**2 + 1))[kept], rtol=1e-4)
  assert np.all(np.asarray(obs.tau0)[~kept] == T)
  # The paper's start, eqs. (15)-(16), from the same observation.
  paper = noise_patterns.observe(h, jax.random.PRNGKey(1), pattern, SCH, start="paper")
  np.testing.assert_allclose(paper.g0, np.asarray(obs.h_bar) / (m + 1), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(schedules.gamma(paper.tau0, SCH)[kept], (m / (m + 1))[kept], rtol=1e-4)


def test_pilot_grids_are_where_the_paper_puts_them():
  h = jnp.ones((1, 32, 64), jnp.complex64)
  pilot = np.asarray(noise_patterns.observe(h, jax.random.PRNGKey(0), "pilot", SCH).m[0]) > 0
  assert pilot[::2, ::2].all() and not pilot[1::2].any() and not pilot[:, 1::2].any()
  car = np.asarray(noise_patterns.observe(h, jax.random.PRNGKey(0), "pilot_car", SCH).m[0]) > 0
  assert car[:, ::8].all() and car.sum() == 32 * 8
  rec = np.asarray(noise_patterns.observe(h, jax.random.PRNGKey(0), "salt_rec", SCH).m[0])
  np.testing.assert_array_equal(rec[:8, :8], rec[8:16, 24:32])  # the 8 x 8 tile repeats


def test_variance_consistent_start():
  h = conventions.standard_normal(jax.random.PRNGKey(2), (4, 32, 64))
  obs = noise_patterns.observe(h, jax.random.PRNGKey(3), "exp", SCH)  # default start
  m = np.asarray(obs.m)
  np.testing.assert_allclose(schedules.gamma(obs.tau0, SCH), m / np.sqrt(m**2 + 1), rtol=1e-4)


def test_noise_pattern_bad_input():
  with pytest.raises(ValueError, match="noise pattern='pink' is not supported"):
    noise_patterns.observe(jnp.ones((1, 32, 64), jnp.complex64), jax.random.PRNGKey(0), "pink", SCH)
  with pytest.raises(ValueError, match="multiple"):
    noise_patterns.observe(jnp.ones((1, 30, 64), jnp.complex64), jax.random.PRNGKey(0), "salt_rec", SCH)


def _is_masked(tau):
  # Two values at most, one of them T (unobserved), and some element at T or everything at one time.
  vals = np.unique(tau)
  return len(vals) == 2 and vals[-1] == T


def _classify(tau):
  if np.all(tau == tau[0, 0]):
    return "same"
  if _is_masked(tau) and not np.all(tau == tau[:1]):
    return "masked"
  if np.all(tau == tau[:1]):
    return "car_only"
  for pa in range(4, 11):
    for pc in range(4, 21):
      if np.array_equal(tau, np.tile(tau[:pa, :pc], (32 // pa + 1, 64 // pc + 1))[:32, :64]):
        return "periodical"
  return "independent"


@pytest.mark.parametrize("pattern", tau_patterns.SIMPLE)
def test_simple_tau_patterns_have_their_structure(pattern):
  taus = np.asarray(tau_patterns.sample(jax.random.PRNGKey(0), pattern, 20, (32, 64), T))
  # Training times are the integers 1..T that generation evaluates the network at.
  assert taus.shape == (20, 32, 64) and taus.min() >= 1 and taus.max() <= T
  assert np.all(taus == np.round(taus))
  assert all(_classify(t) == pattern for t in taus)


def test_masked_maps_are_observations_with_missing_elements():
  taus = np.asarray(tau_patterns.sample(jax.random.PRNGKey(3), "masked", 200, (32, 64), T))
  grid = scattered = 0
  for t in taus:
    obs = t < T
    assert len(np.unique(t[obs])) <= 1        # the observed elements share one time; the rest sit at T
    rows, cols = np.nonzero(obs)
    # A grid: the observed set is the product of its rows and columns, each evenly spaced.
    is_grid = obs.any() and obs.sum() == len(set(rows)) * len(set(cols)) and all(
        len(set(np.diff(sorted(set(ix))))) <= 1 for ix in (rows, cols))
    grid += bool(is_grid)
    scattered += not is_grid
  # Half the draws are grids and half scattered masks (a scattered mask is a grid only by rare chance, and a
  # map with no element observed, t = T everywhere, counts as scattered): within 4 standard deviations of 100.
  assert abs(grid - 100) < 4 * np.sqrt(50) + 5 and scattered > 50


@pytest.mark.parametrize("pattern, allowed", [("non_directional", {"same", "independent", "periodical"}),
                                              ("all", set(tau_patterns.SIMPLE)),
                                              ("all_masked", set(tau_patterns.SIMPLE) | {"masked"})])
def test_mixed_tau_patterns_pick_uniformly(pattern, allowed):
  n = 400
  taus = np.asarray(jax.jit(lambda k: tau_patterns.sample(k, pattern, n, (32, 64), T))(jax.random.PRNGKey(1)))
  kinds = [_classify(t) for t in taus]
  assert set(kinds) == allowed
  # Each of k choices is Binomial(n, 1/k): within 4 standard deviations.
  for kind in allowed:
    p = 1 / len(allowed)
    assert abs(kinds.count(kind) - n * p) < 4 * np.sqrt(n * p * (1 - p)), (kind, kinds.count(kind))


def test_srs_hopping_noise_and_baseline():
  B, n_occ = 64, 4
  hist = conventions.standard_normal(jax.random.PRNGKey(0), (B, n_occ, 4, 32, 52))
  ob = srs.observe(hist, jax.random.PRNGKey(1))
  mask = np.asarray(ob.mask)
  # Each occasion sounds one 13-PRB sub-band; 4 consecutive occasions cover the band once.
  assert np.all(mask.sum(-1) == 13)
  assert np.all(mask.sum(1) == 1)
  first = mask[:, :, 0].argmax(1)  # occasion that sounded sub-band 0
  assert len(set(first.tolist())) > 1  # hop phase varies across samples
  assert np.all((np.asarray(ob.snr_db) >= -10) & (np.asarray(ob.snr_db) <= 10))
  obs = np.asarray(ob.obs)
  assert np.all(obs[~np.broadcast_to(mask[:, :, None, None, :], obs.shape)] == 0)
  # Noise power per sample matches its SNR: 4 x 32 x 52 terms, relative SE 1.4 %; allow 8 %.
  err = np.where(mask[:, :, None, None, :], obs - np.asarray(hist), 0)
  per = np.sum(np.abs(err) ** 2, axis=(1, 2, 3, 4)) / (4 * 32 * 52)
  np.testing.assert_allclose(per, np.asarray(ob.noise_var), rtol=0.08)
  # Baseline: each PRB's latest (here: only) observation.
  base = np.asarray(srs.baseline(ob))
  occ = mask.argmax(1)  # [B, n_prb]
  ref = np.take_along_axis(obs, occ[:, None, None, None, :], axis=1)[:, 0]
  np.testing.assert_array_equal(base, ref)


def test_srs_baseline_prefers_latest_and_zero_when_never_sounded():
  hist = jnp.ones((1, 6, 1, 2, 8), jnp.complex64) * jnp.arange(1, 7).reshape(1, 6, 1, 1, 1)
  ob = srs.observe(hist, jax.random.PRNGKey(0), num_hops=4, snr_db_range=(80.0, 80.0))
  base = np.asarray(srs.baseline(ob)).real.round(3)[0, 0, 0]
  mask = np.asarray(ob.mask[0])
  latest = np.array([np.nonzero(mask[:, p])[0].max() + 1 for p in range(8)])
  np.testing.assert_allclose(base, latest, atol=1e-3)
  ob2 = srs.observe(hist[:, :1], jax.random.PRNGKey(0), num_hops=4, snr_db_range=(80.0, 80.0))
  assert np.sum(np.asarray(srs.baseline(ob2)) == 0) == 2 * 6  # 6 of 8 PRBs never sounded


def test_srs_bad_input():
  with pytest.raises(ValueError, match="not divisible by num_hops"):
    srs.observe(jnp.ones((1, 4, 1, 2, 50), jnp.complex64), jax.random.PRNGKey(0))


@pytest.mark.slow
def test_pattern_parameters_are_arguments_not_constants():
  h = jnp.ones((2, 32, 64), jnp.complex64)
  salt = np.asarray(noise_patterns.observe(h, jax.random.PRNGKey(0), "salt", SCH, keep_fraction=0.5).m) > 0
  np.testing.assert_allclose(salt.mean(), 0.5, atol=1 / 2048)  # exact count, round(0.5 * 2048)
  car = np.asarray(noise_patterns.observe(h, jax.random.PRNGKey(0), "pilot_car", SCH, tile=4).m[0]) > 0
  assert car[:, ::4].all() and car.sum() == 32 * 16
  taus = np.asarray(tau_patterns.sample(jax.random.PRNGKey(1), "periodical", 8, (32, 64), T,
                                        period_ant=(2, 2), period_sub=(3, 3)))
  np.testing.assert_array_equal(taus, np.tile(taus[:, :2, :3], (1, 16, 22))[:, :, :64])
  with pytest.raises(ValueError, match=r"period_ant=\(5, 2\) must be an inclusive range"):
    tau_patterns.sample_one(jax.random.PRNGKey(0), "periodical", (32, 64), T, period_ant=(5, 2))


def test_latest_predictor_nmse_closed_form():
  # AR(1)-like aging with known correlations: occasion o of 4 has corr rho_o with the target. The
  # predictor NMSE is then 1 - rho_o^2 / (1 + sigma^2), averaged over ages and the SNR range; with
  # n = 4000 x 64 entries the sample correlation is within ~2e-3 of rho, hence the 1e-2 tolerance.
  rho = np.array([0.2, 0.5, 0.8, 0.95])
  keys = jax.random.split(jax.random.PRNGKey(5), 5)
  shape = (4000, 1, 8, 8)
  h = conventions.standard_normal(keys[0], shape)
  hist = jnp.stack([r * h + np.sqrt(1 - r**2) * conventions.standard_normal(k, shape)
                    for r, k in zip(rho, keys[1:])], axis=1)
  got = srs.latest_predictor_nmse(hist, h, (0.0, 0.0))
  np.testing.assert_allclose(got["corr"], rho, atol=1e-2)
  assert got["nmse"] == pytest.approx(np.mean(1 - rho**2 / 2), abs=1e-2)
  assert got["nmse_noiseless"] == pytest.approx(np.mean(1 - rho**2), abs=1e-2)
  # Lower SNRs, more noise: the NMSE grows. (Over -10..10 dB it equals the 0 dB value: the mean of
  # 1 / (1 + 10^(-x/10)) over a range symmetric about 0 dB is exactly 1/2.)
  assert srs.latest_predictor_nmse(hist, h, (-10.0, 0.0))["nmse"] > got["nmse"]
  assert srs.latest_predictor_nmse(hist, h, (-10.0, 10.0))["nmse"] == pytest.approx(got["nmse"], abs=1e-4)


@pytest.mark.slow
def test_elementwise_observation_of_an_srs_history_keeps_the_exact_posterior_mean():
  # Under the stated aging model (white innovation), the per-cell scaling of the latest soundings into
  # H_bar = M o H + CN(0, I) loses nothing: the exact posterior mean of the target given H_bar equals the one
  # given the raw latest soundings, for a one-component (Gaussian) prior with correlated elements.
  from jaxchan import oracle, srs
  n_occ, n_bs, n_prb = 3, 2, 8                        # 4 hops over 3 occasions: one sub-band never sounded
  d = n_bs * n_prb
  rng = np.random.default_rng(0)
  q = rng.normal(size=(d, d)) + 1j * rng.normal(size=(d, d))
  C = q @ q.conj().T
  C = C / np.sqrt(np.outer(np.diag(C).real, np.diag(C).real))    # unit-power elements, correlated
  prior = oracle.GaussianMixture(jnp.ones(1), jnp.zeros((1, d), jnp.complex64), jnp.asarray(C, jnp.complex64)[None])
  rho = jnp.asarray([0.3 * np.exp(0.4j), 0.6 * np.exp(-1.0j), 0.9 * np.exp(0.2j)], jnp.complex64)
  k = jax.random.split(jax.random.PRNGKey(0), 4)
  h = oracle.sample(prior, k[0], 1).reshape(1, n_bs, n_prb)
  w = conventions.standard_normal(k[1], (n_occ, 1, n_bs, n_prb))
  hist = (jnp.conj(rho)[:, None, None, None] * h + jnp.sqrt(1 - jnp.abs(rho) ** 2)[:, None, None, None] * w)[None]
  obs = srs.observe(hist, k[2], num_hops=4, snr_db_range=(3.0, 3.0))
  h_bar, m = srs.elementwise_observation(obs, rho, k[3])
  mean_bar = oracle.moments(oracle.posterior(prior, h_bar.reshape(d), jnp.diag(m.reshape(d)).astype(jnp.complex64),
                                             jnp.eye(d)))[0]
  # The same posterior from the raw latest soundings: y = conj(rho_o) h + noise of variance 1 - |rho_o|^2 + nv.
  latest, occ, seen = srs.latest_observation(obs.obs, obs.mask)
  r = jnp.where(seen[0], jnp.conj(rho)[occ[0]], 0)                      # [n_prb]
  a = jnp.broadcast_to(r, (n_bs, n_prb)).reshape(d)
  var = jnp.broadcast_to(jnp.where(seen[0], 1 - jnp.abs(rho[occ[0]]) ** 2 + obs.noise_var[0], 1.0),
                         (n_bs, n_prb)).reshape(d)
  mean_raw = oracle.moments(oracle.posterior(prior, latest.reshape(d), jnp.diag(a), jnp.diag(var)))[0]
  assert not bool(jnp.all(seen)) and float(jnp.min(m)) == 0.0          # the unsounded band is in the test
  np.testing.assert_allclose(mean_bar, mean_raw, atol=1e-4)
  # And M is the stated reliability |rho_o| / sqrt(1 - |rho_o|^2 + nv) on sounded cells.
  want = jnp.where(seen[0], jnp.abs(rho[occ[0]]) / jnp.sqrt(1 - jnp.abs(rho[occ[0]]) ** 2 + obs.noise_var[0]), 0)
  np.testing.assert_allclose(m[0, 0], jnp.broadcast_to(want, (n_bs, n_prb)), rtol=1e-5)
  with pytest.raises(ValueError, match=r"one correlation per occasion, \(3,\)"):
    srs.elementwise_observation(obs, rho[:2], k[3])


@pytest.mark.slow
def test_user_prior_carries_each_users_own_spatial_covariance():
  # A per-user anchor for the non-identical prior on SRS targets: CN(0, R_user (x) C_f). Two users with different
  # true spatial covariances, fully aged histories (fresh rows every occasion, C_f = I), 20 dB: each user's prior
  # must hold its own history's noise-corrected covariance (the Gaussian predictor's R) for both of its UE
  # antennas, the training prior's frequency factor at unit mean, and converge to the true R.
  from jaxchan import gaussian_predictor, gaussian_prior, srs
  B, n_occ, n_ue, n_bs, n_prb = 2, 8, 2, 4, 16
  rng = np.random.default_rng(1)
  true = []
  for b in range(B):
    q, _ = np.linalg.qr(rng.normal(size=(n_bs, n_bs)) + 1j * rng.normal(size=(n_bs, n_bs)))
    lam = np.array([3.0, 0.7, 0.2, 0.1]) if b == 0 else np.array([1.0, 1.0, 1.0, 1.0])
    true.append((q * lam) @ q.conj().T)
  z = conventions.standard_normal(jax.random.PRNGKey(3), (B, n_occ, n_ue, n_bs, n_prb))
  hist = jnp.stack([jnp.einsum("ij,oujf->ouif", np.linalg.cholesky(true[b]).astype(np.complex64), z[b])
                    for b in range(B)])
  obs = srs.observe(hist, jax.random.PRNGKey(4), num_hops=2, snr_db_range=(20.0, 20.0))
  cf = np.asarray(np.exp(-0.3 * np.abs(np.subtract.outer(np.arange(n_prb), np.arange(n_prb)))), np.complex64)
  train_prior = gaussian_prior.from_factors(np.zeros((n_bs, n_prb)), np.eye(n_bs), 5.0 * cf, shrinkage=0.0)
  p = gaussian_predictor.user_prior(obs, train_prior)
  assert p.mean.shape == (B * n_ue, n_bs, n_prb) and p.shape == (n_bs, n_prb)
  vals, vecs = gaussian_predictor.spatial_covariance(obs)
  for b in range(B):
    want = (vecs[b] * jnp.maximum(vals[b], 1e-4 * jnp.mean(vals[b]))) @ jnp.conj(vecs[b]).T
    for u in range(n_ue):
      got = (p.ant_vecs[b * n_ue + u] * p.ant_vals[b * n_ue + u]) @ jnp.conj(p.ant_vecs[b * n_ue + u]).T
      np.testing.assert_allclose(got, want, atol=1e-5)
    # 128 sounded rows per user (8 occasions x 2 UE antennas x 8 PRBs): the relative Frobenius error of a sample
    # covariance of 4-vectors from n rows is about sqrt(4 / n) = 0.18; 0.35 is twice that.
    assert np.linalg.norm(np.asarray(want) - true[b]) / np.linalg.norm(true[b]) < 0.35
  np.testing.assert_allclose(jnp.mean(p.sub_vals, axis=-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose((p.sub_vecs[0] * p.sub_vals[0]) @ jnp.conj(p.sub_vecs[0]).T, cf, atol=1e-4)
  # It plugs into the per-sample posterior kernel: one solve per UE antenna under its user's prior.
  tau = jnp.full((B * n_ue, n_bs, n_prb), 50.0)
  from jaxchan import schedules
  a, bt = schedules.alpha_beta(tau, schedules.GammaSchedule(100, 0.2))
  s = gaussian_prior.posterior(p, jnp.zeros((B * n_ue, n_bs, n_prb), jnp.complex64) + 0.1, a, bt)
  assert s.h_mean.shape == (B * n_ue, n_bs, n_prb) and bool(jnp.all(jnp.isfinite(s.h_mean)))
  with pytest.raises(ValueError, match=r"is for channels \(4, 8\) but the targets are \(4, 16\)"):
    gaussian_predictor.user_prior(obs, gaussian_prior.from_factors(np.zeros((n_bs, 8)), np.eye(n_bs), np.eye(8)))
