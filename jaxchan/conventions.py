"""Array conventions for complex channels, kept in one place.

Shapes
------
* A MIMO-OFDM channel is a complex array ``[..., n_ue, n_bs, n_freq]``: leading
  batch axes, then UE antennas (rows of ``H_k``), BS antennas (columns of
  ``H_k``), then subcarriers (or PRBs). ``H[..., :, :, k]`` is the downlink
  matrix ``H_k`` of the perception-distortion paper (``n_ue x n_bs``).
* The non-identical diffusion paper has one single-antenna UE, so its channel is
  ``[..., n_bs, n_freq]`` (``N_a x N_c`` in the paper); it is the
  ``n_ue = 1`` slice of the general layout.
* A precoder is ``[..., n_bs, n_streams, n_freq]``: ``W[..., :, :, k]`` is
  ``W_k`` with orthonormal columns, ``W_k^H W_k = I``.
* Diffusion kernels act element-wise on arrays of any shape; those that reduce
  over a sample (water-filling, input normalization) act on *one* sample and
  are batched with ``jax.vmap``.

Normalization
-------------
Channels are unit-power normalized: ``E|h|^2 = 1`` per complex element. Complex
noise is circularly-symmetric standard normal, ``CN(0, 1)``: real and imaginary
parts each have variance 1/2, so ``alpha * h + beta * xi`` with
``alpha^2 + beta^2 = 1`` keeps unit power, exactly as in the real-valued
presentation of the papers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

UE_AXIS = -3
BS_AXIS = -2
FREQ_AXIS = -1


def standard_normal(key: jax.Array, shape, dtype=jnp.complex64) -> jax.Array:
  """Unit-variance Gaussian noise: ``N(0, 1)`` for real dtypes, ``CN(0, 1)`` for complex.

  Args:
    key: PRNG key.
    shape: output shape.
    dtype: a real or complex floating dtype.

  Returns:
    Array of ``shape`` and ``dtype`` with ``E|x|^2 = 1`` per element.
  """
  dtype = jnp.dtype(dtype)
  if jnp.issubdtype(dtype, jnp.complexfloating):
    real_dtype = jnp.finfo(dtype).dtype
    kr, ki = jax.random.split(key)
    scale = jnp.sqrt(jnp.asarray(0.5, real_dtype))
    re = jax.random.normal(kr, shape, real_dtype)
    im = jax.random.normal(ki, shape, real_dtype)
    return (scale * (re + 1j * im)).astype(dtype)
  return jax.random.normal(key, shape, dtype)


def power(x: jax.Array, axis=None) -> jax.Array:
  """Mean power ``mean |x|^2`` over ``axis`` (all axes by default)."""
  return jnp.mean(jnp.abs(x) ** 2, axis=axis)


def normalize_unit_power(h: jax.Array, event_ndim: int = 2) -> jax.Array:
  """Scale each sample to unit mean power per element (the papers' ``sqrt(d) h / ||h||``).

  Args:
    h: ``[..., *event]`` with ``event_ndim`` trailing event axes.
    event_ndim: number of trailing axes that form one sample.

  Returns:
    ``h`` scaled so that ``mean |h|^2 = 1`` over the event axes of each sample.
    An all-zero sample is returned unchanged (zero), never NaN.
  """
  axes = tuple(range(h.ndim - event_ndim, h.ndim))
  p = power(h, axis=axes)
  p = jnp.expand_dims(p, axes)
  scale = jnp.where(p > 0, jax.lax.rsqrt(jnp.where(p > 0, p, 1.0)), 0.0)
  return h * scale.astype(h.dtype)


def to_real(h: jax.Array) -> jax.Array:
  """Complex ``[...]`` to real ``[..., 2]`` (real part, imaginary part)."""
  return jnp.stack([h.real, h.imag], axis=-1)


def to_complex(x: jax.Array) -> jax.Array:
  """Real ``[..., 2]`` to complex ``[...]``; the inverse of :func:`to_real`."""
  if x.shape[-1] != 2:
    raise ValueError(
        f"to_complex expects a trailing axis of size 2 (real, imag), got shape {x.shape}.")
  return jax.lax.complex(x[..., 0], x[..., 1])
