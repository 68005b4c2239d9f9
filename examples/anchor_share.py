"""How much of a trained anchored denoiser is its Gaussian part, per diffusion time.

For each shared time ``tau`` (every element at ``tau``): the NMSE of the trained ``D(g, tau)``, of the anchor's
Gaussian posterior mean ``E_G[h | g]`` alone, and the share of ``D``'s output the anchor explains,
``1 - ||D - E_G||^2 / ||D||^2``, on test channels. Where the network changes the estimate by much less than the
estimate's own error, the closed-form Gaussian step could stand in for the network.

  python -m examples.anchor_share --model=workdir/noniden_quick_main/models/nonid \
      --data=data/simo_ofdm_small.h5 --out=docs/results/noniden_quick_main/anchor_share
"""

import os

from absl import app, flags
import jax
import jax.numpy as jnp

from jaxchan import conventions, files, metrics, schedules
from jaxchan.experiments import noniden as exp
from jaxchan.experiments import noniden_setup

MODEL = flags.DEFINE_string("model", None, "trained anchored model folder (WORKDIR/models/NAME)", required=True)
DATA = flags.DEFINE_string("data", None, "the dataset it was trained on", required=True)
OUT = flags.DEFINE_string("out", None, "output folder (results.json, table.md)", required=True)
NUM = flags.DEFINE_integer("num_test", 128, "test channels")
TIMES = flags.DEFINE_list("times", ["1", "2", "5", "10", "20", "30", "40", "60", "80", "100"], "shared times")


def main(_):
  den, params, info = exp.load_trained(MODEL.value)
  if den.prior is None:
    raise app.UsageError(f"{MODEL.value} is not an anchored model (anchor 'none').")
  h = noniden_setup.load_test_channels(info, DATA.value, NUM.value)
  full = jax.jit(den.__call__)
  gauss = jax.jit(den.gaussian_denoised)
  rows = []
  for i, t in enumerate(float(x) for x in TIMES.value):
    tau = jnp.full(h.shape, t)
    a, b = schedules.alpha_beta(tau, den.schedule)
    g = a * h + b * conventions.standard_normal(jax.random.PRNGKey(i), h.shape)
    d, dg = full(params, g, tau), gauss(g, tau)
    rows.append(dict(tau=t, nmse_model=float(metrics.nmse(h, d)), nmse_gaussian=float(metrics.nmse(h, dg)),
                     share=float(1 - jnp.sum(jnp.abs(d - dg) ** 2) / jnp.sum(jnp.abs(d) ** 2)),
                     change_over_error=float(jnp.sum(jnp.abs(d - dg) ** 2) / jnp.sum(jnp.abs(dg - h) ** 2))))
    print(rows[-1], flush=True)
  os.makedirs(OUT.value, exist_ok=True)
  files.atomic_write_json(os.path.join(OUT.value, "results.json"), dict(model=MODEL.value, data=DATA.value,
                                                                        num_test=int(h.shape[0]), rows=rows))
  table = files.markdown_table(
      ["tau", "NMSE trained D", "NMSE Gaussian part alone", "share of D explained by the Gaussian part",
       "||D - D_gauss||^2 / ||D_gauss - h||^2"],
      [[r["tau"], r["nmse_model"], r["nmse_gaussian"], r["share"], r["change_over_error"]] for r in rows])
  files.atomic_write_text(os.path.join(OUT.value, "table.md"), table)
  print(table)


if __name__ == "__main__":
  app.run(main)
