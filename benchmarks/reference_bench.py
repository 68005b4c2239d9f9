"""The non-identical paper's reference implementation, timed side by side with this package in one process.

  python -m benchmarks.reference_bench --reference=PATH [--batch=256] [--steps=50] [--out=FILE.json]

``PATH`` is a checkout of the public repository yuzhiyang123/channel-diffusion (PyTorch). Nothing is downloaded: without
a checkout the benchmark returns ``{"skipped": ...}`` with the reason. Both sides run the paper-size network (5 mixer
layers, expansion 2, time embedding width 64) on ``32 x 64`` complex channels, on this machine's CPU threads:

* one network call on a batch (the reference's ``MixerLayer.Model``, in ``torch.no_grad``, float32 complex; ours the
  jitted mixer);
* generation with ``steps`` network calls per sample: ours is Algorithm 2 as the package runs it (water-filling time
  steps, the default ``eta:1`` sampler, the DDIM update per element); the reference's is its network called
  ``steps`` times with a DDIM update in torch between calls, the network-bound part of its generation loop
  (its receiver also runs signal processing per step, which is not timed here), so its time is a lower bound;
* ``fast``: ours with another sampler setting (e.g. the fastest quality-matched one of
  ``python -m benchmarks.time_to_quality``), as a ratio against the reference's ``steps``-call generation.

The ratios are samples per second against the reference's, measured in the same process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import timeit
from jaxchan import conventions, denoiser, noniden, schedules
from jaxchan.models.mixer import MixerDenoiser

SHAPE = (32, 64)


def _torch_time(fn, repeats: int = 3) -> float:
  fn()                                                           # warm-up
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def reference_model(path: str):
  """The reference's ``MixerLayer.Model`` at the paper's size (its ``config.py`` defaults: 5 layers, carriers
  first, expansion 2, embedding width 64, 1,000 training steps) for ``32 x 64`` channels, or the reason it cannot be
  built."""
  if not path or not os.path.isfile(os.path.join(path, "MixerLayer.py")):
    return None, (f"no reference checkout at {path!r} (MixerLayer.py missing): give --reference=PATH to a clone of "
                  "yuzhiyang123/channel-diffusion; nothing is downloaded")
  try:
    import torch
  except ImportError:
    return None, "PyTorch is not installed (pip install -e '.[datagen]' brings its CPU build)"
  sys.path.insert(0, os.path.abspath(path))
  try:
    from MixerLayer import Model
  finally:
    sys.path.pop(0)
  n_ant, n_car = SHAPE
  base = types.SimpleNamespace(channel_independence=1, num_layers=5, car_first=1, num_train_timesteps=1000)
  car = types.SimpleNamespace(model="Linear", input_len=n_car, seq_len=n_car, flat=2, embed_dim=64)
  ant = types.SimpleNamespace(model="Linear", input_len=n_ant, seq_len=n_ant, flat=2, embed_dim=64)
  torch.manual_seed(0)
  return Model(base, car, ant).eval(), None


def check(reference: str) -> None:
  """Refuse a ``--reference`` path that is given but is no checkout of the reference (one line naming it and the
  fix, before any timing); an empty one is fine (the row is skipped)."""
  if not reference:
    return
  if not os.path.isfile(os.path.join(reference, "MixerLayer.py")):
    raise ValueError(f"--reference={reference!r} holds no MixerLayer.py: pass a checkout of "
                     "github.com/yuzhiyang123/channel-diffusion (git clone it yourself; nothing is downloaded), or "
                     "leave --reference out to skip the side-by-side row.")
  import importlib.util
  if importlib.util.find_spec("torch") is None:
    raise ValueError(f"--reference={reference!r} needs PyTorch to run the reference: pip install -e '.[datagen]' "
                     "(it brings the CPU build), or leave --reference out.")


def run(reference: str = "", batch: int = 256, steps: int = 50, fast: tuple = ("dpm2m:1.0", 10)) -> dict:
  model_ref, why = reference_model(reference)
  if model_ref is None:
    return {"skipped": why}
  import torch
  torch.set_num_threads(os.cpu_count() or 1)
  x = torch.randn(batch, *SHAPE, dtype=torch.complex64)
  t_int = torch.full((batch,), 500, dtype=torch.int64)
  with torch.no_grad():
    t_ref_call = _torch_time(lambda: model_ref(x, t_int))
    abar = torch.linspace(0.01, 0.99, steps + 1)

    def ref_generate():
      h = x.clone()
      for k in range(steps):
        eps = model_ref(h, torch.full((batch,), 999 - 999 * k // steps, dtype=torch.int64))
        a, a_next = abar[k], abar[k + 1]
        h0 = (h - torch.sqrt(1 - a) * eps) / torch.sqrt(a)
        h = torch.sqrt(a_next) * h0 + torch.sqrt(1 - a_next) * eps
      return h

    t_ref_gen = _torch_time(ref_generate, repeats=1)

  sch = schedules.GammaSchedule()
  net = MixerDenoiser(schedule=sch)
  g = conventions.standard_normal(jax.random.PRNGKey(0), (batch,) + SHAPE)
  tau = jnp.full(g.shape, 50.0)
  params = net.init(jax.random.PRNGKey(1), g[:1], tau[:1])
  t_call = timeit(jax.jit(net.apply), params, g, tau, repeats=3)
  den = denoiser.make(net, sch)
  start = noniden.Start(g, jax.random.uniform(jax.random.PRNGKey(2), g.shape, minval=5.0, maxval=100.0))

  def ours(sampler, n):
    gen = noniden.make_network_generator(den, sampler=noniden.Sampler.parse(sampler), num_steps=n)
    return timeit(gen, params, start, jax.random.PRNGKey(3), repeats=1, min_time=0.0)

  t_gen = ours("eta:1.0", steps)
  t_fast = ours(*fast)
  per_s = lambda t: round(batch / t, 2)  # noqa: E731
  return dict(reference=os.path.abspath(reference), batch=batch, steps=steps, torch_threads=torch.get_num_threads(),
              reference_call_s=t_ref_call, call_s=t_call, call_speedup=round(t_ref_call / t_call, 2),
              reference_generation_samples_per_s=per_s(t_ref_gen), generation_samples_per_s=per_s(t_gen),
              generation_speedup=round(t_ref_gen / t_gen, 2),
              fast=dict(sampler=fast[0], steps=fast[1], samples_per_s=per_s(t_fast),
                        speedup_over_reference=round(t_ref_gen / t_fast, 2),
                        speedup_over_default=round(t_gen / t_fast, 2)))


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--reference", default="", help="a checkout of yuzhiyang123/channel-diffusion")
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--steps", type=int, default=50)
  p.add_argument("--fast", default="dpm2m:1.0,10", help="SAMPLER,STEPS of our fast setting")
  p.add_argument("--out")
  args = p.parse_args()
  try:
    check(args.reference)
  except ValueError as e:
    p.error(str(e))
  sampler, n = args.fast.rsplit(",", 1)
  res = run(args.reference, args.batch, args.steps, (sampler, int(n)))
  print(json.dumps(res, indent=2))
  if args.out:
    from jaxchan import files
    files.atomic_write_json(args.out, res)


if __name__ == "__main__":
  main()
