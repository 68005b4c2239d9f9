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

How it is computed (same function, fewer FLOPs; ``tests/test_mixer.py`` checks it
against a direct complex evaluation of the equations above):

* The rounded times are integers in ``[0, T]``, and every modulation is a
  row-wise linear map of the embedding of one such time. So each modulation is
  a table of ``T + 1`` complex vectors, computed once per call, and a block's
  scale, shift and gate are row lookups, not ``B * N_a`` embedding products.
  (Times are clipped to ``[0, T]``, the schedule's domain; concrete times
  outside it raise.)
* The stream is real and planar, ``[B, N_a, 2, N_c]`` (real part, then
  imaginary part, along axis 2), so each complex linear map is one real GEMM on
  ``[Re, Im]`` with the ``[[W_r, W_i], [-W_i, W_r]]`` kernel, and no split or
  concatenation happens between layers. The antenna block works on the
  transposed ``[B, N_c, (N_a, part)]`` and transposes back; XLA fuses both
  transposes into the element-wise work around them.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxchan import checks, noniden, schedules

PLACEMENTS = ("row", "col", "both", "identical")
AVERAGING = ("tau", "alpha")
LAYOUTS = ("complex", "planar", "interleaved")


def split_gelu(x):
  """GELU applied to the real and imaginary parts separately."""
  return jax.lax.complex(nn.gelu(x.real), nn.gelu(x.imag))


def to_planar(x):
  """Complex ``[B, N_a, N_c]`` -> real planar ``[B, N_a, 2, N_c]`` (real part first)."""
  return jnp.stack([x.real, x.imag], axis=-2)


def from_planar(h):
  """Real planar ``[B, N_a, 2, N_c]`` -> complex ``[B, N_a, N_c]``."""
  return jax.lax.complex(h[..., 0, :], h[..., 1, :])


def realified_kernel(wr, wi, layout: str):
  """The real matrix of the complex map ``y = x W`` (``W = wr + i wi``, ``[n, f]``) in a real layout.

  ``planar``: input features ordered (part, n), output (part, f);
  ``interleaved``: input (n, part), output (f, part). Either way the product is the
  same 8 real FLOPs per complex multiply-add, done by one real GEMM.
  """
  blk = jnp.stack([jnp.stack([wr, wi]), jnp.stack([-wi, wr])])  # [p, q, n, f]: Re/Im in -> Re/Im out
  n, f = wr.shape
  order = (0, 2, 1, 3) if layout == "planar" else (2, 0, 3, 1)
  return blk.transpose(order).reshape(2 * n, 2 * f)


def rms_norm_planar(h, axes, eps: float = 1e-6):
  """Scale ``h`` to unit mean complex power over ``axes`` (which include the part axis); no parameters."""
  n_complex = math.prod(h.shape[a] for a in axes) // 2
  power = jnp.sum(h * h, axis=axes, keepdims=True) / n_complex
  return h * jax.lax.rsqrt(power + eps)


def complex_affine(u, scale, shift):
  """Planar ``(1 + scale) * u + shift`` (complex product along axis -2); ``None`` terms are absent."""
  if scale is not None:
    sr, si = scale[..., 0:1, :], scale[..., 1:2, :]
    ur, ui = u[..., 0:1, :], u[..., 1:2, :]
    u = u + jnp.concatenate([sr * ur - si * ui, sr * ui + si * ur], axis=-2)
  return u if shift is None else u + shift


class ComplexDense(nn.Module):
  """``y = x W + b`` with complex ``W``, ``b`` stored as real and imaginary parts.

  ``layout`` says how ``x`` holds the complex features (same parameters for all):

  * ``complex``: a complex array, features on the last axis;
  * ``planar``: real ``[..., 2, n]`` (real part, imaginary part), features on the last axis;
  * ``interleaved``: real ``[..., 2 n]``, feature ``k``'s real and imaginary parts at ``2k`` and
    ``2k + 1`` (a complex64 array's memory order, kept flat so element-wise work that follows runs
    along a long last axis).
  """
  features: int
  use_bias: bool = True
  zero_init: bool = False
  init_scale: float = 1.0
  layout: str = "complex"

  def fan_in(self, x) -> int:
    return x.shape[-1] // 2 if self.layout == "interleaved" else x.shape[-1]

  def macs(self, x) -> int:
    """Complex multiply-adds of one call on ``x`` (the FLOP counter's unit: 8 real FLOPs each)."""
    rows = np.prod(x.shape[:-2]) if self.layout == "planar" else np.prod(x.shape[:-1])
    return int(rows) * self.fan_in(x) * self.features

  @nn.compact
  def __call__(self, x):
    checks.choice("layout", self.layout, LAYOUTS)
    fan_in = self.fan_in(x)
    # Each part gets half the variance so that Var[W_ij] = scale^2 / fan_in (complex He-like).
    std = self.init_scale * math.sqrt(0.5 / fan_in)
    init = nn.initializers.zeros if self.zero_init else nn.initializers.normal(std)
    wr = self.param("kernel_re", init, (fan_in, self.features))
    wi = self.param("kernel_im", init, (fan_in, self.features))
    if self.use_bias:
      br = self.param("bias_re", nn.initializers.zeros, (self.features,))
      bi = self.param("bias_im", nn.initializers.zeros, (self.features,))
    if self.layout == "complex":
      # A real GEMM on [Re, Im]: XLA's real GEMM on CPU is ~2.6x faster than its complex one.
      y2 = jnp.concatenate([x.real, x.imag], axis=-1) @ realified_kernel(wr, wi, "planar")
      y = jax.lax.complex(y2[..., :self.features], y2[..., self.features:])
      return y + jax.lax.complex(br, bi) if self.use_bias else y
    if self.layout == "planar":
      lead = x.shape[:-2]
      y = (x.reshape(*lead, 2 * fan_in) @ realified_kernel(wr, wi, "planar")).reshape(*lead, 2, self.features)
      return y + jnp.stack([br, bi]) if self.use_bias else y
    y = x @ realified_kernel(wr, wi, "interleaved")
    return y + jnp.stack([br, bi], axis=-1).reshape(-1) if self.use_bias else y


class ComplexMLP(nn.Module):
  """Complex linear (expansion) -> split GELU -> complex linear, on the features of ``layout``."""
  expansion: int = 2
  out_scale: float = 1.0
  layout: str = "complex"

  @nn.compact
  def __call__(self, x):
    n = x.shape[-1] // 2 if self.layout == "interleaved" else x.shape[-1]
    act = split_gelu if self.layout == "complex" else nn.gelu  # real layouts: GELU on each part is split GELU
    # Created output layer first, so it is ComplexDense_0 and the expansion ComplexDense_1
    # (the parameter names every checkpoint of this network carries).
    out = ComplexDense(n, init_scale=self.out_scale, layout=self.layout)
    return out(act(ComplexDense(self.expansion * n, layout=self.layout)(x)))


class TimeEmbedding(nn.Module):
  """Complex sinusoidal embedding of a time vector and a complex MLP: ``[..., L] -> [..., L, E]``."""
  dim: int = 64
  max_period: float = 100.0

  @nn.compact
  def __call__(self, t):
    half = jnp.arange(self.dim)
    freqs = jnp.exp(-math.log(self.max_period) * half / self.dim) * (2 * math.pi / 4)
    e = jnp.exp(1j * t[..., None] * freqs).astype(jnp.complex64)
    return ComplexDense(self.dim)(split_gelu(ComplexDense(self.dim)(e)))  # ComplexDense_1 is applied first


def axis_times(tau, averaging: str, schedule: schedules.GammaSchedule):
  """``(tau_ant [B, N_a], tau_sub [B, N_c], tau_all [B])`` by eqs. (17)-(20), rounded to integers.

  ``tau_all`` under alpha averaging is :func:`jaxchan.noniden.identical_times`, the
  scalar time of the identical baseline.
  """
  checks.choice("time averaging", averaging, AVERAGING)
  if averaging == "tau":
    ant, sub, whole = tau.mean(-1), tau.mean(-2), tau.mean((-2, -1))
  else:
    a = schedules.gamma(tau, schedule)
    inv = lambda x: schedules.tau_from_log_alpha(jnp.log(x), schedule)  # noqa: E731
    ant, sub, whole = inv(a.mean(-1)), inv(a.mean(-2)), noniden.identical_times(tau, schedule)[:, 0, 0]
  return jnp.round(ant), jnp.round(sub), jnp.round(whole)


class Modulation(nn.Module):
  """One modulation of Fig. 2 as a table over the integer times, looked up per row.

  ``axis="ant"``: the table holds one ``N_c``-vector per time; row ``(b, a)`` of the
  result is the entry of ``tau_ant[b, a]``. ``axis="sub"``: one ``N_a``-vector per
  time, looked up by ``tau_sub[b, c]`` and laid along antennas. Either way the
  result is planar ``[B, N_a, 2, N_c]``; zero-initialized, so every block starts
  unmodulated.
  """
  axis: str
  n_ant: int
  n_sub: int

  @nn.compact
  def __call__(self, emb_table, index):
    """``emb_table [n_times, E]`` complex, ``index [B, N_a]`` (ant) or ``[B, N_c]`` (sub) int32."""
    if self.axis == "ant":
      return to_planar(ComplexDense(self.n_sub, zero_init=True)(emb_table))[index]
    table = to_planar(ComplexDense(self.n_ant, zero_init=True)(emb_table))  # [n_times, 2, N_a]
    return jnp.transpose(table[index], (0, 3, 2, 1))


class MixerDenoiser(nn.Module):
  """Velocity network ``f(x, tau)`` of Algorithm 1: complex ``[B, N_a, N_c]`` in and out."""
  num_layers: int = 5
  expansion: int = 2
  embed_dim: int = 64
  placement: str = "col"
  averaging: str = "alpha"
  # The gamma schedule of eq. (10): the embedding table holds one entry per integer time 0..T.
  schedule: schedules.GammaSchedule = None
  # Output layer initialized at zero: a Gaussian-anchored model (jaxchan.denoiser) starts exactly at its anchor.
  zero_head: bool = False

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
    for f in ("num_layers", "expansion", "embed_dim"):
      checks.positive_int(f, getattr(self, f))
    checks.same_shape("x", x, "tau", tau)
    checks.min_ndim("x", x, 3, "[B, N_a, N_c]")
    if not isinstance(self.schedule, schedules.GammaSchedule):
      raise TypeError(f"MixerDenoiser needs schedule=GammaSchedule(T, beta_max) (the one it is trained with); "
                      f"got {self.schedule!r}.")
    T = self.schedule.T
    checks.in_range("tau", tau, 0.0, T, hint="The network is defined on the schedule's times [0, T].")
    _, n_a, n_c = x.shape
    ant_t, sub_t, all_t = axis_times(tau, averaging="alpha" if self.placement == "identical" else self.averaging,
                                     schedule=self.schedule)
    if self.placement == "identical":
      ant_t = jnp.broadcast_to(all_t[:, None], ant_t.shape)
      sub_t = jnp.broadcast_to(all_t[:, None], sub_t.shape)
    n_times = int(round(T)) + 1
    index = {"ant": jnp.clip(ant_t, 0, n_times - 1).astype(jnp.int32),
             "sub": jnp.clip(sub_t, 0, n_times - 1).astype(jnp.int32)}
    emb = TimeEmbedding(self.embed_dim, max_period=T)(jnp.arange(n_times, dtype=jnp.float32))
    sources = self._sources()

    h = to_planar(x)
    # Residual branches start small so the stream's power stays O(1) through all blocks.
    out_scale = 1.0 / math.sqrt(2 * self.num_layers)
    for layer in range(self.num_layers):
      # Subcarrier block: MLP over subcarriers, per antenna (features on axes 2-3).
      mods = self._modulations(emb, index, sources, layer, 0, n_a, n_c)
      u = complex_affine(rms_norm_planar(h, (2, 3)), mods["scale"], mods["shift"])
      y = ComplexMLP(self.expansion, out_scale, layout="planar", name=f"sub_mlp{layer}")(u)
      h = h + complex_affine(y, mods["gate"], None)
      # Antenna block: MLP over antennas, per subcarrier (features on axes 1-2).
      mods = self._modulations(emb, index, sources, layer, 2, n_a, n_c)
      u = complex_affine(rms_norm_planar(h, (1, 2)), mods["scale"], mods["shift"])
      u = jnp.transpose(u, (0, 3, 1, 2)).reshape(-1, n_c, 2 * n_a)   # [B, N_c, (N_a, part)]
      y = ComplexMLP(self.expansion, out_scale, layout="interleaved", name=f"ant_mlp{layer}")(u)
      y = jnp.transpose(y.reshape(-1, n_c, n_a, 2), (0, 2, 3, 1))      # back to [B, N_a, 2, N_c]
      h = h + complex_affine(y, mods["gate"], None)
    return from_planar(ComplexDense(n_c, zero_init=self.zero_head, layout="planar", name="head")(h))

  def _modulations(self, emb, index, sources, layer, point, n_a, n_c):
    """Scale and shift at ``point`` (0 or 2), gate at ``point + 1``; sums over the sources, ``None`` if none."""
    out = {}
    for kind, pt, srcs in (("scale", point, sources[point]), ("shift", point, sources[point]),
                           ("gate", point + 1, sources[point + 1])):
      terms = [Modulation(src, n_a, n_c, name=f"l{layer}_p{pt + 1}_{src}_{kind}")(emb, index[src]) for src in srcs]
      out[kind] = sum(terms[1:], terms[0]) if terms else None
    return out
