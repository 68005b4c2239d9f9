"""Non-identical diffusion (jaxchan.experiments.noniden). Work in progress: see README "Status".

Variants (``--config=configs/noniden.py:VARIANT``):
  (none)  paper scale: simo_ofdm full dataset (43,440 / 10,860), 100 epochs; for a GPU or TPU.
  smoke   end to end on a tiny dataset it builds itself, in about a minute on 2 CPU cores.
"""

import ml_collections


def model(placement="col", averaging="alpha", input_norm="noise", tau_pattern="all"):
  m = ml_collections.ConfigDict()
  m.placement = placement      # row | col | both | identical
  m.averaging = averaging      # tau (eqs. 17-18) | alpha (eqs. 19-20)
  m.input_norm = input_norm    # noise (identical noise power) | power (identical total power)
  m.tau_pattern = tau_pattern  # same | independent | periodical | car_only | non_directional | all
  m.num_layers = 5
  m.expansion = 2
  m.embed_dim = 64
  return m


def get_config(arg: str = ""):
  c = ml_collections.ConfigDict()
  c.experiment = "noniden"
  c.seed = 0
  c.T = 100
  c.progress = True

  c.data = ml_collections.ConfigDict()
  c.data.preset = "simo_ofdm"
  c.data.size = "full"
  c.data.seed = 0
  c.data.path = ""               # default: data/<preset>_<size>.h5
  c.data.build_if_missing = True
  c.data.n_bs = 32
  c.data.n_freq = 64

  # The paper's best non-identical model, and the identical (scalar-time) baseline.
  c.models = ml_collections.ConfigDict()
  c.models.nonid = model()
  c.models.identical = model(placement="identical", tau_pattern="same")

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 64
  c.train.num_epochs = 100
  c.train.lr = 1e-3
  c.train.decay_every_epochs = 30
  c.train.decay_factor = 0.5
  c.train.test_loss_samples = 512

  c.eval = ml_collections.ConfigDict()
  c.eval.main_model = "nonid"
  c.eval.compare_identical = "identical"
  c.eval.patterns = ("white", "exp", "salt", "salt_rec", "pilot", "pilot_car")
  c.eval.steppings = ("tau-waterfilling", "tau-uniform", "tau-hybrid0.7", "tau-hybrid0.5", "tau-hybrid0.3",
                      "alpha-waterfilling", "alpha-uniform", "alpha-hybrid0.7", "alpha-hybrid0.5",
                      "alpha-hybrid0.3")
  c.eval.samplers = ("eq9:0.4", "eta:0.0", "eta:1.0")
  c.eval.num_steps = 50
  c.eval.num_test = 10860
  c.eval.batch_size = 256
  c.eval.variance_consistent = False

  variant = arg or "default"
  if variant == "smoke":
    c.data.size = "tiny"
    c.train.batch_size = 16
    c.train.num_epochs = 2
    c.train.test_loss_samples = 32
    for m in c.models.values():
      m.num_layers = 2
      m.embed_dim = 16
    c.eval.patterns = ("salt", "pilot_car")
    c.eval.steppings = ("tau-waterfilling", "tau-uniform")
    c.eval.samplers = ("eq9:0.4", "eta:1.0")
    c.eval.num_steps = 5
    c.eval.num_test = 16
    c.eval.batch_size = 16
  elif variant != "default":
    raise ValueError(f"unknown variant {variant!r} for configs/noniden.py; choose '' or 'smoke'.")
  return c
