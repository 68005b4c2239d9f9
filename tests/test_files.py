"""Result files: complete or absent, and with the mode a plain open() would give."""

import os
import stat

import pytest

from jaxchan import files


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_respects_the_umask(tmp_path, umask, mode):
  old = os.umask(umask)
  try:
    files.atomic_write_json(str(tmp_path / "results.json"), {"a": 1})
  finally:
    os.umask(old)
  assert stat.S_IMODE(os.stat(tmp_path / "results.json").st_mode) == mode
  assert os.listdir(tmp_path) == ["results.json"]      # no temporary file left behind


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
  path = str(tmp_path / "t.json")
  files.atomic_write_json(path, {"old": True})
  with pytest.raises(TypeError):
    files.atomic_write_json(path, {"bad": object()})     # not JSON-serializable: fails before any byte is written
  assert open(path).read().strip().startswith("{") and '"old": true' in open(path).read()
  assert os.listdir(tmp_path) == ["t.json"]
