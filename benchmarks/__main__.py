"""Every benchmark in one command: one table on stdout, one JSON file.

  python -m benchmarks [--out=FILE.json] [--perception_size=auto|paper|quick] [--skip_datagen] [--reference=PATH]
      [--noniden_model=DIR --noniden_data=FILE.h5]

Runs, on the default JAX device: non-identical diffusion training and generation
(paper-size mixer), perception training (SL and DM), K = 16 posterior sampling
and Bayesian precoding, and datagen (Sionna, CPU). Every model figure carries
its achieved FLOP/s as a fraction of a float32 2048^3 matmul timed once at the
start of the same run. ``--perception_size=auto`` uses the paper-size
transformer on a GPU/TPU and the ``:quick`` one on a CPU (the paper-size reverse
loop, T = 1000, takes many minutes there). Each module's docstring says how its
FLOPs are counted. ``--reference=PATH`` (a checkout of the non-identical paper's PyTorch implementation,
yuzhiyang123/channel-diffusion; never downloaded) times its network and its 50-call generation in the same run
(``benchmarks.reference_bench``); without it that row says it was skipped. Time to quality
(``benchmarks.time_to_quality``) runs on the trained non-identical model of ``--noniden_model`` (default
``workdir/noniden_quick/models/nonid`` when it exists) or, without one, on exact GMM denoisers, labelled as such;
with the reference timed, each pattern's fastest quality-matched setting is also given against it as one ratio.
Perception time to quality (``benchmarks.perception_time_to_quality``: K = 16 Bayesian precoding by every solver
against the full chain, with the classical precoders beside) runs on the trained DMs of ``--perception_workdir``
(default ``workdir/perception_quick`` when it holds them); without trained DMs that row says it was skipped.
"""

import argparse
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp


DEFAULT_MODEL = os.path.join("workdir", "noniden_quick", "models", "nonid")
DEFAULT_PERCEPTION = os.path.join("workdir", "perception_quick")


def perception_workdir(workdir: str) -> str:
  """The perception workdir whose trained DMs perception time to quality runs on ('' to skip it): ``workdir``
  (refused, ValueError naming the flag, when it holds no trained DM), or :data:`DEFAULT_PERCEPTION` when it holds
  one."""
  from benchmarks import perception_time_to_quality as pttq
  if not workdir and not os.path.isdir(os.path.join(DEFAULT_PERCEPTION)):
    return ""
  try:
    pttq.check(workdir or DEFAULT_PERCEPTION)
  except ValueError as e:
    if not workdir and "holds no trained perception DM" in str(e):
      return ""
    raise ValueError(str(e).replace("--workdir=", "--perception_workdir=")) from None
  return workdir or DEFAULT_PERCEPTION


def noniden_model(model_dir: str, data: str) -> str:
  """The trained non-identical model folder time to quality runs on ('' for exact GMM denoisers): ``model_dir``, or
  :data:`DEFAULT_MODEL` when it exists. A folder without a trained model, another experiment's model or a missing
  dataset is refused (ValueError naming the flag)."""
  model_dir = model_dir or (DEFAULT_MODEL if os.path.isdir(DEFAULT_MODEL) else "")
  if not model_dir:
    return ""
  path = os.path.join(model_dir, "model.json")
  if not os.path.isfile(path):
    raise ValueError(f"--noniden_model={model_dir!r} holds no model.json; pass a trained non-identical model folder "
                     "(WORKDIR/models/nonid), or leave it out for exact GMM denoisers.")
  if "denoiser" not in json.load(open(path)):
    raise ValueError(f"--noniden_model={model_dir!r} is not a non-identical model (its model.json has no denoiser: "
                     "another experiment's); pass WORKDIR/models/nonid of a noniden run.")
  if not os.path.isfile(data):
    raise ValueError(f"--noniden_data={data!r} is not a file; pass the dataset {model_dir} was trained on.")
  return model_dir


def table(res) -> str:
  n = res["perception"].get("model", {}).get("n_bs", 32)
  rows = [("noniden training (batch 64)", res["noniden"]["train"], "samples_per_s"),
          ("noniden generation (batch 256, 50 steps)", res["noniden"]["generation"], "samples_per_s"),
          ("perception SL training (batch 64)", res["perception"]["train_sl"], "samples_per_s"),
          ("perception DM training (batch 64)", res["perception"]["train_dm"], "samples_per_s"),
          (f"posterior sampling (K = 16, T = {res['perception']['posterior_sampling']['T']})",
           res["perception"]["posterior_sampling"], "channels_per_s"),
          (f"Bayesian precoding (K = 16, {n} x {n} eigh)", res["perception"]["bayesian_precoding"],
           "eigendecompositions_per_s")]
  lines = [f"device: {res['device']} ({res['machine']}); float32 matmul peak {res['matmul_peak_gflops']} GFLOP/s",
           f"{'benchmark':<46} {'throughput':>22} {'GFLOP/s':>9} {'of peak':>8}"]
  for name, r, key in rows:
    lines.append(f"{name:<46} {r[key]:>12} {key.split('_per_s')[0] + '/s':>9} {r['gflops']:>9} "
                 f"{100 * r['fraction_of_peak']:>7.1f}%")
  a = res["noniden"].get("anchor")
  if a:
    lines.append(f"{'noniden denoiser call, Gaussian anchor (CG <= ' + str(a['max_iter']) + ')':<46} "
                 f"{a['anchored_call_s'] * 1e3:>10.1f} ms/batch {a['batch']}   {a['ratio']}x the network's call "
                 f"({a['network_call_s'] * 1e3:.1f} ms) in this run")
    lr = a.get("lowrank")
    if lr:
      lines.append(f"{'noniden denoiser call, low-rank anchor (r = ' + str(lr['rank']) + ', exact)':<46} "
                   f"{lr['anchored_call_s'] * 1e3:>10.1f} ms/batch {a['batch']}   {lr['ratio']}x the network's call "
                   "in this run")
    mx = a.get("mixture")
    if mx:
      label = f"noniden denoiser call, mixture anchor ({mx['components']} x r = {mx['rank']})"
      lines.append(f"{label:<46} "
                   f"{mx['anchored_call_s'] * 1e3:>10.1f} ms/batch {a['batch']}   {mx['ratio']}x the network's call "
                   "in this run")
  pr = res["perception"]
  for key in ("posterior_sampling_dpm2m_10", "posterior_sampling_dpm2m_5"):
    if key in pr:
      lines.append(f"{'posterior sampling (K = 16, ' + pr[key]['solver'] + ')':<46} {pr[key]['channels_per_s']:>12} "
                   f"{'channels/s':>9}   {pr[key]['speedup_over_full_chain']}x the full chain in this run")
  sp = pr.get("srs_prior")
  if sp:
    lines.append(f"{'SRS prior training (noniden mixer, rows)':<46} {sp['train']['rows_per_s']:>12} {'rows/s':>9}   "
                 f"an epoch on the same histories takes {sp['train']['epoch_time_ratio_to_dm']}x the DM's in this run; "
                 f"the configured training {sp['train'].get('job_training_ratio_to_one_dm', 'n/a')}x one scenario's DM")
    f = sp["posterior_sampling_dpm2m_10"]
    lines.append(f"{'SRS prior posterior sampling (K = 16, dpm2m:10)':<46} {f['channels_per_s']:>12} "
                 f"{'channels/s':>9}   {f['ratio_to_dm_dpm2m_10']}x the DM's dpm2m:10 in this run")
  for key in sorted(k for k in pr if k.startswith("subspace_precoder_")):
    r = pr[key]
    kind = key[len("subspace_precoder_"):].rsplit("_", 1)[0].replace("_", "-")
    lines.append(f"{'subspace precoder (' + kind + ', ' + str(r['n_bs']) + ' x ' + str(r['n_bs']) + ')':<46} "
                 f"{r['subspace_per_s']:>12} {'Gramians/s':>9}   {r['speedup']}x eigh ({r['eigh_per_s']}/s) in this "
                 f"run; energy gap {r['max_rel_energy_gap']:.1e}, SE gap {r['se_gap_bps_hz']:.1e} bps/Hz")
  ref = res.get("reference")
  if ref and "skipped" in ref:
    lines.append(f"{'reference implementation (PyTorch)':<46} skipped: {ref['skipped']}")
  elif ref:
    lines.append(f"{'reference implementation, ' + str(ref['steps']) + '-call generation':<46} "
                 f"{ref['reference_generation_samples_per_s']:>12} {'samples/s':>9}   ours "
                 f"{ref['generation_speedup']}x at the same calls, {ref['fast']['sampler']} x{ref['fast']['steps']} "
                 f"{ref['fast']['speedup_over_reference']}x, in this run")
  q = res.get("time_to_quality")
  if q:
    vs = res.get("time_to_quality_vs_reference", {})
    lines.append(f"time to quality ({q['denoiser']}, NMSE within {100 * q['tolerance']:g} % of {q['reference']}):")
    from benchmarks.time_to_quality import _patterns     # library order (the JSON file stores keys sorted)
    for pattern in _patterns(q):
      f = q["patterns"][pattern]["fastest_within"]
      extra = (f", {vs[pattern]['speedup_over_reference']:.2f}x the reference's {res['reference']['steps']}-call "
               "generation" if pattern in vs else "")
      lines.append(f"  {pattern:<10} fastest matched `{f['setting']}`: {f['speedup']:.2f}x our default{extra}")
      a = q["patterns"][pattern].get("fastest_as_faithful")
      if a:
        ra = vs.get(pattern, {}).get("as_faithful")
        extra = (f", {ra['speedup_over_reference']:.2f}x the reference's {res['reference']['steps']}-call generation"
                 if ra else "")
        lines.append(f"  {'':<10} as close to the long chain as our default ({100 * a['reference_deviation']:+.1f} %): "
                     f"`{a['setting']}` ({100 * a['deviation']:+.1f} %), {a['speedup']:.2f}x our default{extra}")
  pq = res.get("perception_time_to_quality")
  if pq and "skipped" in pq:
    lines.append(f"{'perception time to quality':<46} skipped: {pq['skipped']}")
  elif pq:
    lines.append(f"perception time to quality (K = {pq['K']} Bayesian precoder, SE at most {pq['tolerance']:g} bps/Hz "
                 f"below the full chain's, {pq['num']} observations):")
    from benchmarks.perception_time_to_quality import SCENARIOS     # library order (the JSON's keys are sorted)
    for scenario in [s for s in SCENARIOS if s in pq["scenarios"]]:
      v = pq["scenarios"][scenario]
      f = v["fastest_within"]
      row = next(r for r in v["rows"] if r["setting"] == f["setting"])
      full = next(r for r in v["rows"] if r["setting"] == pq["reference"])
      lines.append(f"  {scenario:<13} fastest matched `{f['setting']}`: {f['speedup']:.2f}x the full chain "
                   f"(SE {f['se_gap']:+.3f} bps/Hz); one user {1e3 * row['latency_one_user_s']:.0f} ms "
                   f"(full chain {1e3 * full['latency_one_user_s']:.0f} ms)")
  for name, what in (("datagen", "Sionna 38.901"), ("datagen_rt", "Sionna RT")):
    if name in res:
      d = res[name]
      lines.append(f"{'datagen ' + d['preset'] + ' (' + what + ')':<46} {d['samples_per_s']:>12} "
                   f"{'samples/s':>9} {'n/a':>9} {'n/a':>8}   ({100 * d['overhead_share']:.1f}% of the time outside "
                   "the generator)")
  return "\n".join(lines)


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--out", default=os.path.join("workdir", "benchmarks.json"))
  p.add_argument("--perception_size", default="auto", choices=("auto", "paper", "quick"))
  p.add_argument("--skip_datagen", action="store_true", help="skip the Sionna benchmark (no datagen extra)")
  p.add_argument("--reference", default="", help="a checkout of yuzhiyang123/channel-diffusion to time side by side")
  p.add_argument("--noniden_model", default="", help="a trained non-identical model folder for time to quality "
                 f"(default {DEFAULT_MODEL} when it exists; else exact GMM denoisers)")
  p.add_argument("--noniden_data", default="data/simo_ofdm_small.h5", help="the dataset that model was trained on")
  p.add_argument("--quality_num", type=int, default=128, help="test channels of the time-to-quality benchmark")
  p.add_argument("--perception_workdir", default="", help="a perception workdir with trained DMs for perception "
                 f"time to quality (default {DEFAULT_PERCEPTION} when it holds them; else skipped)")
  args = p.parse_args()
  t_start = time.perf_counter()
  try:
    model_dir = noniden_model(args.noniden_model, args.noniden_data)
    perception_dir = perception_workdir(args.perception_workdir)
    from benchmarks import reference_bench
    reference_bench.check(args.reference)
  except ValueError as e:
    p.error(str(e))    # before any timing
  if args.quality_num < 2:
    p.error(f"--quality_num={args.quality_num}: the NMSE's standard error needs at least 2 channels.")

  from benchmarks import noniden_bench, perception_bench, time_to_quality
  from benchmarks.common import matmul_peak

  peak = matmul_peak(2048, jnp.float32)
  size = args.perception_size
  if size == "auto":
    size = "quick" if jax.devices()[0].platform == "cpu" else "paper"
  res = dict(device=str(jax.devices()[0]), platform=jax.devices()[0].platform,
             machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
             matmul_peak_gflops=round(peak["flops_per_s"] / 1e9, 1))
  res["noniden"] = noniden_bench.run(peak=peak)
  res["perception"] = perception_bench.run(size, peak=peak)
  from benchmarks import reference_bench
  res["reference"] = reference_bench.run(args.reference)
  res["time_to_quality"] = time_to_quality.run(model_dir or None, args.noniden_data if model_dir else None,
                                               num=args.quality_num)
  res["time_to_quality_vs_reference"] = time_to_quality.against_reference(res["time_to_quality"], res["reference"])
  if perception_dir:
    from benchmarks import perception_time_to_quality
    res["perception_time_to_quality"] = perception_time_to_quality.run(perception_dir)
  else:
    res["perception_time_to_quality"] = {"skipped": f"no trained perception DMs (pass --perception_workdir; "
                                                    f"{DEFAULT_PERCEPTION} holds none)"}
  if not args.skip_datagen:
    from benchmarks import datagen_bench
    res["datagen"] = datagen_bench.run()
    # Ray tracing batches many users per path-solver call (the rays are shot once per call).
    res["datagen_rt"] = datagen_bench.run("street_canyon", num=400, batch_size=100)
  print(table(res))
  write(res, args.out, " ".join(["python -m benchmarks"] + sys.argv[1:]), time.perf_counter() - t_start)


def write(res: dict, out: str, command: str, wall_s: float) -> None:
  """``out`` (the JSON) and, rendered from it, ``STEM.md`` (the table, with the command and its wall time) and the
  time-to-quality reports: ``STEM_time_to_quality.{md,png}`` and ``STEM_perception_time_to_quality.{md,png}``."""
  from benchmarks import perception_time_to_quality, time_to_quality
  from benchmarks.common import write_reports
  head = (f"Rendered from {os.path.basename(out)} by benchmarks.__main__.table; command: {command} "
          f"({wall_s / 60:.1f} min wall).")
  reports = [("", lambda r: f"{head}\n\n```text\n{table(r)}\n```\n", None)]
  for key, mod in (("time_to_quality", time_to_quality), ("perception_time_to_quality", perception_time_to_quality)):
    if res.get(key) and "skipped" not in res[key]:
      reports.append((f"_{key}", lambda r, k=key, m=mod: m.report(r[k]),
                      lambda r, path, k=key, m=mod: m.figure(r[k], path)))
  write_reports(out, res, reports)
  print(f"wrote {out} and its reports")


if __name__ == "__main__":
  main()
