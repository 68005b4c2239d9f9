"""How close the Gaussian anchor's denoiser comes to the full-covariance LMMSE, and what it costs per call.

``--structure=kronecker`` (CG solve) or ``--structure=lowrank --rank=64`` (exact Woodbury solve; the CG caps then
do not apply and one row is reported).

One-shot NMSE of ``D_gauss(g0, tau0)`` (:mod:`jaxchan.gaussian_prior`, the anchor of the non-identical models)
against LMMSE with the full ``d x d`` training-set sample covariance (:mod:`jaxchan.lmmse`), on the six
initial-noise patterns at their default SNRs; CG iterations per call; and the time of one anchored call against
one network call (the paper-size mixer) on the same batch, measured side by side in this process.

  python -m examples.gaussian_anchor_check --data=data/simo_ofdm_small.h5 --out=docs/results/gaussian_anchor/uma \
      --max_iter=16 --max_iter=8 --max_iter=100
  python -m examples.gaussian_anchor_check --data=data/simo_ofdm_small.h5 --out=docs/results/gaussian_anchor/uma \
      --velocity_only --max_iter=8 --max_iter=16 --max_iter=32 --max_iter=300
"""

import json
import os
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from jaxchan import data, gaussian_prior, lmmse, metrics, noise_patterns, schedules, tau_patterns
from jaxchan.models.mixer import MixerDenoiser

DATA = flags.DEFINE_string("data", None, "an existing snapshot dataset (.h5) with train and test splits",
                            required=True)
OUT = flags.DEFINE_string("out", None, "folder for results.json and table.md", required=True)
NUM_TRAIN = flags.DEFINE_integer("num_train", 8000, "training channels for both covariances")
NUM_TEST = flags.DEFINE_integer("num_test", 128, "test channels")
BATCH = flags.DEFINE_integer("batch", 64, "batch of the timing comparison")
TIMING = flags.DEFINE_bool("timing", True, "time one anchored call against one network call (needs idle cores)")
VELOCITY_ONLY = flags.DEFINE_bool("velocity_only", False, "only the anchor's velocity loss on the training tau "
                                  "patterns per CG cap (velocity.md / velocity.json)")
MAX_ITER = flags.DEFINE_multi_integer("max_iter", [12, 50], "CG iteration caps compared (the first is timed)")
STRUCTURE = flags.DEFINE_enum("structure", "kronecker", ["kronecker", "lowrank"], "the anchor's prior structure")
RANK = flags.DEFINE_integer("rank", 64, "leading eigenpairs of the lowrank structure")

PATTERNS = ("white", "exp", "salt", "salt_rec", "pilot", "pilot_car")


def _time(fn, *args, repeats=5):
  jax.block_until_ready(fn(*args))
  t = time.perf_counter()
  for _ in range(repeats):
    jax.block_until_ready(fn(*args))
  return (time.perf_counter() - t) / repeats


def velocity_accuracy(prior, h, sch, caps, out):
  """Velocity loss (eq. 12) of the anchor alone on the training tau patterns (the paper's four and "masked", which
  make up the main model's "all_masked"), per CG cap: how close a truncated solve comes to the converged one (the
  largest cap), which is what an anchored model's training starts from."""
  rows = {}
  for i, pattern in enumerate(tau_patterns.SIMPLE + ("masked",)):
    tau = tau_patterns.sample(jax.random.PRNGKey(100 + i), pattern, h.shape[0], h.shape[1:], sch.T)
    a, b = schedules.alpha_beta(tau, sch)
    xi = jax.random.normal(jax.random.PRNGKey(200 + i), h.shape + (2,)) @ jnp.array([1.0, 1j]) / jnp.sqrt(2.0)
    g, v = a * h + b * xi, a * xi - b * h
    floor = float(schedules.alpha_beta(jnp.asarray(1.0), sch)[1])
    rows[pattern] = {}
    for k in caps:
      s = gaussian_prior.posterior(prior, g, a, b, beta_floor=floor, max_iter=k)
      rows[pattern][k] = float(jnp.mean(jnp.abs(a * s.xi_mean - b * s.h_mean - v) ** 2))
    print(pattern, rows[pattern], flush=True)
  lines = ["| anchor's velocity loss | " + " | ".join(f"CG <= {k}" for k in caps) + " |",
           "|---|" + "---|" * len(caps)]
  lines += [f"| {p} | " + " | ".join(f"{rows[p][k]:.4f}" for k in caps) + " |" for p in rows]
  with open(os.path.join(out, "velocity.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  with open(os.path.join(out, "velocity.json"), "w") as f:
    json.dump(dict(num_test=int(h.shape[0]), caps=list(caps), velocity_loss=rows), f, indent=1)
  print("\n".join(lines))


def main(_):
  sch = schedules.GammaSchedule(100, 0.2)
  caps = MAX_ITER.value[:1] if STRUCTURE.value == "lowrank" else MAX_ITER.value   # an exact solve: one row
  with data.Dataset(DATA.value, kind="snapshot") as ds:
    train = np.asarray(ds.load("train")["h"][:NUM_TRAIN.value])
    h = jnp.asarray(ds.load("test")["h"][:NUM_TEST.value])
  if STRUCTURE.value == "lowrank":
    prior = gaussian_prior.fit_lowrank(train, rank=RANK.value)
  else:
    prior = gaussian_prior.fit(train)
  if VELOCITY_ONLY.value:
    os.makedirs(OUT.value, exist_ok=True)
    return velocity_accuracy(prior, h, sch, caps, OUT.value)
  mu, cov = lmmse.sample_moments(jnp.asarray(train))
  posts = {k: jax.jit(lambda g, a, b, k=k: gaussian_prior.posterior(prior, g, a, b, max_iter=k))
           for k in caps}
  post = posts[caps[0]]
  rows = {}
  for i, p in enumerate(PATTERNS):
    obs = noise_patterns.observe(h, jax.random.PRNGKey(i), p, sch)
    full = metrics.nmse(h, lmmse.estimate(obs.h_bar, obs.m, mu, cov))
    a, b = schedules.alpha_beta(obs.tau0, sch)
    rows[p] = dict(full_lmmse=float(full))
    for k, fn in posts.items():
      s = fn(obs.g0, a, b)
      rows[p][k] = dict(nmse=float(metrics.nmse(h, s.h_mean)), iterations_mean=float(jnp.mean(s.iterations)),
                        iterations_max=int(jnp.max(s.iterations)), residual_max=float(jnp.max(s.residual)))
    print(p, rows[p], flush=True)

  # Cost per call on training-like times (the "all" pattern), side by side with the paper-size network.
  timing = timed(prior, train, h.shape[1:], sch, post) if TIMING.value else None
  os.makedirs(OUT.value, exist_ok=True)
  res = dict(data=DATA.value, structure=STRUCTURE.value, rank=RANK.value if STRUCTURE.value == "lowrank" else None,
             num_train=len(train), num_test=int(h.shape[0]), patterns=rows, timing=timing,
             device=str(jax.devices()[0]))
  with open(os.path.join(OUT.value, "results.json"), "w") as f:
    json.dump(res, f, indent=1)
  def label(k):
    return f"rank-{RANK.value} plus diagonal prior (exact)" if STRUCTURE.value == "lowrank" else f"Kronecker prior, CG <= {k}"

  lines = ["| one-shot NMSE | " + " | ".join(PATTERNS) + " |", "|---|" + "---|" * len(PATTERNS),
           "| LMMSE, full sample covariance | " + " | ".join(f"{rows[p]['full_lmmse']:.3f}" for p in PATTERNS) + " |",
           *[f"| D_gauss, {label(k)} | " + " | ".join(f"{rows[p][k]['nmse']:.3f}" for p in PATTERNS)
             + " |" for k in posts],
           *[f"| CG iterations (mean / max), cap {k}, relative residual max | " + " | ".join(
               f"{rows[p][k]['iterations_mean']:.1f} / {rows[p][k]['iterations_max']}, {rows[p][k]['residual_max']:.0e}"
               for p in PATTERNS) + " |" for k in posts], ""]
  if timing:
    lines.append(f"Per call on a batch of {timing['batch']} ('all' tau pattern): network {timing['network_s'] * 1e3:.1f} "
                 f"ms, D_gauss {timing['gaussian_s'] * 1e3:.1f} ms, {label(caps[0])} ({timing['ratio']:.2f}x; "
                 + (f"CG {timing['iterations_mean']:.1f} iterations mean, {timing['iterations_max']} max), "
                    if STRUCTURE.value == "kronecker" else "no iterations), ") +
                 f"{jax.devices()[0]}.")
  with open(os.path.join(OUT.value, "table.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))


def timed(prior, train, shape, sch, post):
  B = BATCH.value
  tau = tau_patterns.sample(jax.random.PRNGKey(7), "all", B, shape, sch.T)
  a, b = schedules.alpha_beta(tau, sch)
  g = a * jnp.asarray(train[:B]) + b * (jax.random.normal(jax.random.PRNGKey(8), (B,) + shape) + 0j)
  net = MixerDenoiser(schedule=sch)
  params = net.init(jax.random.PRNGKey(0), g, tau)
  t_net = _time(jax.jit(net.apply), params, g, tau)
  t_gauss = _time(post, g, a, b)
  s = post(g, a, b)
  macs_kron_matvec = int(np.prod(shape) * sum(shape))  # C_a X C_s^T through the eigenvectors, complex MACs
  timing = dict(batch=B, network_s=t_net, gaussian_s=t_gauss, ratio=t_gauss / t_net,
                iterations_mean=float(jnp.mean(s.iterations)), iterations_max=int(jnp.max(s.iterations)),
                kron_matvec_complex_macs=2 * macs_kron_matvec)
  print(timing, flush=True)
  return timing


if __name__ == "__main__":
  app.run(main)
