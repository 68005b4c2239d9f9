"""datagen on tiny Sionna datasets: determinism, normalization, mobility, resume, shards, reader errors."""

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from jaxchan import data

# Whether Sionna is installed, without importing it: collection (every xdist worker, fast tier included) would
# otherwise pay its import (1.6 s) for tests that all run in the full suite only.
if importlib.util.find_spec("sionna") is None:
  pytest.skip("datagen tests need the datagen extra: pip install -e '.[datagen]'", allow_module_level=True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def datagen(*args, module="datagen.uma", check=True):
  if module == "datagen.uma" and check:
    # In-process: the build is the same function the command runs, and Sionna and torch are imported once per
    # worker instead of once per build (the byte-for-byte comparisons below hold across both ways).
    from datagen import uma
    assert uma.main([*args, "--no_progress"]) in (0, None)
    return None
  proc = subprocess.run([sys.executable, "-m", module, *args, "--no_progress"] if module == "datagen.uma" else
                        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=900)
  if check:
    assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


# Every test here builds Sionna datasets (seconds each): the full tier only, one xdist worker sharing the
# session's tiny datasets (conftest.tiny_datasets).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("tiny_datasets")]


@pytest.fixture
def built(tiny_datasets):
  return tiny_datasets


def _bytes(path):
  with open(path, "rb") as f:
    return f.read()


def test_shapes_attributes_and_unit_power(built):
  with data.Dataset(built["low_mobility"], kind="srs_prediction",
                    shapes={"history": (4, 4, 32, 52), "target": (4, 32, 52)}) as ds:
    assert ds.size("train") == 32 and ds.size("test") == 16
    assert ds.config["carrier_frequency"] == 3.5e9 and ds.config["num_prb"] == 52
    assert "sionna" in ds.file.attrs["generator"]
    d = ds.load("train")
    # Per-sample normalization is exact up to float32 rounding.
    p = (np.sum(np.abs(d["history"].reshape(32, -1)) ** 2, 1) + np.sum(np.abs(d["target"].reshape(32, -1)) ** 2, 1))
    np.testing.assert_allclose(p / (4 * 4 * 32 * 52 + 4 * 32 * 52), 1.0, rtol=1e-4)
    assert np.all(np.isfinite(d["history"].view(np.float32)))
    # Every UT moves at the preset's speed (0.3 km/h indoor and outdoor), and both kinds of UT occur (80 % indoor).
    assert set(np.round(d["speed_mps"].astype(np.float64) * 3.6, 3).tolist()) == {0.3}
    assert set(np.asarray(d["indoor"]).astype(bool).tolist()) == {False, True}
  with data.Dataset(built["simo_ofdm"], kind="snapshot", shapes={"h": (32, 64)}) as ds:
    h = ds.load("test")["h"]
    np.testing.assert_allclose(np.mean(np.abs(h) ** 2, axis=(1, 2)), 1.0, rtol=1e-4)


def test_same_seed_same_bytes_other_seed_other_data(built, tmp_path):
  again = tmp_path / "again.h5"
  datagen("--preset=low_mobility", "--size=tiny", f"--out={again}")
  assert _bytes(again) == _bytes(built["low_mobility"])
  other = tmp_path / "other.h5"
  # A small build suffices to see other data (the first training samples differ).
  datagen("--preset=low_mobility", "--size=tiny", "--seed=1", "--num_train=8", "--num_test=8", "--batch_size=8",
          f"--out={other}")
  with h5py.File(other) as a, h5py.File(built["low_mobility"]) as b:
    assert not np.allclose(a["train/target"][:4], b["train/target"][:4])


def test_high_mobility_decorrelates_faster(built):
  def corr(path):
    with data.Dataset(path) as ds:
      vals = []
      for split in ("train", "test"):
        d = ds.load(split)
        a = d["history"][:, -1].reshape(len(d["target"]), -1)
        b = d["target"].reshape(len(d["target"]), -1)
        vals.append(np.abs(np.sum(a.conj() * b, 1)) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))
      return np.concatenate(vals)
  low, high = corr(built["low_mobility"]), corr(built["high_mobility"])
  # Same seed, so the same drops and topologies: a paired comparison over 48
  # samples. Measured per-sample spread is ~0.25, so the SE of the mean
  # difference is ~0.05; Doppler at 3.5 GHz predicts ~0.65 vs ~0.1-0.3.
  assert low.mean() - high.mean() > 0.15, (low.mean(), high.mean())


def test_interrupted_build_resumes_to_identical_file(tmp_path):
  args = ["--preset=low_mobility", "--size=tiny", "--num_train=96", "--batch_size=8"]
  ref = tmp_path / "ref.h5"
  datagen(*args, f"--out={ref}")
  out = tmp_path / "killed.h5"
  proc = subprocess.Popen([sys.executable, "-m", "datagen.uma", *args, f"--out={out}", "--no_progress"], cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  parts = str(out) + ".parts"
  deadline = time.time() + 300
  def done_parts():
    return [p for p in os.listdir(parts) if p.startswith(("train-", "test-"))] if os.path.isdir(parts) else []

  while time.time() < deadline and len(done_parts()) < 3:
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not out.exists(), "a killed build must not leave a file at the output path"
  n_parts = len(done_parts())
  assert 3 <= n_parts < 14  # it really was interrupted part-way (14 batches in all)
  datagen(*args, f"--out={out}")
  assert not os.path.exists(parts)
  assert _bytes(out) == _bytes(ref)


def test_shards_merge_to_the_single_process_file(built, tmp_path):
  shards = []
  for i in range(3):
    shards.append(str(tmp_path / f"s{i}.h5"))
    datagen("--preset=low_mobility", "--size=tiny", f"--shard={i}/3", f"--out={shards[-1]}")
  with h5py.File(shards[1]) as f:
    assert f.attrs["shard"] == "1/3" and f["train/history"].shape[0] < 32
  merged = tmp_path / "merged.h5"
  datagen(f"--out={merged}", *reversed(shards), module="datagen.merge")
  assert _bytes(merged) == _bytes(built["low_mobility"])
  bad = datagen(f"--out={tmp_path / 'bad.h5'}", *shards[:2], module="datagen.merge", check=False)
  assert bad.returncode == 2 and "need every shard 0..2" in bad.stderr


def test_reader_errors_are_actionable(built, tmp_path):
  cmd = "python -m datagen.uma --preset=low_mobility --out=data/low.h5"
  with pytest.raises(data.DatasetError, match=r"(?s)does not exist.*python -m datagen.uma --preset=low_mobility"):
    data.open_dataset(str(tmp_path / "missing.h5"), build_command=cmd)
  with pytest.raises(data.DatasetError, match=r"per-sample shape \(4, 32, 52\).*expects \(4, 32, 64\)"):
    data.open_dataset(built["low_mobility"], shapes={"target": (4, 32, 64)})
  with pytest.raises(data.DatasetError, match="kind='srs_prediction' data but the job needs kind='snapshot'"):
    data.open_dataset(built["low_mobility"], kind="snapshot")
  old = tmp_path / "old.h5"
  shutil.copy(built["simo_ofdm"], old)
  with h5py.File(old, "a") as f:
    f.attrs["schema_version"] = 0
  with pytest.raises(data.DatasetError, match="schema_version=0 but this jaxchan reads version 1"):
    data.open_dataset(str(old))
  nan = tmp_path / "nan.h5"
  shutil.copy(built["simo_ofdm"], nan)
  with h5py.File(nan, "a") as f:
    f["test/h"][5, 3, 7] = np.nan
  with pytest.raises(data.DatasetError, match="NaN or Inf"):
    data.open_dataset(str(nan))
  trunc = tmp_path / "trunc.h5"
  trunc.write_bytes(_bytes(built["simo_ofdm"])[:5000])
  with pytest.raises(data.DatasetError, match="truncated or corrupted"):
    data.open_dataset(str(trunc))


def test_cli_help_and_bad_flags():
  proc = datagen("--help", check=False)   # the command itself: its help text
  for preset in ("low_mobility", "high_mobility", "simo_ofdm"):
    assert preset in proc.stdout
  bad = datagen("--preset=low_mobility", "--out=/tmp/x.h5", "--set", "nonsense=1", check=False)
  assert bad.returncode == 2 and "unknown dataset field 'nonsense'" in bad.stderr
  bad = datagen("--preset=low_mobility", "--out=/tmp/x.h5", "--shard=3/2", check=False)
  assert bad.returncode == 2 and "0 <= i < n" in bad.stderr
