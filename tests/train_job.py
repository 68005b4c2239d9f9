"""A small real training job for the preemption and multi-device tests (run as a subprocess).

  python tests/train_job.py WORKDIR [--epochs=N] [--devices=N] [--sleep=S] [--out=FILE.npz]
      [--coordinator=HOST:PORT --num_processes=N --process_id=I]

A 2-layer MLP regression trained with :func:`jaxchan.train.fit`; the loss draws
noise from the step's key, so an exact resume needs the step, data order and
PRNG state back. ``--sleep`` slows each batch on the host so a signal lands
mid-epoch. Prints one JSON line per epoch and writes the final parameters.
"""

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxchan import parallel, train


def main():
  p = argparse.ArgumentParser()
  p.add_argument("workdir")
  p.add_argument("--epochs", type=int, default=3)
  p.add_argument("--devices", type=int, default=0,
                 help="data-parallel over this many devices (0: no mesh; -1: all devices of all processes)")
  p.add_argument("--sleep", type=float, default=0.0)
  p.add_argument("--out", default="")
  p.add_argument("--coordinator", default=None)
  p.add_argument("--num_processes", type=int, default=None)
  p.add_argument("--process_id", type=int, default=None)
  a = p.parse_args()
  parallel.initialize(a.coordinator, a.num_processes, a.process_id)

  X = jax.random.normal(jax.random.PRNGKey(0), (256, 8))
  y = jnp.sin(X @ jnp.linspace(-1, 1, 8))

  def loss_fn(params, batch, key):
    Xb, yb = batch
    h = jnp.tanh(Xb @ params["w1"] + params["b1"])
    noise = 0.05 * jax.random.normal(key, yb.shape)
    return jnp.mean((h @ params["w2"] - yb - noise) ** 2)

  def batches(epoch):
    order = np.random.default_rng([3, epoch]).permutation(256)
    for i in range(0, 256, 16):
      time.sleep(a.sleep)
      idx = order[i:i + 16]
      yield np.asarray(X[idx]), np.asarray(y[idx])

  k1, k2 = jax.random.split(jax.random.PRNGKey(1))
  params = {"w1": 0.3 * jax.random.normal(k1, (8, 16)), "b1": jnp.zeros(16), "w2": 0.3 * jax.random.normal(k2, (16,))}
  opt = train.step_decay_adam(0.01, steps_per_epoch=16, decay_every_epochs=2, decay_factor=0.5)
  mesh = parallel.mesh(jax.devices()[:a.devices] if a.devices > 0 else None) if a.devices else None
  step = train.make_train_step(loss_fn, opt, mesh)
  state, _ = train.fit(train.init_state(params, opt, jax.random.PRNGKey(2)), step, batches, num_epochs=a.epochs,
                       workdir=a.workdir, report=train.Report(progress=False, log=lambda m: print(m, flush=True)),
                       mesh=mesh)
  if a.out and jax.process_index() == 0:
    np.savez(a.out, **{k: np.asarray(v.addressable_data(0)) for k, v in state.params.items()})
  print("devices", len(jax.devices()), "processes", jax.process_count(), flush=True)


if __name__ == "__main__":
  sys.exit(main())
