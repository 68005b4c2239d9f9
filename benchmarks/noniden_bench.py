"""Non-identical diffusion throughput: training and generation samples/s and FLOP/s vs the matmul peak.

  python -m benchmarks.noniden_bench [--out=FILE.json]

Paper-size model (5 layers, embedding width 64, column-wise embedding), 32 x 64
channels. Training: batch 64 (one Algorithm 1 step: tau pattern sampling, noising,
forward, backward, Adam). Generation: batch 256, 50 non-identical DDIM steps
(Algorithm 2, tau water-filling, eq. 9). FLOPs are the complex matrix products
the network performs, counted by intercepting every ComplexDense call (8 real
FLOPs per complex multiply-add; backward = 2 x forward): per sample, the MLPs and
the head; once per call, the modulation tables over the T + 1 integer times.
Element-wise work is not counted. The peak is a float32 2048^3 matmul timed in
the same run.
"""

import argparse
import json
import os
import platform

import jax
import jax.numpy as jnp

from benchmarks.common import count_complex_dense_flops, matmul_peak, timeit
from jaxchan import conventions, denoiser, noniden, schedules, tau_patterns, train
from jaxchan.models.mixer import MixerDenoiser

SHAPE = (32, 64)
SCH = schedules.GammaSchedule()   # the paper's T = 100, beta_max = 0.2


def run(train_batch=64, gen_batch=256, num_steps=50, peak=None):
  model = MixerDenoiser(schedule=SCH)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1,) + SHAPE, jnp.complex64), jnp.zeros((1,) + SHAPE))
  peak = peak or matmul_peak(2048, jnp.float32)
  peak_c = matmul_peak(1024, jnp.complex64)

  def fwd_flops(b):
    x = jnp.zeros((b,) + SHAPE, jnp.complex64)
    return count_complex_dense_flops(model.apply, params, x, jnp.zeros((b,) + SHAPE))

  den = denoiser.make(model, SCH)

  # Training.
  opt = train.step_decay_adam(1e-3, steps_per_epoch=100, decay_every_epochs=0, decay_factor=0.5)

  def loss_fn(p, h, key):
    k1, k2 = jax.random.split(key)
    tau = tau_patterns.sample(k1, "all", h.shape[0], SHAPE, SCH.T)
    return den.loss(p, h, tau, k2)

  step = train.make_train_step(loss_fn, opt)
  state = train.init_state(params, opt, jax.random.PRNGKey(1))
  h = conventions.standard_normal(jax.random.PRNGKey(2), (train_batch,) + SHAPE)
  t_train = timeit(lambda s, b: step(s, b)[1], state, h)
  train_flops = 3 * fwd_flops(train_batch)

  # Generation.
  # Parameters are an argument of the compiled program (closed over, they become HLO
  # constants, which XLA:CPU compiles into a slower loop body).
  gen = noniden.make_network_generator(den, num_steps=num_steps)
  g0 = conventions.standard_normal(jax.random.PRNGKey(3), (gen_batch,) + SHAPE)
  tau0 = jax.random.uniform(jax.random.PRNGKey(4), g0.shape, minval=5.0, maxval=100.0)
  t_gen = timeit(gen, params, noniden.Start(g0, tau0), jax.random.PRNGKey(5), repeats=3)
  gen_flops = num_steps * fwd_flops(gen_batch)

  anchor = anchor_cost(model, params, train_batch)

  return dict(
      anchor=anchor,
      device=str(jax.devices()[0]), machine=f"{platform.machine()}, {os.cpu_count()} cores",
      matmul_peak_gflops=round(peak["flops_per_s"] / 1e9, 1),
      complex_matmul_gflops=round(peak_c["flops_per_s"] / 1e9, 1),
      forward_mflop_per_sample=round((fwd_flops(2) - fwd_flops(1)) / 1e6, 2),
      forward_mflop_per_call=round((2 * fwd_flops(1) - fwd_flops(2)) / 1e6, 2),
      train=dict(batch=train_batch, step_s=t_train, samples_per_s=round(train_batch / t_train, 1),
                 gflops=round(train_flops / t_train / 1e9, 1),
                 fraction_of_peak=round(train_flops / t_train / peak["flops_per_s"], 3)),
      generation=dict(batch=gen_batch, steps=num_steps, run_s=t_gen, samples_per_s=round(gen_batch / t_gen, 2),
                      gflops=round(gen_flops / t_gen / 1e9, 1),
                      fraction_of_peak=round(gen_flops / t_gen / peak["flops_per_s"], 3)))


def anchor_cost(model, params, batch, max_iter=16, rank=64, components=8, mix_rank=16):
  """One denoiser call with the Gaussian anchor against the network alone, side by side (same batch and times).

  The prior is a synthetic Kronecker Gaussian of the channel shape (its cost does not depend on the values);
  times follow the training pattern "all". The anchor's complex multiply-adds per CG iteration: one Kronecker
  product ``C_a X C_s^T`` through the eigenvectors, ``2 N_a N_s (N_a + N_s)``. The same for the low-rank plus
  diagonal prior of ``rank`` (an exact solve, no iterations), and for the mixture of ``components`` such priors of
  rank ``mix_rank`` (one exact solve per component).
  """
  import numpy as np
  from jaxchan import gaussian_prior
  rng = np.random.default_rng(0)

  def cov(n):
    q, _ = np.linalg.qr(rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n)))
    return (q * np.exp(-0.2 * np.arange(n))) @ q.conj().T

  prior = gaussian_prior.from_factors(np.zeros(SHAPE), cov(SHAPE[0]), cov(SHAPE[1]))
  tau = tau_patterns.sample(jax.random.PRNGKey(7), "all", batch, SHAPE, SCH.T)
  g = conventions.standard_normal(jax.random.PRNGKey(8), (batch,) + SHAPE)
  net = jax.jit(denoiser.make(model, SCH).__call__)
  anchored = jax.jit(denoiser.make(model, SCH, prior=prior, max_iter=max_iter).__call__)
  t_net = timeit(net, params, g, tau)
  t_anchored = timeit(anchored, params, g, tau)
  macs = 2 * SHAPE[0] * SHAPE[1] * (SHAPE[0] + SHAPE[1])
  # The low-rank plus diagonal prior (ray-traced data), solved exactly: W^H S^-1 W costs d r^2 complex
  # multiply-adds per sample, the rest O(d r + r^3).
  d, r = SHAPE[0] * SHAPE[1], rank
  q, _ = np.linalg.qr(rng.normal(size=(d, r)) + 1j * rng.normal(size=(d, r)))
  lowrank = gaussian_prior.LowRankGaussian(jnp.zeros(SHAPE, jnp.complex64), jnp.asarray(q, jnp.complex64),
                                           jnp.asarray(np.exp(-0.05 * np.arange(r)), jnp.float32),
                                           jnp.full(SHAPE, 1e-3, jnp.float32))
  t_lowrank = timeit(jax.jit(denoiser.make(model, SCH, prior=lowrank).__call__), params, g, tau)
  lr_macs = d * r * r + 4 * d * r + r ** 3 // 3
  # The mixture of `components` rank-`mix_rank` priors (the ray-traced default): one such solve per component.
  k, rm = components, mix_rank
  qs = [np.linalg.qr(rng.normal(size=(d, rm)) + 1j * rng.normal(size=(d, rm)))[0] for _ in range(k)]
  mixture = gaussian_prior.MixtureGaussian(
      jnp.zeros((k,) + SHAPE, jnp.complex64), jnp.asarray(np.stack(qs), jnp.complex64),
      jnp.asarray(np.tile(np.exp(-0.2 * np.arange(rm)), (k, 1)), jnp.float32),
      jnp.full((k,) + SHAPE, 1e-3, jnp.float32), jnp.full((k,), -np.log(k), jnp.float32))
  t_mixture = timeit(jax.jit(denoiser.make(model, SCH, prior=mixture).__call__), params, g, tau)
  mix_macs = k * (d * rm * rm + 4 * d * rm + rm ** 3 // 3)
  return dict(batch=batch, max_iter=max_iter, network_call_s=t_net, anchored_call_s=t_anchored,
              ratio=round(t_anchored / t_net, 2), anchor_mflop_per_iteration_per_sample=round(8 * macs / 1e6, 2),
              lowrank=dict(rank=r, anchored_call_s=t_lowrank, ratio=round(t_lowrank / t_net, 2),
                           anchor_mflop_per_sample=round(8 * lr_macs / 1e6, 2)),
              mixture=dict(components=k, rank=rm, anchored_call_s=t_mixture, ratio=round(t_mixture / t_net, 2),
                           anchor_mflop_per_sample=round(8 * mix_macs / 1e6, 2)))


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--out")
  args = p.parse_args()
  res = run()
  print(json.dumps(res, indent=2))
  if args.out:
    from jaxchan import files
    files.atomic_write_json(args.out, res)


if __name__ == "__main__":
  main()
