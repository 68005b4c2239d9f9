"""The shared reverse steps (jaxchan.solvers) against independently written closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxchan import conventions, solvers


def _state(seed, shape=(6, 5)):
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
  return conventions.standard_normal(k1, shape), conventions.standard_normal(k2, shape), k3


def test_eta_one_between_standard_times_is_ddpms_posterior_step():
  # DDPM (Ho et al. 2020, eq. 7) between visited times s -> t (s noisier), with abar_s < abar_t:
  # q(x_t | x_s, x0) = CN(mu, var), mu = sqrt(abar_t) b / (1 - abar_s) x0 + sqrt(a) (1 - abar_t) / (1 - abar_s) x_s,
  # a = abar_s / abar_t, b = 1 - a, var = (1 - abar_t) / (1 - abar_s) b.
  x, x0, key = _state(0)
  abar_s, abar_t = 0.3, 0.7
  out = solvers.eta_step(x, x0, 0.5 * np.log(abar_s), 0.5 * np.log(abar_t), key, 1.0)
  a, b = abar_s / abar_t, 1 - abar_s / abar_t
  mu = np.sqrt(abar_t) * b / (1 - abar_s) * np.asarray(x0) + np.sqrt(a) * (1 - abar_t) / (1 - abar_s) * np.asarray(x)
  z = np.asarray(conventions.standard_normal(key, x.shape))
  np.testing.assert_allclose(out, mu + np.sqrt((1 - abar_t) / (1 - abar_s) * b) * z, rtol=1e-5, atol=1e-5)


def test_deterministic_steps_need_no_key_and_end_at_the_clean_estimate():
  x, x0, _ = _state(1)
  # To alpha = 1 (log alpha = 0) every step returns D exactly; eta = 0 and eq. (9) at eps = 1 draw nothing.
  for step in (lambda: solvers.eta_step(x, x0, -0.4, 0.0, None, 0.0),
               lambda: solvers.eq9_step(x, x0, -0.4, 0.0, None, 1.0),
               lambda: solvers.dpm2m_step(x, x0, (jnp.zeros_like(x), 0.0), -0.4, 0.0, None, 0.0)[0]):
    np.testing.assert_allclose(step(), x0, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("h_prev_scale, corrected", [(1.0, True), (0.3, False)])
def test_dpm2m_second_order_term_and_its_drop_rule(h_prev_scale, corrected):
  # DPM-Solver++(2M), ODE form (Lu et al. 2022, Alg. 2): x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) D,
  # D = d + (d - d_prev) / (2 r), r = h_prev / h; first order where h > 2 h_prev.
  x, d, _ = _state(2)
  d_prev = 0.5 * d + 0.1
  la, la_next = -1.2, -0.5
  lam = lambda l: l - 0.5 * np.log(-np.expm1(2 * l))  # noqa: E731
  h = lam(la_next) - lam(la)
  h_prev = h_prev_scale * h
  out, h_out = solvers.dpm2m_step(x, d, (d_prev, jnp.full(x.shape, h_prev)), la, la_next, None, 0.0)
  D = np.asarray(d) + (h / (2 * h_prev)) * (np.asarray(d) - np.asarray(d_prev)) if corrected else np.asarray(d)
  s_s, s_t, a_t = np.sqrt(-np.expm1(2 * la)), np.sqrt(-np.expm1(2 * la_next)), np.exp(la_next)
  np.testing.assert_allclose(out, s_t / s_s * np.asarray(x) - a_t * np.expm1(-h) * D, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(h_out, h, rtol=1e-5)


def test_element_wise_times_equal_one_call_per_element():
  # The same kernel serves a shared time (standard diffusion) and per-element times (non-identical diffusion).
  x, d, key = _state(3, (3, 4))
  la = -jnp.linspace(0.1, 3.0, 12).reshape(3, 4)
  la_next = la + 0.2 * (jnp.arange(12).reshape(3, 4) % 3)     # a third of the elements do not move
  z = conventions.standard_normal(key, x.shape)
  full = solvers.eta_step(x, d, la, la_next, key, 0.7)
  for i in range(3):
    for j in range(4):
      a, b = solvers.alpha_beta(la[i, j])
      an, bn = solvers.alpha_beta(la_next[i, j])
      one = solvers.ddim(x[i, j], d[i, j], a, b, an, bn, solvers.sigma_eta(la[i, j], la_next[i, j], 0.7), z[i, j])
      np.testing.assert_allclose(full[i, j], one, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(full)[np.asarray(la_next == la)], np.asarray(x)[np.asarray(la_next == la)])
