"""Few-step samplers for standard diffusion (the perception DM): DDIM on any step subsequence and DPM-Solver++(2M).

The full chain (:func:`jaxchan.ddpm.sample`) calls the network ``T`` times per sample. These solvers visit
``num_steps`` times ``T = t_0 > t_1 > ... > t_n = 0`` (evenly spaced integers) and call it once per visit, in
the VP parameterization ``x_t = alpha_t x0 + sigma_t eps`` with ``alpha_t = sqrt(abar_t)``,
``sigma_t = sqrt(1 - abar_t)`` and log-SNR ``lambda_t = log(alpha_t / sigma_t)``:

* ``ancestral:N`` - DDPM's posterior step ``q(x_t | x_s, x0_hat)`` between visited times (eq. 5 with the respaced
  schedule; ``N = T`` is the full chain);
* ``ddim:N`` - deterministic DDIM, ``x_t = alpha_t x0_hat + sigma_t eps_hat`` (the probability-flow ODE to
  first order);
* ``dpm2m:N`` - DPM-Solver++(2M) (Lu et al. 2022), the exponential integrator of the probability-flow ODE in
  ``lambda`` with the data prediction ``x0_hat`` and a second-order multistep correction,
  ``x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) D``, ``h = lambda_t - lambda_s``,
  ``D = x0_hat_s + (x0_hat_s - x0_hat_prev) / (2 r)``, ``r = h_prev / h``;
* ``dpm2m_sde:N`` - its stochastic (SDE) form, ``x_t = (sigma_t / sigma_s) e^{-h} x_s + alpha_t (1 - e^{-2h}) D
  + sigma_t sqrt(1 - e^{-2h}) z``; to first order it is exactly the ancestral step.

The first and the last step (to ``t = 0``, where ``sigma = 0`` and the update returns ``D``) are first order, as
usual for few steps, and so is a step more than twice the previous one in ``lambda``. The steps themselves are
:mod:`jaxchan.solvers`' kernels, shared with non-identical generation and distillation; this module builds the
path of visited times. Every solver takes the same ``eps_fn(x, t)`` as :func:`jaxchan.ddpm.sample`, so conditioning
and classifier-free guidance (:func:`jaxchan.ddpm.cfg_eps`, eq. 12) carry over unchanged.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxchan import checks, ddpm, solvers
from jaxchan.schedules import DDPMSchedule

SOLVERS = ("ancestral", "ddim", "dpm2m", "dpm2m_sde")


@dataclasses.dataclass(frozen=True)
class Solver:
  """A sampler and its number of network calls, written ``"dpm2m:10"`` in configs (:meth:`parse`).

  ``num_steps = 0`` means the schedule's ``T`` (the full chain).
  """
  kind: str = "ancestral"
  num_steps: int = 0

  def __post_init__(self):
    checks.choice("solver", self.kind, SOLVERS)
    if isinstance(self.num_steps, bool) or not isinstance(self.num_steps, (int, np.integer)) or self.num_steps < 0:
      raise ValueError(f"solver steps must be an integer >= 1 (0: the schedule's T); got {self.num_steps!r}.")
    object.__setattr__(self, "num_steps", int(self.num_steps))

  @classmethod
  def parse(cls, spec: str) -> "Solver":
    """``"ancestral"``, ``"ddim:10"``, ``"dpm2m:8"``, ``"dpm2m_sde:20"`` (``KIND[:STEPS]``)."""
    kind, _, steps = str(spec).partition(":")
    if kind not in SOLVERS:
      raise ValueError(f"solver {spec!r}: unknown kind {kind!r}; choose one of {', '.join(SOLVERS)}, "
                       "optionally with ':STEPS' (e.g. dpm2m:10).")
    try:
      n = int(steps) if steps else 0
    except ValueError:
      raise ValueError(f"solver {spec!r}: steps {steps!r} must be an integer, e.g. {kind}:10.") from None
    if steps and n < 1:
      raise ValueError(f"solver {spec!r}: steps must be >= 1.")
    return cls(kind, n)

  def __str__(self):
    return self.kind + (f":{self.num_steps}" if self.num_steps else "")

  def steps(self, schedule: DDPMSchedule) -> int:
    """Network calls per sample on ``schedule``, checked against its ``T``."""
    T = schedule.num_steps
    n = self.num_steps or T
    if n > T:
      raise ValueError(f"solver {self}: {n} steps exceed the schedule's T = {T}; use 1..{T}.")
    return n


def timesteps(schedule: DDPMSchedule, num_steps: int) -> np.ndarray:
  """The visited times ``[num_steps + 1]``: integers from ``T`` down to 0, evenly spaced, distinct."""
  T = schedule.num_steps
  if not 1 <= num_steps <= T:
    raise ValueError(f"num_steps={num_steps} must lie in 1..T = {T}.")
  return np.round(np.linspace(T, 0, num_steps + 1)).astype(np.int32)


def sample(eps_fn: ddpm.EpsFn, x_T: jax.Array, key: jax.Array, schedule: DDPMSchedule, solver: Solver, *,
           clip_x0: float | None = None) -> jax.Array:
  """Reverse diffusion from ``x_T`` with ``solver`` (one network call per step) as one ``lax.scan``.

  Args:
    eps_fn: ``eps_fn(x, t) -> eps_hat`` on ``[B, *event]`` with scalar integer ``t`` (conditioning and
      guidance closed over, as for :func:`jaxchan.ddpm.sample`).
    x_T: the start, ``CN(0, I)`` noise ``[B, *event]``.
    key: PRNG key (used by the stochastic solvers).
    schedule: the training schedule.
    solver: which solver and how many steps (:class:`Solver`).
    clip_x0: clip ``x0_hat`` to this element magnitude (see :func:`jaxchan.ddpm.ddpm_step`).

  Returns:
    ``x_0`` ``[B, *event]``.
  """
  if not isinstance(solver, Solver):
    raise TypeError(f"solver must be a jaxchan.ddpm_solvers.Solver (e.g. Solver.parse('dpm2m:10')); got {solver!r}.")
  n = solver.steps(schedule)
  if solver.kind == "ancestral" and n == schedule.num_steps:
    return ddpm.sample(eps_fn, x_T, key, schedule, clip_x0=clip_x0)
  ts = timesteps(schedule, n)
  # Every element shares the time: the steps are jaxchan.solvers' per-element kernels at scalar log alphas.
  log_alpha = jnp.asarray(0.5 * np.log(np.asarray(schedule.alpha_bars, np.float64)[ts]), jnp.float32)
  xs = dict(t=jnp.asarray(ts[:-1]), la=log_alpha[:-1], la_next=log_alpha[1:], key=jax.random.split(key, n))
  kind = solver.kind

  def body(carry, x_):
    x, x0_prev, h_prev = carry
    x0 = ddpm.x0_from_eps(x, eps_fn(x, x_["t"]), x_["t"], schedule)
    if clip_x0 is not None:
      x0 = ddpm.clip_magnitude(x0, clip_x0)
    h = h_prev
    if kind in ("dpm2m", "dpm2m_sde"):
      x_next, h = solvers.dpm2m_step(x, x0, (x0_prev, h_prev), x_["la"], x_["la_next"], x_["key"],
                                     1.0 if kind == "dpm2m_sde" else 0.0)
    else:    # ddim: eta = 0; ancestral: eta = 1, DDPM's posterior step between the visited times
      x_next = solvers.eta_step(x, x0, x_["la"], x_["la_next"], x_["key"], 1.0 if kind == "ancestral" else 0.0)
    return (x_next, x0, h), None

  (x0, _, _), _ = jax.lax.scan(body, (x_T, jnp.zeros_like(x_T), jnp.zeros((), jnp.float32)), xs)
  return x0
