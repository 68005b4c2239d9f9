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

from jaxchan import checks, data, ddpm, prediction, srs, train
from jaxchan.experiments import common
# The config's values (re-exported here: ``perception.make_model``, ``perception.load_trained``, ...).
from jaxchan.experiments.perception_setup import (  # noqa: F401
    CLASSICAL, ESTIMATES, SCENARIOS, SE_ROWS, anchor_of, check_resume, dm_kw, dm_prediction, dm_schedule,
    fit_age_correlation, fit_cov_floor, init_params, load_trained, loss_fn, make_model, n_bs_used, sampler_kw, shapes,
    srs_cfg, to_batch)
from jaxchan.models.transformer import ANCHORS, USES, check_token_width


def preflight(config):
  """A user-given ``config.data.path`` (one scenario) that is mistyped (and no build asked), damaged, of the wrong
  kind or shape, or too small is refused before :func:`validate` traces the models
  (:func:`jaxchan.experiments.common.preflight_dataset`)."""
  if config.data.path and len(config.scenarios) == 1:
    common.preflight_dataset(config, kind="srs_prediction", shapes=shapes(config), size_fields=size_fields(config),
                             preset=config.scenarios[0])


def size_fields(config) -> tuple[str, ...]:
  """The config fields that count test samples, each checked against the dataset's test split."""
  return ("train.test_loss_samples",) + (
      ("eval.num_test", "eval.sweep_num_test", "eval.trajectory_num_test", "eval.cg_num_test",
       "eval.fast_num_test") if config.eval.enabled else ())


@common.validated_once
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
  # "prior" needs a known prior covariance (the exact-posterior experiment's); a dataset has none.
  checks.choice("config.model.anchor", anchor_of(config), tuple(a for a in ANCHORS if a != "prior"))
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
  common.check_val_samples(config.train)
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
                                           allow_extrapolation=config.eval.allow_extrapolation, **sampler_kw(config))

      with common.field("config.eval / config.dm (posterior sampling)"):
        jax.eval_shape(draw, params, batch["history"], k)


def open_scenario(config, scenario, log=common.log):
  """The scenario's dataset, built once if missing; a :class:`~jaxchan.data.BSAntennaSubset` view when
  ``config.data.bs_antennas`` keeps fewer antennas than the file holds."""
  path = common.ensure_dataset(config.data, scenario, progress=config.progress, log=log)
  ds = data.Dataset(path, build_command=common.build_command(config.data, scenario), kind="srs_prediction",
                    shapes=shapes(config))
  return ds if n_bs_used(config) == config.data.n_bs else data.BSAntennaSubset(ds, n_bs_used(config))


def train_one(config, use, ds, model_dir, log=common.log, label: str | None = None):
  """The backbone trained as ``use`` (``sl``, ``dm`` or ``e2e``): ``(model, params, history)``; ``label`` names it
  in progress lines."""
  anchored = anchor_of(config) == "gaussian"
  rho = fit_age_correlation(ds, config) if anchored else None
  floor, floor_losses = fit_cov_floor(config, ds, rho) if anchored and use == "dm" else (0.0, None)
  if floor_losses:
    log(f"{label or use}: Gaussian anchor covariance floor {floor} (anchor DM loss per floor on training samples: "
        + ", ".join(f"{f:g}: {v:.4f}" for f, v in floor_losses.items()) + ")")
  model = make_model(config, use, rho, floor)
  key = common.key(config, f"perception/{use}")
  meta = dict(use=use, model=config.model.to_dict(), data=config.data.to_dict(), srs=config.srs.to_dict(),
              dm=config.dm.to_dict(), anchor=anchor_of(config),
              age_corr=None if rho is None else [[float(r.real), float(r.imag)] for r in rho], cov_floor=floor,
              cov_floor_losses=None if floor_losses is None else {str(k): v for k, v in floor_losses.items()})
  check_resume(model_dir, anchor_of(config))
  job = common.TrainJob(label or use, init_params(model, jax.random.fold_in(key, 0)), loss_fn(config, model, use),
                        to_batch, model_dir, meta)
  params, history = common.train_model(job, ds, config.train, num_epochs=config.train.epochs[use],
                                       key=jax.random.fold_in(key, 1), seed=config.seed,
                                       report=train.Report(progress=config.progress, log=log))
  return model, params, history


def run(config, workdir: str) -> dict:
  from jaxchan.experiments import perception_eval, perception_fast, perception_report

  started = time.time()
  preflight(config)   # the dataset checks that need no tracing first, for callers from Python too
  validate(config)
  os.makedirs(workdir, exist_ok=True)
  log = common.log
  results = {"config": json.loads(config.to_json()), "device": str(jax.devices()[0]), "scenarios": {}}
  for sc in config.scenarios:
    log(f"== {sc}")
    with open_scenario(config, sc, log=log) as ds:
      common.check_sizes(config, ds, size_fields(config))
      common.train_split(config.train, ds)
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
