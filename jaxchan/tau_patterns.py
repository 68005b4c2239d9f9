"""Training tau-patterns of non-identical diffusion (Sec. III-A and V-B).

Algorithm 1 draws an element-wise time ``tau`` for every training sample from a
pattern; integer times in ``{tau_min, ..., T}``. The default ``tau_min = 1`` trains on
exactly the times generation evaluates the network at: generation starts at
``tau0 <= T`` (``T`` for an unobserved element) and never calls the denoiser at
``tau = 0``, and a clean element would dominate the identical-noise-power input
(:func:`jaxchan.noniden.noise_power_input` divides by ``beta(tau)``).
``tau_min = 0`` (times ``{0, ..., T}``) is the paper's literal range, kept as an
ablation; it needs the input normalizer floored at ``beta(1)``.

* ``same``: ``tau = x 1``, one ``x`` per sample (imitates identical diffusion);
* ``independent``: every element independent;
* ``periodical``: periodic in both dimensions, period uniform in 4..20
  subcarriers and 4..10 antennas (imitates pilot grids);
* ``car_only``: one time per subcarrier, shared by all antennas;
* ``non_directional``: one of same / independent / periodical, uniformly;
* ``all``: one of the four simple patterns, uniformly.

Shapes: one sample is ``[N_a, N_c]`` (antennas x subcarriers);
:func:`sample` returns ``[B, N_a, N_c]`` float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxchan import checks

SIMPLE = ("same", "independent", "periodical", "car_only")
PATTERNS = SIMPLE + ("non_directional", "all")
PERIOD_C = (4, 20)   # subcarriers, inclusive
PERIOD_A = (4, 10)   # antennas, inclusive


def _same(key, shape, lo, T, periods):
  return jnp.full(shape, jax.random.randint(key, (), lo, T + 1))


def _independent(key, shape, lo, T, periods):
  return jax.random.randint(key, shape, lo, T + 1)


def _periodical(key, shape, lo, T, periods):
  (a_lo, a_hi), (c_lo, c_hi) = periods
  k_a, k_c, k_t = jax.random.split(key, 3)
  p_a = jax.random.randint(k_a, (), a_lo, a_hi + 1)
  p_c = jax.random.randint(k_c, (), c_lo, c_hi + 1)
  tile = jax.random.randint(k_t, (a_hi, c_hi), lo, T + 1)
  i = jnp.arange(shape[0])[:, None] % p_a
  j = jnp.arange(shape[1])[None, :] % p_c
  return tile[i, j]


def _car_only(key, shape, lo, T, periods):
  return jnp.broadcast_to(jax.random.randint(key, (1, shape[1]), lo, T + 1), shape)


_FNS = {"same": _same, "independent": _independent, "periodical": _periodical, "car_only": _car_only}
_MIXES = {"non_directional": ("same", "independent", "periodical"), "all": SIMPLE}


def sample_one(key: jax.Array, pattern: str, shape: tuple[int, int], T: int, *, tau_min: int = 1,
               period_ant: tuple[int, int] = PERIOD_A, period_sub: tuple[int, int] = PERIOD_C) -> jax.Array:
  """One ``tau`` of ``shape = (N_a, N_c)`` from ``pattern``, integers in ``{tau_min, ..., T}``.

  ``period_ant`` / ``period_sub``: inclusive period ranges of ``periodical`` (paper: 4-10, 4-20).
  """
  checks.choice("tau pattern", pattern, PATTERNS)
  checks.positive_int("T", T)
  if tau_min not in (0, 1):
    raise ValueError(f"tau_min={tau_min!r} must be 1 (train on the times generation uses, the default) or 0 "
                     "(the paper's literal range, an ablation).")
  for name, (lo, hi) in (("period_ant", period_ant), ("period_sub", period_sub)):
    if not 1 <= lo <= hi:
      raise ValueError(f"{name}={(lo, hi)} must be an inclusive range (low, high) with 1 <= low <= high.")
  periods = (tuple(period_ant), tuple(period_sub))
  if pattern in _FNS:
    return _FNS[pattern](key, shape, tau_min, T, periods).astype(jnp.float32)
  names = _MIXES[pattern]
  k_pick, k_tau = jax.random.split(key)
  pick = jax.random.randint(k_pick, (), 0, len(names))
  branches = [lambda k, f=_FNS[n]: f(k, shape, tau_min, T, periods).astype(jnp.float32) for n in names]
  return jax.lax.switch(pick, branches, k_tau)


def sample(key: jax.Array, pattern: str, batch: int, shape: tuple[int, int], T: int, **kwargs) -> jax.Array:
  """``[batch, N_a, N_c]`` times, one independent draw per sample (``kwargs``: see :func:`sample_one`)."""
  checks.positive_int("batch", batch)
  return jax.vmap(lambda k: sample_one(k, pattern, shape, T, **kwargs))(jax.random.split(key, batch))
