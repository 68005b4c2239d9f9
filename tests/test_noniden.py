import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import complex_moment_zscores
from jaxchan import conventions, denoiser, noniden, oracle, schedules
from jaxchan.noniden import Sampler, Start
from jaxchan.stepping import Stepping

T = 100
SCH = schedules.GammaSchedule(T)


def _standard_ddim(x, x0, abar, abar_next, sigma, z):
  """Song et al. (2021) DDIM, eq. (12) of their paper, written independently."""
  eps_hat = (x - np.sqrt(abar) * x0) / np.sqrt(1 - abar)
  return np.sqrt(abar_next) * x0 + np.sqrt(np.maximum(1 - abar_next - sigma**2, 0)) * eps_hat + sigma * z


@pytest.mark.parametrize("eps", [0.0, 0.4, 1.0])
def test_eq9_with_uniform_tau_is_standard_ddim(eps):
  key = jax.random.PRNGKey(0)
  kg, kd, kz = jax.random.split(key, 3)
  shape = (3, 8, 16)
  g = conventions.standard_normal(kg, shape)
  d = conventions.standard_normal(kd, shape)
  tau, tau_next = 40.0, 31.5
  out = noniden.ddim_step(g, d, jnp.full(shape, tau), jnp.full(shape, tau_next), kz, Sampler("eq9", eps), SCH)
  abar, abar_next = float(schedules.gamma(tau, SCH)) ** 2, float(schedules.gamma(tau_next, SCH)) ** 2
  sigma = np.sqrt(1 - eps**2) * np.sqrt(1 - abar_next)  # eq. (9) as DDIM
  z = conventions.standard_normal(kz, shape)
  ref = _standard_ddim(np.asarray(g), np.asarray(d), abar, abar_next, sigma, np.asarray(z))
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
  # And the literal form of eq. (9).
  a, b = np.sqrt(abar), np.sqrt(1 - abar)
  an, bn = np.sqrt(abar_next), np.sqrt(1 - abar_next)
  lit = (an - eps * a * bn / b) * np.asarray(d) + eps * bn / b * np.asarray(g) + np.sqrt(1 - eps**2) * bn * np.asarray(z)
  np.testing.assert_allclose(out, lit, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_eta_family_with_uniform_tau_is_ddim_eta(eta):
  kg, kd, kz = jax.random.split(jax.random.PRNGKey(1), 3)
  shape = (5, 7)
  g, d = conventions.standard_normal(kg, shape), conventions.standard_normal(kd, shape)
  tau, tau_next = 70.0, 55.0
  out = noniden.ddim_step(g, d, jnp.full(shape, tau), jnp.full(shape, tau_next), kz, Sampler("eta", eta), SCH)
  abar, abar_next = float(schedules.gamma(tau, SCH)) ** 2, float(schedules.gamma(tau_next, SCH)) ** 2
  sigma = eta * np.sqrt((1 - abar_next) / (1 - abar) * (1 - abar / abar_next))  # Song et al. eq. (16)
  ref = _standard_ddim(np.asarray(g), np.asarray(d), abar, abar_next, sigma, np.asarray(conventions.standard_normal(kz, shape)))
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_deterministic_eq8_two_ways_and_frozen_elements():
  kg, kd, kt = jax.random.split(jax.random.PRNGKey(2), 3)
  shape = (4, 6)
  g, d = conventions.standard_normal(kg, shape), conventions.standard_normal(kd, shape)
  tau = jax.random.uniform(kt, shape, minval=1.0, maxval=T)
  tau_next = tau.at[:, :3].multiply(0.5)  # the other half does not move this step
  a = noniden.ddim_step(g, d, tau, tau_next, jax.random.PRNGKey(9), Sampler("eq9", 1.0), SCH)
  b = noniden.ddim_step(g, d, tau, tau_next, jax.random.PRNGKey(8), Sampler("eta", 0.0), SCH)
  np.testing.assert_allclose(a, b, atol=1e-6)
  # Eq. (8) leaves an element whose time does not change untouched; so does eta = 1.
  np.testing.assert_allclose(a[:, 3:], g[:, 3:], atol=1e-6)
  c = noniden.ddim_step(g, d, tau, tau_next, jax.random.PRNGKey(7), Sampler("eta", 1.0), SCH)
  np.testing.assert_allclose(c[:, 3:], g[:, 3:], atol=1e-6)


def test_velocity_parameterization_round_trip():
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(3), 3)
  h0 = conventions.standard_normal(k1, (2, 8, 4))
  tau = jax.random.uniform(k2, h0.shape, maxval=T)
  g, xi = noniden.diffuse(h0, tau, k3, SCH)
  alpha, beta = schedules.alpha_beta(tau, SCH)
  v = noniden.velocity_target(h0, xi, alpha, beta)
  np.testing.assert_allclose(noniden.denoised_from_velocity(g, v, alpha, beta), h0, atol=1e-5)
  # A velocity network that is exact gives the exact denoiser through the input normalization.
  for norm in noniden.INPUT_NORMS:
    D = denoiser.make(denoiser.FunctionNetwork(lambda x, t: v), SCH, input_norm=norm)
    np.testing.assert_allclose(D(None, g, tau), h0, atol=1e-5)


def test_noise_power_input_has_power_d():
  k1, k2 = jax.random.split(jax.random.PRNGKey(4))
  beta = jax.random.uniform(k2, (64, 16, 32), minval=0.05, maxval=1.0)
  # With |g| = 1 everywhere, ||x||^2 = Z^2 sum beta^-2 = d exactly.
  g = jnp.exp(1j * jax.random.uniform(k1, beta.shape, maxval=2 * np.pi)).astype(jnp.complex64)
  x = noniden.noise_power_input(g, beta, min_beta=0.01)  # below every beta here: no floor active
  np.testing.assert_allclose(jnp.sum(jnp.abs(x) ** 2, axis=(1, 2)), 16 * 32, rtol=1e-5)
  # Relative weights are beta^-1: the reliable elements are the loud ones.
  wb = np.asarray(jnp.abs(x) / jnp.abs(g) * beta)
  np.testing.assert_allclose(wb, np.broadcast_to(wb[:, :1, :1], wb.shape), rtol=1e-5)


def test_initial_state_variance_consistent_is_a_forward_sample():
  # H_bar = M H + CN(0,1). The variance-consistent start must be distributed
  # exactly as alpha(tau0) H + beta(tau0) xi; the paper's start has less noise.
  n = 20000
  k1, k2 = jax.random.split(jax.random.PRNGKey(5))
  h = conventions.standard_normal(k1, (n, 3))
  m = jnp.broadcast_to(jnp.array([0.3, 1.0, 4.0]), h.shape)
  h_bar = m * h + conventions.standard_normal(k2, h.shape)
  g0, tau0 = noniden.initial_state(h_bar, m, SCH)  # default: consistent
  alpha0, beta0 = schedules.alpha_beta(tau0, SCH)
  resid = np.asarray(g0 - alpha0 * h)
  # Noise power per element 1/(M^2+1) = beta0^2, to 3 standard errors of a
  # variance estimate from n samples (relative SE sqrt(1/n) for |CN|^2).
  np.testing.assert_allclose(np.mean(np.abs(resid) ** 2, 0), np.asarray(beta0[0]) ** 2, rtol=3 / np.sqrt(n))
  g0p, tau0p = noniden.initial_state(h_bar, m, SCH, start="paper")
  alpha0p = schedules.gamma(tau0p, SCH)
  np.testing.assert_allclose(alpha0p[0], np.array([0.3, 1.0, 4.0]) / np.array([1.3, 2.0, 5.0]), rtol=1e-5)
  resid_p = np.asarray(g0p - alpha0p * h)
  np.testing.assert_allclose(np.mean(np.abs(resid_p) ** 2, 0), 1 / np.array([1.3, 2.0, 5.0]) ** 2, rtol=3 / np.sqrt(n))


# --- Samplers driven by the exact GMM denoiser -------------------------------------------

DIM = 4
TAU0 = jnp.array([60.0, 20.0, 40.0, 5.0])  # non-identical start: element reliabilities differ


@functools.lru_cache(maxsize=None)
def _gmm():
  return oracle.random_mixture(jax.random.PRNGKey(0), DIM, 3)


def _run(g0, tau0, key, **kw):
  D = oracle.denoiser(_gmm(), SCH)
  return jax.jit(functools.partial(noniden.generate, D, schedule=SCH, **kw))(Start(g0, tau0), key)


@pytest.mark.slow
def test_theorem2_deterministic_loop_reproduces_the_prior():
  gmm = _gmm()
  mean, cov = oracle.moments(gmm)
  n = 6000
  h = oracle.sample(gmm, jax.random.PRNGKey(1), n)
  tau0 = jnp.broadcast_to(TAU0, h.shape)
  g0, _ = noniden.diffuse(h, tau0, jax.random.PRNGKey(2), SCH)
  errs, zs = [], []
  for n_steps in (2, 8, 64):
    out = np.asarray(_run(g0, tau0, jax.random.PRNGKey(3), num_steps=n_steps, stepping=Stepping("waterfilling"),
                          sampler=Sampler("eq9", 1.0)))
    c = np.cov(out.T, bias=True)
    errs.append(np.linalg.norm(c - np.asarray(cov)) / np.linalg.norm(np.asarray(cov)))
    zs.append(complex_moment_zscores(out, mean, cov))
  # Discretization error falls with N_G ...
  assert errs[0] > errs[1] > errs[2], errs
  # ... and at N_G = 64 the output moments match the GMM's within sampling
  # error: max |z| over 36 statistics below 5 (false alarm < 1e-4), while the
  # 2-step run is rejected by the same criterion (the check has power).
  assert zs[2] < 5.0, zs
  assert zs[0] > 5.0, zs


@pytest.mark.slow
def test_eta1_loop_samples_the_exact_posterior():
  gmm = _gmm()
  h = oracle.sample(gmm, jax.random.PRNGKey(11), 1)[0]
  g0, _ = noniden.diffuse(h, TAU0, jax.random.PRNGKey(12), SCH)
  A, N = oracle.elementwise_observation(*schedules.alpha_beta(TAU0, SCH))
  post_mean, post_cov = oracle.moments(oracle.posterior(gmm, g0, A, N))
  n = 3000
  G0, TAU = jnp.broadcast_to(g0, (n, DIM)), jnp.broadcast_to(TAU0, (n, DIM))
  z = {}
  for n_steps in (10, 400):
    out = _run(G0, TAU, jax.random.PRNGKey(13), num_steps=n_steps, stepping=Stepping("uniform"),
               sampler=Sampler("eta", 1.0))
    z[n_steps] = complex_moment_zscores(np.asarray(out), post_mean, post_cov)
  # Same 5-sigma Bonferroni criterion as above, from n = 3000 draws; ancestral
  # sampling's O(1/N_G) bias is below that resolution at 400 steps but not at 10.
  assert z[400] < 5.0, z
  assert z[10] > 5.0, z


@pytest.mark.slow
def test_generate_trajectory_and_jit_vmap_shapes():
  D = oracle.denoiser(_gmm(), SCH)
  g0 = conventions.standard_normal(jax.random.PRNGKey(0), (5, 2, 2))
  tau0 = jnp.full((5, 2, 2), 50.0)
  out, traj = jax.jit(functools.partial(noniden.generate_trajectory, D, schedule=SCH, num_steps=7))(
      Start(g0, tau0), jax.random.PRNGKey(1))
  assert out.shape == g0.shape and out.dtype == g0.dtype
  assert traj.g.shape == (7, 5, 2, 2) and traj.denoised.shape == (7, 5, 2, 2)
  np.testing.assert_allclose(traj.g[-1], out)
  # Last step: tau_next = 0, so the output equals the final denoised estimate for eq. (8).
  out8, traj8 = noniden.generate_trajectory(D, Start(g0, tau0), jax.random.PRNGKey(1), SCH, num_steps=7,
                                            sampler=Sampler("eq9", 1.0))
  np.testing.assert_allclose(out8, traj8.denoised[-1], atol=1e-5)
  # Element-wise kernels under vmap equal the batched call.
  step = functools.partial(noniden.ddim_step, sampler=Sampler("eta", 0.0), schedule=SCH)
  batched = step(g0, g0 * 0.5, tau0, tau0 * 0.5, jax.random.PRNGKey(2))
  per = jax.vmap(step, in_axes=(0, 0, 0, 0, None))(g0, g0 * 0.5, tau0, tau0 * 0.5, jax.random.PRNGKey(2))
  assert per.shape == batched.shape


@pytest.mark.parametrize("kw, match", [
    (dict(kind="eq9", value=1.5), r"sampler value \(eq. 9 mixing eps\) must lie in \[0.0, 1.0\]"),
    (dict(kind="eta", value=-0.1), r"sampler value \(eta\) must lie in"),
    (dict(kind="ddpm"), "sampler kind='ddpm' is not supported"),
])
def test_sampler_bad_values(kw, match):
  with pytest.raises(ValueError, match=match):
    Sampler(**kw)


def test_generate_bad_settings():
  D = oracle.denoiser(_gmm(), SCH)
  with pytest.raises(TypeError, match="Sampler"):
    noniden.make_generator(D, SCH, sampler="eta:1.0")
  with pytest.raises(TypeError, match="Stepping"):
    noniden.make_generator(D, SCH, stepping="tau-uniform")
  with pytest.raises(TypeError, match="GammaSchedule"):
    noniden.make_generator(D, 100)
  with pytest.raises(ValueError, match="num_steps"):
    noniden.make_generator(D, SCH, num_steps=0)


def test_generate_bad_shapes_and_times():
  D = oracle.denoiser(_gmm(), SCH)
  gen = noniden.make_generator(D, SCH, num_steps=3)
  g0 = jnp.zeros((2, DIM), jnp.complex64)
  with pytest.raises(ValueError, match=r"g0 has shape \(2, 4\) but tau0 has shape \(2, 3\)"):
    gen(Start(g0, jnp.ones((2, 3))), jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match=r"tau0 must lie in \[0.0, 100\]"):
    gen(Start(g0, jnp.full((2, DIM), 120.0)), jax.random.PRNGKey(0))


def test_sampler_parse_spec():
  assert Sampler.parse("eq9:0.4") == Sampler("eq9", 0.4)
  assert Sampler.parse("eta:1") == Sampler("eta", 1.0) == Sampler()
  assert Sampler.parse(str(Sampler("eq9", 0.4))) == Sampler("eq9", 0.4)
  assert Sampler.parse("dpm2m:1") == Sampler("dpm2m", 1.0) and str(Sampler("dpm2m", 0.0)) == "dpm2m:0"
  assert Sampler.parse("eta+cov:1") == Sampler("eta+cov", 1.0) and str(Sampler("eta+cov", 1.0)) == "eta+cov:1"
  with pytest.raises(ValueError, match="exact only with the ancestral step"):   # not Markov for eta < 1: biased
    Sampler.parse("eta+cov:0.5")
  for bad in ("eq9:1.5", "ddpm:0.5", "eta", "eta:x", "eta+cov"):
    with pytest.raises(ValueError, match="must be 'eta:ETA', 'eq9:EPS', 'dpm2m:ETA' or 'eta\\+cov:ETA'"):
      Sampler.parse(bad)


@pytest.mark.slow
def test_network_generator_takes_params_as_an_argument():
  from jaxchan.models.mixer import MixerDenoiser

  model = MixerDenoiser(num_layers=1, embed_dim=8, schedule=SCH)
  g0 = conventions.standard_normal(jax.random.PRNGKey(0), (2, 8, 16))
  tau0 = jax.random.uniform(jax.random.PRNGKey(1), g0.shape, minval=5.0, maxval=T)
  p1 = model.init(jax.random.PRNGKey(2), g0, tau0)
  p2 = jax.tree_util.tree_map(lambda v: v + 0.05, p1)
  kw = dict(num_steps=4, stepping=Stepping("waterfilling"), sampler=Sampler("eta", 1.0))
  den = denoiser.make(model, SCH, input_norm="noise")
  gen = noniden.make_network_generator(den, **kw)
  key = jax.random.PRNGKey(3)
  for params in (p1, p2):  # one compiled program, two parameter sets
    D = den.bind(params)
    # Same computation as the closed-over form; only XLA's constant folding differs (float32 round-off).
    np.testing.assert_allclose(gen(params, Start(g0, tau0), key),
                               noniden.make_generator(D, SCH, **kw)(Start(g0, tau0), key), atol=1e-4)
  with pytest.raises(ValueError, match=r"tau0 must lie in \[0.0, 100\]"):
    gen(p1, Start(g0, tau0 + T), key)
  with pytest.raises(ValueError, match="input_norm='unit' is not supported"):
    denoiser.make(model, SCH, input_norm="unit")


# --- Defaults: the eta sampler from the variance-consistent start ---------------------------


@pytest.mark.slow
def test_the_papers_start_misses_the_posterior_the_default_start_reaches():
  # One observation H_bar = M o H + CN(0, I) with element-wise reliabilities (0 = unobserved). From the default,
  # variance-consistent start the default sampler draws from the exact posterior (tests/test_sampler_exactness.py);
  # the paper's start claims more noise than the observation holds, and the same sampler then misses the posterior
  # by far more than sampling noise (5-sigma criterion of complex_moment_zscores, n = 3000 draws).
  gmm = _gmm()
  m = jnp.array([0.0, 0.7, 2.0, 6.0])
  k_h, k_n, k_run = jax.random.split(jax.random.PRNGKey(21), 3)
  h = oracle.sample(gmm, k_h, 1)[0]
  h_bar = m * h + conventions.standard_normal(k_n, h.shape, h.dtype)
  post_mean, post_cov = oracle.moments(oracle.posterior(gmm, h_bar, jnp.diag(m), jnp.eye(DIM)))
  n = 3000
  D = oracle.denoiser(gmm, SCH)
  run = jax.jit(functools.partial(noniden.generate, D, schedule=SCH, num_steps=400))
  z = {}
  for start in ("consistent", "paper"):
    g0, tau0 = noniden.initial_state(h_bar, m, SCH, start=start)
    out = run(Start(jnp.broadcast_to(g0, (n, DIM)), jnp.broadcast_to(tau0, (n, DIM))), k_run)
    z[start] = complex_moment_zscores(np.asarray(out), post_mean, post_cov)
  assert z["consistent"] < 5.0 < z["paper"], z


@pytest.mark.slow
def test_identical_start_is_a_forward_sample_where_the_observation_allows():
  # Reliabilities: two unobserved, the rest at several levels. alpha* is the mean of the
  # consistent amplitudes M / sqrt(M^2 + 1); elements at least that reliable must be exact
  # forward samples alpha* h + beta* xi, the others keep the consistent unit-power start.
  n = 40000
  m = jnp.array([0.0, 0.0, 0.5, 1.0, 3.0, 10.0])
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(31), 3)
  h = conventions.standard_normal(k1, (n, 6))
  h_bar = m * h + conventions.standard_normal(k2, h.shape)
  g0, tau0 = noniden.identical_start(h_bar, jnp.broadcast_to(m, h.shape), k3, SCH)
  a0 = np.asarray(m / jnp.sqrt(m**2 + 1))
  a_star = a0.mean()
  np.testing.assert_allclose(schedules.gamma(tau0, SCH), a_star, rtol=1e-4)   # one scalar time per sample
  g, hh = np.asarray(g0), np.asarray(h)
  reliable = a0 >= a_star
  assert reliable.tolist() == [False, False, False, True, True, True]
  # Regression of g0 on h recovers the signal amplitude; the residual power is the noise
  # variance. Both to 5 standard errors of n = 40000 samples (relative SE ~ 1/sqrt(n)).
  amp = (np.mean(g * hh.conj(), 0) / np.mean(np.abs(hh) ** 2, 0)).real
  resid = np.mean(np.abs(g - amp * hh) ** 2, 0)
  tol = 5 / np.sqrt(n)
  np.testing.assert_allclose(amp[reliable], a_star, atol=tol)
  np.testing.assert_allclose(resid[reliable], 1 - a_star**2, atol=tol)
  np.testing.assert_allclose(amp[~reliable], a0[~reliable], atol=tol)
  # White observation (uniform reliability): identical to the consistent non-identical start.
  mw = jnp.full((3, 5), 2.0)
  hb = conventions.standard_normal(k1, (3, 5))
  gi, ti = noniden.identical_start(hb, mw, k3, SCH)
  gc, tc = noniden.initial_state(hb, mw, SCH)
  np.testing.assert_allclose(gi, gc, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(ti, tc, rtol=1e-5)


@pytest.mark.slow
def test_training_and_generation_inputs_share_one_range_of_scales():
  # The identical-noise-power input weighs element i by 1 / max(beta_i, floor). Training draws
  # tau in {1..T} and generation evaluates tau in (0, T] (never 0 before the final, unevaluated
  # step); with the default floor beta(1) the per-element weights of both lie in the same
  # interval [1 / beta(T), 1 / beta(1)], so no element can dominate a sample's normalizer in one
  # and not the other.
  from jaxchan import noise_patterns, stepping, tau_patterns
  floor = noniden.input_floor(SCH)
  beta1 = float(schedules.alpha_beta(jnp.asarray(1.0), SCH)[1])
  assert floor == pytest.approx(beta1)
  w_max, w_min = 1 / beta1, 1 / float(schedules.alpha_beta(jnp.asarray(float(T)), SCH)[1])
  taus = tau_patterns.sample(jax.random.PRNGKey(0), "all", 64, (32, 64), T)
  assert float(taus.min()) >= 1 and float(taus.max()) <= T
  w_train = 1 / np.maximum(np.asarray(schedules.alpha_beta(taus, SCH)[1]), floor)
  h = conventions.standard_normal(jax.random.PRNGKey(1), (8, 32, 64))
  obs = noise_patterns.observe(h, jax.random.PRNGKey(2), "pilot", SCH)
  path = jax.vmap(functools.partial(stepping.tau_trajectory, stepping=Stepping(), schedule=SCH, num_steps=50))(obs.tau0)[:, :-1]
  w_gen = 1 / np.maximum(np.asarray(schedules.alpha_beta(path, SCH)[1]), floor)
  for w in (w_train, w_gen):
    assert w.max() <= w_max * (1 + 1e-5) and w.min() >= w_min * (1 - 1e-5)
  # Training covers the top of the range (elements at tau = 1), so late generation steps are seen.
  assert w_train.max() == pytest.approx(w_max, rel=1e-5)
  # The paper's literal range (tau = 0 with the old 1e-3 floor) would leave it by a factor of 20.
  assert 1 / 1e-3 > 20 * w_max


def test_training_times_with_tau_zero_need_the_floor():
  with pytest.raises(ValueError, match=r"tau_min=0.*min_beta=0.001 < beta\(1\)"):
    noniden.check_training_times(0, 1e-3, SCH)
  noniden.check_training_times(0, None, SCH)    # floored at beta(1): allowed
  noniden.check_training_times(1, 1e-3, SCH)    # tau >= 1 never reaches the floor
  with pytest.raises(ValueError, match="tau_min=2"):
    noniden.check_training_times(2, None, SCH)
  with pytest.raises(ValueError, match="start='eq15' is not supported"):
    noniden.initial_state(jnp.ones(3, jnp.complex64), jnp.ones(3), SCH, start="eq15")


@pytest.mark.slow
def test_identical_times_is_the_mean_amplitude_time():
  # One time per sample whose amplitude is the sample's mean amplitude; constant tau stays put,
  # and it is the time identical_start uses (its tau0 is identical_times of the consistent tau0).
  tau = jax.random.uniform(jax.random.PRNGKey(40), (3, 4, 5), maxval=T)
  t = np.asarray(noniden.identical_times(tau, SCH))
  assert t.shape == tau.shape and np.all(t == t[:, :1, :1])
  np.testing.assert_allclose(np.asarray(schedules.gamma(t[:, 0, 0], SCH)),
                             np.asarray(schedules.gamma(tau, SCH)).mean((1, 2)), rtol=1e-5)
  np.testing.assert_allclose(noniden.identical_times(jnp.full((2, 3), 37.0), SCH), 37.0, rtol=1e-5)
  # Observed elements only: an unobserved one has amplitude 0 in identical_start but gamma(T) > 0 as a time.
  m = jnp.array([[0.2, 0.5, 3.0], [1.0, 1.0, 9.0]])
  hb = conventions.standard_normal(jax.random.PRNGKey(41), m.shape)
  _, tau_i = noniden.identical_start(hb, m, jax.random.PRNGKey(42), SCH)
  _, tau_c = noniden.initial_state(hb, m, SCH)
  np.testing.assert_allclose(tau_i, noniden.identical_times(tau_c, SCH), rtol=1e-4)
