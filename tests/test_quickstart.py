"""examples/quickstart.ipynb: in step with its percent-format source, and runs top to bottom (CI executes it)."""

import json
import os
import subprocess
import sys

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
