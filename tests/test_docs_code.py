"""Documented code stays true: every Python block in the README and docs/ runs in a test or says why not."""

import glob
import os
import re

import numpy as np

from conftest import ROOT, docs_block

DOCS = ["README.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))


def test_every_python_block_runs_in_a_named_test_or_says_why_not():
  for doc in DOCS:
    text = open(os.path.join(ROOT, doc)).read()
    lines = text.splitlines()
    for i, line in enumerate(lines):
      if line.strip() != "```python":
        continue
      marker = lines[i - 1] if i else ""
      m = re.fullmatch(r"<!-- docs-code: (runs in (\S+)::(\w+)|not run: .{10,}) -->", marker)
      assert m, f"{doc}:{i + 1}: a Python block needs a '<!-- docs-code: runs in FILE::TEST -->' or " \
                "'<!-- docs-code: not run: REASON -->' line above it"
      if m.group(2):
        test_file = os.path.join(ROOT, m.group(2))
        assert os.path.exists(test_file), f"{doc}:{i + 1}: {m.group(2)} does not exist"
        src = open(test_file).read()
        assert f"def {m.group(3)}(" in src, f"{doc}:{i + 1}: {m.group(2)} has no test {m.group(3)}"
        assert "docs_block(" in src or "```python" in src, f"{doc}:{i + 1}: {m.group(2)} does not read the block"


def test_datasets_import_arrays_block(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  os.makedirs("data")
  rng = np.random.default_rng(0)
  cplx = lambda *s: (rng.normal(size=s) + 1j * rng.normal(size=s)).astype(np.complex64)  # noqa: E731
  ns = dict(H=cplx(20, 4, 8), H4=cplx(10, 2, 4, 8), Hh=cplx(20, 3, 2, 4, 6), Ht=cplx(20, 2, 4, 6))
  code = docs_block("docs/datasets.md", "test_datasets_import_arrays_block")
  # The block writes data/mine.h5 twice (two alternatives); each line runs on a fresh path.
  for line in code.splitlines():
    if "data/mine.h5" in line and os.path.exists("data/mine.h5"):
      os.remove("data/mine.h5")
    exec(compile(line.split("  #")[0], "docs/datasets.md", "exec"), ns)
  import h5py
  with h5py.File("data/mine.h5") as f, h5py.File("data/series.h5") as g:
    assert f.attrs["kind"] == "snapshot" and g.attrs["kind"] == "srs_prediction"
    assert f["train"]["h"].shape[1:] == (4, 8)
