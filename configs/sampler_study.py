"""Exact-denoiser study of the non-identical samplers (jaxchan.experiments.sampler_study).

Variants (``--config=configs/sampler_study.py:VARIANT``):
  (none)  the numbers of docs/library.md: 10,000 samples, N_G in {10, 50, 200, 800}; ~10 min on 2 CPU cores.
  smoke   a tiny run for tests: seconds.
"""

import ml_collections

import configs


def get_config(arg: str = ""):
  c = ml_collections.ConfigDict()
  c.experiment = "sampler_study"
  c.seed = 0
  c.T = 100
  c.dim = 4
  c.num_components = 3
  # Non-identical initial times: one element nearly clean, one almost pure noise.
  c.tau0 = (60.0, 20.0, 40.0, 5.0)
  # Observation experiment: H_bar = M o H + CN(0, I) (eq. 14), one unobserved element.
  c.reliability = (0.0, 0.7, 2.0, 6.0)
  c.starts = ("consistent", "paper")
  c.rule = "waterfilling"
  c.samplers = ("eta:1.0", "eta:0.0", "eq9:0.4", "eq9:1.0")
  c.num_steps = (10, 50, 200, 800)
  c.num_samples = 10000
  c.num_obs = 4
  c.progress = True

  if "smoke" in configs.variants(arg, "sampler_study", {"smoke"}):
    c.num_steps = (2, 8)
    c.num_samples = 400
    c.samplers = ("eta:1.0", "eq9:0.4")
  return c
