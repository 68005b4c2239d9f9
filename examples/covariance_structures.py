"""LMMSE one-shot NMSE with structured covariances: which structure a Gaussian anchor can use on a dataset.

For the six initial-noise patterns at their default SNRs, LMMSE (``jaxchan.lmmse.estimate``) with the full
sample covariance of the training channels and with structured versions of it: Kronecker (antenna x subcarrier
marginals), angle-delay diagonal (diagonal in the unitary 2-D DFT basis), and the leading ``r`` eigenpairs plus
the diagonal they leave. Prints one line per pattern as it goes (dense solves: minutes per pattern on 2 cores).

  python examples/covariance_structures.py data/street_canyon_small.h5 32
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np

from jaxchan import data, lmmse, metrics, noise_patterns, schedules


def main(path, num_test=32):
  sch = schedules.GammaSchedule(100, 0.2)
  with data.Dataset(path, kind="snapshot") as ds:
    train = np.asarray(ds.load("train")["h"][:8000])
    h = jnp.asarray(ds.load("test")["h"][:num_test])
  n, A, S = train.shape
  X = train.reshape(n, -1).astype(np.complex128)
  mu = X.mean(0)
  Xc = X - mu
  full = Xc.T @ Xc.conj() / n                          # E[h h^H]: entry (i, j) is E h_i conj(h_j)
  Ca = np.einsum("nas,nbs->ab", train, train.conj()) / (n * S)
  Cs = np.einsum("nas,nat->st", train, train.conj()) / (n * A)
  kron = np.kron(Ca, Cs) / (np.trace(Ca).real / A)
  F = np.kron(np.fft.fft(np.eye(A)) / np.sqrt(A), np.fft.fft(np.eye(S)) / np.sqrt(S))
  p = np.mean(np.abs(Xc @ F.T) ** 2, 0)
  covs = {"full": full, "kronecker": kron, "angle-delay diag": F.conj().T @ np.diag(p) @ F}
  w, V = np.linalg.eigh(full)
  for r in (64, 256, 512):
    top = V[:, -r:] * w[-r:] @ V[:, -r:].conj().T
    covs[f"rank {r} + diag"] = top + np.diag(np.diag(full - top).real.clip(min=0))
  for i, pat in enumerate(noise_patterns.PATTERNS):
    obs = noise_patterns.observe(h, jax.random.PRNGKey(i), pat, sch)
    row = {k: float(metrics.nmse(h, lmmse.estimate(obs.h_bar, obs.m, jnp.asarray(mu, jnp.complex64),
                                                   jnp.asarray(c, jnp.complex64)))) for k, c in covs.items()}
    print(pat, {k: round(v, 4) for k, v in row.items()}, flush=True)


if __name__ == "__main__":
  main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 32)
