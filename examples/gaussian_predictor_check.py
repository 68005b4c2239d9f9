"""The Gaussian predictor on a perception dataset, against the classical precoders, with no learned model.

For each scenario of ``configs/perception.py:quick`` (its datasets, BS antennas, SRS model and DL SNR offset): NMSE of
the SRS baseline and of the Gaussian predictor's conditional mean, and the SE of perfect CSI, the SRS baseline, the
sample-covariance precoder and the Gaussian predictor (mean with SVD, Bayesian from K = 16 and K = 256 draws, and the
K -> infinity limit), on the first 256 test channels.

  python -m examples.gaussian_predictor_check --out=docs/results/gaussian_predictor
"""

import json
import os

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

import configs
from jaxchan import files, gaussian_predictor as gpred, metrics, precoding, srs
from jaxchan.experiments import perception, perception_eval

OUT = flags.DEFINE_string("out", None, "output folder (results.json, table.md)", required=True)
NUM = flags.DEFINE_integer("num_test", 256, "test channels per scenario")


def main(_):
  config = configs.get("perception:quick")
  scfg = perception.srs_cfg(config)
  n_s = config.eval.n_streams
  rows = {}
  for sc in config.scenarios:
    with perception.open_scenario(config, sc) as ds:
      rho = perception.fit_age_correlation(ds)
      test = ds.load("test")
      hist, h = jnp.asarray(test["history"][:NUM.value]), jnp.asarray(test["target"][:NUM.value])
    obs = srs.observe(hist, jax.random.PRNGKey(0), num_hops=scfg.num_hops, snr_db_range=scfg.snr_db_range)
    dl_snr = metrics.from_db(obs.snr_db + config.eval.dl_snr_offset_db)
    pred = gpred.predict(obs, rho)
    base = srs.baseline(obs)
    W = {"perfect_csi": precoding.svd_precoder(h, n_s), "srs_baseline": precoding.svd_precoder(base, n_s),
         "sample_cov": precoding.wideband_precoder(srs.history_gramian(obs), n_s, h.shape[-1]),
         "gaussian_mean": precoding.svd_precoder(pred.mean, n_s),
         "gaussian_bayes_16": precoding.bayesian_precoder(gpred.sample(pred, jax.random.PRNGKey(1), 16), n_s),
         "gaussian_bayes_256": precoding.bayesian_precoder(gpred.sample(pred, jax.random.PRNGKey(2), 256), n_s),
         "gaussian_bayes_inf": precoding.precoder_from_gramian(gpred.expected_gramian(pred), n_s)}
    rows[sc] = dict(rho=[abs(complex(r)) for r in rho],
                    nmse_db={"srs_baseline": float(metrics.nmse_db(h, base)),
                             "gaussian_mean": float(metrics.nmse_db(h, pred.mean))},
                    se={k: float(jnp.mean(precoding.spectral_efficiency(h, w, dl_snr))) for k, w in W.items()})
    print(sc, rows[sc], flush=True)
  os.makedirs(OUT.value, exist_ok=True)
  files.atomic_write_json(os.path.join(OUT.value, "results.json"), dict(num_test=NUM.value, scenarios=rows))
  keys = ["perfect_csi", "srs_baseline", "sample_cov", "gaussian_mean", "gaussian_bayes_16", "gaussian_bayes_256",
          "gaussian_bayes_inf"]
  table = files.markdown_table(
      ["scenario", "NMSE SRS baseline [dB]", "NMSE Gaussian mean [dB]"] + [f"SE {k}" for k in keys],
      [[sc, r["nmse_db"]["srs_baseline"], r["nmse_db"]["gaussian_mean"]] + [r["se"][k] for k in keys]
       for sc, r in rows.items()])
  files.atomic_write_text(os.path.join(OUT.value, "table.md"), table)
  print(table)


if __name__ == "__main__":
  app.run(main)
