"""The interleaved complex MLP-Mixer and its two-dimensional time embedding."""

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxchan import conventions, denoiser, noniden, schedules
from jaxchan.models.mixer import MixerDenoiser, axis_times, split_gelu


SHAPE = (2, 8, 16)
SCH = schedules.GammaSchedule(100)


def _model(**kw):
  kw.setdefault("num_layers", 2)
  kw.setdefault("embed_dim", 8)
  kw.setdefault("schedule", SCH)
  return MixerDenoiser(**kw)


def _init(model, key=0):
  x = conventions.standard_normal(jax.random.PRNGKey(key), SHAPE)
  tau = jnp.round(jax.random.uniform(jax.random.PRNGKey(key + 1), SHAPE, maxval=90.0))
  params = jax.jit(model.init)(jax.random.PRNGKey(key + 2), x, tau)   # one program, not one per op
  # Modulations start at zero (an unmodulated network); give them random values so
  # the tests below see the time embedding at work.
  params = jax.tree_util.tree_map_with_path(
      lambda p, v: 0.3 * jax.random.normal(jax.random.PRNGKey(zlib.crc32(str(p).encode())), v.shape)
      if "_p" in str(p) else v, params)
  return x, tau, params


def test_axis_times_match_eqs_17_to_20():
  tau = jnp.array([[[10.0, 20.0], [30.0, 50.0]]])
  ant, sub, whole = axis_times(tau, "tau", SCH)
  np.testing.assert_allclose(ant, [[15.0, 40.0]])   # eq. 17: average over subcarriers, per antenna
  np.testing.assert_allclose(sub, [[20.0, 35.0]])   # eq. 18: average over antennas, per subcarrier
  np.testing.assert_allclose(whole, [28.0])          # round(27.5) -> 28 (round half to even)
  ant_a, sub_a, _ = axis_times(tau, "alpha", SCH)
  from jaxchan import schedules
  g = np.asarray(schedules.gamma(tau, SCH))
  expect = np.round(np.asarray(schedules.gamma_inv(jnp.asarray(g.mean(-1)), SCH)))  # eq. 19
  np.testing.assert_allclose(ant_a, expect)
  np.testing.assert_allclose(sub_a, np.round(np.asarray(schedules.gamma_inv(jnp.asarray(g.mean(-2)), SCH))))


def _reference_apply(model, params, x, tau):
  """The mixer evaluated directly from its equations in complex arithmetic, row by row.

  Every antenna row and every subcarrier column gets its own time embedding and
  modulation products (no tables, no planar layout): the definition the fast
  implementation in ``jaxchan/models/mixer.py`` must reproduce.
  """
  p = params["params"]

  def dense(q, v):
    y = v @ (q["kernel_re"] + 1j * q["kernel_im"])
    return y + (q["bias_re"] + 1j * q["bias_im"]) if "bias_re" in q else y

  def mlp(q, v):  # ComplexDense_1 expands, ComplexDense_0 projects back (creation order in the module)
    return dense(q["ComplexDense_0"], split_gelu(dense(q["ComplexDense_1"], v)))

  def norm(v):  # unit mean complex power along the last axis
    return v / jnp.sqrt(jnp.mean(jnp.abs(v) ** 2, axis=-1, keepdims=True) + 1e-6)

  def embed(t):
    e = model.embed_dim
    freqs = jnp.exp(-jnp.log(model.schedule.T) * jnp.arange(e) / e) * (2 * jnp.pi / 4)
    q = p["TimeEmbedding_0"]
    return mlp(q, jnp.exp(1j * t[..., None] * freqs))

  identical = model.placement == "identical"
  ant_t, sub_t, all_t = axis_times(tau, "alpha" if identical else model.averaging, model.schedule)
  if identical:
    ant_t, sub_t = (jnp.broadcast_to(all_t[:, None], t.shape) for t in (ant_t, sub_t))
  emb = {"ant": embed(ant_t), "sub": embed(sub_t)}                    # [B, N_a, E], [B, N_c, E]
  swap = lambda v: jnp.swapaxes(v, -1, -2)  # noqa: E731

  def modulation(name, srcs):
    out = 0.0
    for src in srcs:
      m = dense(p[f"{name.format(src=src)}"]["ComplexDense_0"], emb[src])
      out = out + (m if src == "ant" else swap(m))                       # [B, N_a, N_c]
    return out

  sources = model._sources()
  h = x
  for layer in range(model.num_layers):
    for block, pt in (("sub", 0), ("ant", 2)):
      scale = modulation(f"l{layer}_p{pt + 1}_{{src}}_scale", sources[pt])
      shift = modulation(f"l{layer}_p{pt + 1}_{{src}}_shift", sources[pt])
      gate = modulation(f"l{layer}_p{pt + 2}_{{src}}_gate", sources[pt + 1])
      if block == "sub":
        y = mlp(p[f"sub_mlp{layer}"], norm(h) * (1 + scale) + shift)
      else:
        y = swap(mlp(p[f"ant_mlp{layer}"], swap(swap(norm(swap(h))) * (1 + scale) + shift)))
      h = h + (1 + gate) * y
  return dense(p["head"], h)


@pytest.mark.slow
@pytest.mark.parametrize("placement,averaging", [("col", "alpha"), ("row", "tau"), ("both", "alpha"),
                                                 ("identical", "alpha")])
def test_tables_and_planar_layout_reproduce_the_direct_equations(placement, averaging):
  model = _model(placement=placement, averaging=averaging, num_layers=2)
  x, tau, params = _init(model)
  tau = jax.random.uniform(jax.random.PRNGKey(7), SHAPE, maxval=100.0)  # not rounded: the model rounds
  fast = jax.jit(model.apply)(params, x, tau)
  ref = _reference_apply(model, params, x, tau)
  # float32 GEMMs in a different order: relative error ~1e-6 per product; 1e-4 of the
  # output scale leaves room for two layers of accumulation and nothing more.
  scale = float(jnp.max(jnp.abs(ref)))
  assert scale > 0.1
  np.testing.assert_allclose(np.asarray(fast), np.asarray(ref), atol=1e-4 * scale)


def test_times_outside_the_schedule_are_refused():
  model = _model()
  x = jnp.zeros(SHAPE, jnp.complex64)
  with pytest.raises(ValueError, match=r"tau must lie in \[0.0, 100\]"):
    model.init(jax.random.PRNGKey(0), x, jnp.full(SHAPE, 101.0))
  with pytest.raises(TypeError, match="MixerDenoiser needs schedule=GammaSchedule"):
    _model(schedule=None).init(jax.random.PRNGKey(0), x, jnp.full(SHAPE, 10.0))


@pytest.mark.slow
@pytest.mark.parametrize("placement", ["row", "col", "both"])
def test_network_sees_tau_only_through_axis_averages(placement):
  model = _model(placement=placement, averaging="tau")
  x, tau, params = _init(model)
  # A zero-row-sum, zero-column-sum perturbation leaves eqs. (17)-(18) unchanged.
  d = jnp.zeros(SHAPE[1:]).at[0, 0].set(2.0).at[0, 1].set(-2.0).at[1, 0].set(-2.0).at[1, 1].set(2.0)
  y1 = model.apply(params, x, tau)
  y2 = model.apply(params, x, tau + d)
  np.testing.assert_allclose(y1, y2, atol=1e-5)
  # Changing one antenna's average does change the output.
  y3 = model.apply(params, x, tau.at[:, 0, :].add(8.0))
  assert float(jnp.max(jnp.abs(y3 - y1))) > 1e-3


@pytest.mark.slow
def test_identical_model_sees_only_the_scalar_time():
  model = _model(placement="identical")
  x, tau, params = _init(model)
  # Reordering elements keeps the alpha average, so a scalar-time model cannot tell.
  perm = jnp.flip(tau, axis=(1, 2))
  np.testing.assert_allclose(model.apply(params, x, tau), model.apply(params, x, perm), atol=1e-5)


@pytest.mark.slow
def test_output_shape_dtype_and_unit_scale_at_init():
  model = MixerDenoiser(schedule=SCH)  # paper size: 5 layers, embedding width 64
  x = conventions.standard_normal(jax.random.PRNGKey(0), (4, 32, 64))
  tau = jnp.full((4, 32, 64), 50.0)
  params = model.init(jax.random.PRNGKey(1), x, tau)
  y = jax.jit(model.apply)(params, x, tau)
  assert y.shape == x.shape and y.dtype == jnp.complex64
  # Pre-norm and down-scaled residual branches keep the output O(1) at initialization.
  assert 0.1 < float(jnp.mean(jnp.abs(y) ** 2)) < 10.0


def test_velocity_loss_is_zero_for_the_true_velocity_and_one_for_zero():
  h = conventions.standard_normal(jax.random.PRNGKey(0), (256, 8, 16))
  tau = jax.random.uniform(jax.random.PRNGKey(1), h.shape, maxval=100.0)
  key = jax.random.PRNGKey(2)
  alpha, beta = schedules.alpha_beta(tau, SCH)
  xi = conventions.standard_normal(key, h.shape)
  v = noniden.velocity_target(h, xi, alpha, beta)
  exact = denoiser.make(denoiser.FunctionNetwork(lambda x, t: v), SCH)
  assert float(exact.loss(None, h, tau, key)) < 1e-10
  # |v|^2 = alpha^2 |xi|^2 + beta^2 |h|^2 - cross terms: mean 1 for unit-power data;
  # 32k unit-mean terms give a standard error below 1 %.
  zero = float(denoiser.make(denoiser.FunctionNetwork(lambda x, t: jnp.zeros_like(x)), SCH).loss(None, h, tau, key))
  assert abs(zero - 1.0) < 0.04


def test_bad_placement():
  with pytest.raises(ValueError, match="placement='diag' is not supported"):
    _model(placement="diag").init(jax.random.PRNGKey(0), jnp.zeros(SHAPE, jnp.complex64), jnp.zeros(SHAPE))


@pytest.mark.slow
def test_flop_counter_matches_closed_form():
  from benchmarks.common import count_complex_dense_flops

  m = MixerDenoiser(schedule=SCH)
  n_a, n_c, e, layers, n_times = 32, 64, 64, 5, 101
  per_sample = layers * (n_a * (n_c * 2 * n_c * 2) + n_c * (n_a * 2 * n_a * 2))   # sub + antenna MLPs
  per_sample += n_a * n_c * n_c                                                   # head
  per_call = layers * 3 * (n_times * e * n_c + n_times * e * n_a)                # col modulation tables
  per_call += n_times * 2 * e * e                                                # time-embedding MLP
  for batch in (1, 3):
    x, t = jnp.zeros((batch, 32, 64), jnp.complex64), jnp.zeros((batch, 32, 64))
    params = m.init(jax.random.PRNGKey(0), x, t)
    assert count_complex_dense_flops(m.apply, params, x, t) == 8 * (batch * per_sample + per_call)


def test_complex_dense_layouts_compute_the_same_map():
  from jaxchan.models.mixer import ComplexDense

  x = conventions.standard_normal(jax.random.PRNGKey(0), (3, 5, 6))
  params = ComplexDense(4).init(jax.random.PRNGKey(1), x)
  params = jax.tree_util.tree_map(lambda v: v + 0.1, params)  # non-zero bias too
  ref = x @ (params["params"]["kernel_re"] + 1j * params["params"]["kernel_im"]) + (
      params["params"]["bias_re"] + 1j * params["params"]["bias_im"])
  x_planar, x_inter = jnp.stack([x.real, x.imag], axis=-2), jnp.stack([x.real, x.imag], -1).reshape(3, 5, 12)
  planar = ComplexDense(4, layout="planar").apply(params, x_planar)
  inter = ComplexDense(4, layout="interleaved").apply(params, x_inter)
  # float32 sums of 6 products: 1e-5 is a few ulps of the O(1) outputs.
  np.testing.assert_allclose(ComplexDense(4).apply(params, x), ref, atol=1e-5)
  np.testing.assert_allclose(planar[..., 0, :] + 1j * planar[..., 1, :], ref, atol=1e-5)
  np.testing.assert_allclose(inter[..., 0::2] + 1j * inter[..., 1::2], ref, atol=1e-5)
  layouts = (("complex", x), ("planar", x_planar), ("interleaved", x_inter))
  assert {ComplexDense(4, layout=name).macs(v) for name, v in layouts} == {15 * 6 * 4}
