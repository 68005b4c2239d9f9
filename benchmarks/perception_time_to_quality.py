"""Time to quality for the perception DMs: K-sample Bayesian precoding by every solver against the full chain.

  python -m benchmarks.perception_time_to_quality --workdir=workdir/perception_quick [--num=64] [--K=16] \
      [--out=FILE.json]

For each scenario trained in ``--workdir`` (``WORKDIR/SCENARIO/models/dm``, the perception job's layout) and the
test split of the dataset it was trained on, every solver of :data:`SOLVERS`, and every distilled student found
beside the DM (``dm_distill_<N>``, sampled by DDIM in its ``N`` steps, row ``distilled:N``; at guidance 1 only, the
model they distil), draws ``K`` posterior samples per SRS observation (the same observations and keys for all) and
the Bayesian precoder (eq. 28) is formed from them. The quality of a setting is the mean spectral efficiency of that
precoder at each observation's DL SNR (eq. 25), with its standard error and, paired on the same observations, its
gap to the full chain's with the gap's standard error; its cost the network calls per sample and the measured
seconds per observation of observation, sampling and precoder together (compiled first, compile time recorded apart,
a warm-up run, then one timed run on the whole batch), and the latency of one user (one observation, its ``K``
samples and precoder) with that program's compile time apart.

The answer per scenario is the fastest setting whose SE is at most ``--tolerance`` (0.1 bps/Hz) below the full
chain's (one-sided: the SE of a precoder is a quantity where more is better, unlike a sample's NMSE), and the Pareto
front in (seconds, SE). The classical precoders a reviewer asks for sit beside, outside the selection: the Gaussian
predictor's expected Gramian (its ``K -> infinity`` Bayesian precoder, no network) and the SRS history's sample
covariance. :func:`report` renders the table and :func:`figure` the figure from the JSON alone.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxchan import gaussian_predictor, metrics, precoding, prediction, srs
from jaxchan.ddpm_solvers import Solver

REFERENCE = "ancestral"
SOLVERS = (REFERENCE, "ancestral:10", "ddim:10", "dpm2m:20", "dpm2m:10", "dpm2m:5", "dpm2m:3", "dpm2m:2")
SCENARIOS = ("low_mobility", "high_mobility")


def _json(path):
  with open(path) as f:
    return json.load(f)


def find_models(workdir: str) -> dict:
  """``{scenario: model folder}`` of the trained DMs under ``workdir`` (``model.json`` and a checkpoint); a folder
  with none, or with another model there, is refused (ValueError naming ``--workdir``)."""
  found = {s: os.path.join(workdir, s, "models", "dm") for s in SCENARIOS
           if os.path.isfile(os.path.join(workdir, s, "models", "dm", "model.json"))}
  if not found:
    raise ValueError(f"--workdir={workdir!r} holds no trained perception DM (WORKDIR/SCENARIO/models/dm/model.json); "
                     "train one with `python run.py --config=configs/perception.py:quick --workdir=DIR` (add "
                     "--config.train.models='(\"dm\",)' --config.eval.enabled=False for the DMs alone).")
  for d in found.values():
    if _json(os.path.join(d, "model.json")).get("use") != "dm":
      raise ValueError(f"--workdir={workdir!r}: {d} is not a perception DM (its model.json has no use 'dm'); pass a "
                       "perception workdir.")
    ckpt = os.path.join(d, "checkpoints")
    if not (os.path.isdir(ckpt) and os.listdir(ckpt)):
      raise ValueError(f"--workdir={workdir!r}: {d} has no checkpoint yet; let its training write one (rerun the "
                       "job: it resumes) or pass another workdir.")
  return found


def find_students(model_dir: str) -> dict:
  """``{N: folder}`` of the distilled students beside the DM ``model_dir`` (``dm_distill_<N>``, the perception
  job's layout when ``config.distill.enabled``) that hold ``model.json`` and a checkpoint."""
  parent, out = os.path.dirname(model_dir.rstrip("/")), {}
  for name in sorted(os.listdir(parent)):
    d = os.path.join(parent, name)
    if (name.startswith("dm_distill_") and name[len("dm_distill_"):].isdigit()
            and os.path.isfile(os.path.join(d, "model.json")) and os.path.isdir(os.path.join(d, "checkpoints"))
            and os.listdir(os.path.join(d, "checkpoints"))):
      out[int(name[len("dm_distill_"):])] = d
  return dict(sorted(out.items(), reverse=True))


def eval_settings(workdir: str) -> dict:
  """``n_streams``, ``dl_snr_offset_db`` and ``guidance`` of the evaluation: the run's own (``WORKDIR/results.json``)
  when it recorded them, else ``configs/perception.py``'s defaults."""
  import configs
  ev = configs.get("perception").eval
  out = dict(n_streams=int(ev.n_streams), dl_snr_offset_db=float(ev.dl_snr_offset_db), guidance=float(ev.guidance))
  path = os.path.join(workdir, "results.json")
  if os.path.isfile(path):
    run_eval = _json(path).get("config", {}).get("eval", {})
    out.update({k: type(v)(run_eval[k]) for k, v in out.items() if k in run_eval})
  return out


def fastest_within(rows, reference: str, tolerance: float) -> dict:
  """The fastest row whose SE is at most ``tolerance`` bps/Hz below the reference row's (of equally fast ones, the
  higher SE)."""
  ref = next(r for r in rows if r["setting"] == reference)
  best = min((r for r in rows if r["se"] >= ref["se"] - tolerance),
             key=lambda r: (r["seconds_per_observation"], -r["se"]))
  return dict(setting=best["setting"], speedup=ref["seconds_per_observation"] / best["seconds_per_observation"],
              se_gap=best["se"] - ref["se"])


def pareto(rows) -> list[str]:
  """Names of the rows no other row beats in both seconds per observation (lower) and SE (higher)."""
  key = lambda r: (r["seconds_per_observation"], -r["se"])  # noqa: E731
  return [r["setting"] for r in rows
          if not any(all(a <= b for a, b in zip(key(o), key(r))) and key(o) != key(r) for o in rows)]


def _mean_se(x) -> tuple[float, float]:
  x = np.asarray(x, np.float64)
  return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x)))


def _timed(fn, *args) -> tuple:
  """``(outputs, compile seconds, run seconds, compiled)`` of ``jax.jit(fn)(*args)``: compiled apart, run once to
  warm up, then timed on a second run."""
  t0 = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  t_compile = time.perf_counter() - t0
  out = jax.block_until_ready(compiled(*args))
  t0 = time.perf_counter()
  jax.block_until_ready(compiled(*args))
  return out, t_compile, time.perf_counter() - t0, compiled


def _scenario(scenario, model_dir, num, K, solvers, key, ev, latency_repeats=3):
  from jaxchan import data as data_lib
  from jaxchan.experiments import common
  from jaxchan.experiments import perception_setup as exp
  model, params, cfg = exp.load_trained(model_dir)
  path = common.dataset_path(cfg.data, scenario)
  ds = data_lib.Dataset(path, build_command=common.build_command(cfg.data, scenario), kind="srs_prediction",
                        shapes=exp.shapes(cfg))
  with ds:
    view = ds if exp.n_bs_used(cfg) == cfg.data.n_bs else data_lib.BSAntennaSubset(ds, exp.n_bs_used(cfg))
    if num > view.size("test"):
      raise ValueError(f"--num={num} but the test split of {path} holds {view.size('test')} observations; pass "
                       f"--num <= {view.size('test')}.")
    test = view.load("test")
    hist, h = jnp.asarray(test["history"][:num]), jnp.asarray(test["target"][:num])
    # An anchored DM carries its fitted age correlation; for another, fit it on the training histories (the
    # saved config has no held-out split, so the fit may include those histories).
    rho = (np.array([complex(*p) for p in model.age_corr]) if model.age_corr
           else exp.fit_age_correlation(view))
  sch, scfg, n_s = exp.dm_schedule(cfg), exp.srs_cfg(cfg), ev["n_streams"]
  observe = lambda hs, k: srs.observe(hs, k, num_hops=scfg.num_hops, snr_db_range=scfg.snr_db_range)  # noqa: E731
  k_obs, k_dm = jax.random.split(key)

  @jax.jit
  def se_of(W, hs, target, k):
    """SE at the observation's DL SNR, its UL SNR + the evaluation's offset (as the perception tables)."""
    return precoding.spectral_efficiency(target, W, metrics.from_db(observe(hs, k).snr_db + ev["dl_snr_offset_db"]))

  def dm_precoder(spec, net):
    kw = exp.sampler_kw(cfg, spec)

    def run(p, hs, k_o, k_s):
      s = prediction.sample_posterior(net, p, observe(hs, k_o), k_s, sch, num_samples=K, guidance=ev["guidance"],
                                      **kw)
      return precoding.bayesian_precoder(s, n_s)
    return run

  # The distilled students sample the conditional model (w = 1) by DDIM at their own step count.
  students, not_run = find_students(model_dir), {}
  if students and ev["guidance"] != 1.0:
    not_run = {f"distilled:{n}": f"a student samples at guidance 1, the evaluation at {ev['guidance']:g}"
               for n in students}
    students = {}
  runs = [(spec, spec, model, params) for spec in solvers]
  for n, d in students.items():
    net, p, _ = exp.load_trained(d)
    runs.append((f"distilled:{n}", f"ddim:{n}", net, p))
  rows, baselines, se_ref = [], [], None
  for label, spec, net, p in runs:
    run = dm_precoder(spec, net)
    W, t_compile, t_run, _ = _timed(run, p, hist, k_obs, k_dm)
    se = np.asarray(se_of(W, hist, h, k_obs))
    se_ref = se if se_ref is None else se_ref
    _, t1_compile, _, one = _timed(run, p, hist[:1], k_obs, k_dm)     # compiled and warm
    lat = []
    for _ in range(latency_repeats):
      t0 = time.perf_counter()
      jax.block_until_ready(one(p, hist[:1], k_obs, k_dm))
      lat.append(time.perf_counter() - t0)
    mean, err = _mean_se(se)
    gap, gap_err = _mean_se(se - se_ref)
    rows.append(dict(setting=label, calls=Solver.parse(spec).steps(sch), seconds_per_observation=t_run / num,
                     compile_s=t_compile, latency_one_user_s=float(np.median(lat)), latency_compile_s=t1_compile,
                     se=mean, se_se=err, gap_to_reference=gap, gap_se=gap_err))
    print(f"{label:14s} calls {rows[-1]['calls']:4d}  {1e3 * t_run / num:9.3f} ms/observation  one user "
          f"{1e3 * rows[-1]['latency_one_user_s']:8.2f} ms  SE {mean:.4f} (gap {gap:+.4f} ± {gap_err:.4f})",
          flush=True)

  # The classical precoders, each one chain of dependent LAPACK calls in its own program.
  def gaussian(hs, k):
    return precoding.precoder_from_gramian(gaussian_predictor.expected_gramian(
        gaussian_predictor.predict(observe(hs, k), jnp.asarray(rho))), n_s)

  def sample_cov(hs, k):
    return precoding.wideband_precoder(srs.history_gramian(observe(hs, k)), n_s, hs.shape[-1])

  for label, fn in (("Gaussian predictor, expected Gramian", gaussian), ("SRS sample covariance", sample_cov)):
    W, t_compile, t_run, _ = _timed(fn, hist, k_obs)
    se = np.asarray(se_of(W, hist, h, k_obs))
    mean, err = _mean_se(se)
    gap, gap_err = _mean_se(se - se_ref)
    baselines.append(dict(setting=label, calls=0, seconds_per_observation=t_run / num, compile_s=t_compile,
                          se=mean, se_se=err, gap_to_reference=gap, gap_se=gap_err))
    print(f"{label:40s} classical {1e3 * t_run / num:9.3f} ms/observation  SE {mean:.4f} (gap {gap:+.4f})",
          flush=True)
  return dict(model_dir=model_dir, data=path, T=int(cfg.dm.T), rows=rows, baselines=baselines, not_run=not_run)


def _check_steps(model_dir: str, solvers) -> None:
  """Refuse a solver with more steps than the DM's chain, from its ``model.json``, before anything is timed."""
  import ml_collections

  from jaxchan.experiments import perception_setup as exp
  sch = exp.dm_schedule(ml_collections.ConfigDict({"dm": _json(os.path.join(model_dir, "model.json"))["dm"]}))
  for spec in solvers:
    try:
      Solver.parse(spec).steps(sch)
    except ValueError as e:
      raise ValueError(f"solver {spec!r} cannot run on {model_dir}: {e}") from None


def check(workdir: str, num: int = 64, K: int = 16, tolerance: float = 0.1, solvers=SOLVERS) -> dict:
  """The arguments' errors, one line each, before anything is loaded or timed; returns :func:`find_models`'s."""
  if not (isinstance(num, int) and num >= 2):
    raise ValueError(f"num={num!r}: the SE's standard error needs at least 2 observations.")
  if not (isinstance(K, int) and K >= 1):
    raise ValueError(f"K={K!r} must be a positive integer (posterior samples per observation).")
  if not tolerance > 0:
    raise ValueError(f"tolerance={tolerance!r} must be > 0 (bps/Hz below the full chain's SE, e.g. 0.1).")
  if REFERENCE not in solvers:
    raise ValueError(f"solvers must include the full chain {REFERENCE!r}, against which quality is matched.")
  for spec in solvers:
    Solver.parse(spec)               # an unknown solver is refused here, before any model is loaded
  models = find_models(workdir)
  for model_dir in models.values():
    _check_steps(model_dir, solvers)
  return models


def run(workdir: str, num: int = 64, K: int = 16, tolerance: float = 0.1, solvers=SOLVERS, seed: int = 0,
        latency_repeats: int = 3) -> dict:
  """The benchmark (module docstring); ``latency_repeats`` one-user runs per setting, the median reported."""
  models = check(workdir, num, K, tolerance, solvers)
  solvers = [REFERENCE] + [s for s in solvers if s != REFERENCE]     # the paired gaps need it first
  ev = eval_settings(workdir)
  out = dict(workdir=workdir, num=num, K=K, tolerance=tolerance, reference=REFERENCE, device=str(jax.devices()[0]),
             **ev, scenarios={})
  for i, (scenario, model_dir) in enumerate(models.items()):
    print(f"== {scenario} ({model_dir})", flush=True)
    res = _scenario(scenario, model_dir, num, K, solvers, jax.random.fold_in(jax.random.PRNGKey(seed), i), ev,
                    latency_repeats)
    res.update(pareto=pareto(res["rows"]), fastest_within=fastest_within(res["rows"], REFERENCE, tolerance))
    out["scenarios"][scenario] = res
  return out


def report(res) -> str:
  """Markdown from the JSON alone: per scenario, every setting, the classical precoders and the fastest matched."""
  lines = [f"Time to quality, perception DMs of `{res['workdir']}`, {res['num']} test observations, K = {res['K']} "
           f"posterior samples each, Bayesian precoder with N_s = {res['n_streams']} at the UL SNR + "
           f"{res['dl_snr_offset_db']:g} dB, guidance w = {res['guidance']:g}, {res['device']}. Reference: the full "
           f"chain (`{res['reference']}`);"
           f" matched quality: SE at most {res['tolerance']:g} bps/Hz below its. Time per observation: observation, "
           "sampling and precoder, one compiled, warm run on the batch; one user: one observation's K samples and "
           "precoder. "
           "`*`: on the Pareto front in (seconds, SE).", ""]
  for scenario in [s for s in SCENARIOS if s in res["scenarios"]]:
    p = res["scenarios"][scenario]
    f = p["fastest_within"]
    ref = next(r for r in p["rows"] if r["setting"] == res["reference"])
    lines += [f"### {scenario}: fastest at matched quality `{f['setting']}`, {f['speedup']:.2f}x the full chain's "
              f"observations per second (SE {f['se_gap']:+.4f} bps/Hz)", "",
              f"Model `{p['model_dir']}`, data `{p['data']}`, T = {p['T']}.", "",
              "| setting | network calls | ms per observation | speed-up | one user: ms (compile s) | SE ± s.e. "
              "(bps/Hz) | SE - full chain's ± paired s.e. |", "|---|---|---|---|---|---|---|"]
    for r in p["rows"]:
      lines.append(f"| {r['setting']}{' *' if r['setting'] in p['pareto'] else ''} | {r['calls']} | "
                   f"{1e3 * r['seconds_per_observation']:.2f} | "
                   f"{ref['seconds_per_observation'] / r['seconds_per_observation']:.2f}x | "
                   f"{1e3 * r['latency_one_user_s']:.1f} ({r['latency_compile_s']:.1f}) | {r['se']:.4f} ± "
                   f"{r['se_se']:.4f} | {r['gap_to_reference']:+.4f} ± {r['gap_se']:.4f} |")
    for r in p["baselines"]:
      lines.append(f"| baseline: {r['setting']} | 0 | {1e3 * r['seconds_per_observation']:.2f} | "
                   f"{ref['seconds_per_observation'] / r['seconds_per_observation']:.2f}x | n/a | {r['se']:.4f} ± "
                   f"{r['se_se']:.4f} | {r['gap_to_reference']:+.4f} ± {r['gap_se']:.4f} |")
    for label, why in sorted(p.get("not_run", {}).items()):
      lines.append(f"| {label}: not run ({why}) | | | | | | |")
    lines.append("")
  return "\n".join(lines)


def figure(res, path: str) -> None:
  """The SE gap to the full chain (paired, with its standard error: the observations' own spread cancels) against
  milliseconds per observation (log axis), one panel per scenario, from the JSON alone: the front joined, the
  tolerance band shaded, the classical precoders' gaps as horizontal lines and the fastest matched setting
  circled."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  from jaxchan import files
  from jaxchan.experiments import style

  scen = [s for s in SCENARIOS if s in res["scenarios"]]
  fig, axes = plt.subplots(1, len(scen), figsize=(4.4 * len(scen), 3.4), squeeze=False)
  ms = lambda r: 1e3 * r["seconds_per_observation"]  # noqa: E731
  for ax, scenario in zip(axes[0], scen):
    p = res["scenarios"][scenario]
    ax.axhspan(-res["tolerance"], 0.0, color="0.88", lw=0)
    kinds = sorted({r["setting"].split(":")[0] for r in p["rows"]})
    for i, kind in enumerate(kinds):
      rs = [r for r in p["rows"] if r["setting"].split(":")[0] == kind]
      ax.errorbar([ms(r) for r in rs], [r["gap_to_reference"] for r in rs], yerr=[r["gap_se"] for r in rs],
                  fmt="os^Dv"[i % 5], color=style.PALETTE[i % len(style.PALETTE)], ms=4, lw=0.8, capsize=1.5,
                  label=kind)
      for r in rs:
        ax.annotate(str(r["calls"]), (ms(r), r["gap_to_reference"]), fontsize=6, xytext=(3, 2),
                    textcoords="offset points")
    front = sorted((r for r in p["rows"] if r["setting"] in p["pareto"]), key=ms)
    ax.plot([ms(r) for r in front], [r["gap_to_reference"] for r in front], "k-", lw=0.8, alpha=0.6,
            label="Pareto front")
    best = next(r for r in p["rows"] if r["setting"] == p["fastest_within"]["setting"])
    ax.plot(ms(best), best["gap_to_reference"], "o", ms=11, mfc="none", mec="k",
            label=f"fastest within {res['tolerance']:g} bps/Hz")
    for j, r in enumerate(p["baselines"]):
      ax.axhline(r["gap_to_reference"], color="0.4", ls=(0, (1, 1 + 2 * j)), lw=0.8,
                 label=f"baseline: {r['setting']} ({ms(r):.1f} ms)")
    ax.set_xscale("log")
    ax.set_title(scenario.replace("_", " "), fontsize=9)
    ax.set_xlabel("ms per observation (K samples + precoder)")
    ax.grid(alpha=0.3, which="both")
  axes[0, 0].set_ylabel(f"SE - full chain's, K = {res['K']} (bps/Hz)")
  axes[0, 0].legend(fontsize=6)
  fig.suptitle(f"Perception time to quality ({res['device']}; numbers: network calls; band: within "
               f"{res['tolerance']:g} bps/Hz below the full chain)", fontsize=8)
  fig.tight_layout()
  files.atomic_save_figure(fig, path)
  plt.close(fig)


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--workdir", default=os.path.join("workdir", "perception_quick"))
  p.add_argument("--num", type=int, default=64)
  p.add_argument("--K", type=int, default=16)
  p.add_argument("--tolerance", type=float, default=0.1)
  p.add_argument("--out")
  args = p.parse_args()
  try:
    check(args.workdir, args.num, args.K, args.tolerance)
  except ValueError as e:
    p.error(str(e))              # before any work
  res = run(args.workdir, args.num, args.K, args.tolerance)
  print(report(res))
  if args.out:
    from benchmarks.common import write_reports
    write_reports(args.out, res, [("", report, figure)])


if __name__ == "__main__":
  main()
