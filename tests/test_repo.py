"""Repository-level checks: the entry point runs, and CI runs what the README says."""

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT, assert_validate_refuses, config_with, docs_block, run_py


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
  assert_validate_refuses(sampler_study, config_with("sampler_study:smoke", {"samplers": ("eta+cov:1.0",)}),
                          "'eta+cov:1.0' draws from a Gaussian anchor's posterior, which this exact-GMM study")


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
def test_library_example_runs():
  blocks = [docs_block("docs/library.md", "test_library_example_runs")]
  import contextlib
  import io
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    exec(compile(blocks[0], "docs/library.md", "exec"), {"__name__": "__docs__"})   # in-process: as a notebook would
  vals = dict(re.findall(r"^(.*?):\s*(-?[\d.]+)", out.getvalue(), flags=re.M))
  sample = float(vals["NMSE of one posterior sample"])
  cme = float(vals["NMSE of the exact CME       "])
  # A posterior sample has MSE = MMSE + posterior variance ~ 2 MMSE (eq. 15 of the
  # perception paper): about 3 dB worse than the CME; allow sampling slack.
  assert cme < sample < cme + 6.0
  assert float(vals["SE, Bayesian precoder"]) > 0


def test_no_import_circle_in_the_package():
  """Experiments read their config through a setup module of their own, so no module of jaxchan imports one that
  imports it back (directly or through others): the layers stay kernels -> setup -> experiment -> report."""
  import ast
  import pathlib
  root = pathlib.Path(ROOT)
  paths = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
           for p in (root / "jaxchan").rglob("*.py")}
  deps = {}
  for name, p in paths.items():
    out = set()
    for node in ast.walk(ast.parse(p.read_text())):
      if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jaxchan"):
        for a in node.names:
          full = f"{node.module}.{a.name}"
          out.add(full if full in paths else node.module)
      elif isinstance(node, ast.Import):
        out.update(a.name for a in node.names if a.name in paths)
    deps[name] = out - {"jaxchan"}
  cycles = []

  def visit(start, node, path):
    for d in deps.get(node, ()):
      if d == start:
        cycles.append(path)
      elif d in deps and d not in path:
        visit(start, d, path + [d])

  for name in deps:
    visit(name, name, [name])
  assert not cycles, f"import circles: {sorted({tuple(sorted(c)) for c in cycles})}"


def test_no_function_takes_more_than_eight_parameters_and_model_settings_travel_inside_the_denoiser():
  """Settings travel as small values (a denoiser, a job, a report), not as long parameter lists; the non-identical
  denoiser's input settings are named only where they live (the denoiser), where the config becomes one (the setup
  module) and, for min_beta, in the kernel that applies it."""
  import ast
  import pathlib
  long, named = [], {"min_beta": set(), "input_norm": set()}
  for p in (pathlib.Path(ROOT) / "jaxchan").rglob("*.py"):
    text = p.read_text()
    for word in named:
      if word in text:
        named[word].add(p.name)
    for node in ast.walk(ast.parse(text)):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        a = node.args
        params = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs] + [x.arg for x in (a.vararg, a.kwarg) if x]
        if len([x for x in params if x not in ("self", "cls")]) > 8:
          long.append(f"{p.name}:{node.name}")
  assert not long, long
  assert all(len(v) <= 3 for v in named.values()), named


def test_a_validation_is_reused_once_then_repeated():
  # run.py validates a job, then its run() validates the same config again: the second pass reuses the first's
  # acceptance; any later call validates anew (a validation may read the disk), and so does a changed config, a
  # refused one, or one with no JSON form.
  import ml_collections
  import numpy as np

  from jaxchan.experiments import common
  calls = []

  @common.validated_once
  def validate(config):
    calls.append(config.x)
    if config.x < 0:
      raise ValueError("config.x must be >= 0")

  c = ml_collections.ConfigDict({"x": 1})
  validate(c), validate(c)
  assert calls == [1]
  validate(c)
  assert calls == [1, 1]
  c.x = 2
  validate(c)
  assert calls == [1, 1, 2]
  c.x = -1
  for _ in range(2):
    with pytest.raises(ValueError):
      validate(c)
  assert calls == [1, 1, 2, -1, -1]
  c = ml_collections.ConfigDict({"x": np.int64(3)})
  validate(c), validate(c)
  assert calls[-2:] == [3, 3]
