"""The perception experiment (jaxchan.experiments.perception and its _eval / _report modules): the :smoke job end
to end, config validation, the evaluation split over devices."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import (ROOT, assert_stops_before_work, assert_validate_refuses,
                      config_with, xla_flags)

from jaxchan import prediction, schedules, srs


@pytest.mark.slow
def test_perception_smoke_end_to_end(tmp_path, tiny_datasets, caplog):
  data_path = tiny_datasets["high_mobility"]   # the :smoke,high_mobility dataset, built once per session
  from jaxchan.experiments import perception
  # In-process (run.py's wiring is tested by the run_py tests); the job writes results.json as from the CLI.
  perception.run(config_with("perception:smoke,high_mobility", {"data.path": data_path, "progress": False}),
                 str(tmp_path / "wd"))
  res = json.load(open(tmp_path / "wd" / "results.json"))
  # A crash mid training and the rerun that resumes it: the shared loop (common.train_model, train.fit) that trains
  # these models is killed with SIGKILL and compared bit for bit in tests/test_experiments_noniden.py.
  from jaxchan.experiments.perception import load_trained
  r = res["scenarios"]["high_mobility"]
  assert set(r["training"]) == {"sl", "dm", "e2e"}
  t3 = r["eval"]["table3"]
  # Perfect-CSI SVD precoding maximizes SE for every channel (K = 1 optimum, see the CG test above).
  assert all(t3["perfect_csi"] >= t3[k] - 1e-4 for k in t3)
  assert len(r["trajectory"]["stochastic"]["nmse_xt"]) == 10        # T = 10 in :smoke
  assert r["guidance"]["w"] == [0.0, 1.0]
  assert r["eval"]["cg_check"]["num_test"] > 0
  # Fast sampling: the :smoke solver and the distilled student (2 steps), scored on the same observations.
  fs = {row["sampler"]: row for row in r["fast_sampling"]["rows"]}
  assert set(fs) == {"dpm2m:4", "distilled:2"}
  assert [fs[k]["network_calls"] for k in ("dpm2m:4", "distilled:2")] == [4, 2]
  assert all(np.isfinite(row["se_bayes"]) and row["se_bayes"] <= t3["perfect_csi"] + 1e-4 for row in fs.values())
  assert (tmp_path / "wd" / "high_mobility" / "models" / "dm_distill_2" / "model.json").exists()
  assert "Fast posterior sampling" in (tmp_path / "wd" / "tables.md").read_text()
  # The covariance's eigenvalues majorize its diagonal and the per-direction eps error is concave in the
  # variance (Schur), so the full Gaussian bound never exceeds the per-element one.
  b = r["bounds"]
  assert 0.0 <= b["dm_gaussian"] <= b["dm_per_element"] + 1e-6 and b["sl_zero"] > 0
  for f in ("fig5_examples.png", "fig6_trajectory.png", "fig7_se_snr.png", "fig8_guidance.png",
            "fig9_fast_sampling.png"):
    assert (tmp_path / "wd" / f).stat().st_size > 1000
  assert "Table III" in (tmp_path / "wd" / "tables.md").read_text()
  # A trained model loads back for library use.
  from jaxchan.experiments.perception import n_bs_used
  model, params, cfg_ = load_trained(str(tmp_path / "wd" / "high_mobility" / "models" / "dm"))
  import h5py
  with h5py.File(data_path) as f:
    hist = jnp.asarray(f["test/history"][:2, :, :, :n_bs_used(cfg_)])   # the BS antennas it was trained on
  obs = srs.observe(hist, jax.random.PRNGKey(0), num_hops=cfg_.srs.num_hops)
  s = prediction.sample_posterior(model, params, obs, jax.random.PRNGKey(1), schedules.cosine_schedule(cfg_.dm.T),
                                  num_samples=3)
  assert s.shape == (3, 2, 4, n_bs_used(cfg_), 52) and bool(jnp.all(jnp.isfinite(s.real)))
  # Each trained use exports its estimates on the dataset (jaxchan.export).
  from jaxchan import export, precoding
  nb = n_bs_used(cfg_)
  for use, expect in (("sl", {"estimate": (3, 4, nb, 52)}), ("e2e", {"precoder": (3, nb, 2, 52)}),
                      ("dm", {"samples": (2, 3, 4, nb, 52), "precoder": (3, nb, 2, 52)})):
    out = str(tmp_path / f"{use}.h5")
    export.export(str(tmp_path / "wd" / "high_mobility" / "models" / use), data_path, out, num=3, num_samples=2)
    arrays, settings = export.read(out)
    assert {k: arrays[k].shape for k in expect} == expect and arrays["target"].shape == (3, 4, nb, 52)
    assert settings["experiment"] == "perception" and arrays["ul_snr_db"].shape == (3,)
    if use == "dm":   # the written precoder is eq. (28)'s of the written samples
      W = precoding.bayesian_precoder(jnp.asarray(arrays["samples"]), 2)
      np.testing.assert_allclose(np.abs(np.einsum("bisf,bisf->bsf", np.conj(W), arrays["precoder"])), 1.0, atol=1e-3)
  # Perception time to quality runs on the trained DM: the full chain first (its paired gap exactly 0), the solver,
  # the distilled student found beside the DM and the two classical precoders scored on the same observations, the
  # table a function of the JSON alone.
  from benchmarks import perception_time_to_quality as pttq
  q = pttq.run(str(tmp_path / "wd"), num=2, K=2, solvers=("dpm2m:2", "ancestral"), latency_repeats=1)
  rows = q["scenarios"]["high_mobility"]["rows"]
  assert [r["setting"] for r in rows] == ["ancestral", "dpm2m:2", "distilled:2"]
  assert [r["calls"] for r in rows] == [10, 2, 2] and q["scenarios"]["high_mobility"]["not_run"] == {}
  assert (rows[0]["gap_to_reference"], rows[0]["gap_se"]) == (0.0, 0.0)
  assert len(q["scenarios"]["high_mobility"]["baselines"]) == 2
  assert all(np.isfinite(r["se"]) for r in rows + q["scenarios"]["high_mobility"]["baselines"])
  assert pttq.report(json.loads(json.dumps(q, sort_keys=True))) == pttq.report(q)    # as the JSON file stores it
  assert (q["n_streams"], q["dl_snr_offset_db"]) == (2, 10.0)         # the run's own evaluation settings
  # Rerunning resumes: nothing is trained again (in-process, the command line is tested above; the rerun skips
  # the evaluation, not what this checks).
  caplog.set_level("INFO", logger="absl")   # the jobs log through absl (jaxchan.experiments.common.log)
  caplog.clear()
  overrides = {"data.path": data_path, "progress": False, "eval.enabled": False}
  perception.run(config_with("perception:smoke,high_mobility", overrides), str(tmp_path / "wd"))
  out = caplog.text
  assert out.count("resumed from") == 3 + 1 and '"epoch":' not in out    # 3 models, 1 distilled student
  # A dataset whose shapes do not match the config stops before any training.
  from jaxchan.data import DatasetError
  with pytest.raises(DatasetError, match=r"(?s)per-sample shape \(4, 4, 32, 52\).*expects \(4, 4, 16, 52\)"):
    perception.run(config_with("perception:smoke,high_mobility", {"data.path": data_path, "data.n_bs": 16}),
                   str(tmp_path / "wd2"))
  assert not os.path.exists(tmp_path / "wd2" / "high_mobility" / "models")


@pytest.mark.parametrize("overrides, match", [
    ({"eval.num_samples": 0}, "config.eval.num_samples (K) = 0"),
    ({"eval.guidance": 1.5}, "must lie in [0.0, 1.0]"),
    ({"eval.guidance_scales": (0.0, 2.0)}, "set config.eval.allow_extrapolation=True"),
    ({"eval.n_streams": 5}, "config.eval.n_streams (N_s) = 5 must be an integer in [1, n_ue = 4]"),
    ({"train.models": ("sl", "gan")}, "config.train.models entry='gan' is not supported"),
    ({"scenarios": ("city",)}, "config.scenarios entry='city' is not supported"),
    ({"dm.clip_x0": -1.0}, "config.dm.clip_x0=-1.0 must be >= 0"),
    ({"dm.max_beta": 1.0}, "config.dm.max_beta=1.0 must lie in (0, 1)"),
    ({"dm.prediction": "x0"}, "config.dm.prediction='x0' is not supported"),
    ({"dm.T": 0}, "config.dm (T, cosine_s, max_beta): T must be a positive integer"),
    ({"train.epochs.dm": -1}, "config.train.epochs.dm must be a positive integer"),
    ({"train.val_samples": -1}, "config.train.val_samples=-1 must be an integer >= 0"),
    ({"eval.batch_size": 0}, "config.eval.batch_size must be a positive integer"),
    ({"data.bs_antennas": 8}, "config.model.ue_per_token=4 makes tokens of 2 x n_bs x ue_per_token = 64 "
                              "reals, wider than d_model=32"),
    ({"data.bs_antennas": 40}, "config.data.bs_antennas=40 must be an integer in [0, n_bs=32]"),
    ({"eval.dl_snr_grid_db": ()}, "config.eval.dl_snr_grid_db=() must be a non-empty list"),
    ({"eval.solvers": ("dpm2m:11",)}, "config.eval.solvers: solver dpm2m:11: 11 steps exceed the schedule's T = 10"),
    ({"eval.solvers": ("heun:4",)}, "config.eval.solvers: solver 'heun:4': unknown kind 'heun'"),
    ({"eval.sampler": "dpm2m:11"}, "config.eval.sampler: solver dpm2m:11: 11 steps exceed the schedule's T = 10"),
    ({"eval.sampler": "euler"}, "config.eval.sampler: solver 'euler': unknown kind 'euler'"),
    ({"distill.steps": (4, 3)}, "each stage must halve the previous one (4 -> 2)"),
    ({"distill.steps": (8, 4)}, "2 x 8 = 16 steps, more than the schedule's T = 10"),
    ({"distill.teacher": "/nonexistent/models/dm"}, "holds no trained DM (model.json and checkpoints); train one "
                                                    "first with `python run.py --config=configs/perception.py:quick`"),
    ({"eval.guidance": 0.5}, "distilled students sample the conditional model (w = 1)"),
])
def test_perception_bad_config_is_refused_by_validate(overrides, match):
  from jaxchan.experiments import perception
  assert_validate_refuses(perception, config_with("perception:smoke,low_mobility", overrides), match)


def test_tables_sample_the_dm_with_the_configured_sampler_and_old_runs_with_the_full_chain():
  # The measured default (docs/fast_sampling.md) is a few-step solver; "ancestral" is the full chain with the DM's
  # own reverse variance, and a run recorded before the field existed read back as the full chain it used.
  import configs
  from jaxchan.ddpm_solvers import Solver
  from jaxchan.experiments import perception_report, perception_setup
  c = configs.get("perception:quick")
  assert c.eval.sampler == "dpm2m:10" and perception_setup.sampler_kw(c)["solver"] == Solver("dpm2m", 10)
  assert perception_setup.sampler_kw(c, "ancestral") == perception_setup.dm_kw(c)
  assert perception_setup.sampler_kw(c, f"ancestral:{c.dm.T}") == perception_setup.dm_kw(c)   # the same chain
  with c.unlocked():
    del c.eval["sampler"]
  assert perception_setup.sampler_kw(c) == perception_setup.dm_kw(c)
  assert perception_report.sampler_label(c) == "the full chain (`ancestral`)"


def test_a_held_out_split_that_leaves_no_training_batch_is_refused():
  import ml_collections

  from jaxchan.experiments import common

  class _Split:   # a dataset's size, which is all train_split reads
    path = "data/x.h5"

    def size(self, split):
      return 100

  tcfg = ml_collections.ConfigDict(dict(batch_size=32, val_samples=80))
  with pytest.raises(ValueError, match=r"batch_size=32 and config.train.val_samples=80 need batch_size <= 100 - "):
    common.train_split(tcfg, _Split())
  tcfg.val_samples = 20
  assert common.train_split(tcfg, _Split()) == (80, 20)


def test_one_distillation_teacher_serves_one_scenario(tmp_path):
  from jaxchan.experiments import perception
  teacher = tmp_path / "dm"
  (teacher / "checkpoints" / "1").mkdir(parents=True)
  (teacher / "model.json").write_text("{}")
  assert_validate_refuses(perception, config_with("perception:smoke", {"distill.teacher": str(teacher)}),
                          "is one scenario's DM but config.scenarios=('low_mobility', 'high_mobility') has several")


def test_perception_bad_config_stops_run_py_before_work(tmp_path):
  assert_stops_before_work(os.path.join(ROOT, "configs", "perception.py") + ":smoke,low_mobility",
                           "--config.eval.num_samples=0", "config error: config.eval.num_samples (K) = 0", tmp_path,
                           made="low_mobility")


_SHARDED_EVAL = r"""
import jax, jax.numpy as jnp, numpy as np
import configs
from jaxchan.experiments import common, perception, perception_eval
config = configs.get("perception:smoke")
assert jax.device_count() == 4
models = {}
for i, use in enumerate(("sl", "dm", "e2e")):
  m = perception.make_model(config, use)
  models[use] = (m, perception.init_params(m, jax.random.PRNGKey(i)))
run = perception_eval.make_eval_batch(config, models, jnp.full((config.data.n_occ,), 0.5, jnp.complex64))
k1, k2 = jax.random.split(jax.random.PRNGKey(5))
from jaxchan import conventions
d = config.data
n_bs = perception.n_bs_used(config)
hist = conventions.standard_normal(k1, (8, d.n_occ, d.n_ue, n_bs, d.n_prb))
h = conventions.standard_normal(k2, (8, d.n_ue, n_bs, d.n_prb))
G_avg = jnp.broadcast_to(jnp.eye(n_bs, dtype=jnp.complex64)[..., None], (n_bs, n_bs, d.n_prb))
params = tuple(models[u][1] for u in ("sl", "dm", "e2e"))
a = run(params, hist, h, jax.random.PRNGKey(0), G_avg)[0]
hs, ts = common.shard_eval(hist, h)
assert len(ts.sharding.device_set) == 4
b = run(params, hs, ts, jax.random.PRNGKey(0), G_avg)[0]
for k in a:
  np.testing.assert_allclose(np.asarray(b[k]), np.asarray(a[k]), rtol=1e-4, err_msg=k)
print("ok", len(a))
"""


@pytest.mark.slow
def test_evaluation_split_over_four_devices_gives_the_same_numbers(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT, XLA_FLAGS=xla_flags("--xla_force_host_platform_device_count=4"))
  proc = subprocess.run([sys.executable, "-c", _SHARDED_EVAL],
                        env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.startswith("ok")


def test_dm_schedule_comes_from_the_config():
  import ml_collections

  from jaxchan.experiments import perception

  cfg = ml_collections.ConfigDict(dict(dm=dict(T=50, cosine_s=0.02, max_beta=0.5)))
  sch = perception.dm_schedule(cfg)
  ref = schedules.cosine_schedule(50, s=0.02, max_beta=0.5)
  np.testing.assert_array_equal(sch.betas, ref.betas)
  # The clip binds at t = T (the cosine's unclipped beta_T is 1), so the last step is exactly max_beta.
  assert float(sch.betas[-1]) == pytest.approx(0.5) and float(jnp.max(sch.betas)) <= 0.5 + 1e-7


def test_perception_refuses_the_known_prior_anchor():
  # anchor="prior" needs a known prior covariance (the exact-posterior experiment's); a dataset job has none.
  from jaxchan.experiments import perception
  assert_validate_refuses(perception, config_with("perception:smoke", {"model.anchor": "prior"}),
                          "config.model.anchor='prior' is not supported")


def test_perception_validate_refuses_nan_snrs():
  import configs
  from jaxchan.experiments import perception
  c = configs.get("perception:smoke")
  c.eval.dl_snr_grid_db = (0.0, float("nan"))
  with pytest.raises(ValueError, match=r"config.eval.dl_snr_grid_db=\(0.0, nan\) must be a non-empty list of finite"):
    perception.validate(c)
  c = configs.get("perception:smoke")
  c.srs.snr_db_range = (float("nan"), 10.0)
  with pytest.raises(ValueError, match="config.srs.snr_db_range"):
    perception.validate(c)


@pytest.mark.parametrize("run", ["perception_quick_gpu", "perception_quick_anchored"])
def test_committed_results_re_render_and_training_only_runs_render_nothing(tmp_path, run, monkeypatch):
  # Tables are pure functions of results.json: the committed :quick runs (the paper's networks, the anchored
  # models) re-render to their tables.md byte for byte (scenario and model order included); a training-only run
  # (eval disabled) has no tables and must not fail. The same runs' figures are drawn in tests/test_figures.py.
  import shutil
  from jaxchan.experiments import perception_report, report
  monkeypatch.setattr(perception_report, "plot_all", lambda *a: None)
  src = os.path.join(ROOT, "docs", "results", run)
  shutil.copy(os.path.join(src, "results.json"), tmp_path / "results.json")
  assert report.render(str(tmp_path)) == "perception"
  assert (tmp_path / "tables.md").read_text() == open(os.path.join(src, "tables.md")).read()
  res = json.load(open(tmp_path / "results.json"))
  res["config"]["eval"]["enabled"] = False
  (tmp_path / "tables.md").unlink()
  json.dump(res, open(tmp_path / "results.json", "w"))
  assert report.render(str(tmp_path)) == "perception" and not (tmp_path / "tables.md").exists()
