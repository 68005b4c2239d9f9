"""Evaluation of the SRS prior experiment: the perception table's rows and the prior's, on the same test histories
and observations, and the unseen SRS configurations.

Orchestration only: the reliability map, the per-user anchor and sampling are :mod:`jaxchan.srs_prior`, the
Gaussian predictor :mod:`jaxchan.gaussian_predictor`, the precoders :mod:`jaxchan.precoding`. The observation of
test batch ``i`` is drawn with the perception evaluation's key (``perception/eval`` folded with ``i``, then split
as it splits it), so a perception run at the same scale saw the same observations.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxchan import (checks, denoiser, gaussian_predictor, metrics, noniden, precoding, srs, srs_prior,
                     staged_precoding, stepping)
from jaxchan.experiments import common, perception_eval

#: Channel estimates (NMSE) and precoders (SE) of the main table, in display order. ``noniden_<anchor>``: the
#: trained prior with that anchor; ``gauss_user``: the per-user anchor alone (the untrained prior).
CLASSICAL_SE = ("perfect_csi", "srs_baseline", "sample_cov", "gaussian_mean", "gaussian_bayes", "gaussian_bayes_inf")


def methods(anchors) -> tuple:
  """The prior's rows: the per-user anchor alone, then the trained prior with each anchor."""
  return (("gauss_user",) if "user" in anchors else ()) + tuple(f"noniden_{a}" for a in anchors)


class Generation(NamedTuple):
  """How posterior samples are drawn: Algorithm 2's stepping, sampler and step count (from ``config.eval``)."""
  stepping: stepping.Stepping
  sampler: noniden.Sampler
  num_steps: int


def generation(config) -> Generation:
  with common.field("config.eval.stepping / sampler / num_steps"):
    return Generation(stepping.Stepping.parse(config.eval.stepping), noniden.Sampler.parse(config.eval.sampler),
                      checks.positive_int("num_steps", config.eval.num_steps))


class PriorModel(NamedTuple):
  """The trained prior for one scenario: its denoiser and parameters, the age correlation ``rho`` ``[n_occ]`` and
  the reliability map's innovation kind."""
  den: object
  params: object
  rho: np.ndarray
  innovation: str


class SRSSetting(NamedTuple):
  """One SRS configuration: hops per band, the occasions kept (the last ``occasions``; 0: all) and the UL SNR range."""
  num_hops: int
  occasions: int
  snr_db_range: tuple


def base_setting(config) -> SRSSetting:
  return SRSSetting(int(config.srs.num_hops), 0, tuple(float(x) for x in config.srs.snr_db_range))


def parse_unseen(spec: str, config) -> SRSSetting:
  """``"hops:N"``, ``"occasions:N"`` or ``"snr:DB"`` applied to the training configuration (``config.srs``).
  ``occasions`` above ``config.data.n_occ`` asks for a longer history than the scenario's dataset holds
  (:func:`needs_longer_history`)."""
  base = base_setting(config)
  name, _, value = str(spec).partition(":")
  try:
    v = float(value)
  except ValueError:
    v = None
  n_prb, n_occ = config.data.n_prb, config.data.n_occ
  if name == "hops" and v is not None and v == int(v) and v >= 1 and n_prb % int(v) == 0:
    return base._replace(num_hops=int(v))
  if name == "occasions" and v is not None and v == int(v) and v >= 1:
    return base._replace(occasions=int(v))
  if name == "snr" and v is not None and np.isfinite(v):
    return base._replace(snr_db_range=(v, v))
  raise ValueError(f"config.eval.unseen entry {spec!r}: write 'hops:N' (N divides n_prb={n_prb}), 'occasions:N' "
                   f"(N >= 1; above n_occ={n_occ} a dataset with N occasions is built) or 'snr:DB' (a finite UL "
                   "SNR).")


def needs_longer_history(setting: SRSSetting, config) -> bool:
  """Whether ``setting`` keeps more occasions than the scenario's dataset holds (``config.data.n_occ``)."""
  return setting.occasions > config.data.n_occ


def observe(setting: SRSSetting, history, key):
  """The SRS observation of ``history`` under ``setting``."""
  if setting.occasions:
    history = history[:, -setting.occasions:]
  return srs.observe(history, key, num_hops=setting.num_hops, snr_db_range=setting.snr_db_range)


def _zero(x, tau):
  return jnp.zeros_like(x)


def make_eval_batch(config, model: PriorModel, setting: SRSSetting, gen: Generation):
  """``(params, history, target, key) -> {sum name: value}`` of one test batch (sums: ``energy``,
  ``sqerr/<estimate>``, ``se/<precoder>``).

  One jitted program per stage, each holding one chain of dependent LAPACK calls and started when the previous
  one has finished (:mod:`jaxchan.staged_precoding` says why): the observation and the Gaussian predictor (its
  spatial eigendecomposition); each anchor's start (the per-user prior's eigendecomposition) and the Gaussian
  predictor's samples; the one-shot estimates and K samples (networks, no LAPACK); then the staged precoders
  (one SVD call, one eigendecomposition call) and one Cholesky call for every spectral efficiency.
  """
  n_s, K = config.eval.n_streams, config.eval.num_samples
  den, innovation, anchors = model.den, model.innovation, tuple(config.srs_prior.anchors)
  rho_all = jnp.asarray(model.rho, jnp.complex64)
  rho_used = rho_all[-setting.occasions:] if setting.occasions else rho_all
  n_ue = config.data.n_ue

  @jax.jit
  def observe_and_predict(history, key):
    k_obs, k_dm, _ = perception_eval.batch_keys(key)    # the perception evaluation's split (module docstring)
    obs = observe(setting, history, k_obs)
    return obs, gaussian_predictor.predict(obs, rho_used), k_dm

  @jax.jit
  def start(obs, gp, k_dm):
    k_prior = jax.random.fold_in(k_dm, 2)
    conds = {a: srs_prior.condition(den, obs, rho_used, jax.random.fold_in(k_prior, 0), anchor=a,
                                    innovation=innovation) for a in anchors}
    return dict(obs=obs, gp=gp, gauss_samples=gaussian_predictor.sample(gp, jax.random.fold_in(k_dm, 1), K),
                conds=conds, k_samples=jax.random.fold_in(k_prior, 1))

  @jax.jit
  def sample(params, prep):
    est, samples = {}, {}
    for a, cond in prep["conds"].items():
      # The untrained prior (the anchor alone): a zero residual in place of the network, which starts at zero.
      alone = cond._replace(den=cond.den.replace(network=denoiser.FunctionNetwork(_zero)))
      runs = [(f"noniden_{a}", cond, params)] + ([("gauss_user", alone, None)] if a == "user" else [])
      for name, c, p in runs:
        est[name] = srs_prior.from_rows(srs_prior.estimate(c, p), n_ue)
        samples[name] = srs_prior.from_rows(
            srs_prior.posterior_samples(c, p, prep["k_samples"], K, stepping_=gen.stepping, sampler=gen.sampler,
                                        num_steps=gen.num_steps), n_ue)
    return est, samples

  def run(params, history, h, key):
    wait = jax.block_until_ready
    obs, gp, k_dm = wait(observe_and_predict(history, key))
    prep = wait(start(obs, gp, k_dm))
    est_prior, samples = wait(sample(params, prep))
    est = {"srs_baseline": srs.baseline(obs), "gaussian": gp.mean, **est_prior}
    svd_in = {"perfect_csi": h, "srs_baseline": est["srs_baseline"], "gaussian_mean": gp.mean,
              **{f"{name}_mean": e for name, e in est_prior.items()}}
    grams = {"sample_cov": staged_precoding.wideband(srs.history_gramian(obs), h.shape[-1]),
             "gaussian_bayes": precoding.gramian(prep["gauss_samples"]),
             "gaussian_bayes_inf": gaussian_predictor.expected_gramian(gp),
             **{f"{name}_bayes": precoding.gramian(samples[name]) for name in est_prior}}
    W = staged_precoding.precoders(svd_in, grams, n_s)
    dl_snr = metrics.from_db(obs.snr_db + config.eval.dl_snr_offset_db)
    return sums(est, h, wait(staged_precoding.spectral_efficiencies(h, W, dl_snr[None])))

  @jax.jit
  def sums(est, h, se):
    out = {"energy": jnp.sum(jnp.abs(h) ** 2)}
    out.update({f"sqerr/{name}": jnp.sum(jnp.abs(e - h) ** 2) for name, e in est.items()})
    out.update({f"se/{name}": jnp.sum(s) for name, s in se.items()})
    return out

  return run


def evaluate(config, model: PriorModel, test: dict, setting: SRSSetting, *, num_test: int, key_tag: str,
             log=common.log, desc: str = "evaluate") -> dict:
  """NMSE (dB) of every estimate and SE of every precoder over the first ``num_test`` test histories of ``test``
  (``history``, ``target``)."""
  from jaxchan import progress
  histories, targets = test["history"], test["target"]
  n = min(num_test, histories.shape[0])
  run = make_eval_batch(config, model, setting, generation(config))
  key = common.key(config, key_tag)
  bs = config.eval.batch_size
  sums = {}
  for i in progress.bar(range(0, n, bs), desc=desc, disable=not config.progress, leave=False):
    j = min(i + bs, n)
    out = run(model.params, jnp.asarray(histories[i:j]), jnp.asarray(targets[i:j]),
              jax.random.fold_in(key, i))
    for k, v in out.items():
      sums[k] = sums.get(k, 0.0) + float(v)
  nmse = {k.split("/", 1)[1]: 10 * float(np.log10(v / sums["energy"])) for k, v in sums.items() if k.startswith("sqerr/")}
  se = {k.split("/", 1)[1]: v / n for k, v in sums.items() if k.startswith("se/")}
  log(f"  {desc}: NMSE dB " + ", ".join(f"{k} {v:.2f}" for k, v in nmse.items()))
  log(f"  {desc}: SE " + ", ".join(f"{k} {v:.3f}" for k, v in se.items()))
  return {"num_test": n, "setting": setting._asdict(), "nmse_db": nmse, "se": se}


def innovation_nmse(config, den, histories, targets, rho, kinds, *, key_tag: str) -> dict:
  """One-shot NMSE (dB) of the per-user anchor alone for each innovation kind, on training histories: the fit of
  ``config.srs_prior.innovation = "fit"`` (no network involved, so it can run before training)."""
  setting = base_setting(config)
  key = common.key(config, key_tag)

  @functools.partial(jax.jit, static_argnames="kind")
  def sqerr(history, h, k, kind):
    k_obs, k_map = jax.random.split(k)
    obs = observe(setting, history, k_obs)
    cond = srs_prior.condition(den, obs, rho, k_map, anchor="user", innovation=kind)
    est = srs_prior.from_rows(cond.den.with_solver(*denoiser.POINT_SOLVER).gaussian_denoised(cond.start.g0,
                                                                                              cond.start.tau0),
                              h.shape[1])
    return jnp.sum(jnp.abs(est - h) ** 2), jnp.sum(jnp.abs(h) ** 2)

  out = {}
  bs = config.eval.batch_size
  for kind in kinds:
    err = energy = 0.0
    for i in range(0, histories.shape[0], bs):
      e, p = sqerr(jnp.asarray(histories[i:i + bs]), jnp.asarray(targets[i:i + bs]), jax.random.fold_in(key, i),
                   kind)
      err, energy = err + float(e), energy + float(p)
    out[kind] = 10 * float(np.log10(err / energy))
  return out
