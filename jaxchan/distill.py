"""Progressive distillation of the conditional DM (Salimans & Ho 2022): a student that samples in ``N`` DDIM steps
what its teacher samples in ``2 N``.

On the teacher's grid of ``2 N`` steps (:func:`jaxchan.ddpm_solvers.timesteps`) the student's grid of ``N``
steps is every other point, so one student step ``t -> t''`` spans two teacher steps ``t -> t' -> t''``. From
``x_t = alpha_t h + sigma_t eps`` the teacher takes its two DDIM steps to ``x_t''``; the target is the clean
estimate a *single* DDIM step from ``x_t`` must use to land there,

  ``x0_tilde = (x_t'' - (sigma_t'' / sigma_t) x_t) / (alpha_t'' - (sigma_t'' / sigma_t) alpha_t)``

(``x0_tilde = x_t''`` on the last step, where ``sigma_t'' = 0``), and the student regresses its own ``x0_hat``
on it with the truncated-SNR weight ``max(alpha_t^2 / sigma_t^2, 1)``. Stages halve ``N`` (e.g. 64 -> 32 -> 16 ->
8 -> 4), each student starting from its teacher. The student keeps the teacher's parameterization (v or eps) and
conditioning (the SRS observation, no null token: it distils the conditional sampler, guidance ``w = 1``); sample
it with ``Solver("ddim", N)``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxchan import checks, ddpm, solvers, srs
from jaxchan.ddpm_solvers import timesteps
from jaxchan.schedules import DDPMSchedule


def check_stages(steps, schedule: DDPMSchedule) -> tuple[int, ...]:
  """Student step counts of the stages: each half the previous, the first teacher's ``2 N`` within ``T``."""
  steps = tuple(steps)
  if not steps:
    raise ValueError("distillation needs at least one stage, e.g. steps=(32, 16, 8, 4).")
  for n in steps:
    checks.positive_int("distillation steps entry", n)
  if 2 * steps[0] > schedule.num_steps:
    raise ValueError(f"the first stage's teacher would sample in 2 x {steps[0]} = {2 * steps[0]} steps, more than "
                     f"the schedule's T = {schedule.num_steps}; start at N <= {schedule.num_steps // 2}.")
  for a, b in zip(steps, steps[1:]):
    if a != 2 * b:
      raise ValueError(f"distillation steps {steps}: each stage must halve the previous one ({a} -> {a // 2}), "
                       "so every teacher samples at the step count it was trained for.")
  return steps


def _ddim(x, x0, t, t_next, schedule):
  """Deterministic DDIM step ``t -> t_next`` (per-sample times) from ``x`` and its clean estimate."""
  log_alpha = lambda tt: ddpm._coef(0.5 * jnp.log(schedule.alpha_bars), tt, x)  # noqa: E731
  return solvers.eta_step(x, x0, log_alpha(t), log_alpha(t_next), None, 0.0)


class Stage(NamedTuple):
  """One distillation stage: the student samples in ``num_steps`` DDIM steps on ``schedule``; ``prediction`` is
  what the DM predicts (``"v"`` or ``"eps"``) and ``clip_x0`` the teacher's clean-estimate clip (or ``None``)."""
  schedule: DDPMSchedule
  num_steps: int
  prediction: str = "v"
  clip_x0: float | None = None


def objective(model, params, teacher_params, h: jax.Array, obs: srs.SRSObservation, key: jax.Array, stage: Stage):
  """The distillation loss of one batch: the student (``params``, ``stage.num_steps`` steps) against two DDIM
  steps of the teacher (``teacher_params``, ``2 num_steps`` steps); ``h`` ``[B, n_ue, n_bs, n_prb]`` true
  channels."""
  schedule, num_steps, prediction, clip_x0 = stage
  checks.choice("prediction", prediction, ddpm.PREDICTIONS)

  def clean(p, x, t, clip, dropout_key=None):
    """The DM's clean estimate (eq. 7) at ``x, t``, conditional (no null token)."""
    kw = dict(train=True, rngs={"dropout": dropout_key}) if dropout_key is not None else {}
    out = model.apply(p, obs.obs, obs.mask, obs.noise_var, x, t, jnp.zeros((x.shape[0],), bool), **kw)
    x0 = ddpm.x0_from_eps(x, ddpm.as_eps(prediction, x, out, t, schedule), t, schedule)
    return ddpm.clip_magnitude(x0, clip) if clip else x0

  ts = jnp.asarray(timesteps(schedule, 2 * num_steps))
  B = h.shape[0]
  k_i, k_eps, k_do = jax.random.split(key, 3)
  i = jax.random.randint(k_i, (B,), 0, num_steps)
  t, t_mid, t_next = ts[2 * i], ts[2 * i + 1], ts[2 * i + 2]
  x_t, _ = ddpm.q_sample(h, t, k_eps, schedule)
  teacher = jax.lax.stop_gradient(teacher_params)
  x_mid = _ddim(x_t, clean(teacher, x_t, t, clip_x0), t, t_mid, schedule)
  x_nxt = _ddim(x_mid, clean(teacher, x_mid, t_mid, clip_x0), t_mid, t_next, schedule)
  a = lambda tt: ddpm._coef(jnp.sqrt(schedule.alpha_bars), tt, x_t)  # noqa: E731
  s = lambda tt: ddpm._coef(jnp.sqrt(1.0 - schedule.alpha_bars), tt, x_t)  # noqa: E731
  ratio = s(t_next) / s(t)
  last = s(t_next) <= 0
  target = jnp.where(last, x_nxt, (x_nxt - ratio * x_t) / jnp.where(last, 1.0, a(t_next) - ratio * a(t)))
  target = jax.lax.stop_gradient(target)
  x0_student = clean(params, x_t, t, None, dropout_key=k_do)
  snr = a(t) ** 2 / s(t) ** 2
  return jnp.mean(jnp.maximum(snr, 1.0) * jnp.abs(x0_student - target) ** 2)
