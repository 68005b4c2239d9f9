"""jaxchan entry point: one job per config.

  python run.py --config=configs/noniden.py[:variant] --workdir=DIR [--config.a.b=value ...]
  # multi-host: the same command on every host, plus
  #   --coordinator=HOST0:1234 --num_processes=N --process_id=I

The config's ``experiment`` field names a module registered in
:mod:`jaxchan.experiments`; its ``validate(config)`` runs first (a config error is one
line naming the field, before any dataset is built or model trained), then
``run(config, workdir)``. ``python run.py --help`` lists the configs and their variants.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the configs package, from any directory
import configs  # noqa: E402

config_flags.DEFINE_config_file("config", None, "Config file, optionally FILE:variant[,variant]. Available:\n\n"
                                + configs.describe(), lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, results, tables and figures "
                    "(default: workdir/<config name>[_<variant>]).")
flags.DEFINE_string("coordinator", None, "Multi-host runs: address:port of process 0 (jax.distributed).")
flags.DEFINE_integer("num_processes", None, "Multi-host runs: number of processes (one per host).")
flags.DEFINE_integer("process_id", None, "Multi-host runs: this process's index, 0 .. num_processes - 1.")
flags.mark_flags_as_required(["config"])
FLAGS = flags.FLAGS


def default_workdir(config_arg: str) -> str:
  path, _, variant = config_arg.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  return os.path.join("workdir", name + (f"_{variant}" if variant else ""))


def main(argv):
  del argv
  from jaxchan import experiments, parallel  # imported after flag parsing so --help stays fast

  # Before any other JAX call: join the other hosts (no-op for a single process).
  parallel.initialize(FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id)

  if not FLAGS["verbosity"].present:
    # Orbax and JAX log every checkpoint write at INFO; keep the console for progress bars.
    logging.set_verbosity(logging.WARNING)
  config = FLAGS.config
  workdir = FLAGS.workdir or default_workdir(config_flags.get_config_filename(FLAGS["config"]))
  try:
    experiment = experiments.get(config.experiment)
    experiment.validate(config)
  except ValueError as e:
    # A config error (validate raises ValueError only for those): one line naming the field, nothing built or
    # trained yet. Anything else is a bug and keeps its traceback.
    print(f"config error: {e}", file=sys.stderr)
    sys.exit(2)
  logging.info("experiment %s -> %s", config.experiment, workdir)
  experiment.run(config, workdir)
  print(f"results written to {os.path.abspath(workdir)}")


if __name__ == "__main__":
  app.run(main)
