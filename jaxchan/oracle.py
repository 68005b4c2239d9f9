"""Analytic oracle: exact Bayes estimators under a complex Gaussian-mixture prior.

With ``h ~ sum_k w_k CN(m_k, C_k)`` (``h`` in ``C^d``) and a linear-Gaussian
observation ``y = A h + n``, ``n ~ CN(0, N)``, every quantity the samplers need
is closed-form:

* ``y | k ~ CN(A m_k, S_k)``, ``S_k = A C_k A^H + N``;
* ``h | y, k ~ CN(mu_k, P_k)``, ``mu_k = m_k + C_k A^H S_k^-1 (y - A m_k)``,
  ``P_k = C_k - C_k A^H S_k^-1 A C_k``;
* ``p(k | y) ∝ w_k CN(y; A m_k, S_k)``, so ``E[h | y] = sum_k p(k|y) mu_k``.

The diffusion observation ``g = alpha o h + beta o xi`` is the case
``A = diag(alpha)``, ``N = diag(beta^2)``, which gives the exact ``D`` of eq. (6)
(:func:`denoiser`) and the exact epsilon of standard diffusion (:func:`ddpm_eps`).
By Theorem 2, a sampler driven by these must reproduce the prior; the tests use
that, and researchers can use it to compare a trained network with the Bayes
optimum. Everything here acts on one observation; batch with ``jax.vmap``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve, solve_triangular

from jaxchan import checks
from jaxchan import conventions
from jaxchan import schedules


class GaussianMixture(NamedTuple):
  """Complex Gaussian mixture ``sum_k w_k CN(m_k, C_k)`` (a pytree).

  Attributes:
    weights: ``[K]``, non-negative, summing to 1.
    means: ``[K, d]`` complex.
    covs: ``[K, d, d]`` complex Hermitian positive definite.
  """
  weights: jax.Array
  means: jax.Array
  covs: jax.Array

  @property
  def dim(self) -> int:
    return self.means.shape[-1]


def random_mixture(key: jax.Array, dim: int, num_components: int = 3, *,
                   mean_scale: float = 1.0, min_eig: float = 0.05) -> GaussianMixture:
  """A random, unit-power complex GMM for tests and studies.

  Components get random means (``CN(0, mean_scale^2)``), random Hermitian
  positive-definite covariances with eigenvalues in ``[min_eig, 1]`` and
  Dirichlet-like weights; the whole mixture is then scaled so that
  ``E|h_i|^2`` averages to 1 (the channel convention).
  """
  dim = checks.positive_int("dim", dim)
  num_components = checks.positive_int("num_components", num_components)
  kw, km, kq, ke = jax.random.split(key, 4)
  weights = jax.random.uniform(kw, (num_components,), minval=0.5, maxval=1.5)
  weights = weights / jnp.sum(weights)
  means = mean_scale * conventions.standard_normal(km, (num_components, dim))
  z = conventions.standard_normal(kq, (num_components, dim, dim))
  q, _ = jnp.linalg.qr(z)
  eig = jax.random.uniform(ke, (num_components, dim), minval=min_eig, maxval=1.0)
  covs = jnp.einsum("kij,kj,klj->kil", q, eig.astype(q.dtype), q.conj())
  covs = 0.5 * (covs + jnp.conj(jnp.swapaxes(covs, -1, -2)))
  gmm = GaussianMixture(weights, means, covs)
  _, second = second_moment(gmm)
  scale = jnp.sqrt(jnp.real(jnp.trace(second)) / dim)
  return GaussianMixture(weights, means / scale, covs / scale**2)


def moments(gmm: GaussianMixture):
  """Mean ``[d]`` and covariance ``E[(h - m)(h - m)^H]`` ``[d, d]`` of the mixture."""
  w = gmm.weights.astype(gmm.means.dtype)
  mean = jnp.einsum("k,kd->d", w, gmm.means)
  centered = gmm.means - mean
  cov = jnp.einsum("k,kij->ij", w, gmm.covs) + jnp.einsum("k,ki,kj->ij", w, centered, centered.conj())
  return mean, cov


def second_moment(gmm: GaussianMixture):
  """Mean ``[d]`` and uncentered second moment ``E[h h^H]`` ``[d, d]``."""
  mean, cov = moments(gmm)
  return mean, cov + jnp.outer(mean, mean.conj())


def sample(gmm: GaussianMixture, key: jax.Array, num: int) -> jax.Array:
  """``num`` draws from the mixture, ``[num, d]``."""
  kc, kz = jax.random.split(key)
  comp = jax.random.categorical(kc, jnp.log(gmm.weights), shape=(num,))
  chol = jnp.linalg.cholesky(gmm.covs)
  z = conventions.standard_normal(kz, (num, gmm.dim), gmm.means.dtype)
  return gmm.means[comp] + jnp.einsum("nij,nj->ni", chol[comp], z)


def _check_linear(gmm, y, A, noise_cov):
  d = gmm.dim
  if A.ndim != 2 or A.shape[1] != d:
    raise ValueError(f"A must be [n, d] with d={d} (the prior's dimension); got shape {A.shape}.")
  n = A.shape[0]
  if y.shape != (n,):
    raise ValueError(f"y must be one observation of shape ({n},) matching A {A.shape}; got {y.shape}. "
                     "Use jax.vmap over a batch.")
  if noise_cov.shape != (n, n):
    raise ValueError(f"noise_cov must be [{n}, {n}] to match A; got {noise_cov.shape}.")


def posterior(gmm: GaussianMixture, y: jax.Array, A: jax.Array, noise_cov: jax.Array):
  """Exact posterior ``p(h | y)`` for ``y = A h + n``, ``n ~ CN(0, noise_cov)``.

  Args:
    gmm: the prior, dimension ``d``.
    y: one observation ``[n]``.
    A: ``[n, d]`` observation matrix.
    noise_cov: ``[n, n]`` Hermitian positive (semi)definite; ``S_k`` must be
      positive definite.

  Returns:
    ``GaussianMixture`` of the posterior: weights ``p(k | y)``, means ``mu_k``,
    covariances ``P_k``.
  """
  _check_linear(gmm, y, A, noise_cov)
  dtype = gmm.means.dtype
  A = A.astype(dtype)
  y = y.astype(dtype)

  def component(m, C):
    AC = A @ C                                   # [n, d]
    S = AC @ A.conj().T + noise_cov.astype(dtype)
    S = 0.5 * (S + S.conj().T)
    L = jnp.linalg.cholesky(S)
    r = y - A @ m
    white = solve_triangular(L, r, lower=True)
    log_lik = (-jnp.real(jnp.vdot(white, white)) - 2.0 * jnp.sum(jnp.log(jnp.abs(jnp.diag(L))))
               - y.shape[0] * jnp.log(jnp.pi))
    X = cho_solve((L, True), AC)                 # S^-1 A C, [n, d]
    mu = m + X.conj().T @ r
    P = C - AC.conj().T @ X
    P = 0.5 * (P + P.conj().T)
    return log_lik, mu, P

  log_lik, mus, Ps = jax.vmap(component)(gmm.means, gmm.covs)
  log_w = jnp.log(gmm.weights) + log_lik
  post_w = jax.nn.softmax(log_w)
  return GaussianMixture(post_w, mus, Ps)


def posterior_mean(gmm: GaussianMixture, y: jax.Array, A: jax.Array, noise_cov: jax.Array) -> jax.Array:
  """Conditional mean ``E[h | y]`` (the CME / MMSE estimate), ``[d]``."""
  post = posterior(gmm, y, A, noise_cov)
  return jnp.einsum("k,kd->d", post.weights.astype(post.means.dtype), post.means)


def posterior_sample(gmm: GaussianMixture, y: jax.Array, A: jax.Array, noise_cov: jax.Array,
                     key: jax.Array, num: int) -> jax.Array:
  """``num`` exact draws from ``p(h | y)``, ``[num, d]``.

  Uses an eigendecomposition square root of each ``P_k`` (eigenvalues clipped
  at 0), so a rank-deficient posterior (an element observed without noise)
  still samples correctly.
  """
  post = posterior(gmm, y, A, noise_cov)
  lam, V = jnp.linalg.eigh(post.covs)
  root = V * jnp.sqrt(jnp.maximum(lam, 0.0))[:, None, :].astype(V.dtype)
  kc, kz = jax.random.split(key)
  comp = jax.random.categorical(kc, jnp.log(jnp.maximum(post.weights, 1e-30)), shape=(num,))
  z = conventions.standard_normal(kz, (num, gmm.dim), gmm.means.dtype)
  return post.means[comp] + jnp.einsum("nij,nj->ni", root[comp], z)


def elementwise_observation(alpha: jax.Array, beta: jax.Array):
  """``(A, N) = (diag(alpha), diag(beta^2))``: the diffusion observation as a linear model."""
  return jnp.diag(alpha), jnp.diag(beta**2)


def denoiser(gmm: GaussianMixture, schedule: schedules.GammaSchedule):
  """The exact non-identical ``D(g, tau) = E[h0 | alpha o h0 + beta o xi = g]`` of eq. (6).

  Returns a batched denoiser ``D(g, tau)`` for ``g, tau`` of shape
  ``[B, *event]`` with ``prod(event) = d``: the drop-in replacement for a
  trained network in :func:`jaxchan.noniden.generate`.
  """

  def one(g, tau):
    alpha, beta = schedules.alpha_beta(tau, schedule)
    A, N = elementwise_observation(alpha, beta)
    return posterior_mean(gmm, g, A, N)

  def D(g, tau):
    checks.same_shape("g", g, "tau", tau)
    flat_g = g.reshape(g.shape[0], -1)
    if flat_g.shape[1] != gmm.dim:
      raise ValueError(f"denoiser input has {flat_g.shape[1]} elements per sample but the GMM has d={gmm.dim}.")
    return jax.vmap(one)(flat_g, tau.reshape(flat_g.shape)).reshape(g.shape)

  return D


def ddpm_eps(gmm: GaussianMixture, schedule: schedules.DDPMSchedule):
  """The exact epsilon-prediction ``eps(x_t, t)`` of standard diffusion under the GMM prior.

  ``eps = (x_t - sqrt(abar_t) E[x0 | x_t]) / sqrt(1 - abar_t)``; ``x``: ``[B, d]``,
  ``t``: scalar integer step in ``1..T``.
  """

  def one(x, abar):
    a = jnp.sqrt(abar) * jnp.ones((gmm.dim,))
    b = jnp.sqrt(1.0 - abar) * jnp.ones((gmm.dim,))
    A, N = elementwise_observation(a, b)
    x0 = posterior_mean(gmm, x, A, N)
    return (x - jnp.sqrt(abar) * x0) / jnp.sqrt(1.0 - abar)

  def eps_fn(x, t):
    abar = schedule.alpha_bars[t]
    return jax.vmap(one, in_axes=(0, None))(x, abar)

  return eps_fn


def expected_gramian(gmm: GaussianMixture, shape: tuple[int, int, int]) -> jax.Array:
  """``E[H_f^H H_f]`` per frequency under a mixture over ``vec(H)``: the K -> infinity Bayesian Gramian.

  With ``H`` of shape ``(n_ue, n_bs, n_freq)`` flattened in that order into ``h``,
  ``G_f[i, j] = sum_u E[conj(H_uif) H_ujf] = sum_u S[(u, j, f), (u, i, f)]`` with the
  second moment ``S = E[h h^H] = Cov + mean mean^H``. Applied to an exact posterior
  (:func:`posterior`) this is the limit of :func:`jaxchan.precoding.gramian` over K
  posterior samples as K grows: the Gramian of the posterior mean plus the posterior
  covariance's share. Its dominant eigenvectors are the exact Bayesian precoder of eq. (28).

  Args:
    gmm: a mixture over ``d = n_ue * n_bs * n_freq`` entries.
    shape: ``(n_ue, n_bs, n_freq)``.

  Returns:
    ``[n_bs, n_bs, n_freq]`` Hermitian positive semidefinite (the layout of :func:`jaxchan.precoding.gramian`).
  """
  n_ue, n_bs, n_freq = shape
  if n_ue * n_bs * n_freq != gmm.dim:
    raise ValueError(f"shape={tuple(shape)} holds {n_ue * n_bs * n_freq} entries but the mixture has dim={gmm.dim}.")
  _, S = second_moment(gmm)
  S6 = S.reshape(n_ue, n_bs, n_freq, n_ue, n_bs, n_freq)
  return jnp.einsum("ujfuif->ijf", S6)


def clustered_mixture(key: jax.Array, shape: tuple[int, int, int], num_components: int = 4, *,
                      paths: int = 2, coherence: float = 0.7) -> GaussianMixture:
  """A zero-mean GMM over ``vec(H)``, ``H`` ``(n_ue, n_bs, n_freq)``, shaped like multi-user MIMO-OFDM channels.

  Each component is one "user cluster": ``C_k = I_ue (x) R_bs,k (x) R_f,k`` with a
  low-rank BS covariance (``paths`` half-wavelength ULA steering vectors at random
  angles, plus 1 % white floor) and an exponential frequency correlation
  ``coherence^|f - f'|`` with a random phase ramp (a random delay). Weights are
  uniform and every element has unit power. A precoder needs to know the cluster
  (the beam); given only a noisy, aged look at the channel the posterior mean
  shrinks toward 0 while the posterior Gramian keeps the beam, which is the Jensen
  gap of the perception-distortion paper in closed form.
  """
  n_ue, n_bs, n_freq = shape
  ka, kd = jax.random.split(key)
  angles = jax.random.uniform(ka, (num_components, paths), minval=-jnp.pi / 3, maxval=jnp.pi / 3)
  steer = jnp.exp(1j * jnp.pi * jnp.arange(n_bs)[None, None, :] * jnp.sin(angles)[..., None])   # [K, P, n_bs]
  R_bs = jnp.einsum("kpi,kpj->kij", steer, steer.conj()) / paths + 0.01 * jnp.eye(n_bs)
  R_bs = R_bs / (jnp.trace(R_bs, axis1=1, axis2=2).real / n_bs)[:, None, None]
  delay = jax.random.uniform(kd, (num_components,), minval=0.0, maxval=2 * jnp.pi)
  f = jnp.arange(n_freq)
  R_f = coherence ** jnp.abs(f[:, None] - f[None, :]) * jnp.exp(1j * delay[:, None, None] * (f[:, None] - f[None, :]))
  covs = jnp.einsum("ab,kij,kfg->kaifbjg", jnp.eye(n_ue), R_bs, R_f).reshape(num_components, n_ue * n_bs * n_freq,
                                                                            n_ue * n_bs * n_freq)
  covs = 0.5 * (covs + jnp.conj(jnp.swapaxes(covs, -1, -2)))
  d = n_ue * n_bs * n_freq
  return GaussianMixture(jnp.full((num_components,), 1.0 / num_components), jnp.zeros((num_components, d), covs.dtype),
                         covs.astype(jnp.complex64))
