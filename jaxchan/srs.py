"""SRS observation model of the perception-distortion paper (Sec. V, eq. 22).

The UE sounds one sub-band per SRS occasion (frequency hopping: ``num_hops``
sub-bands of ``n_prb / num_hops`` PRBs, visited cyclically). The BS keeps the
last ``n_occasions`` occasions; at each it gets a noisy least-squares estimate
of the channel on the sounded PRBs only:
``y_n = H_n + w``, ``w ~ CN(0, 10^(-SNR/10))`` per element, with the UL SNR
drawn per sample uniformly in ``snr_db_range`` (channels have unit power, so
this is the per-element SNR). The hop phase (which sub-band the oldest
occasion sounded) is random per sample.

The "SRS baseline" wideband estimate takes, for every PRB, the most recent
observation of it, without any processing. :func:`history_gramian` is the
wideband sample covariance of the whole history, the input of the
sample-covariance precoder (:func:`jaxchan.precoding.wideband_precoder`).

Shapes: ``history`` is ``[B, n_occasions, n_ue, n_bs, n_prb]`` (oldest first),
as stored by ``datagen`` (:mod:`jaxchan.data`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxchan import checks, conventions


class SRSConfig(NamedTuple):
  """How the SRS history is observed (eq. 22): hops per band and the range of the per-sample UL SNR in dB."""
  num_hops: int = 4
  snr_db_range: tuple[float, float] = (-10.0, 10.0)


class SRSObservation(NamedTuple):
  """Attributes:
    obs: ``[B, n_occ, n_ue, n_bs, n_prb]`` noisy LS estimates, 0 on PRBs not sounded.
    mask: ``[B, n_occ, n_prb]`` bool, True where the occasion sounded the PRB.
    snr_db: ``[B]`` UL SNR of each sample.
    noise_var: ``[B]`` per-element noise variance ``10^(-snr_db/10)``.
  """
  obs: jax.Array
  mask: jax.Array
  snr_db: jax.Array
  noise_var: jax.Array


def hop_masks(n_prb: int, num_hops: int) -> jax.Array:
  """``[num_hops, n_prb]`` bool: hop ``j`` sounds PRBs ``[j n_prb/num_hops, (j+1) n_prb/num_hops)``."""
  if n_prb % num_hops:
    raise ValueError(f"n_prb={n_prb} is not divisible by num_hops={num_hops}; each hop must cover an equal "
                     "sub-band.")
  width = n_prb // num_hops
  return (jnp.arange(n_prb)[None, :] // width) == jnp.arange(num_hops)[:, None]


def observe(history: jax.Array, key: jax.Array, *, num_hops: int = 4,
            snr_db_range: tuple[float, float] = (-10.0, 10.0)) -> SRSObservation:
  """Draw the SRS observation of a batch of channel histories (eq. 22).

  Args:
    history: ``[B, n_occ, n_ue, n_bs, n_prb]`` true channels at the SRS occasions.
    key: PRNG key (hop phase, SNR and noise are drawn fresh on every call).
    num_hops: number of sub-bands cycled through.
    snr_db_range: UL SNR interval, dB.
  """
  checks.min_ndim("history", history, 5, "[B, n_occasions, n_ue, n_bs, n_prb]")
  lo, hi = snr_db_range
  if not lo <= hi:
    raise ValueError(f"snr_db_range={snr_db_range} must be (low, high) with low <= high.")
  B, n_occ, _, _, n_prb = history.shape
  masks = hop_masks(n_prb, num_hops)
  k_phase, k_snr, k_noise = jax.random.split(key, 3)
  phase = jax.random.randint(k_phase, (B,), 0, num_hops)
  hop = (phase[:, None] + jnp.arange(n_occ)[None, :]) % num_hops         # [B, n_occ]
  mask = masks[hop]                                                       # [B, n_occ, n_prb]
  snr_db = jax.random.uniform(k_snr, (B,), minval=lo, maxval=hi)
  noise_var = 10.0 ** (-snr_db / 10.0)
  w = conventions.standard_normal(k_noise, history.shape, history.dtype)
  y = history + jnp.sqrt(noise_var).reshape(B, 1, 1, 1, 1).astype(history.dtype) * w
  obs = jnp.where(mask[:, :, None, None, :], y, 0)
  return SRSObservation(obs, mask, snr_db, noise_var)


def latest_observation(obs: jax.Array, mask: jax.Array):
  """Per PRB, the latest observation of it and the occasion it came from.

  Args:
    obs: ``[B, n_occ, n_ue, n_bs, n_prb]``; mask: ``[B, n_occ, n_prb]`` (oldest occasion first).

  Returns:
    ``(latest [B, n_ue, n_bs, n_prb], occasion [B, n_prb] int32, seen [B, n_prb] bool)``; a PRB never
    sounded has ``latest = 0``, ``occasion = 0`` and ``seen = False``.
  """
  n_occ = mask.shape[1]
  idx = jnp.where(mask, jnp.arange(n_occ)[None, :, None], -1).max(axis=1)          # [B, n_prb]
  picked = jnp.take_along_axis(obs, jnp.maximum(idx, 0)[:, None, None, None, :], axis=1)[:, 0]
  seen = idx >= 0
  return jnp.where(seen[:, None, None, :], picked, 0), jnp.maximum(idx, 0).astype(jnp.int32), seen


def elementwise_observation(observation: SRSObservation, rho, key: jax.Array, *,
                            innovation=1.0) -> tuple[jax.Array, jax.Array]:
  """The target channel as an element-wise observation ``H_bar = M o H + n``, ``n ~ CN(0, I)`` (the non-identical
  paper's eq. 14), from each cell's latest sounding: the reliability map of an SRS history.

  Model (stated; exact under it): unit-power channels that age as ``h_o = conj(rho_o) h + sqrt(1 - |rho_o|^2) w``
  with ``w ~ CN(0, 1)`` white and independent of the target ``h`` (``rho_o`` the correlation of occasion ``o``
  with the target, :func:`age_correlation`), sounded with noise of variance ``noise_var``. The latest sounding
  ``y = h_o + noise`` of a cell then gives ``(rho_o / |rho_o|) y / s = M h + CN(0, 1)`` with
  ``s = sqrt(1 - |rho_o|^2 + noise_var)`` and ``M = |rho_o| / s``. Cells never sounded get ``M = 0`` and pure
  noise. The aging innovation is not white on real channels (it has the user's spatial covariance); this map
  keeps only what each cell says on its own.

  ``innovation`` (``kappa >= 1``, a scalar or ``[B]``) counts the innovation ``kappa`` times its white power in
  ``s = sqrt((1 - |rho_o|^2) kappa + noise_var)``, ``M = |rho_o| / s``, and scales the observation so that its noise
  stays of unit variance. When the innovation has the covariance ``C`` of the prior (``h_o = conj(rho) h +
  sqrt(1 - |rho|^2) w``, ``w ~ CN(0, C)``) and ``kappa`` is at least ``C``'s largest eigenvalue, this element-wise
  likelihood is nowhere more confident than the true one for cells sharing one ``rho``: along every eigenvector of
  ``C`` its signal-to-noise ratio is at most the exact one (:mod:`jaxchan.srs_prior`). ``1`` is eq. (14)'s white
  noise.

  Args:
    observation: an :class:`SRSObservation` (``obs`` ``[B, n_occ, n_ue, n_bs, n_prb]``).
    rho: ``[n_occ]`` complex correlations of each occasion with the target.
    key: PRNG key of the unit noise of the cells never sounded.
    innovation: ``kappa >= 1``, the innovation's power relative to white (above).

  Returns:
    ``(h_bar, m)``, both ``[B, n_ue, n_bs, n_prb]`` (``m`` float32 >= 0).
  """
  latest, occ, seen = latest_observation(observation.obs, observation.mask)
  rho = jnp.asarray(rho, jnp.complex64)
  if rho.shape != (observation.mask.shape[1],):
    raise ValueError(f"rho has shape {rho.shape}; it needs one correlation per occasion, "
                     f"({observation.mask.shape[1]},).")
  checks.in_range("innovation (kappa)", innovation, 1.0, float("inf"),
                  hint="1 is eq. (14)'s white aging noise; larger counts the innovation's strongest direction.")
  kappa = jnp.broadcast_to(jnp.asarray(innovation, jnp.float32), observation.noise_var.shape)[:, None]
  r = rho[occ]                                                          # [B, n_prb]
  mag = jnp.abs(r)
  s = jnp.sqrt(jnp.maximum(1.0 - mag ** 2, 0.0) * kappa + observation.noise_var[:, None])
  m = jnp.where(seen, mag / s, 0.0)                                       # [B, n_prb]
  phase = jnp.where(mag > 0, r / jnp.where(mag > 0, mag, 1.0), 1.0)
  scaled = latest * (phase / s)[:, None, None, :].astype(latest.dtype)
  noise = conventions.standard_normal(key, latest.shape, latest.dtype)
  h_bar = jnp.where(seen[:, None, None, :] & (mag > 0)[:, None, None, :], scaled, noise)
  return h_bar, jnp.broadcast_to(m[:, None, None, :], latest.shape).astype(jnp.float32)


def baseline(observation: SRSObservation) -> jax.Array:
  """The SRS baseline: per PRB, the latest observation of it; ``[B, n_ue, n_bs, n_prb]``.

  PRBs never sounded in the history are 0.
  """
  return latest_observation(observation.obs, observation.mask)[0]


def history_gramian(observation: SRSObservation) -> jax.Array:
  """Wideband sample covariance of the BS-side channel over the whole SRS history, ``[B, n_bs, n_bs]``.

  ``G = (1 / n) sum_{occasions, UE antennas, sounded PRBs} y^* y^T`` over the ``n``
  sounded rows ``y`` (``n_bs``-vectors). Its expectation is the channel's spatial
  covariance plus ``noise_var I``; the identity does not move the eigenvectors,
  so its dominant eigenvectors estimate the long-term beam without any learning.
  Unsounded PRBs are 0 in ``obs`` and add nothing.
  """
  obs, mask = observation.obs, observation.mask
  G = jnp.einsum("bouif,bouj f->bij".replace(" ", ""), jnp.conj(obs), obs)
  n = jnp.sum(mask, axis=(1, 2)) * obs.shape[2]
  return G / jnp.maximum(n, 1).reshape(-1, 1, 1).astype(G.dtype)


def age_correlation(history, target):
  """``rho_o = E[h_target conj(h_o)] / sqrt(E|h_target|^2 E|h_o|^2)`` per occasion ``o``, ``[n_occ]`` complex64.

  ``history``: clean histories ``[N, n_occ, n_ue, n_bs, n_prb]``; ``target``: ``[N, n_ue, n_bs, n_prb]``.
  """
  import numpy as np
  checks.min_ndim("history", history, 5, "[N, n_occasions, n_ue, n_bs, n_prb]")
  h = np.asarray(target, np.complex128)
  x = np.asarray(history, np.complex128)
  if x.shape[:1] + x.shape[2:] != h.shape:
    raise ValueError(f"history {x.shape} and target {h.shape} do not match ([N, n_occ, *target_shape]).")
  p_t = np.sum(np.abs(h) ** 2)
  rho = [np.sum(h * np.conj(x[:, o])) / np.sqrt(p_t * np.sum(np.abs(x[:, o]) ** 2)) for o in range(x.shape[1])]
  return np.asarray(rho, np.complex64)


def latest_predictor_nmse(history: jax.Array, target: jax.Array, snr_db_range: tuple[float, float] = (-10.0, 10.0),
                          *, num_hops: int = 4) -> dict:
  """How much the SRS history can tell: NMSE of the best per-age linear predictor from the latest sounding.

  Every PRB is sounded once per hop cycle, at one of the last ``num_hops``
  occasions (its age). The LMMSE predictor of the target from that noisy
  sounding ``y = h_o + w`` is ``c_o y`` with ``c_o = rho_o / (1 + sigma^2)``
  for unit-power channels, where ``rho_o = E[h_target h_o^*]`` is the
  target's correlation with occasion ``o``. Its NMSE is ``1 - |rho_o|^2 / (1 + sigma^2)``,
  averaged over the ages of the last ``num_hops`` occasions (each holds
  ``1 / num_hops`` of the PRBs) and over a UL SNR uniform in dB on ``snr_db_range``.
  NMSE near 1 means the history is nearly useless (high uncertainty).

  Args:
    history: ``[N, n_occ, n_ue, n_bs, n_prb]`` clean channels at the SRS occasions (oldest first).
    target: ``[N, n_ue, n_bs, n_prb]``.

  Returns:
    ``{"nmse": float, "nmse_noiseless": float, "corr": [n_occ] |rho_o|}``.
  """
  checks.min_ndim("history", history, 5, "[N, n_occasions, n_ue, n_bs, n_prb]")
  rho = jnp.asarray(age_correlation(history, target))
  r2 = jnp.abs(rho[-num_hops:]) ** 2
  snr = jnp.linspace(snr_db_range[0], snr_db_range[1], 401)
  nv = 10.0 ** (-snr / 10.0)
  nmse = jnp.mean(1.0 - r2[:, None] / (1.0 + nv[None, :]))
  return {"nmse": float(nmse), "nmse_noiseless": float(jnp.mean(1.0 - r2)), "corr": [float(x) for x in jnp.abs(rho)]}
