"""Exact-denoiser study of eq. (9) vs the eta family (see the README section of the same name).

  python examples/sampler_study.py [--workdir=DIR] [--smoke]

The same job as ``python run.py --config=configs/sampler_study.py``; this script
shows how to drive an experiment from Python instead of the command line.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs"))

import sampler_study as study_config  # noqa: E402  (configs/sampler_study.py)

from jaxchan.experiments import sampler_study  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", default="workdir/sampler_study")
  parser.add_argument("--smoke", action="store_true", help="tiny run (seconds)")
  args = parser.parse_args()
  config = study_config.get_config("smoke" if args.smoke else "")
  results = sampler_study.run(config, args.workdir)
  print(sampler_study.to_markdown(results))


if __name__ == "__main__":
  main()
