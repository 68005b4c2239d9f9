"""Perception-distortion pieces: the transformer backbone, the three objectives, posterior sampling,
the differentiable E2E precoder and the Riemannian-CG check of eq. (27)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxchan import conventions, ddpm_solvers, precoding, prediction, schedules, srs, stiefel
from jaxchan.models.transformer import ChannelTransformer, from_tokens, to_tokens

B, O, U, N, P = 3, 4, 4, 8, 12


def _batch(seed=0):
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  return dict(history=conventions.standard_normal(k1, (B, O, U, N, P)),
              target=conventions.standard_normal(k2, (B, U, N, P)))


def _model(use, g=1):
  # d_model = the token width 2 N g (the narrowest full-rank read-in).
  return ChannelTransformer(O, U, N, P, num_hops=4, ue_per_token=g, use=use, d_model=2 * N * g, num_heads=2,
                            enc_layers=1, dec_layers=1)


def _init(m, obs):
  if m.use == "dm":
    return jax.jit(m.init)(jax.random.PRNGKey(0), obs.obs, obs.mask, obs.noise_var,
                           jnp.zeros((B, U, N, P), jnp.complex64), jnp.ones((B,), jnp.int32), jnp.zeros((B,), bool))
  return jax.jit(m.init)(jax.random.PRNGKey(0), obs.obs, obs.mask, obs.noise_var)   # one program, not one per op


@functools.lru_cache(maxsize=None)
def _setup(use, g=1):
  """A batch, its SRS observation, a tiny model of ``use`` and its initial parameters (built once per process;
  JAX arrays are immutable, so tests can share them)."""
  batch = _batch()
  obs = srs.observe(batch["history"], jax.random.PRNGKey(2))
  m = _model(use, g)
  return batch, obs, m, _init(m, obs)


@pytest.mark.parametrize("g", [1, 2, 4])
def test_tokens_round_trip_and_layout(g):
  cells = conventions.standard_normal(jax.random.PRNGKey(1), (2, U, 5, N))
  tok = to_tokens(cells, g)
  assert tok.shape == (2, U // g, 5, 2 * N * g)
  np.testing.assert_array_equal(np.asarray(from_tokens(tok, g)), np.asarray(cells))
  # Token (u // g, c) starts with the real part of UE antenna u = (u // g) * g.
  np.testing.assert_array_equal(np.asarray(tok[:, 0, :, :N]), np.asarray(cells[:, 0].real))


@pytest.mark.slow
@pytest.mark.parametrize("g", [1, 4])
def test_encoder_reads_only_sounded_cells(g):
  """Values at PRBs the SRS did not sound must not influence the output (they are 0 in real data)."""
  batch, obs, m, params = _setup("sl", g)
  junk = conventions.standard_normal(jax.random.PRNGKey(3), obs.obs.shape)
  polluted = obs._replace(obs=jnp.where(obs.mask[:, :, None, None, :], obs.obs, junk))
  a = m.apply(params, obs.obs, obs.mask, obs.noise_var)
  b = m.apply(params, polluted.obs, polluted.mask, obs.noise_var)
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
  # ...while the sounded cells do matter.
  c = m.apply(params, obs.obs * 2.0, obs.mask, obs.noise_var)
  assert float(jnp.max(jnp.abs(c - a))) > 1e-3


@pytest.mark.slow
def test_null_token_removes_the_observation():
  batch, obs, m, params = _setup("dm")
  x = conventions.standard_normal(jax.random.PRNGKey(4), (B, U, N, P))
  t = jnp.full((B,), 3)
  drop = jnp.array([True, False, True])
  a = m.apply(params, obs.obs, obs.mask, obs.noise_var, x, t, drop)
  b = m.apply(params, 5.0 * obs.obs + 1.0, obs.mask, obs.noise_var, x, t, drop)
  np.testing.assert_allclose(np.asarray(a[drop]), np.asarray(b[drop]), atol=1e-5)
  assert float(jnp.max(jnp.abs(a[1] - b[1]))) > 1e-3


@pytest.mark.slow
def test_token_wider_than_d_model_is_refused():
  # 2 x N x g reals into d_model: g = 2 with N = 8 makes 32 > 16, a rank-deficient read-in of x_t.
  m = ChannelTransformer(O, U, N, P, num_hops=4, ue_per_token=2, use="dm", d_model=16, num_heads=2,
                         enc_layers=1, dec_layers=1)
  obs = srs.observe(_batch()["history"], jax.random.PRNGKey(2))
  with pytest.raises(ValueError, match=r"ue_per_token=2 makes tokens of .* = 32 reals, wider than d_model=16"):
    _init(m, obs)


@pytest.mark.slow
def test_latest_observation_path_is_the_wiener_shrinkage_of_the_srs_baseline():
  # With the decoder's head zeroed, the SL output is exactly g[age] * y_latest / (1 + noise_var):
  # at g = 1 on every age it is the per-element Wiener estimate from the latest observation of each PRB.
  batch, obs, m, params = _setup("sl")
  p = jax.tree_util.tree_map(lambda x: x, params)
  p["params"]["head"] = jax.tree_util.tree_map(jnp.zeros_like, p["params"]["head"])
  p["params"]["skip_gain"] = jnp.stack([jnp.ones(O), jnp.zeros(O)], -1)
  out = m.apply(p, obs.obs, obs.mask, obs.noise_var)
  want = srs.baseline(obs) / (1.0 + obs.noise_var)[:, None, None, None]
  np.testing.assert_allclose(np.asarray(out), np.asarray(want), rtol=1e-5, atol=1e-6)
  # Initialized at g = 0, the path starts closed; the SNR enters the network (different output).
  a = m.apply(params, obs.obs, obs.mask, obs.noise_var)
  b = m.apply(params, obs.obs, obs.mask, obs.noise_var * 10.0)
  assert float(jnp.max(jnp.abs(a - b))) > 1e-4


@pytest.mark.slow
def test_sample_covariance_average_gramian_and_uniform_precoders():
  # Rank-one channels H = u v^H with one v for every cell: the wideband sample covariance of the SRS
  # history, and the average Gramian of such channels, both have v as dominant eigenvector, so each
  # precoder captures the whole energy (|<w, v>| = 1); Haar-uniform precoders capture N_s / n_bs of it
  # in expectation (E|<w, v>|^2 = 1 / n_bs per column).
  k = jax.random.split(jax.random.PRNGKey(8), 4)
  v = conventions.standard_normal(k[0], (N,))
  v = v / jnp.linalg.norm(v)
  u = conventions.standard_normal(k[1], (B, O, U, 1, P))
  hist = u * jnp.conj(v)[None, None, None, :, None]                    # [B, O, U, N, P]
  obs = srs.observe(hist, k[2], snr_db_range=(60.0, 60.0))            # essentially noiseless
  W = precoding.wideband_precoder(srs.history_gramian(obs), 1, P)     # [B, N, 1, P]
  np.testing.assert_allclose(np.abs(np.einsum("bnsf,n->bsf", np.asarray(W).conj(), np.asarray(v))), 1.0, atol=1e-4)
  G = precoding.average_gramian(hist[:, 0])
  Wa = precoding.precoder_from_gramian(G, 1)                          # [N, 1, P]
  np.testing.assert_allclose(np.abs(np.einsum("nsf,n->sf", np.asarray(Wa).conj(), np.asarray(v))), 1.0, atol=1e-4)
  # The Gramian's trace is the mean channel energy per PRB; noise adds noise_var * I to the history one.
  np.testing.assert_allclose(np.trace(np.asarray(G), axis1=0, axis2=1),
                             np.mean(np.sum(np.abs(np.asarray(hist[:, 0])) ** 2, axis=(1, 2)), 0), rtol=1e-4)
  n = 4000
  Wu = precoding.random_precoder(k[3], (n,), N, 2, 1)
  cap = np.sum(np.abs(np.einsum("bnsf,n->bsf", np.asarray(Wu).conj(), np.asarray(v))) ** 2, axis=(1, 2))
  # Mean of n draws of a Beta(2, N - 2) variable (mean 2 / N, std < 0.2): 5 standard errors.
  assert abs(cap.mean() - 2 / N) < 5 * 0.2 / np.sqrt(n)


class _Oracle:
  """A stand-in model whose ``apply`` returns a fixed channel (for the closed-form loss checks)."""

  def __init__(self, out):
    self.out = out

  def apply(self, params, *args, **kwargs):
    return self.out


def test_sl_and_e2e_losses_closed_form():
  batch = _batch()
  h = batch["target"]
  # Perfect prediction: zero MSE; predicting 0: the mean power of h.
  assert float(prediction.sl_loss(_Oracle(h), None, batch, jax.random.PRNGKey(0))) == pytest.approx(0.0, abs=1e-7)
  assert float(prediction.sl_loss(_Oracle(0 * h), None, batch, jax.random.PRNGKey(0))) == pytest.approx(
      float(jnp.mean(jnp.abs(h) ** 2)), rel=1e-5)
  # A latent channel equal to the truth captures the top-N_s singular energies (Eckart-Young).
  s = np.linalg.svd(np.moveaxis(np.asarray(h), -1, -3), compute_uv=False)   # [B, P, min(U, N)]
  want = -s[..., :2].__pow__(2).sum() / (s ** 2).sum()
  got = float(prediction.e2e_loss(_Oracle(h), None, batch, jax.random.PRNGKey(0), n_streams=2))
  assert got == pytest.approx(want, rel=1e-5)


@pytest.mark.slow
def test_latent_precoder_matches_gramian_eigenvectors_and_has_finite_gradient():
  Z = conventions.standard_normal(jax.random.PRNGKey(5), (2, U, 16, 3))
  H = conventions.standard_normal(jax.random.PRNGKey(6), (2, U, 16, 3))
  W1 = precoding.latent_precoder(Z, 2)
  W2 = precoding.precoder_from_gramian(precoding.gramian(Z[None]), 2)
  overlap = jnp.abs(jnp.einsum("bisf,bisf->bsf", jnp.conj(W1), W2))    # |<w1, w2>| = 1 up to a phase
  np.testing.assert_allclose(np.asarray(overlap), 1.0, atol=1e-5)

  def energy(Zr, Zi):
    return jnp.sum(precoding.received_energy(H, precoding.latent_precoder(jax.lax.complex(Zr, Zi), 2)))

  g = jax.grad(energy, argnums=(0, 1))(Z.real, Z.imag)
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in g)
  # Directional derivative against a central difference (float32: step 1e-3, 2 % tolerance).
  V = conventions.standard_normal(jax.random.PRNGKey(7), Z.shape)
  d = 1e-3
  fd = (energy((Z + d * V).real, (Z + d * V).imag) - energy((Z - d * V).real, (Z - d * V).imag)) / (2 * d)
  an = jnp.sum(g[0] * V.real) + jnp.sum(g[1] * V.imag)
  assert float(an) == pytest.approx(float(fd), rel=2e-2)


@pytest.mark.slow
def test_sample_posterior_repeats_the_encoder_memory_per_observation():
  """K samples of B observations equal one sample of each observation repeated K times (same keys)."""
  batch, obs, m, params = _setup("dm")
  sch = schedules.cosine_schedule(6)
  K = 3
  a = prediction.sample_posterior(m, params, obs, jax.random.PRNGKey(9), sch, num_samples=K)
  rep = srs.SRSObservation(*(jnp.repeat(x, K, axis=0) for x in obs))
  b = prediction.sample_posterior(m, params, rep, jax.random.PRNGKey(9), sch, num_samples=1)[0]
  assert a.shape == (K, B, U, N, P)
  # Same arithmetic in a different batch layout: float32 rounding only (relative 1e-4).
  np.testing.assert_allclose(np.asarray(jnp.swapaxes(a, 0, 1).reshape(b.shape)), np.asarray(b), rtol=1e-4,
                             atol=1e-4)
  # Guidance w = 1 takes the single-pass path; w = 1 through the guided path gives the same samples.
  g = prediction.sample_posterior(m, params, obs, jax.random.PRNGKey(9), sch, num_samples=K, guidance=1.0 - 1e-9)
  np.testing.assert_allclose(np.asarray(g), np.asarray(a), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_samples=0), "num_samples"),
    (dict(guidance=1.5), "guidance scale w must lie in"),
    (dict(prediction="x0"), "prediction='x0' is not supported"),
    (dict(solver=ddpm_solvers.Solver.parse("ddim:2"), deterministic=True), "replaces the full chain"),
    (dict(sampling=prediction.Sampling(num_samples=2), guidance=0.5), "not both"),
])
def test_sample_posterior_rejects_bad_arguments(kwargs, match):
  # Refused before any work: no parameters are needed (None), nothing is traced.
  obs = srs.observe(_batch()["history"], jax.random.PRNGKey(2))
  with pytest.raises(ValueError, match=match):
    prediction.sample_posterior(_model("dm"), None, obs, jax.random.PRNGKey(0), schedules.cosine_schedule(4),
                                **kwargs)


@pytest.mark.slow
def test_trajectory_record_matches_the_final_sample():
  batch, obs, m, params = _setup("dm")
  sch = schedules.cosine_schedule(5)
  h = batch["target"]
  x0, rec = prediction.sample_posterior(m, params, obs, jax.random.PRNGKey(1), sch, num_samples=2,
                                        record=prediction.trajectory_metrics(h, 2))
  assert rec.shape == (5, 4)
  # The last recorded x_t is the returned x_0.
  assert float(rec[-1, 0]) == pytest.approx(float(jnp.sum(jnp.abs(x0 - h[None]) ** 2)), rel=1e-5)


@pytest.mark.slow
def test_riemannian_cg_reaches_the_svd_optimum_for_one_channel():
  """K = 1: with equal power per layer, the top right singular vectors maximize eq. (27) (Poincare separation)."""
  H = conventions.standard_normal(jax.random.PRNGKey(0), (3, 4, 8, 5))
  snr = 10.0
  W0 = precoding.random_precoder(jax.random.PRNGKey(1), (3,), 8, 2, 5)
  W = stiefel.capacity_precoder(H[None], W0, snr, num_iters=100)
  Wf = jnp.moveaxis(W, -1, -3)
  gram = np.asarray(jnp.conj(jnp.swapaxes(Wf, -1, -2)) @ Wf)
  np.testing.assert_allclose(gram, np.broadcast_to(np.eye(2), gram.shape), atol=1e-5)
  se_svd = precoding.spectral_efficiency(H, precoding.svd_precoder(H, 2), snr)
  se_cg = precoding.spectral_efficiency(H, W, snr)
  se_0 = precoding.spectral_efficiency(H, W0, snr)
  assert float(jnp.min(se_svd - se_0)) > 1.0          # the start is far from optimal
  np.testing.assert_allclose(np.asarray(se_cg), np.asarray(se_svd), atol=1e-3)


@pytest.mark.slow
def test_riemannian_cg_never_decreases_the_monte_carlo_capacity():
  Hs = conventions.standard_normal(jax.random.PRNGKey(3), (8, 2, 4, 8, 3))
  snr = jnp.array([3.0, 30.0])
  Wb = precoding.bayesian_precoder(Hs, 2)
  Wc = stiefel.capacity_precoder(Hs, Wb, snr, num_iters=20)
  obj = lambda W: jnp.mean(jax.vmap(lambda h: precoding.spectral_efficiency(h, W, snr))(Hs), 0)
  assert bool(jnp.all(obj(Wc) >= obj(Wb) - 1e-5))
  assert float(jnp.max(obj(Wc) - obj(Wb))) > 1e-3    # i.i.d. samples: the energy surrogate is not capacity-optimal
