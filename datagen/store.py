"""Crash-safe, resumable, shardable dataset writing.

Generation is split into batches; batch ``b`` of split ``s`` is seeded from
``(seed, s, b)`` alone, so its content does not depend on which process makes it
or when. The HDF5 file is built in ``<out>.parts/data.h5``: created once (all
metadata written, every chunk allocated), then each finished batch's bytes go to
its chunk and a ``.done`` marker is left; a rerun of the same command skips
marked batches (resume). When all are there the file is flushed and renamed
into place, so

* an interrupted run never leaves a half-written dataset at ``<out>``;
* resumed, sharded-then-merged and uninterrupted runs give bit-identical files;
* peak memory is one batch, whatever the dataset size;
* the data crosses the disk once: the file is created with every chunk
  allocated at a fixed offset and each batch is written straight into its chunk.

A shard (``--shard=i/n``) builds the batches ``b = i, i + n, ...`` into its own
file; :mod:`datagen.merge` interleaves shards back into the full dataset.
"""

from __future__ import annotations

import json
import os
import shutil

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


def _marker(parts, split, b):
  return os.path.join(parts, f"{split}-{b:07d}.done")


# ---------------------------------------------------------------------------
# The file: created once with every chunk allocated at a fixed offset, then
# filled by writing each batch's bytes straight to its chunk. Its metadata never
# changes after creation, so a killed writer cannot corrupt it, rewriting a batch
# is idempotent, and the data crosses the disk once.


def _create(path: str, cfg: dict, spec: dict, counts: dict, *, generator: str, shard=None, batch_ids=None,
            normalization: str | None = None):
  """Create ``path`` atomically with all datasets allocated. ``spec[name] = (per-sample shape, dtype)``."""
  import h5py

  names = schema.KINDS[cfg["kind"]]
  tmp = path + ".tmp"
  if os.path.exists(tmp):
    os.unlink(tmp)
  with h5py.File(tmp, "w", libver="latest", track_order=False) as f:
    f.attrs["schema_version"] = schema.SCHEMA_VERSION
    f.attrs["kind"] = cfg["kind"]
    f.attrs["preset"] = cfg["preset"]
    f.attrs["generator"] = generator
    f.attrs["seed"] = cfg["seed"]
    f.attrs["batch_size"] = cfg["batch_size"]
    f.attrs["config_json"] = json.dumps(cfg, sort_keys=True)
    f.attrs["normalization"] = normalization or schema.NORMALIZATION
    f.attrs["layout_json"] = json.dumps({k: schema.LAYOUTS[k] for k in names})
    if shard is not None:
      f.attrs["shard"] = f"{shard[0]}/{shard[1]}"
    for split in schema.SPLITS:
      g = f.create_group(split, track_order=False)
      if shard is not None:
        g.create_dataset("batch_index", data=np.asarray(batch_ids[split], np.int64), track_times=False)
      rows = _rows(cfg, counts[split])
      for k in names:
        shape, dtype = spec[k]
        if counts[split] == 0:  # a shard can own no batch of a split: an empty, unchunked array
          g.create_dataset(k, shape=(0,) + tuple(shape), dtype=dtype, track_times=False)
          continue
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
        # One HDF5 chunk per generation batch.
        g.create_dataset(k, shape=(counts[split],) + tuple(shape), dtype=dtype, chunks=(rows,) + tuple(shape),
                         track_times=False, dcpl=dcpl)
  os.replace(tmp, path)


def _rows(cfg, count):
  return min(cfg["batch_size"], max(count, 1))


def _chunk_offsets(path: str, names) -> dict:
  """``{(split, name): [byte offset of chunk 0, 1, ...]}`` of a file made by :func:`_create`."""
  import h5py

  out = {}
  with h5py.File(path, "r") as f:
    for split in schema.SPLITS:
      for k in names:
        dsid = f[split][k].id
        chunked = f[split][k].chunks is not None
        out[(split, k)] = [dsid.get_chunk_info(i).byte_offset for i in range(dsid.get_num_chunks())] if chunked else []
        out[(split, k, "dtype")] = f[split][k].dtype
  return out


def _write_batch(fd: int, offsets: dict, split: str, chunk: int, rows: int, arrays: dict, names) -> None:
  """Write one batch (``rows`` samples, the last may be short) into chunk ``chunk`` of ``split``."""
  for k in names:
    a = np.ascontiguousarray(arrays[k], dtype=offsets[(split, k, "dtype")])
    if a.shape[0] < rows:  # the last chunk is stored whole; its padding lies outside the dataset's extent
      a = np.concatenate([a, np.zeros((rows - a.shape[0],) + a.shape[1:], a.dtype)])
    os.pwrite(fd, a.tobytes(), offsets[(split, k)][chunk])


def _spec(arrays, names):
  return {k: (arrays[k].shape[1:], arrays[k].dtype) for k in names}


def _check_finite(arrays, where):
  for k, v in arrays.items():
    if np.iscomplexobj(v) and not np.all(np.isfinite(v.view(v.real.dtype))):
      raise RuntimeError(f"generator produced NaN/Inf in {where} ({k}); not writing it.")


def build(out: str, cfg: dict, make_batch, *, shard=(0, 1), generator: str, progress: bool = True) -> str:
  """Generate (or resume) the dataset ``out``. ``make_batch(cfg, seed, n) -> dict of arrays``.

  Work lives in ``out.parts/``: the allocated file ``data.h5`` and one ``.done``
  marker per finished batch. A rerun skips marked batches; at the end the file is
  flushed and renamed to ``out``.
  """
  from jaxchan import progress

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
  names = schema.KINDS[cfg["kind"]]
  plan = shard_plan(cfg, shard)
  counts = {s: sum(n for (s2, _, n) in plan if s2 == s) for s in schema.SPLITS}
  batch_ids = {s: [b for (s2, b, _) in plan if s2 == s] for s in schema.SPLITS}
  chunk_of = {(s, b): batch_ids[s].index(b) for (s, b, _) in plan}
  data_path = os.path.join(parts, "data.h5")
  todo = [p for p in plan if not os.path.exists(_marker(parts, p[0], p[1]))]
  bar = progress.bar(total=sum(p[2] for p in plan), initial=sum(p[2] for p in plan) - sum(p[2] for p in todo),
             unit="samples", desc=f"datagen {cfg['preset']}", disable=not progress)
  first = None
  if not os.path.exists(data_path):
    # The first batch tells the array shapes; the file is created (atomically) from them.
    if plan:
      split, b, n = plan[0]
      first = (plan[0], make_batch(cfg, batch_seed(cfg["seed"], split, b), n))
      spec = _spec(first[1], names)
    else:  # a shard that owns no batch still needs the shapes: one throw-away sample
      spec = _spec(make_batch(cfg, batch_seed(cfg["seed"], "train", 0), 1), names)
    _create(data_path, cfg, spec, counts, generator=generator,
            shard=shard if shard[1] > 1 else None, batch_ids=batch_ids)
  offsets = _chunk_offsets(data_path, names)
  fd = os.open(data_path, os.O_WRONLY)
  try:
    for (split, b, n) in todo:
      if first is not None and first[0] == (split, b, n):
        arrays = first[1]
      else:
        arrays = make_batch(cfg, batch_seed(cfg["seed"], split, b), n)
      _check_finite(arrays, f"{split} batch {b}")
      _write_batch(fd, offsets, split, chunk_of[(split, b)], _rows(cfg, counts[split]), arrays, names)
      open(_marker(parts, split, b), "w").close()
      bar.update(n)
    os.fsync(fd)
  finally:
    os.close(fd)
  bar.close()
  os.replace(data_path, out)
  shutil.rmtree(parts)
  return "built"


def write_hdf5(out: str, cfg: dict, sources: dict, counts: dict, *, generator: str,
               normalization: str | None = None) -> None:
  """Stream ``sources[split]`` (iterables of ``(batch_id, {name: array})``, one batch per chunk) into ``out``.

  Same file layout as :func:`build`, written to ``out.partial`` and renamed; ``normalization`` describes the
  scaling in the file's attribute (default: :data:`jaxchan.data.NORMALIZATION`). On any error the partial file
  is removed.
  """
  names = schema.KINDS[cfg["kind"]]
  tmp = out + ".partial"
  iters = {s: iter(sources[s]) for s in schema.SPLITS}
  first = next(iters[schema.SPLITS[0]])
  _create(tmp, cfg, _spec(first[1], names), counts, generator=generator, normalization=normalization)
  offsets = _chunk_offsets(tmp, names)
  fd = os.open(tmp, os.O_WRONLY)
  ok = False
  try:
    for split in schema.SPLITS:
      rows = _rows(cfg, counts[split])
      batches = iters[split] if split != schema.SPLITS[0] else _chain(first, iters[split])
      pos = 0
      for chunk, (_, arrays) in enumerate(batches):
        m = arrays[names[0]].shape[0]
        if m > rows or (m < rows and pos + m != counts[split]):
          raise RuntimeError(f"{split}: batch of {m} samples at {pos} does not align with {rows}-sample chunks.")
        _write_batch(fd, offsets, split, chunk, rows, arrays, names)
        pos += m
      if pos != counts[split]:
        raise RuntimeError(f"{split}: wrote {pos} samples, expected {counts[split]}.")
    os.fsync(fd)
    ok = True
  finally:
    os.close(fd)
    if not ok:
      os.unlink(tmp)
  os.replace(tmp, out)


def _chain(first, rest):
  yield first
  yield from rest


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

    write_hdf5(out, cfg, {s: source(s) for s in schema.SPLITS}, counts, generator=str(handles[0].attrs["generator"]))
  finally:
    for h in handles:
      h.close()
