import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import complex_moment_zscores
from jaxchan import conventions, noniden, oracle, schedules

T = 100


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
  out = noniden.ddim_step(g, d, jnp.full(shape, tau), jnp.full(shape, tau_next), kz, sampler="eq9", eps=eps, T=T)
  abar, abar_next = float(schedules.gamma(tau, T)) ** 2, float(schedules.gamma(tau_next, T)) ** 2
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
  out = noniden.ddim_step(g, d, jnp.full(shape, tau), jnp.full(shape, tau_next), kz, sampler="eta", eta=eta, T=T)
  abar, abar_next = float(schedules.gamma(tau, T)) ** 2, float(schedules.gamma(tau_next, T)) ** 2
  sigma = eta * np.sqrt((1 - abar_next) / (1 - abar) * (1 - abar / abar_next))  # Song et al. eq. (16)
  ref = _standard_ddim(np.asarray(g), np.asarray(d), abar, abar_next, sigma, np.asarray(conventions.standard_normal(kz, shape)))
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_deterministic_eq8_two_ways_and_frozen_elements():
  kg, kd, kt = jax.random.split(jax.random.PRNGKey(2), 3)
  shape = (4, 6)
  g, d = conventions.standard_normal(kg, shape), conventions.standard_normal(kd, shape)
  tau = jax.random.uniform(kt, shape, minval=1.0, maxval=T)
  tau_next = tau.at[:, :3].multiply(0.5)  # the other half does not move this step
  a = noniden.ddim_step(g, d, tau, tau_next, jax.random.PRNGKey(9), sampler="eq9", eps=1.0, T=T)
  b = noniden.ddim_step(g, d, tau, tau_next, jax.random.PRNGKey(8), sampler="eta", eta=0.0, T=T)
  np.testing.assert_allclose(a, b, atol=1e-6)
  # Eq. (8) leaves an element whose time does not change untouched; so does eta = 1.
  np.testing.assert_allclose(a[:, 3:], g[:, 3:], atol=1e-6)
  c = noniden.ddim_step(g, d, tau, tau_next, jax.random.PRNGKey(7), sampler="eta", eta=1.0, T=T)
  np.testing.assert_allclose(c[:, 3:], g[:, 3:], atol=1e-6)


def test_velocity_parameterization_round_trip():
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(3), 3)
  h0 = conventions.standard_normal(k1, (2, 8, 4))
  tau = jax.random.uniform(k2, h0.shape, maxval=T)
  g, xi = noniden.diffuse(h0, tau, k3, T=T)
  alpha, beta = schedules.alpha_beta(tau, T)
  v = noniden.velocity_target(h0, xi, alpha, beta)
  np.testing.assert_allclose(noniden.denoised_from_velocity(g, v, alpha, beta), h0, atol=1e-5)
  # A velocity network that is exact gives the exact denoiser through the input normalization.
  f = lambda x, t: v  # noqa: E731  (an oracle "network" for this fixed batch)
  for norm in noniden.INPUT_NORMS:
    D = noniden.velocity_denoiser(f, input_norm=norm, T=T)
    np.testing.assert_allclose(D(g, tau), h0, atol=1e-5)


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
  g0, tau0 = noniden.initial_state(h_bar, m, T=T)  # default: consistent
  alpha0, beta0 = schedules.alpha_beta(tau0, T)
  resid = np.asarray(g0 - alpha0 * h)
  # Noise power per element 1/(M^2+1) = beta0^2, to 3 standard errors of a
  # variance estimate from n samples (relative SE sqrt(1/n) for |CN|^2).
  np.testing.assert_allclose(np.mean(np.abs(resid) ** 2, 0), np.asarray(beta0[0]) ** 2, rtol=3 / np.sqrt(n))
  g0p, tau0p = noniden.initial_state(h_bar, m, start="paper", T=T)
  alpha0p = schedules.gamma(tau0p, T)
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
  D = oracle.denoiser(_gmm(), T=T)
  return jax.jit(functools.partial(noniden.generate, D, T=T, **kw))(g0, tau0, key)


@pytest.mark.slow
def test_theorem2_deterministic_loop_reproduces_the_prior():
  gmm = _gmm()
  mean, cov = oracle.moments(gmm)
  n = 6000
  h = oracle.sample(gmm, jax.random.PRNGKey(1), n)
  tau0 = jnp.broadcast_to(TAU0, h.shape)
  g0, _ = noniden.diffuse(h, tau0, jax.random.PRNGKey(2), T=T)
  errs, zs = [], []
  for n_steps in (2, 8, 64):
    out = np.asarray(_run(g0, tau0, jax.random.PRNGKey(3), num_steps=n_steps, rule="waterfilling",
                          sampler="eq9", eps=1.0))
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
  g0, _ = noniden.diffuse(h, TAU0, jax.random.PRNGKey(12), T=T)
  A, N = oracle.elementwise_observation(*schedules.alpha_beta(TAU0, T))
  post_mean, post_cov = oracle.moments(oracle.posterior(gmm, g0, A, N))
  n = 3000
  G0, TAU = jnp.broadcast_to(g0, (n, DIM)), jnp.broadcast_to(TAU0, (n, DIM))
  z = {}
  for n_steps in (10, 400):
    out = _run(G0, TAU, jax.random.PRNGKey(13), num_steps=n_steps, rule="uniform", sampler="eta", eta=1.0)
    z[n_steps] = complex_moment_zscores(np.asarray(out), post_mean, post_cov)
  # Same 5-sigma Bonferroni criterion as above, from n = 3000 draws; ancestral
  # sampling's O(1/N_G) bias is below that resolution at 400 steps but not at 10.
  assert z[400] < 5.0, z
  assert z[10] > 5.0, z


def test_generate_trajectory_and_jit_vmap_shapes():
  D = oracle.denoiser(_gmm(), T=T)
  g0 = conventions.standard_normal(jax.random.PRNGKey(0), (5, 2, 2))
  tau0 = jnp.full((5, 2, 2), 50.0)
  out, traj = jax.jit(functools.partial(noniden.generate, D, num_steps=7, T=T, return_trajectory=True))(
      g0, tau0, jax.random.PRNGKey(1))
  assert out.shape == g0.shape and out.dtype == g0.dtype
  assert traj.g.shape == (7, 5, 2, 2) and traj.denoised.shape == (7, 5, 2, 2)
  np.testing.assert_allclose(traj.g[-1], out)
  # Last step: tau_next = 0, so the output equals the final denoised estimate for eq. (8).
  out8, traj8 = noniden.generate(D, g0, tau0, jax.random.PRNGKey(1), num_steps=7, T=T, eps=1.0,
                                 return_trajectory=True)
  np.testing.assert_allclose(out8, traj8.denoised[-1], atol=1e-5)
  # Element-wise kernels under vmap equal the batched call.
  step = functools.partial(noniden.ddim_step, sampler="eta", eta=0.0, T=T)
  batched = step(g0, g0 * 0.5, tau0, tau0 * 0.5, jax.random.PRNGKey(2))
  per = jax.vmap(step, in_axes=(0, 0, 0, 0, None))(g0, g0 * 0.5, tau0, tau0 * 0.5, jax.random.PRNGKey(2))
  assert per.shape == batched.shape


@pytest.mark.parametrize("kw, match", [
    (dict(sampler="eq9", eps=1.5), r"eps \(eq. 9 mixing\) must lie in \[0.0, 1.0\]"),
    (dict(sampler="eta", eta=-0.1), "eta must lie in"),
    (dict(sampler="ddpm"), "sampler='ddpm' is not supported"),
    (dict(rule="linear"), "stepping rule='linear'"),
])
def test_generate_bad_arguments(kw, match):
  D = oracle.denoiser(_gmm(), T=T)
  with pytest.raises(ValueError, match=match):
    noniden.make_generator(D, num_steps=3, T=T, **kw)


def test_generate_bad_shapes_and_times():
  D = oracle.denoiser(_gmm(), T=T)
  gen = noniden.make_generator(D, num_steps=3, T=T)
  g0 = jnp.zeros((2, DIM), jnp.complex64)
  with pytest.raises(ValueError, match=r"g0 has shape \(2, 4\) but tau0 has shape \(2, 3\)"):
    gen(g0, jnp.ones((2, 3)), jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match=r"tau0 must lie in \[0.0, 100\]"):
    gen(g0, jnp.full((2, DIM), 120.0), jax.random.PRNGKey(0))


def test_parse_sampler_spec():
  assert noniden.parse_sampler("eq9:0.4") == dict(sampler="eq9", eps=0.4)
  assert noniden.parse_sampler("eta:1") == dict(sampler="eta", eta=1.0)
  for bad in ("eq9:1.5", "ddpm:0.5", "eta", "eta:x"):
    with pytest.raises(ValueError, match="must be 'eta:ETA' or 'eq9:EPS'"):
      noniden.parse_sampler(bad)


def test_network_generator_takes_params_as_an_argument():
  from jaxchan.models.mixer import MixerDenoiser

  model = MixerDenoiser(num_layers=1, embed_dim=8)
  g0 = conventions.standard_normal(jax.random.PRNGKey(0), (2, 8, 16))
  tau0 = jax.random.uniform(jax.random.PRNGKey(1), g0.shape, minval=5.0, maxval=T)
  p1 = model.init(jax.random.PRNGKey(2), g0, tau0)
  p2 = jax.tree_util.tree_map(lambda v: v + 0.05, p1)
  kw = dict(num_steps=4, rule="waterfilling", sampler="eta", eta=1.0, T=T)
  gen = noniden.make_network_generator(model.apply, input_norm="noise", **kw)
  key = jax.random.PRNGKey(3)
  for params in (p1, p2):  # one compiled program, two parameter sets
    D = noniden.velocity_denoiser(functools.partial(model.apply, params), input_norm="noise", T=T)
    # Same computation as the closed-over form; only XLA's constant folding differs (float32 round-off).
    np.testing.assert_allclose(gen(params, g0, tau0, key), noniden.make_generator(D, **kw)(g0, tau0, key),
                               atol=1e-4)
  with pytest.raises(ValueError, match=r"tau0 must lie in \[0.0, 100\]"):
    gen(p1, g0, tau0 + T, key)
  with pytest.raises(ValueError, match="input_norm='unit' is not supported"):
    noniden.make_network_generator(model.apply, input_norm="unit", **kw)
