"""LMMSE channel estimation with a sample covariance: the classical baseline.

For the observation of eq. (14), ``H_bar = M o H + n``, ``n ~ CN(0, I)``, and a
prior with mean ``mu`` and covariance ``C`` (of ``vec(H)``, ``d = N_a N_c``),
the linear MMSE estimate is

``H_hat = mu + C A^H (A C A^H + I)^-1 (H_bar - A mu)``,  ``A = diag(vec(M))``.

It is exact (the CME) for a Gaussian prior and the best linear estimator
otherwise; :mod:`jaxchan.oracle` gives the same formula for a one-component
mixture. Each sample has its own ``M``, hence its own ``d x d`` Cholesky
factorization (``d^3 / 3`` complex multiply-adds); samples are processed in
chunks to bound memory.

:func:`velocity_error` applies the same algebra to the training objective: the
loss of eq. (12) that a Gaussian model with the same covariance reaches, the
bound the experiment reports beside each training loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve, solve_triangular

from jaxchan import checks


def sample_moments(h: jax.Array):
  """Mean ``[d]`` and covariance ``[d, d]`` of flattened samples ``h`` ``[N, *event]``."""
  x = h.reshape(h.shape[0], -1).astype(jnp.complex64)
  mu = x.mean(0)
  xc = x - mu
  return mu, (xc.T @ xc.conj()) / x.shape[0]


def estimate(h_bar: jax.Array, m: jax.Array, mu: jax.Array, cov: jax.Array, *, chunk: int = 8) -> jax.Array:
  """LMMSE estimates ``[B, *event]`` from observations ``h_bar`` and reliability maps ``m`` (eq. 14)."""
  checks.same_shape("h_bar", h_bar, "m", m)
  B = h_bar.shape[0]
  d = cov.shape[0]
  if h_bar[0].size != d:
    raise ValueError(f"each observation has {h_bar[0].size} elements but the covariance is {cov.shape}.")
  y = h_bar.reshape(B, d)
  a = m.reshape(B, d).astype(cov.dtype)

  def one(args):
    yi, ai = args
    S = (ai[:, None] * cov * ai.conj()[None, :]) + jnp.eye(d, dtype=cov.dtype)
    L = jnp.linalg.cholesky(S)
    r = yi - ai * mu
    return mu + (cov * ai.conj()[None, :]) @ cho_solve((L, True), r)

  out = jax.lax.map(one, (y, a), batch_size=chunk)
  return out.reshape(h_bar.shape)


def velocity_error(cov: jax.Array, alpha: jax.Array, beta: jax.Array, *, chunk: int = 4) -> jax.Array:
  """Per-element MSE of the linear MMSE velocity estimate: a Gaussian bound on the loss of eq. (12).

  For ``g = alpha o h + beta o xi`` and the velocity target ``v = alpha o xi - beta o h``
  (Algorithm 1), with ``h`` of covariance ``C`` and ``xi ~ CN(0, I)`` (diagonal
  ``A = diag(alpha)``, ``B = diag(beta)``):

  ``C_gg = A C A + B^2``, ``C_vg = A B - B C A``, ``C_vv = A^2 + B C B``, and the
  best linear estimate of ``v`` from ``g`` misses by
  ``tr(C_vv - C_vg C_gg^-1 C_vg^H) / d`` per element. This is the exact
  (conditional-mean) loss when ``h`` is Gaussian; a network that cannot get
  below it on real data has not learned even the second-order statistics. A
  white prior (``C = I``) gives exactly 1 (``v`` and ``g`` are uncorrelated).

  Args:
    cov: ``[d, d]`` covariance of the (centred) channels, e.g. :func:`sample_moments`.
    alpha, beta: ``[B, *event]`` per-element schedule values of each sample's times.

  Returns:
    ``[B]`` per-element error of each sample.
  """
  checks.same_shape("alpha", alpha, "beta", beta)
  B, d = alpha.shape[0], cov.shape[0]
  if alpha[0].size != d:
    raise ValueError(f"each sample has {alpha[0].size} elements but the covariance is {cov.shape}.")
  a = alpha.reshape(B, d).astype(cov.dtype)
  b = beta.reshape(B, d).astype(cov.dtype)

  def one(args):
    ai, bi = args
    Cgg = ai[:, None] * cov * ai[None, :] + jnp.diag(bi * bi)
    Cvg = jnp.diag(ai * bi) - bi[:, None] * cov * ai[None, :]
    L = jnp.linalg.cholesky(Cgg)
    # tr(C_vg C_gg^-1 C_vg^H) = ||L^-1 C_vg^H||_F^2: one triangular solve, no d x d product.
    W = solve_triangular(L, Cvg.conj().T, lower=True)
    tr_vv = jnp.sum(jnp.abs(ai) ** 2) + jnp.real(jnp.sum(jnp.abs(bi) ** 2 * jnp.diagonal(cov)))
    return (tr_vv - jnp.sum(jnp.abs(W) ** 2)) / d

  return jax.lax.map(one, (a, b), batch_size=chunk)


def velocity_loss(cov: jax.Array, h: jax.Array, alpha: jax.Array, beta: jax.Array, xi: jax.Array) -> jax.Array:
  """The linear MMSE velocity estimator's loss (eq. 12) on given draws: the Gaussian bound, paired.

  :func:`velocity_error` is the population value for one time map; this is the empirical loss on the same
  channels, times and noise a trained model's loss is measured on, so the two can be compared draw by draw
  (their difference has none of the spread between time maps). Zero-mean channels as in :func:`velocity_error`.

  Args:
    cov: ``[d, d]`` channel covariance.
    h: ``[N, *event]`` channels; ``xi``: their noise, the same shape.
    alpha, beta: ``[*event]``, one time map for all ``N`` channels.

  Returns:
    Scalar: ``mean |v_hat - v|^2`` over channels and elements, ``v = alpha xi - beta h`` (Algorithm 1).
  """
  checks.same_shape("alpha", alpha, "beta", beta)
  checks.same_shape("h", h, "xi", xi)
  n, d = h.shape[0], cov.shape[0]
  if alpha.size != d or h[0].size != d:
    raise ValueError(f"alpha has {alpha.size} and each channel {h[0].size} elements but the covariance is "
                     f"{cov.shape}.")
  a, b = alpha.reshape(d).astype(cov.dtype), beta.reshape(d).astype(cov.dtype)
  hf, xf = h.reshape(n, d).astype(cov.dtype), xi.reshape(n, d).astype(cov.dtype)
  g, v = a * hf + b * xf, a * xf - b * hf
  Cgg = a[:, None] * cov * a[None, :] + jnp.diag(b * b)
  Cvg = jnp.diag(a * b) - b[:, None] * cov * a[None, :]
  v_hat = jnp.linalg.solve(Cgg, g.T).T @ Cvg.T          # rows: C_vg C_gg^-1 g (Cgg Hermitian)
  return jnp.mean(jnp.abs(v_hat - v) ** 2)

