import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from jaxchan import schedules, stepping

T = 100
SCH = schedules.GammaSchedule(T)

taus = hnp.arrays(np.float32, st.integers(1, 40),
                  elements=st.floats(0.0, 100.0, width=32, allow_nan=False))


@pytest.mark.slow
@settings(max_examples=60, deadline=None)  # 60 random cases; the known case below pins the values
@given(x=taus, frac=st.floats(0.0, 1.2))
def test_waterfill_invariants(x, frac):
  budget = np.float32(frac * x.sum())
  nxt = np.asarray(stepping.waterfill(jnp.asarray(x), budget))
  tol = 1e-4 * max(1.0, float(x.sum()))  # float32 sums over <= 40 entries
  assert np.all(nxt <= x + 1e-6) and np.all(nxt >= 0)
  # L1 decrement equals the budget, or everything is drained.
  assert abs((x - nxt).sum() - min(budget, x.sum())) <= tol
  # Order preserving: x_i <= x_j  =>  next_i <= next_j.
  order = np.argsort(x, kind="stable")
  assert np.all(np.diff(nxt[order]) >= -1e-5)
  # Water-filling: every lowered entry sits at one common level, above no untouched entry.
  lowered = nxt < x - 1e-5
  if lowered.any():
    level = nxt[lowered]
    assert np.ptp(level) <= 1e-3 * max(1.0, x.max())
    assert np.all(x[~lowered] <= level.max() + 1e-3)


def test_waterfill_known_case():
  x = jnp.array([10.0, 1.0, 6.0, 2.0])
  # Budget 6: lower 10 -> 6 (4), then 10 and 6 together by 1 each -> level 5.
  np.testing.assert_allclose(stepping.waterfill(x, 6.0), [5.0, 1.0, 5.0, 2.0], atol=1e-6)
  np.testing.assert_allclose(stepping.waterfill(x, 0.0), x)
  np.testing.assert_allclose(stepping.waterfill(x, 100.0), 0.0)


def path(tau0, num_steps, **kw):
  return np.asarray(stepping.tau_trajectory(jnp.asarray(tau0, jnp.float32), stepping.Stepping(**kw), SCH, num_steps))


@pytest.mark.parametrize("rule", stepping.RULES)
@pytest.mark.parametrize("domain", stepping.DOMAINS)
def test_paths_monotone_and_end_at_zero(rule, domain):
  tau0 = np.random.default_rng(1).uniform(0, T, (4, 6))
  p = path(tau0, num_steps=10, rule=rule, domain=domain, mix=0.5)
  assert p.shape == (11, 4, 6)
  np.testing.assert_allclose(p[0], tau0, rtol=1e-6)
  assert np.all(p[-1] == 0)
  assert np.all(np.diff(p, axis=0) <= 1e-4)


def test_uniform_is_linear_in_tau():
  tau0 = np.random.default_rng(2).uniform(0, T, (8,))
  p = path(tau0, num_steps=5, rule="uniform")
  expect = tau0[None] * (1 - np.arange(6)[:, None] / 5)
  np.testing.assert_allclose(p, expect, atol=1e-4)


def test_waterfilling_path_budget_and_levels():
  tau0 = np.array([80.0, 10.0, 50.0, 20.0], np.float32)
  n = 8
  p = path(tau0, num_steps=n, rule="waterfilling")
  budget = tau0.sum() / n
  np.testing.assert_allclose(-np.diff(p, axis=0).sum(1), budget, rtol=1e-5)
  # Least reliable first: the best element (tau 10) is untouched until the
  # level has come down to it.
  level_reached = p.max(axis=1)
  untouched = level_reached > 10.0 + 1e-4
  np.testing.assert_allclose(p[untouched, 1], 10.0)


def test_hybrid_interpolates_rules():
  tau0 = np.random.default_rng(3).uniform(0, T, (10,))
  kw = dict(num_steps=6)
  np.testing.assert_allclose(path(tau0, rule="hybrid", mix=1.0, **kw), path(tau0, rule="uniform", **kw), atol=1e-5)
  np.testing.assert_allclose(path(tau0, rule="hybrid", mix=0.0, **kw), path(tau0, rule="waterfilling", **kw), atol=1e-5)


def test_alpha_domain_steps_uniformly_in_alpha():
  tau0 = np.array([70.0, 30.0, 5.0], np.float32)
  p = path(tau0, num_steps=4, rule="uniform", domain="alpha")
  u = 1 - np.asarray(schedules.gamma(jnp.asarray(p), SCH))
  np.testing.assert_allclose(u, u[0][None] * (1 - np.arange(5)[:, None] / 4), atol=2e-5)


def test_stepping_under_vmap_and_jit():
  tau0 = jnp.asarray(np.random.default_rng(4).uniform(0, T, (3, 5, 7)), jnp.float32)
  f = jax.jit(jax.vmap(functools.partial(stepping.tau_trajectory, stepping=stepping.Stepping(), schedule=SCH, num_steps=5)))
  out = f(tau0)
  assert out.shape == (3, 6, 5, 7)
  np.testing.assert_allclose(out[1], path(np.asarray(tau0[1]), num_steps=5), atol=1e-5)


@pytest.mark.parametrize("kw, match", [
    (dict(rule="zigzag"), "stepping rule='zigzag' is not supported"),
    (dict(domain="beta"), "stepping domain"),
    (dict(rule="hybrid", mix=1.5), r"mix \(the epsilon of eq. 13\)"),
])
def test_bad_stepping_values(kw, match):
  with pytest.raises(ValueError, match=match):
    stepping.Stepping(**kw)


@pytest.mark.parametrize("spec, expect", [
    ("tau-waterfilling", stepping.Stepping()),
    ("alpha-uniform", stepping.Stepping("uniform", "alpha")),
    ("tau-hybrid0.3", stepping.Stepping("hybrid", "tau", 0.3)),
    ("alpha-hybrid", stepping.Stepping("hybrid", "alpha", 0.5)),
])
def test_stepping_parse_round_trip(spec, expect):
  # mix matters for hybrid only, so equivalent rules are one value (and one compiled program).
  assert stepping.Stepping("uniform", mix=0.3) == stepping.Stepping("uniform")
  assert stepping.Stepping.parse(spec) == expect
  assert stepping.Stepping.parse(str(expect)) == expect


@pytest.mark.parametrize("spec", ["waterfilling", "tau-zigzag", "beta-uniform", "tau-hybrid1.5", "tau-hybridx"])
def test_stepping_parse_bad_spec(spec):
  with pytest.raises(ValueError, match="must be DOMAIN-RULE"):
    stepping.Stepping.parse(spec)


def test_bad_trajectory_arguments():
  with pytest.raises(ValueError, match="num_steps"):
    stepping.tau_trajectory(jnp.ones(3), stepping.Stepping(), SCH, 0)
  with pytest.raises(TypeError, match="GammaSchedule"):
    stepping.tau_trajectory(jnp.ones(3), stepping.Stepping(), 100, 3)
  with pytest.raises(TypeError, match="Stepping"):
    stepping.tau_trajectory(jnp.ones(3), "tau-waterfilling", SCH, 3)


def test_tau0_out_of_range():
  with pytest.raises(ValueError, match=r"tau0 must lie in \[0.0, 100\]"):
    stepping.tau_trajectory(jnp.array([150.0]), stepping.Stepping(), SCH, 3)


@pytest.mark.parametrize("domain", ["tau", "alpha"])
def test_waterfilling_path_sorted_once_equals_step_by_step(domain):
  # tau_trajectory sorts tau0 once and keeps the order; next_tau sorts at every step.
  tau0 = jax.random.uniform(jax.random.PRNGKey(3), (6, 10), maxval=T)
  n = 7
  wf = stepping.Stepping("waterfilling", domain)
  p = stepping.tau_trajectory(tau0, wf, SCH, n)
  tau = tau0
  for k in range(n):
    tau = stepping.next_tau(tau, tau0, jnp.asarray(k), wf, SCH, n)
    # float32 times of size <= T = 100: 1e-4 is a few ulps of T plus Newton's tolerance in the alpha domain.
    np.testing.assert_allclose(np.asarray(p[k + 1]), np.asarray(tau), atol=1e-4)
