"""Shared helpers for the statistical tests."""

import json
import os
import signal
import subprocess
import sys
import time


def _jaxlib_minor():
  import importlib.metadata
  try:
    return tuple(int(x) for x in importlib.metadata.version("jaxlib").split(".")[:2])
  except (importlib.metadata.PackageNotFoundError, ValueError):
    return (0, 0)


# Tests run on CPU in float32; keep XLA from grabbing every core's worth of
# threads on small machines and make results reproducible run to run. Test programs are many and small, so
# compiling dominates: LLVM's optimization level 0 halves it (the perception :smoke job, empty cache: 130 s ->
# 76 s wall) and changes no result beyond float rounding. XLA:CPU's older elemental emitters compile fusions
# faster than its MLIR fusion emitters (empty cache, idle cores, each pair run back to back: perception :smoke
# 82 -> 58 s, noniden :smoke 80 -> 64 s, and 105 -> 90 s an hour later on the same machine); the same float32
# math, final NMSEs equal to the fourth digit. XLA aborts on a flag it does not know, so that switch is set only
# where jaxlib has it (0.10 does; older releases may not).
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false --xla_backend_optimization_level=0" + (
    " --xla_cpu_use_fusion_emitters=false" if _jaxlib_minor() >= (0, 10) else ""))
# One persistent compilation cache for the session's processes (xdist workers and the subprocess jobs compile
# many identical programs); JAX keys entries by program and version, so a stale entry is never reused. Every
# program is cached, however quick to compile: at optimization level 0 most take under 0.2 s, and a rerun of the
# noniden :smoke job reloads 488 of them instead of recompiling (warm rerun 51 s -> 39 s).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    __import__("tempfile").gettempdir(), f"jaxchan-tests-jax-cache-{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

import numpy as np
import pytest


def xla_flags(*extra: str) -> str:
  """The tests' XLA flags (above) plus ``extra``, for a subprocess that needs more (e.g. fake host devices): a
  subprocess given only its own flags would compile at full optimization and with every thread."""
  return " ".join([os.environ.get("XLA_FLAGS", ""), *extra]).strip()


def complex_moment_zscores(samples, mean, cov):
  """Per-entry z-scores of the sample mean and covariance against target moments.

  Each real and imaginary part of every mean entry and covariance entry is
  compared with its target and divided by the standard error of its sample
  estimate, estimated from the samples themselves (CLT). Returns the largest
  |z| over all entries; under the null hypothesis it is the maximum of a few
  dozen roughly standard normals, so thresholds near 5 give false alarms with
  probability below 1e-4 (Bonferroni), whereas a real mismatch grows with
  sqrt(N).
  """
  x = np.asarray(samples, np.complex128)
  n = x.shape[0]
  m_hat = x.mean(0)
  se_m = np.sqrt(np.var(x.real, 0) / n), np.sqrt(np.var(x.imag, 0) / n)
  z_mean = np.concatenate([(m_hat.real - np.real(mean)) / se_m[0],
                           (m_hat.imag - np.imag(mean)) / se_m[1]])
  c = x - m_hat
  prods = c[:, :, None] * c[:, None, :].conj()  # [n, d, d]
  c_hat = prods.mean(0)
  se_c = np.sqrt(np.var(prods.real, 0) / n), np.sqrt(np.var(prods.imag, 0) / n)
  cov = np.asarray(cov)
  zr = (c_hat.real - cov.real) / se_c[0]
  # Diagonal imaginary parts are exactly 0 with zero spread; skip them.
  off = ~np.eye(cov.shape[0], dtype=bool)
  zi = (c_hat.imag - cov.imag)[off] / se_c[1][off]
  return float(np.max(np.abs(np.concatenate([z_mean, zr.ravel(), zi]))))


@pytest.fixture
def rng():
  return np.random.default_rng(0)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_py(args, cwd, timeout=600):
  """``python run.py ARGS`` in a subprocess on the CPU, output captured."""
  import subprocess
  import sys
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=timeout)


def assert_stops_before_work(config: str, override, match: str, tmp_path, made: str):
  """``run.py --config=CONFIG OVERRIDE...`` (one flag or a tuple of flags) must fail with ``match`` in its message before any work:

  no dataset built (the configured path does not exist and must stay so, though a build is allowed: the config
  error must stop the job first) and nothing at ``workdir/made``.
  """
  overrides = [override] if isinstance(override, str) else list(override)
  proc = run_py([f"--config={config}", *overrides, f"--config.data.path={tmp_path}/never.h5",
                 "--config.data.build_if_missing=True", f"--workdir={tmp_path}/wd"], tmp_path)
  assert proc.returncode != 0
  assert match in proc.stderr, proc.stderr[-2000:]
  assert not (tmp_path / "never.h5").exists() and not (tmp_path / "wd" / made).exists()


def config_with(spec: str, overrides: dict):
  """``configs.get(spec)`` with dotted-field ``overrides`` applied, as ``--config.a.b=value`` would."""
  import configs

  c = configs.get(spec)
  for path, value in overrides.items():
    *parents, last = path.split(".")
    node = c
    for p in parents:
      node = node[p]
    with node.unlocked() if hasattr(node, "unlocked") else _nullcontext():
      node[last] = value
  return c


class _nullcontext:
  def __enter__(self):
    return self

  def __exit__(self, *a):
    return False


def assert_validate_refuses(experiment, config, match: str):
  """``experiment.validate(config)`` raises a ValueError whose one-line message contains ``match``."""
  with pytest.raises(ValueError) as e:
    experiment.validate(config)
  msg = str(e.value)
  assert match in msg, msg
  assert "\n" not in msg, msg


TINY_PRESETS = ("low_mobility", "high_mobility", "simo_ofdm")


class _TinyDatasets:
  """``datasets[preset]``: the path of the tiny Sionna dataset of ``preset`` (``--size=tiny``, seed 0), built on
  first use and then shared by every test of the session (of the xdist worker)."""

  def __init__(self, root):
    self.root, self.paths = root, {}

  def __getitem__(self, preset):
    if preset not in self.paths:
      from datagen import uma   # in-process: Sionna and torch are imported once per worker, not once per build
      path = str(self.root / f"{preset}.h5")
      assert uma.main([f"--preset={preset}", "--size=tiny", f"--out={path}", "--no_progress"]) in (0, None)
      self.paths[preset] = path
    return self.paths[preset]


@pytest.fixture(scope="session")
def tiny_datasets(tmp_path_factory):
  """The tiny Sionna datasets the tests use, each built once per session on first use (read-only: copy a file
  before changing it). The datagen tests, which use all of them, share one xdist worker (their xdist_group)."""
  pytest.importorskip("sionna", reason="the tiny datasets are built with datagen: pip install -e '.[datagen]'")
  return _TinyDatasets(tmp_path_factory.mktemp("tiny_datasets"))


# The longest tests (end-to-end jobs, dataset builds; measured with --durations) start first, so that under
# pytest-xdist the workers finish together instead of one waiting on a late long job (longest-processing-time
# first). The sort is stable and the same in every worker, as xdist requires.
_LONGEST_FIRST = ("smoke_end_to_end", "notebook_runs", "oracle_smoke", "four_devices",
                  "test_datagen.py", "run_py_smoke", "readme_library_example")


def pytest_collection_modifyitems(config, items):
  items.sort(key=lambda item: next((i for i, s in enumerate(_LONGEST_FIRST) if s in item.nodeid),
                                   len(_LONGEST_FIRST)))


def docs_block(doc: str, test_name: str) -> str:
  """The Python block of ``doc`` (relative to the repository) marked ``<!-- docs-code: runs in ...::TEST_NAME -->``."""
  import re
  text = open(os.path.join(ROOT, doc)).read()
  m = re.search(r"<!-- docs-code: runs in [^>]*::" + re.escape(test_name) + r" -->\n```python\n(.*?)```", text,
                flags=re.S)
  assert m, f"{doc} has no Python block marked to run in {test_name}"
  return m.group(1)


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


def run_killed_then_resumed(args, cwd, workdir, models: str, epochs: dict, train_marker: str):
  """``run.py ARGS`` (writing to ``workdir``) SIGKILLed when ``train_marker`` appears in its log, then rerun to the
  end; returns the rerun's process. The rerun must say it resumed, every model of ``epochs`` (``{name: number of
  epochs}``, exactly the folders under ``workdir/models`` that trained) must hold each epoch's record once, in
  order, and no temporary file may be left behind (atomic writes).

  No handler sees a SIGKILL, so the rerun starts from the last epoch checkpoints: that a resumed loop ends with
  the uninterrupted run's parameters bit for bit is ``tests/test_train.py``'s SIGKILL test, on the loop every job
  shares; here the job's own bookkeeping is tested (finished models kept, the interrupted one resumed, outputs
  written once).
  """
  assert _kill_when(args, cwd, workdir / "jaxchan.log", train_marker), "the job ended before the training marker"
  done = run_py(args, cwd)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "resumed from" in (workdir / "jaxchan.log").read_text()
  trained = sorted(p.name for p in (workdir / models).iterdir() if (p / "metrics.jsonl").exists())
  assert trained == sorted(epochs), (trained, sorted(epochs))
  for name, n in epochs.items():
    records = [json.loads(line) for line in open(workdir / models / name / "metrics.jsonl")]
    assert [r["epoch"] for r in records] == list(range(1, n + 1)), (name, records)
  assert not [p for p in workdir.rglob("*") if ".tmp" in p.name]
  return done
