"""Non-identical diffusion: element-wise forward process, DDIM steps and Algorithm 2.

Notation follows the non-identical diffusion paper: ``tau`` is the element-wise
time (same shape as the channel), ``alpha = gamma(tau)`` and
``beta = sqrt(1 - alpha^2)`` (:mod:`jaxchan.schedules`), ``D(g, tau)`` is the
clean-channel estimate ``E[h0 | alpha * h0 + beta * xi = g]`` of eq. (6).

Arrays may be real or complex (complex noise is ``CN(0, 1)``, see
:mod:`jaxchan.conventions`). Element-wise kernels accept any shape; the
generation loop takes a batch ``[B, *event]``.

Three samplers are offered, as :class:`Sampler` values:

* ``Sampler("eta", eta)`` (the default): element-wise DDIM with ``sigma = eta * sigma_DDPM``,
  ``sigma_DDPM = (beta_next / beta) sqrt(1 - (alpha / alpha_next)^2)``;
  ``eta = 0`` is eq. (8), ``eta = 1`` ancestral sampling. Consistent for every
  ``eta`` as the step count grows; the default ``eta`` (:data:`DEFAULT_ETA`)
  was picked by the sweep of ``configs/noniden.py:quick`` (docs/noniden.md).
* ``Sampler("eq9", eps)``: the paper's eq. (9) as printed, with mixing ``eps`` in
  ``[0, 1]`` (``eps = 1`` is the deterministic eq. 8; the paper uses
  ``eps = 0.4``). It is DDIM with noise level ``sigma = sqrt(1 - eps^2) * beta_next``,
  which does not shrink with the step size, so for ``eps < 1`` it does not
  sample the data distribution (or the posterior) even with an exact denoiser
  and many steps. Kept as a labelled ablation.
* ``Sampler("dpm2m", eta)``: DPM-Solver++(2M) applied element-wise (:func:`jaxchan.solvers.dpm2m_step`): every element
  has its own log-SNR ``lambda = log(alpha / beta)`` along its (water-filling) time path, and the exponential
  integrator with a second-order multistep correction acts per element. ``eta = 1`` is its SDE form, whose first
  order is exactly ``eta:1`` (ancestral); ``eta = 0`` the probability-flow ODE, which from a fixed observation
  returns one point, not posterior samples. Meant for few steps (``N_G`` of 5 to 20).
* ``Sampler("eta+cov", 1.0)``: the ancestral step (``eta = 1``) with the clean estimate drawn from
  ``CN(D, Cov_G[h | g])`` instead of taken as ``D``, where ``Cov_G`` is the posterior covariance under the
  denoiser's Gaussian anchor (:func:`jaxchan.gaussian_prior.posterior_residual`). The ancestral step treats ``h`` as
  known to be ``D``; the true reverse transition ``int q(g_next | g, h) p(h | g) dh`` also carries ``Cov[h | g]``,
  scaled by the step's weight on ``h`` (Bao et al. 2022 estimate that covariance; here the anchor gives it in closed
  form). Because the forward process is Markov, drawing ``h ~ p(h | g)`` and then ``g_next ~ q(g_next | g, h)`` is
  that transition exactly, so with a Gaussian prior and its exact denoiser every step is exact, whatever its size
  (one step from the observation is an exact posterior sample); the added variance shrinks with the square of the
  step, so with many steps it is the ancestral step. Only ``eta = 1`` (for ``eta < 1`` the DDIM chain is not
  Markov and the draw is biased: refused). Few steps keep the posterior's spread where ``eta:1`` at few steps
  collapses toward the mean. Needs a residual (the anchor's: :func:`make_network_generator` takes it from an
  anchored denoiser, as its ``posterior_draw``, ``D + r`` in one anchor solve: :func:`draw_for`).

Two starts from an observation are offered (:func:`initial_state`):
``"consistent"`` (the default) is a genuine forward-process sample at ``tau0``;
``"paper"`` is eqs. (15)-(16) as printed, which holds less noise than ``tau0``
claims. ``examples/sampler_study.py`` measures both choices with an exact denoiser.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxchan import checks
from jaxchan import conventions
from jaxchan import schedules
from jaxchan import solvers
from jaxchan import stepping

SAMPLERS = ("eta", "eq9", "dpm2m", "eta+cov")
#: The samplers that draw the clean estimate around ``D`` with a posterior residual (``residual(g, tau, key)``).
RESIDUAL_SAMPLERS = ("eta+cov",)
#: Anchors whose posterior covariance does not depend on the observed value, so :data:`RESIDUAL_SAMPLERS` can draw
#: from it (a mixture's does; an unanchored network has none).
RESIDUAL_ANCHORS = ("kronecker", "lowrank")
STARTS = ("consistent", "paper")
INPUT_NORMS = ("noise", "power")
# The eta of the default sampler, picked by the eta sweep on configs/noniden.py:quick (docs/noniden.md).
DEFAULT_ETA = 1.0

Denoiser = Callable[[jax.Array, jax.Array], jax.Array]
#: ``residual(g, tau, key)``: a draw of ``CN(0, Cov[h | g])`` shaped like ``g`` (the ``eta+cov`` sampler).
Residual = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
#: ``draw(g, tau, key)``: a draw of ``CN(D(g, tau), Cov[h | g])``, the clean estimate of the ``eta+cov`` sampler in one
#: function (an anchored denoiser's ``posterior_draw``, one anchor solve where ``D + residual`` takes two).
Draw = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def _safe_div(num, den):
  """``num / den`` with 0 where ``den == 0`` (a clean element: beta = 0)."""
  ok = den > 0
  return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


# ---------------------------------------------------------------------------
# Forward process and parameterizations.


def diffuse(h0: jax.Array, tau: jax.Array, key: jax.Array, schedule: schedules.GammaSchedule):
  """Sample the forward process of Theorem 1: ``h_tau = alpha(tau) h0 + beta(tau) xi``.

  Args:
    h0: clean data, any shape, real or complex.
    tau: element-wise time, same shape as ``h0``, in ``[0, T]``.
    key: PRNG key for ``xi``.
    schedule: the gamma schedule (eq. 10).

  Returns:
    ``(h_tau, xi)`` with ``xi ~ N(0, I)`` (``CN(0, I)`` for complex ``h0``).
  """
  checks.same_shape("h0", h0, "tau", tau)
  alpha, beta = schedules.alpha_beta(tau, schedule)
  xi = conventions.standard_normal(key, h0.shape, h0.dtype)
  return alpha * h0 + beta * xi, xi


def velocity_target(h0: jax.Array, xi: jax.Array, alpha: jax.Array, beta: jax.Array) -> jax.Array:
  """Velocity ``v = alpha * xi - beta * h0`` (Algorithm 1; eq. 11's target)."""
  return alpha * xi - beta * h0


def denoised_from_velocity(g: jax.Array, v: jax.Array, alpha: jax.Array, beta: jax.Array) -> jax.Array:
  """Clean estimate ``D = alpha * g - beta * v`` (Algorithm 2, velocity parameterization).

  Exact when ``g = alpha h0 + beta xi`` and ``v`` is the true velocity, since
  ``alpha^2 + beta^2 = 1``.
  """
  return alpha * g - beta * v


def input_floor(schedule: schedules.GammaSchedule, min_beta: float | None = None) -> float:
  """The floor of ``beta`` in the identical-noise-power input: ``min_beta``, or ``beta(1)`` if None.

  ``beta(1)`` is the noise level of the smallest time that training draws and that
  generation evaluates the network at (:mod:`jaxchan.tau_patterns`), so training
  and generation inputs share one range of scales; generation times in ``(0, 1)``
  are weighted as ``tau = 1``.
  """
  if min_beta is not None and min_beta > 0:
    if not min_beta < 1:
      raise ValueError(f"min_beta={min_beta!r} must lie in (0, 1), or be None/0 for beta(1) of the schedule.")
    return float(min_beta)
  with jax.ensure_compile_time_eval():  # a Python float even when called while tracing
    return float(schedules.alpha_beta(jnp.asarray(1.0), schedule)[1])


def check_training_times(tau_min: int, min_beta: float | None, schedule: schedules.GammaSchedule):
  """Refuse training times that include ``tau = 0`` while the input floor lies below ``beta(1)``.

  An element at ``tau = 0`` then weighs ``1 / min_beta`` in the normalizer of
  :func:`noise_power_input`, far above any element generation ever shows the
  network, and a few such elements carry almost all of a sample's normalizer.
  """
  floor, beta1 = input_floor(schedule, min_beta), input_floor(schedule)
  if tau_min not in (0, 1):
    raise ValueError(f"tau_min={tau_min!r} must be 1 (the default: training times 1..T) or 0 (times 0..T).")
  if tau_min == 0 and floor < beta1 * (1 - 1e-6):
    raise ValueError(f"training times include tau = 0 (tau_min=0) while the input normalizer is floored at "
                     f"min_beta={floor:.3g} < beta(1)={beta1:.4g}: clean elements would dominate the input. "
                     "Use tau_min=1 (the default), or min_beta=0 (floor at beta(1)).")


def noise_power_input(g: jax.Array, beta: jax.Array, *, min_beta: float) -> jax.Array:
  """Identical-noise-power network input ``sqrt(d) ||beta^-1||^-1 beta^-1 g`` (Sec. III-A).

  Reduces over all axes but the first (``g``: ``[B, *event]``), so each sample
  has ``||x||^2 ~ d``. ``beta`` is floored at ``min_beta`` (usually
  :func:`input_floor`, ``beta(1)``) so a clean element (``tau = 0``) gives a
  finite weight, no larger than the one training has seen.
  """
  checks.same_shape("g", g, "beta", beta)
  inv = 1.0 / jnp.maximum(beta, min_beta)
  axes = tuple(range(1, g.ndim))
  d = 1
  for ax in axes:
    d *= g.shape[ax]
  z = jnp.sqrt(float(d)) * jax.lax.rsqrt(jnp.sum(inv**2, axis=axes, keepdims=True))
  return (z * inv).astype(g.dtype) * g


# ---------------------------------------------------------------------------
# Reverse steps: the arithmetic is jaxchan.solvers' (written once for both diffusion families); this module
# turns element-wise times into their log alphas.


@dataclasses.dataclass(frozen=True)
class Sampler:
  """The reverse step: ``Sampler("eta", eta)``, ``Sampler("eq9", eps)``, ``Sampler("dpm2m", eta)`` or
  ``Sampler("eta+cov", 1.0)`` (the module docstring).

  A small hashable value, validated on construction; ``value`` lies in
  ``[0, 1]``. Written in configs as ``"eta:1.0"`` or ``"eq9:0.4"``
  (:meth:`parse`; ``str()`` writes it back). ``eta:0`` and ``eq9:1`` are the
  deterministic eq. (8), ``eta:1`` ancestral sampling, ``eq9:0.4`` the paper's
  eq. (9) as printed.
  """
  kind: str = "eta"
  value: float = DEFAULT_ETA

  def __post_init__(self):
    checks.choice("sampler kind", self.kind, SAMPLERS)
    hint = ("eps = 1 is the deterministic eq. (8); the paper uses 0.4." if self.kind == "eq9" else
            "eta = 0 is the deterministic eq. (8), eta = 1 ancestral sampling.")
    checks.in_range(f"sampler value ({'eq. 9 mixing eps' if self.kind == 'eq9' else 'eta'})", self.value, 0.0,
                    1.0, hint=hint)
    if self.kind in RESIDUAL_SAMPLERS and self.value != 1.0:
      raise ValueError(f"sampler {self.kind}:{self.value:g}: the drawn clean estimate is exact only with the ancestral "
                       f"step (eta = 1; for eta < 1 the chain is not Markov and the draw is biased); use "
                       f"{self.kind}:1.0.")
    object.__setattr__(self, "value", float(self.value))

  @classmethod
  def parse(cls, spec: str) -> "Sampler":
    """``"eta:1.0"``, ``"eq9:0.4"``, ``"dpm2m:1.0"`` or ``"eta+cov:1.0"`` (as written in configs)."""
    name, _, value = str(spec).partition(":")
    try:
      v = float(value)
    except ValueError:
      v = None
    if name not in SAMPLERS or v is None or not 0 <= v <= 1:
      raise ValueError(f"sampler spec {spec!r} must be 'eta:ETA', 'eq9:EPS', 'dpm2m:ETA' or 'eta+cov:ETA' with a "
                       "value in [0, 1] (eta:0.0 and eq9:1.0 are the deterministic eq. 8, eta:1.0 ancestral "
                       "sampling; eq9:0.4 is the paper's eq. (9) as printed; dpm2m:1.0 the element-wise "
                       "DPM-Solver++(2M) SDE; eta+cov:1.0 ancestral with the anchor's posterior covariance).")
    return cls(name, v)

  def __str__(self):
    return f"{self.kind}:{self.value:g}"


class Generation(NamedTuple):
  """How Algorithm 2 runs: the time stepping (:class:`jaxchan.stepping.Stepping`), the reverse step
  (:class:`Sampler`) and the number of steps ``N_G``; a hashable value (a static argument under ``jit``)."""
  stepping: stepping.Stepping = stepping.Stepping()
  sampler: Sampler = Sampler()
  num_steps: int = 50

  @classmethod
  def parse(cls, stepping_: str = "tau-waterfilling", sampler: str = "eta:1.0", num_steps: int = 50) -> "Generation":
    """From the config strings, e.g. ``Generation.parse("tau-waterfilling", "eta:1.0", 50)``."""
    return cls(stepping.Stepping.parse(stepping_), Sampler.parse(sampler), checks.positive_int("num_steps", num_steps))


def _check_sampler(sampler):
  if not isinstance(sampler, Sampler):
    raise TypeError(f"sampler must be a jaxchan.noniden.Sampler (e.g. Sampler.parse('eta:1.0')); got {sampler!r}.")


def ddim_step(g: jax.Array, denoised: jax.Array, tau: jax.Array, tau_next: jax.Array,
              key: jax.Array, sampler: Sampler, schedule: schedules.GammaSchedule) -> jax.Array:
  """One non-identical DDIM step, eq. (9) (``Sampler("eq9", eps)``) or the eta family.

  Eq. (9): ``g_next = [alpha_next - eps alpha beta_next / beta] D
  + eps (beta_next / beta) g + sqrt(1 - eps^2) beta_next xi``.

  Args:
    g: current state, any shape.
    denoised: ``D(g, tau)``, same shape.
    tau, tau_next: current and next element-wise time, same shape,
      ``tau_next <= tau``.
    key: PRNG key for the injected noise.
    sampler: the reverse step's noise (:class:`Sampler`).
    schedule: the gamma schedule (eq. 10).

  Returns:
    ``g_next``, same shape and dtype as ``g``.
  """
  _check_sampler(sampler)
  if sampler.kind == "dpm2m":
    raise ValueError("ddim_step takes the one-step samplers (eta, eq9); dpm2m is multistep: use "
                     "jaxchan.solvers.dpm2m_step, or generate(..., sampler=Sampler('dpm2m', 1.0)).")
  for name, x in (("denoised", denoised), ("tau", tau), ("tau_next", tau_next)):
    checks.same_shape("g", g, name, x)
  lg, lg_next = schedules.log_gamma(tau, schedule), schedules.log_gamma(tau_next, schedule)
  # eta+cov: the caller passes the sampled clean estimate D + r as ``denoised``; the step itself is the eta step.
  step = solvers.eq9_step if sampler.kind == "eq9" else solvers.eta_step
  return step(g, denoised, lg, lg_next, key, sampler.value)


# ---------------------------------------------------------------------------
# Initialization from an observation (eqs. 14-16).


class Start(NamedTuple):
  """Where generation starts: the state ``g0`` and its element-wise time ``tau0``, both ``[B, *event]``."""
  g0: jax.Array
  tau0: jax.Array


def initial_state(h_bar: jax.Array, m: jax.Array, schedule: schedules.GammaSchedule, *,
                  start: str = "consistent") -> Start:
  """Diffusion start ``(g0, tau0)`` from an observation ``H_bar = M o H + CN(0, I)`` (eq. 14).

  ``start="consistent"`` (the default) scales by ``1 / sqrt(M^2 + 1)``:
  ``alpha0 = M / sqrt(M^2 + 1)`` and the noise std is exactly ``beta0``, i.e.
  ``g0`` is a genuine sample of the forward process at ``tau0``, the input
  every sampler (and Theorem 2) assumes.

  ``start="paper"`` is eqs. (15)-(16) as printed: ``g0 = H_bar / (M + 1)``,
  ``tau0 = gamma^{-1}(M / (M + 1))``. That start holds noise of std
  ``1 / (M + 1)``, less than the ``beta0 = sqrt(2M + 1) / (M + 1)`` the schedule
  assumes, so the sampler removes more noise than there is (an ablation).

  Args:
    h_bar: observation, any shape (complex).
    m: reliability map ``M >= 0``, same shape (0 = unobserved).
    schedule: the gamma schedule (eq. 10).
    start: ``"consistent"`` or ``"paper"``.

  Returns:
    :class:`Start` ``(g0, tau0)``, shapes of ``h_bar``.
  """
  checks.choice("start", start, STARTS)
  checks.same_shape("h_bar", h_bar, "m", m)
  checks.in_range("m (reliability map)", m, 0.0, float("inf"))
  m = jnp.asarray(m, jnp.result_type(float))
  if start == "consistent":
    scale = jax.lax.rsqrt(m * m + 1.0)
  else:
    scale = 1.0 / (m + 1.0)
  alpha0 = m * scale
  tau0 = schedules.gamma_inv(alpha0, schedule)
  return Start((h_bar * scale).astype(h_bar.dtype), tau0)


def identical_times(tau: jax.Array, schedule: schedules.GammaSchedule) -> jax.Array:
  """The scalar time of standard diffusion that stands for element-wise times ``tau`` ``[B, *event]``.

  One time per sample, the one whose amplitude is the sample's mean amplitude:
  ``gamma^{-1}(mean_i gamma(tau_i))`` (the alpha averaging of eqs. 19-20 over
  the whole sample), broadcast back to ``tau``'s shape. It is the time of
  :func:`identical_start` and the time the identical network embeds.
  """
  checks.min_ndim("tau", tau, 1, "[B, *event]")
  axes = tuple(range(1, jnp.ndim(tau)))
  a_mean = jnp.mean(schedules.gamma(tau, schedule), axis=axes, keepdims=True)
  return jnp.broadcast_to(schedules.gamma_inv(a_mean, schedule), jnp.shape(tau))


def identical_start(h_bar: jax.Array, m: jax.Array, key: jax.Array, schedule: schedules.GammaSchedule) -> Start:
  """Start of the identical (scalar-time) baseline from the same observation as :func:`initial_state`.

  Standard diffusion has one time per sample. It is taken from the average
  reliability: ``alpha* = mean_i alpha0_i`` with ``alpha0_i = M_i / sqrt(M_i^2 + 1)``
  (the consistent start's amplitudes): :func:`identical_times` of the
  consistent start's ``tau0`` when every element is observed (an unobserved
  element counts with amplitude 0 here, with ``gamma(T)`` there). Every element whose observation is at
  least that reliable (``alpha0_i >= alpha*``) becomes an exact forward-process
  sample at ``alpha*``: ``g0_i = (alpha* / M_i) H_bar_i + sqrt(beta*^2 - (alpha* / M_i)^2) z_i``
  has signal ``alpha* H_i`` and noise std ``beta*``. An element observed less
  reliably cannot be brought to ``alpha*`` (its missing signal is not in the
  observation); it keeps the consistent start's unit-power ``H_bar_i / sqrt(M_i^2 + 1)``.
  For an observation of uniform reliability (white noise) this equals the
  consistent non-identical start, so "identical vs non-identical" compares the
  time model alone.

  Args:
    h_bar, m: ``[B, *event]`` observation and reliability map (eq. 14).
    key: PRNG key for the noise ``z`` that lowers reliable elements to ``alpha*``.
    schedule: the gamma schedule (eq. 10).

  Returns:
    :class:`Start` ``(g0, tau0)``, ``[B, *event]``; ``tau0`` is constant within each sample.
  """
  checks.same_shape("h_bar", h_bar, "m", m)
  checks.min_ndim("h_bar", h_bar, 1, "[B, *event]")
  checks.in_range("m (reliability map)", m, 0.0, float("inf"))
  m = jnp.asarray(m, jnp.result_type(float))
  axes = tuple(range(1, m.ndim))
  alpha0 = m * jax.lax.rsqrt(m * m + 1.0)
  a_star = jnp.mean(alpha0, axis=axes, keepdims=True)
  b_star = jnp.sqrt(1.0 - a_star**2)
  reliable = alpha0 >= a_star
  c = _safe_div(a_star, m)                       # alpha* / M_i (only used where reliable, M_i > 0)
  add = jnp.sqrt(jnp.maximum(b_star**2 - c**2, 0.0))
  z = conventions.standard_normal(key, h_bar.shape, h_bar.dtype)
  exact = c * h_bar + add * z
  g0 = jnp.where(reliable, exact, h_bar * jax.lax.rsqrt(m * m + 1.0))
  tau0 = jnp.broadcast_to(schedules.gamma_inv(a_star, schedule), m.shape)
  return Start(g0.astype(h_bar.dtype), tau0)


# ---------------------------------------------------------------------------
# Algorithm 2.


class Trajectory(NamedTuple):
  """Per-step record of a generation run (leading axis: step ``1..N_G``).

  Attributes:
    g: state after each step, ``[N_G, B, *event]``; ``g[-1]`` is the output.
    denoised: ``D(g, tau)`` evaluated at each step, ``[N_G, B, *event]``.
  """
  g: jax.Array
  denoised: jax.Array


def _check_generation(start, schedule, stepping_, sampler, num_steps, draw=None):
  stepping._check(stepping_, schedule, num_steps)
  _check_sampler(sampler)
  if sampler.kind in RESIDUAL_SAMPLERS and draw is None:
    raise ValueError(f"sampler {sampler} draws the clean estimate with a posterior residual, and none was given: "
                     "pass draw=... (noniden.draw_for(denoiser, params, sampler) for a trained anchored denoiser, "
                     "noniden.residual_draw(denoiser, residual) otherwise; make_network_generator takes it from the "
                     "denoiser), or use eta:1.0.")
  g0, tau0 = start
  checks.same_shape("g0", g0, "tau0", tau0)
  checks.min_ndim("g0", g0, 1, "[B, *event]")
  checks.in_range("tau0", tau0, 0.0, schedule.T, hint=f"initial times must lie in [0, T={schedule.T}].")


def _generate(denoiser, start, key, schedule, gen, draw, with_trajectory):
  stepping_, sampler, num_steps = gen
  _check_generation(start, schedule, stepping_, sampler, num_steps, draw)
  g0, tau0 = start
  path_fn = functools.partial(stepping.tau_trajectory, stepping=stepping_, schedule=schedule, num_steps=num_steps)
  paths = jnp.moveaxis(jax.vmap(path_fn)(tau0), 1, 0)  # [N_G + 1, B, *event]
  keys = jax.random.split(key, num_steps)

  def body(carry, xs):
    g, d_prev, h_prev = carry
    tau, tau_next, k = xs
    if sampler.kind in RESIDUAL_SAMPLERS:
      k, k_res = jax.random.split(k)
      d = draw(g, tau, k_res).astype(g.dtype)
    else:
      d = denoiser(g, tau).astype(g.dtype)     # carried (dpm2m's previous D): one dtype across steps
    if sampler.kind == "dpm2m":
      lg, lg_next = schedules.log_gamma(tau, schedule), schedules.log_gamma(tau_next, schedule)
      g_next, h = solvers.dpm2m_step(g, d, (d_prev, h_prev), lg, lg_next, k, sampler.value)
    else:
      g_next, h = ddim_step(g, d, tau, tau_next, k, sampler, schedule), h_prev
    return (g_next, d, h), (Trajectory(g_next, d) if with_trajectory else None)

  carry0 = (g0, jnp.zeros_like(g0), jnp.zeros(g0.shape, jnp.float32))
  (g, _, _), traj = jax.lax.scan(body, carry0, (paths[:-1], paths[1:], keys))
  return g, traj


def generate(denoiser: Denoiser, start: Start, key: jax.Array, schedule: schedules.GammaSchedule, *,
             stepping: stepping.Stepping = stepping.Stepping(), sampler: Sampler = Sampler(),
             num_steps: int = 50, draw: Draw | None = None) -> jax.Array:
  """Non-identical DDIM generation, Algorithm 2, as one ``lax.scan`` over ``N_G`` steps.

  The time path of every sample is fixed by its ``tau0`` and the stepping rule
  (:func:`jaxchan.stepping.tau_trajectory`), so it is computed first; the scan
  then applies ``D`` and the DDIM step (eq. 9 or the eta family) per step.
  Jit-compatible (the settings are hashable values: close over them or mark
  them static), or use :func:`make_generator`.

  Args:
    denoiser: ``D(g, tau) -> h0_hat`` on batches ``[B, *event]`` (e.g.
      a trained :class:`jaxchan.denoiser.VelocityDenoiser` bound to its parameters, or an exact oracle).
    start: :class:`Start` ``(g0, tau0)``, each ``[B, *event]``, ``tau0`` in
      ``[0, T]`` (e.g. from :func:`initial_state`).
    key: PRNG key.
    schedule: the gamma schedule (eq. 10).
    stepping: the time-stepping rule (default: tau-domain water-filling).
    sampler: the reverse step's noise (default: ``eta:1``).
    num_steps: ``N_G``.
    draw: ``draw(g, tau, key)``, a draw of the clean estimate from ``CN(D(g, tau), Cov[h | g])``, for the samplers
      that draw it (``eta+cov``, which then does not call ``denoiser``): a trained anchored denoiser's
      :func:`draw_for` (one anchor solve per step), or :func:`residual_draw` of a denoiser and a residual; else
      unused.

  Returns:
    The generated batch ``[B, *event]``.
  """
  return _generate(denoiser, start, key, schedule, Generation(stepping, sampler, num_steps), draw, False)[0]


def generate_trajectory(denoiser: Denoiser, start: Start, key: jax.Array, schedule: schedules.GammaSchedule, *,
                        stepping: stepping.Stepping = stepping.Stepping(), sampler: Sampler = Sampler(),
                        num_steps: int = 50, draw: Draw | None = None):
  """:func:`generate`, also returning the per-step :class:`Trajectory`: ``(h_hat, trajectory)``."""
  return _generate(denoiser, start, key, schedule, Generation(stepping, sampler, num_steps), draw, True)


def _checked(jitted, schedule, stepping_, sampler, num_steps, n_lead: int = 0, draw=None):
  """Wrap ``jitted(*lead, start, key)`` with the eager checks of :func:`generate` (concrete ``tau0`` values too)."""
  def run(*args):
    start, _ = args[n_lead:]
    _check_generation(start, schedule, stepping_, sampler, num_steps, draw)
    return jitted(*args)

  return run


def make_generator(denoiser: Denoiser, schedule: schedules.GammaSchedule, *,
                   stepping: stepping.Stepping = stepping.Stepping(), sampler: Sampler = Sampler(),
                   num_steps: int = 50, residual: Residual | None = None):
  """``jit``-compiled :func:`generate` for a fixed denoiser and settings: ``fn(start, key)``.

  The settings are checked now; the start (shapes, ``tau0`` range) on every call,
  before the compiled function runs. Whatever ``denoiser`` closes over (a
  network's parameters) is compiled in as constants; for a trained network
  prefer :func:`make_network_generator`.
  """
  stepping_ = stepping
  draw = residual_draw(denoiser, residual) if residual is not None else None
  _check_generation((jnp.zeros(1), jnp.zeros(1)), schedule, stepping_, sampler, num_steps, draw)
  fn = functools.partial(generate, denoiser, schedule=schedule, stepping=stepping_, sampler=sampler,
                         num_steps=num_steps, draw=draw)
  return _checked(jax.jit(lambda start, key: fn(Start(*start), key)), schedule, stepping_, sampler, num_steps,
                  draw=draw)


def residual_draw(denoiser: Denoiser, residual: Residual) -> Draw:
  """``draw(g, tau, key) = D(g, tau) + residual(g, tau, key)``: the clean-estimate draw of :func:`generate` from a
  denoiser and a residual (a draw of ``CN(0, Cov[h | g])``, e.g. an anchor's ``posterior_residual``)."""
  return lambda g, tau, key: denoiser(g, tau) + residual(g, tau, key).astype(g.dtype)


def residual_for(denoiser, sampler: Sampler) -> Residual | None:
  """What :func:`generate` needs as ``residual`` to run ``sampler`` with a trained ``denoiser`` (a
  :class:`jaxchan.denoiser.VelocityDenoiser`): its anchor's ``posterior_residual`` for the ``eta+cov`` sampler,
  ``None`` for the others. The anchor must be one Gaussian (Kronecker or low rank): a mixture's posterior
  covariance depends on the observed value, and an unanchored network has none."""
  _check_sampler(sampler)
  if sampler.kind not in RESIDUAL_SAMPLERS:
    return None
  anchor = getattr(denoiser, "anchor", "none")
  if anchor not in RESIDUAL_ANCHORS:
    raise ValueError(f"sampler {sampler} draws the clean estimate from the Gaussian anchor's posterior, which needs "
                     f"a single-Gaussian anchor (kronecker or lowrank); this denoiser's is {anchor!r}. Use eta:1.0.")
  return denoiser.posterior_residual


def draw_for(denoiser, params, sampler: Sampler) -> Draw | None:
  """What :func:`generate` needs as ``draw`` to run ``sampler`` with a trained ``denoiser`` at ``params``: its
  ``posterior_draw`` for the ``eta+cov`` sampler (one anchor solve per step), ``None`` for the others. The anchor
  must be one Gaussian, as for :func:`residual_for`."""
  if residual_for(denoiser, sampler) is None:
    return None
  return functools.partial(denoiser.posterior_draw, params)


def make_network_generator(denoiser, *, stepping: stepping.Stepping = stepping.Stepping(),
                           sampler: Sampler = Sampler(), num_steps: int = 50):
  """Algorithm 2 for a trained network, compiled once for any parameters.

  Args:
    denoiser: a :class:`jaxchan.denoiser.VelocityDenoiser` (``denoiser(params, g, tau) -> D``, with its
      ``schedule``), e.g. from ``jaxchan.experiments.noniden.load_trained``.
    stepping, sampler, num_steps: as in :func:`generate`; ``eta+cov`` draws from the denoiser's Gaussian anchor
      (``denoiser.posterior_draw``, :func:`draw_for`), so it needs a single-Gaussian anchor.

  Returns:
    ``fn(params, start, key) -> H_hat``: a pure function of its arguments.
    The parameters are an argument of the compiled program (not constants), so
    one compilation serves every checkpoint, and XLA:CPU compiles a faster loop.
  """
  schedule = denoiser.schedule
  stepping_ = stepping
  # The draw needs the parameters, so the checks take the parameter-free residual: set exactly when eta+cov can run.
  residual = residual_for(denoiser, sampler)
  _check_generation((jnp.zeros(1), jnp.zeros(1)), schedule, stepping_, sampler, num_steps, residual)

  def run(params, start, key):
    D = functools.partial(denoiser, params)
    return generate(D, Start(*start), key, schedule, stepping=stepping_, sampler=sampler, num_steps=num_steps,
                    draw=draw_for(denoiser, params, sampler))

  return _checked(jax.jit(run), schedule, stepping_, sampler, num_steps, n_lead=1, draw=residual)
