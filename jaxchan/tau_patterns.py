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
* ``masked``: the shape of an observation with missing elements: the observed elements share one time, the
  others are at ``T`` (unobserved); the mask is a grid (periods 1..10 antennas x 1..20 subcarriers, random
  offsets; pilot grids) or, with probability 1/2, independent per element at a density uniform in (0, 1);
* ``non_directional``: one of same / independent / periodical, uniformly;
* ``all``: one of the four paper patterns (same, independent, periodical, car_only), uniformly;
* ``all_masked``: one of those four or ``masked``, uniformly (the default of the main model: generation starts
  from maps where unobserved elements sit at ``T``, which none of the paper's four patterns draws).

Shapes: one sample is ``[N_a, N_c]`` (antennas x subcarriers);
:func:`sample` returns ``[B, N_a, N_c]`` float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxchan import checks

SIMPLE = ("same", "independent", "periodical", "car_only")   # the paper's four
PATTERNS = SIMPLE + ("masked", "non_directional", "all", "all_masked")
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


def _masked(key, shape, lo, T, periods):
  # Generation starts an unobserved element at T and an observed one at its reliability's time; a pilot grid at
  # high SNR is this map with small t, which the paper's four patterns almost never draw (periodical tiles give
  # every cell its own time, with periods >= 4).
  (_, a_hi), (_, c_hi) = periods
  k_t, k_kind, k_pa, k_pc, k_oa, k_oc, k_d, k_u = jax.random.split(key, 8)
  t = jax.random.randint(k_t, (), lo, T + 1)
  p_a = jax.random.randint(k_pa, (), 1, a_hi + 1)
  p_c = jax.random.randint(k_pc, (), 1, c_hi + 1)
  i = (jnp.arange(shape[0])[:, None] + jax.random.randint(k_oa, (), 0, a_hi)) % p_a
  j = (jnp.arange(shape[1])[None, :] + jax.random.randint(k_oc, (), 0, c_hi)) % p_c
  grid = (i == 0) & (j == 0)
  scattered = jax.random.uniform(k_u, shape) < jax.random.uniform(k_d, ())
  mask = jnp.where(jax.random.bernoulli(k_kind), scattered, grid)
  return jnp.where(mask, t, T)


_FNS = {"same": _same, "independent": _independent, "periodical": _periodical, "car_only": _car_only,
        "masked": _masked}
_MIXES = {"non_directional": ("same", "independent", "periodical"), "all": SIMPLE,
          "all_masked": SIMPLE + ("masked",)}


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
