"""Evaluation of the perception experiment: Tables II/III, Fig. 7, trajectories, guidance sweep, examples, bounds.

Orchestration of the kernels (:mod:`jaxchan.prediction`, :mod:`jaxchan.precoding`,
:mod:`jaxchan.stiefel`); the tables and figures are in :mod:`jaxchan.experiments.perception_report`.
Every random draw takes its key from :func:`jaxchan.experiments.common.key`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxchan import ddpm, gaussian_predictor, metrics, precoding, prediction, srs, staged_precoding, stiefel
from jaxchan.experiments import common
from jaxchan.experiments.perception_setup import (ESTIMATES, SE_ROWS, dm_kw, dm_prediction, dm_schedule,
                                                  fit_age_correlation, fit_cov_floor, init_params, loss_fn, make_model,
                                                  sampler_kw, srs_cfg, to_batch)


def batch_keys(key: jax.Array) -> tuple:
  """``(k_obs, k_dm, k_uniform)`` of one evaluation batch's key: its SRS observation, its posterior (and Gaussian)
  samples, its uniform precoders. Every evaluation that must see the same observations (the SRS prior experiment's)
  splits its batch keys with this function."""
  k_pred, k_uniform = jax.random.split(key)
  k_obs, k_dm = jax.random.split(k_pred)
  return k_obs, k_dm, k_uniform


def make_eval_batch(config, models, rho):
  """``(params, history, target, key, G_avg) -> (sums, samples, W_bayes, dl_snr)`` for Tables II/III and Fig. 7.

  ``rho``: ``[n_occ]`` per-occasion correlation of the Gaussian predictor (:func:`~jaxchan.experiments.perception_setup.fit_age_correlation`).

  One jitted program per stage, each holding one chain of dependent LAPACK calls, each started when the previous
  has finished (:mod:`jaxchan.staged_precoding` says why): the observation and the Gaussian predictor; the SL
  model; the DM's K samples; the E2E model and its precoder; the uniform precoders (a QR); every SVD precoder;
  every Gramian precoder; every spectral efficiency and the sums.
  """
  n_s, K = config.eval.n_streams, config.eval.num_samples
  sch = dm_schedule(config)
  scfg = srs_cfg(config)
  snr_grid = metrics.from_db(jnp.asarray(config.eval.dl_snr_grid_db, jnp.float32))
  (m_sl, _), (m_dm, _), (m_e2e, _) = models["sl"], models["dm"], models["e2e"]

  @jax.jit
  def observe_and_predict(history, key):
    k_obs, k_dm, _ = batch_keys(key)
    obs = srs.observe(history, k_obs, num_hops=scfg.num_hops, snr_db_range=scfg.snr_db_range)
    # The closed-form Gaussian predictor (no learning): its mean, K draws and its K -> infinity Gramian.
    gp = gaussian_predictor.predict(obs, rho)
    return dict(obs=obs, k_dm=k_dm, dl_snr=metrics.from_db(obs.snr_db + config.eval.dl_snr_offset_db),
                srs_baseline=srs.baseline(obs), G_hist=srs.history_gramian(obs), gaussian=gp.mean,
                gauss_samples=gaussian_predictor.sample(gp, jax.random.fold_in(k_dm, 1), K),
                gauss_gram=gaussian_predictor.expected_gramian(gp))

  sl = jax.jit(lambda p, obs: prediction.sl_predict(m_sl, p, obs))
  dm = jax.jit(lambda p, obs, k: prediction.sample_posterior(
      m_dm, p, obs, k, sch, num_samples=K, guidance=float(config.eval.guidance), **sampler_kw(config),
      allow_extrapolation=config.eval.allow_extrapolation))
  e2e = jax.jit(lambda p, obs: precoding.latent_precoder(m_e2e.apply(p, obs.obs, obs.mask, obs.noise_var), n_s))

  @jax.jit
  def sums(pre, est, h, W):
    dl = pre["dl_snr"]
    snr = jnp.concatenate([dl[None], jnp.broadcast_to(snr_grid[:, None], snr_grid.shape + dl.shape)])
    se = staged_precoding.spectral_efficiencies(h, W, snr)                  # [1 + grid, B] per precoder
    out = {"energy": jnp.sum(jnp.abs(h) ** 2)}
    for name, e in est.items():
      out[f"sqerr/{name}"] = jnp.sum(jnp.abs(e - h) ** 2)
      out[f"gcs/{name}"] = jnp.sum(jnp.mean(metrics.gcs(h, e, reduce="none"), axis=(-2, -1)))
    for name, s in se.items():
      out[f"se/{name}"] = jnp.sum(s[0])
      out[f"se_grid/{name}"] = jnp.sum(s[1:], -1)
    return out

  def run(params, history, h, key, G_avg):
    """``G_avg``: ``[n_bs, n_bs, n_prb]`` average Gramian of training targets (:func:`average_gramian`)."""
    wait = jax.block_until_ready
    p_sl, p_dm, p_e2e = params
    pre = wait(observe_and_predict(history, key))
    obs = pre["obs"]
    est = {"srs_baseline": pre["srs_baseline"], "sl": wait(sl(p_sl, obs))}
    samples = wait(dm(p_dm, obs, pre["k_dm"]))
    est.update(dm=samples[0], gaussian=pre["gaussian"])
    W = {"e2e": wait(e2e(p_e2e, obs)),
         "uniform": wait(staged_precoding.uniform_precoders(batch_keys(key)[2], tuple(h.shape), n_s))}
    W.update(staged_precoding.precoders(
        {"perfect_csi": h, "srs_baseline": est["srs_baseline"], "sl": est["sl"], "dm_k1": samples[0],
         "gaussian_mean": est["gaussian"]},
        {"sample_cov": staged_precoding.wideband(pre["G_hist"], h.shape[-1]),
         "avg_gramian": jnp.broadcast_to(G_avg, h.shape[:1] + G_avg.shape),
         "dm_bayes": precoding.gramian(samples), "gaussian_bayes": precoding.gramian(pre["gauss_samples"]),
         "gaussian_bayes_inf": pre["gauss_gram"]}, n_s))
    return wait(sums(pre, est, h, W)), samples, W["dm_bayes"], pre["dl_snr"]

  return run


def average_gramian(config, ds, max_samples: int = 20_000) -> jax.Array:
  """``[n_bs, n_bs, n_prb]`` per-PRB Gramian averaged over (up to ``max_samples``) training targets."""
  h = ds.load("train")["target"][:max_samples]
  G = 0.0
  for i in range(0, h.shape[0], 1024):
    G = G + precoding.average_gramian(jnp.asarray(h[i:i + 1024])) * min(1024, h.shape[0] - i)
  return G / h.shape[0]


def loss_bounds(config, ds, max_samples: int = 4000, log=common.log) -> dict:
  """What the data allows, in the units of the training losses (computed from training targets).

  * ``sl_zero``: the SL loss of predicting 0 (the mean power of the targets).
  * ``dm_per_element``: the DM's loss (v or eps, as ``config.dm.prediction``) under
    per-element Gaussian shrinkage (:func:`jaxchan.ddpm.gaussian_loss_bound` with each
    element's variance): a DM above it has not learned any correlation.
  * ``dm_gaussian``: the same for the best Gaussian model (eigenvalues of the full
    sample covariance of up to ``max_samples`` targets).
  * ``sl_gaussian_predictor``, ``dm_gaussian_predictor``: the losses of the Gaussian predictor given the
    history (:func:`anchor_losses`), where every anchored model starts.
  """
  h = np.asarray(ds.load("train")["target"][:max_samples])
  x = h.reshape(h.shape[0], -1).astype(np.complex128)
  x = x - x.mean(0)
  var = np.mean(np.abs(x) ** 2, axis=0)
  n, d = x.shape
  gram = (x @ x.conj().T if n < d else x.conj().T @ x) / n      # same non-zero eigenvalues, smaller side
  eig = np.concatenate([np.linalg.eigvalsh(gram), np.zeros(max(d - n, 0))])
  sch = dm_schedule(config)
  pred = dm_prediction(config)
  out = {"sl_zero": float(np.mean(np.abs(h) ** 2)), "num_samples": int(n), "dm_prediction": pred,
         "dm_per_element": float(ddpm.gaussian_loss_bound(jnp.asarray(var), sch, pred)),
         "dm_gaussian": float(ddpm.gaussian_loss_bound(jnp.asarray(eig), sch, pred))}
  out.update(anchor_losses(config, ds))
  log(f"  bounds from {n} training targets: SL zero predictor {out['sl_zero']:.4f}; DM {pred} loss, per-element "
      f"shrinkage {out['dm_per_element']:.4f}, Gaussian {out['dm_gaussian']:.4f}; the Gaussian predictor's own "
      f"test losses: SL {out['sl_gaussian_predictor']:.4f}, DM {out['dm_gaussian_predictor']:.4f}")
  return out


def anchor_losses(config, ds, num_keys: int = 4) -> dict:
  """The training losses of the Gaussian predictor itself, on the test samples the training curves use.

  They are the losses of the untrained Gaussian-anchored SL and DM (zero head: the model is the predictor's
  conditional mean, and the v of its exact conditional-Gaussian posterior mean) and E2E (the Gaussian Bayesian
  precoder's K -> infinity limit), computed with the same loss functions, so every learning curve can be read
  against them: ``{sl,dm,e2e}_gaussian_predictor`` (mean over ``num_keys`` draws of the observation, ``t``
  and the noise).
  """
  cfg = config.copy_and_resolve_references()
  with cfg.unlocked():
    cfg.model.anchor = "gaussian"
  rho = fit_age_correlation(ds, cfg)
  floor, _ = fit_cov_floor(cfg, ds, rho)
  test = to_batch(ds.load("test"), config.train.test_loss_samples)
  key = common.key(config, "perception/anchor_losses")
  out = {}
  for use in ("sl", "dm", "e2e"):
    model = make_model(cfg, use, rho, floor if use == "dm" else 0.0)
    params = init_params(model, key)
    f = jax.jit(loss_fn(cfg, model, use))
    out[f"{use}_gaussian_predictor"] = float(np.mean([f(params, test, jax.random.fold_in(key, i))
                                                      for i in range(num_keys)]))
  return out


def _batches(h_all, hist_all, batch):
  """``(offset, history, target)`` of consecutive test batches, split over the devices when there are several."""
  for i in range(0, h_all.shape[0], batch):
    yield (i,) + common.shard_eval(jnp.asarray(hist_all[i:i + batch]), jnp.asarray(h_all[i:i + batch]))


def evaluate(config, models, ds, log=common.log):
  """Tables II/III, Fig. 7 and the CG check on the first ``config.eval.num_test`` test samples."""
  test = ds.load("test")
  n = min(config.eval.num_test, ds.size("test"))
  hist_all, h_all = test["history"][:n], test["target"][:n]
  params = tuple(models[u][1] for u in ("sl", "dm", "e2e"))
  run = make_eval_batch(config, models, fit_age_correlation(ds, config))
  G_avg = average_gramian(config, ds)
  cg = jax.jit(functools.partial(stiefel.capacity_precoder, num_iters=config.eval.cg_iters))
  sums, cg_sums, n_cg = {}, {"eig": 0.0, "cg": 0.0}, 0
  eval_key = common.key(config, "perception/eval")
  from jaxchan import progress
  for i, hist, h in progress.bar(list(_batches(h_all, hist_all, config.eval.batch_size)), desc="evaluate",
                         disable=not config.progress, leave=False):
    out, samples, W_bayes, dl_snr = run(params, hist, h, jax.random.fold_in(eval_key, i), G_avg)
    for k, v in out.items():
      sums[k] = sums.get(k, 0.0) + np.asarray(v, np.float64)
    if n_cg < config.eval.cg_num_test:
      # Eq. (27) by Riemannian CG from the eq. (28) solution, on the same K samples.
      W_cg = jax.block_until_ready(cg(samples, W_bayes, dl_snr))
      cg_sums["eig"] += float(jnp.sum(precoding.spectral_efficiency(h, W_bayes, dl_snr)))
      cg_sums["cg"] += float(jnp.sum(precoding.spectral_efficiency(h, W_cg, dl_snr)))
      n_cg += h.shape[0]
  res = {"num_test": n, "table2": {}, "table3": {}, "se_vs_snr": {"dl_snr_db": list(config.eval.dl_snr_grid_db)}}
  for name in ESTIMATES:
    nm = sums[f"sqerr/{name}"] / sums["energy"]
    res["table2"][name] = {"nmse": float(nm), "nmse_db": float(10 * np.log10(nm)), "gcs": float(sums[f"gcs/{name}"] / n)}
  for name in SE_ROWS:
    res["table3"][name] = float(sums[f"se/{name}"] / n)
    res["se_vs_snr"][name] = (sums[f"se_grid/{name}"] / n).tolist()
  res["cg_check"] = {"num_test": n_cg, "iters": config.eval.cg_iters, "se_eigenvectors": cg_sums["eig"] / max(n_cg, 1),
                     "se_riemannian_cg": cg_sums["cg"] / max(n_cg, 1),
                     "gap": (cg_sums["cg"] - cg_sums["eig"]) / max(n_cg, 1)}
  for k in ESTIMATES:
    log(f"  NMSE {k}: {res['table2'][k]['nmse_db']:.2f} dB, GCS {res['table2'][k]['gcs']:.3f}")
  log("  SE: " + ", ".join(f"{k} {v:.3f}" for k, v in res["table3"].items()))
  return res


def trajectories(config, models, ds):
  """Fig. 6: NMSE and GCS of ``x_t`` and ``x0_hat`` after every reverse step, stochastic and deterministic."""
  n = min(config.eval.trajectory_num_test, ds.size("test"))
  test = ds.load("test")
  m_dm, p_dm = models["dm"]
  m_sl, p_sl = models["sl"]
  sch = dm_schedule(config)
  scfg = srs_cfg(config)

  @functools.partial(jax.jit, static_argnames="deterministic")
  def dm(hist, h, key, deterministic):
    k_obs, k_dm = jax.random.split(key)
    obs = srs.observe(hist, k_obs, num_hops=scfg.num_hops, snr_db_range=scfg.snr_db_range)
    _, rec = prediction.sample_posterior(m_dm, p_dm, obs, k_dm, sch, deterministic=deterministic,
                                         **dm_kw(config), record=prediction.trajectory_metrics(h))
    return rec, obs

  @jax.jit
  def sl_errors(obs, h):    # a program of its own: see make_eval_batch
    est = prediction.sl_predict(m_sl, p_sl, obs)
    return jnp.stack([jnp.sum(jnp.abs(est - h) ** 2),
                      jnp.sum(jnp.mean(metrics.gcs(h, est, reduce="none"), axis=(-2, -1)))])

  def run(hist, h, key, deterministic):
    rec, obs = jax.block_until_ready(dm(hist, h, key, deterministic))
    return rec, sl_errors(obs, h)

  out = {}
  key = common.key(config, "perception/trajectory")
  for det in (False, True):
    rec_sum, sl_sum, energy = 0.0, 0.0, 0.0
    for i, hist, h in _batches(test["target"][:n], test["history"][:n], config.eval.batch_size):
      rec, sl = run(hist, h, jax.random.fold_in(key, i), det)   # same observations for both variants
      rec_sum, sl_sum = rec_sum + np.asarray(rec, np.float64), sl_sum + np.asarray(sl, np.float64)
      energy += float(jnp.sum(jnp.abs(h) ** 2))
    out["deterministic" if det else "stochastic"] = {
        "nmse_xt": (rec_sum[:, 0] / energy).tolist(), "nmse_x0": (rec_sum[:, 1] / energy).tolist(),
        "gcs_xt": (rec_sum[:, 2] / n).tolist(), "gcs_x0": (rec_sum[:, 3] / n).tolist()}
    out["sl"] = {"nmse": float(sl_sum[0] / energy), "gcs": float(sl_sum[1] / n)}
  out["num_test"] = n
  return out


def guidance_sweep(config, models, ds):
  """Fig. 8: SE against the guidance scale w, the K-sample Bayesian precoder vs the deterministic DM."""
  n = min(config.eval.sweep_num_test, ds.size("test"))
  test = ds.load("test")
  m_dm, p_dm = models["dm"]
  sch = dm_schedule(config)
  scfg, n_s, K = srs_cfg(config), config.eval.n_streams, config.eval.num_samples

  @jax.jit
  def observe(hist, key):
    k_obs, k_dm = jax.random.split(key)
    obs = srs.observe(hist, k_obs, num_hops=scfg.num_hops, snr_db_range=scfg.snr_db_range)
    return obs, k_dm, metrics.from_db(obs.snr_db + config.eval.dl_snr_offset_db)

  @functools.partial(jax.jit, static_argnames=("w", "deterministic"))
  def sample(obs, k_dm, w, deterministic):
    kw = dict(guidance=w, **dm_kw(config), allow_extrapolation=config.eval.allow_extrapolation)
    if deterministic:
      return prediction.sample_posterior(m_dm, p_dm, obs, k_dm, sch, deterministic=True, **kw)[0]
    return prediction.sample_posterior(m_dm, p_dm, obs, k_dm, sch, num_samples=K, **kw)

  def run(hist, h, key, w):    # one LAPACK chain per program, one after the other: see make_eval_batch
    wait = jax.block_until_ready
    obs, k_dm, dl_snr = wait(observe(hist, key))
    ens = wait(sample(obs, k_dm, w, False))
    det = wait(sample(obs, k_dm, w, True))
    W = staged_precoding.precoders({"det": det}, {"ens": precoding.gramian(ens)}, n_s)
    se = staged_precoding.spectral_efficiencies(h, W, dl_snr[None])
    return jnp.stack([jnp.sum(se["ens"]), jnp.sum(se["det"])])

  ws = [float(w) for w in config.eval.guidance_scales]
  ens, det = [], []
  key = common.key(config, "perception/guidance")
  for w in ws:
    tot = 0.0
    for i, hist, h in _batches(test["target"][:n], test["history"][:n], config.eval.batch_size):
      tot = tot + np.asarray(run(hist, h, jax.random.fold_in(key, i), w), np.float64)
    ens.append(float(tot[0] / n))
    det.append(float(tot[1] / n))
  return {"w": ws, "dm_bayes": ens, "dm_deterministic": det, "num_test": n, "K": K}


def example(config, models, ds):
  """Fig. 5 data: |h| of one test sample (UE antenna 0): ground truth, one DM sample, the SL estimate."""
  test = ds.load("test")
  i = config.eval.example_index
  hist, h = jnp.asarray(test["history"][i:i + 1]), jnp.asarray(test["target"][i:i + 1])
  scfg = srs_cfg(config)
  k_obs, k_dm = jax.random.split(common.key(config, "perception/example"))
  obs = srs.observe(hist, k_obs, num_hops=scfg.num_hops, snr_db_range=scfg.snr_db_range)
  m_dm, p_dm = models["dm"]
  m_sl, p_sl = models["sl"]
  dm = jax.jit(lambda o, k: prediction.sample_posterior(m_dm, p_dm, o, k, dm_schedule(config),
                                                        **dm_kw(config)))(obs, k_dm)[0]
  sl = prediction.sl_predict(m_sl, p_sl, obs)
  mag = lambda x: np.abs(np.asarray(x[0, 0])).tolist()                 # [n_bs, n_prb]
  return {"index": i, "ul_snr_db": float(obs.snr_db[0]), "truth": mag(h), "dm": mag(dm), "sl": mag(sl)}
