"""Which eta samples the posterior? The eta family from one observation, with the exact GMM denoiser.

  python examples/eta_posterior_check.py

One observation ``H_bar = M o H + CN(0, I)`` of a 4-element GMM channel, started by the default
(variance-consistent) start and sampled 3,000 times per eta; prints the ratio of the samples' variance to
the exact posterior variance (1 is right; tests/test_noniden.py checks every moment for the default).
Only eta = 1 (ancestral) converges to the posterior; smaller eta pulls the samples toward the conditional mean.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxchan import conventions, noniden, oracle, schedules

SCH, DIM, N = schedules.GammaSchedule(100), 4, 3000


def main():
  gmm = oracle.random_mixture(jax.random.PRNGKey(0), DIM, 3)
  m = jnp.array([0.0, 0.7, 2.0, 6.0])
  k_h, k_n, k_run = jax.random.split(jax.random.PRNGKey(21), 3)
  h = oracle.sample(gmm, k_h, 1)[0]
  h_bar = m * h + conventions.standard_normal(k_n, h.shape, h.dtype)
  g0, tau0 = noniden.initial_state(h_bar, m, SCH)
  post_cov = np.asarray(oracle.moments(oracle.posterior(gmm, h_bar, jnp.diag(m), jnp.eye(DIM)))[1])
  D = oracle.denoiser(gmm, SCH)
  G0, TAU = jnp.broadcast_to(g0, (N, DIM)), jnp.broadcast_to(tau0, (N, DIM))
  for eta in (0.2, 0.4, 0.6, 1.0):
    for steps in (50, 400):
      gen = noniden.make_generator(D, SCH, sampler=noniden.Sampler("eta", eta), num_steps=steps)
      out = np.asarray(gen((G0, TAU), k_run))
      ratio = np.trace(np.cov(out.T)).real / np.trace(post_cov).real
      print(f"eta {eta:.1f}, N_G {steps:3d}: sample / posterior variance {ratio:.3f}")


if __name__ == "__main__":
  main()
