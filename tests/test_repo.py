"""Repository-level checks: the entry point runs, and CI runs what the README says."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, assert_stops_before_work, assert_validate_refuses, config_with, run_py



def _readme_commands():
  text = open(os.path.join(ROOT, "README.md")).read()
  return re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S)


def test_ci_runs_the_readme_test_command():
  ci_lines = [l for l in open(os.path.join(ROOT, ".ci", "run")).read().splitlines()
              if l and not l.startswith("#") and "pytest" in l]
  assert len(ci_lines) == 1, ci_lines
  blocks = [b.strip() for b in _readme_commands()]
  assert len(blocks) == 2, "the README carries exactly two copy-paste commands: the main job and the tests"
  assert ci_lines[0].strip() in blocks, "the README must show the exact test command that .ci/run executes"



@pytest.mark.slow
def test_run_py_smoke_end_to_end(tmp_path):
  wd = tmp_path / "wd"
  cfg = os.path.join(ROOT, "configs", "sampler_study.py")
  proc = run_py([f"--config={cfg}:smoke", f"--workdir={wd}", "--config.num_samples=300"], tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  res = json.load(open(wd / "results.json"))
  assert res["config"]["num_samples"] == 300  # the command-line override reached the job
  assert (wd / "sampler_study.md").read_text().count("\n") >= 6
  assert (wd / "sampler_study.png").stat().st_size > 1000
  eta = [r for r in res["rows"] if r["sampler"] == "eta:1.0"]
  # More steps move the ancestral sampler towards the prior (2 -> 8 steps cuts
  # the covariance error substantially; see the sampler study in the README).
  assert eta[1]["prior"]["cov_err"] < eta[0]["prior"]["cov_err"]


def test_sampler_study_bad_config():
  import configs
  from jaxchan import experiments
  from jaxchan.experiments import sampler_study
  with pytest.raises(ValueError, match="unknown variant 'nope'"):
    configs.get("sampler_study:nope")
  with pytest.raises(ValueError, match="config.experiment='unknown' is unknown"):
    experiments.get("unknown")
  assert_validate_refuses(sampler_study, config_with("sampler_study:smoke", {"tau0": (1.0,)}),
                          "config.tau0 has 1 entries but config.dim=4")
  assert_validate_refuses(sampler_study, config_with("sampler_study:smoke", {"rule": "zigzag"}),
                          "config.rule: stepping rule='zigzag' is not supported")


def test_run_py_bad_config_is_one_line_before_work(tmp_path):
  cfg = os.path.join(ROOT, "configs", "sampler_study.py")
  proc = run_py([f"--config={cfg}:smoke", "--config.tau0=(1.0,)", f"--workdir={tmp_path}/wd"], tmp_path)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith("config error: config.tau0 has 1 entries")
  assert "Traceback" not in proc.stderr and not (tmp_path / "wd").exists()


def test_run_py_help_lists_the_configs_and_variants():
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), "--help"], capture_output=True, text=True,
                        cwd="/")
  # absl exits 1 after printing the help; the text is what matters.
  import configs
  for name in configs.NAMES:
    assert f"configs/{name}.py" in proc.stdout
  assert "quick" in proc.stdout and "smoke" in proc.stdout


@pytest.mark.slow
def test_readme_library_example_runs():
  text = open(os.path.join(ROOT, "README.md")).read()
  blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
  assert blocks, "the README must carry a library example"
  import contextlib
  import io
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    exec(compile(blocks[0], "README.md", "exec"), {"__name__": "__readme__"})   # in-process: as a notebook would
  vals = dict(re.findall(r"^(.*?):\s*(-?[\d.]+)", out.getvalue(), flags=re.M))
  sample = float(vals["NMSE of one posterior sample"])
  cme = float(vals["NMSE of the exact CME       "])
  # A posterior sample has MSE = MMSE + posterior variance ~ 2 MMSE (eq. 15 of the
  # perception paper): about 3 dB worse than the CME; allow sampling slack.
  assert cme < sample < cme + 6.0
  assert float(vals["SE, Bayesian precoder"]) > 0


@pytest.mark.slow
def test_noniden_smoke_end_to_end_and_resume(tmp_path, tiny_datasets, capsys):
  cfg = os.path.join(ROOT, "configs", "noniden.py")
  data_path = tiny_datasets["simo_ofdm"]      # the :smoke dataset (simo_ofdm, tiny, seed 0), built once per session
  args = [f"--config={cfg}:smoke", f"--workdir={tmp_path}/wd", f"--config.data.path={data_path}",
          "--config.progress=False"]
  proc = run_py(args, tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  res = json.load(open(tmp_path / "wd" / "results.json"))
  assert set(res["training"]) == {"nonid", "identical"}
  rows = res["generation"]["rows"]
  # 2 patterns x (nonid: 2 steppings + 1 extra sampler + the paper start with both samplers; identical: 1 run).
  assert len(rows) == 2 * (5 + 1)
  assert {r["start"] for r in rows} == {"consistent", "paper", "identical"}
  assert all(len(r["nmse_per_step"]) == 5 and np.isfinite(r["final_nmse"]) for r in rows)
  assert (tmp_path / "wd" / "fig_steps.png").stat().st_size > 1000
  assert "raw start" in (tmp_path / "wd" / "tables.md").read_text()
  # A trained model loads back and generates from a user's own (H_bar, M).
  import jax
  import jax.numpy as jnp
  from jaxchan import noniden
  from jaxchan.experiments.noniden import load_trained
  model, params, info = load_trained(str(tmp_path / "wd" / "models" / "nonid"))
  sch = info["schedule"]
  m = jnp.zeros((3, 32, 64)).at[:, ::2, ::4].set(3.0)
  h_bar = m * jnp.ones((3, 32, 64), jnp.complex64)
  start = noniden.initial_state(h_bar, m, sch)
  # The README's library example, with 4 steps.
  generate = noniden.make_network_generator(model.apply, sch, input_norm=info["model"]["input_norm"], num_steps=4,
                                            sampler=noniden.Sampler.parse("eq9:0.4"))
  out = generate(params, start, jax.random.PRNGKey(0))
  assert out.shape == (3, 32, 64) and bool(jnp.all(jnp.isfinite(out.real)))
  # The tables and figures re-render from results.json alone.
  from jaxchan.experiments import noniden as exp, report
  (tmp_path / "wd" / "tables.md").unlink()
  assert report.main(["report", str(tmp_path / "wd")]) == 0
  assert "raw start" in (tmp_path / "wd" / "tables.md").read_text()
  # Rerunning resumes from the checkpoints: no epoch is trained again (in-process, the command line is tested
  # above; the rerun skips the generation study, whose cost is not what this checks).
  overrides = {"data.path": data_path, "progress": False, "eval.models": (), "eval.lmmse": False}
  exp.run(config_with("noniden:smoke", overrides), str(tmp_path / "wd"))
  out = capsys.readouterr().out
  assert out.count("resumed from") == 2 and '"epoch":' not in out     # no epoch record: nothing trained
  # A dataset whose shape does not match the config stops the job before any training.
  from jaxchan.data import DatasetError
  with pytest.raises(DatasetError, match=r"(?s)per-sample shape \(32, 64\).*expects \(16, 64\)"):
    exp.run(config_with("noniden:smoke", {"data.path": data_path, "data.n_bs": 16}), str(tmp_path / "wd2"))
  assert not os.path.exists(tmp_path / "wd2" / "models")


@pytest.mark.parametrize("overrides, match", [
    ({"models.nonid.tau_pattern": "diagonal"}, "config.models.nonid.tau_pattern='diagonal' is not supported"),
    ({"models.nonid.placement": "diag"}, "config.models.nonid.placement='diag' is not supported"),
    ({"eval.steppings": ("tau-zigzag",)}, "config.eval.steppings: stepping 'tau-zigzag' must be DOMAIN-RULE"),
    ({"eval.samplers": ("eq9:1.5",)}, "config.eval.samplers: sampler spec 'eq9:1.5' must be 'eta:ETA' or 'eq9:EPS'"),
    ({"eval.samplers": ("eta:1.2",)}, "'eta:ETA' or 'eq9:EPS' with a value in [0, 1]"),
    ({"eval.start": "eq15"}, "config.eval.start='eq15' is not supported"),
    ({"train.tau_min": 0, "min_beta": 0.001}, "training times include tau = 0 (tau_min=0)"),
    ({"eval.num_steps": -3}, "config.eval.num_steps must be a positive integer; got -3"),
    ({"eval.patterns": ("pink",)}, "config.eval.patterns entry='pink' is not supported"),
    ({"beta_max": 0.99}, "config.T / config.beta_max: GammaSchedule: T=100 with beta_max=0.99"),
    ({"beta_max": -0.2}, "config.T / config.beta_max: GammaSchedule: beta_max must lie in (0, 1)"),
    ({"T": 0}, "config.T / config.beta_max: GammaSchedule: T must be a positive"),
    ({"eval.main_model": "nope"}, "config.eval.main_model: 'nope' names no model"),
    ({"models.nonid.embed_dim": 0}, "config.models.nonid"),
])
def test_noniden_bad_config_is_refused_by_validate(overrides, match):
  from jaxchan.experiments import noniden as exp
  assert_validate_refuses(exp, config_with("noniden:smoke", overrides), match)


def test_noniden_bad_config_stops_run_py_before_work(tmp_path):
  # The wiring: run.py validates first and prints one line, before any dataset or model.
  assert_stops_before_work(os.path.join(ROOT, "configs", "noniden.py") + ":smoke", "--config.beta_max=0.99",
                           "config error: config.T / config.beta_max", tmp_path, made="models")


def test_noniden_config_snrs_are_the_library_defaults():
  import configs
  from jaxchan.noise_patterns import DEFAULT_SNR_DB
  assert dict(configs.get("noniden").eval.snr_db) == DEFAULT_SNR_DB
