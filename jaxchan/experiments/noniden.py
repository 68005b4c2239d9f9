"""Non-identical diffusion, trained and evaluated end to end (``configs/noniden.py``).

1. The configured dataset (``simo_ofdm`` by default) is built once with datagen if missing.
2. Each model in ``config.models`` is trained with Algorithm 1 (velocity loss, tau
   sampled by its pattern) in ``workdir/models/<name>``; reruns resume from the
   last checkpoint and skip finished models.
3. Generation (Algorithm 2) runs on test channels observed through each initial
   noise pattern, for every stepping rule and sampler in ``config.eval``; the NMSE
   after every step is recorded (dataset level, ratio of sums).
4. ``results.json``, ``tables.md`` and ``fig_steps.png`` (NMSE per step, identical vs
   non-identical, one panel per pattern) are written to the workdir.
"""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxchan import (checks, data, io, lmmse, metrics, noise_patterns, noniden, schedules, stepping, tau_patterns,
                     train)
from jaxchan.experiments import common
from jaxchan.models.mixer import AVERAGING, PLACEMENTS, MixerDenoiser


# ---------------------------------------------------------------------------
# Config validation: one clear message before any work.


def parse_stepping(spec: str):
  """``"tau-waterfilling"``, ``"alpha-uniform"``, ``"tau-hybrid0.5"`` -> kwargs of generate."""
  domain, _, rule = spec.partition("-")
  mix = 0.5
  if rule.startswith("hybrid"):
    mix = float(rule[len("hybrid"):] or 0.5)
    rule = "hybrid"
  if domain not in stepping.DOMAINS or rule not in stepping.RULES or not 0 <= mix <= 1:
    raise ValueError(f"config.eval.steppings entry {spec!r} must be DOMAIN-RULE with DOMAIN in "
                     f"{stepping.DOMAINS} and RULE in {stepping.RULES} (hybrid may carry its weight, "
                     "e.g. tau-hybrid0.3).")
  return dict(domain=domain, rule=rule, mix=mix)


def validate(config):
  for name, m in config.models.items():
    checks.choice(f"config.models.{name}.placement", m.placement, PLACEMENTS)
    checks.choice(f"config.models.{name}.averaging", m.averaging, AVERAGING)
    checks.choice(f"config.models.{name}.tau_pattern", m.tau_pattern, tau_patterns.PATTERNS)
    checks.choice(f"config.models.{name}.input_norm", m.input_norm, noniden.INPUT_NORMS)
  for p in config.eval.patterns:
    checks.choice("config.eval.patterns entry", p, noise_patterns.PATTERNS)
    if p not in config.eval.snr_db:
      raise ValueError(f"config.eval.snr_db has no SNR for pattern {p!r}; add --config.eval.snr_db.{p}=DB.")
  if not config.beta_max > 0:
    raise ValueError(f"config.beta_max={config.beta_max!r} must be positive (the paper's eq. (10) uses 0.2).")
  checks.choice("config.eval.start", config.eval.start, noniden.STARTS)
  for field in ("num_steps", "num_test", "batch_size", "bound_samples"):
    checks.positive_int(f"config.eval.{field}", config.eval.get(field, 1))
  for name, m in config.models.items():
    tau_min, min_beta = m.get("tau_min", config.train.tau_min), config.min_beta
    if tau_min not in (0, 1):
      raise ValueError(f"config.models.{name}.tau_min / config.train.tau_min={tau_min!r} must be 1 (training "
                       "times 1..T, the times generation uses; the default) or 0 (times 0..T).")
    try:
      noniden.check_training_times(tau_min, min_beta or None, config.T, config.beta_max)
    except ValueError as e:
      raise ValueError(f"config.train.tau_min / config.min_beta: {e}") from None
  checks.in_range("config.eval.background", config.eval.background, 0.0, 1.0)
  for s in config.eval.steppings:
    parse_stepping(s)
  for s in config.eval.samplers:
    noniden.parse_sampler(s)
  if config.eval.compare_identical and config.eval.compare_identical not in config.models:
    raise ValueError(f"config.eval.compare_identical={config.eval.compare_identical!r} names no model in "
                     f"config.models ({', '.join(config.models)}).")
  for name in tuple(config.eval.models) + tuple(config.eval.full_grid_models):
    if name not in config.models:
      raise ValueError(f"config.eval model {name!r} names no model in config.models ({', '.join(config.models)}).")
  if config.eval.main_model not in config.models:
    raise ValueError(f"config.eval.main_model={config.eval.main_model!r} names no model in config.models "
                     f"({', '.join(config.models)}).")


# ---------------------------------------------------------------------------
# Data.


def dataset_path(config) -> str:
  return common.dataset_path(config.data)


def build_command(config) -> str:
  return common.build_command(config.data)


def ensure_dataset(config, log=print) -> str:
  return common.ensure_dataset(config.data, progress=config.progress, log=log)


# ---------------------------------------------------------------------------
# Training (Algorithm 1).


def make_model(mcfg, T, beta_max: float = 0.2) -> MixerDenoiser:
  return MixerDenoiser(num_layers=mcfg.num_layers, expansion=mcfg.expansion, embed_dim=mcfg.embed_dim,
                       placement=mcfg.placement, averaging=mcfg.averaging, T=T, beta_max=beta_max)


def train_one(name, mcfg, config, ds, workdir, log=print):
  T = config.T
  model = make_model(mcfg, T, config.beta_max)
  tau_min, min_beta = mcfg.get("tau_min", config.train.tau_min), config.min_beta or None
  shape = ds.shape("h")
  n_train = ds.size("train")
  bs = config.train.batch_size
  steps_per_epoch = n_train // bs
  opt = train.step_decay_adam(config.train.lr, steps_per_epoch=steps_per_epoch,
                              decay_every_epochs=config.train.decay_every_epochs,
                              decay_factor=config.train.decay_factor)
  key = jax.random.PRNGKey(config.seed)
  params = model.init(key, jnp.zeros((1,) + shape, jnp.complex64), jnp.zeros((1,) + shape))

  def loss_fn(params, h, key):
    k_tau, k_xi = jax.random.split(key)
    tau = tau_patterns.sample(k_tau, mcfg.tau_pattern, h.shape[0], shape, T, tau_min=tau_min)
    return noniden.velocity_loss(functools.partial(model.apply, params), h, tau, k_xi,
                                 input_norm=mcfg.input_norm, T=T, beta_max=config.beta_max, min_beta=min_beta)

  mesh = common.train_mesh(bs)
  step = train.make_train_step(loss_fn, opt, mesh)
  test_h = jnp.asarray(ds.load("test")["h"][:config.train.test_loss_samples])
  test_loss = jax.jit(lambda p: loss_fn(p, test_h, jax.random.PRNGKey(12345)))

  def batches(epoch):
    for b in ds.batches("train", bs, seed=config.seed, epoch=epoch):
      yield jnp.asarray(b["h"])

  model_dir = os.path.join(workdir, "models", name)
  os.makedirs(model_dir, exist_ok=True)
  if common.is_main_process():
    io.atomic_write_json(os.path.join(model_dir, "model.json"),
                         dict(model=mcfg.to_dict(), T=T, beta_max=config.beta_max, shape=list(shape),
                              tau_min=tau_min, min_beta=noniden.input_floor(T, config.beta_max, min_beta)))
  state = train.init_state(params, opt, jax.random.PRNGKey(config.seed + 1))
  state, history = train.fit(state, step, batches, num_epochs=config.train.num_epochs,
                             workdir=model_dir,
                             eval_fn=lambda p: {"test_loss": test_loss(p)}, progress=config.progress, log=log,
                             mesh=mesh)
  return model, state.params, history


def load_trained(model_dir: str):
  """Load a trained model from ``WORKDIR/models/NAME``: ``(model, params, info)``.

  ``info`` holds the model config, ``T``, ``beta_max``, the input floor
  ``min_beta`` it was trained with, and the channel shape. Use it as::

    model, params, info = load_trained("workdir/noniden/models/nonid")
    D = noniden.velocity_denoiser(functools.partial(model.apply, params), input_norm=info["model"]["input_norm"],
                                  T=info["T"], beta_max=info["beta_max"], min_beta=info["min_beta"])
    g0, tau0 = noniden.initial_state(h_bar, m, T=info["T"], beta_max=info["beta_max"])
    h_hat = noniden.make_generator(D, num_steps=50, T=info["T"], beta_max=info["beta_max"])(g0, tau0, key)
  """
  import ml_collections

  meta_path = os.path.join(model_dir, "model.json")
  if not os.path.exists(meta_path):
    raise FileNotFoundError(f"{meta_path} not found: {model_dir} is not a trained-model folder "
                            "(expected WORKDIR/models/NAME written by run.py).")
  info = json.load(open(meta_path))
  mcfg = ml_collections.ConfigDict(info["model"])
  info.setdefault("beta_max", 0.2)
  info.setdefault("tau_min", 0)        # written before training times became 1..T
  info.setdefault("min_beta", 1e-3)    # ... with the old fixed floor
  model = make_model(mcfg, info["T"], info["beta_max"])
  shape = tuple(info["shape"])
  template = model.init(jax.random.PRNGKey(0), jnp.zeros((1,) + shape, jnp.complex64), jnp.zeros((1,) + shape))
  params = common.restore_params(model_dir, template)
  return model, params, info


# ---------------------------------------------------------------------------
# Generation (Algorithm 2) and its NMSE after every step.


_RUNNERS = {}


def _runner(model, input_norm, min_beta, gen_kwargs, num_steps, T):
  """A jitted ``(params, g0, tau0, h, key) -> per-step squared error [N_G]``, cached by its static settings.

  Models with the same architecture share compiled code (Flax modules compare by
  their fields), so a sweep compiles each stepping x sampler once.
  """
  cache_key = (model, input_norm, min_beta, tuple(sorted(gen_kwargs.items())), num_steps, T)
  if cache_key not in _RUNNERS:

    def run(params, g0, tau0, hb, key):
      bm = model.beta_max
      denoiser = noniden.velocity_denoiser(functools.partial(model.apply, params), input_norm=input_norm, T=T,
                                           beta_max=bm, min_beta=min_beta)
      _, traj = noniden.generate(denoiser, g0, tau0, key, num_steps=num_steps, T=T, beta_max=bm,
                                 return_trajectory=True,
                                 **gen_kwargs)
      return jnp.sum(jnp.abs(traj.g - hb[None]) ** 2, axis=(1, 2, 3))

    _RUNNERS[cache_key] = jax.jit(run)
  return _RUNNERS[cache_key]


def generation_nmse(model, params, mcfg, h, start, *, gen_kwargs, num_steps, T, batch, min_beta, key):
  """Dataset-level NMSE after each of the ``num_steps`` generation steps, ``[num_steps]``.

  ``start``: ``(g0, tau0)``, each ``[N, N_a, N_c]``.
  """
  run = _runner(model, mcfg.input_norm, min_beta, gen_kwargs, num_steps, T)
  g0, tau0 = start
  num = np.zeros(num_steps)
  den = 0.0
  for i in range(0, h.shape[0], batch):
    sl = slice(i, i + batch)
    num += np.asarray(run(params, *common.shard_eval(g0[sl], tau0[sl], h[sl]), jax.random.fold_in(key, i)))
    den += float(jnp.sum(jnp.abs(h[sl]) ** 2))
  return num / den


def one_shot_nmse(model, params, mcfg, h, start, *, T, batch, min_beta):
  """NMSE of the single denoising step ``D(g0, tau0)`` (no iteration); ``start = (g0, tau0)``."""
  g0, tau0 = start
  D = jax.jit(noniden.velocity_denoiser(functools.partial(model.apply, params), input_norm=mcfg.input_norm, T=T,
                                        beta_max=model.beta_max, min_beta=min_beta))
  num = den = 0.0
  for i in range(0, h.shape[0], batch):
    sl = slice(i, i + batch)
    num += float(jnp.sum(jnp.abs(D(g0[sl], tau0[sl]) - h[sl]) ** 2))
    den += float(jnp.sum(jnp.abs(h[sl]) ** 2))
  return num / den


def _combos(config, name, mcfg):
  """``(stepping, sampler, start)`` triples evaluated for one model.

  Every model: the first stepping and sampler from its own start (the identical
  baseline: :func:`jaxchan.noniden.identical_start` with uniform steps). Full-grid
  models add every stepping, every sampler, and the ablations of the start: the
  paper's eqs. (15)-(16) start with the default sampler and with each ``eq9``
  sampler (``eq9:0.4`` from the paper's start is the paper as printed).
  """
  if mcfg.placement == "identical":
    return [("tau-uniform", config.eval.samplers[0], "identical")]
  st0, s0, start = config.eval.steppings[0], config.eval.samplers[0], config.eval.start
  combos = [(st0, s0, start)]
  if name in config.eval.full_grid_models:
    combos += [(st, s0, start) for st in config.eval.steppings[1:]]
    combos += [(st0, sp, start) for sp in config.eval.samplers[1:]]
    other = [x for x in noniden.STARTS if x != start][0]
    combos += [(st0, sp, other) for sp in config.eval.samplers if sp == s0 or sp.startswith("eq9")]
  return combos


def velocity_bounds(config, models, cov, key, log=print) -> dict:
  """Per model: the velocity loss a Gaussian prior with the training covariance reaches on its tau pattern.

  ``{name: {"mean": ..., "sem": ...}}`` over ``config.eval.bound_samples`` tau draws
  (:func:`jaxchan.lmmse.velocity_error`); the README reports training losses against it.
  """
  out = {}
  shape = (config.data.n_bs, config.data.n_freq)
  for i, (name, (_, _, mcfg)) in enumerate(models.items()):
    tau_min = mcfg.get("tau_min", config.train.tau_min)
    tau = tau_patterns.sample(jax.random.fold_in(key, i), mcfg.tau_pattern, config.eval.bound_samples, shape,
                              config.T, tau_min=tau_min)
    alpha, beta = schedules.alpha_beta(tau, config.T, config.beta_max)
    e = np.asarray(lmmse.velocity_error(cov, alpha, beta))
    out[name] = {"mean": float(e.mean()), "sem": float(e.std(ddof=1) / np.sqrt(len(e))) if len(e) > 1 else 0.0}
    log(f"{name}: Gaussian (LMMSE) bound on the velocity loss, {mcfg.tau_pattern} pattern: "
        f"{out[name]['mean']:.4f} ± {out[name]['sem']:.4f}")
  return out


def evaluate(config, models, ds, log=print):
  T = config.T
  min_beta = config.min_beta or None
  n = min(config.eval.num_test, ds.size("test"))
  h = jnp.asarray(ds.load("test")["h"][:n])
  out = {"num_test": n, "start": config.eval.start, "raw_start_nmse": {}, "lmmse_nmse": {}, "one_shot_nmse": {},
         "one_shot_nmse_by_start": {}, "rows": []}
  eval_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1000)
  if config.eval.lmmse:
    mu, cov = lmmse.sample_moments(jnp.asarray(ds.load("train")["h"][:config.eval.lmmse_train_samples]))
    lmmse_fn = jax.jit(lmmse.estimate)
    out["velocity_bound"] = velocity_bounds(config, models, cov, jax.random.fold_in(eval_key, 999), log=log)
  for p_i, pattern in enumerate(config.eval.patterns):
    k_obs, k_ident, k_gen = jax.random.split(jax.random.fold_in(eval_key, p_i), 3)
    obs = noise_patterns.observe(h, k_obs, pattern, T=T, beta_max=config.beta_max,
                                 background=config.eval.background, snr_db=config.eval.snr_db[pattern],
                                 start=config.eval.start)
    starts = {s: noniden.initial_state(obs.h_bar, obs.m, start=s, T=T, beta_max=config.beta_max)
              for s in noniden.STARTS}
    starts["identical"] = noniden.identical_start(obs.h_bar, obs.m, k_ident, T=T, beta_max=config.beta_max)
    out["raw_start_nmse"][pattern] = float(metrics.nmse(h, obs.g0))
    if config.eval.lmmse:
      out["lmmse_nmse"][pattern] = float(metrics.nmse(h, lmmse_fn(obs.h_bar, obs.m, mu, cov)))
      log(f"LMMSE {pattern}: NMSE {out['lmmse_nmse'][pattern]:.4f}")
    for name, (model, params, mcfg) in models.items():
      if name not in config.eval.models:
        continue
      if name == config.eval.main_model:
        # One denoiser call at the start, D(g0, tau0): the network's jump-to-clean estimate
        # (the CME it approximates), against which the iterative generation can be judged.
        by_start = {s: one_shot_nmse(model, params, mcfg, h, starts[s], T=T, batch=config.eval.batch_size,
                                     min_beta=min_beta) for s in noniden.STARTS}
        out["one_shot_nmse"][pattern] = by_start[config.eval.start]
        out["one_shot_nmse_by_start"][pattern] = by_start
        log(f"{name} {pattern} one-shot D(g0, tau0): NMSE {by_start[config.eval.start]:.4f} "
            f"({', '.join(f'{s} start {v:.4f}' for s, v in by_start.items())})")
      for st, sp, start in _combos(config, name, mcfg):
        curve = generation_nmse(model, params, mcfg, h, starts[start],
                                gen_kwargs={**parse_stepping(st), **noniden.parse_sampler(sp)},
                                num_steps=config.eval.num_steps, T=T, batch=config.eval.batch_size,
                                min_beta=min_beta, key=k_gen)
        out["rows"].append(dict(model=name, pattern=pattern, stepping=st, sampler=sp, start=start,
                                final_nmse=float(curve[-1]), nmse_per_step=curve.tolist()))
        log(f"{name} {pattern} {st} {sp} {start} start: final NMSE {curve[-1]:.4f}")
  return out


# ---------------------------------------------------------------------------
# Outputs.


def _fmt(mean, std):
  return f"{mean:.3f} ± {std:.3f}"


def table1(results, config) -> str:
  """Table I: training loss (mean ± std over the last epochs) by embedding x averaging x input x pattern."""
  last = config.eval.table1_last_epochs
  cells = {}
  for name, (m, hist) in results["training"].items():
    if m["placement"] == "identical":
      continue
    losses = np.array([h["train_loss"] for h in hist[-last:]])
    cells[(m["placement"], m["averaging"], m["tau_pattern"], m["input_norm"])] = _fmt(losses.mean(), losses.std())
  if not cells:
    return ""
  pats = list(dict.fromkeys(k[2] for k in cells))
  norms = list(dict.fromkeys(k[3] for k in cells))
  cols = [(p, n) for p in pats for n in norms]
  rows = []
  for pl in ("row", "col", "both"):
    for av in ("tau", "alpha"):
      if any((pl, av) == k[:2] for k in cells):
        rows.append([pl, av] + [cells.get((pl, av, p, n), "-") for p, n in cols])
  head = ["embedding", "averaging"] + [f"{p} / identical {'noise' if n == 'noise' else 'power'}" for p, n in cols]
  return (f"\n## Table I: training loss (velocity NMSE), mean ± std over the last {last} epochs\n\n"
          + io.markdown_table(head, rows))


def tables(results, config) -> str:
  gen = results["generation"]
  pats = list(config.eval.patterns)
  md = ["# Non-identical diffusion results\n\n",
        f"Dataset `{results['dataset']}`, device {results['device']}. Generation: {gen['num_test']} test channels, "
        f"N_G = {config.eval.num_steps}; NMSE is linear and dataset level (ratio of sums).\n"]
  md.append("\n## Training\n\n")
  bounds = gen.get("velocity_bound", {})
  if bounds:
    md.append("Gaussian bound: the velocity loss (eq. 12) of the exact estimator for a Gaussian prior with the "
              "training covariance, on the model's tau pattern (mean ± standard error over "
              f"{config.eval.bound_samples} tau draws). A loss above it means the network has not learned even "
              "the channel's second-order statistics.\n\n")
  fmt_b = lambda n: f"{bounds[n]['mean']:.4f} ± {bounds[n]['sem']:.4f}" if n in bounds else "-"  # noqa: E731
  md.append(io.markdown_table(["model", "placement", "averaging", "input", "tau pattern", "epochs", "train loss",
                               "test loss", "Gaussian bound"],
                              [[n, m["placement"], m["averaging"], m["input_norm"], m["tau_pattern"],
                                h[-1]["epoch"], h[-1]["train_loss"], h[-1]["test_loss"], fmt_b(n)]
                               for n, (m, h) in results["training"].items()]))
  md.append(table1(results, config))
  start = gen.get("start", config.eval.start)
  # Main tables: every model from its own default start (non-identical: config.eval.start; the
  # identical baseline: its scalar-time start). The other start appears in the ablation table only.
  rows_by = {(r["model"], r["stepping"], r["sampler"], r["pattern"]): r["final_nmse"] for r in gen["rows"]
             if r.get("start", start) in (start, "identical")}
  ablation = {(r["stepping"], r["sampler"], r.get("start", start), r["pattern"]): r["final_nmse"]
              for r in gen["rows"] if r["model"] == config.eval.main_model}
  if not gen["rows"]:
    return "".join(md)
  main = config.eval.main_model
  s0, st0 = config.eval.samplers[0], config.eval.steppings[0]
  md.append(f"\nDefaults: sampler `{s0}`, `{start}` start, stepping `{st0}` (Table II varies the stepping, "
            "the sampler table the sampler); the ablation table holds the paper's literal choices.\n")
  baseline_rows = [[f"raw start H_tilde^(0) ({start})"] + [gen["raw_start_nmse"][p] for p in pats]]
  if gen.get("one_shot_nmse"):
    baseline_rows.append([f"one-shot D(g0, tau0) of `{main}`"] + [gen["one_shot_nmse"].get(p, float("nan"))
                                                                  for p in pats])
  if gen["lmmse_nmse"]:
    baseline_rows.append(["LMMSE (train sample covariance)"] + [gen["lmmse_nmse"][p] for p in pats])
  # Table II: stepping methods of the main model.
  t2 = [[st] + [rows_by.get((main, st, s0, p), float("nan")) for p in pats] for st in config.eval.steppings
        if (main, st, s0, pats[0]) in rows_by]
  md.append(f"\n## Table II: final NMSE of `{main}` by stepping ({s0}) x initial pattern\n\n")
  md.append(io.markdown_table(["stepping"] + pats, t2 + baseline_rows))
  # Samplers: the paper's eq. (9) against the eta family.
  t_s = [[sp] + [rows_by.get((main, st0, sp, p), float("nan")) for p in pats] for sp in config.eval.samplers
         if (main, st0, sp, pats[0]) in rows_by]
  md.append(f"\n## Samplers: final NMSE of `{main}` ({st0}) x initial pattern\n\n")
  md.append(io.markdown_table(["sampler"] + pats, t_s))
  # Ablations: the paper's literal sampler (eq. 9 at eps = 0.4) and start (eqs. 15-16).
  labels = {"consistent": "variance-consistent start", "paper": "paper start, eqs. (15)-(16)"}
  t_a = []
  for (st, sp, stt) in dict.fromkeys(k[:3] for k in ablation):
    if st != st0:
      continue
    what = "eq. (9) as printed" if sp.startswith("eq9") else "eta family"
    t_a.append([f"{sp} ({what}), {labels.get(stt, stt)}"] + [ablation.get((st, sp, stt, p), float("nan"))
                                                             for p in pats])
  if any(r.get("start", start) != start for r in gen["rows"] if r["model"] == main):
    by_start = gen.get("one_shot_nmse_by_start", {})
    for stt in noniden.STARTS:
      if all(stt in by_start.get(p, {}) for p in pats):
        t_a.append([f"one-shot D(g0, tau0), {labels[stt]}"] + [by_start[p][stt] for p in pats])
    md.append(f"\n## Ablations: final NMSE of `{main}` ({st0}) by sampler and start\n\n")
    md.append(io.markdown_table(["sampler, start"] + pats, t_a))
  # Table III: training patterns (models that differ from the main model only in tau_pattern).
  ref = results["training"][main][0]
  same_arch = [n for n, (m, _) in results["training"].items()
               if all(m[k] == ref[k] for k in ("placement", "averaging", "input_norm")) and
               (n, st0, s0, pats[0]) in rows_by]
  if len(same_arch) > 1:
    t3 = [[results["training"][n][0]["tau_pattern"]] + [rows_by[(n, st0, s0, p)] for p in pats] for n in same_arch]
    md.append(f"\n## Table III: final NMSE by training tau-pattern ({st0}, {s0}) x initial pattern\n\n")
    md.append(io.markdown_table(["training pattern"] + pats, t3))
  # Identical vs non-identical (Fig. 7's last step).
  ident = config.eval.compare_identical
  if ident and (ident, "tau-uniform", s0, pats[0]) in rows_by:
    t7 = [[f"non-identical `{main}` ({st0}, {start} start)"] + [rows_by[(main, st0, s0, p)] for p in pats],
          [f"identical `{ident}` (scalar time, identical_start)"] + [rows_by[(ident, "tau-uniform", s0, p)]
                                                                      for p in pats]]
    md.append(f"\n## Identical vs non-identical diffusion: final NMSE ({s0})\n\n")
    md.append(io.markdown_table(["model"] + pats, t7 + baseline_rows))
  # Embedding schemes (Fig. 8).
  emb = embedding_models(results, config)
  if len(emb) > 1:
    t8 = [[f"{results['training'][n][0]['placement']} / {results['training'][n][0]['averaging']} avg"]
          + [rows_by[(n, st0, s0, p)] for p in pats] for n in emb]
    md.append(f"\n## Embedding schemes (cf. Fig. 8): final NMSE ({st0}, {s0})\n\n")
    md.append(io.markdown_table(["embedding"] + pats, t8))
  return "".join(md)


def plot_steps(results, config, path):
  """NMSE (dB) after every generation step, non-identical vs identical, one panel per initial pattern.

  Dotted lines: the raw start, the one-shot estimate D(g0, tau0) and LMMSE, so a reader
  sees at once whether iterating helps.
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  gen = results["generation"]
  pats = list(config.eval.patterns)
  start = gen.get("start", config.eval.start)
  ncol = min(3, len(pats))
  nrow = -(-len(pats) // ncol)
  fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.3 * nrow), squeeze=False)
  main, ident = config.eval.main_model, config.eval.compare_identical
  s0, st0 = config.eval.samplers[0], config.eval.steppings[0]
  db = lambda x: 10 * np.log10(np.asarray(x))  # noqa: E731
  for ax, p in zip(axes.flat, pats):
    for r in gen["rows"]:
      if r["pattern"] != p or r["sampler"] != s0:
        continue
      steps = np.arange(1, len(r["nmse_per_step"]) + 1)
      if r["model"] == main and r["stepping"] == st0 and r.get("start", start) == start:
        ax.plot(steps, db(r["nmse_per_step"]), "C0-", label=f"non-identical, {st0}")
      if ident and r["model"] == ident:
        ax.plot(steps, db(r["nmse_per_step"]), "C1--", label="identical (scalar time)")
    refs = [("raw_start_nmse", "raw start", "C7"), ("one_shot_nmse", "one-shot D(g0, tau0)", "C2"),
            ("lmmse_nmse", "LMMSE", "C3")]
    for k, label, color in refs:
      if p in gen.get(k, {}):
        ax.axhline(db(gen[k][p]), color=color, ls=":", lw=1.2, label=label)
    ax.set_title(f"{p} ({config.eval.snr_db[p]:+g} dB)")
    ax.set_xlabel("generation step")
    ax.set_ylabel("NMSE (dB)")
    ax.grid(alpha=0.3)
  for ax in list(axes.flat)[len(pats):]:
    ax.axis("off")
  axes.flat[0].legend(fontsize=7)
  fig.suptitle(f"Generation NMSE per step ({s0}, {start} start, {gen['num_test']} test channels)", fontsize=10)
  fig.tight_layout()
  io.atomic_save_figure(fig, path, dpi=110)
  plt.close(fig)


def embedding_models(results, config):
  """Models that differ from the main model only in embedding placement/averaging and were evaluated."""
  ref = results["training"][config.eval.main_model][0]
  s0, st0 = config.eval.samplers[0], config.eval.steppings[0]
  start = results["generation"].get("start", config.eval.start)
  done = {(r["model"], r["stepping"], r["sampler"]) for r in results["generation"]["rows"]
          if r.get("start", start) == start}
  return [n for n, (m, _) in results["training"].items()
          if m["tau_pattern"] == ref["tau_pattern"] and m["input_norm"] == ref["input_norm"]
          and m["placement"] != "identical" and (n, st0, s0) in done]


def plot_embeddings(results, config, path) -> bool:
  """Fig. 8: final NMSE per initial pattern for each embedding scheme (grouped bars). False if < 2 schemes."""
  names = embedding_models(results, config)
  if len(names) < 2:
    return False
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  pats = list(config.eval.patterns)
  s0, st0 = config.eval.samplers[0], config.eval.steppings[0]
  start = results["generation"].get("start", config.eval.start)
  val = {(r["model"], r["pattern"]): r["final_nmse"] for r in results["generation"]["rows"]
         if r["stepping"] == st0 and r["sampler"] == s0 and r.get("start", start) == start}
  fig, ax = plt.subplots(figsize=(1.4 * len(pats) * len(names) / 2 + 3, 3.4))
  width = 0.8 / len(names)
  for i, n in enumerate(names):
    m = results["training"][n][0]
    ax.bar(np.arange(len(pats)) + i * width, [val.get((n, p), np.nan) for p in pats], width,
           label=f"{m['placement']} / {m['averaging']} avg")
  ax.set_xticks(np.arange(len(pats)) + 0.4 - width / 2)
  ax.set_xticklabels(pats)
  ax.set_ylabel(f"final NMSE ({st0}, {s0})")
  ax.set_title("embedding schemes (cf. Fig. 8)")
  ax.legend(fontsize=8)
  fig.tight_layout()
  io.atomic_save_figure(fig, path, dpi=110)
  plt.close(fig)
  return True


def run(config, workdir: str) -> dict:
  validate(config)
  os.makedirs(workdir, exist_ok=True)
  log = print
  path = ensure_dataset(config, log=print)
  shape = (config.data.n_bs, config.data.n_freq)
  with data.Dataset(path, build_command=build_command(config), kind="snapshot", shapes={"h": shape}) as ds:
    models, training = {}, {}
    for name, mcfg in config.models.items():
      model, params, history = train_one(name, mcfg, config, ds, workdir, log=log)
      models[name] = (model, params, mcfg)
      training[name] = (mcfg.to_dict(), history)
    generation = evaluate(config, models, ds, log=log)
  results = dict(config=json.loads(config.to_json()), dataset=path, device=str(jax.devices()[0]),
                 training={n: (m, h) for n, (m, h) in training.items()}, generation=generation)
  write_outputs(results, config, workdir)
  return results


def write_outputs(results, config, workdir: str) -> bool:
  """``results.json``, ``tables.md`` and the figures, written by process 0 only; True if written."""
  if not common.is_main_process():
    return False
  io.atomic_write_json(os.path.join(workdir, "results.json"), results)
  io.atomic_write_text(os.path.join(workdir, "tables.md"), tables(results, config))
  plot_steps(results, config, os.path.join(workdir, "fig_steps.png"))
  plot_embeddings(results, config, os.path.join(workdir, "fig_embeddings.png"))
  return True
