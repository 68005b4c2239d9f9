"""Non-identical diffusion, trained and evaluated end to end (``configs/noniden.py``).

1. The configured dataset (``simo_ofdm`` by default) is built once with datagen if missing.
2. Each model in ``config.models`` is trained with Algorithm 1 (velocity loss, tau
   sampled by its pattern) in ``workdir/models/<name>``; reruns resume from the
   last checkpoint and skip finished models.
3. Generation (Algorithm 2) runs on test channels observed through each initial
   noise pattern, for every stepping rule and sampler in ``config.eval``
   (:mod:`jaxchan.experiments.noniden_eval`); the NMSE after every step is recorded.
4. ``results.json``, then ``tables.md`` and the figures
   (:mod:`jaxchan.experiments.noniden_report`, re-rendered without retraining by
   ``python -m jaxchan.experiments.report WORKDIR``).
"""

from __future__ import annotations

import functools
import json
import os
import time

import jax
import jax.numpy as jnp

import numpy as np

from jaxchan import checks, data, denoiser, files, gaussian_prior, noise_patterns, noniden, tau_patterns, train
from jaxchan.experiments import common
# The config's values (re-exported here: ``noniden.load_trained``, ``noniden.make_denoiser``, ...).
from jaxchan.experiments.noniden_setup import (  # noqa: F401
    PRIOR_FILE, SIZE_FIELDS, arch, check_resume, check_training_times, load_trained, loss_fn, make_denoiser,
    make_model, samplers, schedule, steppings)
from jaxchan.models.mixer import AVERAGING, PLACEMENTS

@common.validated_once
def validate(config):
  """Every config error before any work: builds the schedule, steppings, samplers and models, and traces
  (``jax.eval_shape``, no FLOPs) one initialization, one training loss and one generation call per
  architecture, so the kernels' own checks fire before any dataset is built."""
  sch, sts, sps = schedule(config), steppings(config), samplers(config)
  for name, m in config.models.items():
    checks.choice(f"config.models.{name}.placement", m.placement, PLACEMENTS)
    checks.choice(f"config.models.{name}.averaging", m.averaging, AVERAGING)
    checks.choice(f"config.models.{name}.tau_pattern", m.tau_pattern, tau_patterns.PATTERNS)
    checks.choice(f"config.models.{name}.anchor", m.get("anchor", "none"), denoiser.ANCHORS)
    check_training_times(config, name, sch)
  for p in config.eval.patterns:
    checks.choice("config.eval.patterns entry", p, noise_patterns.PATTERNS)
    if p not in config.eval.snr_db:
      raise ValueError(f"config.eval.snr_db has no SNR for pattern {p!r}; add --config.eval.snr_db.{p}=DB.")
  with common.field("config.anchor"):
    gaussian_prior.check_solver(config.anchor.tol, config.anchor.max_iter)
    checks.positive_int("train_samples", config.anchor.train_samples)
    checks.in_range("shrinkage", config.anchor.shrinkage, 0.0, 0.5)
    d = config.data.n_bs * config.data.n_freq
    anchors = {m.get("anchor", "none") for m in config.models.values()}
    if anchors & {"lowrank", "mixture"}:
      rank = checks.positive_int("rank", config.anchor.get("rank", 0))
      if rank >= d:
        raise ValueError(f"rank={rank} must be below n_bs x n_freq = {d}, the channel's elements (the low-rank "
                         "anchor keeps that many leading eigenpairs).")
    if "mixture" in anchors:
      k = checks.positive_int("components", config.anchor.get("components", 0))
      rounds = config.anchor.get("rounds", -1)
      if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise ValueError(f"rounds={rounds!r} must be an integer >= 0 (the mixture's EM rounds after k-means).")
      if k * (config.anchor.rank + 1) > config.anchor.train_samples:
        raise ValueError(f"components={k} with rank={config.anchor.rank} need more than rank channels each: "
                         f"train_samples={config.anchor.train_samples} is too few; lower components or rank.")
  checks.choice("config.eval.start", config.eval.start, noniden.STARTS)
  checks.in_range("config.eval.background", config.eval.background, 0.0, 1.0)
  for f in ("num_test", "batch_size", "bound_samples"):
    checks.positive_int(f"config.eval.{f}", config.eval.get(f, 1))
  for f in ("batch_size", "num_epochs", "test_loss_samples"):
    checks.positive_int(f"config.train.{f}", config.train[f])
  for what, names in (("compare_identical", [config.eval.compare_identical] if config.eval.compare_identical else []),
                      ("models", config.eval.models), ("full_grid_models", config.eval.full_grid_models),
                      ("main_model", [config.eval.main_model])):
    for n in names:
      if n not in config.models:
        raise ValueError(f"config.eval.{what}: {n!r} names no model in config.models ({', '.join(config.models)}).")
  if config.eval.models:
    checks.positive_int("config.eval.num_steps", config.eval.num_steps)
  # The cheap checks above come first; the traces below take seconds.
  shape = (1, config.data.n_bs, config.data.n_freq)
  h = jax.ShapeDtypeStruct(shape, jnp.complex64)
  tau = jax.ShapeDtypeStruct(shape, jnp.float32)
  k = jax.random.PRNGKey(0)
  traced = set()   # one trace per architecture: the rest of a model config is checked by name above
  for name, mcfg in config.models.items():
    # Every input normalization is traced (ARCH_FIELDS), so the denoiser's own check names a wrong one.
    net = arch(mcfg) + tuple(mcfg.get(f) for f in ("num_layers", "expansion", "embed_dim", "anchor"))
    net += (name in config.eval.models,)
    if net in traced:
      continue
    traced.add(net)
    with common.field(f"config.models.{name}"):
      prior = _placeholder_prior(shape[1:], mcfg.get("anchor", "none"), config.anchor.get("rank", 1),
                                 config.anchor.get("components", 1))
      den = make_denoiser(mcfg, config, sch, prior)
      params = jax.eval_shape(den.network.init, k, h, tau)
      jax.eval_shape(jax.grad(loss_fn(den, mcfg, config)), params, h, k)
    if name in config.eval.models:
      with common.field(f"config.eval.samplers (with config.models.{name})"):
        for sp in sps:
          noniden.residual_for(den, sp)     # eta+cov needs a single-Gaussian anchor
      with common.field(f"config.eval (generation with {name})"):
        jax.eval_shape(functools.partial(_generate_one, den, config, sts[0], sps[0]), params, h, tau, k)


def preflight(config):
  """Dataset checks that need no tracing, run before :func:`validate` (see :func:`common.preflight_dataset`)."""
  common.preflight_dataset(config, kind="snapshot", shapes={"h": (config.data.n_bs, config.data.n_freq)},
                           size_fields=SIZE_FIELDS)


def _placeholder_prior(shape, structure: str, rank: int, components: int = 1):
  """A white prior of the channel shape and ``structure`` (None for ``"none"``): what validation traces the
  anchored denoiser with (no data yet)."""
  if structure == "none":
    return None
  if structure in ("lowrank", "mixture"):
    d = shape[0] * shape[1]
    one = gaussian_prior.LowRankGaussian(jnp.zeros(shape, jnp.complex64), jnp.eye(d, rank, dtype=jnp.complex64),
                                         jnp.ones((rank,), jnp.float32), jnp.ones(shape, jnp.float32))
    if structure == "lowrank":
      return one
    comps = jax.tree_util.tree_map(lambda x: jnp.stack([x] * components), one)
    return gaussian_prior.MixtureGaussian(*comps, log_weights=jnp.full((components,), -np.log(components)))
  return gaussian_prior.from_factors(np.zeros(shape), np.eye(shape[0]), np.eye(shape[1]))


def _generate_one(den, config, st, sp, params, g0, tau0, key):
  return noniden.generate(den.bind(params), noniden.Start(g0, tau0), key, den.schedule, stepping=st, sampler=sp,
                          num_steps=config.eval.num_steps, draw=noniden.draw_for(den, params, sp))


# ---------------------------------------------------------------------------
# Data and models.


def dataset_path(config) -> str:
  return common.dataset_path(config.data)


def build_command(config) -> str:
  return common.build_command(config.data)


def ensure_dataset(config, log=common.log) -> str:
  return common.ensure_dataset(config.data, progress=config.progress, log=log)


def fit_prior(config, ds, structure: str = "kronecker", log=common.log):
  """The anchor's Gaussian prior of ``structure`` (``"kronecker"``, ``"lowrank"`` of rank ``config.anchor.rank``,
  or ``"mixture"`` of ``config.anchor.components`` such components), fitted on the first
  ``config.anchor.train_samples`` training channels."""
  n = min(config.anchor.train_samples, ds.size("train"))
  h = ds.load("train")["h"][:n]
  if structure == "mixture":
    a = config.anchor
    prior = gaussian_prior.fit_mixture(h, components=a.components, rank=a.rank, rounds=a.rounds,
                                       shrinkage=a.shrinkage, seed=config.seed, log=log)
    log(f"Gaussian anchor: mixture of {prior.mean.shape[0]} rank-{a.rank} plus diagonal Gaussians fitted on {n} "
        "training channels")
  elif structure == "lowrank":
    prior = gaussian_prior.fit_lowrank(h, rank=config.anchor.rank, shrinkage=config.anchor.shrinkage)
    log(f"Gaussian anchor: rank-{config.anchor.rank} plus diagonal prior fitted on {n} training channels")
  else:
    prior = gaussian_prior.fit(h, shrinkage=config.anchor.shrinkage)
    log(f"Gaussian anchor: Kronecker prior fitted on {n} training channels")
  return prior


def train_one(name, mcfg, config, ds, workdir, log=common.log, label: str | None = None, prior=None):
  """Algorithm 1 for model ``name``: ``(denoiser, params, history)``; ``label`` names it in progress lines;
  ``prior``: the Gaussian anchor's prior of the model's structure (:func:`fit_prior`) when it is anchored."""
  sch = schedule(config)
  anchored = mcfg.get("anchor", "none") != "none"
  if anchored and prior is None:
    raise ValueError(f"model {name!r} is anchored ({mcfg.anchor!r}) but no Gaussian prior was given.")
  den = make_denoiser(mcfg, config, sch, prior if anchored else None)
  shape = ds.shape("h")
  key = common.key(config, f"noniden/{name}")
  params = jax.jit(den.network.init)(jax.random.fold_in(key, 0), jnp.zeros((1,) + shape, jnp.complex64),
                                     jnp.zeros((1,) + shape))    # one program, not one per op
  tau_min = mcfg.get("tau_min", config.train.tau_min)
  meta = dict(model=mcfg.to_dict(), schedule=sch.to_dict(), T=sch.T, beta_max=sch.beta_max, shape=list(shape),
              tau_min=tau_min, denoiser=den.settings())
  model_dir = os.path.join(workdir, "models", name)
  check_resume(model_dir, den.anchor, mcfg.tau_pattern)
  if anchored and common.is_main_process():
    os.makedirs(model_dir, exist_ok=True)
    files.atomic_write_npz(os.path.join(model_dir, PRIOR_FILE), den.prior.to_numpy())
  job = common.TrainJob(label or name, params, loss_fn(den, mcfg, config),
                        lambda arrays, n: jnp.asarray(arrays["h"][:n]), model_dir, meta)
  params, history = common.train_model(job, ds, config.train, num_epochs=config.train.num_epochs,
                                       key=jax.random.fold_in(key, 1), seed=config.seed,
                                       report=train.Report(progress=config.progress, log=log))
  return den, params, history


def run(config, workdir: str) -> dict:
  from jaxchan.experiments import noniden_eval, noniden_report

  started = time.time()
  preflight(config)   # the dataset checks that need no tracing first, for callers from Python too
  validate(config)
  os.makedirs(workdir, exist_ok=True)
  log = common.log
  path = ensure_dataset(config, log=log)
  shape = (config.data.n_bs, config.data.n_freq)
  with data.Dataset(path, build_command=build_command(config), kind="snapshot", shapes={"h": shape}) as ds:
    common.check_sizes(config, ds, SIZE_FIELDS)
    models, training = {}, {}
    structures = dict.fromkeys(m.get("anchor", "none") for m in config.models.values())
    priors = {s: fit_prior(config, ds, s, log=log) for s in structures if s != "none"}
    for i, (name, mcfg) in enumerate(config.models.items()):
      den, params, history = train_one(name, mcfg, config, ds, workdir, log=log,
                                       label=f"{name} ({i + 1}/{len(config.models)})",
                                       prior=priors.get(mcfg.get("anchor", "none")))
      models[name] = (den, params, mcfg)
      training[name] = (mcfg.to_dict(), history)
    generation = noniden_eval.evaluate(config, models, ds, log=log)
  results = dict(config=json.loads(config.to_json()), dataset=path, device=str(jax.devices()[0]),
                 training=training, generation=generation)
  common.write_results(workdir, results, noniden_report.render, started=started)
  return results
