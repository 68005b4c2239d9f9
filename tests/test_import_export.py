"""Bring-your-own channels: datagen.from_numpy (.npy/.npz/.mat v5/v7.3, in-memory arrays, UE antennas, axes,
history/target, normalization). jaxchan.export of a model trained on such a dataset: tests/test_quickstart.py
(.mat, the notebook's own-array model) and the perception smoke test (.h5)."""

import json
import os

import h5py
import numpy as np
import pytest
import scipy.io

from datagen import from_numpy
from jaxchan import data


def _channels(rng, shape):
  """Correlated complex channels: a random low-rank mix, so samples differ in power and are not white."""
  n = shape[0]
  basis = rng.normal(size=(4,) + shape[1:]) + 1j * rng.normal(size=(4,) + shape[1:])
  coef = rng.normal(size=(n, 4)) + 1j * rng.normal(size=(n, 4))
  return (np.tensordot(coef, basis, 1) * np.arange(1, n + 1).reshape((n,) + (1,) * (len(shape) - 1))).astype(
      np.complex64)


def _write_mat73(path, name, arr):
  """A MATLAB v7.3 file as MATLAB writes it: HDF5, axes reversed (column-major), complex as (real, imag) records."""
  t = np.transpose(arr)
  rec = np.zeros(t.shape, dtype=[("real", "<f4"), ("imag", "<f4")])
  rec["real"], rec["imag"] = t.real, t.imag
  with h5py.File(path, "w") as f:
    f[name] = rec
    f[name].attrs["MATLAB_class"] = np.bytes_("single")


def _all_samples(path):
  with data.Dataset(path) as ds:
    return np.concatenate([ds.load("train")["h"], ds.load("test")["h"]])


def _unit(x, axes):
  return x / np.sqrt(np.mean(np.abs(x) ** 2, axis=axes, keepdims=True))


def _same_set(a, b):
  """Same samples in any order (shuffled import), compared to float32 rounding."""
  key = lambda x: np.round(x.reshape(x.shape[0], -1)[:, :3].real, 4).tolist()  # noqa: E731
  return sorted(key(a)) == sorted(key(b))


@pytest.mark.parametrize("fmt", ["npy", "npz", "mat5", "mat73", "memory"])
def test_formats_and_axes_round_trip(tmp_path, rng, fmt):
  """QuaDRiGa-style [n_rx, n_tx, n_freq, N] in every format: the stored samples are the source's, normalized."""
  h = _channels(rng, (30, 2, 8, 16))                 # [N, ue, bs, freq]
  q = np.transpose(h, (1, 2, 3, 0))                  # [ue, bs, freq, N]
  src = tmp_path / f"in.{fmt[:3]}"
  kw = dict(axes="ue,bs,freq,sample", ue_antennas="split", num_test=6)
  out = str(tmp_path / "ds.h5")
  if fmt == "memory":
    cfg = from_numpy.import_arrays(out, h=q, **kw)
  else:
    if fmt == "npy":
      np.save(src, q)
    elif fmt == "npz":
      np.savez(src, H=q, other=np.zeros(3))
    elif fmt == "mat5":
      scipy.io.savemat(src, {"H": q})
    else:
      _write_mat73(src, "H", q)
    cfg = from_numpy.convert(str(src), out, key=None if fmt == "npy" else "H", **kw)
  assert cfg["num_train"] == 2 * 24 and cfg["num_test"] == 2 * 6      # 30 channels x 2 UE antennas
  got = _all_samples(out)
  np.testing.assert_allclose(np.mean(np.abs(got) ** 2, axis=(1, 2)), 1.0, rtol=1e-5)
  assert _same_set(got, _unit(h.reshape(60, 8, 16), (1, 2)))
  # The two antennas of one channel land in the same split, next to each other: no train/test leakage.
  with data.Dataset(out) as ds:
    te = ds.load("test")["h"]
  src_unit = _unit(h, (2, 3))
  for i in range(0, len(te), 2):
    match = np.flatnonzero(np.all(np.isclose(src_unit[:, 0], te[i], atol=1e-5), axis=(1, 2)))
    assert len(match) == 1 and np.allclose(src_unit[match[0], 1], te[i + 1], atol=1e-5)


def test_normalization_choices_are_applied_and_recorded(tmp_path, rng):
  h = _channels(rng, (40, 4, 8))
  for norm in ("per_sample", "global", "none"):
    out = str(tmp_path / f"{norm}.h5")
    cfg = from_numpy.import_arrays(out, h=h, normalization=norm, num_test=10, shuffle=False)
    with data.Dataset(out) as ds:
      tr, te = ds.load("train")["h"], ds.load("test")["h"]
      attrs = json.loads(ds.file.attrs["config_json"]), str(ds.file.attrs["normalization"])
    assert attrs[0]["normalization"] == norm
    if norm == "per_sample":
      np.testing.assert_allclose(np.mean(np.abs(tr) ** 2, axis=(1, 2)), 1.0, rtol=1e-5)
    elif norm == "global":
      # One factor: mean power 1 over the training split, the power ratios between samples kept.
      np.testing.assert_allclose(np.mean(np.abs(tr) ** 2), 1.0, rtol=1e-4)
      np.testing.assert_allclose(tr, h[:30] * cfg["normalization_scale"], rtol=1e-5)
      np.testing.assert_allclose(te, h[30:] * cfg["normalization_scale"], rtol=1e-5)
      assert "global" in attrs[1]
    else:
      np.testing.assert_array_equal(tr, h[:30])
      assert "none" in attrs[1]


def test_history_target_series_import(tmp_path, rng):
  hist = _channels(rng, (20, 3, 2, 8, 6))            # [N, occasions, ue, bs, prb]
  target = 0.5 * hist[:, -1]
  speed = np.linspace(0, 30, 20)
  src = tmp_path / "series.mat"
  scipy.io.savemat(src, {"Hh": hist, "Ht": target, "v": speed})
  out = str(tmp_path / "series.h5")
  from_numpy.convert(str(src), out, history_key="Hh", target_key="Ht", speed_key="v", num_test=5, shuffle=False)
  with data.Dataset(out, kind="srs_prediction", shapes={"history": (3, 2, 8, 6), "target": (2, 8, 6)}) as ds:
    tr = ds.load("train")
  # Per-sample normalization acts on history and target together: their ratio (the channel's evolution) stays.
  np.testing.assert_allclose(tr["target"], 0.5 * tr["history"][:, -1], rtol=1e-5, atol=1e-6)
  energy = np.sum(np.abs(tr["history"]) ** 2, axis=(1, 2, 3, 4)) + np.sum(np.abs(tr["target"]) ** 2, axis=(1, 2, 3))
  np.testing.assert_allclose(energy / (3 * 2 * 8 * 6 + 2 * 8 * 6), 1.0, rtol=1e-5)
  np.testing.assert_allclose(tr["speed_mps"], speed[:15], rtol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(h=np.ones((10, 4, 4))), "expected complex"),
    (dict(h=np.ones((10, 2, 4, 4), np.complex64)), "2 UE antennas; choose --ue_antennas=split"),
    (dict(h=np.ones((10, 4, 4), np.complex64), axes="sample,bs"), "names 2"),
    (dict(h=np.ones((10, 4, 4), np.complex64), axes="sample,bs,time"), "need exactly sample, bs, freq"),
    (dict(h=np.ones((10, 4, 4), np.complex64), normalization="max"), "normalization='max'"),
    (dict(h=np.ones((10, 4, 4), np.complex64), num_test=10), "num_test=10 must leave both splits"),
    (dict(h=np.full((10, 4, 4), np.nan, np.complex64)), "NaN/Inf"),
    (dict(h=np.concatenate([np.ones((9, 4, 4)), np.zeros((1, 4, 4))]).astype(np.complex64)),
     r"1 samples have zero power \(e.g. users that receive no path\)"),
    (dict(history=np.ones((10, 3, 1, 4, 4), np.complex64), target=np.ones((10, 1, 4, 5), np.complex64)),
     "disagree"),
    (dict(history=np.ones((10, 3, 1, 4, 4), np.complex64)), "needs both history and target"),
])
def test_import_refuses_bad_input_and_writes_nothing(tmp_path, kwargs, match):
  out = tmp_path / "o.h5"
  with pytest.raises(ValueError, match=match):
    from_numpy.import_arrays(str(out), **kwargs)
  assert os.listdir(tmp_path) == []


def test_cli_reports_errors_in_one_line(tmp_path, capsys):
  np.savez(tmp_path / "two.npz", a=np.ones((4, 2, 2), np.complex64), b=np.ones(3))
  assert from_numpy.main([f"--input={tmp_path}/two.npz", f"--out={tmp_path}/o.h5"]) == 2
  assert "holds arrays ['a', 'b']; pick one with --key" in capsys.readouterr().err
  assert from_numpy.main([f"--input={tmp_path}/x.csv", f"--out={tmp_path}/o.h5"]) == 2


def test_a_mat_file_and_an_in_memory_array_give_the_same_dataset(tmp_path, rng):
  """A DeepMIMO-like .mat file and the same array in memory import to datasets holding the same samples (the
  trained-model export of such a dataset is checked on the notebook's own-array model, tests/test_quickstart.py)."""
  h = _channels(rng, (120, 1, 8, 16))               # DeepMIMO-like [N, 1, n_bs, n_freq]
  scipy.io.savemat(tmp_path / "mine.mat", {"H": h})
  mat_ds = str(tmp_path / "from_mat.h5")
  from_numpy.convert(str(tmp_path / "mine.mat"), mat_ds, key="H", num_test=24)
  mem_ds = str(tmp_path / "from_memory.h5")
  from_numpy.import_arrays(mem_ds, h=h[:, 0], num_test=24)
  assert _same_set(_all_samples(mat_ds), _all_samples(mem_ds))


def test_export_refuses_a_sampler_the_model_cannot_run_before_reading_data(tmp_path, capsys):
  # eta+cov draws from the model's Gaussian anchor: a model without a Kronecker or low-rank one is refused from its
  # model.json, naming --sampler, before the (here nonexistent) dataset is opened.
  from jaxchan import export
  for anchor in ("none", "mixture"):
    (tmp_path / "model.json").write_text(json.dumps({"denoiser": {"anchor": anchor}}))
    with pytest.raises(ValueError, match=f"--sampler=eta\\+cov:1.0 .* has anchor '{anchor}'"):
      export.check_sampler_fits_model(str(tmp_path), "eta+cov:1.0")
  export.check_sampler_fits_model(str(tmp_path), "eta:1.0")              # needs no anchor
  (tmp_path / "model.json").write_text(json.dumps({"denoiser": {"anchor": "kronecker"}}))
  export.check_sampler_fits_model(str(tmp_path), "eta+cov:1.0")
  (tmp_path / "model.json").write_text(json.dumps({"denoiser": {"anchor": "none"}}))
  assert export.main([f"--model_dir={tmp_path}", "--dataset=/no/such.h5", f"--out={tmp_path}/e.h5",
                      "--sampler=eta+cov:1.0"]) == 2
  err = capsys.readouterr().err
  assert "--sampler=eta+cov:1.0" in err and "no/such" not in err and not (tmp_path / "e.h5").exists()
