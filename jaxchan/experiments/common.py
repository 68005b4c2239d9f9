"""What every experiment does around its science: data, keys, training, loading, config checks, outputs.

Experiments describe their data by a ``config.data``-like ConfigDict with
``preset``, ``size``, ``seed``, ``path`` ("" for ``data/<preset>_<size>.h5``)
and ``build_if_missing``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import zlib
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from absl import logging

from jaxchan import data, files, train


def log(msg: str) -> None:
  """One line of an experiment's progress, through absl at INFO.

  ``run.py`` shows jaxchan's INFO lines on the console and writes them to ``WORKDIR/jaxchan.log``
  (:func:`setup_logging`); in a notebook, ``absl.logging.set_verbosity("info")`` shows them.
  """
  logging.info("%s", msg)


class _OwnInfo:
  """A handler filter: jaxchan's and datagen's records from INFO up, everyone else's (orbax, jax) from WARNING."""

  def __init__(self):
    import datagen
    import jaxchan
    # The packages' own directories (not any path containing "jaxchan": a venv inside a clone named jaxchan holds
    # orbax and JAX too).
    self.roots = tuple(os.path.dirname(os.path.abspath(m.__file__)) + os.sep for m in (jaxchan, datagen))

  def filter(self, record) -> bool:
    import logging as std
    own = os.path.abspath(record.pathname).startswith(self.roots)
    return record.levelno >= (std.INFO if own else std.WARNING)


def setup_logging(workdir: str | None) -> str | None:
  """absl at INFO with the :class:`_OwnInfo` filter on the console and in ``WORKDIR/jaxchan.log`` (appended to, so a
  resumed job keeps one log); returns the log file's path. Process 0 writes the file, the others log to the
  console only; ``workdir=None`` sets up the console alone."""
  import logging as std

  logging.set_verbosity(logging.INFO)
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _OwnInfo) for f in handler.filters):
    handler.addFilter(_OwnInfo())
  if workdir is None:
    return None
  path = os.path.join(workdir, "jaxchan.log")
  if is_main_process():
    os.makedirs(workdir, exist_ok=True)
    logger = std.getLogger()   # the root logger: absl's records propagate to it, and so do JAX's own warnings
    if not any(isinstance(h, std.FileHandler) and h.baseFilename == os.path.abspath(path) for h in logger.handlers):
      fh = std.FileHandler(path)
      fh.setFormatter(logging.PythonFormatter())
      fh.addFilter(_OwnInfo())
      logger.addHandler(fh)
  return path


def validated_once(validate: Callable) -> Callable:
  """``validate(config)`` whose acceptance of a config value is reused by the next call with the same value.

  A job is validated by the launcher (before its workdir and log exist) and again at the top of ``run`` (for
  callers in Python); an experiment's validation traces its models, so the second pass would repeat seconds of
  tracing. The acceptance is used once and then forgotten, so any later call validates again (a validation may
  read the disk, e.g. a distillation teacher's folder). Keyed on the config's JSON; a config without one (a numpy
  value in a field) is validated every time; a refused config is never remembered.
  """
  last: list[str] = []

  @functools.wraps(validate)
  def once(config):
    try:
      value = config.to_json()
    except TypeError:
      value = None
    if value is not None and last == [value]:
      last.clear()
      return
    validate(config)
    last[:] = [value] if value is not None else []

  return once


def key(config, tag: str) -> jax.Array:
  """The PRNG key of one named use of randomness: ``fold_in(PRNGKey(config.seed), crc32(tag))``.

  The trained experiments (noniden, perception, perception_oracle's learned models)
  take their initialization, test-loss and evaluation keys from here, so
  ``--config.seed`` moves all of them and two uses never share a key by accident; the
  studies without training split ``PRNGKey(config.seed)`` themselves.
  """
  return jax.random.fold_in(jax.random.PRNGKey(config.seed), zlib.crc32(tag.encode()) & 0x7FFFFFFF)


@contextlib.contextmanager
def field(name: str):
  """Re-raise a kernel's ``ValueError`` (its input checks) as one that names the config field.

  ``validate`` functions build the real objects (schedules, samplers, models) inside
  ``with field("config.eval.num_steps"):`` so the kernels' own checks speak for the config.
  Other exceptions (a ``TypeError`` from a bug in a traced function, say) pass through
  with their traceback: they are not config errors.
  """
  try:
    yield
  except ValueError as e:
    raise ValueError(f"{name}: {e}") from None


class TrainJob(NamedTuple):
  """One model to train: its ``name`` (progress and epoch lines), initial ``params``, ``loss_fn(params, batch, key)
  -> scalar``, ``to_batch(arrays, n) -> batch`` (device arrays of the first ``n`` samples, ``None``: all, of a dict
  of numpy arrays, in the form ``loss_fn`` takes), and ``model_dir``, where checkpoints, ``metrics.jsonl`` and
  ``model.json`` (``meta``) go."""
  name: str
  params: Any
  loss_fn: Callable
  to_batch: Callable
  model_dir: str
  meta: dict


def train_model(job: TrainJob, ds, tcfg, *, num_epochs: int, key: jax.Array, seed: int,
                report: train.Report = train.Report(log=log)):
  """Train one model with the shared loop (:func:`jaxchan.train.fit`): Adam with step decay, test loss per epoch.

  Args:
    job: the model, its loss and its folder (:class:`TrainJob`).
    ds: a :class:`jaxchan.data.Dataset` (or a view with ``size``, ``load``, ``batches``).
    tcfg: ``config.train`` (``batch_size``, ``lr``, ``decay_every_epochs``, ``decay_factor``, ``test_loss_samples``,
      optional ``val_samples``: that many of the training split's last samples are held out of training, and the
      parameters with the lowest loss on them, the initial ones included, are the ones kept and loaded; 0 or
      absent: train on the whole split and keep the last epoch's).
    num_epochs: epochs to train to (a rerun resumes from the last checkpoint).
    key: the model's PRNG key (:func:`key`); split into the training noise and the fixed test-loss noise.
    seed: the data-order seed (``ds.batches``).
    report: progress bar and log (its name is the job's).

  Returns:
    ``(params, history)``: the kept parameters (see ``val_samples``) and one record per epoch.
  """
  name, params, loss_fn, to_batch, model_dir, meta = job
  log_ = report.log
  bs = tcfg.batch_size
  n_train, n_val = train_split(tcfg, ds)
  opt = train.step_decay_adam(tcfg.lr, steps_per_epoch=n_train // bs, decay_every_epochs=tcfg.decay_every_epochs,
                              decay_factor=tcfg.decay_factor)
  mesh = train_mesh(bs)
  step = train.make_train_step(loss_fn, opt, mesh)
  k_train, k_test = jax.random.split(key)
  test = to_batch(ds.load("test"), tcfg.test_loss_samples)
  test_loss = jax.jit(lambda p: loss_fn(p, test, k_test))
  if n_val:
    # The held-out samples get their own fixed noise, so the kept epoch depends on the parameters alone; they are
    # evaluated in chunks of the test-loss size (memory of one test-loss call) and averaged by sample.
    step_ = max(1, int(tcfg.test_loss_samples))
    chunks = [(to_batch(ds.read("train", n_train + i, n_train + min(i + step_, n_val)), None),
               jax.random.fold_in(k_test, 1 + i), min(step_, n_val - i)) for i in range(0, n_val, step_)]
    loss_ = jax.jit(loss_fn)

    def val_loss(p):
      return sum(float(loss_(p, b, k)) * m for b, k, m in chunks) / n_val

    evaluate = lambda p: {"test_loss": test_loss(p), "val_loss": val_loss(p)}  # noqa: E731
  else:
    evaluate = lambda p: {"test_loss": test_loss(p)}  # noqa: E731

  def batches(epoch):
    for b in ds.batches("train", bs, seed=seed, epoch=epoch, stop=n_train):
      yield to_batch(b, None)

  # A checkpoint trained on another split (held-out count) would resume with other data and another selection.
  meta = dict(meta, val_samples=n_val)
  meta_path = os.path.join(model_dir, "model.json")
  if os.path.exists(meta_path):
    with open(meta_path) as f:
      old = json.load(f).get("val_samples", 0)
    if old != n_val:
      raise ValueError(f"{model_dir} holds a model trained with config.train.val_samples={old}; this run asks for "
                       f"{n_val}. Use another --workdir, or --config.train.val_samples={old}.")
  os.makedirs(model_dir, exist_ok=True)
  if is_main_process():
    files.atomic_write_json(meta_path, meta)
  state = train.init_state(params, opt, k_train)
  state, history = train.fit(state, step, batches, num_epochs=num_epochs, workdir=model_dir,
                             evaluate=train.Evaluation(evaluate, "val_loss" if n_val else None), mesh=mesh,
                             report=report._replace(name=name))
  if n_val:
    log_(f"{name}: kept the parameters of epoch {int(state.best_epoch)} (0: initial), held-out loss "
        f"{float(state.best_loss):.6g}")
  return state.best_params, history


def check_val_samples(tcfg) -> int:
  """``config.train.val_samples`` (0 when absent), refused unless an integer >= 0."""
  n_val = tcfg.get("val_samples", 0)
  if isinstance(n_val, bool) or not isinstance(n_val, int) or n_val < 0:
    raise ValueError(f"config.train.val_samples={n_val!r} must be an integer >= 0 (0: no held-out selection).")
  return n_val


def train_split(tcfg, ds) -> tuple[int, int]:
  """``(trained on, held out)`` sample counts of ``ds``'s training split under ``config.train`` (``tcfg``), or the
  error naming ``batch_size`` / ``val_samples`` and what the file holds. Experiments call it once the dataset is
  open, before any training."""
  n_val = check_val_samples(tcfg)
  n_train = ds.size("train") - n_val
  if tcfg.batch_size > n_train:
    raise ValueError(f"config.train.batch_size={tcfg.batch_size} and config.train.val_samples={n_val} need "
                     f"batch_size <= {ds.size('train')} - val_samples, the training samples of {ds.path} left for "
                     "training; lower either.")
  return n_train, n_val


def load_trained(model_dir: str, build, expected: str):
  """``(model, params, info)`` from ``model_dir``: ``info`` is its ``model.json``, ``build(info) -> (model, template)``.

  ``expected`` names the folder layout in the error for a folder that holds no trained model.
  """
  meta_path = os.path.join(model_dir, "model.json")
  if not os.path.exists(meta_path):
    raise FileNotFoundError(f"{meta_path} not found: {model_dir} is not a trained-model folder "
                            f"(expected {expected} written by run.py).")
  with open(meta_path) as f:
    info = json.load(f)
  model, template = build(info)
  return model, restore_params(model_dir, template), info


def check_sizes(config, ds, fields: tuple[str, ...]) -> None:
  """Refuse a requested number of test samples larger than the test split, naming the field and both numbers.

  ``fields``: dotted config fields (``"eval.num_test"``); absent fields are skipped. Run once the dataset is
  open and before any training, so a size the data cannot give never silently shrinks.
  """
  n = ds.size("test")
  for f in fields:
    node = config
    for part in f.split("."):
      node = node.get(part) if hasattr(node, "get") else None
      if node is None:
        break
    if node is not None and int(node) > n:
      raise ValueError(f"config.{f}={int(node)} exceeds the {n} test samples of {ds.path}; use "
                       f"--config.{f}={n} (or fewer), or a larger dataset.")


def preflight_dataset(config, *, kind: str, shapes: dict, size_fields: tuple[str, ...], preset: str | None = None):
  """The checks a user-given dataset file can fail, done first (the file's header, no tracing): missing (and not
  to be built), damaged, of the wrong kind or shape, or too small for the test sizes asked."""
  dcfg = config.data
  path = dataset_path(dcfg, preset)
  missing = missing_dataset_error(dcfg, preset)
  if missing is not None:
    raise missing
  if not dcfg.path or not os.path.exists(path):
    return   # the default path, built by ensure_dataset after validate (or a path to build: build_if_missing)
  with data.Dataset(path, build_command=build_command(dcfg, preset), kind=kind, shapes=shapes) as ds:
    check_sizes(config, ds, size_fields)


def dataset_path(dcfg, preset: str | None = None) -> str:
  preset = preset or dcfg.preset
  return dcfg.path or os.path.join("data", f"{preset}_{dcfg.size}.h5")


def build_command(dcfg, preset: str | None = None) -> str:
  """The datagen command that builds the configured dataset (quoted in every 'missing dataset' error)."""
  from datagen import presets
  preset = preset or dcfg.preset
  return (f"python -m datagen.{presets.source(preset)} --preset={preset} --size={dcfg.size} --seed={dcfg.seed} "
          f"--out={dataset_path(dcfg, preset)}")


def missing_dataset_error(dcfg, preset: str | None = None) -> data.DatasetError | None:
  """The error for a user-given ``config.data.path`` that does not exist and is not to be built (None otherwise):
  a dataset is built only where the software owns the path (the default ``data/<preset>_<size>.h5``) or where the
  user asked for a build, so a mistyped path fails instead of training on data nobody asked for."""
  preset = preset or dcfg.preset
  path = dataset_path(dcfg, preset)
  if os.path.exists(path) or not dcfg.path or dcfg.build_if_missing:
    return None
  return data.DatasetError(
      f"dataset {path!r} (config.data.path) does not exist. Check the path, or build a {preset} dataset there "
      f"with: {build_command(dcfg, preset)} (or rerun with --config.data.build_if_missing=True to build it first).")


def ensure_dataset(dcfg, preset: str | None = None, *, progress: bool = True, log=log) -> str:
  """Path of the configured dataset, built once with datagen (with a progress bar) if it is missing.

  The default path (``data/<preset>_<size>.h5``, ``config.data.path`` empty) is built when missing; a path the
  user gives is built only with ``config.data.build_if_missing=True``, otherwise a missing file raises
  :class:`jaxchan.data.DatasetError` naming the path and the command that builds it.
  """
  preset = preset or dcfg.preset
  path = dataset_path(dcfg, preset)
  cmd = build_command(dcfg, preset)
  missing = missing_dataset_error(dcfg, preset)
  if missing is not None:
    raise missing
  # In a multi-process run only process 0 builds (the others would write the same file at
  # once); the rest wait for it, then need the file on their own filesystem.
  if not os.path.exists(path) and is_main_process():
    log(f"dataset {path} is missing; building it once with datagen ({cmd})")
    from datagen import presets
    _build(path, preset, presets.get(preset, dcfg.size, seed=dcfg.seed), progress=progress)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(f"ensure_dataset {preset} {dcfg.size}")
    if not os.path.exists(path):
      raise data.DatasetError(
          f"dataset {path!r} is missing on process {jax.process_index()} after process 0 built it: the processes "
          f"do not share a filesystem. Build it on every host first: `{cmd}` (datagen is deterministic, so every "
          "copy is identical).")
  return path


def _build(path: str, preset: str, cfg: dict, *, progress: bool):
  from datagen import presets, store
  if presets.source(preset) == "rt":
    from datagen import rt_source
    rt_source.validate(cfg)
    store.build(path, cfg, rt_source.generate, generator=rt_source.version(), progress=progress)
  else:
    from datagen import sionna_source
    store.build(path, cfg, sionna_source.generate, generator=sionna_source.sionna_version(), progress=progress)


def ensure_generated(path: str, cfg: dict, *, progress: bool = True, log=log) -> str:
  """``path``, built once with datagen from the generation config ``cfg`` (:func:`datagen.presets.get`) when
  missing: the datasets an evaluation derives from a preset (another speed, a longer history), named by the job.

  A file already at ``path`` must record the same generation config (its ``config_json``; the prose description
  aside): a file another build left there is refused with the fields that differ, never evaluated in its place.
  """
  if not os.path.exists(path):
    log(f"building {path} with datagen (preset {cfg['preset']}, "
        + ", ".join(f"{k}={cfg[k]}" for k in ("num_occasions", "speed_indoor_kmh", "speed_outdoor_kmh",
                                             "num_train", "num_test", "seed") if k in cfg) + ")")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    _build(path, cfg["preset"], cfg, progress=progress)
  import h5py
  with h5py.File(path, "r") as f:
    have = json.loads(f.attrs["config_json"]) if "config_json" in f.attrs else {}
  diff = {k: (have.get(k), v) for k, v in sorted(cfg.items()) if k != "description" and have.get(k) != v}
  if diff:
    raise data.DatasetError(
        f"dataset {path!r} was generated with other settings than this job asks for ({diff}; file -> wanted). "
        "Move or delete the file so that it is built again, or point the job's data_dir elsewhere.")
  return path


def provenance(started: float | None = None) -> dict:
  """What a result was computed with: package versions, git revision, host, devices and (if given) wall time."""
  import importlib.metadata
  import platform
  import socket
  import subprocess
  import sys
  import time

  versions = {}
  for pkg in ("jaxchan", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "h5py", "sionna-no-rt",
              "sionna-rt", "torch"):
    try:
      versions[pkg] = importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
      pass
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  try:
    rev = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True, timeout=10)
    git = rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if rev.returncode == 0 else None
  except (OSError, subprocess.SubprocessError):
    git = None
  out = {"versions": versions, "python": sys.version.split()[0], "git": git, "host": socket.gethostname(),
         "platform": platform.platform(), "devices": [str(d) for d in jax.devices()],
         "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
  if started is not None:
    out["wall_s"] = round(time.time() - started, 1)
  return out


def write_results(workdir: str, results: dict, render, started: float | None = None) -> bool:
  """``results.json`` (with :func:`provenance`), then ``render(results, workdir)`` (tables, figures); process 0 only."""
  if not is_main_process():
    return False
  results["provenance"] = provenance(started)
  files.atomic_write_json(os.path.join(workdir, "results.json"), results)
  render(results, workdir)
  return True


def is_main_process() -> bool:
  """True on process 0, the one that writes shared outputs (results, tables, figures) in a multi-process run."""
  return jax.process_index() == 0


def restore_params(model_dir: str, template):
  """The kept parameters (:class:`jaxchan.train.TrainState` ``best_params``) of the latest checkpoint in
  ``model_dir/checkpoints``, shaped like ``template``."""
  import orbax.checkpoint as ocp

  ckpt_dir = os.path.abspath(os.path.join(model_dir, "checkpoints"))
  manager = ocp.CheckpointManager(ckpt_dir)
  step = manager.latest_step()
  if step is None:
    manager.close()
    raise FileNotFoundError(f"no checkpoint in {ckpt_dir}; train the model first (run.py with its config).")
  saved = manager.restore(step, args=ocp.args.StandardRestore())  # the saved TrainState as nested dicts
  manager.close()
  # A checkpoint written before kept parameters existed trained without selection: its last parameters are the kept ones.
  kept = saved["best_params"] if "best_params" in saved else saved["params"]
  return jax.tree.map(lambda t, v: jnp.asarray(v, t.dtype).reshape(t.shape), template, kept)


def train_mesh(batch_size: int):
  """The data-parallel mesh over all devices (None on a single device); checks the global batch splits evenly."""
  from jaxchan import parallel

  if jax.device_count() == 1:
    return None
  m = parallel.mesh()
  parallel.check_batch(batch_size, m)
  return m


def shard_eval(*arrays):
  """Split evaluation inputs over all devices along their leading (batch) axis when it divides evenly.

  ``jax.jit`` partitions the computation to follow; a batch that does not divide
  (the last, short one) runs unsplit, which gives the same numbers.
  """
  from jaxchan import parallel

  n = jax.device_count()
  if n == 1 or any(a.shape[0] % n for a in arrays):
    return arrays
  m = parallel.mesh()
  return tuple(parallel.shard_batch(a, m) for a in arrays)
