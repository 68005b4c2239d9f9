"""Perception vs. distortion with exact posteriors (jaxchan.experiments.perception_oracle).

Variants (``--config=configs/perception_oracle.py:VARIANT``):
  (none)  2 UE x 8 BS antennas x 4 PRBs, 4 clusters, 11 SNRs, 2,000 channels each: a few minutes on 2 CPU cores.
  smoke   tiny, for tests: seconds.
"""

import ml_collections


def get_config(arg: str = ""):
  c = ml_collections.ConfigDict()
  c.experiment = "perception_oracle"
  c.seed = 0
  c.progress = True
  c.shape = (2, 8, 4)              # (n_ue, n_bs, n_freq): d = 64, exact posteriors are cheap
  c.num_components = 4             # user clusters
  c.paths = 2                      # rank of each cluster's BS covariance
  c.sounded = 2                    # PRBs the observation sees (one SRS hop of a two-hop band)
  c.rho = 0.7                      # aging: correlation of the observation with the target
  c.snr_db_grid = (-20.0, -15.0, -10.0, -5.0, 0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0)
  c.dl_snr_db = 10.0
  c.n_streams = 2
  c.num_samples = (1, 4, 16, 64)   # K of the exact Bayesian precoder
  c.num_test = 2000
  variant = arg or "default"
  if variant == "smoke":
    c.shape = (2, 4, 2)
    c.sounded = 1
    c.snr_db_grid = (-10.0, 10.0, 30.0)
    c.num_samples = (1, 16)
    c.num_test = 200
  elif variant != "default":
    raise ValueError(f"unknown variant {variant!r} for configs/perception_oracle.py; choose '' or 'smoke'.")
  return c
