"""The benchmark harness counts FLOPs correctly (the timings themselves are never asserted)."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.perception_bench import xla_flops
from conftest import ROOT


def test_xla_flop_count_of_a_matmul_is_2mnk():
  m, n, k = 48, 40, 24
  assert xla_flops(jnp.matmul, jnp.ones((m, k)), jnp.ones((k, n))) == pytest.approx(2 * m * n * k, rel=0.01)


def test_table_lists_every_benchmark():
  from benchmarks.__main__ import table
  r = lambda key: {key: 1.0, "gflops": 2.0, "fraction_of_peak": 0.5}  # noqa: E731
  res = dict(device="cpu", machine="x", matmul_peak_gflops=4.0,
             noniden={"train": r("samples_per_s"), "generation": r("samples_per_s"),
                      "anchor": dict(batch=64, max_iter=16, anchored_call_s=0.05, network_call_s=0.02, ratio=2.5,
                                     lowrank=dict(rank=64, anchored_call_s=0.04, ratio=2.0),
                                     mixture=dict(components=8, rank=16, anchored_call_s=0.03, ratio=1.5))},
             perception={"train_sl": r("samples_per_s"), "train_dm": r("samples_per_s"),
                         "posterior_sampling": dict(r("channels_per_s"), T=100),
                         "bayesian_precoding": r("eigendecompositions_per_s"),
                         "posterior_sampling_dpm2m_10": dict(solver="dpm2m:10", channels_per_s=9.0,
                                                             speedup_over_full_chain=9.5),
                         "srs_prior": dict(train=dict(rows_per_s=5.0, epoch_time_ratio_to_dm=0.7),
                                           posterior_sampling_dpm2m_10=dict(channels_per_s=30.0,
                                                                            ratio_to_dm_dpm2m_10=3.3)),
                         "subspace_precoder_white_32": dict(n_bs=32, subspace_per_s=7.0, speedup=6.0, eigh_per_s=1.0,
                                                            max_rel_energy_gap=1e-5, se_gap_bps_hz=1e-4)},
             reference=dict(steps=50, reference_generation_samples_per_s=50.0, generation_speedup=2.6,
                            fast=dict(sampler="dpm2m:1.0", steps=10, speedup_over_reference=12.0)),
             datagen=dict(preset="low_mobility", samples_per_s=3.0, overhead_share=0.1),
             datagen_rt=dict(preset="street_canyon", samples_per_s=40.0, overhead_share=0.02))
  text = table(res)
  assert len(text.splitlines()) == 2 + 6 + 3 + 2 + 2 + 2 + 1 and "50.0%" in text
  assert "ours 2.6x at the same calls, dpm2m:1.0 x10 12.0x" in text
  assert "skipped: no checkout" in table(dict(res, reference={"skipped": "no checkout"}))   # 3 anchor rows: Kronecker, low rank, mixture
  assert "Gaussian anchor (CG <= 16)" in text and "2.5x the network's call" in text
  assert "low-rank anchor (r = 64, exact)" in text and "2.0x the network's call" in text
  assert "mixture anchor (8 x r = 16)" in text and "1.5x the network's call" in text
  assert "9.5x the full chain" in text and "subspace precoder (white, 32 x 32)" in text and "6.0x eigh" in text
  assert "0.7x the DM's in this run" in text and "3.3x the DM's dpm2m:10" in text
  assert "datagen street_canyon (Sionna RT)" in text and "datagen low_mobility (Sionna 38.901)" in text
  assert "perception time to quality                     skipped: no DMs" in table(
      dict(res, perception_time_to_quality={"skipped": "no DMs"}))
  rows = [dict(setting="ancestral", latency_one_user_s=0.9), dict(setting="dpm2m:5", latency_one_user_s=0.04)]
  pq = dict(K=16, tolerance=0.1, num=64, reference="ancestral", scenarios={"high_mobility": dict(
      rows=rows, fastest_within=dict(setting="dpm2m:5", speedup=19.5, se_gap=-0.02))})
  text = table(dict(res, perception_time_to_quality=pq))
  assert "high_mobility fastest matched `dpm2m:5`: 19.50x the full chain (SE -0.020 bps/Hz); one user 40 ms " \
         "(full chain 900 ms)" in text


@pytest.mark.parametrize("size", ["paper", "quick"])
def test_perception_benchmark_builds_the_configs_models(size):
  # The benchmark takes its models from configs/perception.py, so a config change (e.g. the :quick geometry)
  # cannot leave it building a model the experiment refuses.
  import jax
  from benchmarks import perception_bench as pb
  from jaxchan.experiments import perception
  cfg = pb._config(size)
  shape = pb._shape(cfg)
  assert shape["n_bs"] == (16 if size == "quick" else 32)
  model = perception.make_model(cfg, "dm")
  b = pb._batch(shape, 2)
  # Shapes only (jax.eval_shape traces init and the loss without running them): building the paper-size
  # model and its loss on this batch is what can break; the arithmetic is tested elsewhere.
  params = jax.eval_shape(lambda k: perception.init_params(model, k), jax.random.PRNGKey(0))
  loss = jax.eval_shape(perception.loss_fn(cfg, model, "dm"), params, b, jax.random.PRNGKey(1))
  assert loss.shape == ()


def test_time_to_quality_selection_rules_on_hand_made_points():
  # Closed-form selections on synthetic points, for both benchmarks' rules.
  from benchmarks import perception_time_to_quality as pt
  from benchmarks import time_to_quality as t
  rows = [dict(setting="ref", seconds_per_sample=1.0, nmse=0.50), dict(setting="a", seconds_per_sample=0.2, nmse=0.505),
          dict(setting="b", seconds_per_sample=0.1, nmse=0.40), dict(setting="c", seconds_per_sample=0.3, nmse=0.495)]
  f = t.fastest_within(rows, "ref", 0.02)
  # b is faster but 20 % below: an under-dispersed sampler, not a matched one; a is the fastest within 2 %.
  assert f["setting"] == "a" and abs(f["speedup"] - 5.0) < 1e-12
  assert sorted(t.pareto(rows)) == ["b"]
  # When no other setting qualifies the answer is the reference itself, at 1x.
  assert t.fastest_within([rows[0], rows[2]], "ref", 0.02) == dict(setting="ref", speedup=1.0, nmse_ratio=1.0)
  # As faithful as the reference: the long chain "long" at 0.55, the reference 9.1 % below it; c (-7.3 %) and d
  # (+8 %) qualify, b (-27 %) and e (+12 %) do not, and c is the faster of the two.
  long = dict(setting="long", seconds_per_sample=4.0, nmse=0.55)
  faith = [rows[0], rows[2], dict(rows[3], nmse=0.51), dict(setting="d", seconds_per_sample=0.5, nmse=0.594),
           dict(setting="e", seconds_per_sample=0.05, nmse=0.616), long]
  a = t.fastest_as_faithful(faith, "ref", "long")
  assert a["setting"] == "c" and abs(a["speedup"] - 1.0 / 0.3) < 1e-12
  assert abs(a["deviation"] - (0.51 / 0.55 - 1)) < 1e-12 and abs(a["reference_deviation"] + 1.0 / 11.0) < 1e-12
  # Nothing closer and faster: the reference itself, whose deviation equals its own.
  assert t.fastest_as_faithful([rows[0], rows[2], long], "ref", "long")["setting"] == "ref"
  # Precoding: one-sided, at most 0.1 bps/Hz below the full chain; a higher SE qualifies, 0.15 below does not.
  se_rows = [dict(setting="full", seconds_per_observation=1.0, se=10.0),
             dict(setting="x10", seconds_per_observation=0.1, se=9.95),
             dict(setting="x5", seconds_per_observation=0.05, se=9.85),
             dict(setting="y10", seconds_per_observation=0.1, se=10.02)]
  f = pt.fastest_within(se_rows, "full", 0.1)
  # x10 and y10 are equally fast: the higher SE is picked.
  assert f["setting"] == "y10" and abs(f["speedup"] - 10.0) < 1e-12 and abs(f["se_gap"] - 0.02) < 1e-9
  assert pt.fastest_within(se_rows[:3], "full", 0.1)["setting"] == "x10"
  assert pt.fastest_within(se_rows[:1] + se_rows[2:3], "full", 0.1)["setting"] == "full"
  # y10 dominates x10 (as fast, higher SE) and the full chain (faster, higher SE); x5 is the fastest.
  assert sorted(pt.pareto(se_rows)) == ["x5", "y10"]
  # Paired ratio on hand-made errors: per-channel squared errors (1, 3) against (1, 1): ratio 4 / 2 = 2, and
  # std(e - 2 e_ref) / (mean(e_ref) sqrt(2)) = std(-1, 1) / sqrt(2) = 1.
  ones = np.ones((2, 1, 1))
  r, se = t.paired_ratio(ones, ones + np.array([1.0, np.sqrt(3.0)])[:, None, None], ones + 1.0)
  assert abs(r - 2.0) < 1e-12 and abs(se - 1.0) < 1e-12


def test_time_to_quality_classical_rows_are_the_gaussian_posterior_in_closed_form():
  # Under CN(0, I) and g = alpha h + beta xi the posterior is CN(alpha g, beta^2) per element (alpha^2 + beta^2 = 1):
  # the LMMSE row must return alpha g, and the posterior-sample row minus it must have variance beta^2.
  import jax
  import jax.numpy as jnp

  from benchmarks import time_to_quality as t
  from jaxchan import gaussian_prior, schedules
  n = 4
  prior = gaussian_prior.LowRankGaussian(jnp.zeros((n, n), jnp.complex64), jnp.eye(n * n, dtype=jnp.complex64),
                                         jnp.ones(n * n, jnp.float32), jnp.full((n, n), 1e-6, jnp.float32))
  sch = schedules.GammaSchedule(100, 0.2)
  rows = t._gaussian_rows(prior, sch, "unit Gaussian")
  assert list(rows) == ["LMMSE (unit Gaussian)", "posterior sample (unit Gaussian)"]
  B = 2048
  tau = jnp.broadcast_to(jnp.linspace(5.0, 60.0, n * n).reshape(1, n, n), (B, n, n))
  alpha, beta = schedules.alpha_beta(tau, sch)
  g = jax.random.normal(jax.random.PRNGKey(0), (B, n, n)).astype(jnp.complex64)
  assert [calls for _, calls in rows.values()] == [0, 0]
  lmmse = rows["LMMSE (unit Gaussian)"][0](g, tau, None)
  np.testing.assert_allclose(np.asarray(lmmse), np.asarray(alpha * g), rtol=2e-3, atol=2e-4)   # float32 solve
  r = rows["posterior sample (unit Gaussian)"][0](g, tau, jax.random.PRNGKey(1)) - lmmse
  var = np.mean(np.abs(np.asarray(r)) ** 2, axis=0)
  # The mean of B = 2048 |CN(0, s)|^2 draws has relative s.d. 1 / sqrt(B) = 2.2 %; 5 sigma: 11 %.
  np.testing.assert_allclose(var, np.asarray(beta[0]) ** 2 + 1e-6, rtol=0.11)


def test_time_to_quality_refuses_a_setting_the_model_cannot_run(tmp_path):
  from benchmarks import time_to_quality as t
  assert t.supported(("eta:1.0", 10, None), "none") == "" and t.supported(("eta+cov:1.0", 2, None), None) == ""
  assert "not the exact GMM" in t.supported(("eta:1.0", 50, (5.0, 80.0)), None)   # no anchored denoiser there
  assert "anchored model" in t.supported(("eta:1.0", 50, (5.0, 80.0)), "none")
  assert "anchor is 'mixture'" in t.supported(("eta+cov:1.0", 10, None), "mixture")
  assert t.supported(("eta:1.0", 50, (5.0, 80.0)), "mixture") == ""
  # Asked for explicitly, both are named, from model.json alone: the (empty) files are never loaded.
  (tmp_path / "model.json").write_text('{"denoiser": {"anchor": "none"}}')
  (tmp_path / "d.h5").write_bytes(b"")
  with pytest.raises(ValueError, match=r"settings 'eta\+cov:1.0 x10', 'eta:1.0 x50 \+ Gaussian steps 5/80' cannot "
                                       r"run on .*anchored model.*Kronecker"):
    t.run(str(tmp_path), str(tmp_path / "d.h5"), settings=(t.REFERENCE, ("eta+cov:1.0", 10, None),
                                                           ("eta:1.0", 50, (5.0, 80.0))))


@pytest.mark.parametrize("kw, match", [
    (dict(workdir="WD"), "holds no trained perception DM"), (dict(num=1), "at least 2 observations"),
    (dict(K=0), "K=0 must be a positive integer"), (dict(tolerance=0.0), "tolerance=0.0 must be > 0"),
    (dict(solvers=("dpm2m:5",)), "must include the full chain 'ancestral'"),
    (dict(solvers=("ancestral", "heun:5")), "heun")])
def test_perception_time_to_quality_refuses_bad_input_before_any_work(tmp_path, kw, match):
  from benchmarks import perception_time_to_quality as pt
  kw = dict(kw, workdir=str(tmp_path / "empty")) if "workdir" in kw else dict(kw, workdir=str(tmp_path))
  with pytest.raises(ValueError, match=match):
    pt.check(**kw)
  (tmp_path / "high_mobility" / "models" / "dm").mkdir(parents=True)
  (tmp_path / "high_mobility" / "models" / "dm" / "model.json").write_text('{"use": "sl"}')
  with pytest.raises(ValueError, match="is not a perception DM"):
    pt.find_models(str(tmp_path))


def test_perception_time_to_quality_finds_the_trained_students_beside_the_dm(tmp_path):
  from benchmarks import perception_time_to_quality as pt
  models = tmp_path / "high_mobility" / "models"
  for name, trained in (("dm", True), ("dm_distill_4", True), ("dm_distill_16", True), ("dm_distill_2", False),
                        ("dm_distill_x", True), ("sl", True)):
    (models / name / "checkpoints").mkdir(parents=True)
    (models / name / "model.json").write_text('{"use": "dm"}')
    if trained:
      (models / name / "checkpoints" / "1").mkdir()
  # Trained ones only (dm_distill_2 has no checkpoint yet), by step count, most steps first.
  assert list(pt.find_students(str(models / "dm")).items()) == [(16, str(models / "dm_distill_16")),
                                                                (4, str(models / "dm_distill_4"))]


def test_time_to_quality_parses_settings_as_the_table_names_them():
  from benchmarks import time_to_quality as t
  for s in t.SETTINGS:
    assert t.parse_setting(t.name(s)) == s
  assert t.parse_setting("dpm2m:1.0x200") == ("dpm2m:1.0", 200, None)
  for bad, match in (("eta:1.0", "must read"), ("heun:1.0 x5", "heun"), ("eta:1.0 x0", ">= 1")):
    with pytest.raises(ValueError, match=match):
      t.parse_setting(bad)


def test_time_to_quality_runs_on_the_exact_gmm_and_renders_from_json():
  # One tiny run on the exact GMM denoiser (2 x 2 channels, so it fits the fast tier): every setting present, its
  # Pareto front non-dominated, the classical rows beside, and the markdown a function of the JSON alone.
  import json
  from benchmarks import time_to_quality as t
  res = t.run(num=8, patterns=("white",), settings=(("eta+cov:1.0", 2, None), t.REFERENCE), gmm_shape=(2, 2))
  p = res["patterns"]["white"]
  assert [r["setting"] for r in p["rows"]] == ["eta:1.0 x50", "eta+cov:1.0 x2"]     # the reference first
  assert p["rows"][1]["calls"] == 2.0 and all(r["seconds_per_sample"] > 0 for r in p["rows"])
  # Paired ratios: the reference against itself is exactly 1 with no spread; the other one's is its NMSE ratio.
  assert (p["rows"][0]["ratio_to_reference"], p["rows"][0]["ratio_se"]) == (1.0, 0.0)
  assert abs(p["rows"][1]["ratio_to_reference"] - p["rows"][1]["nmse"] / p["rows"][0]["nmse"]) < 1e-6
  for r in p["rows"]:
    assert r["setting"] in p["pareto"] or any(o["seconds_per_sample"] <= r["seconds_per_sample"]
                                              and o["nmse"] <= r["nmse"] for o in p["rows"] if o is not r)
  assert "exact GMM denoiser" in res["denoiser"] and len(p["exact_sample_nmse"]) == 2
  assert [b["setting"] for b in p["baselines"]] == ["exact posterior mean (MMSE bound)", "LMMSE (moment-matched "
                                                    "Gaussian)", "posterior sample (moment-matched Gaussian)"]
  assert all(b["calls"] == 0.0 and np.isfinite(b["nmse"]) for b in p["baselines"]) and not res["not_run"]
  with pytest.raises(ValueError, match="not the exact GMM"):     # asked for explicitly: refused before any work
    t.run(num=8, patterns=("white",), settings=(t.REFERENCE, ("eta:1.0", 50, (5.0, 80.0))), gmm_shape=(2, 2))
  assert "fastest_within_converged" not in p          # the 200-step chain was not among the settings
  assert t.report(json.loads(json.dumps(res, sort_keys=True))) == t.report(res)     # as the JSON file stores it
  assert "### white: fastest at matched quality" in t.report(res)


def _committed_reports():
  import json
  base = os.path.join(ROOT, "docs", "results", "benchmarks_cpu_combined")
  res = json.load(open(base + ".json"))
  return base, res["time_to_quality"], res["perception_time_to_quality"]


def test_committed_time_to_quality_reports_render_from_the_json():
  # Both time-to-quality reports of the committed one-run benchmark are functions of its JSON: the tables equal the
  # committed markdown, and the stored fronts and selections are those of the stored rows.
  from benchmarks import perception_time_to_quality as pt
  from benchmarks import time_to_quality as t
  base, q, pq = _committed_reports()
  assert t.report(q) == open(base + "_time_to_quality.md").read()
  assert pt.report(pq) == open(base + "_perception_time_to_quality.md").read()
  for p in q["patterns"].values():
    assert sorted(p["pareto"]) == sorted(t.pareto(p["rows"]))
    assert p["fastest_within"] == t.fastest_within(p["rows"], q["reference"], q["tolerance"])
    assert p["fastest_as_faithful"] == t.fastest_as_faithful(p["rows"], q["reference"], t.name(t.CONVERGED))
  for sc in pq["scenarios"].values():
    assert sorted(sc["pareto"]) == sorted(pt.pareto(sc["rows"]))
    assert sc["fastest_within"] == pt.fastest_within(sc["rows"], pq["reference"], pq["tolerance"])


@pytest.mark.slow
def test_committed_time_to_quality_figures_render_from_the_json(tmp_path):
  import json

  from benchmarks import __main__ as bench
  from benchmarks import perception_time_to_quality as pt
  from benchmarks import time_to_quality as t
  base, q, pq = _committed_reports()
  # python -m benchmarks' writer gives back the committed reports from the committed JSON.
  bench.write(json.load(open(base + ".json")), str(tmp_path / "x.json"), "CMD", 60.0)
  for suffix in ("_time_to_quality", "_perception_time_to_quality"):
    assert (tmp_path / f"x{suffix}.md").read_text() == open(base + suffix + ".md").read()
    assert (tmp_path / f"x{suffix}.png").stat().st_size > 1000
  assert "command: CMD (1.0 min wall)" in (tmp_path / "x.md").read_text()
  t.figure(q, str(tmp_path / "ttq.png"))
  pt.figure(pq, str(tmp_path / "pttq.png"))
  for f in ("ttq", "pttq"):
    assert (tmp_path / f"{f}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / f"{f}.pdf").stat().st_size > 1000


@pytest.mark.parametrize("kw, match", [
    (dict(model_dir="m", data="no/such.h5"), "is not a file"), (dict(tolerance=0.0), "must lie in"),
    (dict(num=1), "at least 2 channels"), (dict(patterns=("whit",)), "unknown noise pattern 'whit'"),
    (dict(settings=(("dpm2m:1.0", 5, None),)), "must include the reference"),
    (dict(settings=(("eta:1.0", 50, None), ("heun:1.0", 5, None))), "sampler spec 'heun:1.0' must be")])
def test_time_to_quality_refuses_bad_input_before_any_work(kw, match):
  from benchmarks import time_to_quality as t
  with pytest.raises((ValueError, FileNotFoundError), match=match):
    t.run(**kw)


@pytest.mark.slow
def test_reference_benchmark_skips_without_a_checkout_and_times_one_given(tmp_path):
  # Without a checkout nothing is downloaded and the reason is returned; with one (here a stand-in MixerLayer.Model
  # of the reference's signature, model(x [B, 32, 64] complex, t [B] int64)) both sides run and give ratios.
  from benchmarks import reference_bench as rb
  assert "nothing is downloaded" in rb.run(str(tmp_path))["skipped"]
  (tmp_path / "MixerLayer.py").write_text(
      "import torch\n"
      "class Model(torch.nn.Module):\n"
      "  def __init__(self, base, car, ant):\n"
      "    super().__init__(); self.w = torch.nn.Parameter(torch.ones(car.seq_len, dtype=torch.complex64))\n"
      "  def forward(self, x, t):\n"
      "    return x * self.w\n")
  res = rb.run(str(tmp_path), batch=2, steps=2, fast=("dpm2m:1.0", 2))
  # Timings are never asserted (the stand-in is trivially fast); what must hold is that every figure was measured.
  assert res["steps"] == 2 and res["reference_call_s"] > 0 and res["call_s"] > 0
  assert res["reference_generation_samples_per_s"] > 0 and res["fast"]["samples_per_s"] > 0


def test_time_to_quality_against_the_reference_is_the_product_of_two_measured_ratios():
  from benchmarks import time_to_quality as t
  res = {"patterns": {"pilot": {"fastest_within": {"setting": "dpm2m:1.0 x10", "speedup": 4.0}},
                      "white": {"fastest_within": {"setting": "eta:1.0 x50", "speedup": 1.0}}}}
  ref = {"steps": 50, "generation_speedup": 2.5}
  out = t.against_reference(res, ref)
  # 2.5x the reference at 50 calls each, and 4x our own 50-call default at matched NMSE: 10x the reference.
  assert out["pilot"] == {"setting": "dpm2m:1.0 x10", "speedup_over_default": 4.0, "speedup_over_reference": 10.0}
  assert out["white"]["speedup_over_reference"] == 2.5
  assert t.against_reference(res, {"skipped": "no checkout"}) == {}
  with pytest.raises(ValueError, match="at the same count"):
    t.against_reference(res, dict(ref, steps=100))


def test_benchmarks_refuse_a_bad_model_folder_before_any_timing(tmp_path):
  import subprocess
  import sys

  from benchmarks.__main__ import noniden_model
  (tmp_path / "model.json").write_text('{"denoiser": {}}')
  (tmp_path / "dm").mkdir()
  (tmp_path / "dm" / "model.json").write_text('{"use": "dm"}')     # a perception model's
  data = tmp_path / "data.h5"
  data.write_bytes(b"")
  assert noniden_model(str(tmp_path), str(data)) == str(tmp_path)
  for model, d, match in [("/no/such/model", str(data), "holds no model.json"),
                          (str(tmp_path / "dm"), str(data), "is not a non-identical model"),
                          (str(tmp_path), "/no/such.h5", "--noniden_data='/no/such.h5' is not a file")]:
    with pytest.raises(ValueError, match=match):
      noniden_model(model, d)
  from benchmarks.__main__ import perception_workdir
  with pytest.raises(ValueError, match="--perception_workdir='/no/such/wd' holds no trained perception DM"):
    perception_workdir("/no/such/wd")
  # The command line says it in one usage error, before anything is timed.
  proc = subprocess.run([sys.executable, "-m", "benchmarks", "--noniden_model=/no/such/model"], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2 and "holds no model.json" in proc.stderr and "GFLOP" not in proc.stdout
  # A reference path without the reference's files: refused naming the flag (an empty one only skips the row).
  from benchmarks import reference_bench
  reference_bench.check("")
  with pytest.raises(ValueError, match=r"--reference='/no/such/ref' holds no MixerLayer.py.*leave --reference out"):
    reference_bench.check("/no/such/ref")


def test_committed_combined_benchmark_table_renders_from_its_json():
  import json

  from benchmarks.__main__ import table
  base = os.path.join(ROOT, "docs", "results", "benchmarks_cpu_combined")
  res = json.load(open(base + ".json"))
  committed = open(base + ".md").read().split("```text\n", 1)[1].rsplit("\n```", 1)[0]
  assert table(res) == committed
  vs = res["time_to_quality_vs_reference"]
  for p, v in res["time_to_quality"]["patterns"].items():   # the one ratio is the product of the two measured ones
    assert vs[p]["speedup_over_reference"] == v["fastest_within"]["speedup"] * res["reference"]["generation_speedup"]
