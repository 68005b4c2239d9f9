"""Standard (identical) diffusion with epsilon prediction, as in the perception-distortion paper.

Scalar step ``t = 1..T`` with a :class:`jaxchan.schedules.DDPMSchedule`
(cosine by default). Equations refer to ``../shared/papers/NOTES.md``:

* (3) forward ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``;
* (5) reverse mean ``mu = (x_t - beta_t / sqrt(1 - abar_t) eps_hat) / sqrt(1 - beta_t)``;
* (7) jump-to-clean ``x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)``;
* (12) classifier-free guidance ``eps_w = w eps(x, y) + (1 - w) eps(x, null)``
  (``w = 1`` conditional, ``w = 0`` unconditional prior);
* the deterministic variant of Fesl et al. propagates only ``mu``.

What the network predicts (``PREDICTIONS``): the paper's ``eps`` (eq. 6), or the
velocity ``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0`` (Salimans & Ho 2022),
the same target the non-identical model trains on. Both give the same sampler
through :func:`eps_from_v`; they differ in how errors propagate. Near ``t = T``
``abar_t -> 0`` and eq. (7) multiplies an error of ``eps_hat`` by
``sqrt((1 - abar_t) / abar_t)``, while an error of ``v_hat`` reaches ``x0_hat``
scaled by ``sqrt(1 - abar_t) <= 1``: the eps loss hardly weighs the steps where
sampling is most sensitive, the v loss weighs them as an ``x0`` loss.

``t`` is a scalar or a ``[B]`` vector (one step per sample); arrays are
``[B, *event]``, real or complex.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxchan import checks
from jaxchan import conventions
from jaxchan.schedules import DDPMSchedule

VARIANCES = ("beta", "posterior")
PREDICTIONS = ("v", "eps")

EpsFn = Callable[[jax.Array, jax.Array], jax.Array]


def _coef(table: jax.Array, t, x: jax.Array) -> jax.Array:
  """``table[t]`` shaped to multiply ``x``: scalar ``t`` or one ``t`` per sample."""
  t = jnp.asarray(t)
  if t.ndim == 0:
    return table[t]
  if t.ndim == 1 and x.ndim >= 1 and t.shape[0] == x.shape[0]:
    return table[t].reshape((-1,) + (1,) * (x.ndim - 1))
  raise ValueError(f"t must be a scalar or one step per sample, shape ({x.shape[0] if x.ndim else 1},); "
                   f"got shape {t.shape} for x of shape {x.shape}.")


def q_sample(x0: jax.Array, t, key: jax.Array, schedule: DDPMSchedule):
  """Forward process, eq. (3). Returns ``(x_t, eps)``."""
  eps = conventions.standard_normal(key, x0.shape, x0.dtype)
  abar = _coef(schedule.alpha_bars, t, x0)
  return jnp.sqrt(abar) * x0 + jnp.sqrt(1.0 - abar) * eps, eps


def x0_from_eps(x_t: jax.Array, eps_hat: jax.Array, t, schedule: DDPMSchedule) -> jax.Array:
  """Jump-to-clean prediction, eq. (7)."""
  checks.same_shape("x_t", x_t, "eps_hat", eps_hat)
  abar = _coef(schedule.alpha_bars, t, x_t)
  return (x_t - jnp.sqrt(1.0 - abar) * eps_hat) / jnp.sqrt(abar)


def eps_from_x0(x_t: jax.Array, x0: jax.Array, t, schedule: DDPMSchedule) -> jax.Array:
  """The epsilon implied by a clean estimate (inverse of eq. 7)."""
  checks.same_shape("x_t", x_t, "x0", x0)
  abar = _coef(schedule.alpha_bars, t, x_t)
  return (x_t - jnp.sqrt(abar) * x0) / jnp.sqrt(1.0 - abar)


def v_target(x0: jax.Array, eps: jax.Array, t, schedule: DDPMSchedule) -> jax.Array:
  """The velocity ``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0`` of a forward sample (eq. 3)."""
  checks.same_shape("x0", x0, "eps", eps)
  abar = _coef(schedule.alpha_bars, t, x0)
  return jnp.sqrt(abar) * eps - jnp.sqrt(1.0 - abar) * x0


def eps_from_v(x_t: jax.Array, v_hat: jax.Array, t, schedule: DDPMSchedule) -> jax.Array:
  """``eps_hat = sqrt(1 - abar_t) x_t + sqrt(abar_t) v_hat`` (exact inverse of :func:`v_target` given ``x_t``)."""
  checks.same_shape("x_t", x_t, "v_hat", v_hat)
  abar = _coef(schedule.alpha_bars, t, x_t)
  return jnp.sqrt(1.0 - abar) * x_t + jnp.sqrt(abar) * v_hat


def as_eps(prediction: str, x_t: jax.Array, out: jax.Array, t, schedule: DDPMSchedule) -> jax.Array:
  """The epsilon estimate implied by a network output of kind ``prediction`` (``"v"`` or ``"eps"``)."""
  checks.choice("prediction", prediction, PREDICTIONS)
  return out if prediction == "eps" else eps_from_v(x_t, out, t, schedule)


def reverse_mean(x_t: jax.Array, eps_hat: jax.Array, t, schedule: DDPMSchedule) -> jax.Array:
  """Reverse-process mean, eq. (5)."""
  checks.same_shape("x_t", x_t, "eps_hat", eps_hat)
  beta = _coef(schedule.betas, t, x_t)
  abar = _coef(schedule.alpha_bars, t, x_t)
  return (x_t - beta / jnp.sqrt(1.0 - abar) * eps_hat) / jnp.sqrt(1.0 - beta)


def clip_magnitude(x: jax.Array, limit: float) -> jax.Array:
  """Scale every element with ``|x| > limit`` back to magnitude ``limit`` (phase kept)."""
  mag = jnp.abs(x)
  return x * jnp.where(mag > limit, limit / jnp.where(mag > 0, mag, 1.0), 1.0).astype(x.dtype)


def reverse_mean_from_x0(x_t: jax.Array, x0: jax.Array, t, schedule: DDPMSchedule) -> jax.Array:
  """The reverse mean written through the clean estimate (DDPM eq. 7 of Ho et al.):
  ``mu = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t``.

  With ``x0`` from eq. (7) this equals :func:`reverse_mean` (eq. 5) exactly; it
  differs only when ``x0`` is modified, e.g. clipped.
  """
  checks.same_shape("x_t", x_t, "x0", x0)
  abar = schedule.alpha_bars
  prev = jnp.concatenate([jnp.ones((1,), abar.dtype), abar[:-1]])
  c0 = _coef(jnp.sqrt(prev) * schedule.betas / jnp.maximum(1.0 - abar, 1e-20), t, x_t)
  ct = _coef(jnp.sqrt(schedule.alphas) * (1.0 - prev) / jnp.maximum(1.0 - abar, 1e-20), t, x_t)
  return c0 * x0 + ct * x_t


def reverse_std(t, schedule: DDPMSchedule, variance: str = "posterior", like: jax.Array | None = None):
  """Std of the reverse step: ``sqrt(beta_t)`` or the posterior ``sqrt(beta_tilde_t)``.

  ``beta_tilde_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t`` (0 at ``t = 1``).
  """
  checks.choice("variance", variance, VARIANCES)
  if variance == "beta":
    table = schedule.betas
  else:
    abar = schedule.alpha_bars
    prev = jnp.concatenate([jnp.ones((1,), abar.dtype), abar[:-1]])
    table = jnp.where(jnp.arange(abar.shape[0]) > 0,
                      (1.0 - prev) / jnp.maximum(1.0 - abar, 1e-20) * schedule.betas, 0.0)
  return jnp.sqrt(_coef(table, t, like) if like is not None else table[t])


def ddpm_step(x_t: jax.Array, eps_hat: jax.Array, t, key: jax.Array, schedule: DDPMSchedule, *,
              variance: str = "posterior", deterministic: bool = False, clip_x0: float | None = None) -> jax.Array:
  """One ancestral step ``x_{t-1} = mu + sigma_t z`` (eq. 5); no noise at ``t = 1``.

  ``deterministic=True`` is the Fesl et al. variant: ``x_{t-1} = mu``.
  ``clip_x0``: clip the jump-to-clean estimate (eq. 7) to this element magnitude
  and form ``mu`` from it (:func:`reverse_mean_from_x0`). Near ``t = T`` the
  cosine schedule's ``beta_t -> 0.999`` multiplies any error of ``eps_hat`` by up
  to ``1/sqrt(1 - beta_t) ~ 30`` per step; the clip keeps a partly trained
  model's chain bounded (the image-diffusion practice of clipping ``x0`` to the
  data range). ``None`` is eq. (5) as written.
  """
  checks.choice("variance", variance, VARIANCES)
  if clip_x0 is None:
    mu = reverse_mean(x_t, eps_hat, t, schedule)
  else:
    mu = reverse_mean_from_x0(x_t, clip_magnitude(x0_from_eps(x_t, eps_hat, t, schedule), clip_x0), t, schedule)
  if deterministic:
    return mu
  sigma = reverse_std(t, schedule, variance, like=x_t)
  z = conventions.standard_normal(key, x_t.shape, x_t.dtype)
  sigma = jnp.where(_coef(jnp.arange(schedule.betas.shape[0]), t, x_t) > 1, sigma, 0.0)
  return mu + sigma * z


def cfg_eps(eps_cond: jax.Array, eps_uncond: jax.Array, w, *, allow_extrapolation: bool = False):
  """Classifier-free guidance, eq. (12): ``w eps_cond + (1 - w) eps_uncond``.

  ``w = 1`` is plain conditional sampling, ``w = 0`` the unconditional prior.
  ``w`` outside ``[0, 1]`` (extrapolating guidance) must be asked for with
  ``allow_extrapolation=True``.
  """
  checks.same_shape("eps_cond", eps_cond, "eps_uncond", eps_uncond)
  if not allow_extrapolation:
    checks.in_range("w (guidance scale)", w, 0.0, 1.0,
                    hint="w = 1 is conditional, w = 0 unconditional; pass allow_extrapolation=True "
                         "to guide beyond that range.")
  return w * eps_cond + (1.0 - w) * eps_uncond


class Trajectory(NamedTuple):
  """Per-step record of :func:`sample`, leading axis over steps ``t = T..1``.

  Attributes:
    x: state after each step (``x_{t-1}``), ``[T, B, *event]``.
    x0_hat: jump-to-clean prediction at each step (from ``x_t``), ``[T, B, *event]``.
  """
  x: jax.Array
  x0_hat: jax.Array


def sample(eps_fn: EpsFn, x_T: jax.Array, key: jax.Array, schedule: DDPMSchedule, *,
           deterministic: bool = False, variance: str = "posterior",
           record: Callable[[Trajectory], object] | None = None, clip_x0: float | None = None):
  """Reverse diffusion from ``t = T`` to 0 as one ``lax.scan``.

  Args:
    eps_fn: ``eps_fn(x, t) -> eps_hat`` on ``[B, *event]`` with scalar ``t``;
      close over conditioning (and guidance, see :func:`cfg_eps`) here.
    x_T: start, usually ``CN(0, I)`` noise, ``[B, *event]``.
    key: PRNG key.
    schedule: the discrete schedule.
    deterministic: propagate only the reverse mean.
    variance: ``"posterior"`` (``beta_tilde``) or ``"beta"``.
    clip_x0: clip ``x0_hat`` to this element magnitude (see :func:`ddpm_step`).
    record: also return ``record(Trajectory(x_{t-1}, x0_hat))`` of every step, stacked over steps: the whole
      trajectory with ``record=lambda tr: tr`` (the paper's reverse-trajectory study, Fig. 6), or a reduction
      (e.g. per-step error sums) so long chains do not hold ``T`` copies of the state.

  Returns:
    ``x_0`` estimate ``[B, *event]`` (and the stacked records if requested).
  """
  checks.choice("variance", variance, VARIANCES)
  T = schedule.num_steps
  ts = jnp.arange(T, 0, -1)
  keys = jax.random.split(key, T)

  def body(x, xs):
    t, k = xs
    eps_hat = eps_fn(x, t)
    x_prev = ddpm_step(x, eps_hat, t, k, schedule, variance=variance, deterministic=deterministic,
                       clip_x0=clip_x0)
    rec = None
    if record is not None:
      x0_hat = x0_from_eps(x, eps_hat, t, schedule)
      rec = Trajectory(x_prev.astype(x.dtype), x0_hat if clip_x0 is None else clip_magnitude(x0_hat, clip_x0))
      rec = record(rec)
    return x_prev.astype(x.dtype), rec

  x0, traj = jax.lax.scan(body, x_T, (ts, keys))
  return (x0, traj) if record is not None else x0


def gaussian_loss_bound(variances: jax.Array, schedule: DDPMSchedule, prediction: str = "eps") -> jax.Array:
  """The training loss of the exact estimator for a Gaussian prior, averaged over ``t = 1..T``.

  For ``x_t = sqrt(abar) x0 + sqrt(1 - abar) eps`` with ``x0`` Gaussian of covariance
  eigenvalues ``lambda_k`` (zero mean), the conditional mean of ``eps`` misses by
  ``abar lambda_k / (abar lambda_k + 1 - abar)`` per eigen-direction (the eq. 6 loss),
  and that of ``v`` by ``lambda_k / (abar lambda_k + 1 - abar)`` (the eps miss over
  ``abar``, since ``v - v_hat = (eps - eps_hat) / sqrt(abar)`` given ``x_t``). Averaged
  over the directions and the uniform training ``t``:

  * with the per-element variances of ``x0`` as ``variances``: the loss of
    per-element shrinkage (a diagonal Gaussian model), the bar a network must beat
    to have learned any correlation;
  * with the eigenvalues of the full covariance: the loss of the best Gaussian
    model of the data (below the diagonal one; the CME of non-Gaussian data can go lower).

  Args:
    variances: ``[d]`` non-negative variances or covariance eigenvalues (per complex element).
    schedule: the DDPM schedule (``T`` steps).
    prediction: ``"eps"`` or ``"v"`` (what the network predicts, :data:`PREDICTIONS`).

  Returns:
    Scalar mean loss per element.
  """
  checks.choice("prediction", prediction, PREDICTIONS)
  ab = schedule.alpha_bars[1:][:, None]
  lam = jnp.maximum(jnp.asarray(variances, jnp.float32), 0.0)[None, :]
  miss = lam / (ab * lam + 1.0 - ab)
  return jnp.mean(ab * miss if prediction == "eps" else miss)


def gaussian_chain_variance(variances: jax.Array, schedule: DDPMSchedule) -> jax.Array:
  """Variance of what the ancestral chain (eq. 5, posterior variance, no clip) outputs when its denoiser is the
  exact posterior mean of a Gaussian ``x0 ~ CN(m, c)``, per eigen-direction of variance ``c``.

  The chain is then linear: ``x_{t-1} - sqrt(abar_{t-1}) m = (c0_t k_t + ct_t) (x_t - sqrt(abar_t) m) +
  sigma_t z`` with the reverse-mean coefficients ``c0_t, ct_t`` of :func:`reverse_mean_from_x0` and the
  Wiener gain ``k_t = sqrt(abar_t) c / (abar_t c + 1 - abar_t)``, so the mean arrives exactly and the
  variance follows ``P_{t-1} = (c0_t k_t + ct_t)^2 P_t + sigma_t^2`` from ``P_T = 1``. The result is below
  ``c`` (the posterior variance ignores ``Var[x0 | x_t]``), approaching it as ``T`` grows: the ``K -> infinity``
  ensemble of a sampler with an exact Gaussian denoiser.

  Args:
    variances: non-negative variances ``c`` (any shape).
    schedule: the DDPM schedule (``T`` steps).
  """
  c = jnp.maximum(jnp.asarray(variances, jnp.float32), 0.0)
  ab, be = schedule.alpha_bars, schedule.betas
  prev = jnp.concatenate([jnp.ones((1,), ab.dtype), ab[:-1]])
  one_minus = jnp.maximum(1.0 - ab, 1e-20)
  c0 = jnp.sqrt(prev) * be / one_minus
  ct = jnp.sqrt(schedule.alphas) * (1.0 - prev) / one_minus
  sig2 = jnp.where(jnp.arange(ab.shape[0]) > 1, (1.0 - prev) / one_minus * be, 0.0)

  def step(P, t):
    k = jnp.sqrt(ab[t]) * c / (ab[t] * c + 1.0 - ab[t])
    return (c0[t] * k + ct[t]) ** 2 * P + sig2[t], None

  P, _ = jax.lax.scan(step, jnp.ones_like(c), jnp.arange(schedule.num_steps, 0, -1))
  return P
