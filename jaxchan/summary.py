"""Training curves in TensorBoard's event format (``tensorboard --logdir WORKDIR`` shows every model live).

The writer is ``tensorboardX`` (``pip install -e ".[tensorboard]"``), an optional extra: without it
:func:`writer` returns ``None`` and training goes on with ``metrics.jsonl`` alone (logged once). Only process 0
writes. :func:`read_scalars` reads the curves back without TensorBoard (e.g. in a notebook or a test).
"""

from __future__ import annotations

import glob
import os
import struct
import time

from absl import logging

_warned = False


def writer(logdir: str):
  """A ``tensorboardX.SummaryWriter`` for ``logdir``, or ``None`` when tensorboardX is missing or not process 0."""
  global _warned
  import jax

  if jax.process_index() != 0:
    return None
  try:
    from tensorboardX import SummaryWriter
  except ImportError:
    if not _warned:
      logging.info("tensorboardX is not installed; training curves go to metrics.jsonl only "
                   "(pip install -e '.[tensorboard]' for TensorBoard event files).")
      _warned = True
    return None
  # tensorboardX names its file by the whole second and host and opens it for writing: a second writer in the
  # same folder within that second (a quick resume) would erase the first one's events without this suffix.
  return SummaryWriter(logdir=logdir, flush_secs=10, filename_suffix=f".{os.getpid()}.{time.time_ns()}")


def write_scalars(w, step: int, values: dict) -> None:
  """Every numeric entry of ``values`` at ``step`` (``w`` from :func:`writer`; ``None`` does nothing)."""
  if w is None:
    return
  for k, v in _numeric(values).items():
    w.add_scalar(k, float(v), global_step=int(step))
  w.flush()


def _numeric(record: dict) -> dict:
  return {k: v for k, v in record.items()
          if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("epoch", "step")}


def missing(logdir: str, history: list) -> list:
  """What of ``history`` (the records a resumed run restored from ``metrics.jsonl``) the event files in ``logdir``
  lack: per epoch, a record with only the scalars not found at that step (none without tensorboardX). A process
  killed outright can lose its last scalars, some of an epoch's or all: tensorboardX queues every scalar as its own
  event for a writer thread, and its ``flush`` does not wait for the queue; a resumed run writes them again from
  the record that survives every kill, and nothing twice."""
  if not history:
    return []
  have = {}
  if glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
    try:
      have = {tag: {step for step, _ in points} for tag, points in read_scalars(logdir).items()}
    except ImportError:
      return []
  out = []
  for r in history:
    lost = {k: v for k, v in _numeric(r).items() if int(r["epoch"]) not in have.get(k, ())}
    if lost:
      out.append(dict(lost, epoch=int(r["epoch"])))
  return out


def read_scalars(logdir: str) -> dict:
  """``{tag: [(step, value), ...]}`` from the event files in ``logdir`` (TFRecord framing, tensorboardX's protos).

  The record checksums are not verified: this reads back files this package wrote.
  """
  from tensorboardX.proto import event_pb2

  out = {}
  for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
    with open(path, "rb") as f:
      buf = f.read()
    pos = 0
    while pos + 12 <= len(buf):
      (n,) = struct.unpack("<Q", buf[pos:pos + 8])
      if pos + 12 + n + 4 > len(buf):
        break   # a record still being written (reading a live run)
      event = event_pb2.Event.FromString(buf[pos + 12:pos + 12 + n])
      pos += 12 + n + 4
      for v in event.summary.value:
        out.setdefault(v.tag, []).append((int(event.step), float(v.simple_value)))
  return out
