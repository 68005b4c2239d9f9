"""The perception experiment's config turned into values: shapes, the SRS model, the models and their losses,
the DM's schedule, and loading a trained model. Everything the experiment's helpers (evaluation, fast sampling,
report) need from the config comes from here, so none of them imports the experiment back.
"""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxchan import prediction, schedules, srs
from jaxchan.experiments import common
from jaxchan.models.transformer import ChannelTransformer

SCENARIOS = ("low_mobility", "high_mobility")
SE_ROWS = ("perfect_csi", "e2e", "srs_baseline", "sample_cov", "gaussian_mean", "gaussian_bayes",
           "gaussian_bayes_inf", "avg_gramian", "uniform", "sl", "dm_k1", "dm_bayes")
# Precoders that need no learning (precoding.py, gaussian_predictor.py): the strongest classical baselines.
CLASSICAL = ("srs_baseline", "sample_cov", "gaussian_mean", "gaussian_bayes", "gaussian_bayes_inf", "avg_gramian",
             "uniform")
# Estimates in Table II: the SRS baseline, the Gaussian predictor's conditional mean, and the learned models.
ESTIMATES = ("srs_baseline", "gaussian", "sl", "dm")



def n_bs_used(config) -> int:
  """BS antennas the models see: ``config.data.bs_antennas`` (the first ones of the file), or all (0)."""
  return config.data.get("bs_antennas", 0) or config.data.n_bs


def shapes(config) -> dict:
  """Per-sample shapes of the dataset file (all ``n_bs`` antennas)."""
  d = config.data
  return {"history": (d.n_occ, d.n_ue, d.n_bs, d.n_prb), "target": (d.n_ue, d.n_bs, d.n_prb)}


def srs_cfg(config) -> srs.SRSConfig:
  return srs.SRSConfig(config.srs.num_hops, tuple(config.srs.snr_db_range))


# ---------------------------------------------------------------------------
# Models and training.


def make_model(config, use: str, age_corr=None, cov_floor: float = 0.0) -> ChannelTransformer:
  """The backbone for one use. ``age_corr``: ``[n_occ]`` complex per-occasion correlation of the Gaussian
  predictor (:func:`fit_age_correlation`), needed when ``config.model.anchor == "gaussian"``; ``None`` there
  builds the model with placeholder zeros (shapes and checks only). ``cov_floor``: the DM anchor's covariance
  floor (:func:`fit_cov_floor`)."""
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
                            prediction=dm_prediction(config), cov_floor=float(cov_floor))


def anchor_of(config) -> str:
  """The model's anchor (``config.model.anchor``); models saved before the field existed had none."""
  return config.model.get("anchor", "none")


def fitting_samples(config, ds, max_samples: int) -> int:
  """How many of the first training histories a closed-form fit may use: at most ``max_samples``, and none of the
  held-out tail (``config.train.val_samples``) that picks the kept parameters, which the anchor competes on."""
  n = ds.size("train") if config is None else common.train_split(config.train, ds)[0]
  return min(max_samples, n)


#: Training histories the Gaussian predictor's age correlation is fitted on (at most; never the held-out ones).
AGE_FIT_SAMPLES = 4000


def fit_age_correlation(ds, config=None, max_samples: int = AGE_FIT_SAMPLES) -> np.ndarray:
  """The Gaussian predictor's per-occasion correlation ``[n_occ]``, fitted on (up to ``max_samples``) training
  histories of ``ds`` (:func:`jaxchan.gaussian_predictor.fit_age_correlation`); with ``config``, none of its
  held-out histories (:func:`fitting_samples`)."""
  from jaxchan import gaussian_predictor
  train = ds.load("train")
  n = fitting_samples(config, ds, max_samples)
  return np.asarray(gaussian_predictor.fit_age_correlation(train["history"][:n], train["target"][:n]))


#: Candidate covariance floors of the DM's Gaussian anchor (:func:`fit_cov_floor`), per element of a unit-power
#: channel.
COV_FLOORS = (0.0, 0.001, 0.003, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 1.0)


def fit_cov_floor(config, ds, rho, max_samples: int = 512, num_keys: int = 4) -> tuple[float, dict]:
  """``(floor, {floor: loss})``: the covariance floor of the DM's Gaussian anchor with the lowest DM loss on
  training samples, and the loss of every candidate.

  The anchor's own loss (the untrained anchored DM's, conditional samples: the null condition does not depend
  on it), ``E |v - v_gauss|^2`` over ``t``, the noise and the SRS observation, for each floor of
  :data:`COV_FLOORS` on up to ``max_samples`` training histories (none of the held-out ones). Without a floor, a direction the predictor
  declares certain makes that loss grow as ``1 / sigma_t`` near the data wherever the predictor is wrong.
  """
  from jaxchan import ddpm, gaussian_predictor
  train = ds.load("train")
  n = fitting_samples(config, ds, max_samples)
  hist, h = jnp.asarray(train["history"][:n]), jnp.asarray(train["target"][:n])
  sch, scfg = dm_schedule(config), srs_cfg(config)
  rho = jnp.asarray(rho, jnp.complex64)

  @jax.jit
  def loss(floor, key):
    k_obs, k_t, k_eps = jax.random.split(key, 3)
    obs = srs.observe(hist, k_obs, num_hops=scfg.num_hops, snr_db_range=scfg.snr_db_range)
    gp = gaussian_predictor.predict(obs, rho)
    gp = gp._replace(cov_vals=gp.cov_vals + floor)
    t = jax.random.randint(k_t, (n,), 1, sch.num_steps + 1)
    x_t, eps = ddpm.q_sample(h, t, k_eps, sch)
    x0 = gaussian_predictor.denoise(gp, x_t, sch.alpha_bars[t])
    return jnp.mean(jnp.abs(ddpm.v_target(h, eps, t, sch) - ddpm.v_target(x0, ddpm.eps_from_x0(x_t, x0, t, sch), t, sch))
                    ** 2)

  keys = [jax.random.PRNGKey(i) for i in range(num_keys)]
  losses = [float(np.mean([loss(jnp.float32(f), k) for k in keys])) for f in COV_FLOORS]
  return float(COV_FLOORS[int(np.argmin(losses))]), dict(zip(COV_FLOORS, losses))


def init_params(model: ChannelTransformer, key):
  """The model's initial parameters, from one compiled program (op by op, the anchor's linear algebra and every
  layer would each compile their own: about 5 s more on a CPU)."""

  def init(key):
    B = 1
    obs = jnp.zeros((B, model.n_occ, model.n_ue, model.n_bs, model.n_prb), jnp.complex64)
    mask = srs.hop_masks(model.n_prb, model.num_hops)[jnp.arange(model.n_occ) % model.num_hops][None]
    if model.use == "dm":
      x = jnp.zeros((B, model.n_ue, model.n_bs, model.n_prb), jnp.complex64)
      return model.init(key, obs, mask, jnp.ones((B,)), x, jnp.ones((B,), jnp.int32), jnp.zeros((B,), bool))
    return model.init(key, obs, mask, jnp.ones((B,)))

  return jax.jit(init)(key)


def loss_fn(config, model, use):
  """``(params, batch, key) -> loss`` of one training use."""
  scfg = srs_cfg(config)
  if use == "sl":
    return functools.partial(prediction.sl_loss, model, srs_cfg=scfg)
  if use == "dm":
    return functools.partial(prediction.dm_loss, model, schedule=dm_schedule(config),
                             p_uncond=config.dm.p_uncond, srs_cfg=scfg, prediction=dm_prediction(config))
  return functools.partial(prediction.e2e_loss, model, n_streams=config.eval.n_streams, srs_cfg=scfg)


def to_batch(arrays, n):
  return {k: jnp.asarray(arrays[k][:n]) for k in ("history", "target")}


def check_resume(model_dir: str, anchor: str, field: str = "config.model.anchor"):
  """Refuse to continue a checkpoint trained with another anchor (its parameters mean something else)."""
  path = os.path.join(model_dir, "model.json")
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f).get("anchor", "none")
    if old != anchor:
      raise ValueError(f"{model_dir} holds a model trained with anchor {old!r}; this config asks for {anchor!r} "
                       f"({field}). Use another --workdir, or the config that trained it.")


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
    model = make_model(cfg, info["use"], rho, info.get("cov_floor", 0.0))
    return model, init_params(model, jax.random.PRNGKey(0))

  model, params, info = common.load_trained(model_dir, build, "WORKDIR/SCENARIO/models/USE")
  return model, params, ml_collections.ConfigDict({k: info[k] for k in ("model", "data", "srs", "dm")})


# ---------------------------------------------------------------------------
# The diffusion model's settings.


def dm_prediction(config) -> str:
  """What the DM predicts; models saved before ``config.dm.prediction`` existed were trained on eps."""
  return config.dm.get("prediction", "eps")


def dm_kw(config) -> dict:
  """Sampler settings of the DM shared by every evaluation."""
  return dict(variance=config.dm.variance, clip_x0=config.dm.clip_x0 or None, prediction=dm_prediction(config))


def sampler_kw(config, spec: str | None = None) -> dict:
  """Sampling settings of the DM for the sampler ``spec`` (default ``config.eval.sampler``): ``"ancestral"`` is the
  full chain with the DM's own reverse-step variance (:func:`dm_kw`), ``"dpm2m:10"`` etc. a few-step solver
  (:class:`jaxchan.ddpm_solvers.Solver`). Runs recorded before ``eval.sampler`` existed sampled the full chain."""
  from jaxchan.ddpm_solvers import Solver
  solver = Solver.parse(config.eval.get("sampler", "ancestral") if spec is None else spec)
  if solver.kind == "ancestral" and solver.num_steps in (0, config.dm.T):   # the full chain, however written
    return dm_kw(config)
  return dict(prediction=dm_prediction(config), clip_x0=config.dm.clip_x0 or None, solver=solver)


def dm_schedule(config):
  """The DM's cosine schedule from ``config.dm`` (``T``, ``cosine_s``, ``max_beta``)."""
  # Configs saved before these fields existed fall back to cosine_schedule's own defaults.
  kw = {k: config.dm[f] for k, f in (("s", "cosine_s"), ("max_beta", "max_beta")) if f in config.dm}
  return schedules.cosine_schedule(config.dm.T, **kw)
