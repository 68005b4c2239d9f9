"""Reverse-diffusion steps, each written once, per element, for every diffusion family of the package.

Both families are variance preserving: ``x = alpha x0 + beta xi`` with ``alpha^2 + beta^2 = 1`` per element.
Non-identical diffusion (the non-identical paper, eq. 6) gives every element its own ``alpha = gamma(tau)``;
standard diffusion (the perception DM, DDPM eq. 4) is the case where all elements share
``alpha_t = sqrt(abar_t)``. A step only needs the denoiser's clean estimate ``D`` and each element's ``log alpha``
before and after it, so one kernel serves non-identical generation (:func:`jaxchan.noniden.generate`, element-wise
time paths from :mod:`jaxchan.stepping`), the few-step standard solvers (:func:`jaxchan.ddpm_solvers.sample`,
respaced integer times) and progressive distillation's teacher steps (:mod:`jaxchan.distill`). Each family only
builds its path of times; the arithmetic of a step lives here.

Times enter as ``log alpha`` (0 at clean, very negative at pure noise), with
``beta = sqrt(-expm1(2 log alpha))``: the differences the steps need (``1 - (alpha / alpha_next)^2``, the log-SNR
step ``h``) keep their precision for the tiny steps of long schedules, where ratios of alphas round to 1.

* :func:`ddim` - the generic DDIM update (Song et al. 2021, eq. 12; the non-identical paper's eq. 8 family) with
  any injected noise level ``sigma``.
* :func:`eta_step` - ``sigma = eta sigma_DDPM`` (Song et al. eq. 16): ``eta = 0`` deterministic DDIM, ``eta = 1``
  ancestral sampling, which on a respaced standard chain is DDPM's posterior step ``q(x_t | x_s, x0_hat)``.
* :func:`eq9_step` - the non-identical paper's eq. (9) as printed: ``sigma = sqrt(1 - eps^2) beta_next``.
* :func:`dpm2m_step` - DPM-Solver++(2M) (Lu et al. 2022, data prediction, midpoint form), its SDE form at
  ``eta = 1`` and the probability-flow ODE at ``eta = 0``, with the multistep correction per element.

Shapes: every array argument of a step broadcasts to the state ``g``'s shape (scalars for a standard chain,
full arrays for element-wise times); the result has ``g``'s shape and dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxchan import conventions


def _safe_div(num, den):
  """``num / den`` where ``den > 0``, else 0 (a clean element has nothing to divide)."""
  return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def alpha_beta(log_alpha: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(alpha, beta)`` of ``log alpha``, ``beta = sqrt(1 - alpha^2)`` computed as ``sqrt(-expm1(2 log alpha))``."""
  return jnp.exp(log_alpha), jnp.sqrt(-jnp.expm1(2.0 * log_alpha))


def ddim(g, denoised, alpha, beta, alpha_next, beta_next, sigma, noise):
  """The generic DDIM update: ``g_next = alpha_next D + sqrt(beta_next^2 - sigma^2) xi_hat + sigma z``.

  ``xi_hat = (g - alpha D) / beta`` is the noise the state implies (0 where ``beta = 0``); ``noise`` is ``z``.
  Song et al. (2021), eq. (12), per element.
  """
  xi_hat = _safe_div(g - alpha * denoised, beta)
  keep = jnp.sqrt(jnp.maximum(beta_next**2 - sigma**2, 0.0))
  return alpha_next * denoised + keep * xi_hat + sigma * noise


def sigma_eta(log_alpha, log_alpha_next, eta: float) -> jax.Array:
  """``eta sigma_DDPM``, ``sigma_DDPM = (beta_next / beta) sqrt(1 - (alpha / alpha_next)^2)`` (Song et al. eq. 16).

  ``sigma_DDPM^2`` is the variance of the forward posterior ``q(x_next | x, x0)`` per element (the non-identical
  paper's Theorem 1), so ``eta = 1`` is ancestral sampling.
  """
  beta, beta_next = alpha_beta(log_alpha)[1], alpha_beta(log_alpha_next)[1]
  # 1 - (alpha / alpha_next)^2 = -expm1(2 (log alpha - log alpha_next)).
  gap = -jnp.expm1(2.0 * jnp.minimum(log_alpha - log_alpha_next, 0.0))
  return eta * _safe_div(beta_next, beta) * jnp.sqrt(gap)


def sigma_eq9(beta_next: jax.Array, eps: float) -> jax.Array:
  """The noise level of the non-identical paper's eq. (9) written as DDIM: ``sigma = sqrt(1 - eps^2) beta_next``."""
  return jnp.sqrt(1.0 - jnp.asarray(eps) ** 2) * beta_next


def _noise(key, g, needed: bool):
  return conventions.standard_normal(key, g.shape, g.dtype) if needed else jnp.zeros_like(g)


def eta_step(g: jax.Array, denoised: jax.Array, log_alpha, log_alpha_next, key: jax.Array | None,
             eta: float) -> jax.Array:
  """One DDIM step with ``sigma = eta sigma_DDPM`` (:func:`sigma_eta`); ``key`` may be ``None`` when ``eta = 0``."""
  alpha, beta = alpha_beta(log_alpha)
  alpha_next, beta_next = alpha_beta(log_alpha_next)
  sigma = sigma_eta(log_alpha, log_alpha_next, eta)
  noise = _noise(key, g, eta > 0)
  return ddim(g, denoised, alpha, beta, alpha_next, beta_next, sigma, noise).astype(g.dtype)


def eq9_step(g: jax.Array, denoised: jax.Array, log_alpha, log_alpha_next, key: jax.Array | None,
             eps: float) -> jax.Array:
  """One step of the non-identical paper's eq. (9) as printed, with mixing ``eps`` (``key``: ``None`` when
  ``eps = 1``): ``g_next = [alpha_next - eps alpha beta_next / beta] D + eps (beta_next / beta) g
  + sqrt(1 - eps^2) beta_next z``, which is :func:`ddim` at ``sigma = sqrt(1 - eps^2) beta_next``."""
  alpha, beta = alpha_beta(log_alpha)
  alpha_next, beta_next = alpha_beta(log_alpha_next)
  noise = _noise(key, g, eps < 1)
  return ddim(g, denoised, alpha, beta, alpha_next, beta_next, sigma_eq9(beta_next, eps), noise).astype(g.dtype)


def dpm2m_step(g: jax.Array, denoised: jax.Array, prev: tuple[jax.Array, jax.Array], log_alpha, log_alpha_next,
               key: jax.Array | None, eta: float) -> tuple[jax.Array, jax.Array]:
  """One DPM-Solver++(2M) step per element (SDE form at ``eta = 1``, ODE at ``eta = 0``): ``(g_next, h)``.

  With ``lambda = log(alpha / beta)`` and ``h = lambda_next - lambda``:
  ``g_next = (beta_next / beta) e^{-eta h} g + alpha_next (1 - e^{-(1 + eta) h}) D + beta_next sqrt(1 - e^{-2 eta h})
  z``, ``D = d + (h / (2 h_prev)) (d - d_prev)`` (Lu et al. 2022, data prediction, midpoint form). The correction
  is dropped (first order) where the element did not move on the previous step (``h_prev = 0``, also the first
  step), on the step to ``alpha = 1`` (``h = inf``) and where ``h > 2 h_prev``, a step ratio that would
  extrapolate the denoiser far; elements whose time does not change stay as they are.

  Args:
    g, denoised: the state and ``D`` at it; ``prev = (d_prev, h_prev)``, the previous step's ``D`` and ``h``.
    log_alpha, log_alpha_next: the times before and after the step (``log_alpha_next >= log_alpha``).
    key: PRNG key of the injected noise (``None`` when ``eta = 0``); ``eta`` in ``[0, 1]``.

  Returns:
    ``(g_next, h)``: the new state and this step's ``h`` (0 where the element did not move), to pass on.
  """
  d_prev, h_prev = prev
  moving = log_alpha_next > log_alpha
  _, beta = alpha_beta(log_alpha)
  alpha_next, beta_next = alpha_beta(log_alpha_next)
  safe = lambda x: jnp.where(x > 0, x, 1.0)  # noqa: E731
  h = jnp.where(moving, (log_alpha_next - jnp.log(safe(beta_next))) - (log_alpha - jnp.log(safe(beta))), 0.0)
  h = jnp.where(moving & (beta_next <= 0), jnp.inf, h)    # lambda_next = +inf: e^{-h} = 0

  def e(k):   # e^{-k h}; k = 0 (the ODE's terms) is 1 also where h = +inf
    return jnp.where(moving, jnp.exp(-k * h), 1.0) if k > 0 else jnp.ones_like(h)

  ratio = jnp.where(moving & jnp.isfinite(h) & (h_prev > 0), h / jnp.where(h_prev > 0, h_prev, 1.0), 0.0)
  c = jnp.where(ratio <= 2.0, 0.5 * ratio, 0.0)
  d = denoised + c * (denoised - d_prev)
  z = _noise(key, g, eta > 0)
  g_next = (_safe_div(beta_next, beta) * e(eta) * g + alpha_next * (1.0 - e(1.0 + eta)) * d
            + beta_next * jnp.sqrt(jnp.maximum(1.0 - e(2.0 * eta), 0.0)) * z)
  return jnp.where(moving, g_next, g).astype(g.dtype), jnp.where(moving & jnp.isfinite(h), h, 0.0)
