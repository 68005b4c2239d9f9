import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxchan import schedules
from jaxchan.schedules import GammaSchedule as GS


def exact_log_gamma(tau, T, beta_max=0.2):
  i = np.arange(1, tau + 1)
  return 0.5 * np.sum(np.log1p(-beta_max * i / T))


@pytest.mark.parametrize("T", [10, 100, 1000])
def test_gamma_matches_product_at_integers(T):
  taus = np.arange(T + 1)
  exact = np.array([exact_log_gamma(t, T) for t in taus])
  got = np.asarray(schedules.log_gamma(taus.astype(np.float32), GS(T)))
  # float32 relative rounding (~6e-8) accumulated over a few dozen operations.
  np.testing.assert_allclose(got, exact, rtol=2e-6, atol=1e-7)
  assert float(schedules.gamma(0.0, GS(T))) == 1.0


@pytest.mark.parametrize("T", [10, 100, 1000])
def test_gamma_strictly_decreasing_and_beta_consistent(T):
  tau = jnp.linspace(0.0, T, 4001)
  g = schedules.gamma(tau, GS(T))
  assert np.all(np.diff(np.asarray(g)) < 0)
  alpha, beta = schedules.alpha_beta(tau, GS(T))
  np.testing.assert_allclose(alpha**2 + beta**2, 1.0, atol=1e-6)
  assert float(beta[0]) == 0.0 and np.all(np.asarray(beta[1:]) > 0)


@pytest.mark.parametrize("T", [1, 10, 100, 1000])
def test_gamma_inverse_round_trip(T):
  tau = jnp.linspace(0.0, T, 2001)
  back = schedules.tau_from_log_alpha(schedules.log_gamma(tau, GS(T)), GS(T))
  # In the log domain the inverse is limited only by float32 resolution of tau.
  np.testing.assert_allclose(back, tau, rtol=1e-6, atol=1e-6 * T)
  # Through alpha itself, alpha's own rounding (6e-8 relative) limits tau to
  # 6e-8 / |d log gamma / d tau|, largest at tau = 0 where the slope is ~1/(4a).
  a = T / 0.2
  back_alpha = schedules.gamma_inv(schedules.gamma(tau, GS(T)), GS(T))
  np.testing.assert_allclose(back_alpha, tau, atol=1.2e-7 * 4 * a + 1e-6 * T)


def test_gamma_inv_clips_to_range():
  T = 100
  assert float(schedules.gamma_inv(1.0, GS(T))) == 0.0
  assert float(schedules.gamma_inv(0.0, GS(T))) == T
  tiny = float(schedules.gamma(float(T), GS(T))) * 0.5
  assert float(schedules.gamma_inv(tiny, GS(T))) == pytest.approx(T)


def test_schedule_works_under_jit_and_vmap():
  tau = jnp.arange(12.0).reshape(3, 4) * 8
  f = jax.jit(jax.vmap(lambda t: schedules.gamma_inv(schedules.gamma(t, GS(100)), GS(100))))
  np.testing.assert_allclose(f(tau), tau, atol=1e-3)


@pytest.mark.parametrize("tau, match", [(101.0, "tau must lie in"), (-1.0, "tau must lie in")])
def test_gamma_bad_tau(tau, match):
  with pytest.raises(ValueError, match=match):
    schedules.gamma(np.array([tau]), GS(100))


@pytest.mark.parametrize("kwargs, match", [
    (dict(T=0), "T must be a positive"),
    (dict(T=float("nan")), "T must be a positive"),
    (dict(T=True), "T must be a positive"),
    (dict(T=100, beta_max=1.5), "beta_max must lie in"),
    (dict(T=100, beta_max=0.99), "too close to 0"),
])
def test_gamma_schedule_bad_values(kwargs, match):
  with pytest.raises(ValueError, match=match):
    GS(**kwargs)


def test_gamma_schedule_is_a_value():
  # Equal schedules hash equally whatever number types built them (they are jit-static and Flax fields),
  # they round-trip through dicts (model.json), and old files without beta_max get the paper's 0.2.
  assert GS(100, 0.2) == GS(np.int64(100), np.float64(0.2)) == GS.from_dict({"T": 100.0})
  assert hash(GS(100.0)) == hash(GS(100))
  assert GS.from_dict(GS(50, 0.1).to_dict()) == GS(50, 0.1)
  with pytest.raises(TypeError, match="GammaSchedule"):
    schedules.gamma(np.array([1.0]), 100)


def test_gamma_inv_bad_alpha():
  with pytest.raises(ValueError, match="alpha must lie in"):
    schedules.gamma_inv(np.array([1.2]), GS(100))


def test_cosine_schedule():
  T, s = 1000, 0.008
  sch = schedules.cosine_schedule(T, s)
  abar = np.asarray(sch.alpha_bars, np.float64)
  assert abar[0] == 1.0 and np.all(np.diff(abar) < 0)
  t = np.arange(T + 1)
  f = np.cos((t / T + s) / (1 + s) * np.pi / 2) ** 2
  # Equal to the closed form except where the 0.999 beta clip acts (last steps).
  np.testing.assert_allclose(abar[:-5], (f / f[0])[:-5], rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(np.cumprod(sch.alphas), abar, rtol=1e-5)
  assert np.all(np.asarray(sch.betas) <= 0.999)
