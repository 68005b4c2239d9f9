"""Closed-form Gaussian steps in generation: the network calls they save and what they change.

For a trained anchored model and each noise pattern of ``configs/noniden.py:quick`` (its SNRs, start, default
stepping, sampler and step count): the final generation NMSE with the network at every step and with the
anchor alone on the calls whose times all lie at or below ``tau_lo`` or at or above ``tau_hi``
(:meth:`jaxchan.denoiser.VelocityDenoiser.with_gaussian_steps`), the same observations and keys, and the
share of network calls saved. ``tau_lo`` / ``tau_hi`` come from the per-time study of ``examples/anchor_share.py``.

  python -m examples.gaussian_steps --model=workdir/noniden_quick_anchored/models/nonid \
      --data=data/simo_ofdm_small.h5 --out=docs/results/noniden_quick_anchored/gaussian_steps
"""

import os

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

import configs
from jaxchan import denoiser, files, noise_patterns, noniden, stepping
from jaxchan.experiments import noniden as exp
from jaxchan.experiments import noniden_setup
from jaxchan.experiments import noniden_eval

MODEL = flags.DEFINE_string("model", None, "trained anchored model folder (WORKDIR/models/NAME)", required=True)
DATA = flags.DEFINE_string("data", None, "the dataset it was trained on", required=True)
OUT = flags.DEFINE_string("out", None, "output folder (results.json, table.md)", required=True)
NUM = flags.DEFINE_integer("num_test", 128, "test channels")
LO = flags.DEFINE_float("tau_lo", 5.0, "Gaussian steps where every time is <= tau_lo")
HI = flags.DEFINE_float("tau_hi", 80.0, "Gaussian steps where every time is >= tau_hi")


def main(_):
  config = configs.get("noniden:quick")
  den, params, info = exp.load_trained(MODEL.value)
  fast = den.with_gaussian_steps(LO.value, HI.value)
  sch = den.schedule
  run = noniden.Generation.parse(config.eval.steppings[0], config.eval.samplers[0], config.eval.num_steps)
  st, sp, n_steps = run
  h = noniden_setup.load_test_channels(info, DATA.value, NUM.value)
  rows = []
  for i, pattern in enumerate(config.eval.patterns):
    k_obs, k_gen = jax.random.split(jax.random.PRNGKey(i))
    obs = noise_patterns.observe(h, k_obs, pattern, sch, background=config.eval.background,
                                 snr_db=config.eval.snr_db[pattern], start=config.eval.start)
    start = noniden.initial_state(obs.h_bar, obs.m, sch, start=config.eval.start)
    full = noniden_eval.generation_nmse(den, params, h, start, k_gen, run=run, batch=config.eval.batch_size)
    gauss = noniden_eval.generation_nmse(fast, params, h, start, k_gen, run=run, batch=config.eval.batch_size)
    shares = []
    for b in range(0, h.shape[0], config.eval.batch_size):   # the calls a batch of the evaluation makes
      paths = jax.vmap(lambda t: stepping.tau_trajectory(t, stepping=st, schedule=sch, num_steps=n_steps))(
          start.tau0[b:b + config.eval.batch_size])
      shares.append(denoiser.gaussian_step_share(jnp.moveaxis(paths, 1, 0), fast.gaussian_steps))
    rows.append(dict(pattern=pattern, nmse_network=float(full[-1]), nmse_gaussian_steps=float(gauss[-1]),
                     calls_saved=float(np.mean(shares))))
    print(rows[-1], flush=True)
  os.makedirs(OUT.value, exist_ok=True)
  files.atomic_write_json(os.path.join(OUT.value, "results.json"), dict(
      model=MODEL.value, data=DATA.value, num_test=int(h.shape[0]), tau_lo=LO.value, tau_hi=HI.value,
      stepping=str(st), sampler=str(sp), num_steps=n_steps, rows=rows))
  table = files.markdown_table(
      ["pattern", "NMSE, network at every step", f"NMSE, Gaussian steps (tau <= {LO.value:g} or >= {HI.value:g})",
       "network calls saved"],
      [[r["pattern"], r["nmse_network"], r["nmse_gaussian_steps"], f"{100 * r['calls_saved']:.0f} %"] for r in rows])
  files.atomic_write_text(os.path.join(OUT.value, "table.md"), table)
  print(table)


if __name__ == "__main__":
  app.run(main)
