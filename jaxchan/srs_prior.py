"""Non-identical diffusion as the posterior sampler of an aged SRS history: one unconditional prior for every
SRS configuration (the two papers together).

A non-identical prior model (:class:`jaxchan.denoiser.VelocityDenoiser`, trained unconditionally on target
channels) sees one UE antenna's downlink channel ``[n_bs, n_prb]`` at a time. The SRS history reaches it in two
ways, neither of which needs training on histories:

1. **The reliability map** (non-identical paper, eqs. 14-16): each cell's latest sounding, rescaled by the
   per-occasion age correlation ``rho_o`` and the UL noise, is an element-wise observation ``H_bar = M o H + n``
   (:func:`jaxchan.srs.elementwise_observation`); its consistent start ``(g0, tau0)`` puts every cell at its own
   diffusion time, so a fresh, clean sounding starts near the data and an old or unsounded one at ``T``.
2. **The per-user Gaussian anchor** (``anchor="user"``): the anchored denoiser's Gaussian part uses
   ``CN(0, R (x) C_f)`` with ``R`` the user's own noise-corrected spatial covariance from its history
   (:func:`jaxchan.gaussian_predictor.user_prior`) instead of the training set's prior (``anchor="train"``).
   The user's beam ages far more slowly than the phase: at high speed the reliability map is nearly empty, and this
   is what the sample-covariance precoder lives on.

**Why the innovation is not white.** Eq. (14) treats the aging innovation of a cell as white noise of power
``1 - |rho|^2``. Under a Gauss-Markov model whose innovation has the prior's own covariance ``C``
(``h_o = conj(rho) h + sqrt(1 - |rho|^2) w``, ``w ~ CN(0, C)``), the observation along an eigenvector of ``C`` with
eigenvalue ``lam`` has signal-to-noise ratio ``|rho|^2 lam / ((1 - |rho|^2) lam + nv)``, bounded by
``|rho|^2 / (1 - |rho|^2)``; the white likelihood gives ``|rho|^2 lam / (1 - |rho|^2 + nv)``, growing with
``lam``. With a per-user prior, whose ``lam`` reach tens, the white likelihood then trusts a stale sounding along
the user's beam far more than it deserves (measured on the high-mobility data: one-shot NMSE +4.9 dB, worse than
predicting 0). Counting the innovation ``kappa = lam_max`` times its white power (:func:`innovation_scale`, from
the prior the anchor uses) makes the element-wise likelihood nowhere more confident than the exact one when every
cell shares one ``rho`` (with hopping, cells come from different occasions and the bound holds per occasion), at the
price of under-using the weak directions. ``"joint"`` takes ``lam_max`` of the whole covariance, ``"spatial"`` of
the antenna factor at the frequency factor's mean (it bounds the spatial directions only), ``"white"`` is eq. (14)
as printed; the experiment picks one on training histories (``jaxchan.experiments.noniden_srs``).

Shapes: histories ``[B, n_occ, n_ue, n_bs, n_prb]``, targets ``[B, n_ue, n_bs, n_prb]``; the prior model works on
rows ``[B n_ue, n_bs, n_prb]`` (:func:`to_rows`: sample-major, one row per UE antenna, the order of
:func:`jaxchan.gaussian_predictor.user_prior`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxchan import checks, denoiser, gaussian_predictor, gaussian_prior, noniden, srs, stepping

#: How much of the aging innovation the reliability map counts (module docstring).
INNOVATIONS = ("white", "spatial", "joint")
#: Which Gaussian prior the anchored denoiser uses at inference (module docstring).
ANCHORS = ("train", "user")


def to_rows(x: jax.Array) -> jax.Array:
  """``[B, n_ue, n_bs, n_prb] -> [B n_ue, n_bs, n_prb]``: one row per UE antenna."""
  checks.min_ndim("x", x, 4, "[B, n_ue, n_bs, n_prb]")
  return x.reshape((-1,) + x.shape[-2:])


def from_rows(x: jax.Array, n_ue: int) -> jax.Array:
  """The inverse of :func:`to_rows` on the last three axes: ``[..., B n_ue, n_bs, n_prb] -> [..., B, n_ue, ...]``."""
  if x.shape[-3] % n_ue:
    raise ValueError(f"{x.shape[-3]} rows are not a whole number of samples of n_ue={n_ue} UE antennas.")
  return x.reshape(x.shape[:-3] + (x.shape[-3] // n_ue, n_ue) + x.shape[-2:])


def innovation_scale(prior: gaussian_prior.KroneckerGaussian, kind: str, batch: int) -> jax.Array:
  """``kappa`` ``[batch]`` of :func:`jaxchan.srs.elementwise_observation` for the Kronecker prior the anchor uses
  (one for all samples, or one per row of ``batch`` samples x ``n_ue``, as :func:`jaxchan.gaussian_predictor.user_prior`
  stacks them): ``"white"`` 1; ``"spatial"`` the largest eigenvalue of the antenna factor times the frequency
  factor's mean eigenvalue (the strongest spatial direction's power per element); ``"joint"`` the largest
  eigenvalue of the whole covariance. Never below 1 (eq. 14's white innovation): larger only makes the map less
  confident."""
  checks.choice("innovation", kind, INNOVATIONS)
  if kind == "white":
    return jnp.ones((batch,), jnp.float32)
  sub = prior.sub_vals.max(-1) if kind == "joint" else prior.sub_vals.mean(-1)
  kappa = prior.ant_vals.max(-1) * sub
  if prior.mean.ndim == 3:                          # one prior per row: a UE antenna's rows share the user's R
    kappa = kappa.reshape(batch, -1).max(-1)
  return jnp.broadcast_to(jnp.maximum(kappa, 1.0), (batch,)).astype(jnp.float32)


class SRSStart(NamedTuple):
  """What the prior model starts from for one batch of histories: the consistent ``start`` (rows, eq. 16) and the
  reliability map ``m`` (rows), with the denoiser ``den`` whose anchor is the one asked for."""
  start: noniden.Start
  m: jax.Array
  den: denoiser.VelocityDenoiser


def condition(den: denoiser.VelocityDenoiser, observation: srs.SRSObservation, rho, key: jax.Array, *,
              anchor: str = "user", innovation: str = "spatial") -> SRSStart:
  """The start of non-identical generation for an SRS history, and the denoiser with the chosen anchor.

  Args:
    den: the prior model, anchored on a Kronecker prior of training targets ``[n_bs, n_prb]``.
    observation: SRS observation (:func:`jaxchan.srs.observe`), ``obs`` ``[B, n_occ, n_ue, n_bs, n_prb]``.
    rho: ``[n_occ]`` per-occasion age correlation (:func:`jaxchan.gaussian_predictor.fit_age_correlation`).
    key: PRNG key (the noise standing in for unsounded cells).
    anchor: ``"user"`` (the per-user prior) or ``"train"`` (the training set's).
    innovation: one of :data:`INNOVATIONS` (module docstring).
  """
  checks.choice("anchor", anchor, ANCHORS)
  if not isinstance(den.prior, gaussian_prior.KroneckerGaussian) or den.prior.mean.ndim != 2:
    raise ValueError("the SRS prior model must be anchored on one Kronecker prior of the training targets "
                     f"(config.model.anchor='kronecker'); this denoiser's anchor is {den.anchor!r}.")
  if den.prior.shape != observation.obs.shape[-2:]:
    raise ValueError(f"the prior model is for channels {den.prior.shape} (n_bs, n_prb) but the SRS history holds "
                     f"{tuple(observation.obs.shape[-2:])}; train it on the targets of this dataset.")
  if anchor == "user":
    den = den.replace(prior=gaussian_predictor.user_prior(observation, den.prior))
  kappa = innovation_scale(den.prior, innovation, observation.obs.shape[0])
  h_bar, m = srs.elementwise_observation(observation, rho, key, innovation=kappa)
  start = noniden.initial_state(to_rows(h_bar), to_rows(m), den.schedule)
  return SRSStart(start, to_rows(m), den)


def estimate(cond: SRSStart, params) -> jax.Array:
  """The one-shot estimate ``D(g0, tau0)`` (rows): the Gaussian posterior mean plus the learned residual, the anchor
  solved to convergence (:meth:`jaxchan.denoiser.VelocityDenoiser.point_estimate`)."""
  return cond.den.point_estimate(params, cond.start.g0, cond.start.tau0)


def posterior_samples(cond: SRSStart, params, key: jax.Array, num: int, *,
                      stepping_: stepping.Stepping = stepping.Stepping(), sampler: noniden.Sampler = noniden.Sampler(),
                      num_steps: int = 50) -> jax.Array:
  """``num`` posterior samples of every row by non-identical generation (Algorithm 2), ``[num, B n_ue, n_bs,
  n_prb]``; each sample is one generation from the same start with its own key."""
  checks.positive_int("num", num)
  D = cond.den.bind(params)

  def one(k):
    return noniden.generate(D, cond.start, k, cond.den.schedule, stepping=stepping_, sampler=sampler,
                            num_steps=num_steps, draw=noniden.draw_for(cond.den, params, sampler))

  return jax.vmap(one)(jax.random.split(key, num))
