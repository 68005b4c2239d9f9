"""A new user's mistakes: each is refused with one line on stderr naming the field or path, before any training,
and never writes a dataset where the user did not ask for one (a user's own file keeps its bytes and mtime)."""

import os

import h5py
import numpy as np
import pytest

from conftest import run_py


def _snapshot_dataset(path, n=80, shape=(32, 64)):
  from datagen import from_numpy
  rng = np.random.default_rng(0)
  h = (rng.normal(size=(n, *shape)) + 1j * rng.normal(size=(n, *shape))).astype(np.complex64)
  from_numpy.import_arrays(str(path), h=h, num_test=40)
  return str(path)


def _check(proc, match, tmp_path, untouched=()):
  """Non-zero exit, exactly one line on stderr holding ``match``, nothing trained, user files unchanged."""
  assert proc.returncode != 0
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert len(lines) == 1, proc.stderr[-3000:]
  assert match in lines[0], lines[0]
  assert not (tmp_path / "wd" / "models").exists()
  for path, (data, mtime) in untouched:
    assert open(path, "rb").read() == data and os.stat(path).st_mtime_ns == mtime, path


def _snapshot(path):
  return str(path), (open(path, "rb").read(), os.stat(path).st_mtime_ns)


CONFIG_MISTAKES = [
    (["--config=configs/nonidem.py:smoke"], "no config file"),
    (["--config=noniden:smokee"], "unknown variant 'smokee'"),
    (["--config=noniden:smoke", "--config.train.lrr=0.1"], "did you mean --config.train.lr?"),
    (["--config=noniden:smoke", "--config.evall.num_test=3"], "did you mean --config.eval?"),
    (["--config=noniden:smoke", "--config.train.lr=nan"], "config.train.lr=nan"),
    (["--config=noniden:smoke", "--config.eval.snr_db.salt=nan"], "config.eval.snr_db.salt=nan"),
    (["--config=noniden:smoke", "--config.beta_max=inf"], "config.beta_max=inf"),
    (["--config=perception:smoke", "--config.train.lr=nan"], "config.train.lr=nan"),
    (["--config=noniden:smoke", "--config.models.nonid.anchor=gauss"], "config.models.nonid.anchor"),
    (["--config=noniden:smoke", "--config.anchor.max_iter=0"], "config.anchor"),
    (["--config=noniden:smoke", "--config.anchor.tol=-1.0"], "config.anchor"),
    (["--config=noniden:smoke", "--config.eval.num_steps=-3"], "config.eval.num_steps"),
]


# Cases that repeat a check another case covers in the fast tier (the same non-finite test on another field or
# experiment, the anchor's other solver setting) run in the full suite only: each is a run.py subprocess.
_REPEATS = {("--config=noniden:smoke", "--config.eval.snr_db.salt=nan"),
            ("--config=noniden:smoke", "--config.beta_max=inf"),
            ("--config=perception:smoke", "--config.train.lr=nan"),
            ("--config=noniden:smoke", "--config.anchor.tol=-1.0")}


@pytest.mark.parametrize("args,match", [
    pytest.param(a, m, id=m, marks=[pytest.mark.slow] if tuple(a) in _REPEATS else []) for a, m in CONFIG_MISTAKES])
def test_config_mistakes_are_one_line(args, match, tmp_path):
  # A build of the missing dataset is allowed: the config mistake must stop the job before it.
  proc = run_py([*args, f"--config.data.path={tmp_path}/never.h5", "--config.data.build_if_missing=True",
                 f"--workdir={tmp_path}/wd"] if args[0] != "--config=configs/nonidem.py:smoke" else args, tmp_path)
  _check(proc, match, tmp_path)
  assert not (tmp_path / "never.h5").exists()


def test_unusable_workdir_is_one_line(tmp_path):
  (tmp_path / "afile").write_text("mine")
  proc = run_py(["--config=noniden:smoke", f"--config.data.path={tmp_path}/never.h5",
                 f"--workdir={tmp_path}/afile/wd"], tmp_path)
  _check(proc, f"--workdir={tmp_path}/afile/wd cannot be used", tmp_path)
  assert (tmp_path / "afile").read_text() == "mine"


@pytest.mark.parametrize("config", ["noniden:smoke", "perception:smoke,high_mobility"])
def test_a_mistyped_dataset_path_is_never_built(tmp_path, config):
  # Refused by the experiment's preflight, before the config's models are traced.
  proc = run_py([f"--config={config}", f"--config.data.path={tmp_path}/typo.h5", f"--workdir={tmp_path}/wd"],
                tmp_path)
  _check(proc, f"dataset '{tmp_path}/typo.h5' (config.data.path) does not exist", tmp_path)
  assert not (tmp_path / "typo.h5").exists()
  assert "build_if_missing=True" in proc.stderr


@pytest.mark.parametrize("damage", ["not_hdf5", "truncated", "wrong_kind"])
def test_a_damaged_or_wrong_file_is_left_alone_and_the_hint_names_a_new_path(damage, tmp_path):
  path = tmp_path / "mine.h5"
  if damage == "not_hdf5":
    path.write_text("my notes, not a dataset\n")
  else:
    _snapshot_dataset(path)
    if damage == "truncated":
      data = path.read_bytes()
      path.write_bytes(data[:len(data) // 2])
    else:
      with h5py.File(path, "r+") as f:
        f.attrs["kind"] = "srs_prediction"
  before = _snapshot(path)
  proc = run_py(["--config=noniden:smoke", f"--config.data.path={path}", f"--workdir={tmp_path}/wd"], tmp_path)
  match = {"not_hdf5": "is not a readable HDF5 file", "truncated": str(path),
           "wrong_kind": "kind="}[damage]
  _check(proc, match, tmp_path, untouched=[before])
  assert f"--out={tmp_path}/mine.new.h5" in proc.stderr and f"--out={path} " not in proc.stderr
  assert not (tmp_path / "mine.new.h5").exists()


@pytest.mark.parametrize("override,match", [
    ("--config.data.n_bs=8", "config.data.n_bs"),
    ("--config.eval.num_test=100000", "config.eval.num_test=100000 exceeds the 40 test samples"),
    ("--config.train.test_loss_samples=500", "config.train.test_loss_samples=500 exceeds the 40 test samples"),
])
def test_a_dataset_that_cannot_serve_the_config_stops_before_training(override, match, tmp_path):
  path = _snapshot_dataset(tmp_path / "mine.h5")
  before = _snapshot(path)
  proc = run_py(["--config=noniden:smoke", f"--config.data.path={path}", override, f"--workdir={tmp_path}/wd"],
                tmp_path)
  _check(proc, match, tmp_path, untouched=[before])


@pytest.mark.parametrize("shuffle", [True, False])
def test_import_names_the_input_samples_that_hold_nan(shuffle, tmp_path):
  from datagen import from_numpy
  h = np.ones((20, 4, 8), np.complex64)
  h[3, 1, 2] = np.nan
  with pytest.raises(ValueError, match=r"input sample\(s\) \[3\];"):
    from_numpy.import_arrays(str(tmp_path / "x.h5"), h=h, num_test=5, shuffle=shuffle)
  assert not (tmp_path / "x.h5").exists()


def test_a_derived_dataset_on_disk_must_match_what_the_job_asks_for(tmp_path):
  """ensure_generated uses a file at its path only if the file records the generation config asked for: a
  dataset another build left there (another speed, history length, size or seed) is refused, never evaluated."""
  import json

  from datagen import presets
  from jaxchan import data
  from jaxchan.experiments import common
  cfg = presets.get("low_mobility", "tiny", num_train=64, num_test=16, num_occasions=8)
  path = tmp_path / "low_mobility_num_occasions8.h5"
  with h5py.File(path, "w") as f:   # only the attribute is read: no generation needed to test the check
    f.attrs["config_json"] = json.dumps(dict(cfg, description="prose may differ"), sort_keys=True)
  assert common.ensure_generated(str(path), cfg, log=lambda *_: None) == str(path)
  other = dict(cfg, num_occasions=4, speed_indoor_kmh=3.0)
  with pytest.raises(data.DatasetError, match=r"num_occasions': \(8, 4\).*speed_indoor_kmh': \(0\.3, 3\.0\)"):
    common.ensure_generated(str(path), other, log=lambda *_: None)


def test_a_longer_srs_history_is_never_built_for_a_users_own_file(tmp_path):
  """noniden_srs's ``occasions:N`` beyond the data builds the scenario's datagen preset with N occasions: asked of
  a file that preset did not generate (imported measurements, another preset), it is refused before any work,
  since the longer history would be other channels presented under the same scenario."""
  import json
  import types

  import configs
  from jaxchan.experiments import noniden_srs

  def dataset(name, preset):
    path = tmp_path / f"{name}.h5"
    with h5py.File(path, "w") as f:   # only the attribute is read
      if preset:
        f.attrs["config_json"] = json.dumps({"preset": preset})
    return types.SimpleNamespace(path=str(path))

  c = configs.get("noniden_srs:smoke")
  c.eval.unseen = ("hops:2", "occasions:6")
  noniden_srs.check_longer_history_source(c, {"high_mobility": dataset("built", "high_mobility")})
  with pytest.raises(ValueError, match=r"\['occasions:6'\].*records no datagen preset \(imported data\)"):
    noniden_srs.check_longer_history_source(c, {"high_mobility": dataset("mine", None)})
  with pytest.raises(ValueError, match="records datagen preset 'low_mobility'"):
    noniden_srs.check_longer_history_source(c, {"high_mobility": dataset("other", "low_mobility")})
  c.eval.unseen = ("hops:2", "occasions:2")     # within the file's history: nothing is built, any file will do
  noniden_srs.check_longer_history_source(c, {"high_mobility": dataset("mine2", None)})
