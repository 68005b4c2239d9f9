"""jaxchan's main entry point: ``python run.py --config=configs/noniden.py[:variant] --workdir=DIR``.

The same as the installed ``jaxchan-run`` command; see :mod:`jaxchan.launch` (``--help`` lists the configs).
"""

from jaxchan import launch

if __name__ == "__main__":
  launch.main()
