"""Channel datasets on disk: the HDF5 schema, and a reader that yields shuffled batches.

Datasets are built once by ``datagen`` (``python -m datagen.uma ...`` or
``python -m datagen.from_numpy ...``). One HDF5 file per dataset:

* file attributes: ``schema_version``, ``kind``, ``preset``, ``generator``,
  ``seed``, ``batch_size``, ``config_json`` (the full generation config),
  ``normalization``, ``layout_json`` (the axis names of every array);
* groups ``train`` and ``test``, each with chunked arrays:

  - ``kind = "snapshot"`` (non-identical paper): ``h`` ``[N, n_bs, n_freq]``;
  - ``kind = "srs_prediction"`` (perception paper): ``history``
    ``[N, n_occasions, n_ue, n_bs, n_prb]`` (the channel at the last SRS
    occasions, oldest first), ``target`` ``[N, n_ue, n_bs, n_prb]`` (the
    channel ``target_delay`` after the last occasion), ``speed_mps`` ``[N]``,
    ``indoor`` ``[N]``.

Normalization (``NORMALIZATION``): every sample is scaled by one real factor so
that the mean of ``|h|^2`` over *all* of its stored elements is 1 (history and
target together, so their relative power and the channel's temporal evolution
are kept). Path loss and shadow fading are off in generation.
"""

from __future__ import annotations

import json
import os
from typing import Iterator

import numpy as np

SCHEMA_VERSION = 1
KINDS = {
    "snapshot": ("h",),
    "srs_prediction": ("history", "target", "speed_mps", "indoor"),
}
LAYOUTS = {
    "h": ["sample", "bs_antenna", "subcarrier"],
    "history": ["sample", "srs_occasion", "ue_antenna", "bs_antenna", "prb"],
    "target": ["sample", "ue_antenna", "bs_antenna", "prb"],
    "speed_mps": ["sample"],
    "indoor": ["sample"],
}
CHANNEL_ARRAYS = ("h", "history", "target")
NORMALIZATION = ("per-sample unit power: each sample is scaled by one real factor so that mean |h|^2 over all "
                 "of its stored channel elements (history and target together) is 1; path loss and shadow "
                 "fading are disabled")
SPLITS = ("train", "test")


class DatasetError(ValueError):
  """A dataset file that is missing, corrupted, or does not match what the job expects."""


def fresh_path(path: str) -> str:
  """A path next to ``path`` that does not exist yet (``x.h5`` -> ``x.new.h5``, ``x.new2.h5``, ...; always ``.h5``)."""
  base = os.path.splitext(path)[0]
  cand, i = f"{base}.new.h5", 2
  while os.path.exists(cand):
    cand, i = f"{base}.new{i}.h5", i + 1
  return cand


def build_hint(path: str, build_command: str | None) -> str:
  """How to build the dataset: at ``path`` while nothing is there, else at a new path (never over a file)."""
  if not build_command:
    build_command = "python -m datagen.uma --preset=NAME --out=PATH  (see --help)"
  if not os.path.exists(path):
    return f" Build it with: {build_command}"
  new = fresh_path(path)
  cmd = build_command.replace(f"--out={path}", f"--out={new}")
  if cmd == build_command:
    cmd = f"{build_command}  (with --out={new})"
  return (f" The file is left as it is; build a new dataset at another path with: {cmd} and pass "
          f"--config.data.path={new}")


def open_dataset(path: str, *, build_command: str | None = None, kind: str | None = None,
                 shapes: dict | None = None, verify: str = "auto", max_verify_bytes: int = 2 << 30):
  """Open and validate a dataset file.

  Args:
    path: the HDF5 file.
    build_command: the datagen command that builds it (quoted in errors).
    kind: expected ``kind`` attribute, if any.
    shapes: expected per-sample shapes, e.g. ``{"h": (32, 64)}``.
    verify: ``"full"`` scans every channel value for NaN/Inf, ``"quick"`` the
      first chunk only, ``"auto"`` full up to ``max_verify_bytes``.

  Returns:
    An open ``h5py.File`` (read-only). Close it, or use :class:`Dataset`.

  Raises:
    DatasetError: with the path, what is wrong, and how to fix it.
  """
  import h5py

  if not os.path.exists(path):
    partial = os.path.exists(path + ".parts")
    msg = f"dataset {path!r} does not exist."
    if partial:
      msg += " An interrupted build left its parts next to it; rerun the same datagen command to resume."
    raise DatasetError(msg + build_hint(path, build_command))
  try:
    f = h5py.File(path, "r")
  except OSError as e:
    raise DatasetError(f"dataset {path!r} is not a readable HDF5 file ({e}); it is truncated or corrupted. "
                       + build_hint(path, build_command)) from e
  try:
    version = f.attrs.get("schema_version")
    version = version.item() if hasattr(version, "item") else version
    if version != SCHEMA_VERSION:
      raise DatasetError(f"dataset {path!r} has schema_version={version!r} but this jaxchan reads version "
                         f"{SCHEMA_VERSION}." + build_hint(path, build_command))
    file_kind = str(f.attrs.get("kind"))
    if file_kind not in KINDS:
      raise DatasetError(f"dataset {path!r} has unknown kind {file_kind!r}; expected one of {sorted(KINDS)}."
                         + build_hint(path, build_command))
    if kind is not None and file_kind != kind:
      raise DatasetError(f"dataset {path!r} holds kind={file_kind!r} data but the job needs kind={kind!r}."
                         + build_hint(path, build_command))
    for split in SPLITS:
      if split not in f:
        raise DatasetError(f"dataset {path!r} has no {split!r} group; it is incomplete."
                           + build_hint(path, build_command))
      n = None
      for name in KINDS[file_kind]:
        if name not in f[split]:
          raise DatasetError(f"dataset {path!r} lacks {split}/{name}; it is incomplete." + build_hint(path, build_command))
        ds = f[split][name]
        if n is not None and ds.shape[0] != n:
          raise DatasetError(f"dataset {path!r}: {split}/{name} has {ds.shape[0]} samples, other arrays {n}.")
        n = ds.shape[0]
        if shapes and name in shapes and tuple(ds.shape[1:]) != tuple(shapes[name]):
          raise DatasetError(
              f"dataset {path!r}: {split}/{name} has per-sample shape {tuple(ds.shape[1:])} "
              f"({' x '.join(LAYOUTS[name][1:])}) but the config expects {tuple(shapes[name])}. Fix the config's "
              "shape fields (e.g. --config.data.n_bs / n_freq) or use a matching dataset." + build_hint(path, build_command))
    _verify_finite(f, path, verify, max_verify_bytes)
  except BaseException:
    f.close()
    raise
  return f


def _verify_finite(f, path, verify, max_bytes):
  if verify not in ("auto", "full", "quick"):
    raise ValueError(f"verify={verify!r}; allowed: 'auto', 'full', 'quick'.")
  kind = str(f.attrs["kind"])
  arrays = [f[s][n] for s in SPLITS for n in KINDS[kind] if n in CHANNEL_ARRAYS]
  total = sum(a.size * a.dtype.itemsize for a in arrays)
  full = verify == "full" or (verify == "auto" and total <= max_bytes)
  for a in arrays:
    step = max(1, (a.chunks or a.shape)[0])
    stop = a.shape[0] if full else min(a.shape[0], step)
    for start in range(0, stop, step * 8):
      block = a[start:min(stop, start + step * 8)]
      if not np.all(np.isfinite(block.view(block.real.dtype) if np.iscomplexobj(block) else block)):
        bad = start + int(np.argmax(~np.isfinite(np.abs(block)).reshape(block.shape[0], -1).all(1)))
        raise DatasetError(f"dataset {path!r}: {a.name} holds NaN or Inf (first at sample {bad}); the file is "
                           "corrupted." + build_hint(path, None))


class Dataset:
  """A validated dataset with shuffled batch iteration.

  Example::

    with Dataset(path, build_command="python -m datagen.uma ...") as ds:
      for batch in ds.batches("train", batch_size=64, seed=0, epoch=0):
        ...  # batch["h"]: [64, n_bs, n_freq] complex64

  ``in_memory=True`` (default when the split is under 1 GiB) loads a split once;
  otherwise batches are read as contiguous blocks of ``block_size`` samples in shuffled order and
  shuffled within a buffer, so peak memory stays at ``shuffle_blocks`` blocks.
  """

  def __init__(self, path: str, *, in_memory: bool | None = None, block_size: int = 256, shuffle_blocks: int = 8,
               **open_kwargs):
    self.path = path
    self._block_size, self._shuffle_blocks = int(block_size), int(shuffle_blocks)
    self.file = open_dataset(path, **open_kwargs)
    self.kind = str(self.file.attrs["kind"])
    self.arrays = KINDS[self.kind]
    self.config = json.loads(self.file.attrs["config_json"])
    self._in_memory = in_memory
    self._cache = {}

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def close(self):
    self.file.close()

  def size(self, split: str) -> int:
    return self.file[split][self.arrays[0]].shape[0]

  def shape(self, name: str) -> tuple:
    """Per-sample shape of array ``name``."""
    return tuple(self.file["train"][name].shape[1:])

  def _split_bytes(self, split):
    return sum(self.file[split][n].size * self.file[split][n].dtype.itemsize for n in self.arrays)

  def load(self, split: str) -> dict:
    """The whole split as numpy arrays."""
    if split not in self._cache:
      self._cache[split] = {n: self.file[split][n][...] for n in self.arrays}
    return self._cache[split]

  def read(self, split: str, start: int, stop: int) -> dict:
    """Samples ``start:stop`` of a split as numpy arrays (from the loaded split if it is, else from the file)."""
    if split in self._cache:
      return {n: v[start:stop] for n, v in self._cache[split].items()}
    return {n: self.file[split][n][start:stop] for n in self.arrays}

  def batches(self, split: str, batch_size: int, *, seed: int = 0, epoch: int = 0, shuffle: bool = True,
              drop_remainder: bool = True, stop: int | None = None) -> Iterator[dict]:
    """Yield batches ``{name: [batch_size, ...]}``; the order is a pure function of (seed, epoch).

    ``stop``: use only the split's first ``stop`` samples (the rest held out, e.g. for validation).
    """
    if split not in SPLITS:
      raise ValueError(f"split={split!r}; allowed: {SPLITS}.")
    n = _check_batches(split, self.size(split), batch_size, stop, drop_remainder)
    rng = np.random.default_rng([seed, epoch, SPLITS.index(split)])
    in_memory = self._in_memory if self._in_memory is not None else self._split_bytes(split) <= (1 << 30)
    if in_memory:
      yield from _memory_batches(self.load(split), n, batch_size, rng, shuffle, drop_remainder)
      return
    yield from self._streamed(split, n, batch_size, rng, shuffle, drop_remainder)

  def _streamed(self, split, n, batch_size, rng, shuffle, drop_remainder):
    block_size, shuffle_blocks = self._block_size, self._shuffle_blocks
    starts = np.arange(0, n, block_size)
    if shuffle:
      rng.shuffle(starts)
    group = self.file[split]
    pending = {k: [] for k in self.arrays}
    for j in range(0, len(starts), shuffle_blocks):
      buf = {k: np.concatenate([group[k][s:min(s + block_size, n)] for s in starts[j:j + shuffle_blocks]])
             for k in self.arrays}
      m = next(iter(buf.values())).shape[0]
      perm = rng.permutation(m) if shuffle else np.arange(m)
      for k in self.arrays:
        pending[k].append(buf[k][perm])
      merged = {k: np.concatenate(v) for k, v in pending.items()}
      total = next(iter(merged.values())).shape[0]
      full = total - total % batch_size
      for i in range(0, full, batch_size):
        yield {k: v[i:i + batch_size] for k, v in merged.items()}
      pending = {k: [v[full:]] for k, v in merged.items()}
    rest = next(iter(pending.values()))[0].shape[0] if pending[self.arrays[0]] else 0
    if rest and not drop_remainder:
      yield {k: v[0] for k, v in pending.items()}


def _check_batches(split, n, batch_size, stop, drop_remainder) -> int:
  if split not in SPLITS:
    raise ValueError(f"split={split!r}; allowed: {SPLITS}.")
  if stop is not None:
    if not 1 <= stop <= n:
      raise ValueError(f"stop={stop} must be between 1 and the {split} size {n}.")
    n = int(stop)
  if batch_size < 1 or (drop_remainder and batch_size > n):
    raise ValueError(f"batch_size={batch_size} must be between 1 and the {split} size {n} "
                     "(or pass drop_remainder=False).")
  return n


def _memory_batches(data: dict, n: int, batch_size: int, rng, shuffle: bool, drop_remainder: bool):
  order = rng.permutation(n) if shuffle else np.arange(n)
  stop = n - n % batch_size if drop_remainder else n
  for i in range(0, stop, batch_size):
    idx = order[i:i + batch_size]
    yield {k: v[idx] for k, v in data.items()}


class ArrayDataset:
  """In-memory arrays with the interface of :class:`Dataset` (``size``, ``shape``, ``load``, ``read``,
  ``batches``): ``splits`` maps ``"train"`` / ``"test"`` to ``{name: [N, ...] array}``. Batches follow the same
  order rule as :class:`Dataset`'s (a pure function of seed, epoch and split).

  It serves data derived from a file rather than stored in one, e.g. every UE antenna's target channel of an
  ``srs_prediction`` file as one snapshot sample (``jaxchan.experiments.noniden_srs``)."""

  def __init__(self, splits: dict, *, path: str = "<arrays>", kind: str = "snapshot"):
    missing = [s for s in SPLITS if s not in splits]
    if missing:
      raise ValueError(f"ArrayDataset needs the splits {SPLITS}; {missing} missing.")
    names = {s: sorted(v) for s, v in splits.items()}
    if names["train"] != names["test"]:
      raise ValueError(f"the splits hold different arrays: {names}.")
    self._splits = {s: {k: np.asarray(v) for k, v in splits[s].items()} for s in SPLITS}
    self.arrays = tuple(names["train"])
    self.path, self.kind, self.config = path, kind, {}

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def close(self):
    pass

  def size(self, split: str) -> int:
    return self._splits[split][self.arrays[0]].shape[0]

  def shape(self, name: str) -> tuple:
    return tuple(self._splits["train"][name].shape[1:])

  def load(self, split: str) -> dict:
    return self._splits[split]

  def read(self, split: str, start: int, stop: int) -> dict:
    return {k: v[start:stop] for k, v in self._splits[split].items()}

  def batches(self, split: str, batch_size: int, *, seed: int = 0, epoch: int = 0, shuffle: bool = True,
              drop_remainder: bool = True, stop: int | None = None) -> Iterator[dict]:
    n = _check_batches(split, self.size(split), batch_size, stop, drop_remainder)
    rng = np.random.default_rng([seed, epoch, SPLITS.index(split)])
    yield from _memory_batches(self.load(split), n, batch_size, rng, shuffle, drop_remainder)


class BSAntennaSubset:
  """A read-only view of an ``srs_prediction`` :class:`Dataset` that keeps the first ``n_bs`` BS antennas.

  Arrays with a ``bs_antenna`` axis in their layout (:data:`LAYOUTS`: ``history``
  ``[n_occ, n_ue, n_bs, n_prb]``, ``target`` ``[n_ue, n_bs, n_prb]``) keep its first
  ``n_bs`` entries; the others (speed, indoor flag) pass through. It serves reduced-geometry runs (fewer BS antennas,
  narrower tokens) from the same file; ``load`` and ``batches`` behave as the
  wrapped dataset's.
  """

  def __init__(self, ds: Dataset, n_bs: int):
    full = ds.shape(ds.arrays[0])[LAYOUTS[ds.arrays[0]].index("bs_antenna") - 1]
    if not 1 <= n_bs <= full:
      raise ValueError(f"n_bs={n_bs} BS antennas requested from {ds.path}, which has {full}; choose 1..{full}.")
    self.ds, self.n_bs = ds, int(n_bs)
    self.path, self.kind, self.arrays, self.config = ds.path, ds.kind, ds.arrays, ds.config

  def _cut(self, arrays: dict) -> dict:
    out = {}
    for k, v in arrays.items():
      layout = LAYOUTS.get(k, [])
      if "bs_antenna" in layout:     # the axis named in the file layout (sample axis included)
        v = np.take(v, np.arange(self.n_bs), axis=layout.index("bs_antenna"))
      out[k] = v
    return out

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.ds.close()

  def close(self):
    self.ds.close()

  def size(self, split: str) -> int:
    return self.ds.size(split)

  def shape(self, name: str) -> tuple:
    s = list(self.ds.shape(name))
    layout = LAYOUTS.get(name, [])
    if "bs_antenna" in layout:
      s[layout.index("bs_antenna") - 1] = self.n_bs    # per-sample shape: no sample axis
    return tuple(s)

  def load(self, split: str) -> dict:
    return self._cut(self.ds.load(split))

  def read(self, split: str, start: int, stop: int) -> dict:
    return self._cut(self.ds.read(split, start, stop))

  def batches(self, split: str, batch_size: int, **kwargs) -> Iterator[dict]:
    for b in self.ds.batches(split, batch_size, **kwargs):
      yield self._cut(b)
