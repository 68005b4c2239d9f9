"""Crash-safe, resumable, shardable dataset writing.

Generation is split into batches; batch ``b`` of split ``s`` is seeded from
``(seed, s, b)`` alone, so its content does not depend on which process makes it
or when. Each finished batch is saved atomically as a part file in
``<out>.parts/``; a rerun of the same command skips parts that exist (resume).
When every part is there, the HDF5 file is assembled in a fixed order into a
temporary file and renamed into place, so

* an interrupted run never leaves a half-written dataset at ``<out>``;
* resumed, sharded-then-merged and uninterrupted runs give bit-identical files;
* peak memory is one batch, whatever the dataset size.

A shard (``--shard=i/n``) builds the batches ``b = i, i + n, ...`` into its own
file; :mod:`datagen.merge` interleaves shards back into the full dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np

from jaxchan import data as schema

def batch_seed(seed: int, split: str, b: int) -> int:
  return int(np.random.SeedSequence([int(seed), schema.SPLITS.index(split), int(b)]).generate_state(1)[0])


def batch_plan(cfg: dict) -> list[tuple[str, int, int]]:
  """All batches as ``(split, index, num_samples)``."""
  out = []
  for split in schema.SPLITS:
    total, bs = cfg[f"num_{split}"], cfg["batch_size"]
    out += [(split, b, min(bs, total - b * bs)) for b in range((total + bs - 1) // bs)]
  return out


def parse_shard(text: str | None) -> tuple[int, int]:
  if not text:
    return 0, 1
  try:
    i, n = (int(x) for x in text.split("/"))
  except ValueError:
    raise ValueError(f"--shard={text!r} must look like i/n, e.g. 0/4.") from None
  if not (n >= 1 and 0 <= i < n):
    raise ValueError(f"--shard={text!r}: need n >= 1 and 0 <= i < n.")
  return i, n


def shard_plan(cfg, shard):
  i, n = shard
  return [p for p in batch_plan(cfg) if p[1] % n == i]


def _part_path(parts, split, b):
  return os.path.join(parts, f"{split}-{b:07d}")


def _save_part(path, arrays):
  """Save a batch as raw .npy files in a folder that appears atomically (rename of a temp folder)."""
  tmp = tempfile.mkdtemp(dir=os.path.dirname(path), prefix=".tmp-")
  try:
    for k, v in arrays.items():
      np.save(os.path.join(tmp, k + ".npy"), v)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      shutil.rmtree(tmp)


def _load_part(path, names):
  return {k: np.load(os.path.join(path, k + ".npy")) for k in names}


def build(out: str, cfg: dict, make_batch, *, shard=(0, 1), generator: str, progress: bool = True) -> str:
  """Generate (or resume) the dataset ``out``. ``make_batch(cfg, seed, n) -> dict of arrays``."""
  from tqdm import tqdm

  if os.path.exists(out):
    return "exists"
  parts = out + ".parts"
  os.makedirs(parts, exist_ok=True)
  stamp = os.path.join(parts, "config.json")
  record = json.dumps(dict(cfg=cfg, shard=list(shard)), sort_keys=True)
  if os.path.exists(stamp):
    if open(stamp).read() != record:
      raise ValueError(f"{parts} holds parts of a build with a different configuration or shard; delete "
                       "that folder, or rerun with the flags that started it.")
  else:
    with open(stamp + ".tmp", "w") as f:
      f.write(record)
    os.replace(stamp + ".tmp", stamp)
  plan = shard_plan(cfg, shard)
  todo = [p for p in plan if not os.path.exists(_part_path(parts, p[0], p[1]))]
  bar = tqdm(total=sum(p[2] for p in plan), initial=sum(p[2] for p in plan) - sum(p[2] for p in todo),
             unit="samples", desc=f"datagen {cfg['preset']}", disable=not progress)
  for split, b, n in todo:
    arrays = make_batch(cfg, batch_seed(cfg["seed"], split, b), n)
    for k, v in arrays.items():
      if np.iscomplexobj(v) and not np.all(np.isfinite(v.view(np.float32))):
        raise RuntimeError(f"generator produced NaN/Inf in {split} batch {b} ({k}); not writing it.")
    _save_part(_part_path(parts, split, b), arrays)
    bar.update(n)
  bar.close()
  def source(split):
    for (s, b, _) in plan:
      if s == split:
        yield b, _load_part(_part_path(parts, s, b), schema.KINDS[cfg["kind"]])

  sources = {s: source(s) for s in schema.SPLITS}
  counts = {s: sum(n for (s2, _, n) in plan if s2 == s) for s in schema.SPLITS}
  batch_ids = {s: [b for (s2, b, _) in plan if s2 == s] for s in schema.SPLITS}
  write_hdf5(out, cfg, sources, counts, generator=generator,
             shard=shard if shard[1] > 1 else None, batch_ids=batch_ids)
  shutil.rmtree(parts)
  return "built"


def write_hdf5(out: str, cfg: dict, sources: dict, counts: dict, *, generator: str, shard=None,
               batch_ids=None) -> None:
  """Stream ``sources[split]`` (iterables of ``(batch_id, {name: array})``) into ``out`` atomically."""
  import h5py

  names = schema.KINDS[cfg["kind"]]
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  tmp = out + ".tmp"
  if os.path.exists(tmp):
    os.unlink(tmp)
  try:
    with h5py.File(tmp, "w", libver="latest", track_order=False) as f:
      f.attrs["schema_version"] = schema.SCHEMA_VERSION
      f.attrs["kind"] = cfg["kind"]
      f.attrs["preset"] = cfg["preset"]
      f.attrs["generator"] = generator
      f.attrs["seed"] = cfg["seed"]
      f.attrs["batch_size"] = cfg["batch_size"]
      f.attrs["config_json"] = json.dumps(cfg, sort_keys=True)
      f.attrs["normalization"] = schema.NORMALIZATION
      f.attrs["layout_json"] = json.dumps({k: schema.LAYOUTS[k] for k in names})
      if shard is not None:
        f.attrs["shard"] = f"{shard[0]}/{shard[1]}"
      for split in schema.SPLITS:
        g = f.create_group(split, track_order=False)
        if batch_ids is not None and shard is not None:
          g.create_dataset("batch_index", data=np.asarray(batch_ids[split], np.int64), track_times=False)
        # One HDF5 chunk per generation batch, written with write_direct_chunk:
        # no selection or type conversion (complex64 matches HDF5's (r, i)
        # compound byte for byte), so assembly costs little more than a copy.
        rows = min(cfg["batch_size"], max(counts[split], 1))
        dsets, pos = {}, 0
        for _, arrays in sources[split]:
          if not dsets:
            for k in names:
              a = arrays[k]
              dsets[k] = g.create_dataset(k, shape=(counts[split],) + a.shape[1:], dtype=a.dtype,
                                          chunks=(rows,) + a.shape[1:], track_times=False)
          m = arrays[names[0]].shape[0]
          if pos % rows or m > rows or (m < rows and pos + m != counts[split]):
            raise RuntimeError(f"{split}: batch of {m} samples at {pos} does not align with {rows}-sample chunks.")
          for k in names:
            a = np.ascontiguousarray(arrays[k], dtype=dsets[k].dtype)
            if m < rows:  # the last chunk is stored whole; pad it (the padding is outside the dataset's extent)
              a = np.concatenate([a, np.zeros((rows - m,) + a.shape[1:], a.dtype)])
            dsets[k].id.write_direct_chunk((pos,) + (0,) * (a.ndim - 1), a.tobytes())
          pos += m
        if pos != counts[split]:
          raise RuntimeError(f"{split}: wrote {pos} samples, expected {counts[split]}.")
    os.replace(tmp, out)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)


def merge(out: str, shard_files: list[str], *, progress: bool = True) -> None:
  """Interleave shard files (each from ``--shard=i/n``) into the full dataset ``out``."""
  import h5py

  files = sorted(set(shard_files))
  if not files:
    raise ValueError("no shard files given.")
  handles = [h5py.File(p, "r") for p in files]
  try:
    cfgs = {h.attrs["config_json"] for h in handles}
    if len(cfgs) != 1:
      raise ValueError("shards were generated with different configurations; they cannot be merged: "
                       + ", ".join(files))
    cfg = json.loads(cfgs.pop())
    shards = {}
    for p, h in zip(files, handles):
      if "shard" not in h.attrs:
        raise ValueError(f"{p} is not a shard (no 'shard' attribute); it is already a full dataset.")
      i, n = parse_shard(h.attrs["shard"])
      if i in shards:
        raise ValueError(f"shard {i}/{n} given twice: {shards[i][0]} and {p}.")
      shards[i] = (p, h, n)
    ns = {v[2] for v in shards.values()}
    n = ns.pop()
    if ns or sorted(shards) != list(range(n)):
      raise ValueError(f"need every shard 0..{n - 1} of the same n exactly once; got {sorted(shards)} "
                       f"from {files}.")
    plan = batch_plan(cfg)
    counts = {s: cfg[f"num_{s}"] for s in schema.SPLITS}
    names = schema.KINDS[cfg["kind"]]

    def source(split):
      offsets = {i: 0 for i in shards}
      for (s, b, m) in plan:
        if s != split:
          continue
        i = b % n
        h = shards[i][1]
        o = offsets[i]
        offsets[i] += m
        yield b, {k: h[split][k][o:o + m] for k in names}

    write_hdf5(out, cfg, {s: source(s) for s in schema.SPLITS}, counts,
               generator=str(handles[0].attrs["generator"]))
  finally:
    for h in handles:
      h.close()
