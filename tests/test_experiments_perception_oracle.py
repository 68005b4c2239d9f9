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
