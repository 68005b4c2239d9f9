"""What the anchor's truncated conjugate-gradient solve costs a trained anchored model, per noise pattern.

The anchored denoiser solves its Gaussian posterior by CG to the model's ``tol`` / ``max_iter`` (16 by default),
enough for the training tau patterns. For each of the six noise patterns' starts ``(g0, tau0)`` (the same
observations and keys as ``benchmarks.time_to_quality``) this measures the iterations a converged solve needs and
the residual the model's truncated solve leaves; the NMSE of the anchor alone and of the trained ``D(g0, tau0)``
with either solve (the converged one is :meth:`jaxchan.denoiser.VelocityDenoiser.point_estimate`), each
against the converged LMMSE with the paired standard error; and the default sampler's NMSE and seconds per sample
with the model's solve and with a converged one.

  python -m examples.anchor_solve --model=workdir/noniden_quick_main/models/nonid \
      --data=data/simo_ofdm_small.h5 --out=docs/results/anchor_solve
"""

import json
import os
import time

from absl import app, flags
import jax
import jax.numpy as jnp

from benchmarks.time_to_quality import nmse_and_se, paired_ratio
from jaxchan import denoiser, files, noise_patterns, noniden
from jaxchan.experiments import noniden as exp
from jaxchan.experiments import noniden_setup

MODEL = flags.DEFINE_string("model", None, "trained anchored model folder (WORKDIR/models/NAME)", required=True)
DATA = flags.DEFINE_string("data", None, "the dataset it was trained on", required=True)
OUT = flags.DEFINE_string("out", None, "output folder (results.json, table.md)", required=True)
NUM = flags.DEFINE_integer("num_test", 128, "test channels")
STEPS = flags.DEFINE_integer("num_steps", 50, "steps of the default sampler (0: skip the sampler rows)")


def _timed(fn, *args):
  jax.block_until_ready(fn(*args))
  t0 = time.perf_counter()
  out = jax.block_until_ready(fn(*args))
  return out, time.perf_counter() - t0


def main(_):
  den, params, info = exp.load_trained(MODEL.value)
  if den.prior is None:
    raise app.UsageError(f"{MODEL.value} is not an anchored model (anchor 'none'); it has no solve to measure.")
  h = noniden_setup.load_test_channels(info, DATA.value, NUM.value)
  sch, conv = den.schedule, den.with_solver(*denoiser.POINT_SOLVER)
  solve = lambda d: jax.jit(lambda g, tau: d.gaussian(g, tau))  # noqa: E731
  solves = {"model": solve(den), "converged": solve(conv)}
  anchor = {"model": jax.jit(den.gaussian_denoised), "converged": jax.jit(conv.gaussian_denoised)}
  net = {"model": jax.jit(den.__call__), "converged": jax.jit(den.point_estimate)}
  gens = {}
  if STEPS.value:
    gens = {k: noniden.make_network_generator(d, num_steps=STEPS.value)
            for k, d in (("model", den), ("converged", conv))}
  key = jax.random.PRNGKey(0)
  rows = []
  for i, pattern in enumerate(noise_patterns.PATTERNS):     # the keys of benchmarks.time_to_quality
    obs = noise_patterns.observe(h, jax.random.fold_in(key, 10 + i), pattern, sch)
    s = {k: f(obs.g0, obs.tau0) for k, f in solves.items()}
    lmmse = anchor["converged"](obs.g0, obs.tau0)
    row = dict(pattern=pattern, iterations_to_converge=int(jnp.max(s["converged"].iterations)),
               residual_at_model_solve=float(jnp.max(s["model"].residual)), max_iter=den.max_iter,
               lmmse_nmse=nmse_and_se(h, lmmse)[0])
    for k in ("model", "converged"):
      for label, est in ((f"anchor_{k}", anchor[k](obs.g0, obs.tau0)), (f"D_{k}", net[k](params, obs.g0, obs.tau0))):
        row[f"{label}_nmse"] = nmse_and_se(h, est)[0]
        row[f"{label}_over_lmmse"], row[f"{label}_over_lmmse_se"] = paired_ratio(h, est, lmmse)
    for k, gen in gens.items():
      out, secs = _timed(gen, params, noniden.Start(obs.g0, obs.tau0), jax.random.fold_in(key, 100 + i))
      row[f"sample_{k}_nmse"], row[f"sample_{k}_ms"] = nmse_and_se(h, out)[0], 1e3 * secs / h.shape[0]
    rows.append(row)
    print(json.dumps(row), flush=True)
  os.makedirs(OUT.value, exist_ok=True)
  files.atomic_write_json(os.path.join(OUT.value, "results.json"),
                          dict(model=MODEL.value, data=DATA.value, num_test=int(h.shape[0]), num_steps=STEPS.value,
                               point_solver=list(denoiser.POINT_SOLVER), device=str(jax.devices()[0]), rows=rows))
  ratio = lambda r, k: f"{r[k + '_over_lmmse']:.3f} ± {r[k + '_over_lmmse_se']:.3f}"  # noqa: E731
  head = ["pattern", "CG iterations to converge", f"residual at {den.max_iter}", "LMMSE (converged anchor)",
          "anchor, model's solve / LMMSE", "D(g0, tau0), model's solve / LMMSE", "D(g0, tau0), converged / LMMSE"]
  body = [[r["pattern"], r["iterations_to_converge"], f"{r['residual_at_model_solve']:.3g}", f"{r['lmmse_nmse']:.4f}",
           ratio(r, "anchor_model"), ratio(r, "D_model"), ratio(r, "D_converged")] for r in rows]
  if gens:
    head += [f"eta:1 x{STEPS.value}, model's solve: NMSE, ms", "the same, converged solve"]
    for b, r in zip(body, rows):
      b += [f"{r['sample_model_nmse']:.4f}, {r['sample_model_ms']:.1f}",
            f"{r['sample_converged_nmse']:.4f}, {r['sample_converged_ms']:.1f}"]
  table = files.markdown_table(head, body)
  files.atomic_write_text(os.path.join(OUT.value, "table.md"), table)
  print(table)


if __name__ == "__main__":
  app.run(main)
