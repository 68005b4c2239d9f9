"""Estimation metrics: NMSE and (squared) generalized cosine similarity.

Definitions (perception-distortion paper, Sec. VI; ``../shared/papers/NOTES.md``):

* ``NMSE = E||h - h_hat||^2 / E||h||^2``. Per sample, or at dataset level as a
  ratio of sums (the paper's tables), in linear units or dB.
* ``GCS = |h_hat^H h| / (||h_hat|| ||h||)`` for each BS-antenna vector (one per
  UE antenna, subcarrier and sample), invariant to a complex scale of
  ``h_hat``; ``SGCS = GCS^2``.

Channels follow :mod:`jaxchan.conventions` (``[..., n_ue, n_bs, n_freq]``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxchan import checks
from jaxchan import conventions


def to_db(x: jax.Array) -> jax.Array:
  """``10 log10(x)``."""
  return 10.0 * jnp.log10(x)


def from_db(x_db) -> jax.Array:
  """``10^(x/10)``."""
  return 10.0 ** (jnp.asarray(x_db) / 10.0)


def _ratio(num, den):
  # A zero-power reference has no defined NMSE: report 0 when the estimate is
  # also exact and +inf otherwise, never NaN.
  ok = den > 0
  return jnp.where(ok, num / jnp.where(ok, den, 1.0), jnp.where(num > 0, jnp.inf, 0.0))


def nmse_per_sample(h: jax.Array, h_hat: jax.Array, *, event_ndim: int | None = None) -> jax.Array:
  """NMSE of each sample, ``||h - h_hat||^2 / ||h||^2`` over its ``event_ndim`` trailing axes.

  Args:
    h, h_hat: ``[B, *event]``, identical shapes.
    event_ndim: number of trailing axes per sample (default: all but the first).

  Returns:
    ``[B]`` linear NMSE (a leading shape of ``ndim - event_ndim`` axes in general).
  """
  checks.same_shape("h", h, "h_hat", h_hat)
  if event_ndim is None:
    event_ndim = h.ndim - 1
  axes = tuple(range(h.ndim - event_ndim, h.ndim))
  err = jnp.sum(jnp.abs(h - h_hat) ** 2, axis=axes)
  ref = jnp.sum(jnp.abs(h) ** 2, axis=axes)
  return _ratio(err, ref)


def nmse(h: jax.Array, h_hat: jax.Array) -> jax.Array:
  """Dataset-level NMSE, ``sum ||h - h_hat||^2 / sum ||h||^2`` over everything (linear)."""
  checks.same_shape("h", h, "h_hat", h_hat)
  return _ratio(jnp.sum(jnp.abs(h - h_hat) ** 2), jnp.sum(jnp.abs(h) ** 2))


def nmse_db(h: jax.Array, h_hat: jax.Array) -> jax.Array:
  """Dataset-level NMSE in dB."""
  return to_db(nmse(h, h_hat))


def gcs(h: jax.Array, h_hat: jax.Array, *, axis: int = conventions.BS_AXIS,
        reduce: str = "mean") -> jax.Array:
  """Generalized cosine similarity of the vectors along ``axis`` (BS antennas by default).

  Args:
    h, h_hat: identical shapes, complex.
    axis: the vector axis.
    reduce: ``"mean"`` averages over all vectors; ``"none"`` returns one value
      per vector (``axis`` removed).

  Returns:
    GCS in ``[0, 1]``. A zero vector (either side) scores 0, never NaN.
  """
  checks.same_shape("h", h, "h_hat", h_hat)
  checks.choice("reduce", reduce, ("mean", "none"))
  inner = jnp.abs(jnp.sum(jnp.conj(h_hat) * h, axis=axis))
  norms = jnp.linalg.norm(h, axis=axis) * jnp.linalg.norm(h_hat, axis=axis)
  ok = norms > 0
  val = jnp.where(ok, inner / jnp.where(ok, norms, 1.0), 0.0)
  val = jnp.minimum(val, 1.0)  # Cauchy-Schwarz; clip float rounding above 1
  return jnp.mean(val) if reduce == "mean" else val


def sgcs(h: jax.Array, h_hat: jax.Array, *, axis: int = conventions.BS_AXIS,
         reduce: str = "mean") -> jax.Array:
  """Squared GCS, averaged (``reduce="mean"``) after squaring each vector's GCS."""
  val = gcs(h, h_hat, axis=axis, reduce="none") ** 2
  return jnp.mean(val) if reduce == "mean" else val
