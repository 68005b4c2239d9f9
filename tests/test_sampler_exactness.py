"""Every reverse-step kind of both diffusion families against an exact Gaussian-mixture posterior.

One observation of a 4-dimensional complex GMM channel, ``y = M h + CN(0, I)`` with element-wise reliabilities
``M = diag(0, 0.7, 2, 6)`` (unobserved to clean). Its posterior ``p(h | y)`` is again a GMM (:func:`oracle.posterior`),
so each sampler, driven by the exact denoiser, either draws from it or does not, and the 5-sigma moment test of
``conftest.complex_moment_zscores`` tells which from 3,000 draws (false alarm below 1e-4 over its 36 statistics).

* Non-identical diffusion (:func:`jaxchan.noniden.generate`): the observation becomes the element-wise start
  ``(g0, tau0)`` (:func:`noniden.initial_state`) and the denoiser is the prior's exact ``E[h | g]``; every draw
  starts from the same ``g0``, so only the stochastic steps can be posterior samplers.
* Standard diffusion (:func:`jaxchan.ddpm_solvers.sample`, the perception DM's sampler): the exact ``eps`` of the
  posterior GMM itself, from ``x_T ~ CN(0, I)``, so deterministic solvers sample it too.

Cases marked ``False`` are not posterior samplers at that setting, and the test asserts that the check rejects them:
the paper's eq. (9) as printed, deterministic steps from one start, and ancestral sampling at 10 steps (its
``O(1/N)`` bias: the test has the power to see a bias, not only a collapse).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import complex_moment_zscores

from jaxchan import conventions, gaussian_prior, noniden, oracle, schedules
from jaxchan.ddpm_solvers import Solver, sample

N = 3000
RELIABILITY = jnp.array([0.0, 0.7, 2.0, 6.0])
GAMMA = schedules.GammaSchedule(100, 0.2)
COSINE = schedules.cosine_schedule(1000)    # the perception DM's T (at T = 100 the full chain itself
                                            # undershoots this posterior's variance by up to 18 %)

CASES = [
    # family, sampler, steps, draws from the posterior
    ("non-identical", "eta:1.0", 400, True),        # the default: ancestral per element
    ("non-identical", "dpm2m:1.0", 50, True),       # element-wise DPM-Solver++(2M) SDE
    ("non-identical", "eta:1.0", 10, False),        # ancestral's O(1/N) bias
    ("non-identical", "eq9:0.4", 50, False),        # the paper's eq. (9) as printed, at the paper's N_G
    ("non-identical", "eta:0.0", 50, False),        # deterministic eq. (8): one point per start, at any N_G
    ("non-identical", "dpm2m:0.0", 50, False),      # probability-flow ODE: one point per start, at any N_G
    ("standard", "ancestral", 1000, True),          # DDPM's full chain
    ("standard", "ddim", 250, True),                # DDIM (eta = 0) from random x_T (z = 5.5 at 100)
    ("standard", "dpm2m", 50, True),                # DPM-Solver++(2M), the ODE
    ("standard", "dpm2m_sde", 50, True),            # DPM-Solver++(2M) SDE
    ("standard", "ancestral", 10, False),           # respaced to 10 steps: its bias
]


@functools.lru_cache(maxsize=None)
def _problem(components: int = 3, seed: int = 0, obs_seed: int = 21):
  prior = oracle.random_mixture(jax.random.PRNGKey(seed), 4, num_components=components)
  k_h, k_n = jax.random.split(jax.random.PRNGKey(obs_seed))
  h = oracle.sample(prior, k_h, 1)[0]
  y = RELIABILITY * h + conventions.standard_normal(k_n, h.shape, h.dtype)
  post = oracle.posterior(prior, y, jnp.diag(RELIABILITY), jnp.eye(4))
  return prior, y, post


def _noniden(spec, steps):
  prior, y, _ = _problem()
  g0, tau0 = noniden.initial_state(y, RELIABILITY, GAMMA)
  start = noniden.Start(jnp.broadcast_to(g0, (N, 4)), jnp.broadcast_to(tau0, (N, 4)))
  gen = noniden.make_generator(oracle.denoiser(prior, GAMMA), GAMMA, sampler=noniden.Sampler.parse(spec),
                               num_steps=steps)
  return gen(start, jax.random.PRNGKey(5))


def _standard(spec, steps):
  _, _, post = _problem()
  solver = Solver.parse(f"{spec}:{steps}")
  x = conventions.standard_normal(jax.random.PRNGKey(4), (N, 4), jnp.complex64)
  return jax.jit(functools.partial(sample, oracle.ddpm_eps(post, COSINE), schedule=COSINE, solver=solver))(
      x, jax.random.PRNGKey(5))


@pytest.mark.slow
@pytest.mark.parametrize("family, spec, steps, exact", CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES])
def test_every_sampler_kind_against_the_exact_gmm_posterior(family, spec, steps, exact):
  draws = (_noniden if family == "non-identical" else _standard)(spec, steps)
  mean, cov = oracle.moments(_problem()[2])
  with np.errstate(divide="ignore", invalid="ignore"):       # a collapsed sampler has zero spread
    z = complex_moment_zscores(np.asarray(draws), mean, cov)
  assert (z < 5.0) == exact, (family, spec, steps, z)


# The anchored sampler on a Gaussian prior, where the anchor's posterior covariance is the true one: the eta step
# with the clean estimate drawn from CN(D, Cov[h | g]) is then the exact reverse transition at any step size, so
# even one step from the observation must pass; ancestral sampling at the same 10 steps must not (its bias, the
# contrast that shows the test's power on this problem).
GAUSS_CASES = [("eta+cov:1.0", 1, True), ("eta+cov:1.0", 3, True), ("eta+cov:1.0", 10, True),
               ("eta:1.0", 10, False)]


@functools.lru_cache(maxsize=None)
def _gaussian_problem():
  prior, y, post = _problem(components=1, seed=3, obs_seed=22)
  vals, vecs = jnp.linalg.eigh(prior.covs[0])
  # The same Gaussian as the anchor's low-rank structure (full rank; the diagonal rest 1e-7, below float32's
  # resolution of the unit-power covariance).
  anchor = gaussian_prior.LowRankGaussian(prior.means[0].reshape(1, 4), vecs.astype(jnp.complex64),
                                          vals.astype(jnp.float32), jnp.full((1, 4), 1e-7, jnp.float32))
  return prior, y, post, anchor


@pytest.mark.slow
@pytest.mark.parametrize("spec, steps, exact", GAUSS_CASES, ids=["eta+cov-1", "eta+cov-3", "eta+cov-10", "eta-10"])
def test_the_anchored_sampler_is_exact_at_any_step_count_under_a_gaussian_prior(spec, steps, exact):
  prior, y, post, anchor = _gaussian_problem()

  def residual(g, tau, key):
    alpha, beta = schedules.alpha_beta(tau.reshape(-1, 1, 4), GAMMA)
    return gaussian_prior.posterior_residual(anchor, key, alpha, beta).reshape(g.shape)

  g0, tau0 = noniden.initial_state(y, RELIABILITY, GAMMA)
  start = noniden.Start(jnp.broadcast_to(g0, (N, 4)), jnp.broadcast_to(tau0, (N, 4)))
  gen = noniden.make_generator(oracle.denoiser(prior, GAMMA), GAMMA, sampler=noniden.Sampler.parse(spec),
                               num_steps=steps, residual=residual)
  mean, cov = oracle.moments(post)
  z = complex_moment_zscores(np.asarray(gen(start, jax.random.PRNGKey(5))), mean, cov)
  assert (z < 5.0) == exact, (spec, steps, z)


def test_the_anchored_sampler_needs_a_residual():
  with pytest.raises(ValueError, match="draws the clean estimate with a posterior residual, and none was given"):
    noniden.make_generator(lambda g, tau: g, GAMMA, sampler=noniden.Sampler.parse("eta+cov:1.0"), num_steps=4)
