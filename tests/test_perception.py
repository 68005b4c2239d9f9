"""Perception-distortion pieces: the transformer backbone, the three objectives, posterior sampling,
the differentiable E2E precoder and the Riemannian-CG check of eq. (27)."""

import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ROOT, assert_stops_before_work, assert_validate_refuses, config_with
from jaxchan import conventions, precoding, prediction, schedules, srs, stiefel
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
    return m.init(jax.random.PRNGKey(0), obs.obs, obs.mask, obs.noise_var, jnp.zeros((B, U, N, P), jnp.complex64),
                  jnp.ones((B,), jnp.int32), jnp.zeros((B,), bool))
  return m.init(jax.random.PRNGKey(0), obs.obs, obs.mask, obs.noise_var)


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



@pytest.mark.slow
def test_perception_smoke_end_to_end_and_resume(tmp_path, tiny_datasets, capsys):
  data_path = tiny_datasets["high_mobility"]   # the :smoke,high_mobility dataset, built once per session
  from jaxchan.experiments import perception
  # In-process (run.py's wiring is tested by the run_py tests); the job writes results.json as from the CLI.
  perception.run(config_with("perception:smoke,high_mobility", {"data.path": data_path, "progress": False}),
                 str(tmp_path / "wd"))
  res = json.load(open(tmp_path / "wd" / "results.json"))
  r = res["scenarios"]["high_mobility"]
  assert set(r["training"]) == {"sl", "dm", "e2e"}
  t3 = r["eval"]["table3"]
  # Perfect-CSI SVD precoding maximizes SE for every channel (K = 1 optimum, see the CG test above).
  assert all(t3["perfect_csi"] >= t3[k] - 1e-4 for k in t3)
  assert len(r["trajectory"]["stochastic"]["nmse_xt"]) == 10        # T = 10 in :smoke
  assert r["guidance"]["w"] == [0.0, 1.0]
  assert r["eval"]["cg_check"]["num_test"] > 0
  # The covariance's eigenvalues majorize its diagonal and the per-direction eps error is concave in the
  # variance (Schur), so the full Gaussian bound never exceeds the per-element one.
  b = r["bounds"]
  assert 0.0 <= b["dm_gaussian"] <= b["dm_per_element"] + 1e-6 and b["sl_zero"] > 0
  for f in ("fig5_examples.png", "fig6_trajectory.png", "fig7_se_snr.png", "fig8_guidance.png"):
    assert (tmp_path / "wd" / f).stat().st_size > 1000
  assert "Table III" in (tmp_path / "wd" / "tables.md").read_text()
  # A trained model loads back for library use.
  from jaxchan.experiments.perception import load_trained, n_bs_used
  model, params, cfg_ = load_trained(str(tmp_path / "wd" / "high_mobility" / "models" / "dm"))
  import h5py
  with h5py.File(data_path) as f:
    hist = jnp.asarray(f["test/history"][:2, :, :, :n_bs_used(cfg_)])   # the BS antennas it was trained on
  obs = srs.observe(hist, jax.random.PRNGKey(0), num_hops=cfg_.srs.num_hops)
  s = prediction.sample_posterior(model, params, obs, jax.random.PRNGKey(1), schedules.cosine_schedule(cfg_.dm.T),
                                  num_samples=3)
  assert s.shape == (3, 2, 4, n_bs_used(cfg_), 52) and bool(jnp.all(jnp.isfinite(s.real)))
  # Rerunning resumes: nothing is trained again (in-process, the command line is tested above; the rerun skips
  # the evaluation, not what this checks).
  capsys.readouterr()
  overrides = {"data.path": data_path, "progress": False, "eval.enabled": False}
  perception.run(config_with("perception:smoke,high_mobility", overrides), str(tmp_path / "wd"))
  out = capsys.readouterr().out
  assert out.count("resumed from") == 3 and '"epoch":' not in out
  # A dataset whose shapes do not match the config stops before any training.
  from jaxchan.data import DatasetError
  with pytest.raises(DatasetError, match=r"(?s)per-sample shape \(4, 4, 32, 52\).*expects \(4, 4, 16, 52\)"):
    perception.run(config_with("perception:smoke,high_mobility", {"data.path": data_path, "data.n_bs": 16}),
                   str(tmp_path / "wd2"))
  assert not os.path.exists(tmp_path / "wd2" / "high_mobility" / "models")


@pytest.mark.parametrize("overrides, match", [
    ({"eval.num_samples": 0}, "config.eval.num_samples (K) = 0"),
    ({"eval.guidance": 1.5}, "must lie in [0.0, 1.0]"),
    ({"eval.guidance_scales": (0.0, 2.0)}, "set config.eval.allow_extrapolation=True"),
    ({"eval.n_streams": 5}, "config.eval.n_streams (N_s) = 5 must be an integer in [1, n_ue = 4]"),
    ({"train.models": ("sl", "gan")}, "config.train.models entry='gan' is not supported"),
    ({"scenarios": ("city",)}, "config.scenarios entry='city' is not supported"),
    ({"dm.clip_x0": -1.0}, "config.dm.clip_x0=-1.0 must be >= 0"),
    ({"dm.max_beta": 1.0}, "config.dm.max_beta=1.0 must lie in (0, 1)"),
    ({"dm.prediction": "x0"}, "config.dm.prediction='x0' is not supported"),
    ({"dm.T": 0}, "config.dm (T, cosine_s, max_beta): T must be a positive integer"),
    ({"train.epochs.dm": -1}, "config.train.epochs.dm must be a positive integer"),
    ({"eval.batch_size": 0}, "config.eval.batch_size must be a positive integer"),
    ({"data.bs_antennas": 8}, "config.model.ue_per_token=4 makes tokens of 2 x n_bs x ue_per_token = 64 "
                              "reals, wider than d_model=32"),
    ({"data.bs_antennas": 40}, "config.data.bs_antennas=40 must be an integer in [0, n_bs=32]"),
    ({"eval.dl_snr_grid_db": ()}, "config.eval.dl_snr_grid_db=() must be a non-empty list"),
])
def test_perception_bad_config_is_refused_by_validate(overrides, match):
  from jaxchan.experiments import perception
  assert_validate_refuses(perception, config_with("perception:smoke,low_mobility", overrides), match)


def test_perception_bad_config_stops_run_py_before_work(tmp_path):
  assert_stops_before_work(os.path.join(ROOT, "configs", "perception.py") + ":smoke,low_mobility",
                           "--config.eval.num_samples=0", "config error: config.eval.num_samples (K) = 0", tmp_path,
                           made="low_mobility")


_SHARDED_EVAL = r"""
import jax, jax.numpy as jnp, numpy as np
import configs
from jaxchan.experiments import common, perception, perception_eval
config = configs.get("perception:smoke")
assert jax.device_count() == 4
models = {}
for i, use in enumerate(("sl", "dm", "e2e")):
  m = perception.make_model(config, use)
  models[use] = (m, perception.init_params(m, jax.random.PRNGKey(i)))
run = perception_eval.make_eval_batch(config, models)
k1, k2 = jax.random.split(jax.random.PRNGKey(5))
from jaxchan import conventions
d = config.data
n_bs = perception.n_bs_used(config)
hist = conventions.standard_normal(k1, (8, d.n_occ, d.n_ue, n_bs, d.n_prb))
h = conventions.standard_normal(k2, (8, d.n_ue, n_bs, d.n_prb))
G_avg = jnp.broadcast_to(jnp.eye(n_bs, dtype=jnp.complex64)[..., None], (n_bs, n_bs, d.n_prb))
params = tuple(models[u][1] for u in ("sl", "dm", "e2e"))
a = run(params, hist, h, jax.random.PRNGKey(0), G_avg)[0]
hs, ts = common.shard_eval(hist, h)
assert len(ts.sharding.device_set) == 4
b = run(params, hs, ts, jax.random.PRNGKey(0), G_avg)[0]
for k in a:
  np.testing.assert_allclose(np.asarray(b[k]), np.asarray(a[k]), rtol=1e-4, err_msg=k)
print("ok", len(a))
"""


@pytest.mark.slow
def test_evaluation_split_over_four_devices_gives_the_same_numbers(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT, XLA_FLAGS="--xla_force_host_platform_device_count=4")
  proc = subprocess.run([sys.executable, "-c", _SHARDED_EVAL],
                        env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.startswith("ok")


def test_dm_schedule_comes_from_the_config():
  import ml_collections

  from jaxchan.experiments import perception

  cfg = ml_collections.ConfigDict(dict(dm=dict(T=50, cosine_s=0.02, max_beta=0.5)))
  sch = perception.dm_schedule(cfg)
  ref = schedules.cosine_schedule(50, s=0.02, max_beta=0.5)
  np.testing.assert_array_equal(sch.betas, ref.betas)
  # The clip binds at t = T (the cosine's unclipped beta_T is 1), so the last step is exactly max_beta.
  assert float(sch.betas[-1]) == pytest.approx(0.5) and float(jnp.max(sch.betas)) <= 0.5 + 1e-7


@pytest.mark.slow
def test_perception_oracle_smoke_exact_bayes_beats_cme_on_energy(tmp_path):
  # Eq. (28): for every observation the K -> infinity Bayesian precoder maximizes the conditional expected
  # captured energy E[||H W||^2 | y] = tr(W^H G(y) W) exactly (dominant eigenvectors of the exact posterior
  # Gramian G), so no precoder built from y or from nothing (CME, K samples, prior Gramian, uniform) beats it
  # on that closed-form quantity, at any SNR; only float32 rounding (1e-5) separates ties.
  import configs
  from jaxchan.experiments import perception_oracle, perception_oracle_report
  c = configs.get("perception_oracle:smoke")
  c.progress = False
  res = perception_oracle.run(c, str(tmp_path))
  for r in res["rows"]:
    for other in ("cme", "prior", "uniform", "bayes_1", "bayes_16"):
      assert r["bayes_inf"]["expected_energy"] >= r[other]["expected_energy"] - 1e-5, (r["snr_db"], other)
    # Perfect CSI captures the most energy of each realized channel (Eckart-Young).
    assert r["perfect_csi"]["energy"] >= max(v["energy"] for k, v in r.items() if isinstance(v, dict))
  assert (tmp_path / "fig_oracle_se.png").stat().st_size > 1000
  # The learned rows are scored on the same channels and tabled against their exact counterparts.
  cmp = perception_oracle_report.learned_vs_exact(res)
  assert [r["snr_db"] for r in cmp] == list(c.snr_db_grid)
  for r, row in zip(cmp, res["rows"]):
    assert r["dm_ratio"] == pytest.approx(row["dm_bayes"]["se"] / row["bayes_16"]["se"])
    assert r["sl_ratio"] == pytest.approx(row["sl"]["se"] / row["cme"]["se"])
  assert "Learned models against the exact ones" in (tmp_path / "tables.md").read_text()
  assert set(res["training"]) == {"sl", "dm"} and (tmp_path / "models" / "dm" / "metrics.jsonl").exists()
  c.rho = 1.5
  with pytest.raises(ValueError, match="config.rho=1.5"):
    perception_oracle.run(c, str(tmp_path / "bad"))


@pytest.mark.parametrize("field, value, match", [
    ("learned.num_samples", 8, r"config.learned.num_samples=8 must be one of config.num_samples=\(1, 16\)"),
    ("rho", 0.0, "they need config.rho > 0"),
    ("learned.ue_per_token", 1, None),
    ("learned.d_model", 8, "within config.learned.d_model=8"),
    ("learned.snr_db_range", (0.0, float("inf")), "config.learned.snr_db_range"),
    ("learned.prediction", "x0", "config.learned.prediction='x0' is not supported"),
])
def test_perception_oracle_learned_config_is_checked(field, value, match):
  import configs
  from jaxchan.experiments import perception_oracle
  c = configs.get("perception_oracle:smoke")
  *parents, leaf = field.split(".")
  node = c
  for p in parents:
    node = node[p]
  node[leaf] = value
  if match is None:                 # a valid alternative: 2 x 4 x 1 reals fit d_model 16
    perception_oracle.validate(c)
    return
  with pytest.raises(ValueError, match=match):
    perception_oracle.validate(c)


@pytest.mark.slow
def test_srs_view_is_the_least_squares_observation_with_its_noise_variance():
  # y = rho S h + n, n ~ CN(0, (1 - rho^2 + sigma^2) I): y / rho - S h has per-element variance
  # (1 - rho^2 + sigma^2) / rho^2, which is what the network is told. 4,000 draws x 16 sounded elements of a
  # |.|^2 of a complex Gaussian (relative std 1): 64,000 terms pin the mean to 0.4 %; allow 5 standard errors.
  from jaxchan import oracle
  from jaxchan.experiments import perception_oracle as po
  shape, sounded, rho = (2, 4, 4), 2, 0.6
  prior = oracle.clustered_mixture(jax.random.PRNGKey(0), shape, 2)
  h, y, s2 = po.draw(prior, jax.random.PRNGKey(1), 4000, shape=shape, sounded=sounded, rho=rho,
                     snr_db_range=(10.0, 10.0))
  view = po.srs_view(y, shape, sounded, rho, s2)
  assert view.obs.shape == (4000, 1) + shape and view.mask.shape == (4000, 1, 4)
  np.testing.assert_array_equal(np.asarray(view.mask[0, 0]), [True, True, False, False])
  assert float(jnp.max(jnp.abs(view.obs[..., sounded:]))) == 0.0
  nv = (1 - rho**2 + 0.1) / rho**2
  np.testing.assert_allclose(np.asarray(view.noise_var), nv, rtol=1e-5)
  err = np.mean(np.abs(np.asarray(view.obs[:, 0, ..., :sounded] - h[..., :sounded])) ** 2)
  assert err == pytest.approx(nv, rel=5 / np.sqrt(4000 * 16))


def test_perception_validate_refuses_nan_snrs():
  import configs
  from jaxchan.experiments import perception
  c = configs.get("perception:smoke")
  c.eval.dl_snr_grid_db = (0.0, float("nan"))
  with pytest.raises(ValueError, match=r"config.eval.dl_snr_grid_db=\(0.0, nan\) must be a non-empty list of finite"):
    perception.validate(c)
  c = configs.get("perception:smoke")
  c.srs.snr_db_range = (float("nan"), 10.0)
  with pytest.raises(ValueError, match="config.srs.snr_db_range"):
    perception.validate(c)
