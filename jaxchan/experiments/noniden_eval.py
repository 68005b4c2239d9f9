"""Evaluation of the non-identical experiment: generation NMSE per step, one-shot estimates, baselines, bounds.

Pure orchestration of the kernels (:mod:`jaxchan.noniden`, :mod:`jaxchan.lmmse`); the
tables and figures of the results are in :mod:`jaxchan.experiments.noniden_report`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxchan import conventions, denoiser, lmmse, metrics, noise_patterns, noniden, schedules, tau_patterns
from jaxchan.experiments import common
from jaxchan.experiments import noniden_setup as exp


@functools.partial(jax.jit, static_argnames=("run",))
def _per_step_sqerr(den, params, g0, tau0, h, key, *, run: noniden.Generation):
  """Squared error summed over the batch after each generation step, ``[num_steps]``.

  ``den`` (a :class:`~jaxchan.denoiser.VelocityDenoiser`) is a pytree whose settings are static, so models of
  one architecture share compiled code and a sweep compiles each stepping x sampler once.
  """
  _, traj = noniden.generate_trajectory(den.bind(params), noniden.Start(g0, tau0), key, den.schedule,
                                        stepping=run.stepping, sampler=run.sampler, num_steps=run.num_steps,
                                        draw=noniden.draw_for(den, params, run.sampler))
  return jnp.sum(jnp.abs(traj.g - h[None]) ** 2, axis=tuple(range(1, traj.g.ndim)))


def generation_nmse(den, params, h, start, key, *, run: noniden.Generation, batch: int):
  """Dataset-level NMSE (ratio of sums) after each of the ``run.num_steps`` generation steps, ``[num_steps]``.

  ``start``: ``(g0, tau0)``, each ``[N, N_a, N_c]``; ``h``: the true channels ``[N, N_a, N_c]``.
  """
  g0, tau0 = start
  num, den_sum = np.zeros(run.num_steps), 0.0
  for i in range(0, h.shape[0], batch):
    sl = slice(i, i + batch)
    num += np.asarray(_per_step_sqerr(den, params, *common.shard_eval(g0[sl], tau0[sl], h[sl]),
                                      jax.random.fold_in(key, i), run=run))
    den_sum += float(jnp.sum(jnp.abs(h[sl]) ** 2))
  return num / den_sum


@jax.jit
def _one_shot(den, params, g0, tau0):
  return den.point_estimate(params, g0, tau0)


@jax.jit
def _gaussian_one_shot(den, g0, tau0):
  return den.with_solver(*denoiser.POINT_SOLVER).gaussian_denoised(g0, tau0)


def one_shot_nmse(den, params, h, start, *, batch, gaussian_only: bool = False):
  """NMSE of the single denoising step ``D(g0, tau0)`` (no iteration); ``start = (g0, tau0)``.

  ``gaussian_only``: the anchor's Gaussian posterior mean alone (an anchored ``den`` only).
  """
  g0, tau0 = start
  num = den_sum = 0.0
  for i in range(0, h.shape[0], batch):
    sl = slice(i, i + batch)
    est = _gaussian_one_shot(den, g0[sl], tau0[sl]) if gaussian_only else _one_shot(den, params, g0[sl], tau0[sl])
    num += float(jnp.sum(jnp.abs(est - h[sl]) ** 2))
    den_sum += float(jnp.sum(jnp.abs(h[sl]) ** 2))
  return num / den_sum


def combos(config, name, mcfg):
  """``(stepping, sampler, start)`` spec triples evaluated for one model.

  Every model: the first stepping and sampler from its own start (the identical
  baseline: :func:`jaxchan.noniden.identical_start` with uniform steps). Full-grid
  models add every stepping, every sampler, and the ablations of the start: the
  paper's eqs. (15)-(16) start with the default sampler and with each ``eq9``
  sampler (``eq9:0.4`` from the paper's start is the paper as printed).
  """
  if mcfg.placement == "identical":
    return [("tau-uniform", config.eval.samplers[0], "identical")]
  st0, s0, start = config.eval.steppings[0], config.eval.samplers[0], config.eval.start
  out = [(st0, s0, start)]
  if name in config.eval.full_grid_models:
    out += [(st, s0, start) for st in config.eval.steppings[1:]]
    out += [(st0, sp, start) for sp in config.eval.samplers[1:]]
    other = [x for x in noniden.STARTS if x != start][0]
    out += [(st0, sp, other) for sp in config.eval.samplers if sp == s0 or sp.startswith("eq9")]
  return out


def _anchor_loss(den, h0, tau, xi):
  """Velocity loss (eq. 12) of the Gaussian anchor alone, ``v_gauss = alpha E_G[xi | g] - beta E_G[h | g]``."""
  alpha, beta = schedules.alpha_beta(tau, den.schedule)
  s = den.gaussian(alpha * h0 + beta * xi, tau)
  return jnp.mean(jnp.abs(alpha * s.xi_mean - beta * s.h_mean - (alpha * xi - beta * h0)) ** 2)


def velocity_bounds(config, models, cov, h, key, log=common.log) -> dict:
  """Per model: the velocity loss a Gaussian prior with the training covariance reaches on its tau pattern, and the
  model's own loss on the same draws.

  For each of ``config.eval.bound_samples`` tau maps of the model's pattern: the population bound
  (:func:`jaxchan.lmmse.velocity_error`), and, on the first ``config.train.test_loss_samples`` test channels of ``h``
  ``[N, *event]`` with one noise draw, the
  LMMSE velocity estimator's loss (:func:`jaxchan.lmmse.velocity_loss`) and the model's (Algorithm 1's loss) on
  the very same channels, times and noise. ``{name: {"mean", "sem", "paired_bound", "model_loss",
  "model_minus_bound", "model_minus_bound_sem"}}``; the paired difference has none of the spread between tau maps,
  which dominates ``sem``, so it says whether a model is below the Gaussian bound where 16 population draws cannot.
  """
  out = {}
  sch = exp.schedule(config)
  shape = (config.data.n_bs, config.data.n_freq)
  paired = jax.jit(lmmse.velocity_loss)
  h = h[:config.train.test_loss_samples]     # one call of the size the test loss makes
  for i, (name, (den, params, mcfg)) in enumerate(models.items()):
    k_tau, k_xi = jax.random.split(jax.random.fold_in(key, i))
    tau = tau_patterns.sample(k_tau, mcfg.tau_pattern, config.eval.bound_samples, shape,
                              sch.T, tau_min=mcfg.get("tau_min", config.train.tau_min))
    alpha, beta = schedules.alpha_beta(tau, sch)
    e = np.asarray(lmmse.velocity_error(cov, alpha, beta))
    model_loss = jax.jit(lambda p, hh, t, k, den=den: den.loss(p, hh, jnp.broadcast_to(t, hh.shape), k))
    anchor_loss = jax.jit(lambda hh, t, xi, den=den: _anchor_loss(den, hh, jnp.broadcast_to(t, hh.shape), xi))
    lin, mod, anc = [], [], []
    for j in range(tau.shape[0]):
      k = jax.random.fold_in(k_xi, j)
      xi = conventions.standard_normal(k, h.shape, h.dtype)      # the noise den.loss draws from k
      lin.append(float(paired(cov, h, alpha[j], beta[j], xi)))
      mod.append(float(model_loss(params, h, tau[j], k)))
      if den.prior is not None:
        anc.append(float(anchor_loss(h, tau[j], xi)))
    sem = lambda x: float(np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0  # noqa: E731
    diff = np.asarray(mod) - np.asarray(lin)
    out[name] = {"mean": float(e.mean()), "sem": sem(e), "paired_bound": float(np.mean(lin)),
                 "model_loss": float(np.mean(mod)), "model_minus_bound": float(diff.mean()),
                 "model_minus_bound_sem": sem(diff), "channels": int(h.shape[0])}
    if anc:   # where training started: the anchor alone (structured prior, truncated solve) on the same draws
      adiff = np.asarray(anc) - np.asarray(lin)
      out[name].update(anchor_loss=float(np.mean(anc)), anchor_minus_bound=float(adiff.mean()),
                       anchor_minus_bound_sem=sem(adiff))
    log(f"{name}: Gaussian (LMMSE) bound on the velocity loss, {mcfg.tau_pattern} pattern: "
        f"{out[name]['mean']:.4f} ± {out[name]['sem']:.4f}; on {h.shape[0]} test channels with the same "
        f"{tau.shape[0]} tau maps and noise: model {out[name]['model_loss']:.4f}, LMMSE "
        f"{out[name]['paired_bound']:.4f}, difference {out[name]['model_minus_bound']:+.4f} ± "
        f"{out[name]['model_minus_bound_sem']:.4f}" + (
            f"; the anchor alone {out[name]['anchor_loss']:.4f}, difference {out[name]['anchor_minus_bound']:+.4f} "
            f"± {out[name]['anchor_minus_bound_sem']:.4f}" if anc else ""))
  return out


def evaluate(config, models, ds, log=common.log):
  """Generation NMSE per step for every model x pattern x (stepping, sampler, start), with the baselines."""
  sch = exp.schedule(config)
  n = min(config.eval.num_test, ds.size("test"))
  h = jnp.asarray(ds.load("test")["h"][:n])
  out = {"num_test": n, "start": config.eval.start, "raw_start_nmse": {}, "lmmse_nmse": {}, "one_shot_nmse": {},
         "one_shot_nmse_by_start": {}, "rows": []}
  eval_key = common.key(config, "noniden/eval")
  if config.eval.lmmse:
    mu, cov = lmmse.sample_moments(jnp.asarray(ds.load("train")["h"][:config.eval.lmmse_train_samples]))
    lmmse_fn = jax.jit(lmmse.estimate)
    out["velocity_bound"] = velocity_bounds(config, models, cov, h, common.key(config, "noniden/bounds"), log=log)
  for p_i, pattern in enumerate(config.eval.patterns):
    k_obs, k_ident, k_gen = jax.random.split(jax.random.fold_in(eval_key, p_i), 3)
    obs = noise_patterns.observe(h, k_obs, pattern, sch, background=config.eval.background,
                                 snr_db=config.eval.snr_db[pattern], start=config.eval.start)
    starts = {s: noniden.initial_state(obs.h_bar, obs.m, sch, start=s) for s in noniden.STARTS}
    starts["identical"] = noniden.identical_start(obs.h_bar, obs.m, k_ident, sch)
    out["raw_start_nmse"][pattern] = float(metrics.nmse(h, obs.g0))
    if config.eval.lmmse:
      out["lmmse_nmse"][pattern] = float(metrics.nmse(h, lmmse_fn(obs.h_bar, obs.m, mu, cov)))
      log(f"LMMSE {pattern}: NMSE {out['lmmse_nmse'][pattern]:.4f}")
    for name, (den, params, mcfg) in models.items():
      if name not in config.eval.models:
        continue
      if name == config.eval.main_model:
        if den.prior is not None:
          # The anchor alone: the Gaussian posterior mean of the element-wise observation (no network).
          out.setdefault("gaussian_nmse", {})[pattern] = one_shot_nmse(
              den, params, h, starts[config.eval.start], batch=config.eval.batch_size, gaussian_only=True)
          log(f"Gaussian anchor {pattern}: one-shot NMSE {out['gaussian_nmse'][pattern]:.4f}")
        # One denoiser call at the start, D(g0, tau0): the network's jump-to-clean estimate
        # (the CME it approximates), against which the iterative generation can be judged.
        by_start = {s: one_shot_nmse(den, params, h, starts[s], batch=config.eval.batch_size)
                    for s in noniden.STARTS}
        out["one_shot_nmse"][pattern] = by_start[config.eval.start]
        out["one_shot_nmse_by_start"][pattern] = by_start
        log(f"{name} {pattern} one-shot D(g0, tau0): NMSE {by_start[config.eval.start]:.4f} "
            f"({', '.join(f'{s} start {v:.4f}' for s, v in by_start.items())})")
      for st, sp, start in combos(config, name, mcfg):
        curve = generation_nmse(den, params, h, starts[start], k_gen,
                                run=noniden.Generation.parse(st, sp, config.eval.num_steps),
                                batch=config.eval.batch_size)
        out["rows"].append(dict(model=name, pattern=pattern, stepping=st, sampler=sp, start=start,
                                final_nmse=float(curve[-1]), nmse_per_step=curve.tolist()))
        log(f"{name} {pattern} {st} {sp} {start} start: final NMSE {curve[-1]:.4f}")
  return out
