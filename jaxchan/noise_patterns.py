"""The six initial-noise patterns of the non-identical diffusion paper (Sec. V-C).

Each pattern builds, per sample, a noise-power map over the ``[N_a, N_c]``
channel (BS antennas x subcarriers) and a set of observed ("kept") elements:

==========  =======================================================  =======
pattern     map                                                      SNR dB
==========  =======================================================  =======
white       identical power everywhere                               -10
exp         i.i.d. exponential power, rate 0.5                       -5
salt        random 30 % of elements kept, identical power            0
salt_rec    one 8 x 8 tile (30 % kept, exponential power) repeated   0
pilot       pilots every 2nd antenna and every 2nd subcarrier        10
pilot_car   every 8th subcarrier, all antennas                       10
==========  =======================================================  =======

In every pattern 10 % of the noise energy is spread evenly over the kept
elements as background and the other 90 % follows the map. The SNR is the
signal-to-noise ratio over the kept elements (unit-power channels): their mean
noise variance is ``10^(-SNR/10)``.

An element with noise variance ``s^2`` is observed as ``H_bar = H / s + CN(0, 1)``,
i.e. reliability ``M = 1 / s`` in the convention of eq. (14),
``H_bar - M o H ~ CN(0, I)``; an element not kept has ``M = 0`` (pure noise).
The diffusion start then follows :func:`jaxchan.noniden.initial_state`: by
default the variance-consistent start, or eqs. (15)-(16) as printed (``start="paper"``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxchan import checks, conventions, noniden, schedules

PATTERNS = ("white", "exp", "salt", "salt_rec", "pilot", "pilot_car")
DEFAULT_SNR_DB = {"white": -10.0, "exp": -5.0, "salt": 0.0, "salt_rec": 0.0, "pilot": 10.0, "pilot_car": 10.0}
KEEP_FRACTION = 0.3
TILE = 8
EXP_RATE = 0.5


class Observation(NamedTuple):
  """Attributes (all ``[B, N_a, N_c]``):
    h_bar: the observation of eq. (14).
    m: reliability map ``M >= 0`` (0 where not observed).
    g0: diffusion start ``H_tilde^(0)`` (variance-consistent, or eq. 15).
    tau0: initial element-wise time ``tau^(0)`` (eq. 16).
  """
  h_bar: jax.Array
  m: jax.Array
  g0: jax.Array
  tau0: jax.Array


def _exact_keep(key, shape, fraction):
  n = 1
  for s in shape:
    n *= s
  k = int(round(fraction * n))
  ranks = jnp.argsort(jax.random.uniform(key, (n,)))
  return (ranks < k).reshape(shape)


def power_map(pattern: str, key: jax.Array, shape: tuple[int, int], *, keep_fraction: float = KEEP_FRACTION,
              tile: int = TILE, exp_rate: float = EXP_RATE):
  """``(weights, kept)`` of one sample: relative noise power (mean 1 over kept) and the kept mask.

  ``keep_fraction`` (salt, salt_rec), ``tile`` (salt_rec tile and pilot_car period) and
  ``exp_rate`` (exp, salt_rec) default to the paper's 0.3, 8 and 0.5.
  """
  checks.choice("noise pattern", pattern, PATTERNS)
  n_a, n_c = shape
  ones = jnp.ones(shape)
  if pattern == "white":
    w, kept = ones, jnp.ones(shape, bool)
  elif pattern == "exp":
    w, kept = jax.random.exponential(key, shape) / exp_rate, jnp.ones(shape, bool)
  elif pattern == "salt":
    w, kept = ones, _exact_keep(key, shape, keep_fraction)
  elif pattern == "salt_rec":
    if n_a % tile or n_c % tile:
      raise ValueError(f"salt_rec repeats an {tile} x {tile} tile; the channel shape {shape} must be a multiple.")
    k1, k2 = jax.random.split(key)
    tile_w = jax.random.exponential(k1, (tile, tile)) / exp_rate
    tile_k = _exact_keep(k2, (tile, tile), keep_fraction)
    w, kept = jnp.tile(tile_w, (n_a // tile, n_c // tile)), jnp.tile(tile_k, (n_a // tile, n_c // tile))
  elif pattern == "pilot":
    i, j = jnp.meshgrid(jnp.arange(n_a), jnp.arange(n_c), indexing="ij")
    w, kept = ones, (i % 2 == 0) & (j % 2 == 0)
  else:  # pilot_car
    j = jnp.arange(n_c)[None, :]
    w, kept = ones, jnp.broadcast_to(j % tile == 0, shape)
  w = jnp.where(kept, w, 0.0)
  w = w / (jnp.sum(w) / jnp.sum(kept))
  return w, kept


def observe(h: jax.Array, key: jax.Array, pattern: str, schedule: schedules.GammaSchedule, *,
            snr_db: float | None = None, background: float = 0.1, start: str = "consistent",
            **map_kwargs) -> Observation:
  """Observe a batch of channels through an initial-noise pattern and build the diffusion start.

  Args:
    h: ``[B, N_a, N_c]`` unit-power channels.
    key: PRNG key; maps and noise are fresh on every call.
    pattern: one of :data:`PATTERNS`.
    schedule: the gamma schedule (eq. 10) that turns reliabilities into times.
    snr_db: SNR over the kept elements (default: the paper's, :data:`DEFAULT_SNR_DB`).
    background: share of the noise energy spread evenly (0.1 in the paper).
    start: ``"consistent"`` (``alpha0 = M / sqrt(M^2 + 1)``, a forward-process sample) or
      ``"paper"`` (eqs. 15-16 as printed); see :func:`jaxchan.noniden.initial_state`.
    **map_kwargs: ``keep_fraction``, ``tile``, ``exp_rate`` of :func:`power_map`.
  """
  checks.choice("noise pattern", pattern, PATTERNS)
  checks.min_ndim("h", h, 3, "[B, N_a, N_c]")
  checks.in_range("background", background, 0.0, 1.0)
  checks.choice("start", start, noniden.STARTS)
  snr = DEFAULT_SNR_DB[pattern] if snr_db is None else snr_db
  B = h.shape[0]
  k_map, k_noise = jax.random.split(key)
  w, kept = jax.vmap(lambda k: power_map(pattern, k, h.shape[-2:], **map_kwargs))(jax.random.split(k_map, B))
  mean_var = 10.0 ** (-snr / 10.0)
  var = mean_var * (background + (1.0 - background) * w)
  m = jnp.where(kept, jax.lax.rsqrt(jnp.where(kept, var, 1.0)), 0.0)
  h_bar = m.astype(h.dtype) * h + conventions.standard_normal(k_noise, h.shape, h.dtype)
  g0, tau0 = noniden.initial_state(h_bar, m, schedule, start=start)
  return Observation(h_bar, m, g0, tau0)
