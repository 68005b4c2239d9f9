"""A job killed with SIGKILL, during training and then during evaluation, resumes to the results of an
uninterrupted run (both experiments, ``:smoke`` on the session's tiny datasets, through ``run.py``)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, run_py

# Wall-clock fields: the only ones a resumed run may change.
TIMING = {"seconds", "elapsed_s", "wall_s", "started", "finished", "duration_s", "provenance"}


def _strip(x):
  if isinstance(x, dict):
    return {k: _strip(v) for k, v in x.items() if k not in TIMING}
  if isinstance(x, list):
    return [_strip(v) for v in x]
  return x


def _kill_when(args, cwd, log_path, marker: str, timeout: float = 600.0) -> bool:
  """Start ``run.py ARGS``; SIGKILL it as soon as ``marker`` appears in ``log_path``. False if it ended first."""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "run.py"), *args], cwd=cwd, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  end = time.time() + timeout
  try:
    while time.time() < end and proc.poll() is None:
      if os.path.exists(log_path) and marker in open(log_path, errors="replace").read():
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True
      time.sleep(0.05)
    return False
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()


def _check(tmp_path, config, data_path, train_marker, eval_marker):
  base = [f"--config={os.path.join(ROOT, 'configs', config)}", f"--config.data.path={data_path}",
          "--config.progress=False"]
  ref = run_py(base + [f"--workdir={tmp_path}/ref"], tmp_path)
  assert ref.returncode == 0, ref.stderr[-3000:]
  wd = tmp_path / "wd"
  args = base + [f"--workdir={wd}"]
  assert _kill_when(args, tmp_path, wd / "jaxchan.log", train_marker), "the job ended before the training marker"
  assert not (wd / "results.json").exists()
  assert _kill_when(args, tmp_path, wd / "jaxchan.log", eval_marker), "the job ended before the evaluation marker"
  assert not (wd / "results.json").exists()
  done = run_py(args, tmp_path)
  assert done.returncode == 0, done.stderr[-3000:]
  log_text = (wd / "jaxchan.log").read_text()
  assert "resumed from" in log_text
  got = _strip(json.load(open(wd / "results.json")))
  want = _strip(json.load(open(tmp_path / "ref" / "results.json")))
  got.pop("config"), want.pop("config")     # the workdir differs, nothing else in it does
  # Identical programs on identical inputs and keys: the resumed run reproduces every number bit for bit.
  assert got == want
  # No temporary file is left behind by the kills (atomic writes: files.atomic_* write then rename).
  assert not [p for p in wd.rglob("*") if ".tmp" in p.name]


@pytest.mark.slow
def test_noniden_sigkill_during_training_and_evaluation_resumes_to_identical_results(tmp_path, tiny_datasets):
  # Killed after the second model's first epoch (mid-training), then at the first LMMSE line (mid-evaluation).
  _check(tmp_path, "noniden.py:smoke", tiny_datasets["simo_ofdm"], 'nonid (2/2): {"epoch": 1', "LMMSE ")


@pytest.mark.slow
def test_perception_sigkill_during_training_and_evaluation_resumes_to_identical_results(tmp_path, tiny_datasets):
  _check(tmp_path, "perception.py:smoke,high_mobility", tiny_datasets["high_mobility"],
         'high_mobility/dm (2/3): {"epoch": 1', "fast sampling ")
