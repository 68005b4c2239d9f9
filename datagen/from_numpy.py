"""Import a user's channel array (e.g. DeepMIMO output) into the jaxchan HDF5 schema.

  python -m datagen.from_numpy --input=H.npy --out=PATH [--key=NAME] [--num_test=N | --test_fraction=F]
      [--seed=S] [--no_shuffle]

The input is a complex array ``[N, n_bs, n_freq]`` or DeepMIMO's ``[N, 1, n_bs, n_freq]``
(one single-antenna UE), in a ``.npy`` file or under ``--key`` in a ``.npz``.
Samples are unit-power normalized (see ``jaxchan.data.NORMALIZATION``), shuffled
with ``--seed`` (unless ``--no_shuffle``) and split into train/test. The ``.npy``
input is memory-mapped, so arrays larger than RAM are fine.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from datagen import cli, sionna_source, store


def load_array(path: str, key: str | None):
  if not os.path.exists(path):
    raise ValueError(f"--input={path!r} does not exist.")
  if path.endswith(".npz"):
    z = np.load(path)
    if key is None:
      if len(z.files) != 1:
        raise ValueError(f"{path} holds arrays {z.files}; pick one with --key.")
      key = z.files[0]
    if key not in z.files:
      raise ValueError(f"--key={key!r} not in {path} (has {z.files}).")
    arr = z[key]
  else:
    arr = np.load(path, mmap_mode="r")
  if arr.ndim == 4 and arr.shape[1] == 1:
    arr = arr[:, 0]
  if arr.ndim != 3:
    raise ValueError(f"input array has shape {arr.shape}; expected [N, n_bs, n_freq] or [N, 1, n_bs, n_freq] "
                     "(DeepMIMO, single-antenna UE).")
  if not np.iscomplexobj(arr):
    raise ValueError(f"input array has dtype {arr.dtype}; expected complex channel coefficients.")
  return arr


def convert(input_path: str, out: str, *, key=None, num_test=None, test_fraction=0.2, seed=0, shuffle=True,
            batch_size=1024) -> dict:
  arr = load_array(input_path, key)
  n = arr.shape[0]
  if num_test is None:
    num_test = int(round(test_fraction * n))
  if not 0 < num_test < n:
    raise ValueError(f"num_test={num_test} must leave both splits non-empty for {n} samples.")
  order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
  idx = {"train": np.sort(order[:n - num_test]) if not shuffle else order[:n - num_test],
         "test": order[n - num_test:]}
  cfg = dict(kind="snapshot", preset="from_numpy", source=os.path.basename(input_path), source_key=key,
             num_train=n - num_test, num_test=num_test, seed=seed, shuffle=shuffle, batch_size=batch_size,
             n_bs=int(arr.shape[1]), n_freq=int(arr.shape[2]))

  def source(split):
    ids = idx[split]
    for b, start in enumerate(range(0, len(ids), batch_size)):
      sel = ids[start:start + batch_size]
      block = np.asarray(arr[np.sort(sel)])[np.argsort(np.argsort(sel))]  # sorted reads from the memmap
      if not np.all(np.isfinite(block.view(np.float64 if block.dtype == np.complex128 else np.float32))):
        raise ValueError(f"input holds NaN/Inf in samples {sel[:5]}...; clean it first.")
      (h,) = sionna_source.normalize(block)
      yield b, {"h": h}

  store.write_hdf5(out, cfg, {s: source(s) for s in ("train", "test")},
                   {"train": n - num_test, "test": num_test}, generator="datagen.from_numpy")
  return cfg


def main(argv=None):
  p = argparse.ArgumentParser(prog="python -m datagen.from_numpy", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--input", required=True)
  p.add_argument("--out", required=True)
  p.add_argument("--key", help="array name inside an .npz")
  p.add_argument("--num_test", type=int)
  p.add_argument("--test_fraction", type=float, default=0.2)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--no_shuffle", action="store_true")
  args = p.parse_args(argv)
  return cli.write_once(args.out, lambda: convert(
      args.input, args.out, key=args.key, num_test=args.num_test, test_fraction=args.test_fraction,
      seed=args.seed, shuffle=not args.no_shuffle))

if __name__ == "__main__":
  sys.exit(main())
