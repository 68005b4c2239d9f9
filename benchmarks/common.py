"""Shared benchmark helpers: timing, the machine's matmul peak, and FLOP counting for complex layers."""

from __future__ import annotations

import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def timeit(fn, *args, repeats: int = 5, min_time: float = 1.0):
  """Median seconds per call of an already-compiled ``fn(*args)`` (blocks on the result)."""
  jax.block_until_ready(fn(*args))  # warm-up / compile
  times = []
  t_start = time.perf_counter()
  while len(times) < repeats or time.perf_counter() - t_start < min_time:
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
    if len(times) > 200:
      break
  return float(np.median(times))


def matmul_peak(n: int = 2048, dtype=jnp.float32) -> dict:
  """Achieved FLOP/s of a jitted ``n x n @ n x n`` matmul: the reference peak of this machine.

  Real: ``2 n^3`` FLOPs. Complex: ``8 n^3`` (a complex multiply-add is 8 real FLOPs).
  """
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  a = jax.random.normal(k1, (n, n), jnp.float32)
  b = jax.random.normal(k2, (n, n), jnp.float32)
  if jnp.issubdtype(dtype, jnp.complexfloating):
    a, b = (a + 1j * b).astype(dtype), (b - 1j * a).astype(dtype)
    flops = 8 * n**3
  else:
    flops = 2 * n**3
  f = jax.jit(jnp.matmul)
  t = timeit(f, a, b)
  return dict(n=n, dtype=jnp.dtype(dtype).name, seconds=t, flops_per_s=flops / t)


def count_complex_dense_flops(fn, *args) -> int:
  """Real FLOPs of all ``ComplexDense`` calls made by ``fn(*args)`` (a Flax apply).

  Counts ``8 * ComplexDense.macs(x)`` per call (complex multiply-adds of the
  matrix product, in whichever layout the layer holds its input). Work done once
  per call, such as the mixer's modulation tables, is counted once; element-wise
  work (activations, modulation, norms, bias, table lookups) is not counted, so
  the figure is a lower bound on the arithmetic done.
  """
  from jaxchan.models.mixer import ComplexDense

  total = [0]

  def interceptor(next_fun, args_, kwargs_, context):
    if isinstance(context.module, ComplexDense) and context.method_name == "__call__":
      total[0] += 8 * context.module.macs(args_[0])
    return next_fun(*args_, **kwargs_)

  with nn.intercept_methods(interceptor):
    jax.eval_shape(fn, *args)
  return total[0]


def write_reports(out: str, res: dict, reports) -> dict:
  """Write ``res`` to the JSON file ``out``, then each ``(suffix, report, figure)`` of ``reports`` rendered from the
  file as read back (sorted keys, lists for tuples: what anyone re-rendering it gets): ``STEM{suffix}.md`` from
  ``report(res)`` and, when ``figure`` is given, ``STEM{suffix}.png`` (and its PDF). Returns the re-read ``res``."""
  import json
  import os

  from jaxchan import files
  files.atomic_write_json(out, res)
  with open(out) as f:
    res = json.load(f)
  stem = os.path.splitext(out)[0]
  for suffix, report, figure in reports:
    files.atomic_write_text(f"{stem}{suffix}.md", report(res))
    if figure is not None:
      figure(res, f"{stem}{suffix}.png")
  return res
