"""One process of a multi-process run asking for its dataset (run as a subprocess by tests/test_train.py).

  python tests/dataset_job.py PATH MARKER_DIR --coordinator=HOST:PORT --num_processes=N --process_id=I

Calls :func:`jaxchan.experiments.common.ensure_dataset` with datagen's builder
replaced by a stub that writes PATH and leaves one marker file per build in
MARKER_DIR, so the test can count builds without running Sionna. Prints
``ok PATH`` or ``error MESSAGE``.
"""

import argparse
import os
import sys

import ml_collections

from jaxchan import parallel


def main():
  p = argparse.ArgumentParser()
  p.add_argument("path")
  p.add_argument("markers")
  p.add_argument("--coordinator")
  p.add_argument("--num_processes", type=int)
  p.add_argument("--process_id", type=int)
  a = p.parse_args()
  parallel.initialize(a.coordinator, a.num_processes, a.process_id)

  from datagen import presets, sionna_source, store
  from jaxchan import data
  from jaxchan.experiments import common

  def fake_build(path, cfg, source, *, generator, progress):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "w").close()
    open(os.path.join(a.markers, f"built_by_{a.process_id}"), "w").close()

  store.build = fake_build
  presets.get = lambda *args, **kw: None
  sionna_source.sionna_version = lambda: "stub"
  dcfg = ml_collections.ConfigDict(dict(preset="simo_ofdm", size="tiny", seed=0, path=a.path, build_if_missing=True))
  try:
    print("ok", common.ensure_dataset(dcfg, progress=False, log=lambda *_: None))
  except data.DatasetError as e:
    print("error", e)
  sys.stdout.flush()


if __name__ == "__main__":
  main()
