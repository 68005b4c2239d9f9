"""Noise schedules: the DDPM cosine schedule and the non-identical gamma(tau).

Two papers, two conventions:

* Standard (identical) diffusion, perception-distortion paper eqs. (2)-(3):
  scalar step ``t = 1..T``, ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``
  with the cosine schedule of Nichol & Dhariwal (2021).
* Non-identical diffusion, eq. (10): every element has its own time ``tau`` and
  ``alpha = gamma(tau)``, ``beta = sqrt(1 - alpha^2)``, with
  ``gamma(tau) = prod_{i=1..tau} sqrt(1 - beta_max * i / T)`` (``beta_max = 0.2``
  in the paper). With ``T = 100`` this matches the classic DDPM linear schedule
  (sum of the per-step betas equal to 10, ``gamma(T)^2 ~ 2e-5``).

The product in eq. (10) is only defined for integer ``tau``. With
``a = T / beta_max`` it equals ``a^-tau Gamma(a) / Gamma(a - tau)``, an analytic
function of real ``tau`` that is exact at every integer and strictly
decreasing on ``[0, T]``; we use that as the smooth extension. It is evaluated
through Stirling's series arranged so that no large numbers cancel (accurate to
float32 rounding for ``T / beta_max - T >= 4``).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxchan import checks

# Newton iterations of gamma^{-1} (see tau_from_log_alpha); 8 reach float32
# resolution on [0, T] for T up to 1000 (checked in tests/test_schedules.py).
_NEWTON_ITERS = 8


@dataclasses.dataclass(frozen=True)
class GammaSchedule:
  """The non-identical schedule ``gamma(tau)`` of eq. (10): ``T`` steps, ``beta_max``.

  A small hashable value (usable as a static ``jit`` argument and as a Flax
  module field) that every non-identical kernel takes, so the two numbers cannot
  drift apart between training, the network's time embedding and generation.
  The defaults are the paper's (``T = 100``, ``beta_max = 0.2``). Validated on
  construction.
  """
  T: float = 100
  beta_max: float = 0.2

  def __post_init__(self):
    T, beta_max = self.T, self.beta_max
    if (not isinstance(T, (int, float, np.integer, np.floating)) or isinstance(T, bool) or not T > 0
        or not np.isfinite(T)):
      raise ValueError(f"GammaSchedule: T must be a positive number of diffusion steps; got {T!r}.")
    if not isinstance(beta_max, (int, float, np.integer, np.floating)) or not 0.0 < beta_max < 1.0:
      raise ValueError(f"GammaSchedule: beta_max must lie in (0, 1) (the paper's eq. (10) uses 0.2); "
                       f"got {beta_max!r}.")
    if T / beta_max - T < 4:
      raise ValueError(
          f"GammaSchedule: T={T} with beta_max={beta_max} makes 1 - beta_max * T / T too close to 0 for the "
          "smooth gamma(tau) extension (needs T / beta_max - T >= 4); use a smaller beta_max or a larger T.")
    # Plain Python numbers, so that equal schedules hash equally whatever types built them.
    object.__setattr__(self, "T", int(T) if float(T).is_integer() else float(T))
    object.__setattr__(self, "beta_max", float(beta_max))

  def to_dict(self) -> dict:
    return {"T": self.T, "beta_max": self.beta_max}

  @classmethod
  def from_dict(cls, d) -> "GammaSchedule":
    """From ``{"T": ..., "beta_max": ...}`` (``beta_max`` defaults to the paper's 0.2 for old files)."""
    return cls(d["T"], d.get("beta_max", 0.2))


def _check_schedule(schedule):
  if not isinstance(schedule, GammaSchedule):
    raise TypeError(f"schedule must be a jaxchan.schedules.GammaSchedule (e.g. GammaSchedule(T=100, "
                    f"beta_max=0.2)); got {schedule!r}.")
  return schedule.T, schedule.beta_max


def _stirling_tail_diff(a, b):
  """``S(a) - S(b)`` for the Stirling tail ``S(x) = 1/(12x) - 1/(360x^3) + 1/(1260x^5)``.

  Factored through ``1/a - 1/b`` so that nearly equal ``a`` and ``b`` (small
  ``tau``) do not cancel.
  """
  ia, ib = 1.0 / a, 1.0 / b
  d1 = ia - ib
  d3 = d1 * (ia * ia + ia * ib + ib * ib)
  d5 = d1 * (ia**4 + ia**3 * ib + ia**2 * ib**2 + ia * ib**3 + ib**4)
  return d1 / 12.0 - d3 / 360.0 + d5 / 1260.0


def _stirling_tail_grad(x):
  x2 = x * x
  return -1.0 / (12.0 * x2) + 1.0 / (120.0 * x2 * x2) - 1.0 / (252.0 * x2 * x2 * x2)


# phi(u) = -(u + (1 - u) log(1 - u)) = -sum_{k>=2} u^k / (k (k - 1)); u <= beta_max < 1.
# 24 terms reach float64 rounding for u <= 0.2 and float32 rounding for u <= 0.5.
_PHI_COEFFS = tuple(1.0 / (k * (k - 1)) for k in range(2, 26))


def _phi(u):
  acc = jnp.zeros_like(u)
  for c in reversed(_PHI_COEFFS):
    acc = acc * u + c
  return -u * u * acc


def log_gamma(tau: jax.Array, schedule: GammaSchedule) -> jax.Array:
  """``log gamma(tau)`` of eq. (10), element-wise, for real ``tau`` in ``[0, T]``.

  Uses ``log prod_{i<=tau} (1 - i/a) = a phi(tau/a) + log(1 - tau/a)/2 + S(a) - S(a - tau)``
  (Stirling), whose terms all have the same sign, so float32 keeps full relative
  precision even where ``gamma`` is within rounding of 1.

  Args:
    tau: array of times, any shape; integer or real.
    schedule: the :class:`GammaSchedule` (static).

  Returns:
    ``log gamma(tau)``, same shape, float32 (or float64 under x64).
  """
  T, beta_max = _check_schedule(schedule)
  checks.in_range("tau", tau, 0.0, T, hint=f"gamma(tau) is defined for 0 <= tau <= T={T}.")
  tau = jnp.asarray(tau, dtype=jnp.result_type(float))
  a = T / beta_max
  u = tau / a
  log_prod = a * _phi(u) + 0.5 * jnp.log1p(-u) + _stirling_tail_diff(a, a - tau)
  return 0.5 * log_prod


def _log_gamma_grad(tau, T, beta_max):
  a = T / beta_max
  b = a - tau
  return 0.5 * (jnp.log1p(-tau / a) - 0.5 / b + _stirling_tail_grad(b))


def gamma(tau: jax.Array, schedule: GammaSchedule) -> jax.Array:
  """``alpha = gamma(tau)`` of eq. (10), element-wise. ``gamma(0) = 1``, strictly decreasing."""
  return jnp.exp(log_gamma(tau, schedule))


def alpha_beta(tau: jax.Array, schedule: GammaSchedule):
  """``(alpha, beta) = (gamma(tau), sqrt(1 - gamma(tau)^2))``, element-wise.

  ``beta`` is computed as ``sqrt(-expm1(2 log gamma))`` so that it stays accurate
  for small ``tau`` where ``alpha`` rounds to 1.
  """
  lg = log_gamma(tau, schedule)
  return jnp.exp(lg), jnp.sqrt(-jnp.expm1(2.0 * lg))


def tau_from_log_alpha(log_alpha: jax.Array, schedule: GammaSchedule) -> jax.Array:
  """Inverse of :func:`log_gamma`: the ``tau`` in ``[0, T]`` with ``log gamma(tau) = log_alpha``.

  Values above 0 map to ``tau = 0``; values below ``log gamma(T)`` map to ``T``
  (the schedule never reaches ``alpha = 0``). Newton's method from ``tau = T``
  converges monotonically because ``log gamma`` is concave and decreasing.
  """
  T, beta_max = _check_schedule(schedule)
  y = jnp.asarray(log_alpha, dtype=jnp.result_type(float))
  y_T = log_gamma(jnp.asarray(float(T)), schedule)
  y = jnp.clip(y, y_T, 0.0)

  def newton(_, tau):
    f = log_gamma(tau, schedule) - y
    step = f / _log_gamma_grad(tau, T, beta_max)
    return jnp.clip(tau - step, 0.0, T)

  # Start from the root of the leading-order model log gamma ~ -tau (tau + 1) / (4a):
  # the neglected terms are all negative, so this start is never left of the
  # root, and Newton on the concave log gamma then decreases monotonically to it.
  a = T / beta_max
  start = jnp.minimum(0.5 * (jnp.sqrt(1.0 - 16.0 * a * y) - 1.0), float(T))
  tau = jax.lax.fori_loop(0, _NEWTON_ITERS, newton, start)
  return jnp.where(y >= 0.0, 0.0, tau)


def gamma_inv(alpha: jax.Array, schedule: GammaSchedule) -> jax.Array:
  """``gamma^{-1}(alpha)``, element-wise, for ``alpha`` in ``(0, 1]`` (used by eqs. 16, 19, 20).

  ``alpha`` below ``gamma(T)`` maps to ``T``. Raises for concrete ``alpha``
  outside ``[0, 1]``.
  """
  checks.in_range("alpha", alpha, 0.0, 1.0, hint="alpha = gamma(tau) is a signal amplitude in (0, 1].")
  alpha = jnp.asarray(alpha, dtype=jnp.result_type(float))
  tiny = jnp.finfo(alpha.dtype).tiny
  tau = tau_from_log_alpha(jnp.log(jnp.maximum(alpha, tiny)), schedule)
  # alpha = 0 (e.g. gamma(T) underflowed for a huge T) is "no signal": the end of time.
  return jnp.where(alpha > 0, tau, float(schedule.T))


# --------------------------------------------------------------------------
# Standard DDPM cosine schedule (perception-distortion paper, eqs. 2-3).


class DDPMSchedule(NamedTuple):
  """Discrete schedule indexed by ``t = 0..T`` (index 0 is the clean data).

  Attributes:
    betas: ``[T + 1]``, ``beta_t`` (``betas[0] = 0``).
    alphas: ``[T + 1]``, ``1 - beta_t``.
    alpha_bars: ``[T + 1]``, ``abar_t = prod_{s<=t} (1 - beta_s)``, ``abar_0 = 1``.
  """
  betas: jax.Array
  alphas: jax.Array
  alpha_bars: jax.Array

  @property
  def num_steps(self) -> int:
    return self.betas.shape[0] - 1


def cosine_schedule(T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> DDPMSchedule:
  """DDPM cosine schedule: ``abar_t = f(t)/f(0)``, ``f(t) = cos^2(pi/2 (t/T + s)/(1 + s))``.

  Per-step ``beta_t = 1 - abar_t / abar_{t-1}`` is clipped at ``max_beta`` (as
  Nichol & Dhariwal do) to avoid the singularity at ``t = T``; ``alpha_bars`` is
  recomputed from the clipped betas so the three arrays are consistent.
  """
  T = checks.positive_int("T", T)
  t = np.arange(T + 1, dtype=np.float64)
  f = np.cos((t / T + s) / (1 + s) * np.pi / 2) ** 2
  abar = f / f[0]
  betas = np.concatenate([[0.0], np.clip(1.0 - abar[1:] / abar[:-1], 0.0, max_beta)])
  alphas = 1.0 - betas
  alpha_bars = np.cumprod(alphas)
  return DDPMSchedule(jnp.asarray(betas, jnp.float32), jnp.asarray(alphas, jnp.float32),
                      jnp.asarray(alpha_bars, jnp.float32))
