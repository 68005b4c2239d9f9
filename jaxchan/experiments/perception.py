"""Score-based vs discriminative channel prediction for SRS-based precoding (``configs/perception.py``).

For each scenario in ``config.scenarios``: the dataset is built once if missing; the backbone is trained
three ways (SL, DM, E2E) in ``workdir/<scenario>/models/{sl,dm,e2e}`` with the shared loop; the studies of
:mod:`jaxchan.experiments.perception_eval` (Tables II/III, Figs. 5-8, the Riemannian-CG check of eq. 27)
run on the test set. ``results.json`` goes to the workdir, then the tables and figures of
:mod:`jaxchan.experiments.perception_report` (re-rendered by ``python -m jaxchan.experiments.report WORKDIR``).
"""

from __future__ import annotations

import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxchan import checks, data, ddpm, prediction, schedules, srs
from jaxchan.experiments import common
from jaxchan.models.transformer import ANCHORS, USES, ChannelTransformer, check_token_width

SCENARIOS = ("low_mobility", "high_mobility")
SE_ROWS = ("perfect_csi", "e2e", "srs_baseline", "sample_cov", "gaussian_mean", "gaussian_bayes",
           "gaussian_bayes_inf", "avg_gramian", "uniform", "sl", "dm_k1", "dm_bayes")
# Precoders that need no learning (precoding.py, gaussian_predictor.py): the strongest classical baselines.
CLASSICAL = ("srs_baseline", "sample_cov", "gaussian_mean", "gaussian_bayes", "gaussian_bayes_inf", "avg_gramian",
             "uniform")
# Estimates in Table II: the SRS baseline, the Gaussian predictor's conditional mean, and the learned models.
ESTIMATES = ("srs_baseline", "gaussian", "sl", "dm")



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
  checks.choice("config.model.anchor", anchor_of(config), ANCHORS)
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
    checks.positive_int(f"config.train.epochs.{u}", config.train.epochs[u])
  for f in ("batch_size", "test_loss_samples"):
    checks.positive_int(f"config.train.{f}", config.train[f])
  for f in ("batch_size", "num_test", "sweep_num_test", "trajectory_num_test", "cg_iters"):
    checks.positive_int(f"config.eval.{f}", config.eval[f])
  with common.field("config.dm (T, cosine_s, max_beta)"):
    sch = dm_schedule(config)
  from jaxchan.experiments import perception_fast
  perception_fast.check(config)
  # Build the real models and trace (jax.eval_shape: shapes only, no FLOPs) one initialization and one
  # training loss each, and one posterior draw, so the kernels' own checks fire before any data is built.
  d = config.data
  c64 = jnp.complex64
  batch = {"history": jax.ShapeDtypeStruct((1, d.n_occ, d.n_ue, n_bs_used(config), d.n_prb), c64),
           "target": jax.ShapeDtypeStruct((1, d.n_ue, n_bs_used(config), d.n_prb), c64)}
  k = jax.random.PRNGKey(0)
  for use in config.train.models:
    with common.field(f"config.model (the {use} model)"):
      model = make_model(config, use)
      params = jax.eval_shape(functools.partial(init_params, model), k)
      jax.eval_shape(jax.grad(loss_fn(config, model, use)), params, batch, k)
    if use == "dm" and config.eval.enabled:
      scfg = srs_cfg(config)

      def draw(p, history, key):
        obs = srs.observe(history, key, num_hops=scfg.num_hops, snr_db_range=scfg.snr_db_range)
        return prediction.sample_posterior(model, p, obs, key, sch, num_samples=K, guidance=float(config.eval.guidance),
                                           allow_extrapolation=config.eval.allow_extrapolation, **_dm_kw(config))

      with common.field("config.eval / config.dm (posterior sampling)"):
        jax.eval_shape(draw, params, batch["history"], k)


def n_bs_used(config) -> int:
  """BS antennas the models see: ``config.data.bs_antennas`` (the first ones of the file), or all (0)."""
  return config.data.get("bs_antennas", 0) or config.data.n_bs


def shapes(config) -> dict:
  """Per-sample shapes of the dataset file (all ``n_bs`` antennas)."""
  d = config.data
  return {"history": (d.n_occ, d.n_ue, d.n_bs, d.n_prb), "target": (d.n_ue, d.n_bs, d.n_prb)}


def srs_cfg(config) -> srs.SRSConfig:
  return srs.SRSConfig(config.srs.num_hops, tuple(config.srs.snr_db_range))


def open_scenario(config, scenario, log=common.log):
  """The scenario's dataset, built once if missing; a :class:`~jaxchan.data.BSAntennaSubset` view when
  ``config.data.bs_antennas`` keeps fewer antennas than the file holds."""
  path = common.ensure_dataset(config.data, scenario, progress=config.progress, log=log)
  ds = data.Dataset(path, build_command=common.build_command(config.data, scenario), kind="srs_prediction",
                    shapes=shapes(config))
  return ds if n_bs_used(config) == config.data.n_bs else data.BSAntennaSubset(ds, n_bs_used(config))


# ---------------------------------------------------------------------------
# Models and training.


def make_model(config, use: str, age_corr=None) -> ChannelTransformer:
  """The backbone for one use. ``age_corr``: ``[n_occ]`` complex per-occasion correlation of the Gaussian
  predictor (:func:`fit_age_correlation`), needed when ``config.model.anchor == "gaussian"``; ``None`` there
  builds the model with placeholder zeros (shapes and checks only)."""
  d, m = config.data, config.model
  anchor = anchor_of(config)
  corr = ()
  if anchor == "gaussian":
    rho = np.zeros(d.n_occ, np.complex64) if age_corr is None else np.asarray(age_corr, np.complex64)
    if rho.shape != (d.n_occ,):
      raise ValueError(f"age_corr has shape {rho.shape}; the Gaussian anchor needs one value per SRS occasion "
                       f"(config.data.n_occ={d.n_occ}).")
    corr = tuple((float(r.real), float(r.imag)) for r in rho)
  return ChannelTransformer(n_occ=d.n_occ, n_ue=d.n_ue, n_bs=n_bs_used(config), n_prb=d.n_prb,
                            num_hops=config.srs.num_hops,
                            ue_per_token=m.ue_per_token, use=use, d_model=m.d_model, num_heads=m.num_heads,
                            enc_layers=m.enc_layers, dec_layers=m.dec_layers, mlp_ratio=m.mlp_ratio,
                            dropout=m.dropout, anchor=anchor, age_corr=corr,
                            dm_schedule=(config.dm.T, config.dm.get("cosine_s", 0.008), config.dm.get("max_beta", 0.999)),
                            prediction=dm_prediction(config))


def anchor_of(config) -> str:
  """The model's anchor (``config.model.anchor``); models saved before the field existed had none."""
  return config.model.get("anchor", "none")


def fit_age_correlation(ds, max_samples: int = 4000) -> np.ndarray:
  """The Gaussian predictor's per-occasion correlation ``[n_occ]``, fitted on (up to ``max_samples``) training
  histories of ``ds`` (:func:`jaxchan.gaussian_predictor.fit_age_correlation`)."""
  from jaxchan import gaussian_predictor
  train = ds.load("train")
  n = min(max_samples, ds.size("train"))
  return np.asarray(gaussian_predictor.fit_age_correlation(train["history"][:n], train["target"][:n]))


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


def _to_batch(arrays, n):
  return {k: jnp.asarray(arrays[k][:n]) for k in ("history", "target")}


def train_one(config, use, ds, model_dir, log=common.log, label: str | None = None):
  """The backbone trained as ``use`` (``sl``, ``dm`` or ``e2e``): ``(model, params, history)``; ``label`` names it
  in progress lines."""
  rho = fit_age_correlation(ds) if anchor_of(config) == "gaussian" else None
  model = make_model(config, use, rho)
  key = common.key(config, f"perception/{use}")
  meta = dict(use=use, model=config.model.to_dict(), data=config.data.to_dict(), srs=config.srs.to_dict(),
              dm=config.dm.to_dict(), anchor=anchor_of(config),
              age_corr=None if rho is None else [[float(r.real), float(r.imag)] for r in rho])
  _check_resume(model_dir, anchor_of(config))
  params, history = common.train_model(
      label or use, params=init_params(model, jax.random.fold_in(key, 0)), loss_fn=loss_fn(config, model, use), ds=ds,
      to_batch=_to_batch, tcfg=config.train, num_epochs=config.train.epochs[use], model_dir=model_dir, meta=meta,
      key=jax.random.fold_in(key, 1), seed=config.seed, progress=config.progress, log=log)
  return model, params, history


def _check_resume(model_dir: str, anchor: str):
  """Refuse to continue a checkpoint trained with another anchor (its parameters mean something else)."""
  path = os.path.join(model_dir, "model.json")
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f).get("anchor", "none")
    if old != anchor:
      raise ValueError(f"{model_dir} holds a model trained with anchor {old!r}; this config asks for {anchor!r} "
                       "(config.model.anchor). Use another --workdir, or the config that trained it.")


def load_trained(model_dir: str, *, anchor: str | None = None):
  """``(model, params, config)`` of a model trained by this experiment (``WORKDIR/SCENARIO/models/USE``).

  ``config`` is a ConfigDict with the ``model``, ``data``, ``srs`` and ``dm``
  sections it was trained with; the model carries its anchor (``config.model.anchor``) and, anchored, the
  age correlation it was fitted with. ``anchor``, if given, must match the one the model was trained with. Example (K posterior samples for your own SRS
  history ``[B, n_occ, n_ue, n_bs, n_prb]``; a reduced-geometry model, as in ``:quick``,
  sees only the first ``n_bs_used(cfg)`` BS antennas)::

    model, params, cfg = load_trained("workdir/perception/high_mobility/models/dm")
    obs = srs.observe(history[..., :n_bs_used(cfg), :], key)
    samples = prediction.sample_posterior(model, params, obs, key, dm_schedule(cfg), num_samples=16,
                                          prediction=dm_prediction(cfg))
  """
  import ml_collections

  def build(info):
    trained = info.get("anchor", "none")
    if anchor is not None and anchor != trained:
      raise ValueError(f"{model_dir} was trained with anchor {trained!r}, not {anchor!r}; load it with "
                       f"anchor={trained!r} (or None), or train a model with anchor {anchor!r}.")
    cfg = ml_collections.ConfigDict({k: info[k] for k in ("model", "data", "srs", "dm")})
    cfg.model.anchor = trained
    rho = None if info.get("age_corr") is None else np.array([complex(*p) for p in info["age_corr"]])
    model = make_model(cfg, info["use"], rho)
    return model, init_params(model, jax.random.PRNGKey(0))

  model, params, info = common.load_trained(model_dir, build, "WORKDIR/SCENARIO/models/USE")
  return model, params, ml_collections.ConfigDict({k: info[k] for k in ("model", "data", "srs", "dm")})


# ---------------------------------------------------------------------------
# The diffusion model's settings.


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


def run(config, workdir: str) -> dict:
  from jaxchan.experiments import perception_eval, perception_fast, perception_report

  started = time.time()
  validate(config)
  os.makedirs(workdir, exist_ok=True)
  log = common.log
  results = {"config": json.loads(config.to_json()), "device": str(jax.devices()[0]), "scenarios": {}}
  for sc in config.scenarios:
    log(f"== {sc}")
    with open_scenario(config, sc, log=log) as ds:
      common.check_sizes(config, ds, ("train.test_loss_samples",) + (
          ("eval.num_test", "eval.sweep_num_test", "eval.trajectory_num_test", "eval.cg_num_test",
           "eval.fast_num_test") if config.eval.enabled else ()))
      models, training = {}, {}
      for i, use in enumerate(config.train.models):
        model, params, hist = train_one(config, use, ds, os.path.join(workdir, sc, "models", use), log=log,
                                        label=f"{sc}/{use} ({i + 1}/{len(config.train.models)})")
        models[use] = (model, params)
        training[use] = hist
      students = {}
      if config.get("distill") and config.distill.enabled:
        students = perception_fast.distill(config, sc, models.get("dm"), ds, os.path.join(workdir, sc, "models"),
                                           log=log)
      res = {"dataset": ds.path, "training": training, "bounds": perception_eval.loss_bounds(config, ds, log=log)}
      if config.eval.enabled:
        res["fast_sampling"] = perception_fast.evaluate(config, models["dm"], students, ds, log=log)
        res["eval"] = perception_eval.evaluate(config, models, ds, log=log)
        res["trajectory"] = perception_eval.trajectories(config, models, ds)
        res["guidance"] = perception_eval.guidance_sweep(config, models, ds)
        res["example"] = perception_eval.example(config, models, ds)
      results["scenarios"][sc] = res
    # Written after every scenario (by process 0), so a long run's finished scenarios are on disk early.
    common.write_results(workdir, results, perception_report.render if config.eval.enabled else lambda r, w: None,
                         started=started)
  return results
