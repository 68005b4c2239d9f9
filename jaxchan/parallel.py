"""Data parallelism on JAX's own runtime: one mesh axis ``"data"`` over every device of every process.

Parameters and optimizer state are replicated; batches are split along their
leading axis. ``jax.jit`` then partitions the computation (GSPMD) and inserts
the gradient all-reduce, so the training step is the same function on 1 or N
devices and its result does not depend on the device count beyond
floating-point reassociation.

Multi-host: call :func:`initialize` (``run.py`` does, from ``--coordinator``,
``--num_processes``, ``--process_id``) before any other JAX call. Each process
then feeds its own rows of every global batch (:func:`shard_batch` with
``process_local=True`` picks them), and ``jax.make_array_from_process_local_data``
assembles the global array.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "data"


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None):
  """``jax.distributed.initialize`` when a multi-process run is asked for; a no-op otherwise."""
  if coordinator or (num_processes or 1) > 1:
    # CPU devices of different processes talk through gloo (accelerators use their own collectives).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)


def mesh(devices=None) -> Mesh:
  """A 1-D ``("data",)`` mesh over ``devices`` (all devices of all processes by default)."""
  return Mesh(np.asarray(devices if devices is not None else jax.devices()), (AXIS,))


def replicated(m: Mesh) -> NamedSharding:
  return NamedSharding(m, PartitionSpec())


def batch_sharding(m: Mesh) -> NamedSharding:
  return NamedSharding(m, PartitionSpec(AXIS))


def check_batch(batch_size: int, m: Mesh, name: str = "config.train.batch_size"):
  n = m.devices.size
  if batch_size % n:
    raise ValueError(f"{name}={batch_size} is not divisible by the {n} devices of the data-parallel mesh; "
                     f"use a multiple of {n} (the batch size is global, split evenly over devices).")


def replicate(tree, m: Mesh):
  """Place a pytree (e.g. the train state) on every device of ``m``."""
  return jax.device_put(tree, replicated(m))


def shard_batch(tree, m: Mesh):
  """Split every array of a global batch along its leading axis over ``m``.

  With several processes each process passes the *global* batch (the data order
  is a pure function of the seed and epoch on every host) and only its own rows
  are transferred.
  """
  sharding = batch_sharding(m)
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)

  def local(x):
    x = np.asarray(x)
    n = x.shape[0] // jax.process_count()
    rows = x[jax.process_index() * n:(jax.process_index() + 1) * n]
    return jax.make_array_from_process_local_data(sharding, rows, x.shape)

  return jax.tree.map(local, tree)


def constrain_batch(x, axis: int = 0):
  """Inside ``jit``: pin ``x``'s batch ``axis`` to the data axis of the all-device mesh (a no-op on one device).

  Without it the partitioner may leave a reshaped or sliced batch in a layout
  that XLA's CPU linear-algebra custom calls (SVD, eigh) cannot run split, and
  they stall; pinning keeps every sample's linear algebra on one device.
  """
  n = jax.device_count()
  if n == 1 or x.shape[axis] % n:
    return x
  spec = [None] * x.ndim
  spec[axis] = AXIS
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh(), PartitionSpec(*spec)))
