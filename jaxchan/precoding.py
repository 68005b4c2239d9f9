"""Downlink precoding: SVD precoder, Bayesian precoder and spectral efficiency.

Shapes follow :mod:`jaxchan.conventions`: channels ``[..., n_ue, n_bs, n_freq]``,
precoders ``[..., n_bs, n_streams, n_freq]`` with orthonormal columns per
subcarrier. Every function is batched over the leading axes and over
subcarriers (the linear algebra runs on ``[..., n_freq, ., .]`` stacks).

Equations (perception-distortion paper, ``../shared/papers/NOTES.md``):

* (25) ``SE = mean_k log2 det(I + (rho / N_s) H_k W_k W_k^H H_k^H)``, equal power
  per layer.
* (28)/App. C: the Bayesian precoder maximizes ``E ||H_k W_k||_F^2``; its columns
  are the ``N_s`` dominant eigenvectors of ``G_k = (1/K) sum_j H_kj^H H_kj``.
  With ``K = 1`` this is the SVD precoder of that single channel.

Classical precoders that need no learning, the baselines a reviewer asks for: a
wideband precoder from a sample covariance (:func:`wideband_precoder` of
:func:`jaxchan.srs.history_gramian`), the eigenvectors of the training set's
average Gramian (:func:`average_gramian`; no observation at all), and
Haar-uniform precoders (:func:`random_precoder`; zero information).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxchan import checks


def _freq_first(x):
  """``[..., a, b, n_freq] -> [..., n_freq, a, b]``."""
  return jnp.moveaxis(x, -1, -3)


def _freq_last(x):
  """``[..., n_freq, a, b] -> [..., a, b, n_freq]``."""
  return jnp.moveaxis(x, -3, -1)


def _check_channel(name, H, n_streams):
  checks.min_ndim(name, H, 3, "[..., n_ue, n_bs, n_freq]")
  n_ue, n_bs = H.shape[-3], H.shape[-2]
  checks.positive_int("n_streams", n_streams)
  if n_streams > min(n_ue, n_bs):
    raise ValueError(f"n_streams={n_streams} exceeds the channel rank dimension min(n_ue, n_bs) = "
                     f"{min(n_ue, n_bs)} for {name} of shape {tuple(H.shape)} "
                     "(layout [..., n_ue, n_bs, n_freq]); use n_streams <= n_ue.")


def svd_precoder(H: jax.Array, n_streams: int) -> jax.Array:
  """Top ``n_streams`` right singular vectors of each ``H_k``.

  Args:
    H: ``[..., n_ue, n_bs, n_freq]`` complex.
    n_streams: ``N_s <= min(n_ue, n_bs)``.

  Returns:
    ``W``: ``[..., n_bs, n_streams, n_freq]``.
  """
  _check_channel("H", H, n_streams)
  _, _, vh = jnp.linalg.svd(_freq_first(H), full_matrices=False)  # [..., F, r, n_bs]
  W = jnp.conj(jnp.swapaxes(vh[..., :n_streams, :], -1, -2))        # [..., F, n_bs, N_s]
  return _freq_last(W)


def gramian(H_samples: jax.Array) -> jax.Array:
  """Expected Gramian ``G_k = (1/K) sum_j H_kj^H H_kj`` over the leading sample axis.

  Args:
    H_samples: ``[K, ..., n_ue, n_bs, n_freq]`` (e.g. K posterior draws).

  Returns:
    ``[..., n_bs, n_bs, n_freq]`` Hermitian positive semidefinite.
  """
  checks.min_ndim("H_samples", H_samples, 4, "[K, ..., n_ue, n_bs, n_freq]")
  Hf = _freq_first(H_samples)  # [K, ..., F, n_ue, n_bs]
  G = jnp.einsum("k...ui,k...uj->...ij", jnp.conj(Hf), Hf) / H_samples.shape[0]
  return _freq_last(G)


def precoder_from_gramian(G: jax.Array, n_streams: int) -> jax.Array:
  """The ``n_streams`` dominant eigenvectors of each ``G_k``, eq. (28).

  Args:
    G: ``[..., n_bs, n_bs, n_freq]`` Hermitian.
    n_streams: ``N_s <= n_bs``.

  Returns:
    ``W``: ``[..., n_bs, n_streams, n_freq]``, columns in decreasing eigenvalue order.
  """
  checks.min_ndim("G", G, 3, "[..., n_bs, n_bs, n_freq]")
  if G.shape[-3] != G.shape[-2]:
    raise ValueError(f"G must be square per subcarrier, [..., n_bs, n_bs, n_freq]; got {tuple(G.shape)}.")
  checks.positive_int("n_streams", n_streams)
  if n_streams > G.shape[-2]:
    raise ValueError(f"n_streams={n_streams} exceeds n_bs={G.shape[-2]}.")
  _, vecs = jnp.linalg.eigh(_freq_first(G))  # ascending eigenvalues
  W = vecs[..., ::-1][..., :n_streams]
  return _freq_last(W)


def _orthonormalize(X: jax.Array) -> jax.Array:
  """Columns of ``X`` ``[..., n, p]`` made orthonormal by modified Gram-Schmidt, twice ("twice is enough" in
  float32); elementwise ops only, so a batch of small blocks fuses instead of calling LAPACK per matrix."""
  cols = []
  for j in range(X.shape[-1]):
    v = X[..., j]
    for _ in range(2):
      for q in cols:
        v = v - q * jnp.sum(jnp.conj(q) * v, axis=-1, keepdims=True)
    v = v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), 1e-30)
    cols.append(v)
  return jnp.stack(cols, axis=-1)


def subspace_precoder(G: jax.Array, n_streams: int, *, block: int | None = None, tol: float = 1e-7,
                      max_iters: int = 100, chunk: int = 256) -> jax.Array:
  """Eq. (28)'s precoder without a full eigendecomposition: block power (subspace) iteration with Rayleigh-Ritz.

  Only the ``N_s`` dominant eigenvectors of each Gramian are needed. A block of ``p = block`` vectors (default
  ``min(n_bs, N_s + 2)``) is multiplied by ``G`` and re-orthonormalized (Gram-Schmidt, i.e. a QR); after every
  step a Rayleigh-Ritz step (the ``p x p`` projected matrix's eigenvectors) picks the best ``N_s``-dimensional
  subspace of the block, and the iteration stops when its residual ``sum ||G w - theta w||^2``, relative to the
  captured energy squared, is below ``tol`` for every Gramian of a chunk (or at ``max_iters``). The residual
  bounds the Ritz values' error, so low-rank Gramians (posterior samples sharing a few beams) stop after one or two
  steps; near-degenerate ``lambda_{N_s} ~ lambda_{N_s + 1}`` keeps the residual up but not the captured-energy
  error, which is what the SE depends on. The result matches :func:`precoder_from_gramian` in SE and captured
  energy, not column by column.
  Gramians are processed ``chunk`` at a time (``lax.map``), so a chunk stays in cache across the iterations and
  a chunk of easy (low-rank) Gramians stops early.

  Args:
    G: ``[..., n_bs, n_bs, n_freq]`` Hermitian positive semidefinite.
    n_streams: ``N_s <= n_bs``.
    block: block size ``p`` in ``[N_s, n_bs]``.
    tol: stopping threshold on the relative Ritz residual (float32 resolves about 1e-7 of the energy).
    max_iters: iteration cap.
    chunk: Gramians per ``lax.map`` step.

  Returns:
    ``W``: ``[..., n_bs, n_streams, n_freq]`` with orthonormal columns (in decreasing Ritz-value order).
  """
  checks.min_ndim("G", G, 3, "[..., n_bs, n_bs, n_freq]")
  n = G.shape[-2]
  if G.shape[-3] != n:
    raise ValueError(f"G must be square per subcarrier, [..., n_bs, n_bs, n_freq]; got {tuple(G.shape)}.")
  checks.positive_int("n_streams", n_streams)
  if n_streams > n:
    raise ValueError(f"n_streams={n_streams} exceeds the Gramian's size n_bs={n}; use N_s <= {n}.")
  p = min(n, n_streams + 2) if block is None else checks.positive_int("block", block)
  if not n_streams <= p <= n:
    raise ValueError(f"block={p} must lie in [n_streams={n_streams}, n_bs={n}].")
  checks.positive_int("max_iters", max_iters)
  checks.positive_int("chunk", chunk)
  # A fixed generic start (complex exponentials with distinct frequencies): overlaps every dominant subspace.
  R = jnp.exp(2j * jnp.pi * ((jnp.arange(n)[:, None] * (jnp.arange(p)[None, :] + 1)) / (n + 1) + 0.1 *
                             jnp.arange(n)[:, None] ** 2 / n)).astype(G.dtype)

  def solve(A):                                                        # [c, n, n] -> [c, n, N_s]
    tr = jnp.real(jnp.trace(A, axis1=-2, axis2=-1))[..., None, None]
    # An all-zero Gramian (no energy) is replaced by I: every orthonormal W is then optimal, and the iteration
    # would otherwise collapse its block to zero vectors.
    A = jnp.where(tr > 0, A / jnp.where(tr > 0, tr, 1.0), jnp.eye(n, dtype=A.dtype))

    def ritz(Q):
      """The best N_s-dimensional subspace of the block (Rayleigh-Ritz) and its relative residual."""
      AQ = A @ Q
      Bm = jnp.conj(jnp.swapaxes(Q, -1, -2)) @ AQ                      # [c, p, p]
      theta, V = jnp.linalg.eigh(0.5 * (Bm + jnp.conj(jnp.swapaxes(Bm, -1, -2))))
      V = V[..., ::-1][..., :n_streams]
      W, AW = Q @ V, AQ @ V
      res = AW - W * theta[..., ::-1][..., None, :n_streams]
      # ||A w - theta w||^2 bounds the Ritz value's error (times 1 / gap); relative to the captured energy.
      r = jnp.sum(jnp.abs(res) ** 2, axis=(-2, -1)) / jnp.maximum(jnp.sum(theta[..., ::-1][..., :n_streams], -1),
                                                                   1e-30) ** 2
      return W, r

    def cond(state):
      i, _, _, r = state
      return (i < max_iters) & (jnp.max(r) > tol)

    def body(state):
      i, Q, _, _ = state
      Q = _orthonormalize(A @ Q)
      W, r = ritz(Q)
      return i + 1, Q, W, r

    Q0 = _orthonormalize(A @ R)
    W0, r0 = ritz(Q0)
    _, _, W, _ = jax.lax.while_loop(cond, body, (jnp.asarray(0), Q0, W0, r0))
    return W

  A = _freq_first(G)                                                   # [..., F, n, n]
  lead = A.shape[:-2]
  flat = A.reshape((-1, n, n))
  m = flat.shape[0]
  c = min(chunk, m)
  pad = (-m) % c
  if pad:   # identity Gramians: converge at once and are dropped
    flat = jnp.concatenate([flat, jnp.broadcast_to(jnp.eye(n, dtype=flat.dtype), (pad, n, n))])
  W = jax.lax.map(solve, flat.reshape((-1, c, n, n))).reshape((-1, n, n_streams))[:m]
  return _freq_last(W.reshape(lead + (n, n_streams)))


def wideband_precoder(G: jax.Array, n_streams: int, n_freq: int) -> jax.Array:
  """One precoder for the whole band: the ``n_streams`` dominant eigenvectors of a wideband Gramian.

  Args:
    G: ``[..., n_bs, n_bs]`` Hermitian (e.g. a sample covariance, :func:`jaxchan.srs.history_gramian`).
    n_streams: ``N_s <= n_bs``.
    n_freq: subcarriers (PRBs) to repeat the precoder over.

  Returns:
    ``W``: ``[..., n_bs, n_streams, n_freq]``, the same columns on every subcarrier.
  """
  checks.min_ndim("G", G, 2, "[..., n_bs, n_bs]")
  W = precoder_from_gramian(G[..., None], n_streams)         # [..., n_bs, n_streams, 1]
  return jnp.broadcast_to(W, W.shape[:-1] + (checks.positive_int("n_freq", n_freq),))


def average_gramian(H: jax.Array) -> jax.Array:
  """Per-subcarrier Gramian averaged over a set of channels, ``mean_b H_bk^H H_bk``; ``[n_bs, n_bs, n_freq]``.

  The "statistics only" precoder (no observation) takes its eigenvectors
  (:func:`precoder_from_gramian`); built from training channels it is what a
  base station knows from long-term averages alone.

  Args:
    H: ``[B, n_ue, n_bs, n_freq]`` channels.
  """
  checks.min_ndim("H", H, 4, "[B, n_ue, n_bs, n_freq]")
  return gramian(H)


@jax.custom_jvp
def _eigh(A: jax.Array):
  """``jnp.linalg.eigh`` of Hermitian ``A`` whose derivative stays finite at repeated eigenvalues.

  The eigenvector derivative ``V (F o V^H dA V)`` has ``F_ij = 1 / (w_j - w_i)``, infinite where two
  eigenvalues coincide (e.g. a latent with an all-zero row, as an untrained Gaussian-anchored E2E model
  has where the history carries no information). The derivative here uses the broadened
  ``F_ij = g / (g^2 + s^2)``, ``g = w_j - w_i``, ``s = 1e-6 max |w|``: equal to the exact one wherever the gap
  exceeds ``s`` by far, 0 (no rotation) inside a degenerate eigenspace, where any rotation is a solution.
  """
  return jnp.linalg.eigh(A)


@_eigh.defjvp
def _eigh_jvp(primals, tangents):
  (A,), (dA,) = primals, tangents
  w, V = jnp.linalg.eigh(A)
  M = jnp.einsum("...ji,...jk,...kl->...il", jnp.conj(V), 0.5 * (dA + jnp.conj(jnp.swapaxes(dA, -1, -2))), V)
  gap = w[..., None, :] - w[..., :, None]
  s = 1e-6 * jnp.max(jnp.abs(w), axis=-1, keepdims=True)[..., None] + 1e-30
  F = gap / (gap ** 2 + s ** 2)
  return (w, V), (jnp.real(jnp.diagonal(M, axis1=-2, axis2=-1)), V @ (F.astype(M.dtype) * M))


def latent_precoder(Z: jax.Array, n_streams: int, *, eps: float = 1e-12) -> jax.Array:
  """Dominant eigenvectors of the Gramian ``Z_k^H Z_k``, differentiable (the E2E baseline's precoder).

  ``Z_k^H Z_k`` (``n_bs x n_bs``) has rank ``<= n_ue``, so its ``n_bs - n_ue``
  zero eigenvalues are degenerate and the eigenvector derivative (which divides
  by eigenvalue gaps) is NaN there. The same dominant eigenvectors come from the
  small Gramian ``Z_k Z_k^H = U diag(lam) U^H``: ``W = Z_k^H U_top lam_top^{-1/2}``,
  whose derivative only involves gaps among the ``n_ue`` nonzero eigenvalues.
  The result equals :func:`precoder_from_gramian` of ``Z^H Z`` up to a phase per column.

  Args:
    Z: latent channels ``[..., n_ue, n_bs, n_freq]``.
    n_streams: ``N_s <= n_ue``.
    eps: floor on ``lam`` (a rank-deficient ``Z`` has no unique dominant subspace).

  Returns:
    ``W``: ``[..., n_bs, n_streams, n_freq]`` with orthonormal columns.
  """
  _check_channel("Z", Z, n_streams)
  Zf = _freq_first(Z)                                                  # [..., F, n_ue, n_bs]
  small = jnp.einsum("...ui,...vi->...uv", Zf, jnp.conj(Zf))           # Z Z^H, [..., F, n_ue, n_ue]
  lam, U = _eigh(0.5 * (small + jnp.conj(jnp.swapaxes(small, -1, -2))))
  lam, U = lam[..., ::-1][..., :n_streams], U[..., ::-1][..., :n_streams]
  W = jnp.einsum("...ui,...us->...is", jnp.conj(Zf), U) * jax.lax.rsqrt(jnp.maximum(lam, eps))[..., None, :]
  return _freq_last(W.astype(Z.dtype))


def received_energy(H: jax.Array, W: jax.Array) -> jax.Array:
  """``mean_k ||H_k W_k||_F^2`` per sample, the objective of eq. (28); ``[...]``."""
  checks.min_ndim("H", H, 3, "[..., n_ue, n_bs, n_freq]")
  checks.min_ndim("W", W, 3, "[..., n_bs, n_streams, n_freq]")
  M = jnp.einsum("...uif,...isf->...usf", H, W)
  return jnp.mean(jnp.sum(jnp.abs(M) ** 2, axis=(-3, -2)), axis=-1)


def bayesian_precoder(H_samples: jax.Array, n_streams: int) -> jax.Array:
  """Bayesian precoder from K channel samples, eq. (28) / Appendix C.

  Args:
    H_samples: ``[K, ..., n_ue, n_bs, n_freq]`` posterior samples.
    n_streams: ``N_s <= n_ue``.

  Returns:
    ``W``: ``[..., n_bs, n_streams, n_freq]``.
  """
  _check_channel("H_samples", H_samples, n_streams)
  return precoder_from_gramian(gramian(H_samples), n_streams)


def spectral_efficiency(H: jax.Array, W: jax.Array, snr) -> jax.Array:
  """Spectral efficiency of eq. (25), averaged over subcarriers, in bit/s/Hz.

  ``log2 det(I + (rho/N_s) H_k W_k W_k^H H_k^H)`` is evaluated through the
  equal ``log2 det(I_{N_s} + (rho/N_s) (H_k W_k)^H H_k W_k)`` (Sylvester) with a
  Cholesky factor, which is exact for this positive definite matrix.

  Args:
    H: true channels ``[..., n_ue, n_bs, n_freq]``.
    W: precoders ``[..., n_bs, n_s, n_freq]`` with the same leading axes.
    snr: linear DL SNR ``rho``, a scalar or an array of the leading shape.

  Returns:
    ``[...]`` SE per sample.
  """
  checks.min_ndim("H", H, 3, "[..., n_ue, n_bs, n_freq]")
  checks.min_ndim("W", W, 3, "[..., n_bs, n_streams, n_freq]")
  if H.shape[:-3] != W.shape[:-3] or H.shape[-2] != W.shape[-3] or H.shape[-1] != W.shape[-1]:
    raise ValueError(f"H {tuple(H.shape)} ([..., n_ue, n_bs, n_freq]) and W {tuple(W.shape)} "
                     "([..., n_bs, n_streams, n_freq]) disagree on the batch, n_bs or n_freq axes.")
  snr = jnp.asarray(snr, jnp.float32)
  if snr.ndim not in (0, len(H.shape) - 3) or (snr.ndim and snr.shape != H.shape[:-3]):
    raise ValueError(f"snr must be a scalar or have the batch shape {H.shape[:-3]}; got {snr.shape}.")
  n_s = W.shape[-2]
  M = jnp.einsum("...uif,...isf->...fus", H, W)                    # [..., F, n_ue, n_s]
  gram = jnp.einsum("...us,...ut->...st", jnp.conj(M), M)          # [..., F, n_s, n_s]
  scale = (snr / n_s).reshape(snr.shape + (1, 1, 1))
  A = jnp.eye(n_s, dtype=gram.dtype) + scale.astype(gram.dtype) * gram
  A = 0.5 * (A + jnp.conj(jnp.swapaxes(A, -1, -2)))
  L = jnp.linalg.cholesky(A)
  logdet = 2.0 * jnp.sum(jnp.log(jnp.real(jnp.diagonal(L, axis1=-2, axis2=-1))), axis=-1)
  return jnp.mean(logdet, axis=-1) / jnp.log(2.0)


def random_precoder(key: jax.Array, shape, n_bs: int, n_streams: int, n_freq: int,
                    dtype=jnp.complex64) -> jax.Array:
  """Haar-random semi-unitary precoders ``[*shape, n_bs, n_streams, n_freq]`` (the "no CSI" case)."""
  checks.positive_int("n_streams", n_streams)
  if n_streams > n_bs:
    raise ValueError(f"n_streams={n_streams} exceeds n_bs={n_bs}.")
  kr, ki = jax.random.split(key)
  full = tuple(shape) + (n_freq, n_bs, n_streams)
  real_dtype = jnp.finfo(dtype).dtype
  z = (jax.random.normal(kr, full, real_dtype) + 1j * jax.random.normal(ki, full, real_dtype)).astype(dtype)
  q, r = jnp.linalg.qr(z)
  # Fix the phases of R's diagonal so Q is Haar-distributed (Mezzadri 2007).
  d = jnp.diagonal(r, axis1=-2, axis2=-1)
  q = q * (d / jnp.abs(d))[..., None, :]
  return _freq_last(q)


# Labels of the precoders that need no learning, shared by every table and figure that shows them.
CLASSICAL_LABELS = {"perfect_csi": "Perfect CSI (SVD)", "srs_baseline": "SRS baseline (latest SRS per PRB)",
                    "sample_cov": "Sample-covariance precoder (SRS history)",
                    "avg_gramian": "Average-Gramian precoder (no obs.)", "uniform": "Uniform precoder (no CSI)"}
