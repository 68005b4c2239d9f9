"""Many precoders of one evaluation batch and their spectral efficiencies, one LAPACK call per XLA program.

Why a module of its own: jaxlib's batched LAPACK kernels (SVD, eigh, Cholesky, QR) split their batch over
XLA:CPU's intra-op thread pool and wait for the parts. Two of them running at once, on a pool with no more threads
than such calls, each hold a thread and wait for parts that no thread is left to run: the program never finishes
(seen on 2 cores: both ``tf_XLAEigen`` threads in ``ParallelBatchMap``, one in ``lapack_cgesdd_ffi`` and one in
``lapack_cheevd_ffi``, no CPU in use). XLA:CPU runs independent operations of one program concurrently whatever
their order in it (``optimization_barrier`` included), so the only order that holds is the host's: every function
here is one jitted program holding one LAPACK call over everything it is given (stacked), and
:func:`precoders` waits for the first before it starts the second. An evaluation that follows the same rule for
its own stages (one chain of dependent LAPACK calls per program, the host waiting in between) cannot stall.

Every precoder is :mod:`jaxchan.precoding`'s: the SVD precoder of a channel estimate (eq. 26's one-shot
estimate-then-precode), the dominant eigenvectors of a Gramian (eq. 28: the Bayesian precoder of K samples, a
sample covariance, the K -> infinity limit), and the spectral efficiency of eq. (25).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxchan import precoding


def _stacked(arrays: dict) -> jax.Array:
  shapes = {k: tuple(v.shape) for k, v in arrays.items()}
  if len(set(shapes.values())) != 1:
    raise ValueError(f"every input of one stage needs the same shape (they are stacked into one call); got {shapes}. "
                     "Broadcast a shared input to the batch first (e.g. wideband() for a wideband Gramian).")
  return jnp.stack(list(arrays.values()))


@functools.partial(jax.jit, static_argnames="n_streams")
def svd_precoders(channels: dict, n_streams: int) -> dict:
  """``{name: W}`` ``[B, n_bs, n_streams, n_freq]``: the SVD precoder of every ``[B, n_ue, n_bs, n_freq]``
  channel (estimate) in ``channels``, one SVD call."""
  W = precoding.svd_precoder(_stacked(channels), n_streams)
  return dict(zip(channels, W))


@functools.partial(jax.jit, static_argnames="n_streams")
def gramian_precoders(grams: dict, n_streams: int) -> dict:
  """``{name: W}``: the ``n_streams`` dominant eigenvectors of every ``[B, n_bs, n_bs, n_freq]`` Gramian in
  ``grams`` (:func:`jaxchan.precoding.precoder_from_gramian`), one eigendecomposition call. A wideband Gramian
  ``[B, n_bs, n_bs]`` enters broadcast over the band (:func:`wideband`)."""
  W = precoding.precoder_from_gramian(_stacked(grams), n_streams)
  return dict(zip(grams, W))


def wideband(G: jax.Array, n_freq: int) -> jax.Array:
  """``[B, n_bs, n_bs]`` -> ``[B, n_bs, n_bs, n_freq]``: a wideband Gramian repeated per subcarrier, whose precoder
  is :func:`jaxchan.precoding.wideband_precoder`'s on every subcarrier (an eigendecomposition depends only on its
  matrix)."""
  return jnp.broadcast_to(G[..., None], G.shape + (n_freq,))


@jax.jit
def spectral_efficiencies(h: jax.Array, precoders: dict, snr: jax.Array) -> dict:
  """``{name: SE [S, B]}``, eq. (25) for every precoder ``[B, n_bs, n_s, n_freq]`` of ``precoders`` on the true
  channels ``h`` ``[B, n_ue, n_bs, n_freq]`` at each of ``S`` linear DL SNRs (``snr`` ``[S, B]``), one Cholesky
  call."""
  W = _stacked(precoders)                                                       # [P, B, n_bs, n_s, F]
  H = jnp.broadcast_to(h, (W.shape[0],) + h.shape)
  se = jax.vmap(lambda s: precoding.spectral_efficiency(H, W, jnp.broadcast_to(s, H.shape[:-3])))(snr)  # [S, P, B]
  return {name: se[:, i] for i, name in enumerate(precoders)}


def precoders(channels: dict, grams: dict, n_streams: int) -> dict:
  """The SVD precoders of ``channels`` and the Gramian precoders of ``grams`` (names must differ), in two
  programs, the second started when the first has finished."""
  clash = set(channels) & set(grams)
  if clash:
    raise ValueError(f"{sorted(clash)} named both as a channel and as a Gramian; give each precoder one name.")
  W = jax.block_until_ready(svd_precoders(channels, n_streams)) if channels else {}
  return dict(W, **(jax.block_until_ready(gramian_precoders(grams, n_streams)) if grams else {}))


@functools.partial(jax.jit, static_argnames=("n_streams", "shape"))
def uniform_precoders(key: jax.Array, shape: tuple, n_streams: int) -> jax.Array:
  """Haar-random precoders ``[B, n_bs, n_streams, n_freq]`` for channels of ``shape`` ``(B, n_ue, n_bs, n_freq)``
  (the "no CSI" row), one QR call."""
  return precoding.random_precoder(key, shape[:1], shape[-2], n_streams, shape[-1])


def classical_precoders(h: jax.Array, srs_estimate: jax.Array, history_gram: jax.Array, avg_gram: jax.Array,
                        key: jax.Array, n_streams: int) -> dict:
  """Every precoder that needs no learning, ``{name: [B, n_bs, n_streams, n_freq]}`` (keys of
  :data:`jaxchan.precoding.CLASSICAL_LABELS`), three programs one after the other.

  Args:
    h: true channels ``[B, n_ue, n_bs, n_freq]`` (perfect CSI).
    srs_estimate: the SRS baseline's channel estimate, same shape.
    history_gram: ``[B, n_bs, n_bs]`` wideband sample covariance of the SRS history.
    avg_gram: ``[n_bs, n_bs, n_freq]`` training-set average Gramian (:func:`jaxchan.precoding.average_gramian`).
    key: PRNG key of the uniform precoders.
  """
  W = precoders({"perfect_csi": h, "srs_baseline": srs_estimate},
                {"sample_cov": wideband(history_gram, h.shape[-1]),
                 "avg_gramian": jnp.broadcast_to(avg_gram, h.shape[:1] + avg_gram.shape)}, n_streams)
  return dict(W, uniform=jax.block_until_ready(uniform_precoders(key, tuple(h.shape), n_streams)))
