"""Perception-distortion throughput: training, K = 16 posterior sampling and Bayesian precoding.

  python -m benchmarks.perception_bench [--size=paper|quick] [--out=FILE.json]

Models, shapes and schedules come from ``configs/perception.py`` itself: ``paper`` is the
default config (4 SRS occasions, 4 UE x 32 BS antennas, 52 PRBs; d_model 128, 4 heads,
4 + 4 layers, a token per (UE antenna, PRB, time) cell, T = 1000); ``quick`` the ``:quick``
variant (the first 16 BS antennas, 2 + 2 layers, a token per (PRB, time), T = 100).

* training: one SL step and one DM step (SRS observation, forward, backward,
  Adam), batch 64;
* posterior sampling: K = 16 samples for each of ``B`` observations, the full
  reverse loop of ``T`` steps (encoder once, decoder ``T`` times on ``K B``);
* few-step posterior sampling: the same K = 16 samples with DPM-Solver++(2M) at 10
  and 5 network calls (``jaxchan.ddpm_solvers``), as a speed-up over the full chain
  measured in the same run, and the latency of one observation (K = 16) by each;
* Bayesian precoding: the expected Gramian of K = 16 samples and its
  eigendecomposition, per PRB, for a batch of observations (eq. 28); and the same
  precoder by subspace iteration (``precoding.subspace_precoder``), as a speed-up
  over ``eigh`` in the same run, on white samples (the slowest case for it) and on
  posterior-like samples (K = 16 draws sharing 3 beams per observation), at the size's BS array and at 32.

FLOPs: XLA's own cost analysis of the compiled, loop-free pieces (a training
step; one encoder call plus one decoder call, the latter times ``T``; the
Gramian), i.e. the real arithmetic of every dot and element-wise op. XLA does
not count inside the eigensolver's custom call, so the eigendecomposition is
counted by convention as ``36 n^3`` real FLOPs per ``n x n`` Hermitian matrix
(the ``9 n^3`` of the symmetric QR algorithm with vectors, Golub & Van Loan
8.3, times 4 for complex arithmetic). The peak is a float32 2048^3 matmul timed
in the same run.
"""

import argparse
import functools
import json
import os
import platform

import jax
import jax.numpy as jnp

from benchmarks.common import matmul_peak, timeit
from jaxchan import conventions, precoding, prediction, srs, train
from jaxchan.ddpm_solvers import Solver
from jaxchan.experiments import perception

SIZES = ("paper", "quick")


def _config(size):
  import configs
  if size not in SIZES:
    raise ValueError(f"size={size!r}; choose one of {SIZES}.")
  return configs.get("perception:quick" if size == "quick" else "perception")


def _shape(cfg) -> dict:
  d = cfg.data
  return dict(n_occ=d.n_occ, n_ue=d.n_ue, n_bs=perception.n_bs_used(cfg), n_prb=d.n_prb)


def xla_flops(fn, *args) -> float:
  """Real FLOPs of ``jax.jit(fn)(*args)`` by XLA's cost analysis (loop bodies count once)."""
  cost = jax.jit(fn).lower(*args).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", 0.0))


def _batch(shape, B, seed=0):
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  d = shape
  return dict(history=conventions.standard_normal(k1, (B, d["n_occ"], d["n_ue"], d["n_bs"], d["n_prb"])),
              target=conventions.standard_normal(k2, (B, d["n_ue"], d["n_bs"], d["n_prb"])))


def run(size="paper", train_batch=64, sample_batch=None, K=16, precode_batch=256, peak=None) -> dict:
  cfg = _config(size)
  SHAPE = _shape(cfg)
  T = cfg.dm.T
  sample_batch = sample_batch or (4 if size == "paper" else 16)
  peak = peak or matmul_peak(2048, jnp.float32)
  sch = perception.dm_schedule(cfg)
  out = dict(device=str(jax.devices()[0]), machine=f"{platform.machine()}, {os.cpu_count()} cores", size=size,
             model=dict(cfg.model.to_dict(), T=T, **SHAPE), matmul_peak_gflops=round(peak["flops_per_s"] / 1e9, 1))
  frac = lambda flops, t: round(flops / t / peak["flops_per_s"], 3)  # noqa: E731

  # Training steps.
  batch = _batch(SHAPE, train_batch)
  for use in ("sl", "dm"):
    model = perception.make_model(cfg, use)
    params = perception.init_params(model, jax.random.PRNGKey(0))
    lf = perception.loss_fn(cfg, model, use)
    opt = train.step_decay_adam(1e-4, steps_per_epoch=100, decay_every_epochs=0, decay_factor=1.0)
    step = train.make_train_step(lf, opt)
    state = train.init_state(params, opt, jax.random.PRNGKey(1))
    t = timeit(lambda s, b: step(s, b)[1], state, batch, repeats=3)
    flops = xla_flops(step, state, batch)
    out[f"train_{use}"] = dict(batch=train_batch, step_s=t, samples_per_s=round(train_batch / t, 1),
                               gflops=round(flops / t / 1e9, 1), fraction_of_peak=frac(flops, t))
    if use == "dm":
      dm_model, dm_params = model, params

  # Posterior sampling: K samples per observation, the whole reverse loop.
  sb = _batch(SHAPE, sample_batch, 1)
  o = srs.observe(sb["history"], jax.random.PRNGKey(2))
  sample = jax.jit(lambda p, o, k: prediction.sample_posterior(dm_model, p, o, k, sch, num_samples=K,
                                                               prediction=perception.dm_prediction(cfg)))
  t = timeit(sample, dm_params, o, jax.random.PRNGKey(3), repeats=1, min_time=0.0)
  mem = dm_model.apply(dm_params, o.obs, o.mask, o.noise_var, method="encode")
  memK = jax.tree.map(lambda a: jnp.concatenate([a] * K), mem)
  x = jnp.zeros((K * sample_batch,) + sb["target"].shape[1:], jnp.complex64)
  flops = (xla_flops(lambda p: dm_model.apply(p, o.obs, o.mask, o.noise_var, method="encode"), dm_params)
           + T * xla_flops(lambda p, m, x: dm_model.apply(p, m, x, jnp.full((x.shape[0],), 5), method="decode"),
                           dm_params, memK, x))
  out["posterior_sampling"] = dict(observations=sample_batch, K=K, T=T, run_s=t,
                                   channels_per_s=round(K * sample_batch / t, 2),
                                   observations_per_s=round(sample_batch / t, 3),
                                   gflops=round(flops / t / 1e9, 1), fraction_of_peak=frac(flops, t))

  # Few-step solvers: the same K samples with 10 and 5 network calls; latency of one observation.
  full_cps = K * sample_batch / t
  for spec in ("dpm2m:10", "dpm2m:5"):
    fs = jax.jit(lambda p, o, k, sv=Solver.parse(spec): prediction.sample_posterior(
        dm_model, p, o, k, sch, num_samples=K, prediction=perception.dm_prediction(cfg), solver=sv))
    ts = timeit(fs, dm_params, o, jax.random.PRNGKey(3), repeats=3, min_time=0.0)
    out[f"posterior_sampling_{spec.replace(':', '_')}"] = dict(
        solver=spec, observations=sample_batch, K=K, run_s=ts, channels_per_s=round(K * sample_batch / ts, 2),
        speedup_over_full_chain=round(K * sample_batch / ts / full_cps, 2))
  o1 = jax.tree.map(lambda a: a[:1], o)
  for spec in ("ancestral", "dpm2m:10", "dpm2m:5"):
    f1 = jax.jit(lambda p, o, k, sv=Solver.parse(spec): prediction.sample_posterior(
        dm_model, p, o, k, sch, num_samples=K, prediction=perception.dm_prediction(cfg), solver=sv))
    out[f"latency_one_user_{spec.replace(':', '_')}_s"] = timeit(f1, dm_params, o1, jax.random.PRNGKey(3), repeats=3,
                                                                  min_time=0.0)

  out["srs_prior"] = _srs_prior(size, SHAPE, train_batch, sample_batch, K, out)

  # Bayesian precoding: Gramian of K samples + eigendecomposition per PRB.
  Hs = conventions.standard_normal(jax.random.PRNGKey(4), (K, precode_batch, SHAPE["n_ue"], SHAPE["n_bs"],
                                                           SHAPE["n_prb"]))
  bp = jax.jit(functools.partial(precoding.bayesian_precoder, n_streams=2))
  t = timeit(bp, Hs)
  n, n_eig = SHAPE["n_bs"], precode_batch * SHAPE["n_prb"]
  flops = xla_flops(precoding.gramian, Hs) + 36 * n**3 * n_eig
  out["bayesian_precoding"] = dict(batch=precode_batch, K=K, eigendecompositions=n_eig, run_s=t,
                                   eigendecompositions_per_s=round(n_eig / t, 1),
                                   channels_per_s=round(precode_batch / t, 1),
                                   gflops=round(flops / t / 1e9, 1), fraction_of_peak=frac(flops, t))

  # The same precoder by subspace iteration, against eigh in this run; white and posterior-like samples, at this
  # size's BS array and at the paper's 32 antennas.
  for nb in sorted({n, 32}):
    shape = (K, precode_batch, SHAPE["n_ue"], nb, SHAPE["n_prb"])
    k0, k1, k2, k3 = jax.random.split(jax.random.PRNGKey(5), 4)
    H_white = conventions.standard_normal(k0, shape)
    ang = jax.random.uniform(k1, (precode_batch, 3), minval=-1.0, maxval=1.0)
    steer = jnp.exp(1j * jnp.pi * jnp.arange(nb)[None, None, :] * jnp.sin(ang)[..., None])   # [B, 3, nb]
    gains = conventions.standard_normal(k2, (K, precode_batch, SHAPE["n_ue"], 3, SHAPE["n_prb"]))
    H_post = (jnp.einsum("kbupf,bpi->kbuif", gains, steer.astype(jnp.complex64))
              + 0.1 * conventions.standard_normal(k3, shape))
    eig = jax.jit(functools.partial(precoding.precoder_from_gramian, n_streams=2))
    sub = jax.jit(functools.partial(precoding.subspace_precoder, n_streams=2))
    for name, Hk in (("white", H_white), ("posterior_like", H_post)):
      G = jax.jit(precoding.gramian)(Hk)
      t_eig, t_sub = timeit(eig, G), timeit(sub, G)
      W_e, W_s = eig(G), sub(G)
      cap = lambda W, G=G: jnp.real(jnp.einsum("bisf,bijf,bjsf->bf", jnp.conj(W), G, W))  # noqa: E731
      se = lambda W, H=Hk[0]: float(jnp.mean(precoding.spectral_efficiency(H, W, 10.0)))  # noqa: E731
      out[f"subspace_precoder_{name}_{nb}"] = dict(
          n_bs=nb, gramians=n_eig, eigh_per_s=round(n_eig / t_eig, 1), subspace_per_s=round(n_eig / t_sub, 1),
          speedup=round(t_eig / t_sub, 2),
          max_rel_energy_gap=float(jnp.max(jnp.abs(cap(W_s) - cap(W_e)) / cap(W_e))),
          se_gap_bps_hz=abs(se(W_s) - se(W_e)))
  return out


def _srs_prior(size, shape, train_batch, sample_batch, K, out) -> dict:
  """The non-identical SRS prior (``configs/noniden_srs.py``) against the DM in the same run: a training step on
  rows (one UE antenna each) and the epoch time on the same histories (``n_ue`` rows per history), and K
  posterior samples per observation with the fast solver of both (``dpm2m``, 10 network calls).

  The anchor's CG stops at its tolerance, so its cost depends on the covariance: the training prior has decaying
  eigenvalues (as ``noniden_bench``'s), and the histories are spatially correlated (a per-user covariance far
  from the identity), the realistic and slower case."""
  import numpy as np

  import configs
  from jaxchan import gaussian_prior, noniden, srs_prior
  from jaxchan.experiments import noniden as noniden_exp
  c = configs.get("noniden_srs:quick" if size == "quick" else "noniden_srs")
  pc = noniden_exp.schedule(c)
  n_bs, n_prb, n_ue = shape["n_bs"], shape["n_prb"], shape["n_ue"]
  rng = np.random.default_rng(0)

  def cov(n):
    q, _ = np.linalg.qr(rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n)))
    return (q * np.exp(-0.2 * np.arange(n))) @ q.conj().T

  ca = cov(n_bs)
  prior = gaussian_prior.from_factors(np.zeros((n_bs, n_prb)), ca, cov(n_prb))
  hist = jnp.einsum("mn,bounf->boumf", jnp.asarray(np.linalg.cholesky(ca), jnp.complex64),
                    _batch(shape, sample_batch, 1)["history"])
  o = srs.observe(hist, jax.random.PRNGKey(2))
  den = noniden_exp.make_denoiser(c.model, c, pc, prior)
  rows = conventions.standard_normal(jax.random.PRNGKey(6), (train_batch, n_bs, n_prb))
  params = den.network.init(jax.random.PRNGKey(0), rows[:1], jnp.zeros(rows[:1].shape))
  lf = noniden_exp.loss_fn(den, c.model, c)
  opt = train.step_decay_adam(1e-3, steps_per_epoch=100, decay_every_epochs=0, decay_factor=1.0)
  step = train.make_train_step(lf, opt)
  state = train.init_state(params, opt, jax.random.PRNGKey(1))
  t_step = timeit(lambda s, b: step(s, b)[1], state, rows, repeats=3)
  dm_step = out["train_dm"]["step_s"]
  # The jobs as configured: the prior trains on every scenario's rows at once for its epochs, the DM on one
  # scenario's histories for its own; both per sample at this step's throughput.
  p = _config(size)
  job_ratio = len(c.scenarios) * n_ue * c.train.num_epochs * t_step / (p.train.epochs.dm * dm_step)
  res = dict(train=dict(batch=train_batch, step_s=t_step, rows_per_s=round(train_batch / t_step, 1),
                        epoch_time_ratio_to_dm=round(n_ue * t_step / dm_step, 3),
                        job_training_ratio_to_one_dm=round(job_ratio, 3), prior_epochs=c.train.num_epochs,
                        dm_epochs=p.train.epochs.dm, scenarios=len(c.scenarios)))
  # K samples per observation: per-user anchor, 10 calls of DPM-Solver++(2M), the Bayesian precoder's input.
  rho = jnp.full((o.obs.shape[1],), 0.9, jnp.complex64)   # any correlation: it sets the map, not the cost
  sampler, steps = noniden.Sampler("dpm2m", 1.0), 10

  def sample(p, obs, k):
    cond = srs_prior.condition(den, obs, rho, k, anchor="user", innovation="spatial")
    return srs_prior.posterior_samples(cond, p, k, K, sampler=sampler, num_steps=steps)

  ts = timeit(jax.jit(sample), params, o, jax.random.PRNGKey(3), repeats=3, min_time=0.0)
  dm_fast = out.get("posterior_sampling_dpm2m_10", {})
  res["posterior_sampling_dpm2m_10"] = dict(
      observations=sample_batch, K=K, run_s=ts, channels_per_s=round(K * sample_batch / ts, 2),
      ratio_to_dm_dpm2m_10=round(dm_fast["run_s"] / ts, 3) if dm_fast else None)
  return res


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--size", default="paper", choices=SIZES)
  p.add_argument("--out")
  args = p.parse_args()
  res = run(args.size)
  print(json.dumps(res, indent=2))
  if args.out:
    from jaxchan import files
    files.atomic_write_json(args.out, res)


if __name__ == "__main__":
  main()
