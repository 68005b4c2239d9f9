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

from jaxchan import checks, data, noise_patterns, noniden, schedules, stepping, tau_patterns
from jaxchan.experiments import common
from jaxchan.models.mixer import AVERAGING, PLACEMENTS, MixerDenoiser


def schedule(config) -> schedules.GammaSchedule:
  """The gamma schedule (eq. 10) of ``config.T`` and ``config.beta_max``."""
  with common.field("config.T / config.beta_max"):
    return schedules.GammaSchedule(config.T, config.beta_max)


def steppings(config) -> list[stepping.Stepping]:
  if not config.eval.steppings:
    raise ValueError("config.eval.steppings is empty; give at least one, e.g. ('tau-waterfilling',).")
  with common.field("config.eval.steppings"):
    return [stepping.Stepping.parse(s) for s in config.eval.steppings]


def samplers(config) -> list[noniden.Sampler]:
  if not config.eval.samplers:
    raise ValueError("config.eval.samplers is empty; give at least one, e.g. ('eta:1.0',).")
  with common.field("config.eval.samplers"):
    return [noniden.Sampler.parse(s) for s in config.eval.samplers]


def validate(config):
  """Every config error before any work: builds the schedule, steppings, samplers and models, and traces
  (``jax.eval_shape``, no FLOPs) one initialization, one training loss and one generation call per
  architecture, so the kernels' own checks fire before any dataset is built."""
  sch, sts, sps = schedule(config), steppings(config), samplers(config)
  for name, m in config.models.items():
    checks.choice(f"config.models.{name}.placement", m.placement, PLACEMENTS)
    checks.choice(f"config.models.{name}.averaging", m.averaging, AVERAGING)
    checks.choice(f"config.models.{name}.tau_pattern", m.tau_pattern, tau_patterns.PATTERNS)
    checks.choice(f"config.models.{name}.input_norm", m.input_norm, noniden.INPUT_NORMS)
    with common.field(f"config.models.{name}.tau_min / config.train.tau_min / config.min_beta"):
      noniden.check_training_times(m.get("tau_min", config.train.tau_min), config.min_beta or None, sch)
  for p in config.eval.patterns:
    checks.choice("config.eval.patterns entry", p, noise_patterns.PATTERNS)
    if p not in config.eval.snr_db:
      raise ValueError(f"config.eval.snr_db has no SNR for pattern {p!r}; add --config.eval.snr_db.{p}=DB.")
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
  shape = (1, config.data.n_bs, config.data.n_freq)
  h = jax.ShapeDtypeStruct(shape, jnp.complex64)
  tau = jax.ShapeDtypeStruct(shape, jnp.float32)
  k = jax.random.PRNGKey(0)
  traced = set()   # one trace per architecture: the rest of a model config is checked by name above
  for name, mcfg in config.models.items():
    arch = tuple(mcfg[f] for f in ("placement", "averaging", "num_layers", "expansion", "embed_dim", "input_norm"))
    arch += (name in config.eval.models,)
    if arch in traced:
      continue
    traced.add(arch)
    with common.field(f"config.models.{name}"):
      model = make_model(mcfg, sch)
      params = jax.eval_shape(model.init, k, h, tau)
      jax.eval_shape(jax.grad(loss_fn(model, mcfg, config, sch)), params, h, k)
    if name in config.eval.models:
      checks.positive_int("config.eval.num_steps", config.eval.num_steps)
      with common.field(f"config.eval (generation with {name})"):
        jax.eval_shape(functools.partial(_generate_one, model, mcfg, config, sch, sts[0], sps[0]), params, h, tau, k)


def _generate_one(model, mcfg, config, sch, st, sp, params, g0, tau0, key):
  D = noniden.velocity_denoiser(functools.partial(model.apply, params), sch, input_norm=mcfg.input_norm,
                                min_beta=config.min_beta or None)
  return noniden.generate(D, noniden.Start(g0, tau0), key, sch, stepping=st, sampler=sp,
                          num_steps=config.eval.num_steps)


# ---------------------------------------------------------------------------
# Data and models.


def dataset_path(config) -> str:
  return common.dataset_path(config.data)


def build_command(config) -> str:
  return common.build_command(config.data)


def ensure_dataset(config, log=common.log) -> str:
  return common.ensure_dataset(config.data, progress=config.progress, log=log)


def make_model(mcfg, sch: schedules.GammaSchedule) -> MixerDenoiser:
  return MixerDenoiser(num_layers=mcfg.num_layers, expansion=mcfg.expansion, embed_dim=mcfg.embed_dim,
                       placement=mcfg.placement, averaging=mcfg.averaging, schedule=sch)


def loss_fn(model, mcfg, config, sch):
  """``(params, h, key) -> velocity loss`` of Algorithm 1 with the model's tau pattern."""
  tau_min, min_beta = mcfg.get("tau_min", config.train.tau_min), config.min_beta or None

  def loss(params, h, key):
    k_tau, k_xi = jax.random.split(key)
    tau = tau_patterns.sample(k_tau, mcfg.tau_pattern, h.shape[0], h.shape[1:], sch.T, tau_min=tau_min)
    return noniden.velocity_loss(functools.partial(model.apply, params), h, tau, k_xi, sch,
                                 input_norm=mcfg.input_norm, min_beta=min_beta)

  return loss


def train_one(name, mcfg, config, ds, workdir, log=common.log, label: str | None = None):
  """Algorithm 1 for model ``name``: ``(model, params, history)``; ``label`` names it in progress lines."""
  sch = schedule(config)
  model = make_model(mcfg, sch)
  shape = ds.shape("h")
  key = common.key(config, f"noniden/{name}")
  params = model.init(jax.random.fold_in(key, 0), jnp.zeros((1,) + shape, jnp.complex64), jnp.zeros((1,) + shape))
  tau_min, min_beta = mcfg.get("tau_min", config.train.tau_min), config.min_beta or None
  meta = dict(model=mcfg.to_dict(), schedule=sch.to_dict(), T=sch.T, beta_max=sch.beta_max, shape=list(shape),
              tau_min=tau_min, min_beta=noniden.input_floor(sch, min_beta))
  params, history = common.train_model(
      label or name, params=params, loss_fn=loss_fn(model, mcfg, config, sch), ds=ds,
      to_batch=lambda arrays, n: jnp.asarray(arrays["h"][:n]), tcfg=config.train,
      num_epochs=config.train.num_epochs, model_dir=os.path.join(workdir, "models", name), meta=meta,
      key=jax.random.fold_in(key, 1), seed=config.seed, progress=config.progress, log=log)
  return model, params, history


def load_trained(model_dir: str):
  """A trained model from ``WORKDIR/models/NAME``: ``(model, params, info)``.

  ``info`` holds the model config, the :class:`~jaxchan.schedules.GammaSchedule`
  (``info["schedule"]``), the input floor ``min_beta`` it was trained with and the
  channel shape. Use it as::

    model, params, info = load_trained("workdir/noniden_quick/models/nonid")
    sch = info["schedule"]
    D = noniden.velocity_denoiser(functools.partial(model.apply, params), sch,
                                  input_norm=info["model"]["input_norm"], min_beta=info["min_beta"])
    start = noniden.initial_state(h_bar, m, sch)
    h_hat = noniden.make_generator(D, sch, num_steps=50)(start, key)
  """
  import ml_collections

  def build(info):
    # model.json files written before the schedule value existed hold T (and maybe beta_max) at the top level,
    # and older ones trained on times 0..T with a fixed 1e-3 input floor.
    info["schedule"] = schedules.GammaSchedule.from_dict(info.get("schedule", info))
    info.setdefault("tau_min", 0)
    info.setdefault("min_beta", 1e-3)
    model = make_model(ml_collections.ConfigDict(info["model"]), info["schedule"])
    shape = (1,) + tuple(info["shape"])
    return model, model.init(jax.random.PRNGKey(0), jnp.zeros(shape, jnp.complex64), jnp.zeros(shape))

  return common.load_trained(model_dir, build, "WORKDIR/models/NAME")


def run(config, workdir: str) -> dict:
  from jaxchan.experiments import noniden_eval, noniden_report

  started = time.time()
  validate(config)
  os.makedirs(workdir, exist_ok=True)
  log = common.log
  path = ensure_dataset(config, log=log)
  shape = (config.data.n_bs, config.data.n_freq)
  with data.Dataset(path, build_command=build_command(config), kind="snapshot", shapes={"h": shape}) as ds:
    models, training = {}, {}
    for i, (name, mcfg) in enumerate(config.models.items()):
      model, params, history = train_one(name, mcfg, config, ds, workdir, log=log,
                                         label=f"{name} ({i + 1}/{len(config.models)})")
      models[name] = (model, params, mcfg)
      training[name] = (mcfg.to_dict(), history)
    generation = noniden_eval.evaluate(config, models, ds, log=log)
  results = dict(config=json.loads(config.to_json()), dataset=path, device=str(jax.devices()[0]),
                 training=training, generation=generation)
  common.write_results(workdir, results, noniden_report.render, started=started)
  return results
