"""Score-based vs discriminative SRS channel prediction and precoding (jaxchan.experiments.perception).

Variants (``--config=configs/perception.py:VARIANT[,VARIANT]``), combinable:
  (none)          paper scale (100k / 5k samples per scenario, 4+4-layer d=128 transformer, T = 1000,
                  K = 16), both scenarios; for a GPU or TPU.
  low_mobility    only the low-mobility scenario (0.3 km/h: minimal aging; the paper lost its speeds).
  high_mobility   only the high-mobility scenario (30 / 60 km/h).
  quick           within an hour per scenario on 2 CPU cores (measured figures in docs/perception.md): 4k / 1k
                  samples, 2+2 layers, T = 100, and a reduced geometry: the first 16 of the 32 BS
                  antennas, one token per (PRB, time) with all 4 UE antennas (2 x 16 x 4 = 128 reals =
                  d_model, a full-rank read-in).
  smoke           end to end on a tiny dataset it builds itself, in a few minutes on 2 CPU cores.
  literal         the paper's networks without the Gaussian anchor (config.model.anchor = "none"), an ablation.

The paper's Table IV lost its numbers; the defaults here are this project's choices, all config fields
(see ../shared/papers/NOTES.md for the scenario defaults the datasets follow).
"""

import ml_collections

import configs

SCENARIOS = ("low_mobility", "high_mobility")


def scale(c, *, size, batch, epochs, test_loss, num_test, sweep, trajectory, cg, val):
  """The size knobs a variant changes together; ``epochs`` is (SL, DM, E2E)."""
  c.data.size = size
  c.train.val_samples = val
  c.train.batch_size = c.eval.batch_size = batch
  c.train.epochs = ml_collections.ConfigDict(dict(zip(("sl", "dm", "e2e"), epochs)))
  c.train.test_loss_samples = test_loss
  c.eval.num_test = num_test
  c.eval.sweep_num_test = sweep
  c.eval.trajectory_num_test = trajectory
  c.eval.cg_num_test = cg


def get_config(arg: str = ""):
  c = ml_collections.ConfigDict()
  c.experiment = "perception"
  c.pipeline_check = False
  c.seed = 0
  c.progress = True
  c.scenarios = SCENARIOS

  # The dataset of each scenario: datagen preset = scenario name (datagen/presets.py).
  c.data = ml_collections.ConfigDict()
  c.data.size = "full"             # tiny | small | full (100k / 5k)
  c.data.seed = 0
  c.data.path = ""                 # default data/<scenario>_<size>.h5; set only with one scenario
  c.data.build_if_missing = False  # the default path (data/...) is built when missing; a path you give only if True
  c.data.n_occ = 4                 # SRS occasions in the history
  c.data.n_ue = 4                  # UE antennas (1 x 2 dual-pol)
  c.data.n_bs = 32                 # BS antennas (2 x 8 dual-pol) in the file
  c.data.bs_antennas = 0           # BS antennas the models see (the first ones); 0: all n_bs
  c.data.n_prb = 52

  c.srs = ml_collections.ConfigDict()
  c.srs.num_hops = 4
  c.srs.snr_db_range = (-10.0, 10.0)   # UL SNR, uniform per sample

  c.model = ml_collections.ConfigDict()
  c.model.d_model = 128
  c.model.num_heads = 4
  c.model.enc_layers = 4
  c.model.dec_layers = 4
  c.model.mlp_ratio = 4
  c.model.dropout = 0.0
  c.model.ue_per_token = 1         # 1: a token per (UE antenna, PRB, time) cell, as in the paper
  # "gaussian": every model is the closed-form Gaussian predictor plus a learned residual (head at zero), so
  # training starts where the classical estimator ends; "none": the paper's networks (the `literal` variant).
  c.model.anchor = "gaussian"

  c.dm = ml_collections.ConfigDict()
  c.dm.T = 1000                    # cosine schedule steps
  c.dm.cosine_s = 0.008            # cosine schedule offset s (Nichol & Dhariwal)
  c.dm.max_beta = 0.999            # per-step beta clip; it sets how stiff the chain is near t = T
  # What the network predicts: "v" (velocity; well-conditioned at t = T, where abar -> 0) or "eps", eq. (6)
  # as the paper writes it (a labelled ablation: its errors reach x0_hat multiplied by sqrt((1 - abar) / abar)).
  c.dm.prediction = "v"
  c.dm.p_uncond = 0.1              # CFG training: probability of the null token
  c.dm.variance = "posterior"      # reverse-step variance: posterior (beta_tilde) | beta
  c.dm.clip_x0 = 4.0               # clip |x0_hat| per element during sampling (unit-power channels); 0: eq. (5) as is

  c.train = ml_collections.ConfigDict()
  c.train.models = ("sl", "dm", "e2e")
  c.train.batch_size = 64
  c.train.epochs = ml_collections.ConfigDict({"sl": 100, "dm": 100, "e2e": 100})
  c.train.lr = 1e-4
  c.train.decay_every_epochs = 30
  c.train.decay_factor = 0.5
  c.train.test_loss_samples = 512
  # The training split's last val_samples are held out of training; each model keeps the parameters with the lowest
  # loss on them, its initial (Gaussian-anchored) ones included, so a residual that only fits the training
  # histories is never kept (high mobility's SL: docs/perception.md). 0: train on all, keep the last epoch.
  c.train.val_samples = 5000

  c.eval = ml_collections.ConfigDict()
  c.eval.enabled = True
  c.eval.num_test = 5000
  c.eval.batch_size = 64
  c.eval.n_streams = 2             # N_s
  c.eval.num_samples = 16          # K posterior samples for the Bayesian precoder
  c.eval.guidance = 1.0            # w for Tables II/III (1 = conditional sampling)
  # How Tables II/III and Fig. 7 draw the DM's K samples (jaxchan.ddpm_solvers spec): DPM-Solver++(2M) at 10
  # network calls, within 0.01 bps/Hz of the full chain's K = 16 SE on both trained :quick DMs at a tenth of the
  # calls (docs/fast_sampling.md); "ancestral" is the full chain (the paper's; the committed :quick tables).
  # Fig. 8's guidance sweep, the trajectory study and Fig. 5 always use the full chain.
  c.eval.sampler = "dpm2m:10"
  c.eval.allow_extrapolation = False
  c.eval.dl_snr_offset_db = 10.0   # DL SNR = UL SNR + offset
  c.eval.dl_snr_grid_db = (-10.0, -5.0, 0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0)  # Fig. 7
  c.eval.guidance_scales = (0.0, 0.25, 0.5, 0.75, 1.0)                       # Fig. 8
  c.eval.sweep_num_test = 1000
  c.eval.trajectory_num_test = 1000
  c.eval.cg_num_test = 1000        # test channels for the Riemannian-CG check of eq. (27)
  c.eval.cg_iters = 50
  c.eval.example_index = 0         # Fig. 5
  # Fast posterior sampling (docs/fast_sampling.md): K-sample SE and one-sample NMSE per sampler (jaxchan.ddpm_solvers specs;
  # "ancestral" alone is the full chain), plus the distilled students when config.distill.enabled.
  c.eval.solvers = ("ancestral", "ancestral:10", "ddim:10", "dpm2m:10", "dpm2m:5", "dpm2m:2")
  c.eval.fast_num_test = 256

  # Progressive distillation of the DM (jaxchan.distill): one stage per entry, each halving the step count;
  # the first teacher is this run's DM (or the trained DM folder `teacher`). Off by default (GPU work at
  # paper scale); :smoke runs it.
  c.distill = ml_collections.ConfigDict()
  c.distill.enabled = False
  c.distill.steps = (32, 16, 8, 4)
  c.distill.epochs = 10            # per stage
  c.distill.lr = 1e-4
  c.distill.teacher = ""

  variants = configs.variants(arg, "perception", {"smoke", "quick", "literal"} | set(SCENARIOS),
                              exclusive=("smoke", "quick"))
  chosen = tuple(s for s in SCENARIOS if s in variants)
  if chosen:
    c.scenarios = chosen
  if "literal" in variants:
    c.model.anchor = "none"
  if "quick" in variants:
    c.model.enc_layers = c.model.dec_layers = 2
    # 52 tokens a side instead of 208 (1/16 of the attention cost on CPU). A token then holds all 4 UE
    # antennas; with 16 BS antennas it has 2 x 16 x 4 = 128 reals = d_model, so the read-in of x_t is
    # full rank (with all 32 antennas it would be 256 -> 128 and half of x_t invisible).
    c.data.bs_antennas = 16
    c.model.ue_per_token = 4
    c.dm.T = 100
    c.train.lr = 3e-4
    c.train.decay_every_epochs = 10
    scale(c, size="small", batch=32, epochs=(15, 30, 15), test_loss=256, num_test=256, sweep=32, trajectory=128,
          cg=64, val=400)          # 4,000 train (3,600 trained on, 400 held out) / 1,000 test
    c.distill.epochs = 5
    c.distill.lr = 3e-4
  if "smoke" in variants:
    # Tables and figures say so: a :smoke run checks the pipeline, its numbers mean nothing.
    c.pipeline_check = True
    c.model.d_model = 32
    c.model.num_heads = 2
    c.model.enc_layers = c.model.dec_layers = 1
    c.model.mlp_ratio = 2
    c.model.ue_per_token = 4
    c.data.bs_antennas = 4         # 2 x 4 x 4 = 32 reals = d_model
    c.dm.T = 10
    c.eval.num_samples = 4
    c.eval.guidance_scales = (0.0, 1.0)
    c.eval.cg_iters = 5
    c.eval.sampler = "dpm2m:4"
    c.eval.solvers = ("dpm2m:4",)
    c.eval.fast_num_test = 8
    c.distill.enabled = True
    c.distill.steps = (2,)         # one stage (each stage compiles its own programs; :quick runs four)
    c.distill.epochs = 1
    scale(c, size="tiny", batch=16, epochs=(2, 2, 2), test_loss=16, num_test=16, sweep=4, trajectory=8,
          cg=4, val=8)             # 32 train (24 + 8 held out) / 16 test
  return c
