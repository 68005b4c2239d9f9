"""Channel batches from Sionna's 3GPP TR 38.901 models (the only Sionna-dependent module).

``generate(cfg, seed, n)`` returns numpy arrays in the layout of
:mod:`jaxchan.data`, already unit-power normalized per sample. A batch is a pure
function of ``(cfg, seed, n)``: Sionna's global seed and our own numpy
generator are both set from ``seed``.
"""

from __future__ import annotations

import time

import numpy as np

_TIMER = {"sionna_s": 0.0}


def _sionna_package_without_rt() -> None:
  """Register the ``sionna`` package without running its ``__init__``.

  sionna-no-rt and sionna-rt both ship ``sionna/__init__.py`` and whichever pip installed last wins; sionna-rt's
  imports ``sionna.rt``, which starts Dr.Jit and fails where no libLLVM >= 16 exists. The 38.901 models need
  ``sionna.phy`` only, so the package is entered directly and datagen.uma works with or without a usable LLVM.
  """
  import importlib.util
  import sys
  import types
  if "sionna" in sys.modules:
    return
  spec = importlib.util.find_spec("sionna")
  if spec is None or spec.submodule_search_locations is None:
    return  # not installed: the import below raises with the install hint
  pkg = types.ModuleType("sionna")
  pkg.__path__ = list(spec.submodule_search_locations)
  pkg.__spec__ = spec
  sys.modules["sionna"] = pkg


def _imports():
  _sionna_package_without_rt()
  try:
    import torch
    import sionna.phy as sp
    from sionna.phy.channel import cir_to_ofdm_channel, gen_single_sector_topology, subcarrier_frequencies
    from sionna.phy.channel.tr38901 import UMa, UMi, PanelArray
  except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("datagen needs Sionna: pip install -e '.[datagen]' (installs torch==2.13.0 CPU and "
                      "sionna-no-rt).") from e
  return torch, sp, cir_to_ofdm_channel, gen_single_sector_topology, subcarrier_frequencies, UMa, UMi, PanelArray


def _panel(PanelArray, rows, cols, pol, pattern, fc, v=None, h=None):
  return PanelArray(num_rows_per_panel=rows, num_cols_per_panel=cols, polarization=pol,
                    polarization_type="cross" if pol == "dual" else "V", antenna_pattern=pattern,
                    carrier_frequency=fc, element_vertical_spacing=v, element_horizontal_spacing=h)


def normalize(*arrays):
  """Scale each sample (axis 0) of the arrays by one factor: mean |h|^2 over all of them = 1.

  Returns complex64 copies (C-contiguous); the power is a dot product of the
  float views, which avoids complex temporaries.
  """
  out = [np.ascontiguousarray(a, dtype=np.complex64) for a in arrays]
  n = out[0].shape[0]
  p = sum(np.einsum("ij,ij->i", v, v) for v in (a.view(np.float32).reshape(n, -1) for a in out))
  count = sum(int(np.prod(a.shape[1:])) for a in out)
  scale = (1.0 / np.sqrt(p / count)).astype(np.float32)
  for a in out:
    a *= scale.reshape((-1,) + (1,) * (a.ndim - 1))
  return tuple(out)


def generate(cfg: dict, seed: int, n: int) -> dict:
  """``n`` samples of the preset ``cfg``, as numpy arrays (see :mod:`jaxchan.data`)."""
  torch, sp, cir_to_ofdm, topology, sc_freqs, UMa, UMi, PanelArray = _imports()
  t0 = time.perf_counter()
  sp.config.seed = int(seed)
  rng = np.random.default_rng(int(seed))
  perception = cfg["kind"] == "srs_prediction"
  if perception:
    fc = cfg["carrier_frequency"]
    n_f, spacing = cfg["num_prb"], cfg["prb_bandwidth"]
    direction = "downlink"  # rx = UT: [B, 1, n_ue, 1, n_bs, time, freq]
  else:
    # First subcarrier at carrier_frequency: Sionna's grid is centred on fc.
    n_f, spacing = cfg["num_subcarriers"], cfg["subcarrier_spacing"]
    fc = cfg["carrier_frequency"] + (n_f // 2) * spacing
    direction = "uplink"    # rx = BS: [B, 1, n_bs, 1, 1, time, freq]
  bs = _panel(PanelArray, cfg["bs_rows"], cfg["bs_cols"], cfg["bs_polarization"], cfg["bs_pattern"], fc,
              cfg["bs_vertical_spacing"], cfg["bs_horizontal_spacing"])
  if perception:
    ut = _panel(PanelArray, cfg["ut_rows"], cfg["ut_cols"], cfg["ut_polarization"], cfg["ut_pattern"], fc)
  else:
    ut = _panel(PanelArray, 1, 1, "single", "omni", fc)
  model = UMa if cfg["scenario"] == "uma" else UMi
  channel = model(carrier_frequency=fc, o2i_model=cfg["o2i_model"], ut_array=ut, bs_array=bs,
                  direction=direction, enable_pathloss=False, enable_shadow_fading=False)
  ut_loc, bs_loc, ut_or, bs_or, _, in_state = topology(
      n, 1, cfg["scenario"], isd=cfg["isd"], bs_height=cfg["bs_height"], min_ut_height=cfg["ut_height"],
      max_ut_height=cfg["ut_height"], indoor_probability=cfg["indoor_probability"],
      min_ut_velocity=0.0, max_ut_velocity=0.0)
  indoor = in_state.cpu().numpy().reshape(n).astype(bool)
  if perception:
    speed = np.where(indoor, cfg["speed_indoor_kmh"], cfg["speed_outdoor_kmh"]) / 3.6
  else:
    speed = np.zeros(n)
  phi = rng.uniform(0.0, 2 * np.pi, n)
  vel = np.stack([speed * np.cos(phi), speed * np.sin(phi), np.zeros(n)], -1).reshape(n, 1, 3)
  channel.set_topology(ut_loc, bs_loc, ut_or, bs_or, torch.as_tensor(vel, dtype=ut_loc.dtype), in_state)

  if perception:
    # Snapshots every target_delay; SRS occasions every srs_period, target
    # target_delay after the last occasion.
    step = cfg["target_delay"]
    per = int(round(cfg["srs_period"] / step))
    if abs(per * step - cfg["srs_period"]) > 1e-9:
      raise ValueError(f"srs_period={cfg['srs_period']} must be a multiple of target_delay={cfg['target_delay']}.")
    num_t = (cfg["num_occasions"] - 1) * per + 2
    a, tau = channel(num_time_samples=num_t, sampling_frequency=1.0 / step)
  else:
    a, tau = channel(num_time_samples=1, sampling_frequency=1.0)
  h = cir_to_ofdm(sc_freqs(n_f, spacing), a, tau, normalize=False).cpu().numpy()
  _TIMER["sionna_s"] += time.perf_counter() - t0

  if perception:
    h = h[:, 0, :, 0, :, :, :]                     # [B, n_ue, n_bs, time, freq]
    last = (cfg["num_occasions"] - 1) * per
    history = np.moveaxis(h[:, :, :, 0:last + 1:per, :], 3, 1)  # [B, occ, n_ue, n_bs, freq] (a view)
    target = h[:, :, :, last + 1, :]
    history, target = normalize(history, target)
    return dict(history=history, target=target, speed_mps=speed.astype(np.float32), indoor=indoor)
  h = h[:, 0, :, 0, 0, 0, :]                        # [B, n_bs, freq]
  (h,) = normalize(h)
  return dict(h=h)


def sionna_version() -> str:
  # From the installed distributions, not sionna.__version__: sionna-no-rt and sionna-rt both ship
  # sionna/__init__.py, and whichever pip installed last wins (sionna-rt's has no __version__).
  from importlib import metadata
  for dist in ("sionna-no-rt", "sionna"):
    try:
      return f"sionna {metadata.version(dist)}"
    except metadata.PackageNotFoundError:
      continue
  return "sionna (not installed)"  # pragma: no cover
