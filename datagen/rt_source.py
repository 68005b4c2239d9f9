"""Channel batches from Sionna RT's ray tracer: sparse, few-path channels like DeepMIMO O1's.

``generate(cfg, seed, n)`` returns ``{"h": [n, n_bs, n_freq]}`` complex64, unit power
per sample, in the layout of ``datagen.uma``'s ``simo_ofdm`` (so every experiment reads
it unchanged). A batch is a pure function of ``(cfg, seed, n)``: the user positions come
from a numpy generator seeded with ``seed`` and the path solver's own seed is fixed.

Users are single-antenna receivers on rows along the street of a built-in Sionna RT
scene (``cfg["ue_rows"]`` rows across it, positions along it uniform); the BS is a
``bs_rows x bs_cols`` half-wavelength planar array at ``bs_x, bs_y, bs_z`` looking
along the street (+x). A user that receives no path is dropped and replaced by a
fresh draw, never stored as zeros; :data:`DROPPED` counts them per process.

The ray tracer runs single-threaded (see :func:`_trace`): that is what makes builds
bit-reproducible; run shards in parallel processes for speed.

On a CPU, Dr.Jit compiles with LLVM and needs libLLVM >= 16 (older ones abort the
process inside the path solver). :func:`find_llvm` looks for one before Sionna RT is
imported and :func:`check_llvm` turns a missing one into a clear error.
"""

from __future__ import annotations

import glob
import os
import re
import time

import numpy as np

from datagen import sionna_source

DROPPED = {"users": 0}
_TIMER = {"rt_s": 0.0}
_SCENES: dict = {}
_LLVM_GLOBS = ("/usr/lib/x86_64-linux-gnu/libLLVM*.so*", "/usr/lib/aarch64-linux-gnu/libLLVM*.so*",
               "/usr/lib/llvm-*/lib/libLLVM*.so*", "/usr/lib64/libLLVM*.so*", "/usr/local/lib/libLLVM*.so*",
               "/opt/homebrew/opt/llvm/lib/libLLVM*.dylib", "/usr/local/opt/llvm/lib/libLLVM*.dylib")
MIN_LLVM = 16


def _llvm_major(path: str) -> int | None:
  m = re.search(r"libLLVM[-.]?(?:so\.)?(\d+)", os.path.basename(path))
  if m is None:
    m = re.search(r"llvm-(\d+)", path)
  return int(m.group(1)) if m else None


def find_llvm() -> str | None:
  """A libLLVM >= 16 for Dr.Jit: ``$DRJIT_LIBLLVM_PATH`` if set, else the newest in the usual places."""
  env = os.environ.get("DRJIT_LIBLLVM_PATH")
  if env:
    return env
  found = [(v, p) for g in _LLVM_GLOBS for p in glob.glob(g) if (v := _llvm_major(p)) and v >= MIN_LLVM]
  return max(found)[1] if found else None


def check_llvm() -> str:
  """Set ``DRJIT_LIBLLVM_PATH`` to a usable libLLVM (before Sionna RT is imported), or raise naming the fix."""
  path = find_llvm()
  if path is None:
    import ctypes.util
    if ctypes.util.find_library("cuda"):
      return ""   # an NVIDIA driver: Sionna RT picks Dr.Jit's CUDA backend, which needs no LLVM (untested here)
    raise RuntimeError(
        f"Sionna RT on a CPU needs libLLVM >= {MIN_LLVM} (Dr.Jit's LLVM backend aborts with older ones) and none "
        "was found. Install one (Debian/Ubuntu: `apt-get install libllvm19`; macOS: `brew install llvm`) or point "
        "DRJIT_LIBLLVM_PATH at it, e.g. DRJIT_LIBLLVM_PATH=/usr/lib/x86_64-linux-gnu/libLLVM.so.19.1.")
  os.environ["DRJIT_LIBLLVM_PATH"] = path
  return path


def _rt():
  check_llvm()
  try:
    import sionna.rt as rt
  except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("datagen.rt needs Sionna RT: pip install -e '.[datagen]' (installs sionna-rt).") from e
  return rt


def scene_names() -> list[str]:
  """The built-in Sionna RT scenes (``sionna.rt.scene.<name>``)."""
  rt = _rt()
  return sorted(n for n in dir(rt.scene) if not n.startswith("_") and isinstance(getattr(rt.scene, n), str)
                and str(getattr(rt.scene, n)).endswith(".xml"))


def scene_bbox(name: str):
  """``(min [3], max [3])`` of a built-in scene, metres."""
  rt = _rt()
  bb = rt.load_scene(getattr(rt.scene, name)).mi_scene.bbox()
  return np.array(list(bb.min), float), np.array(list(bb.max), float)


def validate(cfg: dict) -> None:
  """Every error a ray-traced preset can have, before any ray is traced."""
  names = scene_names()
  if cfg["scene"] not in names:
    raise ValueError(f"scene={cfg['scene']!r} is not a built-in Sionna RT scene; choose one of: {', '.join(names)}.")
  lo, hi = scene_bbox(cfg["scene"])
  bs = np.array([cfg["bs_x"], cfg["bs_y"], cfg["bs_z"]], float)
  if not (np.all(np.isfinite(bs)) and np.all(bs >= lo) and np.all(bs <= hi)):
    fmt = lambda v: "(" + ", ".join(f"{x:.1f}" for x in v) + ")"  # noqa: E731
    raise ValueError(f"BS position (bs_x, bs_y, bs_z) = {fmt(bs)} lies outside the scene {cfg['scene']!r}, whose "
                     f"bounding box is {fmt(lo)} .. {fmt(hi)} m; set bs_x, bs_y, bs_z inside it.")
  for a, b in (("ue_x_min", "ue_x_max"), ("ue_y_min", "ue_y_max")):
    if not cfg[a] <= cfg[b]:
      raise ValueError(f"{a}={cfg[a]} must be <= {b}={cfg[b]}.")
  if not (cfg["ue_rows"] >= 1 and cfg["max_depth"] >= 0 and cfg["samples_per_src"] >= 1):
    raise ValueError(f"ue_rows={cfg['ue_rows']}, max_depth={cfg['max_depth']}, samples_per_src="
                     f"{cfg['samples_per_src']}: need ue_rows >= 1, max_depth >= 0, samples_per_src >= 1.")


def _scene(cfg: dict):
  """The scene with its BS, cached per process (Sionna RT scenes are expensive to reload)."""
  rt = _rt()
  key = (cfg["scene"], cfg["bs_x"], cfg["bs_y"], cfg["bs_z"], cfg["bs_rows"], cfg["bs_cols"],
         cfg["carrier_frequency"], cfg["num_subcarriers"], cfg["subcarrier_spacing"])
  if key not in _SCENES:
    scene = rt.load_scene(getattr(rt.scene, cfg["scene"]))
    n_f, spacing = cfg["num_subcarriers"], cfg["subcarrier_spacing"]
    # As datagen.uma: the first subcarrier at carrier_frequency, the grid centred on fc.
    scene.frequency = cfg["carrier_frequency"] + (n_f // 2) * spacing
    scene.tx_array = rt.PlanarArray(num_rows=cfg["bs_rows"], num_cols=cfg["bs_cols"], vertical_spacing=0.5,
                                    horizontal_spacing=0.5, pattern="iso", polarization="V")
    scene.rx_array = rt.PlanarArray(num_rows=1, num_cols=1, pattern="iso", polarization="V")
    scene.add(rt.Transmitter("bs", position=[cfg["bs_x"], cfg["bs_y"], cfg["bs_z"]]))
    _SCENES.clear()
    _SCENES[key] = scene
  return _SCENES[key]


def positions(cfg: dict, rng: np.random.Generator, n: int) -> np.ndarray:
  """``[n, 3]`` user positions: uniform along the street (x), on one of ``ue_rows`` rows across it (y)."""
  x = rng.uniform(cfg["ue_x_min"], cfg["ue_x_max"], n)
  rows = np.linspace(cfg["ue_y_min"], cfg["ue_y_max"], cfg["ue_rows"])
  y = rows[rng.integers(0, cfg["ue_rows"], n)]
  return np.stack([x, y, np.full(n, cfg["ue_height"])], -1)


def _trace(cfg: dict, pos: np.ndarray, *, threads: int = 1) -> np.ndarray:
  """``[len(pos), n_bs, n_freq]`` frequency responses of users at ``pos`` (zeros where no path arrives).

  ``threads``: Dr.Jit CPU threads; keep 1 (see below) unless measuring what more would change.
  """
  rt = _rt()
  import drjit
  # Dr.Jit's CPU threads sum path contributions in a varying order (two runs of one batch differ by ~2e-7
  # relative); one thread makes a batch a pure function of (cfg, seed, n), so resumed and sharded builds are
  # bit-identical. Parallelism comes from shards (--shard=i/n, one process each).
  drjit.set_thread_count(threads)
  scene = _scene(cfg)
  names = [f"ue{i}" for i in range(len(pos))]
  for name, p in zip(names, pos):
    scene.add(rt.Receiver(name, position=[float(v) for v in p]))
  try:
    paths = rt.PathSolver()(scene, max_depth=int(cfg["max_depth"]), samples_per_src=int(cfg["samples_per_src"]),
                            max_num_paths_per_src=int(cfg["samples_per_src"]), seed=1)
    n_f, spacing = cfg["num_subcarriers"], cfg["subcarrier_spacing"]
    offsets = (np.arange(n_f) - n_f // 2) * spacing
    h = paths.cfr(frequencies=offsets, normalize_delays=True, out_type="numpy")  # [rx, 1, tx, n_bs, time, f]
  finally:
    for name in names:
      scene.remove(name)
  return np.asarray(h).reshape(len(pos), -1, n_f)


def generate(cfg: dict, seed: int, n: int) -> dict:
  """``n`` ray-traced channels of the preset ``cfg``: ``{"h": [n, n_bs, n_freq]}``, unit power per sample."""
  t0 = time.perf_counter()
  rng = np.random.default_rng(int(seed))
  kept = []
  for _ in range(20):
    need = n - sum(len(k) for k in kept)
    if need == 0:
      break
    # A few spare users per call, so a batch with some unreachable positions rarely needs a second call.
    h = _trace(cfg, positions(cfg, rng, need + max(2, need // 8)))
    ok = np.einsum("uij,uij->u", h.real, h.real) + np.einsum("uij,uij->u", h.imag, h.imag) > 0
    DROPPED["users"] += int(np.sum(~ok))
    kept.append(h[ok][:need])
  else:
    raise ValueError(f"fewer than {n} of the drawn user positions receive any path from the BS at "
                     f"({cfg['bs_x']}, {cfg['bs_y']}, {cfg['bs_z']}) in scene {cfg['scene']!r}; move the BS or the "
                     "user area (ue_x_min..ue_x_max, ue_y_min..ue_y_max).")
  (h,) = sionna_source.normalize(np.concatenate(kept)[:n])
  _TIMER["rt_s"] += time.perf_counter() - t0
  return dict(h=h)


def version() -> str:
  from importlib import metadata
  try:
    return f"sionna-rt {metadata.version('sionna-rt')}, mitsuba {metadata.version('mitsuba')}"
  except metadata.PackageNotFoundError:  # pragma: no cover
    return "sionna-rt (not installed)"
