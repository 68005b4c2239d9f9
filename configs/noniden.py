"""Non-identical diffusion (jaxchan.experiments.noniden): train the models, generate from six noise patterns.

Variants (``--config=configs/noniden.py:VARIANT[,VARIANT]``):
  (none)      paper scale: simo_ofdm full dataset (43,440 / 10,860), 100 epochs; for a GPU or TPU.
  quick       paper-size network, small dataset (8,000 / 2,000), 12 epochs (22 with literal).
  raytraced   combinable: the ray-traced street_canyon dataset (Sionna RT, python -m datagen.rt) in place of
              the UMa stand-in simo_ofdm, e.g. :quick,raytraced; anchored on a mixture of 8 rank-16 Gaussians.
  smoke       end to end on a tiny dataset it builds itself, in about a minute on 2 CPU cores.
  table1      the 48 training runs of Table I (3 placements x 2 averagings x 2 inputs x 4 patterns);
              finished runs are skipped on rerun, and the table is assembled from all of them.
  embeddings  adds row / both placements and tau averaging, trained on "all_masked", for Fig. 8.
  literal     combinable: every model without the Gaussian anchor (the paper's networks as printed; ablation).
  lowrank     combinable: every model anchored on one rank-64 plus diagonal Gaussian (the mixture's ablation).
  main        combinable: the main model alone (no identical baseline, no Table III models), e.g. :quick,main.
Every variant trains the main non-identical model ("nonid": column-wise embedding, alpha
averaging, identical-noise-power input, "all_masked" pattern), the identical baseline and one model
per training pattern (Table III, the paper's "all" among them as nonid_all), unless table1 replaces them by its
grid or main keeps the main model alone.
"""

import ml_collections

import configs


def model(placement="col", averaging="alpha", input_norm="noise", tau_pattern="all_masked", anchor="kronecker"):
  m = ml_collections.ConfigDict()
  # kronecker: D = Gaussian posterior mean under the training set's Kronecker prior + the network's residual
  # (jaxchan.denoiser; the network's output layer starts at zero). none: the paper's network alone (ablation).
  m.anchor = anchor
  m.placement = placement      # row | col | both | identical
  m.averaging = averaging      # tau (eqs. 17-18) | alpha (eqs. 19-20)
  m.input_norm = input_norm    # noise (identical noise power) | power (identical total power)
  # same | independent | periodical | car_only | masked | non_directional | all | all_masked. all_masked (the
  # paper's four patterns and masked maps, where unobserved elements sit at T) is the default: trained on the
  # paper's "all", the anchored model drifts off its anchor on pilot maps (docs/noniden.md); "all" stays as nonid_all.
  m.tau_pattern = tau_pattern
  m.num_layers = 5
  m.expansion = 2
  m.embed_dim = 64
  return m


# The size knobs each scale changes together (data, not branches): dataset size, epochs and learning-rate decay,
# batch, test sizes, LMMSE training channels, Table I's averaging window.
SCALES = {
    "paper": dict(size="full", epochs=100, decay_every_epochs=30, batch_size=64, test_loss_samples=512,
                  num_test=10860, eval_batch=256, lmmse_train=20000, last_epochs=50),
    # About an hour on 2 CPU cores: the paper-size network on a small dataset (8,000 train / 2,000 test).
    # Anchored models start at the Gaussian bound and need fewer epochs than the literal networks (22, the
    # committed literal run; :quick,literal keeps them).
    "quick": dict(size="small", epochs=12, decay_every_epochs=8, batch_size=64, test_loss_samples=256, num_test=128,
                  eval_batch=128, lmmse_train=8000, last_epochs=4),
    "quick_literal": dict(size="small", epochs=22, decay_every_epochs=8, batch_size=64, test_loss_samples=256,
                          num_test=128, eval_batch=128, lmmse_train=8000, last_epochs=4),
    # End to end on a tiny dataset in about a minute; its numbers mean nothing (tables and figures say so).
    "smoke": dict(size="tiny", epochs=2, decay_every_epochs=30, batch_size=16, test_loss_samples=32, num_test=16,
                  eval_batch=16, lmmse_train=64, last_epochs=1),
}


def apply_scale(c, *, size, epochs, decay_every_epochs, batch_size, test_loss_samples, num_test, eval_batch,
                lmmse_train, last_epochs):
  c.data.size = size
  c.train.num_epochs = epochs
  c.train.decay_every_epochs = decay_every_epochs
  c.train.batch_size = batch_size
  c.train.test_loss_samples = test_loss_samples
  c.eval.num_test = num_test
  c.eval.batch_size = eval_batch
  c.eval.lmmse_train_samples = lmmse_train
  c.eval.table1_last_epochs = last_epochs


def get_config(arg: str = ""):
  c = ml_collections.ConfigDict()
  c.experiment = "noniden"
  c.seed = 0
  c.T = 100
  c.beta_max = 0.2               # eq. (10)
  # Floor of beta in the identical-noise-power input (Sec. III-A), training and generation alike;
  # 0: beta(1) of the schedule, the smallest time training draws (see train.tau_min).
  c.min_beta = 0.0
  c.progress = True
  c.pipeline_check = False

  # The Gaussian anchor's prior (jaxchan.gaussian_prior): fitted on the first train_samples training channels,
  # eigenvalues floored at shrinkage x their mean; its posterior solved by CG to tol or max_iter iterations
  # (16 bring the training velocity loss within a few % of the converged solve: docs).
  # rank: the "lowrank" structure's leading eigenpairs (plus the diagonal they leave), solved exactly; 64 matches the
  # full-covariance LMMSE on the ray-traced street canyon (docs/noniden.md). components, rounds: the "mixture"
  # structure, that many rank-`rank` plus diagonal Gaussians fitted by classification EM (k-means start, then
  # `rounds` reassignments); its posterior mean is the exact mixture posterior.
  c.anchor = ml_collections.ConfigDict(dict(train_samples=20000, shrinkage=1e-4, tol=1e-4, max_iter=16, rank=64,
                                            components=8, rounds=3))

  c.data = ml_collections.ConfigDict()
  c.data.preset = "simo_ofdm"      # size: from the scale (SCALES)
  c.data.seed = 0
  c.data.path = ""               # default: data/<preset>_<size>.h5
  c.data.build_if_missing = False  # the default path (data/...) is built when missing; a path you give only if True
  c.data.n_bs = 32
  c.data.n_freq = 64

  # The paper's best non-identical model, and the identical (scalar-time) baseline.
  c.models = ml_collections.ConfigDict()
  c.models.nonid = model()
  c.models.identical = model(placement="identical", tau_pattern="same")

  c.train = ml_collections.ConfigDict()
  c.train.lr = 1e-3
  c.train.decay_factor = 0.5
  # Training times are integers in {tau_min, ..., T}: 1 (default) trains on exactly the times generation
  # evaluates the network at; 0 is the paper's literal range, an ablation (needs min_beta >= beta(1)).
  c.train.tau_min = 1

  c.eval = ml_collections.ConfigDict()
  c.eval.main_model = "nonid"
  c.eval.models = ("nonid", "identical")          # models whose generation is evaluated
  c.eval.full_grid_models = ("nonid",)  # every stepping (first sampler) and every sampler (first stepping)
  c.eval.lmmse = True                             # LMMSE baseline with the training-set sample covariance
  c.eval.bound_samples = 16                       # tau draws for the Gaussian bound on each training loss
  c.eval.compare_identical = "identical"
  c.eval.patterns = ("white", "exp", "salt", "salt_rec", "pilot", "pilot_car")
  c.eval.steppings = ("tau-waterfilling", "tau-uniform", "tau-hybrid0.7", "tau-hybrid0.5", "tau-hybrid0.3",
                      "alpha-waterfilling", "alpha-uniform", "alpha-hybrid0.7", "alpha-hybrid0.5",
                      "alpha-hybrid0.3")
  # The first sampler is the default (picked by the eta sweep on :quick, docs/noniden.md); "eq9:0.4" is the
  # paper's eq. (9) as printed, an ablation row.
  c.eval.samplers = ("eta:1.0", "eta:0.0", "eta:0.2", "eta:0.4", "eta:0.6", "eta:0.8", "eq9:0.4")
  c.eval.num_steps = 50
  # "consistent": a genuine forward-process sample at tau0 (default); "paper": eqs. (15)-(16) as
  # printed, evaluated as an ablation row for the main model.
  c.eval.start = "consistent"
  c.eval.background = 0.1        # share of the noise energy spread evenly over all elements (Sec. V-C)
  # Per-pattern SNR over the kept elements, dB (the paper's values; jaxchan.noise_patterns.DEFAULT_SNR_DB).
  c.eval.snr_db = ml_collections.ConfigDict(dict(white=-10.0, exp=-5.0, salt=0.0, salt_rec=0.0, pilot=10.0,
                                                 pilot_car=10.0))

  # Table III: one model per training tau-pattern (the main model is "all_masked"; "all" is the paper's main).
  for pattern in ("same", "independent", "periodical", "car_only", "non_directional", "all"):
    c.models[f"nonid_{pattern}"] = model(tau_pattern=pattern)
  c.eval.models = tuple(c.models.keys())

  variants = configs.variants(arg, "noniden",
                              {"smoke", "quick", "table1", "embeddings", "raytraced", "literal", "main",
                               "lowrank"},
                              exclusive=("smoke", "quick"))
  # 1. Scale: one preset.
  preset = "smoke" if "smoke" in variants else "quick" if "quick" in variants else "paper"
  if preset == "quick" and "literal" in variants:
    preset = "quick_literal"
  apply_scale(c, **SCALES[preset])
  if "raytraced" in variants:
    # Sionna RT's street canyon (python -m datagen.rt) instead of the stochastic UMa stand-in: sparse,
    # few-path channels like DeepMIMO O1's. Same shapes ([N, 32, 64]), so nothing else changes.
    c.data.preset = "street_canyon"
  if "smoke" in variants:
    c.pipeline_check = True
    c.eval.bound_samples = 2
    c.eval.patterns = ("salt", "pilot_car")
    c.eval.steppings = ("tau-waterfilling", "tau-uniform")
    c.eval.samplers = ("eta:1.0", "eq9:0.4")
    c.eval.num_steps = 5

  # 2. Which models: the default set, the main model alone, :smoke's pair, or Table I's grid; plus Fig. 8's.
  if "table1" in variants:
    # The 48 training runs of Table I (training only; the sweep skips finished runs).
    grid = ml_collections.ConfigDict()
    for placement in ("row", "col", "both"):
      for averaging in ("tau", "alpha"):
        for norm in ("noise", "power"):
          for pattern in ("same", "independent", "periodical", "car_only"):
            grid[f"t1_{placement}_{averaging}_{norm}_{pattern}"] = model(placement, averaging, norm, pattern)
    c.models = grid
    c.eval.main_model = "t1_col_alpha_noise_same"
    c.eval.compare_identical = ""
    c.eval.models = ()
    c.eval.full_grid_models = ()
    c.eval.lmmse = False
  elif "smoke" in variants:
    c.models = ml_collections.ConfigDict({"nonid": model(), "identical": model("identical", tau_pattern="same")})
    c.eval.models = ("nonid", "identical")
  if "main" in variants and "table1" not in variants:
    # The main model alone (no identical baseline, no Table III models): its one-shot and generation study at
    # an eighth of the training cost.
    c.models = ml_collections.ConfigDict({"nonid": c.models.nonid})
    c.eval.models = ("nonid",)
    c.eval.compare_identical = ""
  if "embeddings" in variants and "table1" not in variants:
    # Fig. 8: the three placements (and both averagings), trained on "all_masked", compared in generation.
    for placement in ("row", "both"):
      c.models[f"emb_{placement}"] = model(placement=placement)
    c.models["emb_col_tau"] = model(averaging="tau")
    c.eval.models = tuple(c.eval.models) + ("emb_row", "emb_both", "emb_col_tau")

  # 3. What every model gets from the variants, whatever the set.
  shared = {}
  if "smoke" in variants:
    shared.update(num_layers=2, embed_dim=16)
  if "raytraced" in variants:
    # Few-path channels: the Kronecker product misses their non-separable structure (1.3-1.8x the full-covariance
    # LMMSE), rank 64 plus diagonal matches it, and a mixture of 8 rank-16 Gaussians (the covariance changes with
    # the user's position) has 44-59 % less one-shot error than either, at half the rank-64 solve's cost
    # (docs/noniden.md).
    shared.update(anchor="mixture")
    c.anchor.rank = 16
  if "lowrank" in variants:
    # One Gaussian instead of the mixture: on the street canyon it equals the full-covariance LMMSE (docs).
    shared.update(anchor="lowrank")
    c.anchor.rank = 64
  if "literal" in variants:
    # The paper's networks without the Gaussian anchor (the ablation), e.g. :quick,literal.
    shared.update(anchor="none")
  for m in c.models.values():
    m.update(shared)
  return c
