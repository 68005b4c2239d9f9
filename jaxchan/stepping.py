"""Generation time-stepping rules of non-identical DDIM (Sec. III-B, eq. 13).

Given the initial element-wise time ``tau0`` and ``N_G`` steps, a rule decides
``tau_next`` from the current ``tau``:

* ``uniform``: ``tau_next = tau - tau0 / N_G`` (every element walks to 0 at its
  own constant speed).
* ``waterfilling``: ``tau_next = Waterfilling(tau, ||tau0||_1 / N_G)``: the least
  reliable elements (largest ``tau``) are brought down to the level of the
  better ones first, then all move together as in identical DDIM.
* ``hybrid``: eq. (13), ``mix * uniform + (1 - mix) * waterfilling``; ``mix = 1``
  is uniform, ``mix = 0`` water-filling (the paper's ``epsilon`` of eq. 13; it is
  called ``mix`` here to keep it apart from the DDIM ``epsilon`` of eq. 9).

Each rule works in the ``tau`` domain or the ``alpha`` domain. In the alpha
domain the role of ``tau`` is played by the signal deficit ``u = 1 - alpha``
(``u = 0`` is clean), and ``tau_next = gamma^{-1}(1 - u_next)``.

All functions here act on **one sample** (``tau`` of any shape, reductions over
all of it); batch them with ``jax.vmap``. The last step always lands exactly on
``tau = 0``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxchan import checks
from jaxchan import schedules

RULES = ("uniform", "hybrid", "waterfilling")
DOMAINS = ("tau", "alpha")


def waterfill(x: jax.Array, budget: jax.Array, *, presorted: bool = False) -> jax.Array:
  """Water-filling decrement: lower the largest entries of ``x`` to a common level.

  Returns ``x_next = min(x, level)`` with the level chosen so that
  ``sum(x - x_next) = budget`` (or ``x_next = 0`` if ``budget >= sum(x)``).
  Hence ``x_next <= x``, the L1 decrement equals the budget, and the order of
  entries is preserved (``x_i <= x_j`` implies ``x_next_i <= x_next_j``): the
  ``Waterfilling(tau, ||tau0||_1 / N_G)`` operator of Sec. III-B.

  Args:
    x: non-negative array of any shape (one sample).
    budget: non-negative scalar, the L1 amount to remove.
    presorted: ``x`` is 1-D and already in non-increasing order (skips the sort).

  Returns:
    ``x_next`` with the shape of ``x``.
  """
  flat = x.reshape(-1)
  s = flat if presorted else jnp.sort(flat)[::-1]
  c = jnp.cumsum(s)
  k = jnp.arange(1, s.shape[0] + 1, dtype=s.dtype)
  # Level if the k largest entries are lowered together: sum_{j<=k} (s_j - lam) = budget.
  lam = (c - budget) / k
  # As in Euclidean projection onto a simplex, s_k > lam_k holds exactly for a
  # prefix k = 1..k*; the level is lam_{k*}.
  n_active = jnp.sum(s > lam)
  level = jnp.maximum(lam[jnp.maximum(n_active - 1, 0)], 0.0)
  return jnp.where(budget > 0, jnp.minimum(x, level), x)


@dataclasses.dataclass(frozen=True)
class Stepping:
  """A generation time-stepping rule (Sec. III-B): ``rule`` in ``domain``, with ``mix`` for hybrid (eq. 13).

  A small hashable value, validated on construction. Written in configs as
  ``DOMAIN-RULE`` (``"tau-waterfilling"``, ``"alpha-uniform"``,
  ``"tau-hybrid0.3"``); :meth:`parse` reads that and ``str()`` writes it back.
  The default is the paper's best, water-filling in the tau domain.
  """
  rule: str = "waterfilling"
  domain: str = "tau"
  mix: float = 0.5

  def __post_init__(self):
    checks.choice("stepping rule", self.rule, RULES)
    checks.choice("stepping domain", self.domain, DOMAINS)
    checks.in_range("stepping mix (the epsilon of eq. 13)", self.mix, 0.0, 1.0,
                    hint="mix = 1 is uniform stepping, mix = 0 water-filling.")
    # mix only matters for hybrid; one value otherwise, so equal rules compare (and compile) as equal.
    object.__setattr__(self, "mix", float(self.mix) if self.rule == "hybrid" else 0.5)

  @classmethod
  def parse(cls, spec: str) -> "Stepping":
    """``"tau-waterfilling"``, ``"alpha-uniform"``, ``"tau-hybrid0.3"`` (hybrid alone: mix 0.5)."""
    domain, _, rule = str(spec).partition("-")
    mix = 0.5
    if rule.startswith("hybrid"):
      try:
        mix = float(rule[len("hybrid"):] or 0.5)
      except ValueError:
        mix = float("nan")
      rule = "hybrid"
    if domain not in DOMAINS or rule not in RULES or not 0 <= mix <= 1:
      raise ValueError(f"stepping {spec!r} must be DOMAIN-RULE with DOMAIN in {DOMAINS} and RULE in {RULES}; "
                       "hybrid may carry its uniform weight in [0, 1], e.g. 'tau-hybrid0.3'.")
    return cls(rule, domain, mix)

  def __str__(self):
    return f"{self.domain}-{self.rule}" + (f"{self.mix:g}" if self.rule == "hybrid" else "")


def _check(stepping, schedule, num_steps):
  if not isinstance(stepping, Stepping):
    raise TypeError(f"stepping must be a jaxchan.stepping.Stepping (e.g. Stepping.parse('tau-waterfilling')); "
                    f"got {stepping!r}.")
  schedules._check_schedule(schedule)
  checks.positive_int("num_steps", num_steps)


def _rule_step(x, x0, num_steps, rule, mix, presorted=False):
  uniform = jnp.maximum(x - x0 / num_steps, 0.0)
  if rule == "uniform":
    return uniform
  wf = waterfill(x, jnp.sum(x0) / num_steps, presorted=presorted)
  if rule == "waterfilling":
    return wf
  return mix * uniform + (1.0 - mix) * wf


def next_tau(tau: jax.Array, tau0: jax.Array, step: jax.Array, stepping: Stepping,
             schedule: schedules.GammaSchedule, num_steps: int) -> jax.Array:
  """One step of a stepping rule (Sec. III-B, eq. 13) for one sample.

  Args:
    tau: current time, any shape.
    tau0: initial time, same shape (sets the step size ``tau0 / N_G``).
    step: 0-based step index; at ``step = num_steps - 1`` the result is 0.
    stepping: the rule, domain and hybrid weight.
    schedule: the gamma schedule (eq. 10).
    num_steps: ``N_G``.

  Returns:
    ``tau_next`` with ``0 <= tau_next <= tau``.
  """
  _check(stepping, schedule, num_steps)
  checks.same_shape("tau", tau, "tau0", tau0)
  return _next_tau(tau, tau0, step, stepping, schedule, num_steps)


def _next_tau(tau, tau0, step, stepping, schedule, num_steps, presorted=False):
  rule, mix = stepping.rule, stepping.mix
  if stepping.domain == "tau":
    nxt = _rule_step(tau, tau0, num_steps, rule, mix, presorted)
  else:
    # u = 1 - alpha via expm1 to keep precision where alpha rounds to 1.
    u = -jnp.expm1(schedules.log_gamma(tau, schedule))
    u0 = -jnp.expm1(schedules.log_gamma(tau0, schedule))
    u_next = _rule_step(u, u0, num_steps, rule, mix, presorted)
    nxt = schedules.tau_from_log_alpha(jnp.log1p(-u_next), schedule)
  nxt = jnp.minimum(nxt, tau)
  return jnp.where(step >= num_steps - 1, jnp.zeros_like(nxt), nxt)


def tau_trajectory(tau0: jax.Array, stepping: Stepping, schedule: schedules.GammaSchedule,
                   num_steps: int) -> jax.Array:
  """The whole time path of one sample, ``[num_steps + 1, *tau0.shape]``.

  Row 0 is ``tau0`` and row ``num_steps`` is all zeros. The path depends only
  on ``tau0`` (not on the data), so generation precomputes it once.
  """
  _check(stepping, schedule, num_steps)
  T = schedule.T
  checks.in_range("tau0", tau0, 0.0, T, hint=f"initial times must lie in [0, T={T}].")
  tau0 = jnp.asarray(tau0, jnp.result_type(float))
  # Water-filling keeps the order of the entries (x_next = min(x, level), and the
  # alpha-domain maps are monotone), so one sort of tau0 serves all N_G steps: the
  # path is computed on the sorted entries and put back in place at the end.
  # (Hybrid steps can reorder entries and sort at every step.)
  presorted = stepping.rule == "waterfilling"
  x0 = tau0
  if presorted:
    order = jnp.argsort(-tau0.reshape(-1))
    x0 = tau0.reshape(-1)[order]

  def body(tau, step):
    nxt = _next_tau(tau, x0, step, stepping, schedule, num_steps, presorted)
    return nxt, nxt

  _, path = jax.lax.scan(body, x0, jnp.arange(num_steps))
  if presorted:
    path = jnp.zeros_like(path).at[:, order].set(path).reshape(num_steps, *tau0.shape)
  return jnp.concatenate([tau0[None], path], axis=0)
