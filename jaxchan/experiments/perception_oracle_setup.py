"""The problem the oracle experiment poses: its methods, the observation model of the sounded PRBs, draws
from the prior and the exact CME's loss. The experiment, its learned models and its report all read them here.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxchan import conventions, gaussian_prior, oracle, srs

METHODS = ("perfect_csi", "bayes_inf", "cme", "prior", "uniform")
#: The closed-form Gaussian rows (the anchored models' starting point): the LMMSE estimate's SVD precoder and the
#: Bayesian precoder from K samples of the conditional Gaussian, under the prior's moment-matched covariance.
GAUSSIAN = ("gauss_mean", "gauss_bayes")
#: The closed-form rows of the mixture fitted on draws (:func:`fit_mixture`, the mixture anchor's starting point):
#: its CME's SVD precoder and its Bayesian precoder from K exact samples of its posterior.
FITTED = ("mix_mean", "mix_bayes")
LABELS = {"perfect_csi": "Perfect CSI (SVD)", "bayes_inf": "Exact Bayesian, K -> inf (posterior Gramian)",
          "cme": "Exact CME precoder (SVD of E[H|y])", "prior": "Prior Gramian (no observation)",
          "uniform": "Uniform precoder (no CSI)", "sl": "Learned SL (SVD of its estimate)",
          "dm_bayes": "Learned DM, Bayesian from K samples",
          "gauss_mean": "Gaussian (LMMSE, prior covariance), SVD", "gauss_bayes": "Gaussian Bayesian, K samples",
          "mix_mean": "EM-fitted mixture CME, SVD", "mix_bayes": "EM-fitted mixture Bayesian, K samples"}
LEARNED = ("sl", "dm_bayes")


class Problem(NamedTuple):
  """The observation problem: channel ``shape`` ``(n_ue, n_bs, n_freq)``, the first ``sounded`` PRBs observed,
  aged by the correlation ``rho``, precoded with ``n_streams`` streams at downlink SNR ``dl_snr_db``."""
  shape: tuple
  sounded: int
  rho: float
  n_streams: int
  dl_snr_db: float = 10.0


def moment_matched(prior: oracle.GaussianMixture) -> oracle.GaussianMixture:
  """The one-component Gaussian with the mixture's mean and covariance (:func:`jaxchan.oracle.moments`): the
  Gaussian baseline's prior."""
  mean, cov = oracle.moments(prior)
  return oracle.GaussianMixture(jnp.ones((1,), prior.weights.dtype), mean[None], cov[None])


def row_covariance(prior: oracle.GaussianMixture, shape) -> jax.Array:
  """The moment-matched covariance of one UE antenna's ``[n_bs, n_freq]`` row, ``[n_bs n_freq, n_bs n_freq]``:
  the prior anchor's (:func:`jaxchan.gaussian_predictor.under_prior`). Refuses a prior whose rows are not
  zero-mean, uncorrelated and identically distributed (the anchor's model)."""
  n_ue, n_bs, n_freq = shape
  g = moment_matched(prior)
  d = n_bs * n_freq
  cov = np.asarray(g.covs[0]).reshape(n_ue, d, n_ue, d)
  row = cov[0, :, 0, :]
  expect = np.einsum("ab,ij->aibj", np.eye(n_ue), row)
  if np.abs(cov - expect).max() > 1e-5 * np.abs(row).max() or np.abs(np.asarray(g.means)).max() > 1e-6:
    raise ValueError("the prior anchor needs zero-mean, uncorrelated, identically distributed UE rows "
                     "(C = I_ue (x) C_row); this prior is not of that form.")
  return jnp.asarray(row)


def fit_mixture(prior: oracle.GaussianMixture, key: jax.Array, shape, *, components: int, rank: int, rounds: int,
                num: int, seed: int = 0) -> oracle.GaussianMixture:
  """A Gaussian mixture over ``vec(H)`` fitted on ``num`` draws from ``prior`` (drawn with ``key``; ``seed`` seeds
  the k-means start), knowing only the draws.

  Every UE antenna's ``[n_bs, n_freq]`` row is a sample for :func:`jaxchan.gaussian_prior.fit_mixture`
  (classification EM of ``components`` rank-``rank``-plus-diagonal Gaussians, ``rounds`` reassignments): under
  the user-cluster model each row is marginally a draw from the rows' mixture, so the fit is consistent. The
  result shares the component across a sample's rows, ``C_k = I_ue (x) (U_k diag(s_k) U_k^H + diag(delta_k) +
  m_k m_k^H)`` (the component's mean folded into its second moment: the anchor's rows are zero-mean), as
  :func:`jaxchan.gaussian_predictor.under_mixture` and :func:`jaxchan.oracle.posterior` read it.
  """
  n_ue, n_bs, n_freq = shape
  rows = np.asarray(oracle.sample(prior, key, num)).reshape(num * n_ue, n_bs, n_freq)
  mix = gaussian_prior.fit_mixture(rows, components=components, rank=rank, rounds=rounds, seed=seed)
  vecs, vals = np.asarray(mix.vecs), np.asarray(mix.vals)
  mean = np.asarray(mix.mean).reshape(len(vals), -1)
  row = (np.einsum("kir,kr,kjr->kij", vecs, vals, np.conj(vecs))
         + np.einsum("ki,ij->kij", np.asarray(mix.delta).reshape(len(vals), -1), np.eye(n_bs * n_freq))
         + np.einsum("ki,kj->kij", mean, np.conj(mean)))
  full = np.einsum("ab,kij->kaibj", np.eye(n_ue), row).reshape(len(vals), n_ue * n_bs * n_freq, -1)
  return oracle.GaussianMixture(jnp.asarray(np.exp(np.asarray(mix.log_weights)), jnp.float32),
                                jnp.zeros(full.shape[:2], jnp.complex64), jnp.asarray(full, jnp.complex64))


def mixture_rows(gmm: oracle.GaussianMixture, shape):
  """``(log_weights [K], row_covs [K, n_bs n_freq, n_bs n_freq])`` of a zero-mean mixture whose components have
  uncorrelated, identically distributed UE rows (:func:`row_covariance` per component): the mixture anchor's."""
  rows = [row_covariance(oracle.GaussianMixture(jnp.ones((1,), jnp.float32), gmm.means[k:k + 1], gmm.covs[k:k + 1]),
                         shape) for k in range(gmm.weights.shape[0])]
  return jnp.log(jnp.asarray(gmm.weights, jnp.float32)), jnp.stack(rows)


def observation(shape, sounded: int, rho: float, sigma2: float):
  """``(A [m, d], N [m, m])``: the sounded PRBs (the first ``sounded``), scaled by ``rho``, plus noise."""
  n_ue, n_bs, n_freq = shape
  keep = np.zeros(shape, bool)
  keep[..., :sounded] = True
  rows = np.flatnonzero(keep.reshape(-1))
  A = np.zeros((rows.size, keep.size), np.complex64)
  A[np.arange(rows.size), rows] = rho
  return jnp.asarray(A), jnp.asarray((1.0 - rho**2 + sigma2) * np.eye(rows.size, dtype=np.float32))


# ---------------------------------------------------------------------------
# The learned models on the same problem.

LEARNED_USES = ("sl", "dm")
LEARNED_CHUNK = 250               # channels per learned-evaluation call


def srs_view(y: jax.Array, shape, sounded: int, rho: float, sigma2) -> srs.SRSObservation:
  """The observation ``y = rho S h + n`` (``[B, m]``) as the transformer's SRS input.

  One occasion sounding the first ``sounded`` PRBs (hop 0 of ``n_freq / sounded``
  hops, :func:`jaxchan.srs.hop_masks`), least-squares scaled: ``y / rho = S h + n / rho``,
  so the per-element noise variance the network is told is ``(1 - rho^2 + sigma^2) / rho^2``
  (aging and thermal noise together, both independent of ``h`` in this model).
  ``sigma2``: a scalar or ``[B]``.
  """
  n_ue, n_bs, n_freq = shape
  B = y.shape[0]
  cells = (y / rho).reshape(B, n_ue, n_bs, sounded)
  obs = jnp.zeros((B, 1, n_ue, n_bs, n_freq), y.dtype).at[:, 0, :, :, :sounded].set(cells)
  mask = jnp.broadcast_to(srs.hop_masks(n_freq, n_freq // sounded)[0], (B, 1, n_freq))
  noise_var = jnp.broadcast_to((1.0 - rho**2 + jnp.asarray(sigma2, jnp.float32)) / rho**2, (B,))
  return srs.SRSObservation(obs, mask, -10.0 * jnp.log10(noise_var), noise_var)


def draw(prior, key, num: int, *, shape, sounded: int, rho: float, snr_db_range):
  """``(h [num, *shape], y [num, m], sigma2 [num])``: channels from the prior and their observations, SNR uniform in dB."""
  k_h, k_s, k_n = jax.random.split(key, 3)
  A, _ = observation(shape, sounded, rho, 0.0)
  h = oracle.sample(prior, k_h, num)
  snr = jax.random.uniform(k_s, (num,), minval=snr_db_range[0], maxval=snr_db_range[1])
  sigma2 = 10.0 ** (-snr / 10.0)
  noise = jnp.sqrt(1.0 - rho**2 + sigma2)[:, None] * conventions.standard_normal(k_n, (num, A.shape[0]), h.dtype)
  return h.reshape((num,) + tuple(shape)), h @ A.T + noise, sigma2


def exact_cme_mse(prior, h, y, sigma2, *, shape, sounded: int, rho: float) -> float:
  """The SL's Bayes-optimal loss on ``(h, y, sigma2)`` from :func:`draw`: ``mean |h - E[h | y]|^2`` with the
  exact posterior of each observation at its own noise level."""
  A, _ = observation(shape, sounded, rho, 0.0)
  eye = jnp.eye(A.shape[0], dtype=jnp.float32)

  def cme(yi, s2):
    post = oracle.posterior(prior, yi, A, (1.0 - rho**2 + s2) * eye)
    return jnp.einsum("k,kd->d", post.weights.astype(post.means.dtype), post.means)

  est = jax.vmap(cme)(y, sigma2).reshape(h.shape)
  return float(jnp.mean(jnp.abs(h - est) ** 2))
