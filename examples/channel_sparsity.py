"""How sparse are a dataset's channels? Energy in the top singular values of each [n_bs, n_freq] channel.

  python -m examples.channel_sparsity data/simo_ofdm_small.h5 data/street_canyon_small.h5 [--num=500]

Prints, per file, over the first NUM training channels: the mean fraction of a channel's energy in its top 1
and top 3 singular values, and the median number of singular values that hold 90 % of it.
"""

import argparse

import h5py
import numpy as np


def sparsity(h: np.ndarray) -> dict:
  s = np.linalg.svd(h, compute_uv=False) ** 2
  frac = np.cumsum(s, 1) / s.sum(1, keepdims=True)
  return dict(top1=float(frac[:, 0].mean()), top3=float(frac[:, 2].mean()),
              median_k90=float(np.median((frac < 0.9).sum(1) + 1)))


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("files", nargs="+")
  p.add_argument("--num", type=int, default=500)
  args = p.parse_args()
  for path in args.files:
    with h5py.File(path) as f:
      r = sparsity(f["train/h"][:args.num])
    print(f"{path}: top 1 {r['top1']:.3f}, top 3 {r['top3']:.4f}, median singular values for 90 % {r['median_k90']:g}")


if __name__ == "__main__":
  main()
