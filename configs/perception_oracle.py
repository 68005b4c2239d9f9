"""Perception vs. distortion with exact posteriors (jaxchan.experiments.perception_oracle).

Variants (``--config=configs/perception_oracle.py:VARIANT``):
  (none)   2 UE x 8 BS antennas x 4 PRBs, 4 clusters, 11 SNRs, 2,000 channels each, and the learned SL / DM
           trained on the same prior, anchored on the exact posterior under the mixture fitted by EM on draws from
           it (measured time in docs/perception.md; --config.learned.enabled=False: exact only).
  gaussian combinable: anchored on the exact conditional Gaussian under the prior's covariance instead (the
           one-Gaussian anchor, an ablation).
  literal  combinable: the paper's networks without the anchor (the ablation), trained 3x as long (24 / 48
           epochs, the setting they were measured at).
  smoke    tiny, for tests: seconds.
"""

import ml_collections

import configs


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
  # The classical mixture fitted by classification EM on draws from the prior (rows of its channels): a baseline
  # row in every table, and the learned models' anchor under learned.anchor = "mixture".
  c.mixture = ml_collections.ConfigDict()
  c.mixture.components = 4
  c.mixture.rank = 8               # per row: 2 paths x 4 PRBs, the rest a diagonal floor
  c.mixture.rounds = 3
  c.mixture.train_samples = 4096

  # The perception backbone trained on this prior (SL by MSE, DM by v prediction), compared with the exact
  # CME and the exact K-sample Bayesian precoder on the same channels.
  c.learned = ml_collections.ConfigDict()
  c.learned.enabled = True
  c.learned.d_model = 64
  c.learned.num_heads = 4
  c.learned.layers = 2             # encoder and decoder each
  c.learned.mlp_ratio = 4
  c.learned.ue_per_token = 2       # one token per (PRB, occasion): 2 x 8 x 2 = 32 reals <= d_model
  c.learned.T = 100
  c.learned.prediction = "v"
  c.learned.p_uncond = 0.1
  c.learned.batch_size = 256
  c.learned.steps_per_epoch = 250
  # "mixture": the untrained model is the EM-fitted mixture's exact CME and posterior sampler (config.mixture) and
  # training learns a residual; "prior": the same from the Gaussian baseline (the LMMSE under the prior's
  # covariance, its K-sample Bayesian precoder; :gaussian); "none": the paper's network (:literal).
  c.learned.anchor = "mixture"
  c.learned.epochs = ml_collections.ConfigDict({"sl": 8, "dm": 16})
  c.learned.lr = 1e-3
  c.learned.decay_every_epochs = 6
  c.learned.decay_factor = 0.5
  c.learned.snr_db_range = (-20.0, 30.0)   # the SNR grid's span: one model for every row
  c.learned.num_samples = 16       # K of the learned ensemble; must be in num_samples
  variants = configs.variants(arg, "perception_oracle", {"smoke", "gaussian", "literal"},
                              exclusive=("gaussian", "literal"))
  if "gaussian" in variants:
    c.learned.anchor = "prior"
  if "literal" in variants:
    c.learned.anchor = "none"
    c.learned.epochs = ml_collections.ConfigDict({"sl": 24, "dm": 48})
    c.learned.decay_every_epochs = 12
  if "smoke" in variants:
    c.shape = (2, 4, 2)
    c.sounded = 1
    c.snr_db_grid = (-10.0, 10.0, 30.0)
    c.num_samples = (1, 16)
    c.num_test = 200
    c.learned.d_model = 16         # 2 x 4 x 2 = 16 reals
    c.learned.num_heads = 2
    c.learned.layers = 1
    c.learned.mlp_ratio = 2
    c.learned.T = 10
    c.learned.batch_size = 32
    c.learned.steps_per_epoch = 5
    c.learned.epochs = ml_collections.ConfigDict({"sl": 1, "dm": 1})
    c.mixture.rank = 4
    c.mixture.train_samples = 512
  return c
