"""The job launcher behind ``python run.py`` and the ``jaxchan-run`` command: one job per config.

  jaxchan-run --config=configs/noniden.py[:variant] --workdir=DIR [--config.a.b=value ...]
  jaxchan-run --config=noniden:quick            # a config by name (the installed configs package)
  # multi-host: the same command on every host, plus
  #   --coordinator=HOST0:1234 --num_processes=N --process_id=I

The config's ``experiment`` field names a module registered in
:mod:`jaxchan.experiments`; its ``validate(config)`` runs first (a config error is one
line naming the field, before any dataset is built or model trained), then
``run(config, workdir)``. Progress goes through absl to the console and to
``WORKDIR/jaxchan.log``; training curves also to TensorBoard event files (with the
``tensorboard`` extra): ``tensorboard --logdir WORKDIR``. ``--help`` lists the configs
and their variants.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

import configs

config_flags.DEFINE_config_file("config", None, "Config file, optionally FILE:variant[,variant], or NAME[:variant] "
                                "of an installed config. Available:\n\n" + configs.describe(), lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, results, tables, figures and jaxchan.log "
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


def config_file(arg: str) -> str:
  """``NAME[:variant]`` of an installed config as its file path (so ``--config=noniden:quick`` works anywhere);
  anything else unchanged."""
  name, sep, variant = arg.partition(":")
  if os.sep not in name and not name.endswith(".py") and name in configs.NAMES:
    return os.path.join(os.path.dirname(os.path.abspath(configs.__file__)), name + ".py") + sep + variant
  return arg


def _job(argv):
  del argv
  from jaxchan import experiments, parallel  # imported after flag parsing so --help stays fast
  from jaxchan.experiments import common

  if not FLAGS["verbosity"].present:
    common.setup_logging(None)   # the console filter now (JAX's start-up INFO lines stay out); the file below
  # Before any other JAX call: join the other hosts (no-op for a single process).
  parallel.initialize(FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id)
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
  if FLAGS["verbosity"].present:
    logging.info("verbosity set on the command line; jaxchan.log is not written")
  else:
    log_file = common.setup_logging(workdir)
    logging.info("experiment %s -> %s (log: %s)", config.experiment, workdir, log_file)
  experiment.run(config, workdir)
  logging.info("results written to %s", os.path.abspath(workdir))


def main(argv=None):
  """``jaxchan-run`` / ``python run.py``."""
  argv = list(sys.argv if argv is None else argv)
  if any(a in ("-h", "--help", "-?", "--helpshort") for a in argv[1:]):
    # absl's --help lists the flags of the __main__ module; this one's are the job's.
    print(__doc__.strip() + "\n\nflags:\n" + FLAGS.module_help(__name__) + "\n\nTry --helpfull for absl's own flags.")
    sys.exit(0)
  argv = [f"--config={config_file(a.split('=', 1)[1])}" if a.startswith("--config=") else a for a in argv]
  app.run(_job, argv=argv)


if __name__ == "__main__":
  main()
