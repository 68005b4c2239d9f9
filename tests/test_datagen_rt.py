"""Ray-traced datasets (python -m datagen.rt): what the files hold, and bad input refused before any ray."""

import importlib.metadata
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import ROOT

rt_source = pytest.importorskip("datagen.rt_source")


def _installed(dist):
  try:
    return bool(importlib.metadata.version(dist))
  except importlib.metadata.PackageNotFoundError:
    return False


# Only ask whether the distribution is installed: importing sionna (whose __init__ may be sionna-rt's) starts
# Dr.Jit, which must not happen before a usable LLVM is known (an old one can abort the whole test run).
HAVE_RT = _installed("sionna-rt") and rt_source.find_llvm() is not None
needs_rt = pytest.mark.skipif(not HAVE_RT, reason="Sionna RT on a CPU needs sionna-rt and libLLVM >= 16 "
                                                  "(apt-get install libllvm19); .ci/run installs both")


def _rt(*args):
  return subprocess.run([sys.executable, "-m", "datagen.rt", "--no_progress", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=900)


def test_llvm_version_is_read_from_the_library_names():
  major = rt_source._llvm_major
  assert major("/usr/lib/x86_64-linux-gnu/libLLVM.so.19.1") == 19
  assert major("/usr/lib/x86_64-linux-gnu/libLLVM-15.so.1") == 15
  assert major("/usr/lib/llvm-17/lib/libLLVM.so") == 17


@pytest.mark.slow
@needs_rt
def test_tiny_raytraced_dataset_is_sparse_unit_power_and_never_zero(tmp_path):
  out = tmp_path / "rt.h5"
  proc = _rt("--preset=street_canyon", "--size=tiny", "--num_train=24", "--num_test=8", f"--out={out}")
  assert proc.returncode == 0, proc.stderr
  with h5py.File(out) as f:
    h = np.concatenate([f["train/h"][:], f["test/h"][:]])
    assert "sionna-rt" in f.attrs["generator"]
  assert h.shape == (32, 32, 64) and h.dtype == np.complex64 and np.all(np.isfinite(h))
  power = np.mean(np.abs(h) ** 2, axis=(1, 2))
  np.testing.assert_allclose(power, 1.0, rtol=1e-4)            # unit power per sample (hence on average)
  assert np.all(power > 0)
  # The point of ray tracing here: few strong paths. O1-like channels hold >= 90 % of their energy in the top
  # 3 singular values (the UMa stand-in needs more); this is the acceptance bar, on average.
  s = np.linalg.svd(h, compute_uv=False) ** 2
  assert np.mean(s[:, :3].sum(1) / s.sum(1)) >= 0.9


@pytest.mark.slow
@needs_rt
def test_sharded_raytraced_build_merges_bit_identically(tmp_path):
  args = ["--preset=street_canyon", "--size=tiny", "--num_train=16", "--num_test=8", "--batch_size=8"]
  assert _rt(*args, f"--out={tmp_path / 'one.h5'}").returncode == 0
  for i in range(2):
    assert _rt(*args, f"--shard={i}/2", f"--out={tmp_path / f's{i}.h5'}").returncode == 0
  proc = subprocess.run([sys.executable, "-m", "datagen.merge", f"--out={tmp_path / 'merged.h5'}",
                         str(tmp_path / "s0.h5"), str(tmp_path / "s1.h5")], cwd=ROOT, capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr
  with h5py.File(tmp_path / "one.h5") as a, h5py.File(tmp_path / "merged.h5") as b:
    for split in ("train", "test"):
      np.testing.assert_array_equal(a[f"{split}/h"][:], b[f"{split}/h"][:])


@pytest.mark.parametrize("args, match", [
    (["--preset=atlantis"], "--preset='atlantis' is not a ray-traced preset; choose one of: street_canyon"),
    (["--preset=simo_ofdm"], "(a 38.901 preset: build it with python -m datagen.uma)"),
    (["--preset=street_canyon", "--num_train=0"], "num_train=0 must be a positive integer"),
    (["--preset=street_canyon", "--shard=2/2"], "--shard='2/2': need n >= 1 and 0 <= i < n"),
])
def test_bad_input_is_refused_before_any_ray(tmp_path, args, match):
  out = tmp_path / "x.h5"
  proc = _rt(*args, f"--out={out}")
  assert proc.returncode == 2 and match in proc.stderr, proc.stderr
  assert not out.exists() and not os.path.exists(str(out) + ".parts")


@needs_rt
@pytest.mark.parametrize("setting, match", [
    ("scene=atlantis", "scene='atlantis' is not a built-in Sionna RT scene; choose one of:"),
    ("bs_z=500", "BS position (bs_x, bs_y, bs_z) = (-55.0, 7.0, 500.0) lies outside the scene"),
])
def test_bad_scene_or_bs_position_is_refused_before_any_ray(tmp_path, setting, match):
  out = tmp_path / "x.h5"
  proc = _rt("--preset=street_canyon", "--size=tiny", "--set", setting, f"--out={out}")
  assert proc.returncode == 2 and match in proc.stderr, proc.stderr
  assert not out.exists() and not os.path.exists(str(out) + ".parts")


def test_missing_llvm_is_a_clear_error_not_an_abort(monkeypatch):
  import ctypes.util
  monkeypatch.delenv("DRJIT_LIBLLVM_PATH", raising=False)
  monkeypatch.setattr(rt_source, "_LLVM_GLOBS", ())                 # nothing on this "machine"
  monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
  assert rt_source.find_llvm() is None
  with pytest.raises(RuntimeError, match=r"needs libLLVM >= 16 .*`apt-get install libllvm19`"):
    rt_source.check_llvm()
  # An old LLVM does not count: only >= 16 works with Dr.Jit.
  monkeypatch.setattr(rt_source.glob, "glob", lambda g: ["/usr/lib/x86_64-linux-gnu/libLLVM-15.so.1"])
  monkeypatch.setattr(rt_source, "_LLVM_GLOBS", ("x",))
  assert rt_source.find_llvm() is None


@pytest.mark.slow
def test_uma_datagen_works_without_a_usable_llvm(tmp_path):
  # sionna-rt's sionna/__init__.py (if pip installed it last) starts Dr.Jit on `import sionna`; the 38.901 path
  # must not depend on that, so it builds a dataset even when Dr.Jit is pointed at a library that does not exist.
  env = dict(os.environ, DRJIT_LIBLLVM_PATH=str(tmp_path / "no-such-libLLVM.so"))
  proc = subprocess.run([sys.executable, "-m", "datagen.uma", "--preset=simo_ofdm", "--size=tiny", "--num_train=4",
                         "--num_test=2", "--batch_size=2", "--no_progress", f"--out={tmp_path / 'u.h5'}"],
                        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert (tmp_path / "u.h5").exists()
