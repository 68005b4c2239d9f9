"""Why the perception DM predicts v, not eps: the same backbone trained both ways, one sample each.

  python -m examples.dm_prediction_check [EPOCHS]   # default 8; from the repo root; 6 epochs: 4 min on 2 CPU cores

Trains the ``:quick,low_mobility`` DM twice for EPOCHS epochs (identical data, seed and steps), once
predicting eps (eq. 6 as printed) and once predicting v, then draws one conditional sample per test
channel and prints, for each: the first jump-to-clean estimate x0_hat(x_T) (at t = T the v model
must output the conditional mean, the eps model an eps whose error eq. (7) multiplies by
sqrt((1 - abar_T) / abar_T)), and the final sample's NMSE. A genuine posterior sample has NMSE at most
2 x (the SL's NMSE), i.e. <= +3 dB.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np

from configs import perception as perception_config
from jaxchan import prediction, srs
from jaxchan.experiments import perception, perception_eval


def main(epochs: int = 8, num_test: int = 64):
  base = perception_config.get_config("quick,low_mobility")
  base.progress = False
  base.train.models = ("dm",)
  base.train.epochs.dm = epochs
  ds = perception.open_scenario(base, "low_mobility")
  test = ds.load("test")
  hist, h = jnp.asarray(test["history"][:num_test]), jnp.asarray(test["target"][:num_test])
  obs = srs.observe(hist, jax.random.PRNGKey(7), num_hops=base.srs.num_hops,
                    snr_db_range=tuple(base.srs.snr_db_range))
  sch = perception.dm_schedule(base)
  nmse_db = lambda x: 10 * np.log10(float(jnp.sum(jnp.abs(x - h) ** 2) / jnp.sum(jnp.abs(h) ** 2)))  # noqa: E731
  for pred in ("eps", "v"):
    c = base.copy_and_resolve_references()
    c.dm.prediction = pred
    model, params, history = perception.train_one(c, "dm", ds, f"workdir/dm_prediction_check/{pred}", log=print)
    _, rec = prediction.sample_posterior(model, params, obs, jax.random.PRNGKey(3), sch, prediction=pred,
                                         clip_x0=c.dm.clip_x0 or None, record=prediction.trajectory_metrics(h))
    x = prediction.sample_posterior(model, params, obs, jax.random.PRNGKey(3), sch, prediction=pred,
                                    clip_x0=c.dm.clip_x0 or None)[0]
    first = 10 * np.log10(float(rec[0, 1]) / float(jnp.sum(jnp.abs(h) ** 2)))
    bound = perception_eval.loss_bounds(c, ds, log=lambda *_: None)
    print(f"{pred:>3}: {epochs} epochs, test loss {history[-1]['test_loss']:.4f} (per-element bound "
          f"{bound['dm_per_element']:.4f}); x0_hat at t = T {first:+.2f} dB; one sample {nmse_db(x):+.2f} dB")


if __name__ == "__main__":
  main(int(sys.argv[1]) if len(sys.argv) > 1 else 8)
