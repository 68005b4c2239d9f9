"""The Gaussian predictor of a downlink channel from its aged SRS history: a closed-form baseline and anchor.

Model (stated assumptions, per sample): every UE antenna's BS-side channel row
``h`` (``n_bs``) is zero-mean Gaussian with the user's spatial covariance
``R = E[h h^H]``, the same on every PRB and at every occasion; the channel ages
as a Gauss-Markov process, ``h_target = rho_o h_o + sqrt(1 - |rho_o|^2) e``,
``e ~ CN(0, R)``, with one complex correlation ``rho_o`` per SRS occasion
``o`` fitted on the training set (:func:`fit_age_correlation`); the sounding is
``y = h_o + CN(0, nv I)`` with the UL noise variance ``nv`` known (eq. 22).

``R`` is the history's sample covariance with the noise removed,
``R = (G - nv I)^T`` (``G``: :func:`jaxchan.srs.history_gramian`), its
eigenvalues clipped at 0. Given each PRB's latest sounding ``y`` at occasion
``o``, the target row is Gaussian with

``E[h | y] = rho_o R (R + nv I)^-1 y``,  ``Cov[h | y] = R - |rho_o|^2 R (R + nv I)^-1 R``;

a PRB never sounded keeps the prior ``CN(0, R)``. Both share ``R``'s
eigenvectors, so one ``n_bs x n_bs`` eigendecomposition per sample serves every
PRB. The Gaussian Bayesian precoder (eq. 28) takes the dominant eigenvectors of
``E[H_f^H H_f | y] = sum_u conj(m_u) m_u^T + n_ue Cov^T`` per PRB
(:func:`expected_gramian`, the ``K -> infinity`` limit) or of the Gramian of
``K`` draws (:func:`sample`).

Shapes: histories ``[B, n_occ, n_ue, n_bs, n_prb]`` (oldest first), targets and
predictions ``[B, n_ue, n_bs, n_prb]``, Gramians ``[B, n_bs, n_bs, n_prb]``
(the layout of :mod:`jaxchan.precoding`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxchan import checks, conventions, srs


def fit_age_correlation(history, target) -> np.ndarray:
  """The per-occasion correlation ``rho_o`` of the aging model, fitted on clean training histories
  (:func:`jaxchan.srs.age_correlation`, the estimate the latest-SRS predictor bound uses too)."""
  return srs.age_correlation(history, target)


class GaussianPrediction(NamedTuple):
  """The conditional Gaussian of the target: ``mean`` ``[B, n_ue, n_bs, n_prb]``; covariance per PRB
  ``vecs diag(cov_vals[..., f]) vecs^H`` with ``vecs`` ``[B, n_bs, n_bs]`` (``R``'s eigenvectors, columns) and
  ``cov_vals`` ``[B, n_bs, n_prb]``."""
  mean: jax.Array
  vecs: jax.Array
  cov_vals: jax.Array


def spatial_covariance(observation: srs.SRSObservation) -> tuple[jax.Array, jax.Array]:
  """Eigendecomposition ``(vals [B, n_bs], vecs [B, n_bs, n_bs])`` of the noise-corrected ``R`` (module docstring)."""
  G = srs.history_gramian(observation)                         # E[conj(h) h^T] + nv I
  nv = observation.noise_var.astype(jnp.float32)
  R = jnp.swapaxes(G, -1, -2) - nv[:, None, None] * jnp.eye(G.shape[-1], dtype=G.dtype)
  vals, vecs = jnp.linalg.eigh(0.5 * (R + jnp.conj(jnp.swapaxes(R, -1, -2))))
  return jnp.maximum(vals, 0.0), vecs


def predict(observation: srs.SRSObservation, rho) -> GaussianPrediction:
  """The Gaussian predictor's conditional mean and covariance (module docstring).

  Args:
    observation: the SRS observation (:func:`jaxchan.srs.observe`), with its ``noise_var``.
    rho: ``[n_occ]`` complex per-occasion correlation (:func:`fit_age_correlation`).
  """
  rho = jnp.asarray(rho, jnp.complex64)
  n_occ = observation.obs.shape[1]
  if rho.shape != (n_occ,):
    raise ValueError(f"rho has shape {rho.shape} but the history has {n_occ} occasions; fit it on histories "
                     "of this length.")
  latest, occ, seen = srs.latest_observation(observation.obs, observation.mask)   # [B,U,N,F], [B,F], [B,F]
  vals, vecs = spatial_covariance(observation)
  return conditional(latest, jnp.where(seen, rho[occ], 0.0), vals, vecs, observation.noise_var)


def conditional(latest, r, vals, vecs, noise_var) -> GaussianPrediction:
  """The kernel of :func:`predict` for a given ``R = vecs diag(vals) vecs^H``.

  ``latest``: ``[B, n_ue, n_bs, n_prb]`` latest soundings; ``r``: ``[B, n_prb]`` complex correlation of each
  PRB's sounding with the target (0 where never sounded); ``vals`` ``[B, n_bs]``, ``vecs`` ``[B, n_bs, n_bs]``;
  ``noise_var`` ``[B]``.
  """
  nv = noise_var.astype(jnp.float32)[:, None]
  gain = vals / (vals + nv)                                                         # [B, N]
  # mean = r V diag(gain) V^H y, per PRB and UE antenna.
  coef = jnp.einsum("bnk,bunf->bukf", jnp.conj(vecs), latest)                      # V^H y
  mean = jnp.einsum("bnk,bukf->bunf", vecs, gain[:, None, :, None] * coef) * r[:, None, None, :]
  cov_vals = vals[:, :, None] - (jnp.abs(r) ** 2)[:, None, :] * (vals * gain)[:, :, None]
  return GaussianPrediction(mean.astype(latest.dtype), vecs, jnp.maximum(cov_vals, 0.0))


def expected_gramian(pred: GaussianPrediction) -> jax.Array:
  """``E[H_f^H H_f | y]`` per PRB, ``[B, n_bs, n_bs, n_prb]``: the K -> infinity Bayesian Gramian."""
  n_ue = pred.mean.shape[1]
  mean_part = jnp.einsum("buif,bujf->bijf", jnp.conj(pred.mean), pred.mean)
  # n_ue * Cov^T with Cov = V diag(c) V^H: Cov^T = conj(V) diag(c) V^T.
  cov_t = jnp.einsum("bik,bkf,bjk->bijf", jnp.conj(pred.vecs), pred.cov_vals.astype(pred.vecs.dtype), pred.vecs)
  return mean_part + n_ue * cov_t


def sample(pred: GaussianPrediction, key: jax.Array, num: int) -> jax.Array:
  """``num`` draws of the target from the conditional Gaussian, ``[num, B, n_ue, n_bs, n_prb]``."""
  checks.positive_int("num", num)
  z = conventions.standard_normal(key, (num,) + pred.mean.shape, pred.mean.dtype)
  scaled = jnp.sqrt(pred.cov_vals)[None, :, None, :, :].astype(z.dtype) * z          # coordinates in V
  return pred.mean[None] + jnp.einsum("bnk,sbukf->sbunf", pred.vecs, scaled)
