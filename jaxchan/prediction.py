"""SRS-based channel prediction with one backbone trained three ways (perception-distortion paper).

Pure functions of ``(apply_fn / params, inputs, key)`` around
:class:`jaxchan.models.transformer.ChannelTransformer`:

* :func:`sl_loss` - the discriminative model, ERM with an MSE loss (eq. 14);
  :func:`sl_predict` its point estimate (an approximate CME, eq. 13).
* :func:`dm_loss` - velocity (default) or epsilon prediction (eq. 6, the paper's
  literal choice) on the cosine schedule with the conditioning dropped to the null token with probability ``p_uncond`` (CFG
  training); :func:`sample_posterior` draws K posterior samples as one batched,
  jitted reverse loop (eq. 5, guidance eq. 12), the encoder run once.
* :func:`e2e_loss` - the E2E baseline: the backbone's output is a latent
  channel, the precoder the dominant eigenvectors of its Gramian
  (:func:`jaxchan.precoding.latent_precoder`), trained to maximize the received
  energy of eq. (28) on the true channel.

Batches are dicts with ``history`` ``[B, n_occ, n_ue, n_bs, n_prb]`` and
``target`` ``[B, n_ue, n_bs, n_prb]`` (:mod:`jaxchan.data`); the SRS
observation of the history is drawn inside each loss (fresh hop phase, SNR and
noise at every step, :func:`jaxchan.srs.observe`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxchan import checks, conventions, ddpm, ddpm_solvers, metrics, precoding, srs
from jaxchan.schedules import DDPMSchedule
from jaxchan.srs import SRSConfig


def _observe(batch, key, srs_cfg: SRSConfig):
  return srs.observe(batch["history"], key, num_hops=srs_cfg.num_hops, snr_db_range=tuple(srs_cfg.snr_db_range))


def _mean_sq(x):
  return jnp.mean(jnp.abs(x) ** 2)


def sl_loss(model, params, batch, key, srs_cfg: SRSConfig = SRSConfig()) -> jax.Array:
  """MSE of the SL prediction, eq. (14): ``mean |h - f(y)|^2`` (channels have unit power)."""
  k_obs, k = jax.random.split(key)
  return sl_objective(model, params, batch["target"], _observe(batch, k_obs, srs_cfg), k)


def sl_objective(model, params, h: jax.Array, obs: srs.SRSObservation, key: jax.Array) -> jax.Array:
  """Eq. (14) for a given observation: ``mean |h - f(obs)|^2``; ``key`` drives dropout.

  The loss of :func:`sl_loss` once the SRS observation is drawn; other observation
  models (e.g. the exact-posterior experiment's) train the same backbone through it.
  """
  pred = model.apply(params, obs.obs, obs.mask, obs.noise_var, train=True, rngs={"dropout": key})
  return _mean_sq(h - pred)


def dm_loss(model, params, batch, key, schedule: DDPMSchedule, *, p_uncond: float = 0.1,
            srs_cfg: SRSConfig = SRSConfig(), prediction: str = "v") -> jax.Array:
  """The denoising loss with classifier-free-guidance conditioning dropout.

  ``prediction="v"``: ``|v - v_hat|^2`` with ``v = sqrt(abar) eps - sqrt(1 - abar) h``
  (:func:`jaxchan.ddpm.v_target`); ``"eps"``: ``|eps - eps_hat|^2``, eq. (6) as the
  paper writes it. ``t`` is uniform in ``1..T`` per sample; the conditioning of
  each sample is replaced by the null token with probability ``p_uncond``.
  """
  k_obs, k = jax.random.split(key)
  return dm_objective(model, params, batch["target"], _observe(batch, k_obs, srs_cfg), k, schedule,
                      p_uncond=p_uncond, prediction=prediction)


def dm_objective(model, params, h: jax.Array, obs: srs.SRSObservation, key: jax.Array, schedule: DDPMSchedule, *,
                 p_uncond: float = 0.1, prediction: str = "v") -> jax.Array:
  """The loss of :func:`dm_loss` for a given observation (``t``, noise and the null-token draw from ``key``)."""
  checks.choice("prediction", prediction, ddpm.PREDICTIONS)
  k_t, k_eps, k_drop, k_do = jax.random.split(key, 4)
  B = h.shape[0]
  t = jax.random.randint(k_t, (B,), 1, schedule.num_steps + 1)
  x_t, eps = ddpm.q_sample(h, t, k_eps, schedule)
  drop = jax.random.bernoulli(k_drop, p_uncond, (B,))
  out = model.apply(params, obs.obs, obs.mask, obs.noise_var, x_t, t, drop, train=True, rngs={"dropout": k_do})
  return _mean_sq((eps if prediction == "eps" else ddpm.v_target(h, eps, t, schedule)) - out)


def e2e_loss(model, params, batch, key, *, n_streams: int, srs_cfg: SRSConfig = SRSConfig()) -> jax.Array:
  """Negative captured energy ``-sum E||H_k W_k||^2 / sum E||H_k||^2``, eq. (28) on the true channel.

  Dividing by the channel energy keeps the loss in ``[-1, 0]`` and does not
  move its maximizer (the denominator does not depend on ``W``).
  """
  k_obs, k_drop = jax.random.split(key)
  o = _observe(batch, k_obs, srs_cfg)
  Z = model.apply(params, o.obs, o.mask, o.noise_var, train=True, rngs={"dropout": k_drop})
  W = precoding.latent_precoder(Z, n_streams)
  h = batch["target"]
  return -jnp.sum(precoding.received_energy(h, W)) / jnp.sum(jnp.mean(jnp.sum(jnp.abs(h) ** 2, axis=(-3, -2)), -1))


def sl_predict(model, params, obs: srs.SRSObservation) -> jax.Array:
  """The SL point estimate ``[B, n_ue, n_bs, n_prb]``."""
  return model.apply(params, obs.obs, obs.mask, obs.noise_var)


def e2e_precoder(model, params, obs: srs.SRSObservation, n_streams: int) -> jax.Array:
  """The E2E precoder ``[B, n_bs, n_streams, n_prb]``."""
  return precoding.latent_precoder(model.apply(params, obs.obs, obs.mask, obs.noise_var), n_streams)


@dataclasses.dataclass(frozen=True)
class Sampling:
  """How the DM draws posterior samples: a small value, validated on construction.

  Attributes:
    num_samples: K >= 1.
    guidance: CFG scale ``w`` of eq. (12), a Python float; ``w = 1`` conditional (one decoder pass per step),
      ``w = 0`` unconditional prior; outside ``[0, 1]`` only with ``allow_extrapolation``.
    prediction: what the model was trained to predict, ``"v"`` or ``"eps"`` (:func:`dm_loss`).
    clip_x0: clip the jump-to-clean estimate to this element magnitude (:func:`jaxchan.ddpm.ddpm_step`).
    solver: a few-step solver (:class:`jaxchan.ddpm_solvers.Solver`, e.g. ``Solver.parse("dpm2m:10")``) instead
      of the full ancestral chain (``None``); guidance works the same.
    variance: the full chain's reverse-step variance (``"posterior"`` or ``"beta"``).
    deterministic: the full chain propagating only its reverse mean (Fesl et al.).
  """
  num_samples: int = 1
  guidance: float = 1.0
  allow_extrapolation: bool = False
  prediction: str = "v"
  clip_x0: float | None = None
  solver: ddpm_solvers.Solver | None = None
  variance: str = "posterior"
  deterministic: bool = False

  def __post_init__(self):
    checks.positive_int("num_samples (K)", self.num_samples)
    checks.choice("prediction", self.prediction, ddpm.PREDICTIONS)
    checks.choice("variance", self.variance, ddpm.VARIANCES)
    if not self.allow_extrapolation:
      checks.in_range("guidance scale w", self.guidance, 0.0, 1.0,
                      hint="w = 1 is conditional, w = 0 unconditional; pass allow_extrapolation=True to go beyond.")
    if self.solver is not None and (self.deterministic or self.variance != "posterior"):
      raise ValueError(f"solver={self.solver} replaces the full chain; deterministic and variance apply only to "
                       "the full ancestral chain (solver=None).")


def sample_posterior(model, params, obs: srs.SRSObservation, key: jax.Array, schedule: DDPMSchedule,
                     sampling: Sampling | None = None, *, record: Callable[[ddpm.Trajectory], Any] | None = None,
                     **settings):
  """Draw ``K = num_samples`` posterior samples per observation, one reverse loop for all of them.

  The encoder runs once per observation (twice with guidance: conditional and
  null); its memory is repeated for the K samples and the decoder iterates
  ``T`` times inside one ``lax.scan`` (:func:`jaxchan.ddpm.sample`).

  Args:
    model, params: a ``use="dm"`` :class:`ChannelTransformer` and its parameters.
    obs: the SRS observation, batch ``B``.
    key: PRNG key (start noise and the reverse-step noise).
    schedule: the training schedule.
    sampling: the settings (:class:`Sampling`); or give its fields as keywords (``num_samples=16,
      guidance=0.5, ...``), not both.
    record: per-step reduction of the trajectory of the full chain (see :func:`jaxchan.ddpm.sample`).

  Returns:
    ``[K, B, n_ue, n_bs, n_prb]`` samples (and the stacked records when ``record`` is given).
  """
  if sampling is None:
    sampling = Sampling(**settings)
  elif settings:
    raise ValueError(f"give the sampling settings either as sampling=Sampling(...) or as keywords, not both "
                     f"(got sampling and {sorted(settings)}).")
  s = sampling
  K, guidance, prediction, clip_x0, solver = s.num_samples, s.guidance, s.prediction, s.clip_x0, s.solver
  if solver is not None:
    solver.steps(schedule)      # a step count beyond T fails here, before any work
    if record is not None:
      raise ValueError(f"solver={solver} replaces the full chain; record applies only to the full ancestral chain "
                       "(solver=None).")
  B = obs.obs.shape[0]
  shape = (B,) + obs.obs.shape[2:]                                    # [B, n_ue, n_bs, n_prb]
  # Observation-major order (row b * K + k): a batch split over devices keeps each observation's
  # K samples on the device that holds the observation, so the reverse loop needs no communication.
  tile = lambda enc: jax.tree.map(lambda m: jnp.repeat(m, K, axis=0), enc)  # noqa: E731
  guided = guidance != 1.0
  if not guided:
    mem_c = tile(model.apply(params, obs.obs, obs.mask, obs.noise_var, method="encode"))
  else:
    # The conditional and the null encoding as one batch: one program may hold only one chain of the anchor's
    # LAPACK calls on CPU (jaxchan.staged_precoding says why).
    two = lambda a: jnp.concatenate([a, a])  # noqa: E731
    drop = jnp.concatenate([jnp.zeros((B,), bool), jnp.ones((B,), bool)])
    nv = jnp.broadcast_to(obs.noise_var, (B,))
    both = model.apply(params, two(obs.obs), two(obs.mask), two(nv), drop, method="encode")
    mem_c, mem_u = (tile(jax.tree.map(lambda m: m[sl], both)) for sl in (slice(0, B), slice(B, None)))

  def eps_fn(x, t):
    tt = jnp.full((x.shape[0],), t)
    if not guided:
      return ddpm.as_eps(prediction, x, model.apply(params, mem_c, x, tt, method="decode"), t, schedule)
    both = model.apply(params, jax.tree.map(lambda a, b: jnp.concatenate([a, b]), mem_c, mem_u),
                       jnp.concatenate([x, x]),
                       jnp.concatenate([tt, tt]), method="decode")
    # Eq. (12) on eps; the v -> eps map is affine with weights summing to one, so guiding v is the same.
    return ddpm.cfg_eps(ddpm.as_eps(prediction, x, both[:K * B], t, schedule),
                        ddpm.as_eps(prediction, x, both[K * B:], t, schedule), guidance, allow_extrapolation=True)

  k_init, k_rev = jax.random.split(key)
  x_T = conventions.standard_normal(k_init, (B * K,) + shape[1:], obs.obs.dtype)
  if solver is not None:
    out = ddpm_solvers.sample(eps_fn, x_T, k_rev, schedule, solver, clip_x0=clip_x0)
  else:
    out = ddpm.sample(eps_fn, x_T, k_rev, schedule, deterministic=s.deterministic, variance=s.variance,
                      record=record, clip_x0=clip_x0)
  to_kb = lambda x: jnp.swapaxes(x.reshape((B, K) + shape[1:]), 0, 1)  # noqa: E731
  if record is not None:
    x0, rec = out
    return to_kb(x0), rec
  return to_kb(out)


def trajectory_metrics(h: jax.Array, num_samples: int = 1):
  """A ``record`` for :func:`sample_posterior`: per-step sums of squared error and GCS of ``x_t`` and ``x0_hat``.

  Returns a function of a :class:`jaxchan.ddpm.Trajectory` (batch ``B * K``, observation-major)
  giving ``[4]``: ``sum |x_t - h|^2``, ``sum |x0_hat - h|^2``, ``sum GCS(x_t)``,
  ``sum GCS(x0_hat)`` over samples (GCS averaged per sample over its BS-antenna
  vectors), so Fig. 6 needs no ``T`` stored copies of the state.
  """
  hk = jnp.repeat(h, num_samples, axis=0)

  def rec(tr: ddpm.Trajectory):
    err = lambda x: jnp.sum(jnp.abs(x - hk) ** 2)
    g = lambda x: jnp.sum(jnp.mean(metrics.gcs(hk, x, reduce="none"), axis=(-2, -1)))
    return jnp.stack([err(tr.x), err(tr.x0_hat), g(tr.x), g(tr.x0_hat)])

  return rec
