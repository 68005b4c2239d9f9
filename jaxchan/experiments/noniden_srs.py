"""Non-identical diffusion as the posterior sampler for aged-SRS precoding (``configs/noniden_srs.py``).

1. The perception experiment's datasets of every scenario (built once if missing); every UE antenna's target
   channel of the training histories (but the held-out tail the perception models select on) becomes one
   snapshot sample ``[n_bs, n_prb]`` (:class:`jaxchan.data.ArrayDataset`).
2. One non-identical prior model (the non-identical experiment's main model: Gaussian-anchored mixer, Algorithm 1)
   is trained on the rows of all scenarios together, in ``workdir/models/prior`` (resumable).
3. The reliability map's innovation is fitted on training histories (:mod:`jaxchan.srs_prior`), unless the config
   names one.
4. Per scenario: the perception table's classical rows and the prior's rows on the perception evaluation's test
   histories and observations (:mod:`jaxchan.experiments.noniden_srs_eval`), the learned perception rows read from
   ``config.eval.perception_results`` when given; then each unseen SRS configuration.
5. ``results.json``, ``tables.md`` (:mod:`jaxchan.experiments.noniden_srs_report`).
"""

from __future__ import annotations

import glob
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxchan import checks, data, gaussian_predictor, srs_prior
from jaxchan.experiments import common, mobility, noniden, noniden_srs_eval, perception, perception_setup

SCENARIOS = perception.SCENARIOS


@common.validated_once
def validate(config):
  """Every config error before any work (the prior model's fields through the non-identical experiment's own
  checks, then this experiment's)."""
  for s in config.scenarios:
    checks.choice("config.scenarios entry", s, SCENARIOS)
  if not config.scenarios:
    raise ValueError(f"config.scenarios is empty; choose from {', '.join(SCENARIOS)}.")
  if config.model.get("anchor", "none") != "kronecker":
    raise ValueError(f"config.model.anchor={config.model.get('anchor', 'none')!r}: the SRS prior needs the Kronecker "
                     "anchor (its per-user prior replaces the antenna factor); set --config.model.anchor=kronecker.")
  with common.field("config.srs_prior.innovation"):
    if config.srs_prior.innovation != "fit":
      checks.choice("innovation", config.srs_prior.innovation, srs_prior.INNOVATIONS)
  if not config.srs_prior.anchors:
    raise ValueError("config.srs_prior.anchors is empty; give at least one of 'train', 'user'.")
  for a in config.srs_prior.anchors:
    checks.choice("config.srs_prior.anchors entry", a, srs_prior.ANCHORS)
  checks.positive_int("config.srs_prior.fit_samples", config.srs_prior.fit_samples)
  for f in ("num_test", "batch_size", "num_samples", "n_streams", "unseen_num_test", "bound_samples"):
    checks.positive_int(f"config.eval.{f}", config.eval[f])
  if config.eval.n_streams > config.data.n_ue:
    raise ValueError(f"config.eval.n_streams={config.eval.n_streams} must be at most config.data.n_ue="
                     f"{config.data.n_ue} (streams per user).")
  noniden_srs_eval.generation(config)
  hops = checks.positive_int("config.srs.num_hops", config.srs.num_hops)
  if config.data.n_prb % hops:
    raise ValueError(f"config.srs.num_hops={hops} does not divide config.data.n_prb={config.data.n_prb}: a hop would "
                     "sound a fraction of a PRB; choose a divisor (e.g. 4).")
  lo, hi = config.srs.snr_db_range
  if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
    raise ValueError(f"config.srs.snr_db_range={tuple(config.srs.snr_db_range)} must be finite (low, high) dB with "
                     "low <= high.")
  for spec in config.eval.unseen:
    noniden_srs_eval.parse_unseen(spec, config)
  for f in ("num_train", "num_test"):
    checks.positive_int(f"config.eval.built_data.{f}", config.eval.built_data[f])
  bad = [v for v in config.eval.speeds if not (isinstance(v, (int, float)) and np.isfinite(v) and v >= 0)]
  if bad:
    raise ValueError(f"config.eval.speeds={tuple(config.eval.speeds)} holds {bad}: every UT speed must be a finite "
                     "number of km/h >= 0.")
  if config.eval.perception_results and not os.path.isdir(config.eval.perception_results):
    raise ValueError(f"config.eval.perception_results={config.eval.perception_results!r} is not a directory; give "
                     "the workdir of a perception run at the same scale, or '' to leave its learned rows out.")
  held = config.data.get("held_out", 0)
  if isinstance(held, bool) or not isinstance(held, int) or held < 0:
    raise ValueError(f"config.data.held_out={held!r} must be an integer >= 0.")
  prior_view = _prior_config(config)
  with common.field("config.model / config.train / config.anchor"):
    noniden.check_training_times(prior_view, "prior", noniden.schedule(prior_view))
    for f in ("batch_size", "num_epochs", "test_loss_samples"):
      checks.positive_int(f"config.train.{f}", config.train[f])


def _prior_config(config):
  """The prior model's view of the config in the non-identical experiment's layout (one model, ``prior``)."""
  c = config.copy_and_resolve_references()
  with c.unlocked():
    c.models = {"prior": c.model}
  return c


def _interleave(parts: list) -> np.ndarray:
  """Histories ``[n_s, n_ue, ...]`` of several scenarios, interleaved history by history (the first of each, then
  the second of each, ...; a longer one's tail last) and cut into rows: every prefix holds all scenarios alike,
  so the anchor's fit on the first rows and the test loss on the first test rows see every scenario."""
  n = min(p.shape[0] for p in parts)
  head = np.stack([p[:n] for p in parts], axis=1).reshape((-1,) + parts[0].shape[1:])
  return srs_prior.to_rows(np.concatenate([head] + [p[n:] for p in parts]))


def training_rows(config, datasets: dict) -> data.ArrayDataset:
  """Every UE antenna's target of each scenario's training histories (but the ``config.data.held_out`` tail) as
  the training split, and of the first test histories as the test split (enough for ``test_loss_samples`` rows),
  the scenarios interleaved (:func:`_interleave`)."""
  held = config.data.get("held_out", 0)
  per = -(-config.train.test_loss_samples // (len(datasets) * config.data.n_ue))
  train = _interleave([ds.load("train")["target"][:ds.size("train") - held] for ds in datasets.values()])
  test = _interleave([ds.load("test")["target"][:per] for ds in datasets.values()])
  return data.ArrayDataset({"train": {"h": train}, "test": {"h": test}},
                           path=" + ".join(ds.path for ds in datasets.values()))


def check_training_data(model_dir: str, info: dict):
  """Refuse to resume (or reuse) a prior trained on other data: ``info`` (scenarios, datasets, held-out count,
  rows) is recorded in ``model_dir/data.json`` on the first run and must match on every rerun."""
  from jaxchan import files
  path = os.path.join(model_dir, "data.json")
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    if old != info:
      diff = {k: (old.get(k), info.get(k)) for k in set(old) | set(info) if old.get(k) != info.get(k)}
      raise ValueError(f"{model_dir} holds a prior trained on other data ({diff}, recorded -> asked); use another "
                       "--workdir, or the config that trained it.")
  elif common.is_main_process():
    os.makedirs(model_dir, exist_ok=True)
    files.atomic_write_json(path, info)


#: The perception config fields that decide which observations its evaluation drew; a perception run whose rows
#: join this table must agree on all of them.
SHARED_FIELDS = ("seed", "data.bs_antennas", "data.n_prb", "data.n_occ", "srs.num_hops", "srs.snr_db_range",
                 "eval.num_test", "eval.batch_size", "eval.num_samples", "eval.n_streams", "eval.dl_snr_offset_db")


def _get(tree: dict, dotted: str):
  for k in dotted.split("."):
    tree = tree.get(k) if isinstance(tree, dict) else None
  return tree


def perception_rows(config, scenario: str) -> dict | None:
  """The learned rows (``table2`` NMSE, ``table3`` SE) and DM training time of a perception run at the same scale,
  from the ``results.json`` under ``config.eval.perception_results`` that holds ``scenario``; None when not given."""
  root = config.eval.perception_results
  if not root:
    return None
  for path in sorted(glob.glob(os.path.join(root, "results.json")) + glob.glob(os.path.join(root, "*", "results.json"))):
    with open(path) as f:
      res = json.load(f)
    sc = res.get("scenarios", {}).get(scenario)
    if sc and "eval" in sc:
      mine = json.loads(config.to_json())
      mine["train"] = {"val_samples": config.data.get("held_out", 0)}
      fields = SHARED_FIELDS + ("train.val_samples",)
      bad = {f: (_get(res.get("config", {}), f), _get(mine, f)) for f in fields
             if json.dumps(_get(res.get("config", {}), f)) != json.dumps(_get(mine, f))}
      if bad:
        raise ValueError(f"config.eval.perception_results: {path} was run with other settings than this config "
                         f"({bad}, that run -> this one); its observations differ. Give a perception run at the same "
                         "scale, or ''.")
      dm = sc.get("training", {}).get("dm", [])
      dm_seconds = sum(r.get("seconds", 0.0) for r in (dm.get("history", []) if isinstance(dm, dict) else dm))
      return {"path": path, "table2": sc["eval"]["table2"], "table3": sc["eval"]["table3"],
              "num_test": sc["eval"]["num_test"], "dm_train_seconds": dm_seconds, "config": res.get("config", {})}
  raise ValueError(f"config.eval.perception_results={root!r} holds no results.json with scenario {scenario!r}; run "
                   f"python run.py --config=configs/perception.py:... --workdir={root} first, or give ''.")


def _innovation(config, den, train: dict, rho, tag: str, log) -> tuple[str, dict]:
  """The reliability map's innovation kind: the config's, or (``"fit"``) the one whose per-user anchor alone has
  the lowest one-shot NMSE on the first ``config.srs_prior.fit_samples`` histories of ``train``; and the fit."""
  if config.srs_prior.innovation != "fit":
    return config.srs_prior.innovation, {}
  m = min(config.srs_prior.fit_samples, train["history"].shape[0])
  fit = noniden_srs_eval.innovation_nmse(config, den, train["history"][:m], train["target"][:m], rho,
                                         srs_prior.INNOVATIONS, key_tag=tag)
  best = min(fit, key=fit.get)
  log(f"  innovation fitted on {m} training histories: {best} (one-shot NMSE of the anchor alone, dB: "
      + ", ".join(f"{k} {v:.2f}" for k, v in fit.items()) + ")")
  return best, fit


def velocity_bound(config, pcfg, den, params, rows, log) -> dict:
  """The prior's test loss against the Gaussian bound on the same draws (:func:`noniden_eval.velocity_bounds`:
  the training rows' sample covariance, the model's tau pattern, ``config.eval.bound_samples`` tau maps)."""
  from jaxchan import lmmse
  from jaxchan.experiments import noniden_eval
  view = pcfg.copy_and_resolve_references()
  with view.unlocked():
    view.data.n_bs, view.data.n_freq = rows.shape("h")
  n = min(config.anchor.train_samples, rows.size("train"))
  _, cov = lmmse.sample_moments(jnp.asarray(rows.read("train", 0, n)["h"]))
  out = noniden_eval.velocity_bounds(view, {"prior": (den, params, pcfg.models.prior)}, cov,
                                     jnp.asarray(rows.load("test")["h"]), common.key(config, "noniden_srs/bound"),
                                     log=log)["prior"]
  log(f"prior: velocity loss {out['model_loss']:.4f} against the Gaussian bound {out['paired_bound']:.4f} on the same "
      f"draws ({out['model_minus_bound']:+.4f} +- {out['model_minus_bound_sem']:.4f})"
      + (f"; the anchor alone {out['anchor_loss']:.4f}" if "anchor_loss" in out else ""))
  return out


def _built_path(config, preset: str, **fields) -> tuple[str, dict]:
  """Path and generation config of a dataset the evaluation builds: ``preset`` at ``config.eval.built_data``'s
  size with ``fields`` overridden (:func:`common.ensure_generated` builds it once and checks it after)."""
  from datagen import presets
  bd = config.eval.built_data
  cfg = presets.get(preset, "tiny", num_train=bd.num_train, num_test=bd.num_test, seed=config.seed, **fields)
  name = "_".join(f"{k}{v:g}" for k, v in fields.items())
  return os.path.join(bd.data_dir, f"{preset}_{name}_{bd.num_train}_{bd.num_test}_s{config.seed}.h5"), cfg


def _on_built(config, model: noniden_srs_eval.PriorModel, path: str, setting, *, refit: bool, key_tag: str, desc: str,
              log) -> dict:
  """The prior on a built dataset's test histories under ``setting``: the age correlation is fitted on its
  training histories (a closed-form statistic, not training), the innovation kind too when ``refit``; the model is
  not retrained."""
  with data.Dataset(path, kind="srs_prediction") as full:
    n_bs = perception.n_bs_used(config)
    ds = data.BSAntennaSubset(full, n_bs) if n_bs != full.shape("target")[1] else full
    train, test = ds.load("train"), ds.load("test")
  rho = np.asarray(gaussian_predictor.fit_age_correlation(train["history"], train["target"]))
  innovation, fit = (_innovation(config, model.den, train, rho, f"{key_tag}/fit", log) if refit
                     else (model.innovation, {}))
  out = noniden_srs_eval.evaluate(config, model._replace(rho=rho, innovation=innovation), test, setting,
                                  num_test=config.eval.unseen_num_test, key_tag=key_tag, log=log, desc=desc)
  return dict(out, dataset=path, innovation=innovation, innovation_fit=fit,
              age_correlation=[[float(r.real), float(r.imag)] for r in rho])


def _speed(config, model: noniden_srs_eval.PriorModel, speed: float, log) -> dict:
  """The prior on the mobility sweep's dataset at ``speed`` km/h (built once if missing), innovation refitted."""
  import configs
  mcfg = configs.get("mobility")
  with mcfg.unlocked():
    mcfg.seed, mcfg.progress = config.seed, config.progress
    bd = config.eval.built_data
    mcfg.num_train, mcfg.num_test, mcfg.data_dir = bd.num_train, bd.num_test, bd.data_dir
  path = mobility.ensure_dataset(mcfg, speed, log=log)
  out = _on_built(config, model, path, noniden_srs_eval.base_setting(config), refit=True,
                  key_tag=f"noniden_srs/speed/{speed:g}", desc=f"{speed:g} km/h", log=log)
  return dict(out, speed_kmh=float(speed))


def check_longer_history_source(config, datasets: dict) -> None:
  """Refuse, before any work, an ``occasions:N`` setting beyond a scenario's dataset when that dataset was not
  generated from the scenario's datagen preset: the longer history is built from that preset, so its rows would
  describe other channels than the ones the job was given (e.g. imported measurements) under the same scenario."""
  import h5py
  longer = [spec for spec in config.eval.unseen
            if noniden_srs_eval.needs_longer_history(noniden_srs_eval.parse_unseen(spec, config), config)]
  if not longer:
    return
  for scenario, ds in datasets.items():
    with h5py.File(ds.path, "r") as f:
      recorded = json.loads(f.attrs["config_json"]).get("preset") if "config_json" in f.attrs else None
    if recorded != scenario:
      source = f"datagen preset {recorded!r}" if recorded else "no datagen preset (imported data)"
      raise ValueError(
          f"config.eval.unseen {longer} need(s) more SRS occasions than {ds.path!r} holds "
          f"(config.data.n_occ={config.data.n_occ}); the job builds them from the {scenario!r} datagen preset, but "
          f"that file records {source}, so the longer history would be other channels than yours. Drop "
          f"{longer} from config.eval.unseen, or evaluate a file of your own with that many occasions "
          "(config.data.path and config.data.n_occ).")


def _longer_history(config, model: noniden_srs_eval.PriorModel, scenario: str, spec: str, setting, log) -> dict:
  """An ``occasions:N`` setting beyond the scenario's dataset: the scenario's preset built with N occasions (the
  same channel model, speeds and sounding period, a longer history), the scenario's innovation kind."""
  path, cfg = _built_path(config, scenario, num_occasions=setting.occasions)
  common.ensure_generated(path, cfg, progress=config.progress, log=log)
  return _on_built(config, model, path, setting, refit=False, key_tag=f"noniden_srs/unseen/{spec}", desc=spec,
                   log=log)


def run(config, workdir: str) -> dict:
  from jaxchan.experiments import noniden_srs_report

  started = time.time()
  validate(config)
  os.makedirs(workdir, exist_ok=True)
  log = common.log
  percs = {s: perception_rows(config, s) for s in config.scenarios}   # a wrong run is refused before any work
  datasets = {s: perception.open_scenario(config, s, log=log) for s in config.scenarios}
  try:
    check_longer_history_source(config, datasets)
    rows = training_rows(config, datasets)
    check_training_data(os.path.join(workdir, "models", "prior"),
                        {"scenarios": list(config.scenarios), "datasets": [ds.path for ds in datasets.values()],
                         "held_out": config.data.get("held_out", 0), "rows": rows.size("train")})
    pcfg = _prior_config(config)
    prior = noniden.fit_prior(pcfg, rows, "kronecker", log=log)
    train_started = time.time()
    den, params, history = noniden.train_one("prior", pcfg.models.prior, pcfg, rows, workdir, log=log,
                                             label="prior (SRS)", prior=prior)
    train_seconds = sum(r.get("seconds", 0.0) for r in history)
    log(f"prior: {rows.size('train')} training rows, {len(history)} epochs, {train_seconds:.0f} s of training "
        f"({time.time() - train_started:.0f} s in this process)")
    scen, speeds = {}, {}
    summary = {"training": history, "train_seconds": train_seconds, "rows": rows.size("train"), "anchor": den.anchor,
               "tau_pattern": pcfg.models.prior.tau_pattern,
               "velocity_bound": velocity_bound(config, pcfg, den, params, rows, log)}

    def write():   # after every scenario, so a long evaluation leaves its finished part
      results = dict(config=json.loads(config.to_json()), device=str(jax.devices()[0]), prior=summary,
                     scenarios=scen, speeds=speeds)
      common.write_results(workdir, results, noniden_srs_report.render, started=started)
      return results

    for s, ds in datasets.items():
      log(f"{s}:")
      n_fit = ds.size("train") - config.data.get("held_out", 0)
      train, test = ds.load("train"), ds.load("test")
      # The perception evaluation's own fit (the same training histories, none of the held-out ones).
      rho = perception_setup.fit_age_correlation(ds, None, max_samples=min(n_fit, perception_setup.AGE_FIT_SAMPLES))
      innovation, fit = _innovation(config, den, {k: v[:n_fit] for k, v in train.items()}, rho,
                                    f"noniden_srs/fit/{s}", log)
      model = noniden_srs_eval.PriorModel(den, params, rho, innovation)
      main = noniden_srs_eval.evaluate(config, model, test, noniden_srs_eval.base_setting(config),
                                       num_test=config.eval.num_test, key_tag="perception/eval", log=log, desc="main")
      unseen = {}
      for spec in config.eval.unseen:
        setting = noniden_srs_eval.parse_unseen(spec, config)
        if noniden_srs_eval.needs_longer_history(setting, config):
          unseen[spec] = _longer_history(config, model, s, spec, setting, log)
        else:
          unseen[spec] = noniden_srs_eval.evaluate(config, model, test, setting, num_test=config.eval.unseen_num_test,
                                                   key_tag=f"noniden_srs/unseen/{spec}", log=log, desc=spec)
      last_model = model
      scen[s] = {"dataset": ds.path, "age_correlation": [[float(r.real), float(r.imag)] for r in rho],
                 "innovation": innovation, "innovation_fit": fit, "main": main, "unseen": unseen,
                 "perception": percs[s]}
      write()
    for v in config.eval.speeds:
      speeds[f"{v:g}"] = _speed(config, last_model, v, log)
    results = write()
  finally:
    for ds in datasets.values():
      ds.close()
  return results
