"""How much non-Gaussian structure a dataset holds: a mixture-of-Gaussians estimator against LMMSE.

Fits a mixture of ``K`` low-rank-plus-diagonal Gaussians to the training channels
(:func:`jaxchan.gaussian_prior.fit_mixture`: classification EM from a k-means start on the angle-delay power
profiles) and reports the one-shot NMSE of its exact posterior mean (:func:`jaxchan.gaussian_prior.posterior`) on
the six initial-noise patterns beside LMMSE with the full training covariance (``K = 1`` is the low-rank anchor).
A mixture estimator below LMMSE says the data has structure beyond second order that a learned model can use.

  python examples/mixture_estimator.py data/street_canyon_small.h5 --components=1,4,16 --num_test=128
"""

import json
import os

from absl import app, flags, logging
import jax
import jax.numpy as jnp
import numpy as np

from jaxchan import data, gaussian_prior, lmmse, metrics, noise_patterns, schedules

COMPONENTS = flags.DEFINE_list("components", ["1", "4", "16"], "mixture sizes K to fit")
RANK = flags.DEFINE_integer("rank", 64, "eigenpairs kept per component")
ROUNDS = flags.DEFINE_integer("rounds", 3, "classification-EM rounds after the k-means start (the config's 3)")
NUM_TEST = flags.DEFINE_integer("num_test", 128, "test channels")
OUT = flags.DEFINE_string("out", None, "folder for results.json (optional)")


def main(argv):
  path = argv[1]
  sch = schedules.GammaSchedule(100, 0.2)
  with data.Dataset(path, kind="snapshot") as ds:
    train = np.asarray(ds.load("train")["h"][:8000])
    h = jnp.asarray(ds.load("test")["h"][:NUM_TEST.value])
  mu, cov = lmmse.sample_moments(jnp.asarray(train))
  obs = {p: noise_patterns.observe(h, jax.random.PRNGKey(i), p, sch) for i, p in enumerate(noise_patterns.PATTERNS)}
  rows = {"LMMSE, full covariance": {p: float(metrics.nmse(h, lmmse.estimate(o.h_bar, o.m, mu, cov)))
                                     for p, o in obs.items()}}
  logging.info("%s", rows)
  for k in map(int, COMPONENTS.value):
    mix = gaussian_prior.fit_mixture(train, components=k, rank=RANK.value, rounds=ROUNDS.value,
                                     log=logging.info)
    post = jax.jit(lambda g, a, b: gaussian_prior.posterior(mix, g, a, b).h_mean)
    row = {}
    for p, o in obs.items():
      a, b = schedules.alpha_beta(o.tau0, sch)
      row[p] = float(metrics.nmse(h, post(o.g0, a, b)))
    name = f"mixture of {mix.mean.shape[0]} (rank {RANK.value} + diagonal each)"
    rows[name] = row
    logging.info("%s: %s", name, {p: round(v, 5) for p, v in row.items()})
  pats = noise_patterns.PATTERNS
  print("| one-shot NMSE | " + " | ".join(pats) + " |\n" + "|---" * (len(pats) + 1) + "|")
  for name, row in rows.items():
    print(f"| {name} | " + " | ".join(f"{row[p]:.4f}" for p in pats) + " |")
  if OUT.value:
    os.makedirs(OUT.value, exist_ok=True)
    with open(os.path.join(OUT.value, "results.json"), "w") as f:
      json.dump(dict(data=path, rank=RANK.value, rounds=ROUNDS.value, num_test=int(h.shape[0]), rows=rows), f,
                indent=1)


if __name__ == "__main__":
  app.run(main)
