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

import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxchan import data, io, metrics, precoding, srs

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


def ensure_dataset(config, speed: float, log=print) -> str:
  path = dataset_path(config, speed)
  if not os.path.exists(path):
    from datagen import presets, sionna_source, store
    cfg = presets.get("low_mobility", "tiny", num_train=config.num_train, num_test=config.num_test, seed=config.seed,
                      speed_indoor_kmh=float(speed), speed_outdoor_kmh=float(speed))
    log(f"building {path} ({speed:g} km/h) with datagen")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    store.build(path, cfg, sionna_source.generate, generator=sionna_source.sionna_version(), progress=config.progress)
  return path


def classical_se(h, history, G_avg, key, *, n_streams, snr_db_range, dl_offset_db, num_hops=4):
  """Per-method SE sums ``{method: float}`` of one test batch (see the module docstring)."""
  k_obs, k_u = jax.random.split(key)
  obs = srs.observe(history, k_obs, num_hops=num_hops, snr_db_range=snr_db_range)
  dl = metrics.from_db(obs.snr_db + dl_offset_db)
  W = precoding.classical_precoders(h, srs.baseline(obs), srs.history_gramian(obs), G_avg, k_u, n_streams)
  return {k: jnp.sum(precoding.spectral_efficiency(h, w, dl)) for k, w in W.items()}


def run(config, workdir: str) -> dict:
  validate(config)
  os.makedirs(workdir, exist_ok=True)
  from tqdm import tqdm
  key = jax.random.PRNGKey(config.seed)
  score = jax.jit(lambda h, hist, G, k: classical_se(
      h, hist, G, k, n_streams=config.n_streams, snr_db_range=tuple(config.snr_db_range),
      dl_offset_db=config.dl_snr_offset_db))
  rows = []
  for i, speed in enumerate(tqdm(config.speeds, desc="mobility sweep", disable=not config.progress)):
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
        sums[m] += float(out[m])
    rows.append(dict(speed_kmh=float(speed), dataset=path, num_test=n, predictor_nmse=pred["nmse"],
                     predictor_nmse_noiseless=pred["nmse_noiseless"], corr=pred["corr"],
                     se={m: sums[m] / n for m in METHODS}))
    if config.progress:
      tqdm.write(f"{speed:g} km/h: predictor NMSE {pred['nmse']:.3f}, SE "
                 + ", ".join(f"{m} {sums[m] / n:.2f}" for m in METHODS))
  results = dict(config=config.to_dict(), rows=rows, device=str(jax.devices()[0]))
  io.atomic_write_json(os.path.join(workdir, "results.json"), results)
  io.atomic_write_text(os.path.join(workdir, "mobility.md"), to_markdown(results))
  plot(results, os.path.join(workdir, "fig_mobility.png"))
  return results


def to_markdown(results) -> str:
  c = results["config"]
  head = ["UT speed [km/h]", "predictor NMSE", "|corr| 20/60/100/140 ms"] + [f"SE: {LABELS[m]}" for m in METHODS]
  body = [[f"{r['speed_kmh']:g}", f"{r['predictor_nmse']:.3f}", " / ".join(f"{x:.2f}" for x in r["corr"][::-1])]
          + [f"{r['se'][m]:.2f}" for m in METHODS] for r in results["rows"]]
  return (f"# Mobility sweep\n\n{results['rows'][0]['num_test']} test channels per speed (Sionna UMa, 3.5 GHz, "
          f"low_mobility geometry), UL SNR uniform in {list(c['snr_db_range'])} dB, DL SNR = UL SNR + "
          f"{c['dl_snr_offset_db']} dB, N_s = {c['n_streams']}. Predictor NMSE: best per-age linear predictor of the "
          "target from each PRB's latest SRS (1 = the history is useless). SE in bps/Hz.\n\n"
          + io.markdown_table(head, body))


def plot(results, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  rows = results["rows"]
  v = [r["speed_kmh"] for r in rows]
  fig, ax = plt.subplots(figsize=(6.4, 4.0))
  styles = {"perfect_csi": "k-", "srs_baseline": "C1--", "sample_cov": "C5-", "avg_gramian": "C7-.", "uniform": "k:"}
  for i, m in enumerate(METHODS):
    ax.plot(v, [r["se"][m] for r in rows], styles[m], marker="osD^v"[i], mfc="none", label=LABELS[m])
  ax.set_xscale("log")
  ax.set_xlabel("UT speed [km/h]")
  ax.set_ylabel("SE [bps/Hz]")
  ax.grid(alpha=0.3, which="both")
  ax2 = ax.twinx()
  ax2.plot(v, [r["predictor_nmse"] for r in rows], "C3", marker="x", lw=2, label="latest-SRS predictor NMSE (right)")
  ax2.set_ylabel("predictor NMSE (linear)", color="C3")
  ax2.set_ylim(0, 1.05)
  lines = ax.get_legend_handles_labels()
  lines2 = ax2.get_legend_handles_labels()
  ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="lower left")
  ax.set_title("What the SRS history is worth against UT speed")
  fig.tight_layout()
  io.atomic_save_figure(fig, path, dpi=120)
  plt.close(fig)
