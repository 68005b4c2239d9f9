"""Interleaved complex MLP-Mixer with two-dimensional time embedding (non-identical paper, Sec. IV).

Backbone (``../shared/papers/NOTES.md``, the authors' reference [25]): ``num_layers``
interleaved layers; each is a *subcarrier block* (a residual complex MLP applied
to every antenna's subcarrier vector, mixing along subcarriers) followed by an
*antenna block* (the same along antennas). A complex MLP is complex linear ->
split GELU (on real and imaginary parts) -> complex linear, expansion factor 2.

Time embedding (Sec. IV-B). The element-wise time ``tau`` ``[N_a, N_c]`` is averaged
along each dimension, in the tau domain (eqs. 17-18) or the alpha domain
(eqs. 19-20), and rounded:

* ``tau_ant`` ``[N_a]``: per antenna, averaged over subcarriers (the paper's
  ``tau_c``, "subcarrier-domain mapping");
* ``tau_sub`` ``[N_c]``: per subcarrier, averaged over antennas (the paper's
  ``tau_a``).

Each is embedded (complex sinusoids of width ``embed_dim`` and a complex MLP)
and, through a per-point complex linear map, modulates the blocks at the four
points of Fig. 2: (1) scale and shift at the subcarrier block's input, (2) gate
at its output, (3) scale and shift at the antenna block's input, (4) gate at its
output. Placements:

* ``row``: the embedding that varies along a block's own mixing axis drives it:
  ``tau_sub`` at (1)-(2), ``tau_ant`` at (3)-(4);
* ``col``: the orthogonal one: ``tau_ant`` at (1)-(2), ``tau_sub`` at (3)-(4)
  (one time per MLP application; the paper's best);
* ``both``: both embeddings at (1) and (4), nothing at (2) and (3).

``identical`` is the scalar-time baseline: one alpha-averaged time for the
whole matrix drives every point (standard diffusion with the same backbone).

Input ``x`` and output (the velocity) are complex ``[B, N_a, N_c]``.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxchan import checks, schedules

PLACEMENTS = ("row", "col", "both", "identical")
AVERAGING = ("tau", "alpha")


def split_gelu(x):
  """GELU applied to the real and imaginary parts separately."""
  return jax.lax.complex(nn.gelu(x.real), nn.gelu(x.imag))


def rms_norm(x, eps: float = 1e-6):
  """Scale each vector along the last axis to unit mean power (no parameters)."""
  return x * jax.lax.rsqrt(jnp.mean(jnp.abs(x) ** 2, axis=-1, keepdims=True) + eps).astype(x.dtype)


class ComplexDense(nn.Module):
  """``y = x W + b`` with complex ``W``, ``b`` stored as real and imaginary parts."""
  features: int
  use_bias: bool = True
  zero_init: bool = False
  init_scale: float = 1.0

  @nn.compact
  def __call__(self, x):
    fan_in = x.shape[-1]
    # Each part gets half the variance so that Var[W_ij] = scale^2 / fan_in (complex He-like).
    std = self.init_scale * math.sqrt(0.5 / fan_in)
    init = nn.initializers.zeros if self.zero_init else nn.initializers.normal(std)
    wr = self.param("kernel_re", init, (fan_in, self.features))
    wi = self.param("kernel_im", init, (fan_in, self.features))
    # One real matmul [xr, xi] @ [[Wr, Wi], [-Wi, Wr]] = [Re(xW), Im(xW)]: the same
    # 8 FLOPs per complex multiply-add, but on the real GEMM, which XLA runs ~2.6x
    # faster than its complex one on CPU (benchmarks/noniden_bench.py measures both).
    w = jnp.concatenate([jnp.concatenate([wr, wi], axis=1), jnp.concatenate([-wi, wr], axis=1)], axis=0)
    y2 = jnp.concatenate([x.real, x.imag], axis=-1) @ w
    y = jax.lax.complex(y2[..., :self.features], y2[..., self.features:])
    if self.use_bias:
      br = self.param("bias_re", nn.initializers.zeros, (self.features,))
      bi = self.param("bias_im", nn.initializers.zeros, (self.features,))
      y = y + jax.lax.complex(br, bi)
    return y


class ComplexMLP(nn.Module):
  """Complex linear (expansion) -> split GELU -> complex linear, on the last axis."""
  expansion: int = 2
  out_scale: float = 1.0

  @nn.compact
  def __call__(self, x):
    n = x.shape[-1]
    return ComplexDense(n, init_scale=self.out_scale)(split_gelu(ComplexDense(self.expansion * n)(x)))


class TimeEmbedding(nn.Module):
  """Complex sinusoidal embedding of a time vector and a complex MLP: ``[B, L] -> [B, L, E]``."""
  dim: int = 64
  max_period: float = 100.0

  @nn.compact
  def __call__(self, t):
    half = jnp.arange(self.dim)
    freqs = jnp.exp(-math.log(self.max_period) * half / self.dim) * (2 * math.pi / 4)
    e = jnp.exp(1j * t[..., None] * freqs).astype(jnp.complex64)
    return ComplexDense(self.dim)(split_gelu(ComplexDense(self.dim)(e)))


def axis_times(tau, *, averaging: str, T: float, beta_max: float = 0.2):
  """``(tau_ant [B, N_a], tau_sub [B, N_c], tau_all [B])`` by eqs. (17)-(20), rounded to integers."""
  checks.choice("time averaging", averaging, AVERAGING)
  if averaging == "tau":
    ant, sub, whole = tau.mean(-1), tau.mean(-2), tau.mean((-2, -1))
  else:
    a = schedules.gamma(tau, T, beta_max)
    inv = lambda x: schedules.tau_from_log_alpha(jnp.log(x), T, beta_max)  # noqa: E731
    ant, sub, whole = inv(a.mean(-1)), inv(a.mean(-2)), inv(a.mean((-2, -1)))
  return jnp.round(ant), jnp.round(sub), jnp.round(whole)


class Modulation(nn.Module):
  """Map an embedding along one axis to a ``[B, N_a, N_c]`` complex modulation.

  ``axis="ant"``: embedding ``[B, N_a, E]`` -> one ``N_c``-vector per antenna.
  ``axis="sub"``: embedding ``[B, N_c, E]`` -> one ``N_a``-vector per subcarrier.
  Zero-initialized, so every block starts unmodulated.
  """
  axis: str
  n_ant: int
  n_sub: int

  @nn.compact
  def __call__(self, emb):
    if self.axis == "ant":
      return ComplexDense(self.n_sub, zero_init=True)(emb)
    return jnp.swapaxes(ComplexDense(self.n_ant, zero_init=True)(emb), -1, -2)


class MixerDenoiser(nn.Module):
  """Velocity network ``f(x, tau)`` of Algorithm 1: complex ``[B, N_a, N_c]`` in and out."""
  num_layers: int = 5
  expansion: int = 2
  embed_dim: int = 64
  placement: str = "col"
  averaging: str = "alpha"
  T: float = 100.0
  beta_max: float = 0.2

  def _sources(self):
    # Which embeddings feed points (1)-(4) (point 1 and 3 carry scale and shift, 2 and 4 a gate).
    return {
        "row": (("sub",), ("sub",), ("ant",), ("ant",)),
        "col": (("ant",), ("ant",), ("sub",), ("sub",)),
        "both": (("ant", "sub"), (), (), ("ant", "sub")),
        "identical": (("ant", "sub"), ("ant", "sub"), ("ant", "sub"), ("ant", "sub")),
    }[self.placement]

  @nn.compact
  def __call__(self, x, tau):
    checks.choice("placement", self.placement, PLACEMENTS)
    checks.same_shape("x", x, "tau", tau)
    checks.min_ndim("x", x, 3, "[B, N_a, N_c]")
    _, n_a, n_c = x.shape
    ant_t, sub_t, all_t = axis_times(tau, averaging="alpha" if self.placement == "identical" else self.averaging,
                                     T=self.T, beta_max=self.beta_max)
    if self.placement == "identical":
      ant_t = jnp.broadcast_to(all_t[:, None], ant_t.shape)
      sub_t = jnp.broadcast_to(all_t[:, None], sub_t.shape)
    embed = TimeEmbedding(self.embed_dim, max_period=self.T)
    emb = {"ant": embed(ant_t), "sub": embed(sub_t)}
    sources = self._sources()

    h = x
    # Residual branches start small so the stream's power stays O(1) through all blocks.
    out_scale = 1.0 / math.sqrt(2 * self.num_layers)
    for layer in range(self.num_layers):
      # Subcarrier block: MLP over the last axis (subcarriers), per antenna.
      scale, shift = self._scale_shift(emb, sources[0], layer, 0, n_a, n_c, h)
      gate = self._gate(emb, sources[1], layer, 1, n_a, n_c, h)
      y = ComplexMLP(self.expansion, out_scale, name=f"sub_mlp{layer}")(rms_norm(h) * (1 + scale) + shift)
      h = h + (1 + gate) * y
      # Antenna block: MLP over antennas, per subcarrier.
      scale, shift = self._scale_shift(emb, sources[2], layer, 2, n_a, n_c, h)
      gate = self._gate(emb, sources[3], layer, 3, n_a, n_c, h)
      u = jnp.swapaxes(rms_norm(jnp.swapaxes(h, -1, -2)), -1, -2) * (1 + scale) + shift
      y = ComplexMLP(self.expansion, out_scale, name=f"ant_mlp{layer}")(jnp.swapaxes(u, -1, -2))
      h = h + (1 + gate) * jnp.swapaxes(y, -1, -2)
    return ComplexDense(n_c, name="head")(h)

  def _scale_shift(self, emb, srcs, layer, point, n_a, n_c, like):
    scale = jnp.zeros_like(like)
    shift = jnp.zeros_like(like)
    for src in srcs:
      scale = scale + Modulation(src, n_a, n_c, name=f"l{layer}_p{point + 1}_{src}_scale")(emb[src])
      shift = shift + Modulation(src, n_a, n_c, name=f"l{layer}_p{point + 1}_{src}_shift")(emb[src])
    return scale, shift

  def _gate(self, emb, srcs, layer, point, n_a, n_c, like):
    gate = jnp.zeros_like(like)
    for src in srcs:
      gate = gate + Modulation(src, n_a, n_c, name=f"l{layer}_p{point + 1}_{src}_gate")(emb[src])
    return gate
