"""Mobility as a dial: how much the SRS history tells, and what it buys a precoder, per UT speed.

For each speed in ``config.speeds`` (km/h, indoor and outdoor alike) the job builds
a ``low_mobility``-shaped dataset with datagen (``data/mobility_<speed>kmh_<n>.h5``,
once) and reports on its test split:

* the NMSE of the best per-age linear predictor from each PRB's latest SRS
  (:func:`jaxchan.srs.latest_predictor_nmse`): 1 means the history is useless;
* the spectral efficiency (eq. 25, N_s streams, DL SNR = UL SNR + offset) of every
  precoder that needs no learning: perfect CSI (SVD), the SRS baseline (SVD of the
  latest observation per PRB), the wideband sample covariance of the SRS history,
  the training set's average Gramian (no observation), and Haar-uniform precoders
  (zero information).

The learned SL / DM / E2E models are trained per scenario by ``configs/perception.py``
(its ``low_mobility`` and ``high_mobility`` presets sit at 0.3 and 30/60 km/h on this
axis); training them at every speed is the same job with ``--config.data.path``
pointing at these files, a GPU's work.

Outputs: ``results.json``, ``mobility.md`` (one table) and ``fig_mobility.png``
(SE against speed, predictor NMSE on a second axis).
"""

from __future__ import annotations

import functools
import math
import os
import time

import jax
import jax.numpy as jnp

from jaxchan import data, metrics, precoding, srs, staged_precoding
from jaxchan.experiments import common

METHODS = tuple(precoding.CLASSICAL_LABELS)
LABELS = precoding.CLASSICAL_LABELS


def validate(config):
  speeds = tuple(config.speeds)
  if not speeds:
    raise ValueError("config.speeds is empty; give UT speeds in km/h, e.g. --config.speeds='(0.3,1,3,10,30,60)'.")
  bad = [v for v in speeds if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0)]
  if bad:
    raise ValueError(f"config.speeds={speeds} holds {bad}: every UT speed must be a finite number of km/h >= 0.")
  for f in ("num_train", "num_test", "batch_size"):
    if not isinstance(config[f], int) or config[f] < 1:
      raise ValueError(f"config.{f}={config[f]!r} must be a positive integer.")
  lo, hi = config.snr_db_range
  if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
    raise ValueError(f"config.snr_db_range={tuple(config.snr_db_range)} must be finite (low, high) with low <= high.")
  if not isinstance(config.n_streams, int) or not 1 <= config.n_streams <= 4:
    raise ValueError(f"config.n_streams={config.n_streams!r} must be an integer in [1, 4] (the UT has 4 antennas).")


def dataset_path(config, speed: float) -> str:
  return os.path.join(config.data_dir, f"mobility_{speed:g}kmh_{config.num_train}_{config.num_test}_s{config.seed}.h5")


def ensure_dataset(config, speed: float, log=common.log) -> str:
  """The low-mobility-shaped dataset at ``speed`` km/h (indoor and outdoor), built once if missing."""
  from datagen import presets
  cfg = presets.get("low_mobility", "tiny", num_train=config.num_train, num_test=config.num_test, seed=config.seed,
                    speed_indoor_kmh=float(speed), speed_outdoor_kmh=float(speed))
  return common.ensure_generated(dataset_path(config, speed), cfg, progress=config.progress, log=log)


def classical_se(h, history, G_avg, key, *, n_streams, snr_db_range, dl_offset_db, num_hops=4):
  """Per-method SE sums ``{method: float}`` of one test batch (see the module docstring), one LAPACK call per
  program (:mod:`jaxchan.staged_precoding`)."""
  k_obs, k_u = jax.random.split(key)
  dl, est, G_hist = _observe(history, k_obs, num_hops, tuple(snr_db_range), dl_offset_db)
  W = staged_precoding.classical_precoders(h, est, G_hist, G_avg, k_u, n_streams)
  se = staged_precoding.spectral_efficiencies(h, W, dl[None])
  return {k: float(jnp.sum(v)) for k, v in se.items()}


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _observe(history, key, num_hops, snr_db_range, dl_offset_db):
  obs = srs.observe(history, key, num_hops=num_hops, snr_db_range=snr_db_range)
  return metrics.from_db(obs.snr_db + dl_offset_db), srs.baseline(obs), srs.history_gramian(obs)


def run(config, workdir: str) -> dict:
  started = time.time()
  validate(config)
  os.makedirs(workdir, exist_ok=True)
  from jaxchan import progress
  key = jax.random.PRNGKey(config.seed)
  score = functools.partial(classical_se, n_streams=config.n_streams, snr_db_range=tuple(config.snr_db_range),
                            dl_offset_db=config.dl_snr_offset_db)
  rows = []
  for i, speed in enumerate(progress.bar(config.speeds, desc="mobility sweep", disable=not config.progress)):
    path = ensure_dataset(config, speed)
    with data.Dataset(path, kind="srs_prediction") as ds:
      train, test = ds.load("train"), ds.load("test")
    pred = srs.latest_predictor_nmse(jnp.asarray(test["history"]), jnp.asarray(test["target"]),
                                     tuple(config.snr_db_range))
    G_avg = precoding.average_gramian(jnp.asarray(train["target"]))
    sums = {m: 0.0 for m in METHODS}
    n = test["target"].shape[0]
    for j in range(0, n, config.batch_size):
      out = score(jnp.asarray(test["target"][j:j + config.batch_size]),
                  jnp.asarray(test["history"][j:j + config.batch_size]), G_avg,
                  jax.random.fold_in(jax.random.fold_in(key, i), j))
      for m in METHODS:
        sums[m] += out[m]
    rows.append(dict(speed_kmh=float(speed), dataset=path, num_test=n, predictor_nmse=pred["nmse"],
                     predictor_nmse_noiseless=pred["nmse_noiseless"], corr=pred["corr"],
                     se={m: sums[m] / n for m in METHODS}))
    if config.progress:
      progress.tqdm.write(f"{speed:g} km/h: predictor NMSE {pred['nmse']:.3f}, SE "
                 + ", ".join(f"{m} {sums[m] / n:.2f}" for m in METHODS))
  results = dict(config=config.to_dict(), rows=rows, device=str(jax.devices()[0]))
  from jaxchan.experiments import common, mobility_report
  common.write_results(workdir, results, mobility_report.render, started=started)
  return results
