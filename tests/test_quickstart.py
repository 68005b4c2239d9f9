"""examples/quickstart.ipynb: in step with its percent-format source, and runs top to bottom (CI executes it)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT


def test_notebook_matches_its_source():
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "make_notebook.py"), "--check"],
                        capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tmp_path):
  """Every code cell of the committed notebook, in order, in a fresh CPU process (as a Colab kernel would)."""
  nb = json.load(open(os.path.join(ROOT, "examples", "quickstart.ipynb")))
  code = "\n\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
  assert code.count("plt.show()") == 3
  script = tmp_path / "quickstart_cells.py"
  script.write_text(code)
  env = dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg", TMPDIR=str(tmp_path))
  proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                        timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = proc.stdout
  # The exact-denoiser section's numbers obey what the math says: an exact posterior sample's error is twice the
  # MMSE (3.01 dB above the exact posterior mean), and the mean of 8 samples lies between. The notebook's 20
  # water-filling steps and 256 channels gave 2.6 dB when this test was written; 1 dB
  # of margin covers that discretization and the Monte Carlo error of the mean over 256 channels.
  nmse = {line.split(":")[0].strip(): float(line.split("NMSE")[1].split("dB")[0])
          for line in out.splitlines() if "NMSE" in line and "dB" in line and ":" in line and "pattern" not in line}
  assert abs(nmse["one sample"] - (nmse["exact posterior mean"] + 3.01)) < 1.0, nmse
  assert nmse["exact posterior mean"] <= nmse["mean of 8 samples"] <= nmse["one sample"], nmse
  assert nmse["exact posterior mean"] < nmse["start g0"], nmse
  assert "exported {'h': (32, 8, 16)" in out
  # The export of section 4's model (trained on the user's own array), checked as a user relies on it.
  from jaxchan import data, export
  (workdir,) = tmp_path.glob("jaxchan_quickstart_*")          # the notebook's tempfile.mkdtemp under TMPDIR
  model_dir, dataset = str(workdir / "run" / "models" / "nonid"), str(workdir / "my_channels.h5")
  est = str(tmp_path / "est.mat")
  export.export(model_dir, dataset, est, num=10, pattern="pilot", num_steps=3, seed=1)
  arrays, settings = export.read(est)
  with data.Dataset(dataset) as ds:
    truth = ds.load("test")["h"][:10]
  np.testing.assert_array_equal(arrays["h"], truth)
  assert {k: arrays[k].shape for k in ("h", "h_bar", "mask", "h_hat")} == {k: (10, 8, 16) for k in
                                                                             ("h", "h_bar", "mask", "h_hat")}
  assert np.all(np.isfinite(arrays["h_hat"]))
  # The observation is h_bar = m h + unit noise (eq. 13): where the pilot pattern keeps nothing, h_bar is pure
  # noise of unit variance; elsewhere its mean matches m h to within that noise.
  kept = arrays["mask"] > 0
  assert 0 < kept.mean() < 1
  resid = arrays["h_bar"] - arrays["mask"] * arrays["h"]
  assert abs(np.mean(np.abs(resid) ** 2) - 1.0) < 0.15     # 1,280 unit-variance draws: std of the mean 0.03
  assert settings["experiment"] == "noniden" and settings["pattern"] == "pilot" and settings["samples"] == [0, 10]
  # Bad settings stop before any estimate, naming the flag; nothing is written.
  with pytest.raises(ValueError, match="--pattern='rain'"):
    export.export(model_dir, dataset, str(tmp_path / "bad.mat"), pattern="rain")
  with pytest.raises(ValueError, match="unknown format '.csv'"):
    export.export(model_dir, dataset, str(tmp_path / "bad.csv"))
  with pytest.raises(ValueError, match="holds no model.json"):
    export.export(str(tmp_path), dataset, str(tmp_path / "bad.h5"))
  assert not any(p.startswith("bad") for p in os.listdir(tmp_path))
