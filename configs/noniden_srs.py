"""Non-identical diffusion as the posterior sampler for aged-SRS precoding (jaxchan.experiments.noniden_srs).

One unconditional non-identical prior of the downlink channel (one UE antenna's BS antennas x PRBs), trained once
on the training targets of both mobility scenarios of the perception experiment, serves every SRS history: the
history enters as the reliability map's start (eqs. 14-16) and through the per-user Gaussian anchor
(jaxchan.srs_prior). Evaluated on the perception experiment's test channels and SRS observations (the same keys), next to
its classical rows and, given its results (config.eval.perception_results), its learned ones; then, without
retraining, under SRS configurations the perception models were not trained for.

Variants (``--config=configs/noniden_srs.py:VARIANT[,VARIANT]``):
  (none)   paper scale: the perception paper's datasets (100k / 5k per scenario) and geometry; for a GPU.
  quick    the perception experiment's :quick data, geometry (16 BS antennas) and test set, 12 epochs of the
           paper-size mixer on 28,800 target rows; on 2 CPU cores (time measured in docs/perception.md).
  smoke    end to end on the tiny datasets, a minute or two on 2 CPU cores; its numbers mean nothing.
  white    the reliability map with eq. (14)'s white aging innovation only (an ablation of the fitted one).
"""

import ml_collections

import configs
from configs import noniden as noniden_config


def get_config(arg: str = ""):
  variants = configs.variants(arg, "noniden_srs", {"quick", "smoke", "white"}, exclusive=("quick", "smoke"))
  scale = "quick" if "quick" in variants else "smoke" if "smoke" in variants else ""
  # The perception experiment at the same scale: its data, SRS model, seed and evaluation settings are shared, so
  # the test histories and their observations are the same draws.
  p = configs.get(f"perception:{scale}")

  c = ml_collections.ConfigDict()
  c.experiment = "noniden_srs"
  c.seed = p.seed
  c.progress = True
  c.pipeline_check = p.pipeline_check
  c.scenarios = p.scenarios
  c.data = p.data.copy_and_resolve_references()
  c.srs = p.srs.copy_and_resolve_references()
  # The perception models' held-out histories (the tail of each training split) are not trained on here either.
  c.data.held_out = p.train.val_samples

  # The prior model: the non-identical experiment's main model (Gaussian-anchored mixer, all_masked pattern).
  c.T = 100
  c.beta_max = 0.2
  c.min_beta = 0.0
  c.anchor = ml_collections.ConfigDict(dict(train_samples=40000, shrinkage=1e-4, tol=1e-4, max_iter=16))
  c.model = noniden_config.model()

  c.train = ml_collections.ConfigDict()
  c.train.lr = 1e-3
  c.train.decay_factor = 0.5
  c.train.decay_every_epochs = 8
  c.train.num_epochs = 12
  c.train.batch_size = 64
  c.train.test_loss_samples = 256
  c.train.tau_min = 1

  # How the history reaches the prior (jaxchan.srs_prior): the reliability map's innovation ("fit": the one of
  # white / spatial / joint with the lowest one-shot NMSE of the per-user anchor alone on training histories) and
  # the anchors evaluated ("train": element-wise information only; "user": the per-user Gaussian anchor).
  c.srs_prior = ml_collections.ConfigDict(dict(innovation="fit", fit_samples=512, anchors=("train", "user")))

  c.eval = ml_collections.ConfigDict()
  c.eval.num_test = p.eval.num_test
  c.eval.batch_size = p.eval.batch_size
  c.eval.n_streams = p.eval.n_streams
  c.eval.num_samples = p.eval.num_samples       # K
  c.eval.dl_snr_offset_db = p.eval.dl_snr_offset_db
  c.eval.bound_samples = 16     # tau maps for the Gaussian bound on the prior's loss (the non-identical experiment's)
  # K samples per history for every test history and configuration: the element-wise DPM-Solver++(2M) SDE at 10
  # steps (K = 16 Bayesian precoding from 10-call samples stays within 0.1 bps/Hz of exact samples with exact
  # denoisers: docs/fast_sampling.md); "eta:1.0" at 50 steps is the non-identical experiment's default.
  c.eval.sampler = "dpm2m:1.0"
  c.eval.stepping = "tau-waterfilling"
  c.eval.num_steps = 10
  # A perception run at the same scale (its workdir): its learned rows (SL, DM, E2E) join the table; its classical
  # rows must equal this run's (the same observations), which is checked. "" leaves the learned rows out.
  c.eval.perception_results = ""
  # SRS configurations the perception models were not trained for, evaluated with the same prior: "hops:N" (N
  # sub-bands, n_prb / N PRBs per occasion), "occasions:N" (the last N of the history; N above the dataset's
  # config.data.n_occ: a dataset of the scenario's preset with N occasions, built once, see built_data), "snr:DB"
  # (every sample at that UL SNR).
  c.eval.unseen = ("hops:2", "occasions:1", "occasions:8", "snr:-15", "snr:15")
  c.eval.unseen_num_test = 64
  # UT speeds of the mobility sweep (km/h; low-mobility datasets at each speed, built once by the mobility
  # experiment's builder): the same prior, with the age correlation fitted on each speed's training histories.
  c.eval.speeds = (0.3, 1.0, 3.0, 10.0, 30.0, 60.0)
  # Size and place of the datasets the evaluation builds (speeds, longer histories): training histories for the
  # age-correlation and innovation fits, test histories (the first unseen_num_test are evaluated).
  c.eval.built_data = ml_collections.ConfigDict(dict(num_train=1024, num_test=64, data_dir="data"))

  if "white" in variants:
    c.srs_prior.innovation = "white"
  if scale == "quick":
    c.anchor.train_samples = 28800
  if scale == "smoke":
    c.scenarios = ("high_mobility",)
    c.model.update(num_layers=2, embed_dim=16)
    c.train.num_epochs = 2
    c.train.batch_size = 16
    c.train.test_loss_samples = 16
    c.srs_prior.fit_samples = 8
    c.eval.num_steps = 4
    c.eval.unseen = ("hops:2",)
    c.eval.speeds = ()
    c.eval.built_data.update(num_train=32, num_test=16)
    c.eval.unseen_num_test = 8
    c.eval.bound_samples = 2
  return c
