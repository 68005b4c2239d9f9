"""Score-based vs discriminative channel prediction for SRS-based precoding (``configs/perception.py``).

For each scenario in ``config.scenarios`` (``low_mobility``, ``high_mobility``):

1. the dataset is built once with datagen if missing;
2. the backbone is trained three ways in ``workdir/<scenario>/models/{sl,dm,e2e}``
   with the shared loop (:func:`jaxchan.train.fit`: orbax checkpoints, resume,
   ``metrics.jsonl``);
3. on the test set: Table II (NMSE, GCS of the SRS baseline, SL, one DM sample),
   Table III (SE of perfect CSI, E2E, SRS baseline, SL, DM K = 1, DM K = K with the
   Bayesian precoder of eq. 28) at the per-sample DL SNR (UL SNR + offset), the SE
   against DL SNR (Fig. 7), the reverse trajectories (Fig. 6), the guidance sweep
   (Fig. 8), example channels (Fig. 5), and the Riemannian-CG check of the energy
   surrogate (eq. 27 against eq. 28).

``results.json``, ``tables.md`` and ``fig5_examples.png``, ``fig6_trajectory.png``,
``fig7_se_snr.png``, ``fig8_guidance.png`` go to the workdir.
"""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxchan import checks, data, ddpm, io, metrics, precoding, prediction, schedules, srs, stiefel, train
from jaxchan.experiments import common
from jaxchan.models.transformer import USES, ChannelTransformer, check_token_width

SCENARIOS = ("low_mobility", "high_mobility")
SE_ROWS = ("perfect_csi", "e2e", "srs_baseline", "sample_cov", "avg_gramian", "uniform", "sl", "dm_k1", "dm_bayes")
# Precoders that need no learning (precoding.py): the strongest classical baselines.
CLASSICAL = ("srs_baseline", "sample_cov", "avg_gramian", "uniform")


# ---------------------------------------------------------------------------
# Config validation and data.


def validate(config):
  """Every config error, before any work, with the field and the allowed values."""
  for s in config.scenarios:
    checks.choice("config.scenarios entry", s, SCENARIOS)
  if not config.scenarios:
    raise ValueError(f"config.scenarios is empty; choose from {SCENARIOS}.")
  if config.data.path and len(config.scenarios) > 1:
    raise ValueError(f"config.data.path={config.data.path!r} names one file but config.scenarios="
                     f"{tuple(config.scenarios)} has several; select one scenario (e.g. :high_mobility) or "
                     "leave config.data.path empty for data/<scenario>_<size>.h5.")
  for u in config.train.models:
    checks.choice("config.train.models entry", u, USES)
  grid = tuple(config.eval.dl_snr_grid_db)
  if not grid or not all(np.isfinite(grid)):
    raise ValueError(f"config.eval.dl_snr_grid_db={grid} must be a non-empty list of finite dB values (Fig. 7).")
  lo, hi = config.srs.snr_db_range
  if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
    raise ValueError(f"config.srs.snr_db_range={tuple(config.srs.snr_db_range)} must be finite (low, high) with "
                     "low <= high, in dB.")
  K = config.eval.num_samples
  if not isinstance(K, int) or K < 1:
    raise ValueError(f"config.eval.num_samples (K) = {K!r}; it must be an integer >= 1.")
  ws = tuple(config.eval.guidance_scales) + (config.eval.guidance,)
  if not config.eval.allow_extrapolation:
    checks.in_range("config.eval.guidance / guidance_scales (w)", ws, 0.0, 1.0,
                    hint="w = 1 is conditional, w = 0 unconditional; set config.eval.allow_extrapolation=True "
                         "to guide beyond [0, 1].")
  n_s, n_ue = config.eval.n_streams, config.data.n_ue
  if not isinstance(n_s, int) or not 1 <= n_s <= n_ue:
    raise ValueError(f"config.eval.n_streams (N_s) = {n_s!r} must be an integer in [1, n_ue = {n_ue}] "
                     "(config.data.n_ue, the UE antenna count).")
  if config.data.n_prb % config.srs.num_hops:
    raise ValueError(f"config.data.n_prb={config.data.n_prb} is not divisible by config.srs.num_hops="
                     f"{config.srs.num_hops}.")
  if config.data.n_ue % config.model.ue_per_token:
    raise ValueError(f"config.model.ue_per_token={config.model.ue_per_token} must divide config.data.n_ue="
                     f"{config.data.n_ue}.")
  bs = config.data.get("bs_antennas", 0)
  if not isinstance(bs, int) or not 0 <= bs <= config.data.n_bs:
    raise ValueError(f"config.data.bs_antennas={bs!r} must be an integer in [0, n_bs={config.data.n_bs}] "
                     "(0: all BS antennas of the file).")
  check_token_width(n_bs_used(config), config.model.ue_per_token, config.model.d_model,
                    where="config.model.ue_per_token")
  if config.model.d_model % config.model.num_heads:
    raise ValueError(f"config.model.d_model={config.model.d_model} must be divisible by config.model.num_heads="
                     f"{config.model.num_heads}.")
  checks.in_range("config.dm.p_uncond", config.dm.p_uncond, 0.0, 1.0)
  checks.choice("config.dm.variance", config.dm.variance, ddpm.VARIANCES)
  checks.choice("config.dm.prediction", config.dm.prediction, ddpm.PREDICTIONS)
  if not config.dm.clip_x0 >= 0:
    raise ValueError(f"config.dm.clip_x0={config.dm.clip_x0!r} must be >= 0 (0 disables the clip).")
  if not 0 < config.dm.cosine_s < 1:
    raise ValueError(f"config.dm.cosine_s={config.dm.cosine_s!r} must lie in (0, 1) (the standard value is 0.008).")
  if not 0 < config.dm.max_beta < 1:
    raise ValueError(f"config.dm.max_beta={config.dm.max_beta!r} must lie in (0, 1) (the standard value is 0.999).")
  missing = {"sl", "dm", "e2e"} - set(config.train.models) if config.eval.enabled else set()
  if missing:
    raise ValueError(f"config.train.models={tuple(config.train.models)} lacks {sorted(missing)}, which the "
                     "evaluation needs; add them or set config.eval.enabled=False.")
  for u in config.train.models:
    if u not in config.train.epochs:
      raise ValueError(f"config.train.epochs has no entry for model {u!r}; add --config.train.epochs.{u}=N.")


def n_bs_used(config) -> int:
  """BS antennas the models see: ``config.data.bs_antennas`` (the first ones of the file), or all (0)."""
  return config.data.get("bs_antennas", 0) or config.data.n_bs


def shapes(config) -> dict:
  """Per-sample shapes of the dataset file (all ``n_bs`` antennas)."""
  d = config.data
  return {"history": (d.n_occ, d.n_ue, d.n_bs, d.n_prb), "target": (d.n_ue, d.n_bs, d.n_prb)}


def srs_cfg(config) -> prediction.SRSConfig:
  return prediction.SRSConfig(config.srs.num_hops, tuple(config.srs.snr_db_range))


def open_scenario(config, scenario, log=print):
  """The scenario's dataset, built once if missing; a :class:`~jaxchan.data.BSAntennaSubset` view when
  ``config.data.bs_antennas`` keeps fewer antennas than the file holds."""
  path = common.ensure_dataset(config.data, scenario, progress=config.progress, log=log)
  ds = data.Dataset(path, build_command=common.build_command(config.data, scenario), kind="srs_prediction",
                    shapes=shapes(config))
  return ds if n_bs_used(config) == config.data.n_bs else data.BSAntennaSubset(ds, n_bs_used(config))


# ---------------------------------------------------------------------------
# Models and training.


def make_model(config, use: str) -> ChannelTransformer:
  d, m = config.data, config.model
  return ChannelTransformer(n_occ=d.n_occ, n_ue=d.n_ue, n_bs=n_bs_used(config), n_prb=d.n_prb,
                            num_hops=config.srs.num_hops,
                            ue_per_token=m.ue_per_token, use=use, d_model=m.d_model, num_heads=m.num_heads,
                            enc_layers=m.enc_layers, dec_layers=m.dec_layers, mlp_ratio=m.mlp_ratio,
                            dropout=m.dropout)


def init_params(model: ChannelTransformer, key):
  B = 1
  obs = jnp.zeros((B, model.n_occ, model.n_ue, model.n_bs, model.n_prb), jnp.complex64)
  mask = srs.hop_masks(model.n_prb, model.num_hops)[jnp.arange(model.n_occ) % model.num_hops][None]
  if model.use == "dm":
    x = jnp.zeros((B, model.n_ue, model.n_bs, model.n_prb), jnp.complex64)
    return model.init(key, obs, mask, jnp.ones((B,)), x, jnp.ones((B,), jnp.int32), jnp.zeros((B,), bool))
  return model.init(key, obs, mask, jnp.ones((B,)))


def loss_fn(config, model, use):
  """``(params, batch, key) -> loss`` of one training use."""
  scfg = srs_cfg(config)
  if use == "sl":
    return functools.partial(prediction.sl_loss, model, srs_cfg=scfg)
  if use == "dm":
    return functools.partial(prediction.dm_loss, model, schedule=dm_schedule(config),
                             p_uncond=config.dm.p_uncond, srs_cfg=scfg, prediction=dm_prediction(config))
  return functools.partial(prediction.e2e_loss, model, n_streams=config.eval.n_streams, srs_cfg=scfg)


def train_one(config, use, ds, model_dir, log=print):
  model = make_model(config, use)
  bs = config.train.batch_size
  n_train = ds.size("train")
  if bs > n_train:
    raise ValueError(f"config.train.batch_size={bs} exceeds the {n_train} training samples of {ds.path}.")
  epochs = config.train.epochs[use]
  opt = train.step_decay_adam(config.train.lr, steps_per_epoch=n_train // bs,
                              decay_every_epochs=config.train.decay_every_epochs,
                              decay_factor=config.train.decay_factor)
  params = init_params(model, jax.random.PRNGKey(config.seed))
  lf = loss_fn(config, model, use)
  mesh = common.train_mesh(bs)
  step = train.make_train_step(lf, opt, mesh)
  test = {k: jnp.asarray(v[:config.train.test_loss_samples]) for k, v in ds.load("test").items()
          if k in ("history", "target")}
  test_loss = jax.jit(lambda p: lf(p, test, jax.random.PRNGKey(12345)))

  def batches(epoch):
    for b in ds.batches("train", bs, seed=config.seed, epoch=epoch):
      yield {"history": jnp.asarray(b["history"]), "target": jnp.asarray(b["target"])}

  os.makedirs(model_dir, exist_ok=True)
  if common.is_main_process():
    io.atomic_write_json(os.path.join(model_dir, "model.json"),
                         dict(use=use, model=config.model.to_dict(), data=config.data.to_dict(),
                              srs=config.srs.to_dict(), dm=config.dm.to_dict()))
  state = train.init_state(params, opt, jax.random.PRNGKey(config.seed + 1))
  state, history = train.fit(state, step, batches, num_epochs=epochs, workdir=model_dir,
                             eval_fn=lambda p: {"test_loss": test_loss(p)}, progress=config.progress, log=log,
                             mesh=mesh)
  return model, state.params, history


def load_trained(model_dir: str):
  """``(model, params, config)`` of a model trained by this experiment (``WORKDIR/SCENARIO/models/USE``).

  ``config`` is a ConfigDict with the ``model``, ``data``, ``srs`` and ``dm``
  sections it was trained with. Example (K posterior samples for your own SRS
  history ``[B, n_occ, n_ue, n_bs, n_prb]``; a reduced-geometry model, as in ``:quick``,
  sees only the first ``n_bs_used(cfg)`` BS antennas)::

    model, params, cfg = load_trained("workdir/perception/high_mobility/models/dm")
    obs = srs.observe(history[..., :n_bs_used(cfg), :], key)
    samples = prediction.sample_posterior(model, params, obs, key, dm_schedule(cfg), num_samples=16,
                                          prediction=dm_prediction(cfg))
  """
  import ml_collections

  meta = os.path.join(model_dir, "model.json")
  if not os.path.exists(meta):
    raise FileNotFoundError(f"{meta} not found: {model_dir} is not a trained-model folder "
                            "(expected WORKDIR/SCENARIO/models/USE written by run.py).")
  info = json.load(open(meta))
  cfg = ml_collections.ConfigDict({k: info[k] for k in ("model", "data", "srs", "dm")})
  model = make_model(cfg, info["use"])
  params = common.restore_params(model_dir, init_params(model, jax.random.PRNGKey(0)))
  return model, params, cfg


# ---------------------------------------------------------------------------
# Evaluation.


def dm_prediction(config) -> str:
  """What the DM predicts; models saved before ``config.dm.prediction`` existed were trained on eps."""
  return config.dm.get("prediction", "eps")


def _dm_kw(config) -> dict:
  """Sampler settings of the DM shared by every evaluation."""
  return dict(variance=config.dm.variance, clip_x0=config.dm.clip_x0 or None, prediction=dm_prediction(config))


def dm_schedule(config):
  """The DM's cosine schedule from ``config.dm`` (``T``, ``cosine_s``, ``max_beta``)."""
  # Configs saved before these fields existed fall back to cosine_schedule's own defaults.
  kw = {k: config.dm[f] for k, f in (("s", "cosine_s"), ("max_beta", "max_beta")) if f in config.dm}
  return schedules.cosine_schedule(config.dm.T, **kw)


def _svd(H, n_s):
  return precoding.svd_precoder(H, n_s)


def make_eval_batch(config, models):
  """Jitted ``(params, history, target, key) -> dict of per-batch sums`` for Tables II/III and Fig. 7."""
  n_s, K = config.eval.n_streams, config.eval.num_samples
  sch = dm_schedule(config)
  scfg = srs_cfg(config)
  snr_grid = jnp.asarray(metrics.from_db(jnp.asarray(config.eval.dl_snr_grid_db, jnp.float32)))
  (m_sl, _), (m_dm, _), (m_e2e, _) = models["sl"], models["dm"], models["e2e"]

  # Two programs, networks then linear algebra: with several CPU devices XLA stalls when the LAPACK
  # custom calls (SVD, eigh) share one program with the split sampling loop; apart, both run split.
  @jax.jit
  def predict(params, history, key):
    p_sl, p_dm, p_e2e = params
    k_obs, k_dm = jax.random.split(key)
    obs = srs.observe(history, k_obs, num_hops=scfg.num_hops, snr_db_range=scfg.snr_db_range)
    dl_snr = metrics.from_db(obs.snr_db + config.eval.dl_snr_offset_db)
    est = {"srs_baseline": srs.baseline(obs), "sl": prediction.sl_predict(m_sl, p_sl, obs)}
    samples = prediction.sample_posterior(m_dm, p_dm, obs, k_dm, sch, num_samples=K,
                                          guidance=float(config.eval.guidance), **_dm_kw(config),
                                          allow_extrapolation=config.eval.allow_extrapolation)
    latent = m_e2e.apply(p_e2e, obs.obs, obs.mask, obs.noise_var)
    return est, samples, latent, dl_snr, srs.history_gramian(obs)

  @jax.jit
  def score(est, samples, latent, h, dl_snr, G_hist, G_avg, key):
    est = dict(est, dm=samples[0])
    W = dict(precoding.classical_precoders(h, est["srs_baseline"], G_hist, G_avg, key, n_s),
             e2e=precoding.latent_precoder(latent, n_s), sl=_svd(est["sl"], n_s), dm_k1=_svd(samples[0], n_s),
             dm_bayes=precoding.bayesian_precoder(samples, n_s))
    out = {"energy": jnp.sum(jnp.abs(h) ** 2)}
    for name, e in est.items():
      out[f"sqerr/{name}"] = jnp.sum(jnp.abs(e - h) ** 2)
      out[f"gcs/{name}"] = jnp.sum(jnp.mean(metrics.gcs(h, e, reduce="none"), axis=(-2, -1)))
    for name, w in W.items():
      out[f"se/{name}"] = jnp.sum(precoding.spectral_efficiency(h, w, dl_snr))
      out[f"se_grid/{name}"] = jnp.sum(jax.vmap(lambda s: precoding.spectral_efficiency(h, w, s))(snr_grid), -1)
    return out, W["dm_bayes"]

  def run(params, history, h, key, G_avg):
    """``G_avg``: ``[n_bs, n_bs, n_prb]`` average Gramian of training targets (:func:`average_gramian`)."""
    k_pred, k_uniform = jax.random.split(key)
    est, samples, latent, dl_snr, G_hist = predict(params, history, k_pred)
    out, W_bayes = score(est, samples, latent, h, dl_snr, G_hist, G_avg, k_uniform)
    return out, samples, W_bayes, dl_snr

  return run


def average_gramian(config, ds, max_samples: int = 20_000) -> jax.Array:
  """``[n_bs, n_bs, n_prb]`` per-PRB Gramian averaged over (up to ``max_samples``) training targets."""
  h = ds.load("train")["target"][:max_samples]
  G = 0.0
  for i in range(0, h.shape[0], 1024):
    G = G + precoding.average_gramian(jnp.asarray(h[i:i + 1024])) * min(1024, h.shape[0] - i)
  return G / h.shape[0]


def loss_bounds(config, ds, max_samples: int = 4000, log=print) -> dict:
  """What the data allows, in the units of the training losses (computed from training targets).

  * ``sl_zero``: the SL loss of predicting 0 (the mean power of the targets).
  * ``dm_per_element``: the DM's loss (v or eps, as ``config.dm.prediction``) under
    per-element Gaussian shrinkage (:func:`jaxchan.ddpm.gaussian_loss_bound` with each
    element's variance): a DM above it has not learned any correlation.
  * ``dm_gaussian``: the same for the best Gaussian model (eigenvalues of the full
    sample covariance of up to ``max_samples`` targets).
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
  log(f"  bounds from {n} training targets: SL zero predictor {out['sl_zero']:.4f}; DM {pred} loss, per-element "
      f"shrinkage {out['dm_per_element']:.4f}, Gaussian {out['dm_gaussian']:.4f}")
  return out


def _batches(h_all, hist_all, batch):
  """``(offset, history, target)`` of consecutive test batches, split over the devices when there are several."""
  for i in range(0, h_all.shape[0], batch):
    yield (i,) + common.shard_eval(jnp.asarray(hist_all[i:i + batch]), jnp.asarray(h_all[i:i + batch]))


def evaluate(config, models, ds, log=print):
  """Tables II/III, Fig. 7 and the CG check on the first ``config.eval.num_test`` test samples."""
  test = ds.load("test")
  n = min(config.eval.num_test, ds.size("test"))
  hist_all, h_all = test["history"][:n], test["target"][:n]
  params = tuple(models[u][1] for u in ("sl", "dm", "e2e"))
  run = make_eval_batch(config, models)
  G_avg = average_gramian(config, ds)
  cg = jax.jit(functools.partial(stiefel.capacity_precoder, num_iters=config.eval.cg_iters))
  sums, cg_sums, n_cg = {}, {"eig": 0.0, "cg": 0.0}, 0
  eval_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 10_000)
  from tqdm import tqdm
  for i, hist, h in tqdm(list(_batches(h_all, hist_all, config.eval.batch_size)), desc="evaluate",
                         disable=not config.progress, leave=False):
    out, samples, W_bayes, dl_snr = run(params, hist, h, jax.random.fold_in(eval_key, i), G_avg)
    for k, v in out.items():
      sums[k] = sums.get(k, 0.0) + np.asarray(v, np.float64)
    if n_cg < config.eval.cg_num_test:
      # Eq. (27) by Riemannian CG from the eq. (28) solution, on the same K samples.
      W_cg = cg(samples, W_bayes, dl_snr)
      cg_sums["eig"] += float(jnp.sum(precoding.spectral_efficiency(h, W_bayes, dl_snr)))
      cg_sums["cg"] += float(jnp.sum(precoding.spectral_efficiency(h, W_cg, dl_snr)))
      n_cg += h.shape[0]
  res = {"num_test": n, "table2": {}, "table3": {}, "se_vs_snr": {"dl_snr_db": list(config.eval.dl_snr_grid_db)}}
  for name in ("srs_baseline", "sl", "dm"):
    nm = sums[f"sqerr/{name}"] / sums["energy"]
    res["table2"][name] = {"nmse": float(nm), "nmse_db": float(10 * np.log10(nm)), "gcs": float(sums[f"gcs/{name}"] / n)}
  for name in SE_ROWS:
    res["table3"][name] = float(sums[f"se/{name}"] / n)
    res["se_vs_snr"][name] = (sums[f"se_grid/{name}"] / n).tolist()
  res["cg_check"] = {"num_test": n_cg, "iters": config.eval.cg_iters, "se_eigenvectors": cg_sums["eig"] / max(n_cg, 1),
                     "se_riemannian_cg": cg_sums["cg"] / max(n_cg, 1),
                     "gap": (cg_sums["cg"] - cg_sums["eig"]) / max(n_cg, 1)}
  for k in ("sl", "dm"):
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
  def run(hist, h, key, deterministic):
    k_obs, k_dm = jax.random.split(key)
    obs = srs.observe(hist, k_obs, num_hops=scfg.num_hops, snr_db_range=scfg.snr_db_range)
    _, rec = prediction.sample_posterior(m_dm, p_dm, obs, k_dm, sch, deterministic=deterministic,
                                         **_dm_kw(config), record=prediction.trajectory_metrics(h))
    sl = prediction.sl_predict(m_sl, p_sl, obs)
    return rec, jnp.stack([jnp.sum(jnp.abs(sl - h) ** 2),
                           jnp.sum(jnp.mean(metrics.gcs(h, sl, reduce="none"), axis=(-2, -1)))])

  out = {}
  for det in (False, True):
    rec_sum, sl_sum, energy = 0.0, 0.0, 0.0
    for i, hist, h in _batches(test["target"][:n], test["history"][:n], config.eval.batch_size):
      rec, sl = run(hist, h, jax.random.PRNGKey(20_000 + i), det)   # same observations for both variants
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

  @functools.partial(jax.jit, static_argnames="w")
  def sample(hist, key, w):
    k_obs, k_dm = jax.random.split(key)
    obs = srs.observe(hist, k_obs, num_hops=scfg.num_hops, snr_db_range=scfg.snr_db_range)
    dl_snr = metrics.from_db(obs.snr_db + config.eval.dl_snr_offset_db)
    kw = dict(guidance=w, **_dm_kw(config), allow_extrapolation=config.eval.allow_extrapolation)
    ens = prediction.sample_posterior(m_dm, p_dm, obs, k_dm, sch, num_samples=K, **kw)
    det = prediction.sample_posterior(m_dm, p_dm, obs, k_dm, sch, deterministic=True, **kw)[0]
    return ens, det, dl_snr

  @jax.jit
  def score(ens, det, h, dl_snr):   # a separate program: see make_eval_batch
    return jnp.stack([jnp.sum(precoding.spectral_efficiency(h, precoding.bayesian_precoder(ens, n_s), dl_snr)),
                      jnp.sum(precoding.spectral_efficiency(h, _svd(det, n_s), dl_snr))])

  def run(hist, h, key, w):
    ens, det, dl_snr = sample(hist, key, w)
    return score(ens, det, h, dl_snr)

  ws = [float(w) for w in config.eval.guidance_scales]
  ens, det = [], []
  for w in ws:
    tot = 0.0
    for i, hist, h in _batches(test["target"][:n], test["history"][:n], config.eval.batch_size):
      tot = tot + np.asarray(run(hist, h, jax.random.PRNGKey(30_000 + i), w), np.float64)
    ens.append(float(tot[0] / n))
    det.append(float(tot[1] / n))
  return {"w": ws, "dm_bayes": ens, "dm_deterministic": det, "num_test": n, "K": K}


def example(config, models, ds):
  """Fig. 5 data: |h| of one test sample (UE antenna 0): ground truth, one DM sample, the SL estimate."""
  test = ds.load("test")
  i = config.eval.example_index
  hist, h = jnp.asarray(test["history"][i:i + 1]), jnp.asarray(test["target"][i:i + 1])
  scfg = srs_cfg(config)
  obs = srs.observe(hist, jax.random.PRNGKey(40_000), num_hops=scfg.num_hops, snr_db_range=scfg.snr_db_range)
  m_dm, p_dm = models["dm"]
  m_sl, p_sl = models["sl"]
  dm = jax.jit(lambda o, k: prediction.sample_posterior(m_dm, p_dm, o, k, dm_schedule(config),
                                                        **_dm_kw(config)))(obs, jax.random.PRNGKey(1))[0]
  sl = prediction.sl_predict(m_sl, p_sl, obs)
  mag = lambda x: np.abs(np.asarray(x[0, 0])).tolist()                 # [n_bs, n_prb]
  return {"index": i, "ul_snr_db": float(obs.snr_db[0]), "truth": mag(h), "dm": mag(dm), "sl": mag(sl)}


# ---------------------------------------------------------------------------
# Outputs.


LABELS = {**precoding.CLASSICAL_LABELS, "e2e": "End-to-end model", "sl": "SL model",
          "dm_k1": "DM model (K = 1)", "dm_bayes": "DM model (K = {K}, Bayesian)", "dm": "DM model (one sample)"}


def tables(results, config) -> str:
  K = config.eval.num_samples
  md = ["# Perception vs. distortion results\n\n",
        f"Device {results['device']}. NMSE is dataset level (ratio of sums); GCS is averaged over BS-antenna "
        f"vectors; SE is eq. (25) with N_s = {config.eval.n_streams}, equal power per layer, at each sample's DL "
        f"SNR = UL SNR + {config.eval.dl_snr_offset_db} dB. DM: T = {config.dm.T} cosine steps, guidance "
        f"w = {config.eval.guidance}, {config.dm.variance} variance, {dm_prediction(config)} prediction.\n"]
  md.append("\n## Table II: NMSE and GCS\n\n")
  rows = []
  for sc, r in results["scenarios"].items():
    for name in ("srs_baseline", "sl", "dm"):
      t = r["eval"]["table2"][name]
      rows.append([sc, LABELS[name], f"{t['nmse_db']:.2f}", f"{t['gcs']:.3f}"])
  md.append(io.markdown_table(["scenario", "model", "NMSE [dB]", "GCS"], rows))
  md.append("\n## Table III: spectral efficiency\n\n")
  rows, notes = [], []
  for sc, r in results["scenarios"].items():
    t3 = r["eval"]["table3"]
    for name in SE_ROWS:
      if name not in t3:          # results written before the classical baselines existed
        continue
      gap = "ref." if name == "e2e" else ("-" if name == "perfect_csi" or name in CLASSICAL
                                           else f"{t3[name] - t3['e2e']:+.3f}")
      rows.append([sc, LABELS[name].format(K=K), f"{t3[name]:.3f}", gap])
    c = r["eval"]["cg_check"]
    notes.append(f"- {sc}: Riemannian CG on the Monte-Carlo capacity (27), {c['iters']} iterations from the eq. (28) "
                 f"eigenvector solution with the same K = {K} samples, on {c['num_test']} test channels: SE "
                 f"{c['se_eigenvectors']:.4f} -> {c['se_riemannian_cg']:.4f} bps/Hz (gap {c['gap']:+.4f}).")
  md.append(io.markdown_table(["scenario", "model", "SE [bps/Hz]", "Δ to E2E"], rows))
  md.append("\nNotes (energy surrogate check):\n\n" + "\n".join(notes) + "\n")
  md.append("\n## Fig. 8 data: SE against guidance scale w\n\n")
  rows = []
  for sc, r in results["scenarios"].items():
    g = r["guidance"]
    for w, a, b in zip(g["w"], g["dm_bayes"], g["dm_deterministic"]):
      rows.append([sc, w, f"{a:.3f}", f"{b:.3f}"])
  md.append(io.markdown_table(["scenario", "w", f"DM ensemble (K = {K})", "deterministic DM"], rows))
  md.append("\n## Training\n\n")
  rows = []
  for sc, r in results["scenarios"].items():
    for use, hist in r["training"].items():
      rows.append([sc, use, hist[-1]["epoch"], f"{hist[-1]['train_loss']:.4f}", f"{hist[-1]['test_loss']:.4f}"])
  md.append(io.markdown_table(["scenario", "model", "epochs", "train loss", "test loss"], rows))
  rows = [[sc, f"{b['sl_zero']:.4f}", f"{b['dm_per_element']:.4f}", f"{b['dm_gaussian']:.4f}", b["num_samples"]]
          for sc, b in ((sc, r.get("bounds")) for sc, r in results["scenarios"].items()) if b]
  if rows:
    md.append("\nBounds from the training targets: the SL loss of predicting 0, and the DM's loss (in its own "
              "parameterization, v or eps) for "
              "per-element Gaussian shrinkage and for the best Gaussian model (full sample covariance). A DM above "
              "the per-element bound has learned no correlation.\n\n")
    md.append(io.markdown_table(["scenario", "SL: zero predictor", "DM: per-element shrinkage", "DM: Gaussian",
                                 "targets used"], rows))
  return "".join(md)


def _plt():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def _scenario_figure(plt, scenarios, panels, panel_size, draw, path):
  """One figure with a group of ``panels`` axes per scenario, drawn by ``draw(scenario, axes)``, saved to ``path``.

  Several panels per scenario: one row per scenario. One panel: the scenarios side by side.
  """
  rows, cols = (len(scenarios), panels) if panels > 1 else (1, len(scenarios))
  fig, axes = plt.subplots(rows, cols, figsize=(panel_size[0] * cols, panel_size[1] * rows), squeeze=False)
  groups = axes if panels > 1 else [[ax] for ax in axes[0]]
  for group, sc in zip(groups, scenarios):
    draw(sc, group)
  if groups[0][0].get_legend_handles_labels()[0]:
    groups[0][0].legend(fontsize=7)
  fig.tight_layout()
  io.atomic_save_figure(fig, path, dpi=110)
  plt.close(fig)


def plot_all(results, config, workdir):
  """Figs. 5-8 of the perception paper from ``results``, one panel group per scenario."""
  plt = _plt()
  scs = list(results["scenarios"])
  K = config.eval.num_samples

  def fig5_examples(sc, row):
    ex = results["scenarios"][sc]["example"]
    vmax = max(np.max(ex[k]) for k in ("truth", "dm", "sl"))
    for ax, k, title in zip(row, ("truth", "dm", "sl"), ("ground truth", "DM sample", "SL estimate")):
      ax.imshow(np.asarray(ex[k]), aspect="auto", origin="lower", vmin=0, vmax=vmax, cmap="viridis")
      ax.set_title(f"{sc}: {title}", fontsize=9)
      ax.set_xlabel("PRB")
    row[0].set_ylabel("BS antenna")

  def fig6_trajectory(sc, row):
    tr = results["scenarios"][sc]["trajectory"]
    steps = np.arange(len(tr["stochastic"]["nmse_xt"]), 0, -1)
    for var, color in (("stochastic", "tab:red"), ("deterministic", "tab:blue")):
      row[0].plot(steps, 10 * np.log10(tr[var]["nmse_xt"]), color=color, label=f"{var} x_t")
      row[0].plot(steps, 10 * np.log10(tr[var]["nmse_x0"]), "--", color=color, label=f"{var} x0_hat")
      row[1].plot(steps, tr[var]["gcs_xt"], color=color, label=f"{var} x_t")
      row[1].plot(steps, tr[var]["gcs_x0"], "--", color=color, label=f"{var} x0_hat")
    row[0].axhline(10 * np.log10(tr["sl"]["nmse"]), color="k", lw=0.8, label="SL")
    row[1].axhline(tr["sl"]["gcs"], color="k", lw=0.8, label="SL")
    row[0].set_ylabel(f"{sc}\nNMSE [dB]")
    row[1].set_ylabel("GCS")
    for ax in row:
      ax.invert_xaxis()
      ax.set_xlabel("reverse step t")

  def fig7_se_snr(sc, axes):
    se = results["scenarios"][sc]["eval"]["se_vs_snr"]
    styles = {"perfect_csi": "k-", "uniform": "k:", "avg_gramian": "C7-.", "sample_cov": "C5--",
              "srs_baseline": "C1--"}
    for i, name in enumerate(n for n in SE_ROWS if n in se):
      axes[0].plot(se["dl_snr_db"], se[name], styles.get(name, f"C{i % 10}-"), marker="osD^v<>ph*"[i % 10],
                   ms=4, mfc="none", label=LABELS[name].format(K=K))
    axes[0].set(title=sc, xlabel="DL SNR [dB]", ylabel="SE [bps/Hz]")

  def fig8_guidance(sc, axes):
    g = results["scenarios"][sc]["guidance"]
    axes[0].plot(g["w"], g["dm_bayes"], marker="o", label=f"DM ensemble (K = {K})")
    axes[0].plot(g["w"], g["dm_deterministic"], marker="s", label="deterministic DM")
    axes[0].set(title=sc, xlabel="guidance scale w", ylabel="SE [bps/Hz]")

  for draw, panels, size in ((fig5_examples, 3, (10 / 3, 2.8)), (fig6_trajectory, 2, (4.5, 3.0)),
                             (fig7_se_snr, 1, (5, 3.6)), (fig8_guidance, 1, (5, 3.4))):
    _scenario_figure(plt, scs, panels, size, draw, os.path.join(workdir, f"{draw.__name__}.png"))


def run(config, workdir: str) -> dict:
  validate(config)
  os.makedirs(workdir, exist_ok=True)
  log = print
  results = {"config": json.loads(config.to_json()), "device": str(jax.devices()[0]), "scenarios": {}}
  for sc in config.scenarios:
    log(f"== {sc}")
    with open_scenario(config, sc, log=log) as ds:
      models, training = {}, {}
      for use in config.train.models:
        model, params, hist = train_one(config, use, ds, os.path.join(workdir, sc, "models", use), log=log)
        models[use] = (model, params)
        training[use] = hist
      res = {"dataset": ds.path, "training": training, "bounds": loss_bounds(config, ds, log=log)}
      if config.eval.enabled:
        res["eval"] = evaluate(config, models, ds, log=log)
        res["trajectory"] = trajectories(config, models, ds)
        res["guidance"] = guidance_sweep(config, models, ds)
        res["example"] = example(config, models, ds)
      results["scenarios"][sc] = res
    # Written after every scenario (by process 0), so a long run's finished scenarios are on disk early.
    if common.is_main_process():
      io.atomic_write_json(os.path.join(workdir, "results.json"), results)
      if config.eval.enabled:
        io.atomic_write_text(os.path.join(workdir, "tables.md"), tables(results, config))
        plot_all(results, config, workdir)
  return results
