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
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve

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
