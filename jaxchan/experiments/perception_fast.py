"""Fast posterior sampling in the perception experiment: progressive distillation of the trained DM
(:mod:`jaxchan.distill`) and the study of SE and one-sample NMSE against network calls (Sec. "Fast posterior
sampling and precoding" in docs/fast_sampling.md).

* :func:`distill` trains one student per stage of ``config.distill.steps`` in ``WORKDIR/SCENARIO/models/
  dm_distill_<N>`` through the shared training loop (checkpoints, resume, logs), each starting from its teacher;
  the first teacher is this run's DM, or the trained DM folder ``config.distill.teacher``.
* :func:`evaluate` draws K posterior samples per test observation with every sampler of ``config.eval.solvers``
  and with each student (DDIM at its N), and records the K-sample Bayesian precoder's SE and one sample's NMSE.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxchan import distill as distill_kernels
from jaxchan import metrics, precoding, prediction, srs, train
from jaxchan.ddpm_solvers import Solver
from jaxchan.experiments import common
from jaxchan.experiments import perception_setup as exp


def check(config) -> None:
  """The fast-sampling fields' errors (called by :func:`jaxchan.experiments.perception.validate`)."""
  sch = exp.dm_schedule(config)
  with common.field("config.eval.sampler"):
    Solver.parse(config.eval.get("sampler", "ancestral")).steps(sch)
  with common.field("config.eval.solvers"):
    for spec in config.eval.get("solvers", ()):
      Solver.parse(spec).steps(sch)
  dcfg = config.get("distill")
  if dcfg is None or not dcfg.enabled:
    return
  with common.field("config.distill.steps"):
    distill_kernels.check_stages(dcfg.steps, sch)
  checks_epochs = dcfg.epochs
  if not isinstance(checks_epochs, int) or checks_epochs < 1:
    raise ValueError(f"config.distill.epochs={checks_epochs!r} must be a positive integer (epochs per stage).")
  if dcfg.teacher and len(config.scenarios) > 1:
    raise ValueError(f"config.distill.teacher={dcfg.teacher!r} is one scenario's DM but config.scenarios="
                     f"{tuple(config.scenarios)} has several; select the teacher's scenario (e.g. :high_mobility).")
  if dcfg.teacher:
    meta = os.path.join(dcfg.teacher, "model.json")
    ckpt = os.path.join(dcfg.teacher, "checkpoints")
    if not (os.path.exists(meta) and os.path.isdir(ckpt) and os.listdir(ckpt)):
      raise ValueError(f"config.distill.teacher={dcfg.teacher!r} holds no trained DM (model.json and checkpoints); "
                       "train one first with `python run.py --config=configs/perception.py:quick` (it writes "
                       "WORKDIR/SCENARIO/models/dm), then point config.distill.teacher at that folder.")
  elif "dm" not in config.train.models:
    raise ValueError("config.distill.enabled needs a teacher: keep 'dm' in config.train.models or set "
                     "config.distill.teacher to a trained DM folder (WORKDIR/SCENARIO/models/dm).")
  if float(config.eval.guidance) != 1.0:
    raise ValueError(f"config.eval.guidance={config.eval.guidance} but distilled students sample the conditional "
                     "model (w = 1); set config.eval.guidance=1.0 or config.distill.enabled=False.")


def distill(config, scenario: str, teacher, ds, models_dir: str, log=common.log) -> dict:
  """``{N: (model, params)}``: one student per stage, trained from the previous (resumable)."""
  dcfg = config.distill
  sch = exp.dm_schedule(config)
  base = dict(use="dm", model=config.model.to_dict(), data=config.data.to_dict(), srs=config.srs.to_dict(),
              dm=config.dm.to_dict())
  if dcfg.teacher:
    model, params, tcfg_ = exp.load_trained(dcfg.teacher)
    base.update({k: tcfg_[k].to_dict() for k in ("model", "data", "srs", "dm")})   # the teacher's architecture
  else:
    model, params = teacher
  # A student keeps its teacher's anchor (the Gaussian term and its fitted age correlation live in the model).
  base.update(anchor=model.anchor, age_corr=[list(p) for p in model.age_corr] or None, cov_floor=model.cov_floor)
  scfg = exp.srs_cfg(config)
  students = {}
  tcfg = config.train.copy_and_resolve_references()
  with tcfg.unlocked():
    tcfg.lr = dcfg.lr
    tcfg.decay_every_epochs = 0
  for n in dcfg.steps:
    def loss(p, batch, key, teacher_params=params, n=n):
      k_obs, k = jax.random.split(key)
      obs = srs.observe(batch["history"], k_obs, num_hops=scfg.num_hops, snr_db_range=scfg.snr_db_range)
      return distill_kernels.objective(model, p, teacher_params, batch["target"], obs, k, distill_kernels.Stage(
          sch, n, prediction=exp.dm_prediction(config), clip_x0=config.dm.clip_x0 or None))

    meta = dict(base, distilled_steps=n)
    job = common.TrainJob(f"{scenario}/distill {2 * n} -> {n} steps", params, loss, exp.to_batch,
                          os.path.join(models_dir, f"dm_distill_{n}"), meta)
    params, _ = common.train_model(job, ds, tcfg, num_epochs=dcfg.epochs,
                                   key=common.key(config, f"perception/distill/{n}"), seed=config.seed,
                                   report=train.Report(progress=config.progress, log=log))
    students[n] = (model, params)
  return students


def evaluate(config, dm, students: dict, ds, log=common.log) -> dict:
  """SE of the K-sample Bayesian precoder and NMSE of one sample, per sampler, on ``config.eval.fast_num_test``."""
  K, n_s = config.eval.num_samples, config.eval.n_streams
  sch = exp.dm_schedule(config)
  scfg = exp.srs_cfg(config)
  n = min(config.eval.get("fast_num_test", config.eval.num_test), ds.size("test"))
  test = ds.load("test")
  hist_all, h_all = jnp.asarray(test["history"][:n]), jnp.asarray(test["target"][:n])
  runs = [(spec, dm) for spec in config.eval.solvers] + [(f"distilled:{m}", st) for m, st in students.items()]
  rows = []
  for spec, (model, params) in runs:
    solver = Solver("ddim", int(spec.split(":")[1])) if spec.startswith("distilled") else Solver.parse(spec)

    @functools.partial(jax.jit, static_argnums=())
    def batch_sums(p, hist, h, key, model=model, solver=solver):
      k_obs, k_s = jax.random.split(key)
      obs = srs.observe(hist, k_obs, num_hops=scfg.num_hops, snr_db_range=scfg.snr_db_range)
      # The full chain with the DM's own settings; the solvers with the same guidance.
      kw = exp.sampler_kw(config, str(solver))
      s = prediction.sample_posterior(model, p, obs, k_s, sch, num_samples=K, guidance=float(config.eval.guidance),
                                      allow_extrapolation=config.eval.allow_extrapolation, **kw)
      rho = metrics.from_db(obs.snr_db + config.eval.dl_snr_offset_db)
      se = jnp.sum(precoding.spectral_efficiency(h, precoding.bayesian_precoder(s, n_s), rho))
      return se, jnp.sum(jnp.abs(s[0] - h) ** 2), jnp.sum(jnp.abs(h) ** 2)

    se = err = energy = 0.0
    key = common.key(config, "perception/fast_sampling")       # the same observations for every sampler
    for i in range(0, n, config.eval.batch_size):
      out = batch_sums(params, hist_all[i:i + config.eval.batch_size], h_all[i:i + config.eval.batch_size],
                       jax.random.fold_in(key, i))
      se, err, energy = se + float(out[0]), err + float(out[1]), energy + float(out[2])
    calls = solver.steps(sch)
    rows.append(dict(sampler=spec, network_calls=calls, se_bayes=se / n,
                     nmse_one_sample_db=float(10 * np.log10(err / energy))))
    log(f"fast sampling {spec}: {calls} calls, K = {K} Bayesian SE {se / n:.3f} bps/Hz, one-sample NMSE "
        f"{rows[-1]['nmse_one_sample_db']:.2f} dB")
  return {"num_test": n, "K": K, "rows": rows}
