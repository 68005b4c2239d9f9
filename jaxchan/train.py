"""Training loop shared by the experiments: state, jitted steps, orbax checkpoints, resume.

The loop is model-agnostic: an experiment supplies ``loss_fn(params, batch, key)
-> scalar`` and a batch iterator that is a pure function of ``(seed, epoch)``.
Checkpoints are written at every epoch end to ``workdir/checkpoints`` with the
parameters, optimizer state, step, epoch and PRNG key, so rerunning the same
command resumes exactly where the last completed epoch left off (same data
order, same random numbers). ``metrics.jsonl`` gets one JSON line per epoch and
is rewritten atomically.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Iterable

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from jaxchan import io


@flax.struct.dataclass
class TrainState:
  params: Any
  opt_state: Any
  step: jax.Array
  epoch: jax.Array
  key: jax.Array  # raw uint32 key data, so orbax stores it as a plain array


def step_decay_adam(lr: float, *, steps_per_epoch: int, decay_every_epochs: int, decay_factor: float):
  """Adam with a step-decayed learning rate (the papers' "Adam with step decay")."""
  if decay_every_epochs and decay_every_epochs > 0:
    boundaries = {steps_per_epoch * decay_every_epochs * k: decay_factor for k in range(1, 64)}
    schedule = optax.piecewise_constant_schedule(lr, boundaries)
  else:
    schedule = lr
  return optax.adam(schedule)


def init_state(params, optimizer, key) -> TrainState:
  return TrainState(params=params, opt_state=optimizer.init(params), step=jnp.zeros((), jnp.int32),
                    epoch=jnp.zeros((), jnp.int32), key=jax.random.key_data(key))


def make_train_step(loss_fn: Callable, optimizer):
  """``train_step(state, batch) -> (state, loss)``, jitted; the step's key is folded from the state."""

  @jax.jit
  def train_step(state: TrainState, batch):
    key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
    loss, grads = jax.value_and_grad(loss_fn)(state.params, batch, key)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state.replace(params=params, opt_state=opt_state, step=state.step + 1), loss

  return train_step


class NonFiniteLoss(RuntimeError):
  pass


def fit(state: TrainState, train_step, batches: Callable[[int], Iterable], *, num_epochs: int, workdir: str,
        eval_fn: Callable[[Any], dict] | None = None, progress: bool = True, log: Callable = print):
  """Train from ``state`` (or the latest checkpoint in ``workdir``) to ``num_epochs``.

  Args:
    state: freshly initialized state (its structure is the restore template).
    train_step: from :func:`make_train_step`.
    batches: ``epoch -> iterable of batches``; must be deterministic in ``epoch``.
    num_epochs: total epochs.
    workdir: checkpoints and ``metrics.jsonl`` go here.
    eval_fn: ``params -> {name: float}`` run at each epoch end (e.g. test loss).

  Returns:
    ``(state, history)`` with one metrics dict per epoch.
  """
  from tqdm import tqdm

  ckpt_dir = os.path.abspath(os.path.join(workdir, "checkpoints"))
  manager = ocp.CheckpointManager(ckpt_dir, options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  history = []
  latest = manager.latest_step()
  if latest is not None:
    state = manager.restore(latest, args=ocp.args.StandardRestore(state))
    if os.path.exists(metrics_path):
      history = [json.loads(l) for l in open(metrics_path) if l.strip()][:int(state.epoch)]
    log(f"resumed from {ckpt_dir} at epoch {int(state.epoch)} (step {int(state.step)})")
  start = int(state.epoch)
  for epoch in range(start, num_epochs):
    t0 = time.time()
    losses = []
    for batch in tqdm(batches(epoch), desc=f"epoch {epoch + 1}/{num_epochs}", leave=False, disable=not progress):
      state, loss = train_step(state, batch)
      losses.append(loss)
    losses = np.asarray(jax.device_get(losses), np.float64)
    if not np.all(np.isfinite(losses)):
      raise NonFiniteLoss(f"training loss became NaN/Inf in epoch {epoch + 1}; the last good checkpoint "
                          f"(epoch {start if not history else history[-1]['epoch']}) is kept in {ckpt_dir}. "
                          "Lower the learning rate or check the data.")
    state = state.replace(epoch=jnp.asarray(epoch + 1, jnp.int32))
    record = dict(epoch=epoch + 1, step=int(state.step), train_loss=float(losses.mean()),
                  seconds=round(time.time() - t0, 3))
    if eval_fn is not None:
      record.update({k: float(v) for k, v in eval_fn(state.params).items()})
    history.append(record)
    manager.save(epoch + 1, args=ocp.args.StandardSave(state))
    manager.wait_until_finished()
    io.atomic_write_text(metrics_path, "".join(json.dumps(r) + "\n" for r in history))
    log(json.dumps(record))
  manager.close()
  return state, history
