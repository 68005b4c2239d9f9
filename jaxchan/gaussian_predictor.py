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

from jaxchan import checks, conventions, gaussian_prior, srs

# Relative isotropic floor of the latent's Gramian (:func:`latent`); channels have unit power per element.
LATENT_FLOOR = 1e-3


def fit_age_correlation(history, target) -> np.ndarray:
  """The per-occasion correlation ``rho_o`` of the aging model, fitted on clean training histories
  (:func:`jaxchan.srs.age_correlation`, the estimate the latest-SRS predictor bound uses too)."""
  return srs.age_correlation(history, target)


class GaussianPrediction(NamedTuple):
  """The conditional Gaussian of the target: ``mean`` ``[B, n_ue, n_bs, n_prb]``; covariance of every UE
  antenna's row on PRB ``f`` ``V_f diag(cov_vals[..., f]) V_f^H`` (rows and PRBs independent), with ``vecs``
  either ``[B, n_bs, n_bs]`` (one eigenbasis for every PRB, ``R``'s eigenvectors as columns: :func:`predict`)
  or ``[B, n_prb, n_bs, n_bs]`` (one per PRB: :func:`under_prior`), and ``cov_vals`` ``[B, n_bs, n_prb]``."""
  mean: jax.Array
  vecs: jax.Array
  cov_vals: jax.Array


def _to_basis(vecs, x):
  """``V_f^H x_f`` for ``x`` ``[..., B, n_ue, n_bs, n_prb]`` (a leading sample axis allowed)."""
  if vecs.ndim == 3:
    return jnp.einsum("bnk,...bunf->...bukf", jnp.conj(vecs), x)
  return jnp.einsum("bfnk,...bunf->...bukf", jnp.conj(vecs), x)


def _from_basis(vecs, c):
  """``V_f c_f``: the inverse of :func:`_to_basis`."""
  if vecs.ndim == 3:
    return jnp.einsum("bnk,...bukf->...bunf", vecs, c)
  return jnp.einsum("bfnk,...bukf->...bunf", vecs, c)


def spatial_covariance(observation: srs.SRSObservation) -> tuple[jax.Array, jax.Array]:
  """Eigendecomposition ``(vals [B, n_bs], vecs [B, n_bs, n_bs])`` of the noise-corrected ``R`` (module docstring)."""
  G = srs.history_gramian(observation)                         # E[conj(h) h^T] + nv I
  nv = observation.noise_var.astype(jnp.float32)
  R = jnp.swapaxes(G, -1, -2) - nv[:, None, None] * jnp.eye(G.shape[-1], dtype=G.dtype)
  vals, vecs = jnp.linalg.eigh(0.5 * (R + jnp.conj(jnp.swapaxes(R, -1, -2))))
  return jnp.maximum(vals, 0.0), vecs


def user_prior(observation: srs.SRSObservation, train_prior, *, shrinkage: float = gaussian_prior.SHRINKAGE):
  """A per-user Gaussian prior of the target channel rows: ``CN(0, R (x) C_f)`` for each UE antenna's
  ``[n_bs, n_prb]`` channel, with ``R`` this user's noise-corrected spatial covariance from its own SRS history
  (:func:`spatial_covariance`, the Gaussian predictor's) and ``C_f`` the frequency factor of ``train_prior`` (a
  :class:`jaxchan.gaussian_prior.KroneckerGaussian` fitted on training targets), scaled to unit mean variance so
  that ``diag(R (x) C_f)`` follows the user's own power.

  This keeps what an element-wise likelihood loses: the user's beam, which ages far more slowly than the phase.
  With no reliable element at all, posterior samples under this prior still concentrate on the history's
  dominant eigenvectors, as the sample-covariance precoder does, where the training set's prior would return the
  average user's.

  Args:
    observation: SRS observation, ``obs`` ``[B, n_occ, n_ue, n_bs, n_prb]``.
    train_prior: Kronecker prior of training targets ``[n_bs, n_prb]`` (its antenna factor is replaced).
    shrinkage: floor of ``R``'s eigenvalues relative to their mean (a short history's ``R`` is rank deficient);
      the training prior's own floor by default.

  Returns:
    A per-sample :class:`~jaxchan.gaussian_prior.KroneckerGaussian` (:func:`jaxchan.gaussian_prior.stack` layout)
    of ``B n_ue`` priors, ordered as ``target.reshape(B * n_ue, n_bs, n_prb)``.
  """
  B, _, n_ue, n_bs, n_prb = observation.obs.shape
  if not isinstance(train_prior, gaussian_prior.KroneckerGaussian) or train_prior.mean.ndim != 2:
    raise ValueError("user_prior takes one Kronecker prior of the training targets (gaussian_prior.fit); got "
                     f"{type(train_prior).__name__} with a mean of shape {tuple(np.shape(train_prior.mean))}.")
  if train_prior.shape != (n_bs, n_prb):
    raise ValueError(f"the training prior is for channels {train_prior.shape} but the targets are "
                     f"{(n_bs, n_prb)} (n_bs, n_prb); fit it on the targets of this dataset.")
  checks.in_range("shrinkage", shrinkage, 0.0, 1.0 - 1e-12)
  vals, vecs = spatial_covariance(observation)                                 # [B, N], [B, N, N]
  vals = jnp.maximum(vals, shrinkage * jnp.mean(vals, axis=-1, keepdims=True))
  sub_vals = train_prior.sub_vals / jnp.mean(train_prior.sub_vals)

  def per_antenna(x):
    return jnp.repeat(x, n_ue, axis=0)

  return gaussian_prior.KroneckerGaussian(
      mean=jnp.zeros((B * n_ue, n_bs, n_prb), jnp.complex64), ant_vals=per_antenna(vals.astype(jnp.float32)),
      ant_vecs=per_antenna(vecs.astype(jnp.complex64)),
      sub_vals=jnp.broadcast_to(sub_vals, (B * n_ue, n_prb)).astype(jnp.float32),
      sub_vecs=jnp.broadcast_to(train_prior.sub_vecs, (B * n_ue, n_prb, n_prb)).astype(jnp.complex64))


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
  coef = _to_basis(vecs, latest)                                                    # V^H y
  mean = _from_basis(vecs, gain[:, None, :, None] * coef) * r[:, None, None, :]
  cov_vals = vals[:, :, None] - (jnp.abs(r) ** 2)[:, None, :] * (vals * gain)[:, :, None]
  return GaussianPrediction(mean.astype(latest.dtype), vecs, jnp.maximum(cov_vals, 0.0))


def under_prior(latest, seen, noise_var, row_cov) -> GaussianPrediction:
  """The exact conditional Gaussian of the target under a known zero-mean prior, given noisy looks at some PRBs.

  Model: every UE antenna's row ``h_u`` (``[n_bs, n_prb]``, vectorized row-major, so element ``(n, f)`` sits at
  ``n n_prb + f``) is ``CN(0, C)`` with ``C = row_cov``, independently over rows; a PRB with ``seen`` is observed
  as ``latest = h + CN(0, nv I)``, the others not at all. Then (LMMSE, exact for this Gaussian)

  ``E[h_u | y] = C S (S C S + nv I)^-1 S y_u``,  ``Cov = C - C S (S C S + nv I)^-1 S C``,

  with ``S`` the diagonal 0/1 selection of the seen elements. Returned per PRB: the marginal covariance of the
  ``n_bs`` antennas in its own eigenbasis (``vecs`` ``[B, n_prb, n_bs, n_bs]``), all that per-PRB precoders and
  the per-PRB anchored terms use; the cross-PRB covariance is not kept. With a moment-matched ``C`` this is the
  best linear estimator of any prior with that covariance (e.g. a Gaussian mixture's, :mod:`jaxchan.oracle`).

  Args:
    latest: ``[B, n_ue, n_bs, n_prb]`` observations (ignored where not ``seen``).
    seen: ``[B, n_prb]`` bool.
    noise_var: ``[B]`` per-element noise variance of the observation.
    row_cov: ``[n_bs n_prb, n_bs n_prb]`` Hermitian positive semi-definite prior covariance of one row.
  """
  return _under_prior(latest, seen, noise_var, row_cov)[0]


def _under_prior(latest, seen, noise_var, row_cov):
  """:func:`under_prior` and the log-likelihood of the looks under ``row_cov`` (``[B]``, up to a constant shared by
  every prior), which weighs the components of :func:`under_mixture`."""
  B, n_ue, n_bs, n_prb = latest.shape
  d = n_bs * n_prb
  if row_cov.shape != (d, d):
    raise ValueError(f"row_cov has shape {tuple(row_cov.shape)}; channels of {n_bs} BS antennas x {n_prb} PRBs "
                     f"need ({d}, {d}) (one UE antenna's row, element (n, f) at n * n_prb + f).")
  C = jnp.asarray(row_cov, jnp.complex64)
  m = jnp.broadcast_to(seen[:, None, :], (B, n_bs, n_prb)).reshape(B, d).astype(jnp.float32)     # [B, d]
  nv = noise_var.astype(jnp.float32)[:, None]
  # S C S + nv S + (I - S): the unseen elements decouple (unit diagonal, zero right-hand side).
  K = (m[:, :, None] * m[:, None, :]) * C + jnp.eye(d, dtype=C.dtype) * (nv * m + (1.0 - m)).astype(C.dtype)[:, None, :]
  y = (latest.reshape(B, n_ue, d) * m[:, None, :].astype(latest.dtype)).astype(C.dtype)          # [B, U, d]
  chol = jax.vmap(jnp.linalg.cholesky)(K)
  solve = jax.vmap(lambda L, b: jax.scipy.linalg.cho_solve((L, True), b))
  SC = m[:, :, None].astype(C.dtype) * C[None]                                                   # S C
  # Both right-hand sides in one solve: two independent solves in one program can stall XLA:CPU
  # (jaxchan.staged_precoding says why).
  z_all = solve(chol, jnp.concatenate([jnp.swapaxes(y, 1, 2), SC], -1))                         # [B, d, U + d]
  z, KSC = z_all[..., :n_ue], z_all[..., n_ue:]
  mean = jnp.einsum("ij,bjU->bUi", C, m[:, :, None].astype(C.dtype) * z).reshape(B, n_ue, n_bs, n_prb)
  cov = C[None] - jnp.einsum("bji,bjk->bik", jnp.conj(SC), KSC)                                  # C - C S K^-1 S C
  blocks = cov.reshape(B, n_bs, n_prb, n_bs, n_prb)
  per_prb = jnp.moveaxis(jnp.diagonal(blocks, axis1=2, axis2=4), -1, 1)                         # [B, F, N, N]
  vals, vecs = jnp.linalg.eigh(0.5 * (per_prb + jnp.conj(jnp.swapaxes(per_prb, -1, -2))))
  # log p(y | C) up to a constant every prior shares: -sum_u y_u^H K^-1 y_u - n_ue log det K (an unseen element
  # has a unit pivot and a zero right-hand side, so it adds nothing).
  quad = jnp.real(jnp.einsum("bUi,biU->b", jnp.conj(y), z))
  logdet = 2.0 * jnp.sum(jnp.log(jnp.real(jnp.diagonal(chol, axis1=-2, axis2=-1))), axis=-1)
  pred = GaussianPrediction(mean.astype(latest.dtype), vecs, jnp.moveaxis(jnp.maximum(vals, 0.0), 1, 2))
  return pred, -quad - n_ue * logdet


class MixturePrediction(NamedTuple):
  """The conditional law of the target under a known Gaussian-mixture prior: a mixture of conditional Gaussians.

  ``components``: a :class:`GaussianPrediction` with a leading component axis ``K`` on every field (component
  ``k``'s exact conditional Gaussian, :func:`under_prior`); ``log_resp`` ``[B, K]``: the log posterior weight of
  each component given the looks (they sum to one)."""
  components: GaussianPrediction
  log_resp: jax.Array


def under_mixture(latest, seen, noise_var, row_covs, log_weights) -> MixturePrediction:
  """The exact posterior of the target under a zero-mean Gaussian-mixture prior shared by the UE antennas' rows.

  Model: a component ``k`` (probability ``exp(log_weights[k])``) is drawn once per sample, then every UE
  antenna's row is ``CN(0, C_k)``, ``C_k = row_covs[k]``, independently; the looks are those of
  :func:`under_prior`. Given the looks, component ``k`` has posterior weight ``w_k ~ pi_k p(y | C_k)`` (every
  row's likelihood together) and the target is ``CN`` of :func:`under_prior` under ``C_k``, so the conditional
  mean :func:`mixture_mean` ``sum_k w_k E[h | y, k]`` is the exact CME of such a mixture (e.g. the user-cluster
  prior of :func:`jaxchan.oracle.clustered_mixture`, or one fitted on training channels).

  Args: those of :func:`under_prior`, with ``row_covs`` ``[K, n_bs n_prb, n_bs n_prb]`` and ``log_weights`` ``[K]``.
  """
  row_covs = jnp.asarray(row_covs, jnp.complex64)
  log_weights = jnp.asarray(log_weights, jnp.float32)
  if row_covs.ndim != 3 or log_weights.shape != row_covs.shape[:1]:
    raise ValueError(f"under_mixture needs row_covs [K, d, d] and log_weights [K]; got {tuple(row_covs.shape)} "
                     f"and {tuple(log_weights.shape)}.")
  preds, ll = jax.vmap(lambda C: _under_prior(latest, seen, noise_var, C))(row_covs)   # leading K; ll [K, B]
  return MixturePrediction(preds, jax.nn.log_softmax(ll.T + log_weights[None], axis=-1))


def mixture_mean(pred: MixturePrediction) -> jax.Array:
  """``E[h | y] = sum_k w_k E[h | y, k]``, ``[B, n_ue, n_bs, n_prb]``."""
  w = jnp.exp(pred.log_resp).astype(pred.components.mean.dtype)
  return jnp.einsum("bk,kbunf->bunf", w, pred.components.mean)


def mixture_denoise(pred: MixturePrediction, x_t: jax.Array, abar: jax.Array) -> jax.Array:
  """The posterior mean ``E[h | x_t, y]`` under the conditional mixture (:func:`denoise` per component).

  Component ``k`` explains ``x_t = sqrt(abar) h + sqrt(1 - abar) eps`` with likelihood
  ``CN(x_t; sqrt(abar) m_k, abar S_k + (1 - abar) I)``, diagonal in each PRB's eigenbasis; its weight given
  both is ``w_k(y)`` times that, and the mean is the weighted sum of the components' :func:`denoise`. As in
  :func:`under_prior`'s covariance, PRBs count as independent given ``y`` (the cross-PRB terms are not kept).
  """
  abar = jnp.asarray(abar, jnp.float32)
  a = jnp.sqrt(abar)[:, None, None, None]

  def one(comp):
    coef = _to_basis(comp.vecs, x_t - a.astype(x_t.dtype) * comp.mean)              # [B, U, N, F]
    var = abar[:, None, None] * comp.cov_vals + (1.0 - abar)[:, None, None]           # [B, N, F]
    ll = -jnp.sum(jnp.abs(coef) ** 2 / var[:, None], axis=(1, 2, 3)) - x_t.shape[1] * jnp.sum(jnp.log(var), (1, 2))
    return denoise(comp, x_t, abar), ll

  x0, ll = jax.vmap(one)(pred.components)                                             # [K, B, ...], [K, B]
  w = jax.nn.softmax(pred.log_resp + ll.T, axis=-1).astype(x0.dtype)
  return jnp.einsum("bk,kbunf->bunf", w, x0)


def expected_gramian(pred: GaussianPrediction) -> jax.Array:
  """``E[H_f^H H_f | y]`` per PRB, ``[B, n_bs, n_bs, n_prb]``: the K -> infinity Bayesian Gramian."""
  n_ue = pred.mean.shape[1]
  mean_part = jnp.einsum("buif,bujf->bijf", jnp.conj(pred.mean), pred.mean)
  # n_ue * Cov^T with Cov = V diag(c) V^H: Cov^T = conj(V) diag(c) V^T.
  c = pred.cov_vals.astype(pred.vecs.dtype)
  if pred.vecs.ndim == 3:
    cov_t = jnp.einsum("bik,bkf,bjk->bijf", jnp.conj(pred.vecs), c, pred.vecs)
  else:
    cov_t = jnp.einsum("bfik,bkf,bfjk->bijf", jnp.conj(pred.vecs), c, pred.vecs)
  return mean_part + n_ue * cov_t


def sample(pred: GaussianPrediction, key: jax.Array, num: int) -> jax.Array:
  """``num`` draws of the target from the conditional Gaussian, ``[num, B, n_ue, n_bs, n_prb]``."""
  checks.positive_int("num", num)
  z = conventions.standard_normal(key, (num,) + pred.mean.shape, pred.mean.dtype)
  scaled = jnp.sqrt(pred.cov_vals)[None, :, None, :, :].astype(z.dtype) * z          # coordinates in V
  return pred.mean[None] + _from_basis(pred.vecs, scaled)


def unconditional(pred: GaussianPrediction, keep: jax.Array) -> GaussianPrediction:
  """Samples with ``keep = False`` (``[B]`` bool) get the observation-free prior ``CN(0, I)`` of a unit-power
  channel: classifier-free guidance's null condition (eq. 12) must not see the history."""
  k = keep[:, None, None]
  return GaussianPrediction(jnp.where(k[..., None], pred.mean, 0), pred.vecs, jnp.where(k, pred.cov_vals, 1.0))


def denoise(pred: GaussianPrediction, x_t: jax.Array, abar: jax.Array) -> jax.Array:
  """The exact posterior mean ``E[h | x_t]`` (the clean estimate of eq. 7) under the conditional Gaussian.

  ``x_t = sqrt(abar) h + sqrt(1 - abar) eps`` (eq. 3) with ``h ~ CN(m, S)``, ``S = V diag(c_f) V^H`` per PRB:
  ``E[h | x_t] = m + V diag(sqrt(abar) c / (abar c + 1 - abar)) V^H (x_t - sqrt(abar) m)``, diagonal in ``R``'s
  eigenbasis, so it costs two ``n_bs x n_bs`` products per row. ``x_t``: ``[B, n_ue, n_bs, n_prb]``;
  ``abar``: ``[B]``.
  """
  abar = jnp.asarray(abar, jnp.float32)
  a = jnp.sqrt(abar)
  coef = _to_basis(pred.vecs, x_t - a[:, None, None, None].astype(x_t.dtype) * pred.mean)
  c = pred.cov_vals
  gain = c * a[:, None, None] / (abar[:, None, None] * c + (1.0 - abar)[:, None, None])       # [B, N, F]
  return pred.mean + _from_basis(pred.vecs, gain[:, None].astype(x_t.dtype) * coef)


def latent(pred: GaussianPrediction, n_rows: int) -> jax.Array:
  """``Z`` ``[B, n_rows, n_bs, n_prb]`` whose Gramian ``sum_u conj(z_u) z_u^T`` is the best rank-``n_rows``
  approximation of :func:`expected_gramian`: its dominant ``N_s <= n_rows`` eigenvectors, hence the
  ``K -> infinity`` Gaussian Bayesian precoder (eq. 28), are those of the full ``E[H^H H | y]``.

  The Gramian gets ``FLOOR (1 + tr G / n_bs) I`` first: the same eigenvectors, but no row of ``Z`` is 0 where
  the history carries no information (a zero row would leave the E2E precoder's eigenvalues equal at 0, with
  an unbounded derivative ``lam^(-1/2)``)."""
  G = jnp.moveaxis(expected_gramian(pred), -1, 1)                               # [B, F, N, N]
  n = G.shape[-1]
  tr = jnp.real(jnp.trace(G, axis1=-2, axis2=-1))[..., None, None] / n
  G = G + (LATENT_FLOOR * (1.0 + tr)).astype(G.dtype) * jnp.eye(n, dtype=G.dtype)
  lam, U = jnp.linalg.eigh(0.5 * (G + jnp.conj(jnp.swapaxes(G, -1, -2))))
  lam, U = lam[..., ::-1][..., :n_rows], U[..., ::-1][..., :n_rows]               # [B, F, r], [B, F, N, r]
  # conj(z) z^T = lam e e^H for z = sqrt(lam) conj(e).
  Z = jnp.conj(U) * jnp.sqrt(jnp.maximum(lam, 0.0))[..., None, :].astype(U.dtype)
  return jnp.moveaxis(Z, (1, 3), (3, 1)).astype(pred.mean.dtype)               # [B, r, N, F]
