"""Which time-embedding indices does each training tau-pattern teach, and which does generation use?

  python examples/embedding_coverage.py

The mixer embeds the alpha-averaged time of every antenna row and subcarrier column,
rounded to an integer in [0, T] (eqs. 19-20). A pattern whose averages concentrate
(64 independent draws average to a narrow band) never trains the indices that
generation visits when it walks a uniform or structured start down to 0. This prints,
per training pattern, the range of axis times it trains and how many of the axis times
used by 50-step water-filling generation (six initial-noise patterns) it never saw.
"""

import functools

import jax
import numpy as np

from jaxchan import conventions, noise_patterns, schedules, stepping, tau_patterns
from jaxchan.models.mixer import axis_times

T = 100
SCH = schedules.GammaSchedule(T)
SHAPE = (32, 64)


def axis_index_sets(tau):
  ant, sub, _ = axis_times(tau, "alpha", SCH)
  return set(np.unique(np.asarray(ant)).astype(int)), set(np.unique(np.asarray(sub)).astype(int))


def main():
  h = conventions.standard_normal(jax.random.PRNGKey(1), (16,) + SHAPE)
  gen_ant, gen_sub = set(), set()
  for pattern in noise_patterns.PATTERNS:
    obs = noise_patterns.observe(h, jax.random.PRNGKey(2), pattern, SCH)
    path = jax.vmap(functools.partial(stepping.tau_trajectory, stepping=stepping.Stepping(), schedule=SCH, num_steps=50))(obs.tau0)[:, :-1]
    a, s = axis_index_sets(path.reshape((-1,) + SHAPE))
    gen_ant |= a
    gen_sub |= s
  for pattern in tau_patterns.PATTERNS:
    a, s = axis_index_sets(tau_patterns.sample(jax.random.PRNGKey(0), pattern, 1000, SHAPE, T))
    print(f"{pattern:16s} antenna-axis times {min(a)}..{max(a)} (never trained, used in generation: "
          f"{len(gen_ant - a)}/{len(gen_ant)}); subcarrier-axis {min(s)}..{max(s)} ({len(gen_sub - s)}/{len(gen_sub)})")


if __name__ == "__main__":
  main()
