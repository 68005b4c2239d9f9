"""The mobility sweep: datasets per speed, the predictor bound and the classical precoders."""

import json

import pytest

import configs
from jaxchan.experiments import mobility


def _config(arg="smoke"):
  return configs.get(f"mobility:{arg}")


@pytest.mark.slow
def test_mobility_smoke_orders_speeds_and_methods(tmp_path):
  c = _config()
  c.data_dir = str(tmp_path / "data")
  c.progress = False
  res = mobility.run(c, str(tmp_path / "wd"))
  slow, fast = res["rows"]
  # The 0.3 km/h preset is the low-uncertainty regime (NMSE <= 0.6 by construction of the preset), while
  # 30 km/h leaves nothing to predict from (>= 0.98); see datagen/presets.py for the measured values.
  assert slow["predictor_nmse"] <= 0.6 and fast["predictor_nmse"] >= 0.98
  for r in res["rows"]:
    se = r["se"]
    # Perfect CSI is the SVD optimum for the equal-power SE: no precoder beats it on any channel.
    assert all(se["perfect_csi"] >= se[m] for m in mobility.METHODS)
  assert (tmp_path / "wd" / "fig_mobility.png").stat().st_size > 1000
  assert "predictor NMSE" in (tmp_path / "wd" / "mobility.md").read_text()
  assert json.load(open(tmp_path / "wd" / "results.json"))["rows"][0]["speed_kmh"] == 0.3


@pytest.mark.parametrize("field, value, match", [
    ("speeds", (), "config.speeds is empty"),
    ("speeds", (1.0, -3.0), "every UT speed must be a finite number of km/h >= 0"),
    ("speeds", (float("inf"),), "every UT speed must be a finite number"),
    ("snr_db_range", (float("nan"), 10.0), "config.snr_db_range"),
    ("num_test", 0, "config.num_test=0 must be a positive integer"),
])
def test_mobility_bad_config_stops_before_any_dataset(tmp_path, field, value, match):
  c = _config()
  c.data_dir = str(tmp_path / "data")
  c[field] = value
  with pytest.raises(ValueError, match=match):
    mobility.run(c, str(tmp_path / "wd"))
  assert not (tmp_path / "data").exists()
