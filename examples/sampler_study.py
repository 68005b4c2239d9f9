"""Exact-denoiser study of eq. (9) vs the eta family (see the section of the same name in docs/library.md).

  python examples/sampler_study.py [--workdir=DIR] [--smoke]

The same job as ``python run.py --config=configs/sampler_study.py``; this script
shows how to drive an experiment from Python instead of the command line.
"""

import argparse

import configs
from jaxchan.experiments import sampler_study, sampler_study_report


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", default="workdir/sampler_study")
  parser.add_argument("--smoke", action="store_true", help="tiny run (seconds)")
  args = parser.parse_args()
  config = configs.get("sampler_study:smoke" if args.smoke else "sampler_study")
  results = sampler_study.run(config, args.workdir)
  print(sampler_study_report.to_markdown(results))


if __name__ == "__main__":
  main()
