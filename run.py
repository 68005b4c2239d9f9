"""jaxchan entry point: one job per config.

  python run.py --config=configs/sampler_study.py[:variant] --workdir=DIR [--config.a.b=value ...]

The config's ``experiment`` field names a module registered in
:mod:`jaxchan.experiments`; it receives the config and the work directory.
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "Config file, optionally FILE:variant.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, results, tables and figures "
                    "(default: workdir/<config name>[_<variant>]).")
flags.mark_flags_as_required(["config"])
FLAGS = flags.FLAGS


def default_workdir(config_arg: str) -> str:
  path, _, variant = config_arg.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  return os.path.join("workdir", name + (f"_{variant}" if variant else ""))


def main(argv):
  del argv
  from jaxchan import experiments  # imported after flag parsing so --help stays fast

  if not FLAGS["verbosity"].present:
    # Orbax and JAX log every checkpoint write at INFO; keep the console for progress bars.
    logging.set_verbosity(logging.WARNING)
  config = FLAGS.config
  workdir = FLAGS.workdir or default_workdir(config_flags.get_config_filename(FLAGS["config"]))
  experiment = experiments.get(config.experiment)
  logging.info("experiment %s -> %s", config.experiment, workdir)
  experiment.run(config, workdir)
  print(f"results written to {os.path.abspath(workdir)}")


if __name__ == "__main__":
  app.run(main)
