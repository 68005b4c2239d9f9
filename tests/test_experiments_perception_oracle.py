"""The exact-posterior experiment (jaxchan.experiments.perception_oracle): exact Bayes against the CME, the learned
models' config, the SRS view of the observation."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest


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


def _oracle_problem(shape=(2, 4, 4), sounded=2, rho=0.7, snr_db=5.0, num=3, seed=0):
  from jaxchan import oracle
  from jaxchan.experiments import perception_oracle as po
  prior = oracle.clustered_mixture(jax.random.PRNGKey(seed), shape, 3, paths=2)
  h, y, s2 = po.draw(prior, jax.random.PRNGKey(seed + 1), num, shape=shape, sounded=sounded, rho=rho,
                     snr_db_range=(snr_db, snr_db))
  return prior, h, y, s2


def _exact_gaussian(prior, y, s2, shape, sounded, rho):
  """Mean ``[B, *shape]`` and per-PRB marginal covariances ``[B, F, N, N]`` of the exact posterior under the
  moment-matched Gaussian (jaxchan.oracle, dense)."""
  from jaxchan import oracle
  from jaxchan.experiments import perception_oracle as po
  g = po.moment_matched(prior)
  n_ue, n_bs, n_freq = shape
  means, covs = [], []
  for yi, s in zip(y, s2):
    A, N = po.observation(shape, sounded, rho, float(s))
    post = oracle.posterior(g, yi, A, N)
    means.append(np.asarray(post.means[0]).reshape(shape))
    c = np.asarray(post.covs[0]).reshape(n_ue, n_bs, n_freq, n_ue, n_bs, n_freq)
    covs.append(np.stack([c[0, :, f, 0, :, f] for f in range(n_freq)]))
  return np.stack(means), np.stack(covs)


@pytest.mark.slow
def test_under_prior_is_the_exact_gaussian_posterior_per_prb():
  # The prior anchor's conditional Gaussian against a dense solve of the same linear-Gaussian problem
  # (jaxchan.oracle.posterior on the moment-matched prior): float32 Cholesky solves of 32 x 32 systems with
  # condition numbers < 1e3 on both sides, so 1e-4 absolute on unit-power channels.
  from jaxchan import gaussian_predictor
  from jaxchan.experiments import perception_oracle as po
  shape, sounded, rho = (2, 4, 4), 2, 0.7
  prior, h, y, s2 = _oracle_problem(shape, sounded, rho)
  view = po.srs_view(y, shape, sounded, rho, s2)
  latest = view.obs[:, 0]
  seen = view.mask[:, 0]
  pred = gaussian_predictor.under_prior(latest, seen, view.noise_var, po.row_covariance(prior, shape))
  mean, covs = _exact_gaussian(prior, y, s2, shape, sounded, rho)
  np.testing.assert_allclose(np.asarray(pred.mean), mean, atol=1e-4)
  V, c = np.asarray(pred.vecs), np.asarray(pred.cov_vals)                      # [B, F, N, N], [B, N, F]
  np.testing.assert_allclose(np.einsum("bfik,bkf,bfjk->bfij", V, c, V.conj()), covs, atol=1e-4)
  # Nothing seen: the prior's own per-PRB marginals, mean 0.
  none = gaussian_predictor.under_prior(latest, jnp.zeros_like(seen), view.noise_var,
                                        po.row_covariance(prior, shape))
  assert float(jnp.max(jnp.abs(none.mean))) == 0.0
  row = np.asarray(po.row_covariance(prior, shape)).reshape(shape[1], shape[2], shape[1], shape[2])
  V, c = np.asarray(none.vecs), np.asarray(none.cov_vals)
  np.testing.assert_allclose(np.einsum("bfik,bkf,bfjk->bfij", V, c, V.conj())[0],
                             np.stack([row[:, f, :, f] for f in range(shape[2])]), atol=1e-5)
  with pytest.raises(ValueError, match=r"row_cov has shape \(4, 4\); .* need \(16, 16\)"):
    gaussian_predictor.under_prior(latest, seen, view.noise_var, jnp.eye(4, dtype=jnp.complex64))


def test_per_prb_eigenbases_give_what_one_shared_eigenbasis_gives():
  # The same covariances written with one eigenbasis per PRB (the prior anchor's form) and with one shared by
  # every PRB (the Gaussian predictor's): every kernel that reads a GaussianPrediction must agree (float32).
  from jaxchan import gaussian_predictor as gp
  rng = np.random.default_rng(0)
  B, U, N, F = 2, 2, 4, 3
  q, _ = np.linalg.qr(rng.normal(size=(B, N, N)) + 1j * rng.normal(size=(B, N, N)))
  shared = gp.GaussianPrediction(jnp.asarray(rng.normal(size=(B, U, N, F)) + 1j * rng.normal(size=(B, U, N, F)),
                                             jnp.complex64), jnp.asarray(q, jnp.complex64),
                                 jnp.asarray(rng.uniform(0.1, 1.0, (B, N, F)), jnp.float32))
  per_prb = shared._replace(vecs=jnp.broadcast_to(shared.vecs[:, None], (B, F, N, N)))
  np.testing.assert_allclose(gp.expected_gramian(per_prb), gp.expected_gramian(shared), atol=1e-5)
  x_t = jnp.asarray(rng.normal(size=(B, U, N, F)) + 1j * rng.normal(size=(B, U, N, F)), jnp.complex64)
  abar = jnp.asarray([0.3, 0.8])
  np.testing.assert_allclose(gp.denoise(per_prb, x_t, abar), gp.denoise(shared, x_t, abar), atol=1e-5)
  key = jax.random.PRNGKey(0)
  np.testing.assert_allclose(gp.sample(per_prb, key, 3), gp.sample(shared, key, 3), atol=1e-5)
  np.testing.assert_allclose(gp.latent(per_prb, U), gp.latent(shared, U), atol=1e-4)


@pytest.mark.slow
def test_untrained_prior_anchored_models_are_the_gaussian_baseline():
  # Zero head: the SL's estimate is the exact LMMSE under the prior's covariance, and the DM's output at any
  # step is the v of the exact posterior mean of h given x_t under the per-PRB conditional Gaussians.
  import configs
  from jaxchan import ddpm, gaussian_predictor, prediction
  from jaxchan.experiments import perception_oracle as po
  from jaxchan.experiments import perception_oracle_learned as learned
  from jaxchan.experiments import perception_setup
  c = configs.get("perception_oracle:smoke,gaussian")
  shape, sounded, rho = tuple(c.shape), c.sounded, c.rho
  prior, h, y, s2 = _oracle_problem(shape, sounded, rho, num=4)
  view = po.srs_view(y, shape, sounded, rho, s2)
  mean, _ = _exact_gaussian(prior, y, s2, shape, sounded, rho)
  sl = learned.learned_model(c, "sl", prior)
  params = perception_setup.init_params(sl, jax.random.PRNGKey(3))
  sl_out = jax.jit(lambda p, v: prediction.sl_predict(sl, p, v))(params, view)    # one program, not one per op
  np.testing.assert_allclose(np.asarray(sl_out), mean, atol=1e-4)
  dm = learned.learned_model(c, "dm", prior)
  p_dm = perception_setup.init_params(dm, jax.random.PRNGKey(4))
  sch = learned.learned_schedule(c)
  t = jnp.asarray([1, 3, 6, 9])
  x_t = jnp.asarray(np.random.default_rng(5).normal(size=h.shape) * (1 + 1j) / np.sqrt(2), jnp.complex64)
  out = jax.jit(dm.apply)(p_dm, view.obs, view.mask, view.noise_var, x_t, t)
  pred = gaussian_predictor.under_prior(view.obs[:, 0], view.mask[:, 0], view.noise_var,
                                        po.row_covariance(prior, shape))
  x0 = gaussian_predictor.denoise(pred, x_t, sch.alpha_bars[t])
  want = ddpm.v_target(x0, ddpm.eps_from_x0(x_t, x0, t, sch), t, sch)
  np.testing.assert_allclose(np.asarray(out), np.asarray(want), atol=1e-4)


def test_oracle_refuses_a_checkpoint_of_another_anchor(tmp_path):
  import configs
  from jaxchan import oracle
  from jaxchan.experiments import perception_oracle_learned as learned
  c = configs.get("perception_oracle:smoke,gaussian")
  c.progress = False
  prior = oracle.clustered_mixture(jax.random.PRNGKey(0), tuple(c.shape), c.num_components, paths=c.paths)
  (tmp_path / "sl").mkdir()
  (tmp_path / "sl" / "model.json").write_text('{"anchor": "none"}')
  with pytest.raises(ValueError, match=r"trained with anchor 'none'; this config asks for 'prior' "
                                       r"\(config.learned.anchor\)"):
    learned.train_learned(c, prior, "sl", str(tmp_path / "sl"))
  # Checkpoints from before model.json existed are the paper's network's: refused for the anchored config too.
  (tmp_path / "old" / "checkpoints").mkdir(parents=True)
  with pytest.raises(ValueError, match=r"trained with anchor 'none'; this config asks for 'prior'"):
    learned.train_learned(c, prior, "sl", str(tmp_path / "old"))
  c.learned.anchor = "gauss"
  from jaxchan.experiments import perception_oracle
  with pytest.raises(ValueError, match="config.learned.anchor='gauss' is not supported"):
    perception_oracle.validate(c)
  # The Gaussian row's K is checked with or without the learned models.
  c.learned.anchor, c.learned.enabled, c.learned.num_samples = "prior", False, 0
  with pytest.raises(ValueError, match="config.learned.num_samples"):
    perception_oracle.validate(c)


@pytest.mark.parametrize("run", ["perception_oracle", "perception_oracle/short_training", "perception_oracle_anchored",
                                 "perception_oracle_mixture"])
def test_committed_oracle_results_re_render_to_their_tables(run):
  import json
  import os
  from jaxchan.experiments import perception_oracle_report
  from conftest import ROOT
  d = os.path.join(ROOT, "docs", "results", run)
  assert perception_oracle_report.to_markdown(json.load(open(os.path.join(d, "results.json")))) == \
      open(os.path.join(d, "tables.md")).read()


def test_anchor_comparison_tables_the_committed_runs_side_by_side():
  # The comparison behind docs/perception.md's anchored-oracle table, from the committed results.json files alone:
  # each run's worst ratio is the minimum of its row, and runs of different SNR grids are refused.
  import json
  import os
  from conftest import ROOT
  from jaxchan.experiments import perception_oracle_report as rep
  runs = {k: json.load(open(os.path.join(ROOT, "docs", "results", d, "results.json")))
          for k, d in (("anchored", "perception_oracle_anchored"), ("literal", "perception_oracle/short_training"))}
  md = rep.anchor_comparison(runs)
  for label, res in runs.items():
    worst = min(r["dm_ratio"] for r in rep.learned_vs_exact(res))
    line = next(row for row in md.splitlines() if row.startswith(f"| DM / exact K-sample, {label} |"))
    assert line.endswith(f"| **{worst:.3f}** |")
  short = dict(runs["literal"], rows=runs["literal"]["rows"][:3])
  with pytest.raises(ValueError, match="compare runs of one SNR grid"):
    rep.anchor_comparison({"anchored": runs["anchored"], "short": short})


def _dm_check_problem(shape, sounded, rho, num=3):
  """A two-cluster prior whose PRBs are uncorrelated (R_f = I), so the conditional law given y factorizes over
  PRBs and the per-PRB kernels are exact, with draws and observations as the experiment makes them."""
  from jaxchan import oracle
  from jaxchan.experiments import perception_oracle as po
  n_ue, n_bs, n_freq = shape
  rng = np.random.default_rng(7)
  covs = []
  for _ in range(2):
    g = rng.normal(size=(n_bs, 2)) + 1j * rng.normal(size=(n_bs, 2))
    r_bs = g @ g.conj().T / 2 + 0.05 * np.eye(n_bs)
    covs.append(np.kron(np.eye(n_ue), np.kron(r_bs / np.real(np.trace(r_bs)) * n_bs, np.eye(n_freq))))
  d = n_ue * n_bs * n_freq
  prior = oracle.GaussianMixture(jnp.asarray([0.3, 0.7], jnp.float32), jnp.zeros((2, d), jnp.complex64),
                                 jnp.asarray(np.stack(covs), jnp.complex64))
  h, y, s2 = po.draw(prior, jax.random.PRNGKey(1), num, shape=shape, sounded=sounded, rho=rho,
                     snr_db_range=(0.0, 10.0))
  return prior, h, y, s2


@pytest.mark.slow
def test_untrained_mixture_anchored_models_are_the_exact_mixture_posterior():
  # Zero head, anchored on a known mixture: the SL's estimate is the exact CME of jaxchan.oracle (every
  # component's Gaussian posterior weighted by its evidence, the UE rows sharing the component), and the DM's
  # output is the v of E[h | x_t, y], here exact too (PRBs uncorrelated: the per-PRB kernels lose nothing),
  # against a dense solve of y and x_t stacked as one linear observation. float32 solves of <= 32 x 32 systems
  # with condition numbers < 1e3: 1e-4 absolute on unit-power channels.
  import configs
  from jaxchan import ddpm, oracle, prediction
  from jaxchan.experiments import perception_oracle as po
  from jaxchan.experiments import perception_oracle_learned as learned
  from jaxchan.experiments import perception_setup
  from jaxchan.models.transformer import ChannelTransformer, prior_mix_field
  c = configs.get("perception_oracle:smoke")
  c.learned.anchor = "mixture"
  shape, sounded, rho = tuple(c.shape), c.sounded, c.rho
  prior, h, y, s2 = _dm_check_problem(shape, sounded, rho)
  view = po.srs_view(y, shape, sounded, rho, s2)
  sl = learned.learned_model(c, "sl", prior, fitted=prior)
  sl_out = jax.jit(lambda p, v: prediction.sl_predict(sl, p, v))(perception_setup.init_params(sl, jax.random.PRNGKey(3)),
                                                                  view)
  A0, _ = po.observation(shape, sounded, rho, 0.0)
  eye = jnp.eye(A0.shape[0], dtype=jnp.float32)
  cme = np.stack([np.asarray(oracle.posterior_mean(prior, y[i], A0, (1 - rho**2 + s2[i]) * eye))
                  for i in range(len(y))]).reshape(h.shape)
  np.testing.assert_allclose(np.asarray(sl_out), cme, atol=1e-4)
  dm = learned.learned_model(c, "dm", prior, fitted=prior)
  sch = learned.learned_schedule(c)
  t = jnp.asarray([1, 5, 9])
  x_t = jnp.asarray(np.random.default_rng(5).normal(size=h.shape) * (1 + 1j) / np.sqrt(2), jnp.complex64)
  out = jax.jit(dm.apply)(perception_setup.init_params(dm, jax.random.PRNGKey(4)), view.obs, view.mask,
                          view.noise_var, x_t, t)
  d = int(np.prod(shape))
  x0 = []
  for i in range(len(y)):
    ab = float(sch.alpha_bars[t[i]])
    A = jnp.concatenate([A0, np.sqrt(ab) * jnp.eye(d, dtype=A0.dtype)])
    N = jnp.diag(jnp.concatenate([jnp.full((A0.shape[0],), 1 - rho**2 + s2[i]), jnp.full((d,), 1 - ab)]))
    x0.append(np.asarray(oracle.posterior_mean(prior, jnp.concatenate([y[i], x_t[i].reshape(-1)]), A, N)))
  x0 = jnp.asarray(np.stack(x0).reshape(h.shape))
  want = ddpm.v_target(x0, ddpm.eps_from_x0(x_t, x0, t, sch), t, sch)
  np.testing.assert_allclose(np.asarray(out), np.asarray(want), atol=1e-4)
  # The mixture anchor is for the SL and the DM; a malformed field is refused by name.
  kw = dict(n_occ=1, n_ue=shape[0], n_bs=shape[1], n_prb=shape[2], num_hops=2, ue_per_token=2, d_model=16,
            num_heads=2, enc_layers=1, dec_layers=1, anchor="mixture")
  field = prior_mix_field(*po.mixture_rows(prior, shape))
  with pytest.raises(ValueError, match="anchor='mixture' anchors use='sl' or 'dm'"):
    perception_setup.init_params(ChannelTransformer(use="e2e", prior_mix=field, **kw), jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match=r"anchor='mixture' needs one SRS occasion .*transformer.prior_mix_field"):
    perception_setup.init_params(ChannelTransformer(use="sl", prior_mix=(field[0], field[1][:1]), **kw),
                                 jax.random.PRNGKey(0))


@pytest.mark.slow
def test_em_fitted_mixture_recovers_the_cluster_prior_and_bad_settings_are_refused():
  # Classification EM on 1,024 draws (2,048 rows of 4 x 2 elements, 4 well-separated beams): the weights within
  # 0.05 of the planted 0.25 (a sample's two rows share its cluster, so the share of 1,024 samples has binomial
  # sd sqrt(0.25 x 0.75 / 1024) = 0.014: 0.05 is 3.7 sd) and the fitted mixture's CME loses at
  # most 2 % to the exact CME on the same draws (a plug-in covariance from n ~ 512 rows of d = 8 elements costs of
  # order d / n = 1.6 %; measured 0.02 % here), while the one-Gaussian LMMSE loses more than 5 % (measured 11 %:
  # it cannot tell the clusters apart).
  import configs
  from jaxchan import oracle
  from jaxchan.experiments import perception_oracle as po
  c = configs.get("perception_oracle:smoke")
  c.mixture.train_samples = 1024
  prior = oracle.clustered_mixture(jax.random.fold_in(jax.random.PRNGKey(c.seed), 0), tuple(c.shape),
                                   c.num_components, paths=c.paths)
  fitted = po.fit_anchor(c, prior, log=lambda s: None)
  np.testing.assert_allclose(np.sort(np.asarray(fitted.weights)), 0.25, atol=0.05)
  kw = dict(shape=tuple(c.shape), sounded=c.sounded, rho=c.rho)
  h, y, s2 = po.draw(prior, jax.random.PRNGKey(9), 512, snr_db_range=(0.0, 20.0), **kw)
  exact, fit = po.exact_cme_mse(prior, h, y, s2, **kw), po.exact_cme_mse(fitted, h, y, s2, **kw)
  assert fit <= 1.02 * exact
  assert po.exact_cme_mse(po.moment_matched(prior), h, y, s2, **kw) > 1.05 * exact
  for field, value, match in (("rank", 8, r"config.mixture.rank=8 must be below the row size"),
                              ("train_samples", 8, r"config.mixture.train_samples=8 gives 16 rows, too few"),
                              ("rounds", -1, r"config.mixture.rounds=-1 must be an integer >= 0"),
                              ("components", 0, r"config.mixture.components")):
    bad = configs.get("perception_oracle:smoke")
    bad.mixture[field] = value
    with pytest.raises(ValueError, match=match):
      po.validate(bad)
