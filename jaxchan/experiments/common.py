"""What every experiment does around its science: find or build its dataset, restore trained parameters.

Experiments describe their data by a ``config.data``-like ConfigDict with
``preset``, ``size``, ``seed``, ``path`` ("" for ``data/<preset>_<size>.h5``)
and ``build_if_missing``.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from jaxchan import data


def dataset_path(dcfg, preset: str | None = None) -> str:
  preset = preset or dcfg.preset
  return dcfg.path or os.path.join("data", f"{preset}_{dcfg.size}.h5")


def build_command(dcfg, preset: str | None = None) -> str:
  """The datagen command that builds the configured dataset (quoted in every 'missing dataset' error)."""
  from datagen import presets
  preset = preset or dcfg.preset
  return (f"python -m datagen.{presets.source(preset)} --preset={preset} --size={dcfg.size} --seed={dcfg.seed} "
          f"--out={dataset_path(dcfg, preset)}")


def ensure_dataset(dcfg, preset: str | None = None, *, progress: bool = True, log=print) -> str:
  """Path of the configured dataset, built once with datagen (with a progress bar) if it is missing.

  With ``build_if_missing=False`` a missing file raises :class:`jaxchan.data.DatasetError`
  naming the command that builds it.
  """
  preset = preset or dcfg.preset
  path = dataset_path(dcfg, preset)
  cmd = build_command(dcfg, preset)
  # In a multi-process run only process 0 builds (the others would write the same file at
  # once); the rest wait for it, then need the file on their own filesystem.
  if not os.path.exists(path) and not dcfg.build_if_missing:
    data.open_dataset(path, build_command=cmd)  # raises with the command to run (on every process)
  if not os.path.exists(path) and is_main_process():
    log(f"dataset {path} is missing; building it once with datagen ({cmd})")
    from datagen import presets, store
    cfg = presets.get(preset, dcfg.size, seed=dcfg.seed)
    if presets.source(preset) == "rt":
      from datagen import rt_source
      rt_source.validate(cfg)
      store.build(path, cfg, rt_source.generate, generator=rt_source.version(), progress=progress)
    else:
      from datagen import sionna_source
      store.build(path, cfg, sionna_source.generate, generator=sionna_source.sionna_version(), progress=progress)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(f"ensure_dataset {preset} {dcfg.size}")
    if not os.path.exists(path):
      raise data.DatasetError(
          f"dataset {path!r} is missing on process {jax.process_index()} after process 0 built it: the processes "
          f"do not share a filesystem. Build it on every host first: `{cmd}` (datagen is deterministic, so every "
          "copy is identical).")
  return path


def is_main_process() -> bool:
  """True on process 0, the one that writes shared outputs (results, tables, figures) in a multi-process run."""
  return jax.process_index() == 0


def restore_params(model_dir: str, template):
  """The parameters of the latest checkpoint in ``model_dir/checkpoints``, shaped like ``template``."""
  import orbax.checkpoint as ocp

  ckpt_dir = os.path.abspath(os.path.join(model_dir, "checkpoints"))
  manager = ocp.CheckpointManager(ckpt_dir)
  step = manager.latest_step()
  if step is None:
    manager.close()
    raise FileNotFoundError(f"no checkpoint in {ckpt_dir}; train the model first (run.py with its config).")
  saved = manager.restore(step, args=ocp.args.StandardRestore())  # the saved TrainState as nested dicts
  manager.close()
  return jax.tree.map(lambda t, v: jnp.asarray(v, t.dtype).reshape(t.shape), template, saved["params"])


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
