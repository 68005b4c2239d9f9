"""Mobility sweep (jaxchan.experiments.mobility): predictor NMSE and classical-precoder SE against UT speed.

Variants (``--config=configs/mobility.py:VARIANT``):
  (none)  speeds 0.3, 1, 3, 10, 30, 60 km/h, 1,024 train / 256 test channels each; a few minutes on 2 CPU cores.
  smoke   two speeds, 32 / 16 channels: seconds (tests).
"""

import ml_collections

import configs


def get_config(arg: str = ""):
  c = ml_collections.ConfigDict()
  c.experiment = "mobility"
  c.seed = 0
  c.progress = True
  c.speeds = (0.3, 1.0, 3.0, 10.0, 30.0, 60.0)     # km/h, indoor and outdoor alike
  c.num_train = 1024            # for the average Gramian
  c.num_test = 256
  c.batch_size = 64
  c.data_dir = "data"
  c.snr_db_range = (-10.0, 10.0)
  c.dl_snr_offset_db = 10.0
  c.n_streams = 2
  if "smoke" in configs.variants(arg, "mobility", {"smoke"}):
    c.speeds = (0.3, 30.0)
    c.num_train, c.num_test, c.batch_size = 32, 16, 16
  return c
