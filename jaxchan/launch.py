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


def _fail(kind: str, message: str, workdir: str | None = None) -> None:
  """A user mistake: one line on stderr (the traceback, if any, went to the log), exit status 2."""
  print(f"{kind} error: {' '.join(str(message).split())}", file=sys.stderr)
  sys.exit(2)


def non_finite_fields(config, prefix: str = "config") -> list[str]:
  """Dotted names of every float field (also inside tuples) that is NaN or infinite."""
  import math
  out = []
  for k, v in config.items():
    name = f"{prefix}.{k}"
    if hasattr(v, "items"):
      out += non_finite_fields(v, name)
    elif isinstance(v, float) and not math.isfinite(v):
      out.append(f"{name}={v}")
    elif isinstance(v, (tuple, list)) and any(isinstance(x, float) and not math.isfinite(x) for x in v):
      out.append(f"{name}={v}")
  return out


def _log_traceback_to_file(workdir: str) -> None:
  """The current exception's traceback into ``WORKDIR/jaxchan.log`` only (the console gets one line)."""
  import logging as std
  import traceback
  for h in std.getLogger().handlers:
    if isinstance(h, std.FileHandler):
      h.stream.write(f"stopped by a user error:\n{traceback.format_exc()}")
      h.flush()


def _workdir_can_be_made(workdir: str) -> None:
  """Refuse a --workdir that cannot become a writable directory, creating nothing: its nearest existing ancestor
  must be a writable directory (the config and dataset checks, which trace models, come after this)."""
  path = os.path.abspath(workdir)
  while not os.path.exists(path):
    path = os.path.dirname(path)
  if not os.path.isdir(path) or not os.access(path, os.W_OK | os.X_OK):
    why = "not a directory" if not os.path.isdir(path) else "not writable"
    _fail("workdir", f"--workdir={workdir} cannot be used: {path} is {why}; pass a writable directory.")


def _usable_workdir(workdir: str) -> None:
  """Create ``workdir`` (and parents) now and check it is writable, so a bad --workdir fails before any work."""
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, ".jaxchan_write_probe")
    with open(probe, "w"):
      pass
    os.remove(probe)
  except OSError as e:
    _fail("workdir", f"--workdir={workdir} cannot be used: {e.strerror or e} ({e.filename or workdir}); "
                     "pass a writable directory.")


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
  bad = non_finite_fields(config)
  if bad:
    _fail("config", f"{', '.join(bad)}: every numeric field must be finite; give a number.")
  _workdir_can_be_made(workdir)
  from jaxchan import data
  try:
    experiment = experiments.get(config.experiment)
    if hasattr(experiment, "preflight"):
      experiment.preflight(config)     # a user's dataset path: missing, damaged, wrong kind, too small
    experiment.validate(config)
  except data.DatasetError as e:
    _fail("dataset", e)
  except ValueError as e:
    # A config error (validate raises ValueError only for those): one line naming the field, nothing built or
    # trained yet. Anything else is a bug and keeps its traceback.
    _fail("config", e)
  _usable_workdir(workdir)
  if FLAGS["verbosity"].present:
    logging.info("verbosity set on the command line; jaxchan.log is not written")
  else:
    common.setup_logging(workdir)
  from jaxchan import train
  import time
  started = time.time()
  try:
    results = experiment.run(config, workdir)
  except train.NonFiniteLoss as e:
    _log_traceback_to_file(workdir)
    suspects = ", ".join(f"config.{k}={v}" for k, v in (("train.lr", config.train.get("lr")),
                                                        ("beta_max", config.get("beta_max")),
                                                        ("train.batch_size", config.train.get("batch_size")))
                         if v is not None)
    _fail("training", f"{e} Most likely responsible: {suspects}.")
  except (data.DatasetError, ValueError) as e:
    # Dataset problems and config values that only the opened dataset can refute (sizes, shapes): one line;
    # the traceback goes to jaxchan.log (or the console with --verbosity).
    if FLAGS["verbosity"].present:
      raise
    _log_traceback_to_file(workdir)
    _fail("dataset" if isinstance(e, data.DatasetError) else "config", e)
  logging.info("results written to %s:\n%s", os.path.abspath(workdir), written_summary(workdir, started))
  from jaxchan.experiments import report
  lines = report.headline(results) if isinstance(results, dict) else ""
  if lines:
    logging.info("%s", lines)


def written_summary(workdir: str, since: float) -> str:
  """The files a job wrote or changed under ``workdir`` since ``since``: outputs one per line, checkpoints counted
  per model folder."""
  outputs, models = [], {}
  for root, _, names in os.walk(workdir):
    for n in names:
      path = os.path.join(root, n)
      if os.path.getmtime(path) < since - 1:
        continue
      rel = os.path.relpath(path, workdir)
      parts = rel.split(os.sep)
      if "models" in parts and len(parts) > parts.index("models") + 2:
        key = os.sep.join(parts[:parts.index("models") + 2])
        models[key] = models.get(key, 0) + 1
      else:
        outputs.append(rel)
  lines = [f"  {p}" for p in sorted(outputs)]
  lines += [f"  {k}/ ({n} checkpoint and log files)" for k, n in sorted(models.items())]
  return "\n".join(lines) or "  (nothing new)"


def main(argv=None):
  """``jaxchan-run`` / ``python run.py``."""
  argv = list(sys.argv if argv is None else argv)
  if any(a in ("-h", "--help", "-?", "--helpshort") for a in argv[1:]):
    # absl's --help lists the flags of the __main__ module; this one's are the job's.
    print(__doc__.strip() + "\n\nflags:\n" + FLAGS.module_help(__name__) + "\n\nTry --helpfull for absl's own flags.")
    sys.exit(0)
  argv = [f"--config={config_file(a.split('=', 1)[1])}" if a.startswith("--config=") else a for a in argv]
  _check_config_args(argv)
  app.run(_job, argv=argv)


def _check_config_args(argv) -> None:
  """A missing config file or an unknown config field: one line (absl would print chained tracebacks)."""
  import difflib
  import importlib.util
  spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  if spec is None:
    return
  path, _, variant = spec.partition(":")
  if not os.path.exists(path):
    _fail("config", f"no config file {path!r}; the configs are {', '.join(configs.NAMES)} "
                    f"(e.g. --config=configs/noniden.py:quick or --config=noniden:quick).")
  try:
    loader = importlib.util.spec_from_file_location("_jaxchan_config_check", path)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    config = module.get_config(variant) if variant else module.get_config()
  except ValueError as e:
    _fail("config", e)
  for a in argv:
    if not a.startswith("--config.") or "=" not in a:
      continue
    field = a[len("--config."):].split("=", 1)[0]
    node, walked = config, []
    for part in field.split("."):
      if not hasattr(node, "keys") or part not in node:
        options = list(node.keys()) if hasattr(node, "keys") else []
        near = difflib.get_close_matches(part, options, n=1)
        where = "config" + "".join(f".{w}" for w in walked)
        hint = f"; did you mean --config.{'.'.join(walked + [near[0]])}?" if near else \
            (f"; {where} has {', '.join(options)}" if options else f"; {where} is a value, not a group")
        _fail("config", f"--config.{field}: {where} has no field {part!r}{hint}")
      node = node[part]
      walked.append(part)


if __name__ == "__main__":
  main()
