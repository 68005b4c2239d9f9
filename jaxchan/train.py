"""Training loop shared by the experiments: state, jitted steps, orbax checkpoints, resume.

The loop is model-agnostic: an experiment supplies ``loss_fn(params, batch, key)
-> scalar`` and a batch iterator that is a pure function of ``(seed, epoch)``.
Checkpoints are written at every epoch end, and on SIGTERM/SIGINT mid-epoch,
to ``workdir/checkpoints`` with the parameters, optimizer state, step, epoch,
position in the epoch and PRNG key, so rerunning the same command resumes
exactly where it stopped (same data order, same random numbers). With ``select``, the parameters with the lowest
held-out loss so far (the initial ones included) are kept beside the current ones and are what a trained model
loads (:func:`jaxchan.experiments.common.restore_params`). Training is
data-parallel over a :mod:`jaxchan.parallel` mesh when one is given. ``metrics.jsonl`` gets one JSON line per epoch and
is rewritten atomically.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import threading
import time
from typing import Any, Callable, Iterable, NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging

from jaxchan import files, summary


@flax.struct.dataclass
class TrainState:
  params: Any
  opt_state: Any
  step: jax.Array
  epoch: jax.Array        # completed epochs
  epoch_step: jax.Array   # batches of the current epoch already trained on (> 0 only in a preemption checkpoint)
  loss_sum: jax.Array     # sum of those batches' losses, so the epoch's mean survives a preemption
  key: jax.Array          # raw uint32 key data, so orbax stores it as a plain array
  best_params: Any        # the parameters a trained model loads: the last epoch's, or the best held-out with select
  best_loss: jax.Array    # their held-out loss (inf until one is measured)
  best_epoch: jax.Array   # and the epoch that produced them (0: the initial parameters)


def step_decay_adam(lr: float, *, steps_per_epoch: int, decay_every_epochs: int, decay_factor: float):
  """Adam with a step-decayed learning rate (the papers' "Adam with step decay")."""
  if decay_every_epochs and decay_every_epochs > 0:
    boundaries = {steps_per_epoch * decay_every_epochs * k: decay_factor for k in range(1, 64)}
    schedule = optax.piecewise_constant_schedule(lr, boundaries)
  else:
    schedule = lr
  return optax.adam(schedule)


def init_state(params, optimizer, key) -> TrainState:
  zero = jnp.zeros((), jnp.int32)
  return TrainState(params=params, opt_state=optimizer.init(params), step=zero, epoch=zero, epoch_step=zero,
                    loss_sum=jnp.zeros((), jnp.float32), key=jax.random.key_data(key), best_params=params,
                    best_loss=jnp.full((), jnp.inf, jnp.float32), best_epoch=zero)


def make_train_step(loss_fn: Callable, optimizer, mesh=None):
  """``train_step(state, batch) -> (state, loss)``, jitted; the step's key is folded from the state.

  With a :func:`jaxchan.parallel.mesh`, the state is replicated and the batch
  split over its devices (data parallelism; XLA inserts the gradient all-reduce).
  """

  def train_step(state: TrainState, batch):
    key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
    loss, grads = jax.value_and_grad(loss_fn)(state.params, batch, key)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state.replace(params=params, opt_state=opt_state, step=state.step + 1,
                         epoch_step=state.epoch_step + 1, loss_sum=state.loss_sum + loss), loss

  if mesh is None:
    return jax.jit(train_step)
  from jaxchan import parallel
  rep, data = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  return jax.jit(train_step, in_shardings=(rep, data), out_shardings=(rep, rep))


class NonFiniteLoss(RuntimeError):
  pass


class CheckpointError(RuntimeError):
  """A checkpoint that cannot be restored (truncated, corrupted, or from another model)."""


class Preempted(SystemExit):
  """Raised after a SIGTERM/SIGINT checkpoint; exits the process with ``128 + signal``."""


class _StopFlag:
  """Turns SIGTERM/SIGINT into a flag checked between steps (restored on exit)."""

  def __init__(self):
    self.signum = None
    self._old = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._old[sig] = signal.signal(sig, self._handler)
    return self

  def _handler(self, signum, frame):
    if self.signum is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt  # a second Ctrl-C stops at once
    self.signum = signum

  def __exit__(self, *exc):
    for sig, old in self._old.items():
      signal.signal(sig, old)


@flax.struct.dataclass
class _LegacyState:
  """A :class:`TrainState` checkpoint written before kept parameters existed (their last parameters were kept)."""
  params: Any
  opt_state: Any
  step: jax.Array
  epoch: jax.Array
  epoch_step: jax.Array
  loss_sum: jax.Array
  key: jax.Array


def _restore(manager, step, state, ckpt_dir):
  try:
    return manager.restore(step, args=ocp.args.StandardRestore(state))
  except Exception as e:  # orbax raises many types for damaged or mismatched files
    first = e
  try:
    old = manager.restore(step, args=ocp.args.StandardRestore(_LegacyState(
        **{f: getattr(state, f) for f in _LegacyState.__dataclass_fields__})))
    return state.replace(**{f: getattr(old, f) for f in _LegacyState.__dataclass_fields__},
                         best_params=old.params, best_loss=jnp.full((), jnp.inf, jnp.float32), best_epoch=old.epoch)
  except Exception:  # neither layout: report the first error, for the current one
    e = first
    raise CheckpointError(
        f"checkpoint {os.path.join(ckpt_dir, str(step))} cannot be restored ({type(e).__name__}: "
        f"{str(e)[:300]}). It is truncated, corrupted, or was written by a different model. Delete that folder "
        f"to resume from the previous checkpoint (others: {sorted(manager.all_steps())}), or delete {ckpt_dir} "
        "to train from scratch.") from e


class Report(NamedTuple):
  """How a training run reports: its ``name`` in the progress bar and the epoch lines (a sweep trains many),
  whether to show the bar, and where the resume and epoch lines go (absl INFO by default)."""
  name: str = ""
  progress: bool = True
  log: Callable = logging.info


class Evaluation(NamedTuple):
  """What runs at every epoch end: ``fn(params) -> {name: float}`` (e.g. the test loss), and ``select``: one of
  its keys, a loss on held-out data whose lowest value picks the kept parameters (``None``: keep the last
  epoch's)."""
  fn: Callable[[Any], dict]
  select: str | None = None


def fit(state: TrainState, train_step, batches: Callable[[int], Iterable], *, num_epochs: int, workdir: str,
        evaluate: Evaluation | None = None, mesh=None, report: Report = Report()):
  """Train from ``state`` (or the latest checkpoint in ``workdir``) to ``num_epochs``.

  Args:
    state: freshly initialized state (its structure is the restore template).
    train_step: from :func:`make_train_step` (with the same ``mesh``).
    batches: ``epoch -> iterable of global batches``; must be deterministic in ``epoch``.
    num_epochs: total epochs.
    workdir: checkpoints and ``metrics.jsonl`` go here.
    evaluate: run at each epoch end (:class:`Evaluation`); with ``select``, ``state.best_params`` holds the
      parameters with the selected loss's lowest value, measured on the initial parameters and at every epoch end
      (early stopping without stopping: the run still trains ``num_epochs``). Otherwise ``best_params`` are the
      last epoch's.
    mesh: data-parallel mesh (:mod:`jaxchan.parallel`); ``None`` runs on the default device.
    report: name, progress bar and log (:class:`Report`).

  Each epoch's record (train and test loss, seconds) is also written as TensorBoard scalars in ``workdir``
  (:mod:`jaxchan.summary`; with the optional tensorboardX), so ``tensorboard --logdir WORKDIR`` follows a sweep.

  A checkpoint (orbax, numbered by global step) is written at every epoch end,
  and also mid-epoch when SIGTERM or SIGINT arrives, after which :class:`Preempted`
  exits the process. Rerunning resumes at the same step: the epoch's batch order
  is regenerated and the batches already trained on are skipped; the PRNG key
  is folded from the step. A corrupted checkpoint raises :class:`CheckpointError`
  at start-up; a NaN/Inf loss raises :class:`NonFiniteLoss`, keeping the last
  good checkpoint.

  Returns:
    ``(state, history)`` with one metrics dict per epoch.
  """
  from jaxchan import progress

  name, log = report.name, report.log
  eval_fn, select = (evaluate.fn, evaluate.select) if evaluate is not None else (None, None)
  ckpt_dir = os.path.abspath(os.path.join(workdir, "checkpoints"))
  manager = ocp.CheckpointManager(ckpt_dir, options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  history = []
  latest = manager.latest_step()
  if latest is not None:
    state = _restore(manager, latest, state, ckpt_dir)
    if os.path.exists(metrics_path):
      history = [json.loads(l) for l in open(metrics_path) if l.strip()][:int(state.epoch)]
    log(f"resumed from {ckpt_dir} at epoch {int(state.epoch)}, batch {int(state.epoch_step)} "
        f"(step {int(state.step)})")
  if mesh is not None:
    from jaxchan import parallel
    state = parallel.replicate(state, mesh)
  else:
    # Restored arrays are committed to a device and fresh ones are not, which gives the train step a different
    # program (sharding annotations): commit both, so a resumed run reuses the compiled step (persistent cache,
    # or a process that trained before).
    state = jax.device_put(state, jax.local_devices()[0])
  is_main = jax.process_index() == 0

  def scalar(v, dtype):
    # Under a mesh every leaf of the state must stay a global (replicated) array: orbax refuses
    # host-local arrays in multi-process runs. Without one, committed to the device like the rest of the state:
    # an uncommitted leaf would give the train step another program, compiled again at every epoch's start.
    x = np.asarray(v, dtype)
    return parallel.replicate(x, mesh) if mesh is not None else jax.device_put(x, jax.local_devices()[0])

  def save(state):
    manager.save(int(state.step), args=ocp.args.StandardSave(state), force=True)
    manager.wait_until_finished()

  if select is not None and int(state.step) == 0:
    initial = float(eval_fn(state.params)[select])
    log(f"{name + ': ' if name else ''}initial {select} {initial:.6g}")
    state = state.replace(best_loss=scalar(initial, np.float32))
  start = int(state.epoch)
  lost = summary.missing(workdir, history)   # a killed run's last scalars may not have reached its event file
  tb = summary.writer(workdir) if start < num_epochs or lost else None
  for r in lost:
    summary.write_scalars(tb, int(r["epoch"]), r)
  if start >= num_epochs and tb is not None:
    tb.close()
    tb = None
  with _StopFlag() as stop:
    for epoch in range(start, num_epochs):
      t0 = time.time()
      skip = int(state.epoch_step)
      losses = []
      it = itertools.islice(batches(epoch), skip, None)
      desc = f"{name + ': ' if name else ''}epoch {epoch + 1}/{num_epochs}"
      for batch in progress.bar(it, desc=desc, leave=False, disable=not report.progress, initial=skip):
        if mesh is not None:
          batch = parallel.shard_batch(batch, mesh)
        state, loss = train_step(state, batch)
        losses.append(loss)
        if stop.signum is not None:
          if not np.all(np.isfinite(np.asarray(jax.device_get(losses), np.float64))):
            break  # reported below; a NaN state is never checkpointed
          save(state)
          manager.close()
          sig = signal.Signals(stop.signum).name
          log(f"{sig}: checkpoint written at step {int(state.step)} (epoch {epoch + 1}, batch "
              f"{int(state.epoch_step)}) in {ckpt_dir}; rerun the same command to resume.")
          raise Preempted(128 + stop.signum)
      losses = np.asarray(jax.device_get(losses), np.float64)
      if not np.all(np.isfinite(losses)):
        manager.close()
        raise NonFiniteLoss(f"training loss became NaN/Inf in epoch {epoch + 1}; the last good checkpoint "
                            f"(step {manager.latest_step()}) is kept in {ckpt_dir}. "
                            "Lower the learning rate or check the data.")
      n_steps = int(state.epoch_step)
      record = dict(epoch=epoch + 1, step=int(state.step), train_loss=float(state.loss_sum) / max(n_steps, 1),
                    seconds=round(time.time() - t0, 3))
      state = state.replace(epoch=scalar(epoch + 1, np.int32), epoch_step=scalar(0, np.int32),
                            loss_sum=scalar(0.0, np.float32))
      if eval_fn is not None:
        record.update({k: float(v) for k, v in eval_fn(state.params).items()})
      if select is None:
        state = state.replace(best_params=state.params, best_epoch=scalar(epoch + 1, np.int32))
      else:
        best = float(state.best_loss)
        if record[select] < best or not np.isfinite(best):   # a NaN initial loss must not pin the start
          state = state.replace(best_params=state.params, best_loss=scalar(record[select], np.float32),
                                best_epoch=scalar(epoch + 1, np.int32))
        record["kept_epoch"] = int(state.best_epoch)
      history.append(record)
      # The record before the checkpoint: a kill between the two leaves an extra record, which the restore's
      # [:epoch] slice drops, rather than a checkpoint whose epoch has no record.
      if is_main:
        files.atomic_write_text(metrics_path, "".join(json.dumps(r) + "\n" for r in history))
      save(state)
      summary.write_scalars(tb, epoch + 1, record)
      log(f"{name}: {json.dumps(record)}" if name else json.dumps(record))
  manager.close()
  if tb is not None:
    tb.close()
  return state, history
