"""A trained non-identical denoiser as one value: the network with every setting it was trained with.

:class:`VelocityDenoiser` holds the velocity network (a flax module), the gamma
schedule (eq. 10), the input normalization (Sec. III-A) with its floor, and an
optional Gaussian anchor (:mod:`jaxchan.gaussian_prior`). It maps
``(params, g, tau) -> D`` (eq. 6) and gives the training loss of Algorithm 1
(eq. 12) with the same algebra, so training, evaluation, export and loading
pass one value instead of loose fields (NVlabs/edm's ``EDMPrecond`` is the model).

**The Gaussian anchor.** With ``prior`` set, the velocity is

``v_hat(g, tau) = v_gauss(g, tau) + f_theta(x(g), tau)``,
``v_gauss = alpha o E_G[xi | g] - beta o E_G[h | g]``,

where ``E_G`` is the exact posterior under the Gaussian prior ``CN(mu, C)``
(eq. 6 in closed form), or under a mixture of such Gaussians (each component's closed form, weighted by
its posterior probability). The clean estimate is ``D = alpha o g - beta o v_hat``
(``= E_G[h | g] - beta o f_theta`` for an exact solve): with ``f_theta = 0`` (the
network's output layer starts at zero) it *is* the Gaussian posterior mean, the LMMSE estimate of the element-wise observation,
and the velocity loss starts at the Gaussian bound. Training only learns what
the channels hold beyond their second-order statistics. ``prior=None`` is the
paper's literal network (``D = alpha g - beta f_theta``), kept as the ablation.

**Closed-form Gaussian steps.** Where the Gaussian part explains nearly all of the trained ``D`` (measured per
diffusion time by ``examples/anchor_share.py``: at the lowest and the highest times), the network call can be
skipped. ``gaussian_steps = (tau_lo, tau_hi)`` makes ``D`` the anchor alone, ``alpha g - beta v_gauss``, on
every call whose elements all have ``tau <= tau_lo`` or all have ``tau >= tau_hi`` (a ``lax.cond``: the
network is not evaluated there); :meth:`with_gaussian_steps` sets it for sampling, :func:`gaussian_step_share`
counts the calls it saves on given time paths.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp

from jaxchan import checks, conventions, gaussian_prior, noniden, schedules

#: ``"kronecker"``: the Kronecker-structured Gaussian prior fitted on the training set (the default);
#: ``"lowrank"``: the training covariance's leading eigenpairs plus its diagonal (few-path channels);
#: ``"mixture"``: a mixture of such low-rank Gaussians (channels whose covariance depends on the user's position:
#: the ray-traced data's default); ``"none"``: the paper's network alone (a labelled ablation).
ANCHORS = gaussian_prior.STRUCTURES + ("none",)


@dataclasses.dataclass(frozen=True)
class FunctionNetwork:
  """A plain ``f(x, tau)`` in the place of a flax network (``apply(params, x, tau)`` ignores ``params``): an
  oracle velocity in tests and studies."""
  fn: Callable

  def apply(self, params, x, tau):
    del params
    return self.fn(x, tau)


@flax.struct.dataclass
class VelocityDenoiser:
  """``D(params, g, tau)`` of a velocity network (module docstring); ``g, tau``: ``[B, N_a, N_c]``.

  Build it with :func:`make`; the settings are static (hashable), the prior is a pytree leaf, so the value
  can be closed over or passed to a jitted function.
  """
  network: Any = flax.struct.field(pytree_node=False)
  schedule: schedules.GammaSchedule = flax.struct.field(pytree_node=False)
  input_norm: str = flax.struct.field(pytree_node=False, default="noise")
  min_beta: float = flax.struct.field(pytree_node=False, default=0.0)
  prior: gaussian_prior.Prior | None = None
  tol: float = flax.struct.field(pytree_node=False, default=1e-4)
  max_iter: int = flax.struct.field(pytree_node=False, default=16)
  gaussian_steps: tuple = flax.struct.field(pytree_node=False, default=())

  @property
  def anchor(self) -> str:
    return "none" if self.prior is None else self.prior.kind

  def _input(self, g, beta):
    return noniden.noise_power_input(g, beta, min_beta=self.min_beta) if self.input_norm == "noise" else g

  def gaussian(self, g, tau) -> gaussian_prior.Solve:
    """The anchor's exact posterior under the Gaussian prior (``None`` without one)."""
    if self.prior is None:
      return None
    alpha, beta = schedules.alpha_beta(tau, self.schedule)
    return gaussian_prior.posterior(self.prior, g, alpha, beta, beta_floor=self.min_beta, tol=self.tol,
                                    max_iter=self.max_iter)

  def gaussian_denoised(self, g, tau):
    """The anchor alone as a denoiser, ``alpha g - beta v_gauss`` (``E_G[h | g]``, robust to a truncated solve)."""
    alpha, beta = schedules.alpha_beta(tau, self.schedule)
    s = self.gaussian(g, tau)
    return noniden.denoised_from_velocity(g, (alpha * s.xi_mean - beta * s.h_mean).astype(g.dtype), alpha, beta)

  def _check_single_gaussian(self, what: str) -> None:
    if self.prior is None or isinstance(self.prior, gaussian_prior.MixtureGaussian):
      raise ValueError(f"{what} needs a single-Gaussian anchor (kronecker or lowrank); this denoiser's anchor is "
                       f"{self.anchor!r}. Use eta:1.0 with it.")

  def posterior_residual(self, g, tau, key):
    """A draw of ``CN(0, Cov_G[h | g])``, the anchor's posterior covariance at times ``tau`` (``[B, N_a, N_s]``):
    what the ``eta+cov`` sampler adds to ``D`` (:func:`jaxchan.gaussian_prior.posterior_residual`; one more solve,
    no network call; :meth:`posterior_draw` gives ``D + r`` with one solve in all). Needs a single-Gaussian anchor
    (Kronecker or low rank)."""
    self._check_single_gaussian("the posterior residual")
    checks.same_shape("g", g, "tau", tau)
    alpha, beta = schedules.alpha_beta(tau, self.schedule)
    return gaussian_prior.posterior_residual(self.prior, key, alpha, beta, beta_floor=self.min_beta, tol=self.tol,
                                             max_iter=self.max_iter)

  def posterior_draw(self, params, g, tau, key):
    """``D(g, tau) + r``, ``r ~ CN(0, Cov_G[h | g])``: the ``eta+cov`` sampler's clean estimate, in one anchor solve.

    ``D + posterior_residual`` solves twice, at ``g`` (inside ``D``) and at Matheron's ``g' = alpha h' + beta xi'``
    (``h' ~ CN(mu, C)``). The anchor's posterior mean is affine in its argument, so its part of the sum,
    ``E_G[h | g] + h' - E_G[h | g']``, is ``h' + E_0[h | g - g']`` under the prior with zero mean: one solve of the
    difference, in the velocity form of :meth:`__call__`. Equal to ``D + posterior_residual`` with the same key up
    to the solves' truncation (tested) where ``beta >= min_beta`` (every time ``tau >= 1``); below the floor the
    velocity form adds ``alpha (beta_floor - beta) E_0[xi | .]`` at both arguments, so the draw differs from that
    sum by a zero-mean term of that size. The network's share ``-beta f_theta(g)`` is the same.
    """
    self._check_single_gaussian("the posterior draw")
    checks.same_shape("g", g, "tau", tau)
    alpha, beta = schedules.alpha_beta(tau, self.schedule)
    h1, g1 = gaussian_prior.perturbation(self.prior, key, alpha, beta, beta_floor=self.min_beta)
    diff = g.astype(h1.dtype) - g1
    zero_mean = self.prior._replace(mean=jnp.zeros_like(self.prior.mean))
    s = gaussian_prior.posterior(zero_mean, diff, alpha, beta, beta_floor=self.min_beta, tol=self.tol,
                                 max_iter=self.max_iter)
    gauss = h1 + noniden.denoised_from_velocity(diff, (alpha * s.xi_mean - beta * s.h_mean).astype(diff.dtype),
                                                alpha, beta)
    net = lambda: (-beta * self.network.apply(params, self._input(g, beta), tau)).astype(g.dtype)  # noqa: E731
    if self.gaussian_steps:
      net_part = jax.lax.cond(gaussian_step(tau, self.gaussian_steps), lambda: jnp.zeros_like(g), net)
    else:
      net_part = net()
    return (gauss.astype(g.dtype) + net_part).astype(g.dtype)

  def velocity(self, params, g, tau):
    """``v_hat(g, tau)``: the network's velocity plus the anchor's (module docstring)."""
    alpha, beta = schedules.alpha_beta(tau, self.schedule)
    v = self.network.apply(params, self._input(g, beta), tau)
    s = self.gaussian(g, tau)
    if s is not None:
      v = v + (alpha * s.xi_mean - beta * s.h_mean).astype(v.dtype)
    return v

  def __call__(self, params, g, tau):
    """``D(g, tau) = alpha g - beta v_hat(g, tau)``, ``[B, N_a, N_c]`` (Algorithm 2).

    Always through the velocity, also with the anchor: there ``alpha g - beta v_gauss`` equals ``E_G[h | g]`` for
    an exact solve, and a truncated solve's error enters multiplied by ``beta`` (small near the data), where
    ``E_G[h | g] = mu + C R E_G[xi | g]`` itself would multiply it by ``C R`` (large near the data).
    """
    checks.same_shape("g", g, "tau", tau)
    alpha, beta = schedules.alpha_beta(tau, self.schedule)
    full = lambda: noniden.denoised_from_velocity(g, self.velocity(params, g, tau), alpha, beta)  # noqa: E731
    if not self.gaussian_steps:
      return full()
    return jax.lax.cond(gaussian_step(tau, self.gaussian_steps),
                        lambda: self.gaussian_denoised(g, tau).astype(g.dtype), lambda: full().astype(g.dtype))

  def with_gaussian_steps(self, tau_lo: float, tau_hi: float) -> "VelocityDenoiser":
    """This denoiser with closed-form Gaussian steps where all times are ``<= tau_lo`` or all ``>= tau_hi``
    (module docstring); needs the anchor."""
    if self.prior is None:
      raise ValueError("closed-form Gaussian steps need the Gaussian anchor (a model trained with "
                       "config.model.anchor='kronecker'); this denoiser has none.")
    T = self.schedule.T
    if not (0.0 <= tau_lo < tau_hi <= T):
      raise ValueError(f"gaussian steps (tau_lo={tau_lo}, tau_hi={tau_hi}) must satisfy 0 <= tau_lo < tau_hi <= T "
                       f"= {T}; e.g. (5, 80).")
    return self.replace(gaussian_steps=(float(tau_lo), float(tau_hi)))

  def with_solver(self, tol: float, max_iter: int) -> "VelocityDenoiser":
    """This denoiser with the anchor's solve run to ``tol`` or ``max_iter`` conjugate-gradient iterations."""
    gaussian_prior.check_solver(tol, max_iter)
    return self.replace(tol=float(tol), max_iter=int(max_iter))

  def point_estimate(self, params, g, tau):
    """``D(g, tau)`` with the anchor solved to convergence (:data:`POINT_SOLVER`): the one-call point estimate.

    Sampling calls the denoiser at every step and keeps the trained truncated solve; a single call has no later
    step to absorb the truncation, which on masked observations is most of the estimate's error against the
    anchor's LMMSE (measured on the trained UMa model: on the pilot pattern 16 iterations leave a relative residual
    of 0.12 and put the one-call estimate 3.3 % above the converged LMMSE, 0.5 % converged; docs/noniden.md).
    Without an anchor it is ``D`` itself.
    """
    return self.with_solver(*POINT_SOLVER)(params, g, tau)

  def bind(self, params) -> noniden.Denoiser:
    """``D(g, tau)`` for fixed parameters: what :func:`jaxchan.noniden.generate` takes."""
    return functools.partial(self, params)

  def loss(self, params, h0, tau, key):
    """Velocity loss of Algorithm 1 / eq. (12), per element (an NMSE for unit-power ``h0``)."""
    checks.same_shape("h0", h0, "tau", tau)
    alpha, beta = schedules.alpha_beta(tau, self.schedule)
    xi = conventions.standard_normal(key, h0.shape, h0.dtype)
    g = alpha * h0 + beta * xi
    v = noniden.velocity_target(h0, xi, alpha, beta)
    return jnp.mean(jnp.abs(self.velocity(params, g, tau) - v) ** 2)

  def settings(self) -> dict:
    """What a checkpoint records (``model.json``) beside the network's own config."""
    return dict(schedule=self.schedule.to_dict(), input_norm=self.input_norm, min_beta=self.min_beta,
                anchor=self.anchor, solver=dict(tol=self.tol, max_iter=self.max_iter))


#: ``(tol, max_iter)`` of :meth:`VelocityDenoiser.point_estimate`: converged on every noise pattern of the UMa data
#: (at most 81 iterations there; the sampler's 16 stop short on all the masked and unequal-power patterns).
POINT_SOLVER = (1e-6, 256)


def gaussian_step(tau, gaussian_steps) -> jax.Array:
  """True where one call with times ``tau`` (``[B, *event]``) is a closed-form Gaussian step: every element at
  ``tau <= tau_lo``, or every element at ``tau >= tau_hi`` (``gaussian_steps = (tau_lo, tau_hi)``)."""
  lo, hi = gaussian_steps
  return jnp.all(tau <= lo) | jnp.all(tau >= hi)


def gaussian_step_share(paths, gaussian_steps) -> float:
  """The share of network calls that closed-form Gaussian steps save on the time paths ``[N_G + 1, B, *event]``
  of one generation run (:func:`jaxchan.stepping.tau_trajectory`; step ``k`` calls ``D`` at ``paths[k]``)."""
  calls = paths[:-1]
  return float(jnp.mean(jax.vmap(lambda t: gaussian_step(t, gaussian_steps))(calls)))


def make(network, schedule: schedules.GammaSchedule, *, input_norm: str = "noise", min_beta: float | None = None,
         prior: gaussian_prior.Prior | None = None, tol: float = 1e-4,
         max_iter: int = 16) -> VelocityDenoiser:
  """A validated :class:`VelocityDenoiser`; ``min_beta=None`` floors the input at ``beta(1)``
  (:func:`jaxchan.noniden.input_floor`), as training does."""
  checks.choice("input_norm", input_norm, noniden.INPUT_NORMS)
  gaussian_prior.check_solver(tol, max_iter)
  if not isinstance(schedule, schedules.GammaSchedule):
    raise TypeError(f"schedule must be a jaxchan.schedules.GammaSchedule; got {schedule!r}.")
  return VelocityDenoiser(network=network, schedule=schedule, input_norm=input_norm,
                          min_beta=noniden.input_floor(schedule, min_beta), prior=prior, tol=float(tol),
                          max_iter=int(max_iter))
