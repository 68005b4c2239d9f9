"""A trained model's estimates on a dataset, written to HDF5 or MATLAB ``.mat`` for use outside jaxchan.

  python -m jaxchan.export --model_dir=WORKDIR/models/NAME --dataset=data/x.h5 --out=est.mat
      [--split=test] [--num=N] [--seed=S]
      # non-identical models: [--pattern=white] [--snr_db=DB] [--stepping=tau-waterfilling] [--sampler=eta:1.0]
      #                       [--num_steps=50]
      # perception models:    [--num_samples=16] [--guidance=1.0] [--n_streams=2] [--solver=dpm2m:10]

The model folder says which experiment trained it (its ``model.json``):

* non-identical diffusion (``WORKDIR/models/NAME``): the test channels are observed through an initial-noise
  pattern and generated back (Algorithm 2). Written: ``h`` (truth), ``h_bar`` (observation), ``mask`` (the
  reliability map ``m``), ``h_hat`` (estimate), each ``[N, n_bs, n_freq]``.
* perception (``WORKDIR/SCENARIO/models/USE``): the SRS histories are observed (eq. 22) and ``target`` (truth),
  ``srs_baseline`` (latest observation) are written with, by use, ``estimate`` (SL), ``samples``
  ``[K, N, n_ue, n_bs, n_prb]`` and the Bayesian precoder ``precoder`` (DM, eq. 28), or ``precoder`` (E2E),
  ``[N, n_bs, n_streams, n_prb]``; also ``ul_snr_db`` ``[N]``.

Every file also carries ``settings``: a JSON string of the model folder, dataset, split, sample range, seed and
sampler settings. ``.mat`` files are MATLAB v5 (SciPy; at most 2 GiB per array, use ``.h5`` beyond, which MATLAB
reads with ``h5read``); arrays keep their axis order in both.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

FORMATS = (".h5", ".mat")


def check_path(path: str) -> str:
  ext = os.path.splitext(path)[1].lower()
  if ext not in FORMATS:
    raise ValueError(f"--out={path!r}: unknown format {ext!r}; use {' or '.join(FORMATS)}.")
  return ext


def write(path: str, arrays: dict, settings: dict) -> None:
  """Write ``arrays`` (name -> numpy array) and ``settings`` (JSON-able) to ``path`` (.h5 or .mat), atomically."""
  ext = check_path(path)
  arrays = {k: np.asarray(v) for k, v in arrays.items()}
  if ext == ".mat":
    big = [k for k, v in arrays.items() if v.nbytes >= 2 ** 31]
    if big:
      raise ValueError(f"{', '.join(big)} exceed the 2 GiB a v5 .mat array holds; export to .h5 instead "
                       "(MATLAB reads it with h5read).")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".partial" + ext
  try:
    if ext == ".mat":
      import scipy.io
      scipy.io.savemat(tmp, dict(arrays, settings=json.dumps(settings, sort_keys=True)), do_compression=False)
    else:
      import h5py
      with h5py.File(tmp, "w") as f:
        f.attrs["settings"] = json.dumps(settings, sort_keys=True)
        for k, v in arrays.items():
          f.create_dataset(k, data=v)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)


def read(path: str) -> tuple[dict, dict]:
  """``(arrays, settings)`` of a file written by :func:`write`."""
  ext = check_path(path)
  if ext == ".mat":
    import scipy.io
    m = scipy.io.loadmat(path)
    settings = json.loads(str(m.pop("settings")[0]))
    return {k: v for k, v in m.items() if not k.startswith("__")}, settings
  import h5py
  with h5py.File(path, "r") as f:
    return {k: f[k][()] for k in f}, json.loads(f.attrs["settings"])


# ---------------------------------------------------------------------------
# Estimates.


def experiment_of(model_dir: str) -> str:
  """``"noniden"`` or ``"perception"``: which experiment trained the model in ``model_dir``."""
  path = os.path.join(model_dir, "model.json")
  if not os.path.exists(path):
    raise ValueError(f"--model_dir={model_dir!r} holds no model.json; give a trained-model folder "
                     "(WORKDIR/models/NAME or WORKDIR/SCENARIO/models/USE, written by run.py).")
  with open(path) as f:
    return "perception" if "use" in json.load(f) else "noniden"


def parse_generation(spec: str):
  """``"STEPPING SAMPLER STEPS"`` (e.g. ``"tau-waterfilling eta:1.0 50"``) as a :class:`jaxchan.noniden.Generation`."""
  from jaxchan import noniden
  parts = str(spec).split()
  if len(parts) != 3:
    raise ValueError(f"generation {spec!r} must be 'STEPPING SAMPLER STEPS', e.g. 'tau-waterfilling eta:1.0 50'.")
  try:
    steps = int(parts[2])
  except ValueError:
    raise ValueError(f"generation {spec!r}: steps {parts[2]!r} must be an integer.") from None
  return noniden.Generation.parse(parts[0], parts[1], steps)


def noniden_estimates(model_dir: str, h: np.ndarray, key, *, pattern: str = "white", snr_db: float | None = None,
                      generation: str = "tau-waterfilling eta:1.0 50", start: str = "consistent",
                      batch: int = 256) -> dict:
  """Observe ``h`` ``[N, n_bs, n_freq]`` through ``pattern`` and generate it back with the model in ``model_dir``.

  The identical-diffusion baseline (placement ``identical``) starts from its scalar-time start and steps
  uniformly, as in the experiment. ``generation``: ``"STEPPING SAMPLER STEPS"``
  (:meth:`jaxchan.noniden.Generation.parse`). Returns numpy ``h``, ``h_bar``, ``mask``, ``h_hat``.
  """
  import jax
  import jax.numpy as jnp

  from jaxchan import noise_patterns, noniden
  from jaxchan import stepping as stepping_mod
  from jaxchan.experiments import noniden as exp

  den, params, info = exp.load_trained(model_dir)
  sch = den.schedule
  identical = info["model"]["placement"] == "identical"
  run = parse_generation(generation)
  st = stepping_mod.Stepping.parse("tau-uniform") if identical else run.stepping
  gen = noniden.make_network_generator(den, stepping=st, sampler=run.sampler, num_steps=run.num_steps)
  out = {k: [] for k in ("h", "h_bar", "mask", "h_hat")}
  for i in range(0, h.shape[0], batch):
    hb = jnp.asarray(h[i:i + batch])
    k_obs, k_id, k_gen = jax.random.split(jax.random.fold_in(key, i), 3)
    obs = noise_patterns.observe(hb, k_obs, pattern, sch, snr_db=snr_db, start=start)
    s = noniden.identical_start(obs.h_bar, obs.m, k_id, sch) if identical else \
        noniden.initial_state(obs.h_bar, obs.m, sch, start=start)
    for k, v in (("h", hb), ("h_bar", obs.h_bar), ("mask", obs.m), ("h_hat", gen(params, tuple(s), k_gen))):
      out[k].append(np.asarray(v))
  return {k: np.concatenate(v) for k, v in out.items()}


def perception_estimates(model_dir: str, arrays: dict, key, *, num_samples: int = 16, guidance: float = 1.0,
                         n_streams: int = 2, solver: str = "ancestral", batch: int = 64) -> dict:
  """The perception model's outputs on ``arrays["history"]`` ``[N, n_occ, n_ue, n_bs, n_prb]`` SRS histories with
  their ``arrays["target"]`` ``[N, n_ue, n_bs, n_prb]`` (as a dataset split holds them; see the module doc);
  ``solver``: the DM's sampler (:class:`jaxchan.ddpm_solvers.Solver` spec, e.g. ``"dpm2m:10"``; ``"ancestral"``
  is the full chain; a distilled student ``dm_distill_N`` is sampled with ``"ddim:N"``)."""
  from jaxchan.ddpm_solvers import Solver
  import jax
  import jax.numpy as jnp

  from jaxchan import precoding, prediction, srs
  from jaxchan.experiments import perception_setup as exp

  history, target = arrays["history"], arrays["target"]
  model, params, cfg = exp.load_trained(model_dir)
  with open(os.path.join(model_dir, "model.json")) as f:
    distilled = json.load(f).get("distilled_steps")
  if distilled:   # a progressively distilled student samples with DDIM at its own step count, conditionally
    if guidance != 1.0:
      raise ValueError(f"{model_dir} is a distilled student (conditional sampler); --guidance must be 1.0.")
    if solver == "ancestral":
      solver = f"ddim:{distilled}"
  n_bs = exp.n_bs_used(cfg)
  scfg = exp.srs_cfg(cfg)

  @jax.jit
  def run(hist, k):
    k_obs, k_dm = jax.random.split(k)
    obs = srs.observe(hist, k_obs, num_hops=scfg.num_hops, snr_db_range=scfg.snr_db_range)
    res = {"srs_baseline": srs.baseline(obs), "ul_snr_db": obs.snr_db}
    if model.use == "sl":
      res["estimate"] = prediction.sl_predict(model, params, obs)
    elif model.use == "dm":
      kw = exp.dm_kw(cfg)
      if solver != "ancestral":
        kw = dict(prediction=kw["prediction"], clip_x0=kw["clip_x0"], solver=Solver.parse(solver))
      s = prediction.sample_posterior(model, params, obs, k_dm, exp.dm_schedule(cfg), num_samples=num_samples,
                                      guidance=guidance, **kw)
      res["samples"] = s
      res["precoder"] = precoding.bayesian_precoder(s, n_streams)
    else:
      res["precoder"] = prediction.e2e_precoder(model, params, obs, n_streams)
    return res

  out = {}
  for i in range(0, history.shape[0], batch):
    res = run(jnp.asarray(history[i:i + batch, ..., :n_bs, :]), jax.random.fold_in(key, i))
    res["target"] = target[i:i + batch, ..., :n_bs, :]
    for k, v in res.items():
      out.setdefault(k, []).append(np.asarray(v))
  return {k: np.concatenate(v, axis=1 if k == "samples" else 0) for k, v in out.items()}


def check_sampler_fits_model(model_dir: str, sampler: str) -> None:
  """Refuse, naming ``--sampler``, a sampler the non-identical model in ``model_dir`` cannot run, from its
  ``model.json`` alone (before weights or data are read): ``eta+cov`` needs a Kronecker or low-rank anchor."""
  from jaxchan import noniden
  if noniden.Sampler.parse(sampler).kind not in noniden.RESIDUAL_SAMPLERS:
    return
  with open(os.path.join(model_dir, "model.json")) as f:
    anchor = json.load(f).get("denoiser", {}).get("anchor", "none")
  if anchor not in noniden.RESIDUAL_ANCHORS:
    raise ValueError(f"--sampler={sampler} draws from the model's Gaussian anchor, but {model_dir} has anchor "
                     f"{anchor!r}; it needs a Kronecker or low-rank one. Use --sampler=eta:1.0 (or dpm2m:1.0) "
                     "with this model.")


def check_settings(which: str, kw: dict) -> None:
  """The estimate settings' errors, each naming its flag, before any model or dataset is read."""
  from jaxchan import checks, noise_patterns, noniden, stepping

  if which == "noniden":
    checks.choice("--pattern", kw.get("pattern", "white"), noise_patterns.PATTERNS)
    for flag, parse in (("stepping", stepping.Stepping.parse), ("sampler", noniden.Sampler.parse)):
      if flag in kw:
        try:
          parse(kw[flag])
        except ValueError as e:
          raise ValueError(f"--{flag}: {e}") from None
    checks.positive_int("--num_steps", kw.get("num_steps", 50))
  else:
    checks.positive_int("--num_samples", kw.get("num_samples", 16))
    checks.positive_int("--n_streams", kw.get("n_streams", 2))
    checks.in_range("--guidance", kw.get("guidance", 1.0), 0.0, 1.0)
    from jaxchan.ddpm_solvers import Solver
    try:
      Solver.parse(kw.get("solver", "ancestral"))
    except ValueError as e:
      raise ValueError(f"--solver: {e}") from None


def export(model_dir: str, dataset: str, out: str, *, split: str = "test", num: int | None = None, seed: int = 0,
           **kwargs) -> dict:
  """Run the model in ``model_dir`` on ``split`` of ``dataset`` and write its estimates to ``out``.

  ``kwargs`` go to :func:`noniden_estimates` (``stepping``, ``sampler`` and ``num_steps`` as its ``generation``)
  or :func:`perception_estimates`. Returns the settings written.
  Everything is checked (model folder, dataset, output format, split) before any estimate is computed.
  """
  import jax

  from jaxchan import data

  check_path(out)
  which = experiment_of(model_dir)
  check_settings(which, kwargs)
  if which == "noniden":
    check_sampler_fits_model(model_dir, kwargs.get("sampler", "eta:1.0"))
  if split not in data.SPLITS:
    raise ValueError(f"--split={split!r}; choose one of {', '.join(data.SPLITS)}.")
  kind = "srs_prediction" if which == "perception" else "snapshot"
  with data.Dataset(dataset, kind=kind) as ds:
    n = ds.size(split) if num is None else num
    if not 0 < n <= ds.size(split):
      raise ValueError(f"--num={num} must be in 1..{ds.size(split)} (the {split} split of {dataset}).")
    arrays = ds.load(split)
  key = jax.random.PRNGKey(seed)
  if which == "noniden":
    kw = dict(kwargs)
    gen = [str(kw.pop(k, d)) for k, d in (("stepping", "tau-waterfilling"), ("sampler", "eta:1.0"), ("num_steps", 50))]
    est = noniden_estimates(model_dir, arrays["h"][:n], key, generation=" ".join(gen), **kw)
  else:
    est = perception_estimates(model_dir, {k: arrays[k][:n] for k in ("history", "target")}, key, **kwargs)
  settings = dict(kwargs, experiment=which, model_dir=os.path.abspath(model_dir), dataset=os.path.abspath(dataset),
                  split=split, samples=[0, n], seed=seed)
  write(out, est, settings)
  return settings


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m jaxchan.export", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--model_dir", required=True)
  p.add_argument("--dataset", required=True)
  p.add_argument("--out", required=True, help="output .h5 or .mat")
  p.add_argument("--split", default="test")
  p.add_argument("--num", type=int, help="the first NUM samples of the split (default: all)")
  p.add_argument("--seed", type=int, default=0)
  g = p.add_argument_group("non-identical models")
  g.add_argument("--pattern", default="white")
  g.add_argument("--snr_db", type=float, help="default: the paper's SNR of the pattern")
  g.add_argument("--stepping", default="tau-waterfilling")
  g.add_argument("--sampler", default="eta:1.0")
  g.add_argument("--num_steps", type=int, default=50)
  g = p.add_argument_group("perception models")
  g.add_argument("--num_samples", type=int, default=16, help="K posterior samples (DM)")
  g.add_argument("--guidance", type=float, default=1.0, help="CFG scale w (DM)")
  g.add_argument("--n_streams", type=int, default=2)
  g.add_argument("--solver", default="ancestral", help="DM sampler: ancestral (full chain), dpm2m:10, ddim:N, ...")
  args = p.parse_args(argv)
  try:
    which = experiment_of(args.model_dir)
    kw = (dict(pattern=args.pattern, snr_db=args.snr_db, stepping=args.stepping, sampler=args.sampler,
               num_steps=args.num_steps) if which == "noniden" else
          dict(num_samples=args.num_samples, guidance=args.guidance, n_streams=args.n_streams, solver=args.solver))
    export(args.model_dir, args.dataset, args.out, split=args.split, num=args.num, seed=args.seed, **kw)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
