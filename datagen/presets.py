"""Dataset presets. Every field is recorded in the file's ``config_json`` attribute.

Defaults for the perception-distortion presets follow ``../shared/papers/NOTES.md``
(the paper's own Table I lost its numbers); the ``simo_ofdm`` preset follows the
non-identical diffusion paper's DeepMIMO set-up, with Sionna's UMa (or UMi)
model standing in for the ray-traced scenario that cannot be downloaded here.
"""

from __future__ import annotations

import copy

_PERCEPTION = dict(
    kind="srs_prediction",
    scenario="uma",              # 3GPP TR 38.901 UMa (Sionna)
    carrier_frequency=3.5e9,     # Hz
    o2i_model="low",
    isd=500.0, bs_height=25.0, ut_height=1.5,  # m
    indoor_probability=0.8,
    bs_rows=2, bs_cols=8, bs_polarization="dual", bs_pattern="38.901",  # 2 x 8 dual-pol cross = 32 elements
    bs_vertical_spacing=0.8, bs_horizontal_spacing=0.5,                 # wavelengths
    ut_rows=1, ut_cols=2, ut_polarization="dual", ut_pattern="omni",     # 1 x 2 dual-pol cross = 4 elements
    num_prb=52, prb_bandwidth=12 * 30e3,     # 30 kHz SCS, channel stored at each PRB's centre
    srs_period=0.040,            # s between SRS occasions
    num_occasions=4,             # history length (one per hop: 4 hops of 13 PRBs)
    target_delay=0.020,          # s after the last occasion
    # Low mobility: the paper's speeds were lost. 0.3 km/h makes it the low-uncertainty regime the paper
    # describes (minimal aging): the best per-age linear predictor from each PRB's latest SRS reaches NMSE
    # 0.56 over the -10..10 dB UL SNR range (|corr| of the target with the 20/60/100/140 ms old sounding
    # 0.997/0.970/0.918/0.843). At 3 / 10 km/h (a first guess) it was 0.93 / 0.98: no better than high
    # mobility. Measured on 256 Sionna samples; `jaxchan.srs.latest_predictor_nmse` recomputes it.
    speed_indoor_kmh=0.3, speed_outdoor_kmh=0.3,
)

PRESETS = {
    "low_mobility": dict(_PERCEPTION, description=(
        "Perception-distortion paper, low mobility: UMa 3.5 GHz, 32-element dual-pol BS panel, 4-element "
        "dual-pol UT, 52 PRBs at 30 kHz; last 4 SRS occasions (40 ms apart) and the target 20 ms after the last; "
        "UT speed 0.3 km/h indoor and outdoor: minimal aging (latest-SRS linear predictor NMSE 0.56); the "
        "paper's speed values were lost and this one was chosen to make its low-uncertainty regime true.")),
    "high_mobility": dict(_PERCEPTION, speed_indoor_kmh=30.0, speed_outdoor_kmh=60.0, description=(
        "As low_mobility with UT speed 30 km/h indoor, 60 km/h outdoor: severe aging (latest-SRS linear "
        "predictor NMSE 0.999).")),
    "simo_ofdm": dict(
        kind="snapshot",
        scenario="uma",          # or "umi"; stands in for DeepMIMO O1_3p5
        carrier_frequency=3.5e9,  # first subcarrier
        o2i_model="low",
        isd=500.0, bs_height=25.0, ut_height=1.5,
        indoor_probability=0.0,
        bs_rows=4, bs_cols=8, bs_polarization="single", bs_pattern="38.901",  # 8 x 4 = 32 antennas
        bs_vertical_spacing=0.5, bs_horizontal_spacing=0.5,
        num_subcarriers=64, subcarrier_spacing=300e3,
        description=("Non-identical diffusion paper's shapes: 32 BS antennas (8 x 4), one single-antenna UE, "
                     "64 subcarriers from 3.5 GHz at 300 kHz, one snapshot; UMa (or UMi) stands in for DeepMIMO.")),
    "street_canyon": dict(
        kind="snapshot",
        source="rt",             # Sionna RT (python -m datagen.rt), not the 38.901 stochastic model
        scene="simple_street_canyon",
        carrier_frequency=3.5e9,  # first subcarrier
        num_subcarriers=64, subcarrier_spacing=300e3,
        bs_rows=4, bs_cols=8,    # 32 antennas, half-wavelength planar array, isotropic elements, V-pol
        # Street deployment: at the west end of the canyon, 10 m up, on the north side, looking along it (+x).
        bs_x=-55.0, bs_y=7.0, bs_z=10.0,
        # Users 1.5 m high on rows along the street between the facades (y = -8.6 .. 9.6 m), as O1's rows.
        ue_x_min=-45.0, ue_x_max=60.0, ue_y_min=-7.0, ue_y_max=8.0, ue_rows=6, ue_height=1.5,
        # Reflections per path; rays shot from the BS per call. 10^5 rays give the same channel statistics as 10^6
        # here in 1/9 of the time (python -m examples.raytracing_checks).
        max_depth=3, samples_per_src=100_000,
        description=("Ray-traced stand-in for DeepMIMO O1 (python -m datagen.rt): Sionna RT's "
                     "simple_street_canyon scene, 32-antenna BS (4 x 8) 10 m up at one end of the street, "
                     "single-antenna users on 6 rows along it, 64 subcarriers from 3.5 GHz at 300 kHz, up to 3 "
                     "specular reflections and refraction. Like O1: a street scene, few strong paths (the top "
                     "singular value holds most of a channel's energy), users on rows. Unlike O1: one short "
                     "street (about 100 m of it) instead of O1's 2-street grid with 18 BSs, continuous positions "
                     "along each row instead of a 0.2 m grid, isotropic elements, no diffraction.")),
}

SIZES = {
    # preset kind -> size -> (num_train, num_test)
    "srs_prediction": {"tiny": (32, 16), "small": (4000, 1000), "full": (100_000, 5_000)},
    "snapshot": {"tiny": (64, 32), "small": (8000, 2000), "full": (43_440, 10_860)},
}
DEFAULT_BATCH = {"tiny": 16, "small": 64, "full": 64}
# Ray tracing shoots the same rays whatever the number of users, so it batches many users per call.
RT_BATCH = {"tiny": 32, "small": 500, "full": 500}


def get(preset: str, size: str = "small", **overrides) -> dict:
  """The full generation config of a preset, with CLI overrides applied."""
  if preset not in PRESETS:
    raise ValueError(f"--preset={preset!r} is unknown; choose one of: {', '.join(PRESETS)}.")
  cfg = copy.deepcopy(PRESETS[preset])
  if size not in SIZES[cfg["kind"]]:
    raise ValueError(f"--size={size!r} is unknown; choose tiny, small or full.")
  cfg["preset"] = preset
  cfg["size"] = size
  cfg["num_train"], cfg["num_test"] = SIZES[cfg["kind"]][size]
  cfg["batch_size"] = (RT_BATCH if cfg.get("source") == "rt" else DEFAULT_BATCH)[size]
  cfg["seed"] = 0
  for k, v in overrides.items():
    if v is None:
      continue
    if k not in cfg:
      raise ValueError(f"unknown dataset field {k!r} for preset {preset!r}; fields: {', '.join(sorted(cfg))}.")
    cfg[k] = type(cfg[k])(v) if not isinstance(cfg[k], bool) else bool(v)
  if cfg.get("source", "uma") == "uma" and cfg.get("scenario") not in ("uma", "umi"):
    raise ValueError(f"scenario={cfg.get('scenario')!r}; allowed: 'uma', 'umi'.")
  for k in ("num_train", "num_test", "batch_size"):
    if cfg[k] < 1:
      raise ValueError(f"{k}={cfg[k]} must be a positive integer.")
  return cfg


def source(preset: str) -> str:
  """``"uma"`` (3GPP 38.901, ``python -m datagen.uma``) or ``"rt"`` (ray tracing, ``python -m datagen.rt``)."""
  return PRESETS[preset].get("source", "uma") if preset in PRESETS else "uma"


def names(src: str) -> list[str]:
  return [n for n in PRESETS if source(n) == src]


def help_text(src: str | None = None) -> str:
  lines = ["Presets:"]
  for name, p in PRESETS.items():
    if src is not None and p.get("source", "uma") != src:
      continue
    sizes = ", ".join(f"{s}={a}/{b}" for s, (a, b) in SIZES[p["kind"]].items())
    lines.append(f"  {name}: {p['description']} Sizes (train/test): {sizes}.")
  return "\n".join(lines)
