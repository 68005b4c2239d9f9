"""Riemannian conjugate gradient on the complex Stiefel manifold, for the capacity objective (27).

The perception-distortion paper (Sec. VI) maximizes the Monte-Carlo capacity

  (27)  ``f(W_k) = (1/K) sum_j log2 det(I + (rho / N_s) H_kj W_k W_k^H H_kj^H)``

over ``W_k`` with ``W_k^H W_k = I`` (the complex Stiefel manifold), but uses
the closed-form energy surrogate (28) instead. This module solves (27) itself,
so that the SE the surrogate gives up can be measured.

Geometry (Absil, Mahony & Sepulchre 2008, ch. 3-4), with the real inner product
``<A, B> = Re tr(A^H B)``:

* Euclidean gradient ``G = df/dRe(W) + i df/dIm(W)`` (steepest ascent for a
  real function of a complex matrix);
* Riemannian gradient = tangent projection ``P_W(G) = G - W sym(W^H G)``,
  ``sym(A) = (A + A^H)/2``;
* retraction: the Q factor of ``W + V`` with the phases of ``diag(R)`` removed;
* vector transport: tangent projection at the new point;
* Polak-Ribiere+ directions with a restart when a direction stops ascending,
  and an Armijo backtracking line search evaluated on a fixed grid of step
  sizes at once (so a whole batch of problems runs in one jitted loop).

Starting from the eigenvector solution of (28), the iterates never decrease
``f`` (Armijo), so the result measures exactly what optimizing (27) adds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxchan import checks
from jaxchan.precoding import _freq_first, _freq_last


def _herm(A):
  return jnp.conj(jnp.swapaxes(A, -1, -2))


def _inner(A, B):
  """``Re tr(A^H B)`` over the last two axes."""
  return jnp.sum(jnp.real(jnp.conj(A) * B), axis=(-2, -1))


def project(W: jax.Array, V: jax.Array) -> jax.Array:
  """Orthogonal projection of ``V`` onto the tangent space at ``W`` (``[..., n, p]``)."""
  S = _herm(W) @ V
  return V - W @ (0.5 * (S + _herm(S)))


def retract(W: jax.Array, V: jax.Array) -> jax.Array:
  """QR retraction ``qf(W + V)`` with a real positive ``diag(R)``."""
  Q, R = jnp.linalg.qr(W + V)
  d = jnp.diagonal(R, axis1=-2, axis2=-1)
  phase = jnp.where(jnp.abs(d) > 0, d / jnp.where(jnp.abs(d) > 0, jnp.abs(d), 1.0), 1.0)
  return Q * phase[..., None, :]


def mc_capacity(W: jax.Array, H: jax.Array, snr) -> jax.Array:
  """Objective (27) per problem.

  Args:
    W: ``[..., n_bs, n_s]`` precoders (one problem per leading index).
    H: ``[K, ..., n_ue, n_bs]`` channel samples for each problem.
    snr: linear ``rho``, scalar or ``[...]``.

  Returns:
    ``[...]`` mean over the K samples of ``log2 det(I + rho/N_s (H W)^H H W)``.
  """
  n_s = W.shape[-1]
  M = H @ W                                                             # [K, ..., n_ue, n_s]
  A = jnp.eye(n_s, dtype=M.dtype) + (jnp.asarray(snr)[..., None, None] / n_s).astype(M.dtype) * (_herm(M) @ M)
  L = jnp.linalg.cholesky(0.5 * (A + _herm(A)))
  logdet = 2.0 * jnp.sum(jnp.log(jnp.real(jnp.diagonal(L, axis1=-2, axis2=-1))), axis=-1)
  return jnp.mean(logdet, axis=0) / jnp.log(2.0)


def conjugate_gradient(f, W0: jax.Array, *, num_iters: int = 50, num_trials: int = 12, armijo: float = 1e-4):
  """Maximize ``f`` over the complex Stiefel manifold, one problem per leading index.

  Args:
    f: ``W [..., n, p] -> [...]`` objective, independent across the leading axes.
    W0: ``[..., n, p]`` starting points with orthonormal columns.
    num_iters: CG iterations (a ``lax.fori_loop``).
    num_trials: step sizes tried per iteration, ``0.5^m / ||d||`` for ``m < num_trials``.
    armijo: sufficient-increase constant.

  Returns:
    ``(W, f(W))``; ``f`` is non-decreasing along the iterations.
  """
  checks.positive_int("num_iters", num_iters)
  checks.positive_int("num_trials", num_trials)

  def f_and_egrad(W):
    def total(a, b):
      v = f(jax.lax.complex(a, b))
      return jnp.sum(v), v
    (_, fW), (g_re, g_im) = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(W.real, W.imag)
    return fW, jax.lax.complex(g_re, g_im).astype(W.dtype)

  def egrad(W):
    return f_and_egrad(W)[1]

  scales = 0.5 ** jnp.arange(num_trials, dtype=W0.real.dtype)

  def body(_, carry):
    W, fW, g, d = carry
    slope = _inner(g, d)
    restart = slope <= 0
    d = jnp.where(restart[..., None, None], g, d)
    slope = jnp.where(restart, _inner(g, g), slope)
    norm = jnp.sqrt(jnp.maximum(_inner(d, d), 1e-30))
    steps = scales.reshape((-1,) + (1,) * norm.ndim) / norm[None]                               # [m, ...]
    cand = retract(W[None], steps.reshape(steps.shape + (1, 1)).astype(W.dtype) * d[None])
    f_c = jax.vmap(f)(cand)                                              # [m, ...]
    ok = f_c >= fW[None] + armijo * steps * slope[None]
    first = jnp.argmax(ok, axis=0)
    accept = jnp.any(ok, axis=0)
    W_new = jnp.where(accept[..., None, None], jnp.take_along_axis(cand, first[None, ..., None, None], 0)[0], W)
    f_new = jnp.where(accept, jnp.take_along_axis(f_c, first[None], 0)[0], fW)
    g_new = project(W_new, egrad(W_new))
    g_old = project(W_new, g)
    beta = jnp.maximum(0.0, _inner(g_new, g_new - g_old) / jnp.maximum(_inner(g, g), 1e-30))
    d_new = g_new + beta[..., None, None] * project(W_new, d)
    return W_new, f_new, g_new, d_new

  # f and its gradient from one forward pass: two independent evaluations of an f with a decomposition (eq. 25's
  # Cholesky) in one program can stall XLA:CPU (jaxchan.staged_precoding says why).
  f0, e0 = f_and_egrad(W0)
  g0 = project(W0, e0)
  W, fW, _, _ = jax.lax.fori_loop(0, num_iters, body, (W0, f0, g0, g0))
  return W, fW


def capacity_precoder(H_samples: jax.Array, W0: jax.Array, snr, *, num_iters: int = 50, num_trials: int = 12):
  """Solve (27) per sample and subcarrier by Riemannian CG, started from ``W0``.

  Args:
    H_samples: ``[K, ..., n_ue, n_bs, n_freq]`` posterior samples.
    W0: ``[..., n_bs, n_s, n_freq]`` start (e.g. the eq. (28) eigenvector precoder).
    snr: linear DL SNR ``rho``, scalar or ``[...]`` (the batch shape).

  Returns:
    ``W``: ``[..., n_bs, n_s, n_freq]``.
  """
  checks.min_ndim("H_samples", H_samples, 4, "[K, ..., n_ue, n_bs, n_freq]")
  if H_samples.shape[1:-3] != W0.shape[:-3] or H_samples.shape[-2] != W0.shape[-3]:
    raise ValueError(f"H_samples {tuple(H_samples.shape)} ([K, ..., n_ue, n_bs, n_freq]) and W0 "
                     f"{tuple(W0.shape)} ([..., n_bs, n_s, n_freq]) disagree.")
  Hf = _freq_first(H_samples)                                          # [K, ..., F, n_ue, n_bs]
  snr = jnp.asarray(snr, jnp.float32)
  snr_f = jnp.broadcast_to(snr.reshape(snr.shape + (1,)) if snr.ndim else snr, Hf.shape[1:-2])
  W, _ = conjugate_gradient(lambda W: mc_capacity(W, Hf, snr_f), _freq_first(W0), num_iters=num_iters,
                            num_trials=num_trials)
  return _freq_last(W)
