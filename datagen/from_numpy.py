"""Import your own channels (numpy arrays, in memory or in .npy / .npz / .mat files) into the jaxchan HDF5 schema.

  python -m datagen.from_numpy --input=H.npy --out=PATH [--key=NAME] [--axes=sample,ue,bs,freq]
      [--ue_antennas=split|first] [--normalization=per_sample|global|none]
      [--num_test=N | --test_fraction=F] [--seed=S] [--no_shuffle]
  python -m datagen.from_numpy --input=series.mat --history_key=Hh --target_key=Ht --out=PATH ...

Two kinds of dataset (``docs/dataset_schema.md`` documents the file):

* **snapshot** (non-identical experiment): one channel array ``h``. Stored as ``[N, n_bs, n_freq]``; a UE-antenna
  axis is either split into separate samples (``--ue_antennas=split``: the antennas of one channel stay in the
  same split, so nothing leaks from train to test) or reduced to its first antenna (``first``). DeepMIMO's
  ``[N, 1, n_bs, n_freq]`` (one single-antenna UE) needs neither.
* **srs_prediction** (perception experiments): ``history`` ``[N, n_occasions, n_ue, n_bs, n_prb]`` (the channel at
  the last SRS occasions, oldest first) and ``target`` ``[N, n_ue, n_bs, n_prb]``; optional per-sample
  ``speed_mps`` (NaN, i.e. unknown, when not given) and ``indoor``.

``axes`` names the input's axes when they are not in that order, e.g. QuaDRiGa's ``[n_rx, n_tx, n_freq, N]`` is
``--axes=ue,bs,freq,sample`` (names: sample, time, ue, bs, freq). MATLAB files: v5 ``.mat`` is read with
SciPy, v7.3 (HDF5) with h5py, and both come back in MATLAB's own axis order.

Normalization (recorded in the file's ``config_json`` and ``normalization`` attributes):

* ``per_sample`` (default, what the generated datasets use): each sample scaled by one real factor so that the mean
  of ``|h|^2`` over all its stored channel elements (history and target together) is 1;
* ``global``: one factor for the whole file, from the training split, so the mean ``|h|^2`` over the training
  split is 1 and the power differences between samples are kept (stored as ``normalization_scale``);
* ``none``: stored as given. The experiments' SNRs assume unit average power, so scale it yourself.

Samples are shuffled with ``--seed`` (unless ``--no_shuffle``) and split into train/test. A ``.npy`` input is
memory-mapped (arrays larger than RAM are fine); the other formats are read into memory.

From Python, :func:`import_arrays` takes the arrays themselves::

  from datagen import from_numpy
  from_numpy.import_arrays("data/mine.h5", h=H)                       # H: complex [N, n_bs, n_freq]
  from_numpy.import_arrays("data/series.h5", history=Hh, target=Ht)   # perception experiments
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from datagen import cli, sionna_source, store

NORMALIZATIONS = ("per_sample", "global", "none")
UE_ANTENNAS = ("split", "first")
AXIS_NAMES = ("sample", "time", "ue", "bs", "freq")
# The stored axis order of each array (jaxchan.data.LAYOUTS in short names).
CANONICAL = {"h": ("sample", "bs", "freq"), "history": ("sample", "time", "ue", "bs", "freq"),
             "target": ("sample", "ue", "bs", "freq")}
DESCRIPTIONS = {
    "per_sample": None,  # jaxchan.data.NORMALIZATION
    "global": ("global unit power: one real factor for the whole file (normalization_scale in config_json) so that "
               "mean |h|^2 over the training split is 1; relative power between samples is kept"),
    "none": "none: stored as imported (no scaling)",
}


# ---------------------------------------------------------------------------
# Reading files.


def read_file(path: str) -> dict:
  """The arrays of a ``.npy`` (under the name ``""``), ``.npz`` or ``.mat`` (v5 or v7.3) file, by name.

  ``.npy`` comes back memory-mapped; MATLAB arrays come back in MATLAB's axis order (v7.3 files store them
  transposed, and complex numbers as ``(real, imag)`` records; both are undone here).
  """
  if not os.path.exists(path):
    raise ValueError(f"--input={path!r} does not exist.")
  ext = os.path.splitext(path)[1].lower()
  if ext == ".npy":
    return {"": np.load(path, mmap_mode="r")}
  if ext == ".npz":
    with np.load(path) as z:
      return {k: z[k] for k in z.files}
  if ext == ".mat":
    import h5py
    if h5py.is_hdf5(path):
      return _read_mat73(path)
    import scipy.io
    return {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
  raise ValueError(f"--input={path!r}: unknown file type {ext!r}; give a .npy, .npz or .mat file.")


def _read_mat73(path: str) -> dict:
  import h5py

  out = {}
  with h5py.File(path, "r") as f:
    for k, ds in f.items():
      if not isinstance(ds, h5py.Dataset) or k.startswith("#"):
        continue
      a = ds[()]
      if a.dtype.names and {"real", "imag"} <= set(a.dtype.names):
        a = a["real"] + 1j * a["imag"]
      out[k] = np.transpose(a)  # MATLAB is column-major: h5py sees the axes reversed
  return out


def pick(arrays: dict, key: str | None, path: str, flag: str = "--key"):
  """The array named ``key`` (or the only one) from :func:`read_file`'s result."""
  if key is None:
    if len(arrays) != 1:
      raise ValueError(f"{path} holds arrays {sorted(arrays)}; pick one with {flag}.")
    return next(iter(arrays.values()))
  if key not in arrays:
    raise ValueError(f"{flag}={key!r} not in {path} (it has {sorted(arrays)}).")
  return arrays[key]


# ---------------------------------------------------------------------------
# Arrays into the schema.


def to_canonical(name: str, arr, axes=None, ue_antennas: str | None = None):
  """``(array, group)``: ``arr`` with its axes in the stored order of ``name`` (``CANONICAL``), lazy where possible.

  For ``h`` a UE axis is split into samples or reduced to its first antenna (``ue_antennas``); a split gives
  ``group = n_ue`` consecutive samples per source sample (1 otherwise).
  """
  arr = arr if hasattr(arr, "shape") else np.asarray(arr)
  if not np.iscomplexobj(arr):
    raise ValueError(f"{name} has dtype {arr.dtype}; expected complex channel coefficients.")
  want = CANONICAL[name]
  if axes is None:
    if name == "h" and arr.ndim == 4:
      axes = ("sample", "ue", "bs", "freq")
    else:
      axes = want
  axes = tuple(axes.split(",")) if isinstance(axes, str) else tuple(axes)
  bad = [a for a in axes if a not in AXIS_NAMES]
  if bad or len(set(axes)) != len(axes):
    raise ValueError(f"axes={','.join(axes)} for {name}: names must be distinct, from {', '.join(AXIS_NAMES)}.")
  if len(axes) != arr.ndim:
    raise ValueError(f"{name} has shape {arr.shape} ({arr.ndim} axes) but axes={','.join(axes)} names "
                     f"{len(axes)}; expected [{', '.join(want)}] (name the axes with --axes).")
  allowed = set(want) | ({"ue"} if name == "h" else set())
  if set(axes) - allowed or set(want) - set(axes):
    raise ValueError(f"axes={','.join(axes)} for {name}: need exactly {', '.join(want)}"
                     + (" (plus an optional ue)" if name == "h" else "") + ".")
  if name == "h" and "ue" in axes:
    order = [axes.index(a) for a in ("sample", "ue", "bs", "freq")]
    a = arr if order == [0, 1, 2, 3] else np.transpose(np.asarray(arr), order)
    if a.shape[1] == 1:
      return a[:, 0], 1
    if ue_antennas is None:
      raise ValueError(f"h has {a.shape[1]} UE antennas; choose --ue_antennas=split (each UE antenna a sample) "
                       "or --ue_antennas=first.")
    if ue_antennas not in UE_ANTENNAS:
      raise ValueError(f"ue_antennas={ue_antennas!r}; choose one of {', '.join(UE_ANTENNAS)}.")
    if ue_antennas == "first":
      return a[:, 0], 1
    a = np.asarray(a)
    return a.reshape((a.shape[0] * a.shape[1],) + a.shape[2:]), a.shape[1]
  order = [axes.index(a) for a in want]
  return (arr if order == list(range(arr.ndim)) else np.transpose(np.asarray(arr), order)), 1


def import_arrays(out: str, *, h=None, history=None, target=None, speed_mps=None, indoor=None, axes=None,
                  history_axes=None, target_axes=None, ue_antennas: str | None = None,
                  normalization: str = "per_sample", num_test: int | None = None, test_fraction: float = 0.2,
                  seed: int = 0, shuffle: bool = True, batch_size: int = 1024, source: str = "arrays",
                  progress: bool = False) -> dict:
  """Write your channel arrays as a jaxchan dataset at ``out``; returns the recorded generation config.

  Give either ``h`` (snapshot kind; ``[N, n_bs, n_freq]`` or ``[N, n_ue, n_bs, n_freq]``, or any order named by
  ``axes``) or ``history`` and ``target`` (srs_prediction kind). Arrays may be numpy arrays, memory maps or
  anything indexable with a numpy shape. Everything is checked before anything is written, and the file
  appears only when complete.
  """
  if normalization not in NORMALIZATIONS:
    raise ValueError(f"normalization={normalization!r}; choose one of {', '.join(NORMALIZATIONS)}.")
  if (h is None) == (history is None and target is None):
    raise ValueError("give either h (a snapshot dataset) or history and target (an srs_prediction dataset).")
  if os.path.exists(out):
    raise ValueError(f"{out} already exists; delete it or choose another --out.")
  if h is not None:
    kind = "snapshot"
    hc, group = to_canonical("h", h, axes, ue_antennas)
    arrays = {"h": hc}
  else:
    if history is None or target is None:
      raise ValueError("an srs_prediction dataset needs both history and target.")
    kind = "srs_prediction"
    arrays = {"history": to_canonical("history", history, history_axes)[0],
              "target": to_canonical("target", target, target_axes)[0]}
    hs, ts = arrays["history"].shape, arrays["target"].shape
    if hs[0] != ts[0] or hs[2:] != ts[1:]:
      raise ValueError(f"history {hs} [N, time, ue, bs, freq] and target {ts} [N, ue, bs, freq] disagree in N, "
                       "ue, bs or freq.")
    n = hs[0]
    group = 1
    arrays["speed_mps"] = np.full(n, np.nan, np.float32) if speed_mps is None else np.asarray(speed_mps, np.float32)
    arrays["indoor"] = np.zeros(n, bool) if indoor is None else np.asarray(indoor, bool)
    for k in ("speed_mps", "indoor"):
      if arrays[k].shape != (n,):
        raise ValueError(f"{k} has shape {arrays[k].shape}; expected ({n},), one value per sample.")
  first = next(iter(arrays.values()))
  n = first.shape[0]
  n_groups = n // group
  if num_test is None:
    num_test = int(round(test_fraction * n_groups))
  if not 0 < num_test < n_groups:
    raise ValueError(f"num_test={num_test} must leave both splits non-empty for {n_groups} samples.")
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size} must be >= 1.")
  # Shuffle whole groups (a split channel's UE antennas stay together and in one split).
  order = np.random.default_rng(seed).permutation(n_groups) if shuffle else np.arange(n_groups)
  expand = lambda g: (g[:, None] * group + np.arange(group)).reshape(-1)  # noqa: E731
  idx = {"train": expand(order[:n_groups - num_test]), "test": expand(order[n_groups - num_test:])}
  channels = [k for k in ("h", "history", "target") if k in arrays]

  def read(ids):
    srt = np.argsort(ids)
    inv = np.argsort(srt)
    block = {k: np.asarray(v[ids[srt]])[inv] for k, v in arrays.items()}  # sorted reads (memmaps, h5py)
    for k in channels:
      ok = np.isfinite(block[k]).reshape(len(ids), -1).all(1)
      if not ok.all():
        bad = np.sort(ids[~ok])   # the input array's own sample indices (sample axis of the file as given)
        raise ValueError(f"{k} holds NaN/Inf in input sample(s) {bad[:5].tolist()}"
                         f"{' and more' if len(bad) > 5 else ''}; clean it first.")
    if normalization == "per_sample":
      power = sum(np.sum(np.abs(block[k]) ** 2, axis=tuple(range(1, block[k].ndim))) for k in channels)
      if np.any(power == 0):
        zero = ids[power == 0]
        raise ValueError(f"{len(zero)} samples have zero power (e.g. users that receive no path), first "
                         f"{zero[:5].tolist()}; per-sample normalization cannot scale them. Drop them first, e.g. "
                         "H = H[np.abs(H).reshape(len(H), -1).max(1) > 0], or choose normalization='global'.")
    return block

  scale = None
  if normalization == "global":
    total, count = 0.0, 0
    for s in range(0, len(idx["train"]), batch_size):
      block = read(idx["train"][s:s + batch_size])
      total += sum(float(np.sum(np.abs(block[k]) ** 2)) for k in channels)
      count += sum(block[k].size for k in channels)
    if total == 0:
      raise ValueError("the training split is all zeros; nothing to normalize.")
    scale = float(1.0 / np.sqrt(total / count))

  cfg = dict(kind=kind, preset="from_numpy", source=source, num_train=len(idx["train"]), num_test=len(idx["test"]),
             seed=seed, shuffle=shuffle, batch_size=batch_size, normalization=normalization,
             shapes={k: list(v.shape[1:]) for k, v in arrays.items() if k in channels})
  if scale is not None:
    cfg["normalization_scale"] = scale

  def batches(split):
    ids = idx[split]
    for b, s in enumerate(range(0, len(ids), batch_size)):
      block = read(ids[s:s + batch_size])
      if normalization == "per_sample":
        normed = sionna_source.normalize(*(block[k] for k in channels))
      else:
        normed = tuple((block[k] * (scale or 1.0)).astype(np.complex64) for k in channels)
      block.update(zip(channels, normed))
      yield b, block

  store.write_hdf5(out, cfg, {s: batches(s) for s in ("train", "test")},
                   {s: len(idx[s]) for s in ("train", "test")}, generator="datagen.from_numpy",
                   normalization=DESCRIPTIONS[normalization])
  return cfg


def convert(input_path: str, out: str, *, key=None, history_key=None, target_key=None, speed_key=None,
            **kwargs) -> dict:
  """Import a ``.npy`` / ``.npz`` / ``.mat`` file (see :func:`import_arrays` for the other arguments)."""
  arrays = read_file(input_path)
  src = os.path.basename(input_path)
  if history_key or target_key:
    if not (history_key and target_key):
      raise ValueError("give both --history_key and --target_key for an srs_prediction dataset.")
    speed = pick(arrays, speed_key, input_path, "--speed_key") if speed_key else None
    if speed is not None:
      speed = np.asarray(speed).reshape(-1)
    return import_arrays(out, history=pick(arrays, history_key, input_path, "--history_key"),
                         target=pick(arrays, target_key, input_path, "--target_key"), speed_mps=speed,
                         source=json.dumps(dict(file=src, history=history_key, target=target_key)), **kwargs)
  return import_arrays(out, h=pick(arrays, key, input_path), source=json.dumps(dict(file=src, key=key)), **kwargs)


def main(argv=None):
  p = argparse.ArgumentParser(prog="python -m datagen.from_numpy", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--input", required=True, help=".npy, .npz or .mat (v5 or v7.3)")
  p.add_argument("--out", required=True)
  p.add_argument("--key", help="the channel array's name inside an .npz / .mat (snapshot datasets)")
  p.add_argument("--history_key", help="srs_prediction datasets: the history array's name")
  p.add_argument("--target_key", help="srs_prediction datasets: the target array's name")
  p.add_argument("--speed_key", help="srs_prediction datasets: optional per-sample UE speed (m/s)")
  p.add_argument("--axes", help="the channel array's axis names in order, e.g. ue,bs,freq,sample")
  p.add_argument("--history_axes", help="the history array's axis names (default sample,time,ue,bs,freq)")
  p.add_argument("--target_axes", help="the target array's axis names (default sample,ue,bs,freq)")
  p.add_argument("--ue_antennas", choices=UE_ANTENNAS, help="snapshot data with several UE antennas: split them "
                 "into samples or keep the first")
  p.add_argument("--normalization", choices=NORMALIZATIONS, default="per_sample")
  p.add_argument("--num_test", type=int)
  p.add_argument("--test_fraction", type=float, default=0.2)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--no_shuffle", action="store_true")
  args = p.parse_args(argv)
  return cli.write_once(args.out, lambda: convert(
      args.input, args.out, key=args.key, history_key=args.history_key, target_key=args.target_key,
      speed_key=args.speed_key, axes=args.axes, history_axes=args.history_axes, target_axes=args.target_axes,
      ue_antennas=args.ue_antennas, normalization=args.normalization, num_test=args.num_test,
      test_fraction=args.test_fraction, seed=args.seed, shuffle=not args.no_shuffle))


if __name__ == "__main__":
  sys.exit(main())
